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

Delivery comes in two steps, so that the last one can wait for a commit:

1. :class:`LiveStream` takes the deltas as they arrive (:meth:`LiveStream.feed`)
   and sends what may go out before the reply is final: Telegram's plain
   interim text (and the formatted edit of a message the text outgrew), the
   paragraphs of WhatsApp and SMS that something non-blank already follows.
   It never sends the last step, so a stream cut short (the turn failed, the
   process died) never shows a complete answer. :meth:`LiveStream.close`
   says what went out (:class:`LiveResult`), also after a failed send: a
   failed live send only stops the stream, the last step delivers the rest.
2. :func:`final_parts` plans the last step from the reply's final text and
   that result: the formatted edit of the message being streamed, new
   messages past the limit, the paragraphs not sent yet; suggestions ride on
   the last of them. :class:`StreamDelivery` runs both steps at once; the
   delivery worker runs the second from the outbox once the turn committed.

A retried turn passes what its earlier attempt sent (``reuse``): Telegram's
messages are edited rather than sent again, and paragraphs whose text (and
everything before it) is the same are counted as sent, not sent twice.

Times are the running loop's clock, so a test on a virtual-time loop is exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from channels.base import (
    Capabilities,
    Channel,
    RateLimited,
    RenderedPart,
    SendError,
    SendRefused,
    StreamMode,
    Suggestion,
    TextFormat,
)
from channels.markdown import RichText, parse_markdown, render_rich
from channels.pacing import Pacer
from channels.rendering import render, render_parts, split_rich_ranges

log = logging.getLogger(__name__)

_PARAGRAPH_EDGE = re.compile(r"\n[ \t]*\n")
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def complete_paragraphs(source: str, start: int = 0, *, followed: bool = False) -> int:
    """The end of the last complete paragraph in ``source[start:]`` (``start`` if none).

    A blank line inside a fenced code block is not a paragraph edge. With
    ``followed``, only an edge that non-blank text already follows counts: the
    reply's last paragraph is never taken for a complete one.
    """
    edges = [m.end() for m in _PARAGRAPH_EDGE.finditer(source, start)]
    for edge in reversed(edges):
        if followed and not source[edge:].strip():
            continue
        if len(_FENCE.findall(source, 0, edge)) % 2 == 0:
            return edge
    return start


def prefix_digest(source: str, end: int) -> str:
    """What identifies ``source[:end]`` in a record: a retry sends it the same or not."""
    return hashlib.sha256(source[:end].encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class LiveEntry:
    """One provider message a live stream sent, as its turn records it.

    PARAGRAPHS: ``end`` and ``digest`` on the last message of a send say it
    carried ``source`` up to ``end`` (and what that text was).
    """

    provider_id: str
    end: int | None = None
    digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.provider_id}
        if self.end is not None:
            data["end"] = self.end
            data["sha"] = self.digest
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiveEntry:
        end = data.get("end")
        return cls(
            str(data["id"]),
            end=int(end) if end is not None else None,
            digest=str(data["sha"]) if data.get("sha") is not None else None,
        )


@dataclass(frozen=True, slots=True)
class LiveResult:
    """What a live stream sent before the reply was final.

    ``provider_ids``: the messages it used, in order. EDIT: the first
    ``finished`` are done (formatted, ``skip`` characters of the parsed text
    between them); the next one, if any, shows the plain text after them.
    PARAGRAPHS: they hold ``source[:chars]``. ``at``: wall-clock time of its
    last request, so the final edit keeps the edit interval from any instance.
    """

    mode: StreamMode
    source: str
    provider_ids: tuple[str, ...] = ()
    finished: int = 0
    skip: int = 0
    chars: int = 0
    at: float | None = None

    @property
    def editing(self) -> str | None:
        """EDIT: the message the final edit goes to (the one after the finished ones)."""
        if self.mode is StreamMode.EDIT and len(self.provider_ids) > self.finished:
            return self.provider_ids[self.finished]
        return None

    @property
    def parts_sent(self) -> int:
        """Parts of the final reply already delivered (the final step goes on after them)."""
        return self.finished if self.mode is StreamMode.EDIT else len(self.provider_ids)

    def for_text(self, text: str) -> LiveResult | None:
        """This result applied to the reply ``text`` its turn committed (``None``: nothing
        of it stands for that reply, which then goes out whole).

        The text is normally the source streamed. Another text (an error reply after a
        stream cut short) takes over the message being edited; it cannot take over
        paragraphs that are not its own beginning.
        """
        if not self.provider_ids:
            return None
        if text == self.source:
            return self
        if self.mode is StreamMode.EDIT:
            return dataclasses.replace(self, source=text, skip=0)
        if text.startswith(self.source[: self.chars]):
            return dataclasses.replace(self, source=text)
        return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode.value, "ids": list(self.provider_ids)}
        if self.mode is StreamMode.EDIT:
            data.update(finished=self.finished, skip=self.skip)
        else:
            data["chars"] = self.chars
        if self.at is not None:
            data["at"] = self.at
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> LiveResult:
        """Read back :meth:`to_json`; ``ValueError`` for data of another shape."""
        try:
            at = data.get("at")
            return cls(
                mode=StreamMode(data["mode"]),
                source=source,
                provider_ids=tuple(str(i) for i in data["ids"]),
                finished=int(data.get("finished", 0)),
                skip=int(data.get("skip", 0)),
                chars=int(data.get("chars", 0)),
                at=float(at) if at is not None else None,
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"live delivery record: {e!r}") from e


