"""The widget's player end to end: the real ``botserver serve`` process, headless Chromium.

A dialog PLAYs files of its drive: a sound plays in the browser's own element with the
options it was given (its bytes load under the page's CSP), a picture covers the page
with ``fullscreen``, a PDF is a link to open, never embedded; ``STOP``, the close button
and Escape close the player. The page never reaches beyond the server.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.channels.gateway_harness import write_bot
from tests.channels.test_outbound_files import MENU, PHOTO
from tests.e2e.test_widget_chromium import (  # noqa: F401  (fixtures)
    Server,
    Watch,
    bot_message,
    browser,
    chromium,
    expect_online,
    playwright,
    say,
    watch,
)

DIALOG = """\
TALK "Ready."
DO WHILE 1 = 1
    HEAR what
    IF what = "sound" THEN
        PLAY "sounds/chime.wav" WITH OPTIONS "loop,muted,start=0.5,bogus"
    ELSEIF what = "photo" THEN
        PLAY "photo.png" WITH OPTIONS "fullscreen"
    ELSEIF what = "menu" THEN
        PLAY "menu.pdf"
        TALK "The menu."
    ELSEIF what = "stop" THEN
        STOP
        TALK "Stopped."
    END IF
LOOP
"""


def chime(seconds: float = 2.0, rate: int = 8000) -> bytes:
    """A real WAV file: a 440 Hz tone, written with the standard library."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(frames)
    return out.getvalue()


@pytest.fixture(scope="module")
def server(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    root = tmp_path_factory.mktemp("player-e2e")
    write_bot(root / "bots", "cinema", {}, DIALOG)
    drive = root / "bots" / "cinema.gbai" / "cinema.gbdrive"
    (drive / "sounds").mkdir(parents=True)
    (drive / "sounds" / "chime.wav").write_bytes(chime())
    (drive / "photo.png").write_bytes(PHOTO)
    (drive / "menu.pdf").write_bytes(MENU)
    server = Server(root / "data", args=("--bots", str(root / "bots")))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def page(browser: BrowserContext, server: Server, watch: Watch) -> AsyncIterator[Page]:  # noqa: F811
    await browser.route("**/*", watch.route)
    page = browser.pages[0] if browser.pages else await browser.new_page()
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
    await page.goto(f"{server.url}/chat/cinema")
    await expect_online(page)
    await say(page, "hi")
    await expect(bot_message(page, "Ready")).to_be_visible()
    yield page
    watch.check()


async def test_a_sound_plays_with_its_options_and_stop_closes_the_player(page: Page) -> None:
    player = page.locator("#player")
    await expect(player).to_be_hidden()
    await say(page, "sound")
    audio = player.locator("audio.player-audio")
    await expect(audio).to_be_attached()
    await expect(player.locator(".player-title")).to_have_text("chime")
    assert await audio.evaluate("a => [a.loop, a.muted, a.controls, a.autoplay]") == [
        True,
        True,
        True,
        False,
    ]
    # its bytes came from the server under the page's CSP: the browser knows how long it is
    await page.wait_for_function(
        "() => { const a = document.querySelector('#player audio'); "
        "return a && a.readyState >= 1 && Math.abs(a.duration - 2) < 0.1 }"
    )
    assert await audio.evaluate("a => a.currentTime") == pytest.approx(0.5, abs=0.05)
    await audio.evaluate("a => a.play()")  # muted: the browser lets it play
    await page.wait_for_function("() => !document.querySelector('#player audio').paused")

    await say(page, "stop")
    await expect(bot_message(page, "Stopped")).to_be_visible()
    await expect(player).to_be_hidden()
    await expect(page.locator("audio")).to_have_count(0)


async def test_a_picture_covers_the_page_and_the_close_button_closes_it(page: Page) -> None:
    await say(page, "photo")
    player = page.locator("#player")
    await expect(player).to_have_class("player player-fullscreen")
    image = player.locator("img.player-image")
    await expect(image).to_be_visible()
    assert await image.evaluate("i => i.complete && i.naturalWidth") == 32
    box = await player.bounding_box()
    assert box is not None and box["width"] == 420 and box["height"] == 760
    await player.get_by_role("button", name="Close the player").click()
    await expect(player).to_be_hidden()
    await expect(page.locator("img.player-image")).to_have_count(0)


async def test_a_document_is_a_link_to_open_and_escape_closes_it(
    page: Page,
    server: Server,
) -> None:
    await say(page, "menu")
    await expect(bot_message(page, "The menu")).to_be_visible()
    link = page.locator("#player a.player-file")
    await expect(link).to_have_text("📄 menu")
    assert await page.locator("#player iframe, #player embed, #player object").count() == 0
    href = await link.get_attribute("href")
    assert href is not None and href.startswith("/media/")
    response = await page.request.get(server.url + href)
    assert (response.status, await response.body()) == (200, MENU)
    await page.keyboard.press("Escape")
    await expect(page.locator("#player")).to_be_hidden()
