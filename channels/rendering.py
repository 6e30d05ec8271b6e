"""A reply made into the sends a channel accepts.

:func:`render` converts the bots' markdown to the channel's format, writes out
the options that cannot be buttons, splits the text under the channel's limit
and puts the buttons on the last part. Each part is rendered on its own, so its
markup is complete and its length is counted as sent.

Telegram counts its 4096 limit on the text after entity parsing, without tags;
we count the whole HTML we send, tags and ``&lt;`` escapes included, in UTF-16
units. That is never less than what Telegram counts, so a part is never
refused for length, at the price of a few characters of room per tag.
"""

from __future__ import annotations

from collections.abc import Sequence

from channels.base import Capabilities, OutboundMessage, RenderedPart, Suggestion, TextFormat
from channels.buttons import FittedOptions, fit_suggestions
from channels.markdown import RichText, parse_markdown, plain_rich, render_rich
from channels.splitting import length_unit, split_ranges, split_text, strip_range


def split_rich_ranges(
    rich: RichText, text_format: TextFormat, limit: int, *, plain_too: bool = False
) -> list[tuple[int, int]]:
    """Where to cut ``rich`` so each part renders in ``text_format`` within ``limit``.

    With ``plain_too`` each part also fits as plain text (a streamed message
    shown plain first and formatted at the end).
    """
    count = length_unit(text_format)
    text = rich.text

    def measure(start: int, end: int) -> int:
        # The text alone is a lower bound of its rendering: skip rendering what cannot fit.
        bare = count(text[start:end])
        if bare > limit:
            return bare
        part = rich.slice(start, end)
        size = count(render_rich(part, text_format))
        if plain_too:
            size = max(size, count(render_rich(part, TextFormat.PLAIN)))
        return size

    def trim(start: int, end: int) -> tuple[int, int]:
        start, end = strip_range(text, start, end)
        # A code block keeps its indentation when a part starts inside it.
        while start > 0 and rich.style_at(start).pre and text[start - 1] in " \t":
            start -= 1
        return start, end

    return split_ranges(text, limit, measure, protected=rich.protected(), trim=trim)


def split_rich(rich: RichText, text_format: TextFormat, limit: int) -> list[RichText]:
    """Cut ``rich`` into parts that each render in ``text_format`` within ``limit``."""
    return [rich.slice(s, e) for s, e in split_rich_ranges(rich, text_format, limit)]


def format_parts(markdown: str, text_format: TextFormat, limit: int) -> list[str]:
    """``markdown`` converted to ``text_format`` and split under ``limit``."""
    if text_format is TextFormat.MARKDOWN:
        return split_text(markdown, limit)
    return [
        render_rich(part, text_format)
        for part in split_rich(parse_markdown(markdown), text_format, limit)
    ]


def render(
    text: str,
    capabilities: Capabilities,
    *,
    suggestions: Sequence[Suggestion] = (),
    interactive_text_limit: int | None = None,
    list_title: str = "Options",
) -> list[RenderedPart]:
    """The parts to send for a reply of markdown ``text`` with ``suggestions``.

    Every part is within ``capabilities.max_text_length`` as the provider
    counts it; buttons ride on the last part only. ``interactive_text_limit``
    caps the text of the part that carries buttons (WhatsApp: 1024). A reply
    with options and no text gets ``list_title`` as its text, since providers
    refuse buttons on an empty message.
    """
    if capabilities.text_format is not TextFormat.MARKDOWN:
        return render_parts(
            parse_markdown(text),
            capabilities,
            suggestions=suggestions,
            interactive_text_limit=interactive_text_limit,
            list_title=list_title,
        )
    limit = capabilities.max_text_length
    fitted = fit_suggestions(suggestions, capabilities)
    body = "\n\n".join(p for p in (text.strip(), "\n".join(fitted.text_lines)) if p)
    texts = split_text(body, limit)
    if fitted.buttons and interactive_text_limit and texts:
        texts[-1:] = split_text(texts[-1], min(limit, interactive_text_limit))
    return _with_buttons(texts, capabilities.text_format, fitted, list_title)


def render_parts(
    rich: RichText,
    capabilities: Capabilities,
    *,
    suggestions: Sequence[Suggestion] = (),
    interactive_text_limit: int | None = None,
    list_title: str = "Options",
) -> list[RenderedPart]:
    """:func:`render` for text already parsed (``MARKDOWN`` channels get it as plain text)."""
    text_format = capabilities.text_format
    limit = capabilities.max_text_length
    fitted = fit_suggestions(suggestions, capabilities)
    if fitted.text_lines:
        lines = "\n".join(fitted.text_lines)
        rich = rich + plain_rich(("\n\n" if rich.text.strip() else "") + lines)
    pieces = split_rich(rich, text_format, limit)
    if fitted.buttons and interactive_text_limit and pieces:
        pieces[-1:] = split_rich(pieces[-1], text_format, min(limit, interactive_text_limit))
    texts = [render_rich(piece, text_format) for piece in pieces]
    return _with_buttons(texts, text_format, fitted, list_title)


def _with_buttons(
    texts: list[str], text_format: TextFormat, fitted: FittedOptions, list_title: str
) -> list[RenderedPart]:
    if not texts and fitted.buttons:
        texts = [list_title]
    parts = [RenderedPart(text=t, text_format=text_format) for t in texts]
    if parts and fitted.buttons:
        parts[-1] = RenderedPart(
            text=texts[-1],
            text_format=text_format,
            buttons=fitted.buttons,
            as_list=fitted.as_list,
            list_title=list_title,
        )
    return parts


def render_message(
    message: OutboundMessage,
    capabilities: Capabilities,
    *,
    interactive_text_limit: int | None = None,
    list_title: str = "Options",
) -> list[RenderedPart]:
    """:func:`render` for an :class:`OutboundMessage`'s text and suggestions."""
    return render(
        message.text,
        capabilities,
        suggestions=message.suggestions,
        interactive_text_limit=interactive_text_limit,
        list_title=list_title,
    )