@dataclass(frozen=True, slots=True)
class FinalPart:
    """One request of the final step: a send, or the edit of message ``edit_of``."""

    part: RenderedPart
    edit_of: str | None = None


def final_parts(
    text: str,
    live: LiveResult | None,
    capabilities: Capabilities,
    *,
    suggestions: Sequence[Suggestion] = (),
    interactive_text_limit: int | None = None,
    list_title: str = "Options",
) -> list[FinalPart]:
    """The requests that finish the reply ``text`` after what ``live`` sent.

    EDIT: the text after the finished messages, formatted, edits the message
    being streamed and goes on in new messages past the limit. PARAGRAPHS: the
    paragraphs not sent yet. Suggestions ride on the last part.
    """
    options = {
        "suggestions": suggestions,
        "interactive_text_limit": interactive_text_limit,
        "list_title": list_title,
    }
    if live is None:
        return [FinalPart(p) for p in render(text, capabilities, **options)]  # type: ignore[arg-type]
    if live.mode is StreamMode.EDIT:
        rich = parse_markdown(text)
        rest = rich.slice(min(live.skip, len(rich)), len(rich))
        parts = render_parts(rest, capabilities, **options)  # type: ignore[arg-type]
        target = live.editing
        return [
            FinalPart(part, edit_of=target if index == 0 else None)
            for index, part in enumerate(parts)
        ]
    return [FinalPart(p) for p in render(text[live.chars :], capabilities, **options)]  # type: ignore[arg-type]


class _Stopped(Exception):
    """The live stream was closed before its next request."""


# A live stream's record of a message it sent: ``False`` (or an error) stops the stream.
RecordSent = Callable[[LiveEntry], Awaitable[bool]]


