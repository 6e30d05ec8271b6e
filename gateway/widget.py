"""The web chat widget: ``GET /chat/{bot}``, its static files, and HTML frames.

The page is plain HTML driven by htmx and its WebSocket extension, both
vendored under ``gateway/static/vendor`` so the widget works offline. It
connects to ``/ws/{bot}?format=html``; in that mode the WebSocket handler
sends :func:`render_frame` of each server frame, an out-of-band fragment that
htmx swaps into the page. ``static/chat.js`` adds what htmx cannot know: the
browser's visitor token (its identity, signed by the gateway: see
:mod:`gateway.auth_visitor`) and the last session id, both kept in
``localStorage`` so a reload continues the conversation, and both sent in the
socket's first frame, never in its URL. Every page carries a fresh token in
``data-visitor-token``; the script keeps it only when the browser has none.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web

from gateway.keys import AUTH, BOTS
from gateway.widget_markdown import markdown_to_html

STATIC_DIR = Path(__file__).with_name("static")
STATIC_ROUTE = "static"

# The page loads only same-origin scripts and styles: no inline code, so a
# message that slipped past escaping still could not run. `connect-src 'self'`
# covers ws:// and wss:// to the same host (CSP level 3).
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# htmx would otherwise inject an inline <style> (blocked by the CSP) and may
# evaluate attribute code; the widget needs neither.
_HTMX_CONFIG = json.dumps(
    {"includeIndicatorStyles": False, "allowEval": False, "allowScriptTags": False}
)
# A theme colour from config.csv ends up in CSS, so only plain colour syntax
# is accepted: #rgb, #rrggbb(aa) or a colour keyword.
_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,4}|#[0-9a-fA-F]{6}|#[0-9a-fA-F]{8}|[a-zA-Z]{3,30})$")
_STATIC_FILES = (
    "vendor/htmx-2.0.11.min.js",
    "vendor/htmx-ext-ws-2.0.4.min.js",
    "chat.js",
    "chat.css",
)


class WidgetBot(Protocol):
    """What the widget needs to know of a bot."""

    @property
    def name(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def theme_color(self) -> str | None: ...


def setup_widget(app: web.Application) -> None:
    """Add ``GET /chat/{bot}`` and the ``/static/`` files to ``app``."""
    app.router.add_static("/static/", STATIC_DIR, name=STATIC_ROUTE)
    app.router.add_get("/chat/{bot}", chat_page, name="chat")


async def chat_page(request: web.Request) -> web.StreamResponse:
    """The chat widget of one bot; 404 (HTML or JSON, as accepted) for an unknown bot."""
    name = request.match_info["bot"]
    bot: WidgetBot | None = request.app[BOTS].get(name)
    if bot is None:
        return not_found_page(request, name)
    visitor_token, _ = request.app[AUTH].visitors.issue()  # a new visitor's, if it is one
    return web.Response(
        text=_render_page(bot, _static_urls(request.app), visitor_token),
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


_DRAFT_EMPTY = '<div id="draft" class="msg msg-bot msg-draft" hx-swap-oob="true"></div>'
_SUGGESTIONS_EMPTY = '<div id="suggestions" hx-swap-oob="innerHTML"></div>'
_TYPING_ON = (
    '<div id="typing" class="typing" hx-swap-oob="true">'
    '<span class="visually-hidden">The bot is typing</span>'
    '<span class="dot"></span><span class="dot"></span><span class="dot"></span></div>'
)
_TYPING_OFF = '<div id="typing" class="typing" hx-swap-oob="true" hidden></div>'


def render_frame(frame: dict[str, Any]) -> str | None:
    """One server WebSocket frame as htmx out-of-band HTML; None when nothing to show.

    Every element carries ``hx-swap-oob`` so the ws extension swaps it by id:
    messages are appended to ``#messages``, streamed text to ``#draft``, and
    ``#typing``, ``#suggestions`` and ``#session`` are replaced whole.
    """
    kind = frame.get("type")
    if kind == "user":
        # The server has the message: the bot is now working on a reply.
        return _append_message("user", _text(frame.get("text"))) + _SUGGESTIONS_EMPTY + _TYPING_ON
    if kind == "delta":
        text = _text(frame.get("text"))
        if not text:
            return None
        return f'<div id="draft" hx-swap-oob="beforeend">{escape(text)}</div>'
    if kind == "message":
        text = _text(frame.get("text"))
        player = frame.get("player")
        if frame.get("from") == "agent":  # a person answering, in a handoff
            parts = [_append_agent_message(text, _text(frame.get("agent")))]
        elif isinstance(player, dict):  # PLAY opens the player, STOP closes it
            parts = [player_html(player, frame.get("attachments")), _DRAFT_EMPTY]
        else:
            parts = [_append_bot_message(text, frame.get("attachments")), _DRAFT_EMPTY]
        suggestions = _suggestion_buttons(frame.get("suggestions"))
        if suggestions:
            parts.append('<div id="suggestions" hx-swap-oob="innerHTML">' + suggestions + "</div>")
        return "".join(parts)
    if kind == "done":
        session_id = _text(frame.get("session_id"))
        return (
            f'<div id="session" hx-swap-oob="true" hidden'
            f' data-session-id="{escape(session_id)}"></div>' + _DRAFT_EMPTY + _TYPING_OFF
        )
    if kind == "error":
        code = _text(frame.get("error")) or "error"
        message = _text(frame.get("message")) or "Something went wrong."
        return (
            '<div id="messages" hx-swap-oob="beforeend">'
            f'<div class="msg msg-error" role="alert" data-error="{escape(code)}">'
            f"{escape(message)}</div></div>" + _DRAFT_EMPTY + _TYPING_OFF
        )
    return None


def _append_message(role: str, text: str) -> str:
    return (
        '<div id="messages" hx-swap-oob="beforeend">'
        f'<div class="msg msg-{role}">{escape(text)}</div></div>'
    )


def _append_bot_message(text: str, attachments: Any = None) -> str:
    """The bot's markdown formatted (see :mod:`gateway.widget_markdown`), after the files
    it sends: an image shown, audio and video playable, any other file a download link.
    A user's text is always shown as typed."""
    files = "".join(_file_html(a) for a in attachments or () if isinstance(a, dict))
    body = markdown_to_html(text) if text.strip() else ""
    return (
        '<div id="messages" hx-swap-oob="beforeend">'
        f'<div class="msg msg-bot">{files}{body}</div></div>'
    )


