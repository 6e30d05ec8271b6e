"""The widget's HTML without a browser: the page, its static files, and rendered frames.

The Chromium test shows the widget working; these pin down what it is made
of, in-process and in milliseconds.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.widget import STATIC_DIR, render_frame

FRAMES: list[tuple[dict[str, Any], list[str]]] = [
    (
        {"type": "user", "text": "hi <b>"},
        [
            '<div id="messages" hx-swap-oob="beforeend">'
            '<div class="msg msg-user">hi &lt;b&gt;</div>',
            '<div id="suggestions" hx-swap-oob="innerHTML"></div>',
            '<div id="typing" class="typing" hx-swap-oob="true">',
        ],
    ),
    (
        {"type": "delta", "text": "Nice to "},
        ['<div id="draft" hx-swap-oob="beforeend">Nice to </div>'],
    ),
    (
        {"type": "message", "text": "Hello & welcome", "suggestions": []},
        [
            '<div class="msg msg-bot"><p>Hello &amp; welcome</p></div>',
            '<div id="draft" class="msg msg-bot msg-draft" hx-swap-oob="true"></div>',
        ],
    ),
    (
        {"type": "message", "text": "Next?", "suggestions": [{"key": 'a"b', "label": "<A>"}]},
        [
            '<div id="suggestions" hx-swap-oob="innerHTML">'
            '<button type="button" class="suggestion" name="text" value="a&quot;b" ws-send>'
            "&lt;A&gt;</button></div>",
        ],
    ),
    (
        {"type": "done", "session_id": "s-1"},
        [
            '<div id="session" hx-swap-oob="true" hidden data-session-id="s-1"></div>',
            '<div id="typing" class="typing" hx-swap-oob="true" hidden></div>',
        ],
    ),
    (
        {"type": "error", "error": "bad_request", "message": "field 'text' <missing>"},
        [
            '<div class="msg msg-error" role="alert" data-error="bad_request">'
            "field &#x27;text&#x27; &lt;missing&gt;</div>",
            '<div id="typing" class="typing" hx-swap-oob="true" hidden></div>',
        ],
    ),
]


@pytest.mark.parametrize(("frame", "fragments"), FRAMES)
def test_frames_render_as_escaped_out_of_band_swaps(
    frame: dict[str, Any], fragments: list[str]
) -> None:
    html = render_frame(frame)
    assert html is not None
    for fragment in fragments:
        assert fragment in html


@pytest.mark.parametrize(
    ("markdown", "shown", "absent"),
    [
        ("**Hi** _there_", "<p><strong>Hi</strong> <em>there</em></p>", None),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>", None),
        ("line one\nline two", "line one<br />\nline two", None),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;", "<script"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;", "<img"),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))", "href"),
        ("[x](data:text/html,<b>)", "[x](data:text/html,&lt;b&gt;)", "href"),
        ("![pixel](https://tracker.example/p.png)", ">pixel</a>", "<img"),
        (
            "[docs](https://example.com/a?b=1&c=2)",
            '<a href="https://example.com/a?b=1&amp;c=2" target="_blank"'
            ' rel="noopener noreferrer nofollow">docs</a>',
            None,
        ),
    ],
)
def test_bot_messages_are_markdown_without_script_or_raw_html(
    markdown: str, shown: str, absent: str | None
) -> None:
    html = render_frame({"type": "message", "text": markdown})
    assert html is not None
    assert shown in html
    if absent is not None:
        assert absent not in html


def test_a_users_text_and_streamed_drafts_stay_plain() -> None:
    user = render_frame({"type": "user", "text": "**not bold**"})
    draft = render_frame({"type": "delta", "text": "**still plain"})
    assert user is not None and draft is not None
    assert "**not bold**" in user and "<strong>" not in user
    assert "**still plain" in draft


@pytest.mark.parametrize(
    "frame",
    [{"type": "delta", "text": ""}, {"type": "pong"}, {}],
)
def test_frames_with_nothing_to_show_render_as_none(frame: dict[str, Any]) -> None:
    assert render_frame(frame) is None


async def test_page_connects_the_bot_socket_and_loads_only_its_own_files(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/chat/default")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert 'hx-ext="ws"' in page
    assert 'ws-connect="/ws/default?format=html"' in page
    assert re.search(r'<form id="composer"[^>]* ws-send', page)
    assert '<label for="text"' in page
    assert 'data-accent="teal"' in page
    for url in re.findall(r'(?:src|href|ws-connect)="([^"]*)"', page):  # no CDN, no other host
        assert url.startswith(("/static/", "/ws/", "data:")), url

    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert len(assets) == 4
    for asset in assets:
        fetched = await client.get(asset.replace("&amp;", "&"))
        assert fetched.status == 200, asset
        assert len(await fetched.read()) > 100


async def test_page_escapes_the_bot_name_and_refuses_a_colour_that_is_not_one(
    client: TestClient[Any, Any],
) -> None:
    page = await (await client.get("/chat/tricky")).text()
    assert "<title>&lt;Ada &amp; Co&gt;</title>" in page
    assert "<Ada" not in page
    assert 'data-accent=""' in page
    assert "evil" not in page


async def test_unknown_bot_is_a_404_page_or_json_error(client: TestClient[Any, Any]) -> None:
    page = await client.get("/chat/nobody", headers={"Accept": "text/html"})
    assert page.status == 404
    assert "Bot not found" in await page.text()

    api = await client.get("/chat/nobody", headers={"Accept": "application/json"})
    assert api.status == 404
    assert await api.json() == {"error": "unknown_bot", "message": "no bot named 'nobody'"}


def test_vendored_htmx_is_version_2_with_its_licence() -> None:
    htmx = (STATIC_DIR / "vendor" / "htmx-2.0.11.min.js").read_text()
    assert 'version:"2.' in htmx
    ws = (STATIC_DIR / "vendor" / "htmx-ext-ws-2.0.4.min.js").read_text()
    assert 'defineExtension("ws"' in ws
    for licence in ("htmx-2.0.11.LICENSE", "htmx-ext-ws-2.0.4.LICENSE"):
        assert "Zero" in (STATIC_DIR / "vendor" / licence).read_text()


def test_a_persons_message_is_marked_with_their_name_escaped() -> None:
    html = render_frame(
        {"type": "message", "text": "I am **here**", "from": "agent", "agent": "<Grace>"}
    )
    assert html is not None
    assert 'class="msg msg-bot msg-agent"' in html
    assert '<span class="msg-from">&lt;Grace&gt;</span>' in html
    assert "<strong>here</strong>" in html
    assert 'id="draft"' not in html  # a draft the bot is streaming is left alone


async def test_the_agents_console_loads_only_its_own_files_and_no_credential(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/agent/tricky")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert "<title>&lt;Ada &amp; Co&gt; · agents</title>" in page
    assert '<label for="token">Agent key or token</label>' in page
    assert 'data-socket="/agent-ws/tricky"' in page
    assert "<script>" not in page and "bsk_" not in page.replace("bsk_…", "")
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert sorted(a.split("?")[0] for a in assets) == ["/static/agent.css", "/static/agent.js"]
    for asset in assets:
        fetched = await client.get(asset.replace("&amp;", "&"))
        assert fetched.status == 200, asset
    missing = await client.get("/agent/nobody", headers={"Accept": "application/json"})
    assert missing.status == 404
    assert (await missing.json())["error"] == "unknown_bot"


# -- the player of PLAY and STOP ----------------------------------------------------------------

VIDEO = {"kind": "video", "url": "/media/t1", "filename": "intro.mp4", "content_type": "video/mp4"}
OPTIONS = {"autoplay": False, "loop": False, "fullscreen": False, "muted": False, "controls": True}


def player_frame(player: dict[str, Any], *files: dict[str, Any]) -> str:
    frame = {"type": "message", "text": "", "player": player, "attachments": list(files)}
    html = render_frame(frame)
    assert html is not None
    return html


PLAYERS: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], list[str], list[str]]] = [
    (  # a video, with General Bots' options the browser has
        {
            "action": "play",
            "id": "p1",
            "content_type": "video",
            "title": "intro",
            "options": OPTIONS
            | {"autoplay": True, "loop": True, "muted": True, "start": 10.0, "end": 20.5}
            | {"width": 640, "height": 360},
        },
        (VIDEO,),
        [
            '<div id="player" class="player" hx-swap-oob="true" role="region"'
            ' aria-label="Player: intro" data-player-id="p1" data-content-type="video">',
            '<video class="player-video" src="/media/t1#t=10,20.5" preload="metadata"'
            ' controls autoplay loop muted playsinline width="640" height="360"></video>',
            '<button type="button" class="player-close" data-player-close',
        ],
        ['class="msg msg-bot"'],  # the player, not a message of the conversation
    ),
    (  # nocontrols, fullscreen: the player covers the page
        {
            "action": "play",
            "content_type": "audio",
            "title": "song",
            "options": OPTIONS | {"controls": False, "fullscreen": True},
        },
        ({"kind": "audio", "url": "/media/t2", "filename": "song.mp3"},),
        [
            'class="player player-fullscreen"',
            '<audio class="player-audio" src="/media/t2" preload="metadata"></audio>',
        ],
        ["controls"],
    ),
    (
        {"action": "play", "content_type": "image", "title": "banner", "options": OPTIONS},
        ({"kind": "image", "url": "/media/t3", "filename": "banner.png"},),
        ['<img class="player-image" src="/media/t3" alt="banner">'],
        ["<iframe", "<embed", "<object"],
    ),
    (  # a document: a link to open it, never embedded
        {"action": "play", "content_type": "pdf", "title": "contract", "options": OPTIONS},
        ({"kind": "document", "url": "/media/t4", "filename": "contract.pdf"},),
        [
            '<a class="player-file" href="/media/t4" target="_blank" rel="noopener">'
            "📄 contract</a>",
            'download="contract.pdf"',
        ],
        ["<iframe", "<embed", "<object"],
    ),
    (  # a page (a video site): a link to it
        {
            "action": "play",
            "content_type": "video",
            "title": "dQw4w9WgXcQ",
            "url": "https://www.youtube.com/embed/dQw4w9WgXcQ",
            "options": OPTIONS,
        },
        (),
        [
            '<a class="player-link" href="https://www.youtube.com/embed/dQw4w9WgXcQ"'
            ' target="_blank" rel="noopener noreferrer">▶ dQw4w9WgXcQ</a>'
        ],
        ["<iframe", "<video"],
    ),
    (  # what a bot names is escaped, a scheme other than http(s) refused
        {
            "action": "play",
            "content_type": "video",
            "title": '<script>"x"',
            "url": "javascript:alert(1)",
            "options": OPTIONS,
        },
        (),
        ['<div id="player" class="player" hx-swap-oob="true" hidden></div>'],
        ["javascript", "<script"],
    ),
    (
        {"action": "play", "content_type": "video", "title": '<b>"t"</b>', "options": OPTIONS},
        (VIDEO | {"url": '/media/t1"onerror="x'},),
        ['aria-label="Player: &lt;b&gt;&quot;t&quot;&lt;/b&gt;"', 'src="/media/t1&quot;onerror'],
        ["<b>", '"onerror="'],
    ),
    (  # STOP: the player closes (its element goes, and what it played stops)
        {"action": "stop", "options": OPTIONS},
        (),
        ['<div id="player" class="player" hx-swap-oob="true" hidden></div>'],
        ["<video", "<audio"],
    ),
]


@pytest.mark.parametrize(("player", "files", "shown", "absent"), PLAYERS)
def test_the_player_shows_each_kind_of_file_its_own_way(
    player: dict[str, Any],
    files: tuple[dict[str, Any], ...],
    shown: list[str],
    absent: list[str],
) -> None:
    html = player_frame(player, *files)
    for fragment in shown:
        assert fragment in html
    for fragment in absent:
        assert fragment not in html


def test_the_player_keeps_the_turns_suggestions() -> None:
    frame = {
        "type": "message",
        "text": "",
        "player": {"action": "stop"},
        "suggestions": [{"key": "again", "label": "Again"}],
    }
    html = render_frame(frame)
    assert html is not None
    assert 'value="again" ws-send>Again</button>' in html
