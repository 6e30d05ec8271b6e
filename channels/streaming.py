"""A reply that arrives as deltas, delivered the way its channel allows.

- ``EDIT`` (Telegram): one message, sent as plain text once there is text,
  edited with the plain text so far at most once per ``min_edit_interval``,
  and edited a last time with the formatted text. When the text outgrows the
  channel's limit, the finished part gets its formatted edit and the rest
  goes on in a new message.
- ``PARAGRAPHS`` (WhatsApp, SMS): each send carries the paragraphs completed
  since the last one (never a cut inside a code block), the remainder at the
  end. Paragraphs that complete while a send waits for the pacer go together.
- ``DELTAS`` (web): every delta handed to a callback as it comes.

Times are the running loop's clock, so a test on a virtual-time loop is exact.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence

from channels.base import (
    Capabilities,
    Channel,
    RateLimited,
    RenderedPart,
    SendError,
    StreamMode,
    Suggestion,
    TextFormat,
)
from channels.markdown import PLAIN_STYLE, RichText, parse_markdown, render_rich
from channels.pacing import Pacer
from channels.rendering import render, render_parts, split_rich_ranges

log = logging.getLogger(__name__)

_PARAGRAPH_EDGE = re.compile(r"\n[ \t]*\n")
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def complete_paragraphs(source: str, start: int = 0) -> int:
    """The end of the last complete paragraph in ``source[start:]`` (``start`` if none).

    A blank line inside a fenced code block is not a paragraph edge.
    """
    edges = [m.end() for m in _PARAGRAPH_EDGE.finditer(source, start)]
    for edge in reversed(edges):
        if len(_FENCE.findall(source, 0, edge)) % 2 == 0:
            return edge
    return start


class StreamDelivery:
    """Delivers one streamed reply to one conversation through a channel adapter.

    ``pacer``, when given, is awaited before every send and edit.
    ``suggestions`` ride on the last message. ``on_delta`` receives every delta
    in ``DELTAS`` mode. :attr:`sent` holds the provider ids sent so far, also
    after an error.
    """

    def __init__(
        self,
        channel: Channel,
        conversation: str,
        *,
        capabilities: Capabilities | None = None,
        pacer: Pacer | None = None,
        suggestions: Sequence[Suggestion] = (),
        on_delta: Callable[[str], Awaitable[None]] | None = None,
        interactive_text_limit: int | None = None,
        list_title: str = "Options",
    ) -> None:
        self.channel = channel
        self.conversation = conversation
        self.capabilities = capabilities or channel.capabilities
        self.pacer = pacer
        self.suggestions = tuple(suggestions)
        self.on_delta = on_delta
        self.interactive_text_limit = interactive_text_limit
        self.list_title = list_title
        self.sent: list[str] = []
        # EDIT mode state
        self._source = ""
        self._skip = 0  # characters of the parsed text already finished in earlier messages
        self._message: str | None = None
        self._shown = ""
        self._last_edit = float("-inf")
        self._lock = asyncio.Lock()
        self._flush_sleeping = False

    async def deliver(self, deltas: AsyncIterable[str]) -> list[str]:
        """Consume ``deltas`` to the end, delivering as the mode allows; the provider ids."""
        mode = self.capabilities.stream_mode
        if mode is StreamMode.DELTAS:
            if self.on_delta is None:
                raise ValueError("DELTAS mode needs an on_delta callback")
            async for delta in deltas:
                await self.on_delta(delta)
        elif mode is StreamMode.EDIT and self.capabilities.can_edit:
            await self._edit_mode(deltas)
        else:
            await self._paragraph_mode(deltas)
        return list(self.sent)

    # -- sends -------------------------------------------------------------------

    async def _send(self, part: RenderedPart, *, paced: bool = False) -> str:
        if self.pacer is not None and not paced:
            await self.pacer.wait(self.conversation)
        result = await self.channel.send(self.conversation, part)
        self.sent.append(result.provider_id)
        return result.provider_id

    async def _edit(self, provider_id: str, part: RenderedPart) -> None:
        if self.pacer is not None:
            await self.pacer.wait(self.conversation)
        await self.channel.edit(self.conversation, provider_id, part)

    # -- EDIT --------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _edit_mode(self, deltas: AsyncIterable[str]) -> None:
        flusher: asyncio.Task[None] | None = None
        try:
            async for delta in deltas:
                self._source += delta
                if self._message is None and not self.sent:
                    if self._source.strip():
                        async with self._lock:
                            await self._update(final=False)
                elif flusher is None or flusher.done():
                    if flusher is not None:
                        flusher.result()  # an error of the last flush stops the stream here
                    flusher = asyncio.create_task(self._flush_later())
        except BaseException:
            if flusher is not None:
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
            raise
        if flusher is not None:
            if self._flush_sleeping:
                # Its text goes out with the final edit; a flush already sending finishes.
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
            else:
                await flusher
        async with self._lock:
            await self._wait_edit_slot()
            await self._update(final=True)

    async def _wait_edit_slot(self) -> None:
        delay = self._last_edit + self.capabilities.min_edit_interval - self._now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _flush_later(self) -> None:
        self._flush_sleeping = True
        try:
            await self._wait_edit_slot()
        finally:
            self._flush_sleeping = False
        async with self._lock:
            await self._update(final=False)

    async def _update(self, *, final: bool) -> None:
        rich = parse_markdown(self._source)
        rest = rich.slice(self._skip, len(rich))
        text_format = self.capabilities.text_format
        limit = self.capabilities.max_text_length
        if final:
            await self._finish(rest)
            return
        ranges = split_rich_ranges(rest, text_format, limit, plain_too=True)
        base = self._skip
        for start, end in ranges[:-1]:
            # Outgrown: this part is done, formatted; the text goes on in a new message.
            await self._put(_formatted(rest.slice(start, end), text_format))
            self._message, self._shown = None, ""
            self._skip = base + end
        if ranges:
            start, end = ranges[-1]
            plain = render_rich(rest.slice(start, end), TextFormat.PLAIN)
            if plain != self._shown:
                await self._put(RenderedPart(plain, TextFormat.PLAIN), streaming=True)
                self._shown = plain

    async def _finish(self, rest: RichText) -> None:
        parts = render_parts(
            rest,
            self.capabilities,
            suggestions=self.suggestions,
            interactive_text_limit=self.interactive_text_limit,
            list_title=self.list_title,
        )
        for index, part in enumerate(parts):
            if index == 0 and self._message is not None:
                shown_as_is = (
                    not part.buttons
                    and self._shown == render_rich(rest, TextFormat.PLAIN).strip()
                    and all(span.style == PLAIN_STYLE for span in rest.spans)
                )
                if not shown_as_is:  # the provider refuses an edit that changes nothing
                    await self._edit(self._message, part)
            else:
                self._message = await self._send(part)

    async def _put(self, part: RenderedPart, *, streaming: bool = False) -> None:
        try:
            if self._message is None:
                self._message = await self._send(part)
            else:
                await self._edit(self._message, part)
        except RateLimited as e:
            if not streaming:
                raise
            # A skipped interim edit costs nothing: the next one carries the same text.
            if self.pacer is not None:
                self.pacer.back_off(e, self.conversation)
            self._last_edit = self._now() + (e.retry_after or 0.0)
            return
        except SendError as e:
            if not streaming or self._message is None:
                raise
            log.warning("interim edit to %s failed: %s", self.conversation, e)
        self._last_edit = self._now()

    # -- PARAGRAPHS --------------------------------------------------------------

    async def _paragraph_mode(self, deltas: AsyncIterable[str]) -> None:
        source: list[str] = []
        arrived = asyncio.Event()
        ended = False

        async def sender() -> None:
            cursor = 0
            while True:
                await arrived.wait()
                arrived.clear()
                text = "".join(source)
                if ended and not text[cursor:].strip() and not self.suggestions:
                    return
                if not ended and complete_paragraphs(text, cursor) == cursor:
                    continue
                if self.pacer is not None:
                    # Wait for the slot first, then take all that completed meanwhile.
                    await self.pacer.wait(self.conversation)
                text = "".join(source)
                if ended:
                    await self._send_markdown(text[cursor:], last=True, paced=True)
                    return
                cut = complete_paragraphs(text, cursor)
                await self._send_markdown(text[cursor:cut], last=False, paced=True)
                cursor = cut

        task = asyncio.create_task(sender())
        try:
            async for delta in deltas:
                if task.done():
                    break
                source.append(delta)
                arrived.set()
        except BaseException:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        ended = True
        arrived.set()
        await task

    async def _send_markdown(self, text: str, *, last: bool, paced: bool) -> None:
        parts = render(
            text,
            self.capabilities,
            suggestions=self.suggestions if last else (),
            interactive_text_limit=self.interactive_text_limit,
            list_title=self.list_title,
        )
        for index, part in enumerate(parts):
            await self._send(part, paced=paced and index == 0)


def _formatted(rich: RichText, text_format: TextFormat) -> RenderedPart:
    return RenderedPart(render_rich(rich, text_format), text_format)