def _file_html(attachment: dict[str, Any]) -> str:
    url = _text(attachment.get("url"))
    if not url.startswith(("/", "http://", "https://")):
        return ""
    name = _text(attachment.get("filename")) or "file"
    href, label = escape(url), escape(name)
    kind = attachment.get("kind")
    if kind == "image":
        return (
            f'<a class="msg-file" href="{href}" target="_blank" rel="noopener">'
            f'<img class="msg-image" src="{href}" alt="{label}"></a>'
        )
    if kind in ("audio", "video"):
        return (
            f'<{kind} class="msg-{kind}" controls preload="metadata" src="{href}"'
            f' title="{label}"></{kind}>'
        )
    return f'<a class="msg-file" href="{href}" download="{label}">📎 {label}</a>'


_PLAYER_CLOSED = '<div id="player" class="player" hx-swap-oob="true" hidden></div>'
# General Bots' kinds of content the player shows itself; any other is a file to open
_MEDIA = ("video", "audio")


def player_html(player: dict[str, Any], attachments: Any = None) -> str:
    """The player PLAY opens (``#player``, above the suggestions), replacing the one open;
    STOP's closes it, which stops what it played. A video or an audio file plays in the
    browser's own element with the options the browser has (controls, autoplay, loop,
    muted, start and end, width and height), an image is shown, any other file (a PDF, a
    document, code) is a link to open it, and a page (a video site) a link to it: the
    page never embeds what a bot names."""
    if player.get("action") != "play":
        return _PLAYER_CLOSED
    files = [a for a in attachments or () if isinstance(a, dict)]
    url = _text(files[0].get("url")) if files else _text(player.get("url"))
    if not url.startswith(("/", "http://", "https://")):
        return _PLAYER_CLOSED
    options = player.get("options")
    options = options if isinstance(options, dict) else {}
    title = _text(player.get("title")) or (_text(files[0].get("filename")) if files else "")
    kind = _text(player.get("content_type"))
    if not files:
        body = (
            f'<a class="player-link" href="{escape(url)}" target="_blank"'
            f' rel="noopener noreferrer">▶ {escape(title or url)}</a>'
        )
    elif kind in _MEDIA or files[0].get("kind") in _MEDIA:
        body = _media_html(kind if kind in _MEDIA else _text(files[0].get("kind")), url, options)
    elif kind == "image" or files[0].get("kind") == "image":
        body = (
            f'<a href="{escape(url)}" target="_blank" rel="noopener">'
            f'<img class="player-image" src="{escape(url)}" alt="{escape(title)}"'
            f"{_size(options)}></a>"
        )
    else:
        name = _text(files[0].get("filename")) or title or "file"
        body = (
            f'<a class="player-file" href="{escape(url)}" target="_blank" rel="noopener">'
            f"📄 {escape(title or name)}</a>"
            f' <a class="player-download" href="{escape(url)}" download="{escape(name)}">'
            "Download</a>"
        )
    classes = "player player-fullscreen" if options.get("fullscreen") is True else "player"
    return (
        f'<div id="player" class="{classes}" hx-swap-oob="true" role="region"'
        f' aria-label="Player: {escape(title)}" data-player-id="{escape(_text(player.get("id")))}"'
        f' data-content-type="{escape(kind)}">'
        f'<div class="player-bar"><span class="player-title">{escape(title)}</span>'
        '<button type="button" class="player-close" data-player-close'
        ' aria-label="Close the player">&times;</button></div>'
        f"{body}</div>"
    )


