"""Human handoff end to end: the real ``botserver serve`` process, headless Chromium.

A user on the web widget (``/chat/concierge``) asks the concierge bot for a person; an agent
signs in to the console (``/agent/concierge``) with an agent key, sees the conversation in
the queue live, takes it, sees the user's messages as they come and answers; the user sees
the answer in the widget; the agent releases the conversation and the bot answers the user
again, where its dialog waited. The agent's key is kept in the tab's sessionStorage and
travels in the socket's first frame and the REST calls' header, never in a URL; neither page
reaches beyond the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, Playwright, async_playwright, expect

from tests.e2e.test_widget_chromium import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    Server,
    Watch,
    bot_message,
    expect_online,
    say,
)

ADMIN_TOKEN = "handoff-e2e-admin-token-0123456789"
CONCIERGE = Path(__file__).resolve().parent.parent / "bots" / "concierge.gbai"
TOKEN_KEY = "botserver.agent_token"


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def server(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("handoff-e2e")
    shutil.copytree(CONCIERGE, root / "bots" / CONCIERGE.name)
    server = Server(
        root / "data",
        args=("--bots", str(root / "bots")),
        env={"BOTSERVER_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def agent_key(server: Server) -> str:
    """A new agent key of the concierge, made through the admin API."""
    request = urllib.request.Request(
        f"{server.url}/api/v1/bots/concierge/keys",
        data=json.dumps({"role": "agent", "name": "Grace"}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        key: str = json.loads(response.read())["key"]
    return key


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture
async def browser(
    playwright: Playwright, chromium_path: Path, server: Server, tmp_path: Path
) -> AsyncIterator[BrowserContext]:
    context = await playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(chromium_path),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1000, "height": 760},
    )
    try:
        context.set_default_timeout(TIMEOUT_MS)
        yield context
    finally:
        await context.close()


async def open_page(browser: BrowserContext, watch: Watch, url: str) -> Page:
    page = await browser.new_page()
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
    await page.goto(url)
    return page


async def test_an_agent_takes_answers_and_releases_a_web_conversation(
    browser: BrowserContext, server: Server
) -> None:
    watch = Watch(server.url)
    await browser.route("**/*", watch.route)
    urls: list[str] = []
    browser.on("request", lambda request: urls.append(request.url))
    key = await asyncio.to_thread(agent_key, server)

    # The user asks the bot for a person.
    user = await open_page(browser, watch, f"{server.url}/chat/concierge")
    await expect_online(user)
    await say(user, "hi")
    await expect(bot_message(user, "Say human to talk to a person")).to_be_visible()
    await say(user, "human")
    await expect(bot_message(user, "A person will be with you shortly")).to_be_visible()

    # The agent signs in and finds the conversation waiting.
    agent = await open_page(browser, watch, f"{server.url}/agent/concierge")
    agent.on("websocket", lambda ws: urls.append(ws.url))
    await agent.get_by_label("Agent key or token").fill(key)
    await agent.get_by_role("button", name="Sign in").click()
    await expect(agent.get_by_role("status")).to_have_attribute("data-state", "online")
    await expect(agent.locator("#whoami")).to_have_text("Grace")
    assert await agent.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") == key
    waiting = agent.locator('.queue-item[data-status="waiting"]')
    await expect(waiting).to_have_count(1)
    await waiting.get_by_role("button").click()
    transcript = agent.get_by_role("log", name="Conversation")
    await expect(transcript.locator(".line-user .line-text").last).to_have_text("human")

    await agent.get_by_role("button", name="Take").click()
    await expect(agent.locator('.queue-item[data-status="active"]')).to_contain_text("yours")
    reply = agent.get_by_label("Reply")
    await expect(reply).to_be_visible()

    # The user writes: the bot stays silent, and the agent sees it live.
    await say(user, "are you a real person?")
    await expect(transcript.locator(".line-user .line-text").last).to_have_text(
        "are you a real person?"
    )
    await expect(user.locator("#typing")).to_be_hidden()
    assert await user.locator(".msg-bot:not(.msg-draft)").count() == 2  # nothing more

    # The agent answers; the user sees it in the widget, marked as a person's.
    await reply.fill("Yes, I am Grace. How can I help?")
    await agent.get_by_role("button", name="Send").click()
    answer = user.locator(".msg-agent").last
    await expect(answer).to_contain_text("Yes, I am Grace. How can I help?")
    await expect(answer.locator(".msg-from")).to_have_text("Grace")
    await expect(transcript.locator(".line-agent .line-text").last).to_have_text(
        "Yes, I am Grace. How can I help?"
    )

    # The agent releases it; the bot answers again, where its dialog waited.
    await agent.get_by_role("button", name="Release to the bot").click()
    await expect(agent.locator("#conversation-status")).to_have_text("back with the bot")
    await expect(agent.locator(".queue-item")).to_have_count(0)
    await say(user, "thanks")
    await expect(bot_message(user, "Welcome back! You said: thanks")).to_be_visible()

    # The key never travelled in a URL, and neither page reached beyond the server.
    assert urls and not [u for u in urls if key in u or "token" in u]
    watch.check()
