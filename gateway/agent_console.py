"""The agents' console: ``GET /agent/{bot}``, a page served like the chat widget.

Plain HTML, ``static/agent.js`` and ``static/agent.css`` from the gateway itself (no CDN),
under the widget's strict CSP (no inline code). The agent signs in with an agent key or a
JWT pasted into its login field; the script keeps it in ``sessionStorage`` (gone with the
tab) and sends it in the first frame of ``/agent-ws/{bot}`` and as the bearer of the REST
calls, never in a URL. The page lists the conversations waiting for a person and those held,
live; the agent takes one, sees its history and the user's messages as they come, answers,
and releases it to the bot.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from aiohttp import web

from gateway.keys import BOTS
from gateway.widget import PAGE_HEADERS, STATIC_ROUTE, WidgetBot, not_found_page

_STATIC_FILES = ("agent.js", "agent.css")


def setup_agent_console(app: web.Application) -> None:
    """Add ``GET /agent/{bot}`` (the static files are the widget's ``/static/``)."""
    app.router.add_get("/agent/{bot}", agent_page, name="agent_console")


async def agent_page(request: web.Request) -> web.StreamResponse:
    """The console of one bot's agents; 404 for an unknown bot."""
    name = request.match_info["bot"]
    bot: WidgetBot | None = request.app[BOTS].get(name)
    if bot is None:
        return not_found_page(request, name)
    return web.Response(
        text=_render_page(bot, _static_urls(request.app)),
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


def _static_urls(app: web.Application) -> dict[str, str]:
    resource = app.router[STATIC_ROUTE]
    assert isinstance(resource, web.StaticResource)
    return {
        path: str(resource.url_for(filename=path, append_version=True)) for path in _STATIC_FILES
    }


def _render_page(bot: WidgetBot, static: dict[str, str]) -> str:
    title = escape(bot.display_name or bot.name)
    name = escape(bot.name)
    bot_path = quote(bot.name, safe="")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · agents</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{escape(static["agent.css"])}">
<script defer src="{escape(static["agent.js"])}"></script>
</head>
<body>
<main id="console" class="console" data-bot="{name}"
      data-socket="{escape(f"/agent-ws/{bot_path}")}"
      data-api="{escape(f"/api/v1/bots/{bot_path}")}">
  <header class="console-header">
    <h1>{title} · agents</h1>
    <span id="status" class="status" role="status" aria-live="polite"
          data-state="signed-out">Signed out</span>
    <span id="whoami" class="whoami"></span>
    <button id="signout" type="button" hidden>Sign out</button>
  </header>
  <form id="login" class="login" autocomplete="off">
    <label for="token">Agent key or token</label>
    <input id="token" name="token" type="password" required autocomplete="off"
           spellcheck="false" placeholder="bsk_… or a JWT">
    <button type="submit">Sign in</button>
    <p id="login-error" class="error" role="alert" hidden></p>
  </form>
  <div id="desk" class="desk" hidden>
    <section class="queue" aria-labelledby="queue-title">
      <h2 id="queue-title">Conversations</h2>
      <p id="queue-empty" class="muted">Nobody is waiting.</p>
      <ul id="queue" class="queue-list" aria-label="Conversations with people"></ul>
    </section>
    <section id="conversation" class="conversation" aria-labelledby="conversation-title"
             hidden>
      <header class="conversation-header">
        <h2 id="conversation-title"></h2>
        <span id="conversation-status" class="badge"></span>
      </header>
      <p id="conversation-facts" class="muted"></p>
      <div id="transcript" class="transcript" role="log" aria-live="polite"
           aria-label="Conversation"></div>
      <p id="action-error" class="error" role="alert" hidden></p>
      <div class="actions">
        <button id="take" type="button" hidden>Take</button>
        <form id="reply" class="reply" hidden autocomplete="off">
          <label for="reply-text" class="visually-hidden">Reply</label>
          <input id="reply-text" name="text" type="text" required maxlength="4000"
                 placeholder="Write to the user…">
          <button type="submit">Send</button>
        </form>
        <div id="release-box" class="release" hidden>
          <label for="release-mode">Then the bot</label>
          <select id="release-mode">
            <option value="">as the bot says</option>
            <option value="continue">goes on where it was</option>
            <option value="restart">starts over</option>
          </select>
          <button id="release" type="button">Release to the bot</button>
        </div>
      </div>
    </section>
  </div>
</main>
</body>
</html>
"""