def _media_html(element: str, url: str, options: dict[str, Any]) -> str:
    start, end = _seconds(options.get("start")), _seconds(options.get("end"))
    if start is not None or end is not None:  # a media fragment: where to start and stop
        url += f"#t={start or 0:g}" + (f",{end:g}" if end is not None else "")
    flags = [
        name
        for name, on in (
            ("controls", options.get("controls", True) is not False),
            ("autoplay", options.get("autoplay") is True),
            ("loop", options.get("loop") is True),
            ("muted", options.get("muted") is True),
        )
        if on
    ]
    extra = "".join(f" {flag}" for flag in flags)
    if element == "video":
        extra += " playsinline" + _size(options)
    return (
        f'<{element} class="player-{element}" src="{escape(url)}" preload="metadata"'
        f"{extra}></{element}>"
    )


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def _size(options: dict[str, Any]) -> str:
    size = ""
    for name in ("width", "height"):
        value = options.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 10_000:
            size += f' {name}="{value}"'
    return size


def _append_agent_message(text: str, agent: str) -> str:
    """A person's message: formatted as the bot's, marked as theirs."""
    who = f'<span class="msg-from">{escape(agent)}</span>' if agent else ""
    return (
        '<div id="messages" hx-swap-oob="beforeend">'
        f'<div class="msg msg-bot msg-agent">{who}{markdown_to_html(text)}</div></div>'
    )


def _suggestion_buttons(raw: object) -> str:
    """Buttons that send their key through the socket (``ws-send``) when clicked.

    Suggestions are ``{"key", "label"}`` objects; a bare string is both.
    """
    if not isinstance(raw, list):
        return ""
    buttons = []
    for item in raw:
        if isinstance(item, dict):
            key = _text(item.get("key"))
            label = _text(item.get("label")) or key
        else:
            key = label = _text(item)
        if not key:
            continue
        buttons.append(
            f'<button type="button" class="suggestion" name="text" value="{escape(key)}"'
            f" ws-send>{escape(label)}</button>"
        )
    return "".join(buttons)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _static_urls(app: web.Application) -> dict[str, str]:
    # `append_version` adds a content hash, so browsers never keep a stale file.
    resource = app.router[STATIC_ROUTE]
    assert isinstance(resource, web.StaticResource)
    return {
        path: str(resource.url_for(filename=path, append_version=True)) for path in _STATIC_FILES
    }


def _render_page(bot: WidgetBot, static: dict[str, str], visitor_token: str) -> str:
    title = escape(bot.display_name or bot.name)
    name = escape(bot.name)
    color = bot.theme_color if bot.theme_color and _COLOR.match(bot.theme_color) else ""
    ws_url = escape(f"/ws/{quote(bot.name, safe='')}?format=html")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="htmx-config" content="{escape(_HTMX_CONFIG)}">
{f'<meta name="theme-color" content="{escape(color)}">' if color else ""}
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{escape(static["chat.css"])}">
<script defer src="{escape(static["vendor/htmx-2.0.11.min.js"])}"></script>
<script defer src="{escape(static["vendor/htmx-ext-ws-2.0.4.min.js"])}"></script>
<script defer src="{escape(static["chat.js"])}"></script>
</head>
<body>
<main id="chat" class="chat" hx-ext="ws" ws-connect="{ws_url}"
      data-bot="{name}" data-accent="{escape(color)}" data-visitor-token="{escape(visitor_token)}"
      aria-labelledby="chat-title">
  <header class="chat-header">
    <h1 id="chat-title">{title}</h1>
    <span id="status" class="status" role="status" aria-live="polite">Connecting…</span>
  </header>
  <div id="scroller" class="scroller">
    <div id="messages" class="messages" role="log" aria-live="polite"
         aria-label="Conversation with {title}"></div>
    <div id="draft" class="msg msg-bot msg-draft"></div>
    <div id="typing" class="typing" hidden></div>
  </div>
  <div id="player" class="player" hidden></div>
  <div id="suggestions" class="suggestions" role="group" aria-label="Suggested replies"></div>
  <div id="session" hidden data-session-id=""></div>
  <form id="composer" class="composer" ws-send autocomplete="off">
    <label for="text" class="visually-hidden">Message to {title}</label>
    <input id="text" name="text" type="text" required maxlength="4000"
           placeholder="Type a message…" enterkeyhint="send" autofocus>
    <button type="submit" class="send" aria-label="Send">Send</button>
  </form>
</main>
</body>
</html>
"""


def not_found_page(request: web.Request, name: str) -> web.Response:
    message = f"no bot named {name!r}"
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return web.json_response({"error": "unknown_bot", "message": message}, status=404)
    return web.Response(
        status=404,
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
        text=(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Bot not found</title></head><body>"
            f"<h1>Bot not found</h1><p>There is {escape(message)} on this server.</p></body></html>"
        ),
    )