class LiveStream:
    """Sends one streamed reply to one conversation as it grows; see the module doc.

    ``pacer``, when given, is awaited before every send and edit. ``reuse``:
    what an earlier attempt of the same turn sent. ``on_sent`` records each new
    provider message before the stream goes on (its failure stops the stream).
    """

    def __init__(
        self,
        channel: Channel,
        conversation: str,
        *,
        capabilities: Capabilities | None = None,
        pacer: Pacer | None = None,
        reuse: Sequence[LiveEntry] = (),
        on_sent: RecordSent | None = None,
        interactive_text_limit: int | None = None,
    ) -> None:
        self.channel = channel
        self.conversation = conversation
        self.capabilities = capabilities or channel.capabilities
        if self.capabilities.stream_mode is StreamMode.DELTAS:
            raise ValueError("a DELTAS channel takes the deltas themselves, not a live stream")
        self.mode = (
            StreamMode.EDIT
            if self.capabilities.stream_mode is StreamMode.EDIT and self.capabilities.can_edit
            else StreamMode.PARAGRAPHS
        )
        self.pacer = pacer
        self.interactive_text_limit = interactive_text_limit
        self.error: BaseException | None = None
        self._reuse = list(reuse)
        self._on_sent = on_sent
        self._source = ""
        self._ids: list[str] = []
        self._at: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._requesting = False  # a provider request (or its record) is on its way
        # EDIT
        self._skip = 0  # characters of the parsed text finished in earlier messages
        self._finished = 0
        self._message: str | None = None
        self._shown = ""
        self._last_edit = float("-inf")
        self._reused = 0
        # PARAGRAPHS
        self._chars = 0

    @property
    def source(self) -> str:
        """The text fed so far."""
        return self._source

    @property
    def sent(self) -> list[str]:
        """The provider messages used so far, in order."""
        return list(self._ids)

    @property
    def reused(self) -> int:
        """How many of the ``reuse`` entries this stream took up (or passed over)."""
        return self._reused

    def feed(self, delta: str) -> None:
        """Take the next delta; what may go out is sent in the background."""
        if self._closing:
            raise RuntimeError("the live stream is closed")
        self._source += delta
        if self.error is not None:
            return
        if self._task is None:
            run = self._edit_mode if self.mode is StreamMode.EDIT else self._paragraph_mode
            self._task = asyncio.get_running_loop().create_task(self._guard(run))
        self._wake.set()

    async def close(self) -> LiveResult:
        """Stop sending (a request on its way is waited for, a wait is cut short) and say
        what went out."""
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            if self._requesting:
                self._wake.set()  # it looks at _closing once its request is answered
            else:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return LiveResult(
            mode=self.mode,
            source=self._source,
            provider_ids=tuple(self._ids),
            finished=self._finished,
            skip=self._skip,
            chars=self._chars,
            at=self._at,
        )

    async def _guard(self, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await run()
        except (asyncio.CancelledError, _Stopped):
            return
        except Exception as e:  # the final step delivers what this did not
            self.error = e
            log.warning(
                "live stream to %s %s stopped after %d messages: %s",
                self.channel.name,
                self.conversation,
                len(self._ids),
                e,
            )

    # -- requests ----------------------------------------------------------------

    def next_edit_in(self) -> float:
        """Seconds until an edit keeps the channel's edit interval after the last one."""
        return max(0.0, self._last_edit + self.capabilities.min_edit_interval - self._now())

    async def _paced(self) -> None:
        if self._closing:
            raise _Stopped
        if self.pacer is not None:
            await self.pacer.wait(self.conversation)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _request(self, call: Callable[[], Awaitable[Any]]) -> Any:
        if self._closing:
            raise _Stopped
        self._requesting = True
        try:
            result = await call()
        finally:
            self._requesting = False
            self._at = time.time()
        return result

    async def _record(self, entry: LiveEntry) -> None:
        self._ids.append(entry.provider_id)
        if self._on_sent is None:
            return
        self._requesting = True
        try:
            if not await self._on_sent(entry):
                raise SendRefused("the turn's claim was lost: its live stream stops")
        finally:
            self._requesting = False

    # -- EDIT --------------------------------------------------------------------

    async def _edit_mode(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            if self._message is not None or self._ids:
                await self._wait_edit_slot()
                self._wake.clear()  # what came meanwhile goes with this update
            elif not self._source.strip():
                continue
            await self._update()

    async def _wait_edit_slot(self) -> None:
        delay = self._last_edit + self.capabilities.min_edit_interval - self._now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _update(self) -> None:
        rich = parse_markdown(self._source)
        rest = rich.slice(self._skip, len(rich))
        text_format = self.capabilities.text_format
        limit = self.capabilities.max_text_length
        ranges = split_rich_ranges(rest, text_format, limit, plain_too=True)
        base = self._skip
        for start, end in ranges[:-1]:
            # Outgrown: this part is done, formatted; the text goes on in a new message.
            await self._put(_formatted(rest.slice(start, end), text_format))
            self._finished += 1
            self._message, self._shown = None, ""
            self._skip = base + end
        if ranges:
            start, end = ranges[-1]
            plain = render_rich(rest.slice(start, end), TextFormat.PLAIN)
            if plain != self._shown:
                await self._put(RenderedPart(plain, TextFormat.PLAIN), streaming=True)

    async def _put(self, part: RenderedPart, *, streaming: bool = False) -> None:
        try:
            if self._message is None:
                self._message = await self._new_message(part)
            else:
                await self._paced()
                await self._request(
                    functools.partial(self.channel.edit, self.conversation, self._message, part)
                )
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
        else:
            if streaming:
                self._shown = part.text
        self._last_edit = self._now()

    async def _new_message(self, part: RenderedPart) -> str:
        """A message for ``part``: one an earlier attempt sent, edited, or a new one."""
        while self._reused < len(self._reuse):
            earlier = self._reuse[self._reused].provider_id
            self._reused += 1
            await self._paced()
            try:
                await self._request(
                    functools.partial(self.channel.edit, self.conversation, earlier, part)
                )
            except SendRefused as e:  # gone (deleted, too old to edit): a new one
                log.info("live stream: message %s of an earlier attempt not reused: %s", earlier, e)
                continue
            self._ids.append(earlier)  # already in the turn's record
            return earlier
        await self._paced()
        result = await self._request(functools.partial(self.channel.send, self.conversation, part))
        await self._record(LiveEntry(result.provider_id))
        return str(result.provider_id)

    # -- PARAGRAPHS --------------------------------------------------------------

    async def _paragraph_mode(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            if self._sendable() == self._chars or not self._take_reused():
                continue
            if self._sendable() == self._chars:
                continue
            # Wait for the slot first, then take all that completed meanwhile.
            await self._paced()
            cut = self._sendable()
            parts = render(
                self._source[self._chars : cut],
                self.capabilities,
                interactive_text_limit=self.interactive_text_limit,
            )
            for index, part in enumerate(parts):
                if index:
                    await self._paced()
                result = await self._request(
                    functools.partial(self.channel.send, self.conversation, part)
                )
                last = index == len(parts) - 1
                await self._record(
                    LiveEntry(
                        result.provider_id,
                        end=cut if last else None,
                        digest=prefix_digest(self._source, cut) if last else None,
                    )
                )
            self._chars = cut

    def _sendable(self) -> int:
        return complete_paragraphs(self._source, self._chars, followed=True)

    def _take_reused(self) -> bool:
        """Count as sent the paragraphs an earlier attempt sent with the same text (and
        everything before it the same); ``False`` while the text does not reach the end of
        the earlier attempt's next send yet (sending now could repeat what it sent)."""
        reuse = self._reuse
        while self._reused < len(reuse):
            last = self._reused
            while last < len(reuse) and reuse[last].end is None:
                last += 1
            if last == len(reuse):  # that attempt stopped inside a send: not reusable
                break
            entry = reuse[last]
            assert entry.end is not None
            if entry.end > self._sendable():
                return False
            if entry.end <= self._chars or entry.digest != prefix_digest(self._source, entry.end):
                break  # another text: what it sent stays, this attempt's goes out anew
            self._ids.extend(e.provider_id for e in reuse[self._reused : last + 1])
            self._chars = entry.end
            self._reused = last + 1
        self._reused = len(reuse)
        return True


class StreamDelivery:
    """Delivers one streamed reply to one conversation through a channel adapter, both
    steps at once (see the module doc).

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

    async def deliver(self, deltas: AsyncIterable[str]) -> list[str]:
        """Consume ``deltas`` to the end, delivering as the mode allows; the provider ids."""
        if self.capabilities.stream_mode is StreamMode.DELTAS:
            if self.on_delta is None:
                raise ValueError("DELTAS mode needs an on_delta callback")
            async for delta in deltas:
                await self.on_delta(delta)
            return []
        live = LiveStream(
            self.channel,
            self.conversation,
            capabilities=self.capabilities,
            pacer=self.pacer,
            interactive_text_limit=self.interactive_text_limit,
        )
        try:
            async for delta in deltas:
                live.feed(delta)
        finally:
            result = await live.close()
            self.sent = list(result.provider_ids)
        if live.error is not None:
            raise live.error
        if result.mode is StreamMode.EDIT and result.editing is not None:
            # The final edit keeps the interval after the last interim one.
            await asyncio.sleep(live.next_edit_in())
        for step in final_parts(
            result.source,
            result,
            self.capabilities,
            suggestions=self.suggestions,
            interactive_text_limit=self.interactive_text_limit,
            list_title=self.list_title,
        ):
            if self.pacer is not None:
                await self.pacer.wait(self.conversation)
            if step.edit_of is not None:
                await self.channel.edit(self.conversation, step.edit_of, step.part)
            else:
                sent = await self.channel.send(self.conversation, step.part)
                self.sent.append(sent.provider_id)
        return list(self.sent)


def _formatted(rich: RichText, text_format: TextFormat) -> RenderedPart:
    return RenderedPart(render_rich(rich, text_format), text_format)
