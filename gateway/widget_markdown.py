"""The bots' markdown as the widget shows it: HTML that cannot carry script.

markdown-it-py with raw HTML off (a tag in a bot's or a model's text is shown
as text), links only with the schemes its validator allows (no
``javascript:``, ``vbscript:``, ``file:`` or ``data:``), opening outside the
page without a referrer, and images written as links (an image from anywhere
would tell a third party who reads the chat; the page's policy allows only
its own). Streamed drafts stay plain text; the finished message is formatted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token

_md = (
    MarkdownIt("commonmark", {"html": False, "breaks": True})
    .enable("strikethrough")
    .disable("image")
)


def _link_open(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    token = tokens[idx]
    token.attrSet("target", "_blank")
    token.attrSet("rel", "noopener noreferrer nofollow")
    return renderer.renderToken(tokens, idx, options, env)


_md.add_render_rule("link_open", _link_open)


def markdown_to_html(text: str) -> str:
    """``text`` (the bots' markdown) as safe HTML for the widget."""
    html: str = _md.render(text)
    return html.strip()
