"""The web chat widget end to end: the real ``botserver serve`` process, headless Chromium.

A new user's first conversation with the bundled default bot, typed into
``/chat/default``: it greets and asks the name, answers with the name, keeps
the conversation across a page reload and across a server restart, and a
suggestion button sends its key. The browser's identity is the visitor token
the server signed for it, sent in the socket's first frame (never its URL): a
second browser holding the first one's session id can neither read nor
resume that session. The page must never reach beyond the server
(htmx is served from the package, not a CDN).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Route,
    async_playwright,
    expect,
)

CHROMIUM = Path(os.environ.get("BOTSERVER_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000
# The first start creates the embedded PostgreSQL cluster under the data dir.
STARTUP_SECONDS = 60.0
# Settings the server would read from the environment: the test runs it on
# embedded defaults, as a new user would, whatever the CI machine exports.
_SERVER_ENV_VARS = ("DATABASE_URL", "REDIS_URL")

SESSION_KEY = "botserver.default.session_id"
TOKEN_KEY = "botserver.visitor_token"


class Server:
    """``botserver serve`` in a subprocess, on a fixed port and data dir so it can restart."""

    def __init__(
        self, data_dir: Path, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.args = args  # more options of `botserver serve`
        self.env = env or {}  # settings of the test, on top of the cleaned environment
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        botserver = shutil.which("botserver", path=str(Path(sys.executable).parent))
        command = [botserver] if botserver else [sys.executable, "-m", "gateway.cli"]
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _SERVER_ENV_VARS and not key.startswith("BOTSERVER_")
        } | self.env
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    *command,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._wait_healthy()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(
                    f"botserver exited with {self._process.returncode} before it was healthy:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"botserver not healthy after {STARTUP_SECONDS:.0f} s:\n" + self.log_tail())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def server(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("botserver") / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture
async def browser(
    playwright: Playwright, chromium: Path, server: Server, tmp_path: Path
) -> AsyncIterator[BrowserContext]:
    """A fresh Chromium profile: its own localStorage, so its own user id."""
    context = await playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(chromium),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 420, "height": 760},
    )
    try:
        context.set_default_timeout(TIMEOUT_MS)
        yield context
    finally:
        await context.close()


class Watch:
    """What the page did wrong: requests beyond the server, console errors, JS exceptions."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.offsite: list[str] = []
        self.errors: list[str] = []
        self.expected: list[str] = []  # substrings of console errors a test provokes

    async def route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.server_url) or url.startswith("data:"):
            await route.continue_()
        else:
            self.offsite.append(url)
            await route.abort()

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(e in message.text for e in self.expected):
            self.errors.append(message.text)

    def check(self) -> None:
        assert self.offsite == [], "the widget reached beyond its server"
        assert self.errors == [], "the widget logged errors"


@pytest.fixture
def watch(server: Server) -> Watch:
    return Watch(server.url)


@pytest.fixture
async def page(browser: BrowserContext, server: Server, watch: Watch) -> AsyncIterator[Page]:
    await browser.route("**/*", watch.route)
    page = browser.pages[0] if browser.pages else await browser.new_page()
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
    await open_chat(page, server)
    yield page
    watch.check()


async def open_chat(page: Page, server: Server) -> None:
    await page.goto(f"{server.url}/chat/default")
    await expect_online(page)


async def expect_online(page: Page, *, within_ms: int = TIMEOUT_MS) -> None:
    await expect(page.get_by_role("status")).to_have_attribute(
        "data-state", "online", timeout=within_ms
    )


async def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message to")
    await box.fill(text)
    await box.press("Enter")
    await expect(page.locator(".msg-user").last).to_have_text(text)
    await expect(box).to_have_value("")


def bot_message(page: Page, pattern: str) -> Locator:
    return page.locator(".msg-bot").filter(has_text=re.compile(pattern, re.I)).last


async def test_greets_asks_the_name_and_answers_with_it(page: Page) -> None:
    await say(page, "hi")
    await expect(bot_message(page, r"hello.*what is your name")).to_be_visible()

    await say(page, "ada lovelace")
    await expect(bot_message(page, "Nice to meet you, Ada Lovelace")).to_be_visible()
    assert await page.evaluate(f"localStorage.getItem({SESSION_KEY!r})")


async def test_reload_keeps_the_conversation_and_suggestions_send_their_key(
    page: Page,
) -> None:
    await say(page, "hi")
    await say(page, "grace hopper")
    await expect(bot_message(page, "Nice to meet you, Grace Hopper")).to_be_visible()
    session_id = await page.evaluate(f"localStorage.getItem({SESSION_KEY!r})")

    await page.reload()
    await expect_online(page)

    # The server replays the session into the page, once.
    await expect(bot_message(page, "Nice to meet you, Grace Hopper")).to_be_visible()
    await expect(page.locator(".msg-user", has_text="grace hopper")).to_have_count(1)
    assert await page.evaluate(f"localStorage.getItem({SESSION_KEY!r})") == session_id

    # The dialog still waits on its HEAR: the suggestion's key ("name"), not
    # its label, is what reaches it.
    button = page.get_by_role("button", name="Do you remember my name?")
    await button.click()
    await expect(page.locator(".msg-user").last).to_have_text("name")
    await expect(bot_message(page, "your name is Grace Hopper")).to_be_visible()
    await expect(page.locator("#suggestions button")).to_have_count(4)  # the menu again


async def test_conversation_survives_a_server_restart(
    page: Page, server: Server, watch: Watch
) -> None:
    await say(page, "hi")
    await expect(bot_message(page, "what is your name")).to_be_visible()

    # While the server is down, Chromium and htmx log each refused reconnect.
    watch.expected += ["WebSocket connection to", "[object Event]"]
    server.stop()
    await expect(page.get_by_role("status")).to_have_attribute("data-state", "offline")
    server.start()
    # The ws extension reconnects by itself, with a growing random backoff.
    await expect_online(page, within_ms=4 * TIMEOUT_MS)

    await say(page, "alan turing")
    await expect(bot_message(page, "Nice to meet you, Alan Turing")).to_be_visible()


def _history(server: Server, session_id: str, token: str) -> int:
    request = urllib.request.Request(
        f"{server.url}/api/v1/bots/default/sessions/{session_id}/messages",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            json.loads(response.read())
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


async def test_a_second_browser_cannot_read_or_resume_the_first_ones_session(
    page: Page,
    playwright: Playwright,
    chromium: Path,
    server: Server,
    watch: Watch,
    tmp_path: Path,
) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await say(page, "hi")
    await say(page, "grace hopper")
    await expect(bot_message(page, "Nice to meet you, Grace Hopper")).to_be_visible()
    session_id = await page.evaluate(f"localStorage.getItem({SESSION_KEY!r})")
    token = await page.evaluate(f"localStorage.getItem({TOKEN_KEY!r})")
    assert session_id and token.startswith("bv1.")
    await page.reload()
    await expect_online(page)
    await expect(bot_message(page, "Nice to meet you, Grace Hopper")).to_be_visible()
    assert sockets, "the widget opened no socket"
    for url in sockets:  # nothing that identifies the visitor travels in the URL
        assert "user_id" not in url and "session_id" not in url and "bv1." not in url, url

    second = await playwright.chromium.launch_persistent_context(
        str(tmp_path / "second-profile"),
        executable_path=str(chromium),
        headless=True,
        args=CHROMIUM_ARGS,
    )
    try:
        second.set_default_timeout(TIMEOUT_MS)
        await second.route("**/*", watch.route)
        other = second.pages[0] if second.pages else await second.new_page()
        other.on("console", watch.console)
        other.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
        await open_chat(other, server)
        other_token = await other.evaluate(f"localStorage.getItem({TOKEN_KEY!r})")
        assert other_token.startswith("bv1.") and other_token != token

        # The first browser's session id, as if it had leaked, planted in the second.
        await other.evaluate(f"localStorage.setItem({SESSION_KEY!r}, {session_id!r})")
        await other.reload()
        await expect_online(other)
        await other.wait_for_function(f"localStorage.getItem({SESSION_KEY!r}) === null")
        await expect(other.locator(".msg-user")).to_have_count(0)
        assert "Grace Hopper" not in await other.content()

        # Nor through the API: the session's history is the first visitor's only.
        assert await asyncio.to_thread(_history, server, session_id, other_token) == 404
        assert await asyncio.to_thread(_history, server, session_id, token) == 200

        # The second browser talks in a session of its own.
        await say(other, "hi")
        await expect(bot_message(other, "what is your name")).to_be_visible()
        own = await other.evaluate(f"localStorage.getItem({SESSION_KEY!r})")
        assert own and own != session_id
    finally:
        await second.close()
