"""A streamed reply delivered as each channel allows, on a virtual-time loop."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from channels.base import (
    Capabilities,
    ProviderUnavailable,
    RateLimited,
    RenderedPart,
    SendRefused,
    SendResult,
    StreamMode,
    Suggestion,
    TextFormat,
    WebhookRequest,
    WebhookResult,
)
from channels.streaming import (
    LiveEntry,
    LiveResult,
    LiveStream,
    StreamDelivery,
    complete_paragraphs,
    final_parts,
)
from tests.channels.virtual_time import run

TELEGRAM = Capabilities(
    max_text_length=4096,
    text_format=TextFormat.TELEGRAM_HTML,
    can_edit=True,
    stream_mode=StreamMode.EDIT,
    min_edit_interval=1.0,
    max_buttons=8,
    max_button_label=64,
)
WHATSAPP = Capabilities(
    max_text_length=4096,
    text_format=TextFormat.WHATSAPP,
    stream_mode=StreamMode.PARAGRAPHS,
    max_buttons=3,
    max_button_label=20,
)


@dataclass(frozen=True)
class Call:
    kind: str  # "send" or "edit"
    at: float
    provider_id: str
    part: RenderedPart


class RecordingChannel:
    """A transport stand-in: records each send and edit with the loop's time."""

    name = "fake"

    def __init__(self, capabilities: Capabilities, *, limited_edits: int = 0) -> None:
        self.capabilities = capabilities
        self.calls: list[Call] = []
        self._limited_edits = limited_edits

    def _now(self) -> float:
        return round(asyncio.get_running_loop().time(), 3)

    def verify(self, request: WebhookRequest) -> None:
        raise NotImplementedError

    async def parse(self, bot: str, request: WebhookRequest) -> WebhookResult:
        raise NotImplementedError

    async def send(self, conversation: str, part: RenderedPart) -> SendResult:
        provider_id = f"m{sum(c.kind == 'send' for c in self.calls) + 1}"
        self.calls.append(Call("send", self._now(), provider_id, part))
        return SendResult(provider_id)

    async def edit(self, conversation: str, provider_id: str, part: RenderedPart) -> None:
        if self._limited_edits:
            self._limited_edits -= 1
            raise RateLimited("Too Many Requests", code="429", retry_after=2.0)
        self.calls.append(Call("edit", self._now(), provider_id, part))

    async def close(self) -> None:
        pass

    def of(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]


async def deltas(pieces: Sequence[str], every: float) -> AsyncIterator[str]:
    for piece in pieces:
        await asyncio.sleep(every)
        yield piece


def _words(count: int, *, bold_every: int = 0) -> list[str]:
    return [f"**w{i}** " if bold_every and i % bold_every == 0 else f"w{i} " for i in range(count)]


def test_telegram_edits_at_most_once_a_second_and_ends_formatted() -> None:
    channel = RecordingChannel(TELEGRAM)
    pieces = _words(50, bold_every=10)  # 50 deltas over 3 s

    ids = run(StreamDelivery(channel, "chat").deliver(deltas(pieces, 0.06)))

    assert ids == ["m1"]
    (first,) = channel.of("send")
    assert first.part.text_format is TextFormat.PLAIN and first.part.text == "w0"
    edits = channel.of("edit")
    assert 1 <= len(edits) <= 4
    times = [first.at] + [e.at for e in edits]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    *interim, last = edits
    assert all(e.part.text_format is TextFormat.PLAIN for e in interim)
    assert all("<b>" not in e.part.text and "**" not in e.part.text for e in interim)
    assert last.part.text_format is TextFormat.TELEGRAM_HTML
    assert last.part.text.startswith("<b>w0</b> w1") and last.part.text.endswith("w49")


def test_telegram_starts_a_new_message_when_the_text_outgrows_the_limit() -> None:
    channel = RecordingChannel(dataclasses.replace(TELEGRAM, max_text_length=100))
    pieces = [f"Sentence number {i} is here. " for i in range(20)]  # about 580 characters

    ids = run(StreamDelivery(channel, "chat").deliver(deltas(pieces, 0.3)))

    assert len(ids) >= 6
    finals: dict[str, RenderedPart] = {}
    for call in channel.calls:
        assert len(call.part.text) <= 100
        finals[call.provider_id] = call.part
    # Every message ends formatted and whole: together they hold the reply once.
    assert all(p.text_format is TextFormat.TELEGRAM_HTML for p in finals.values())
    assert " ".join(finals[i].text for i in ids) == "".join(pieces).strip()


def test_a_rate_limited_interim_edit_is_skipped_not_fatal() -> None:
    channel = RecordingChannel(TELEGRAM, limited_edits=1)
    run(StreamDelivery(channel, "chat").deliver(deltas(_words(30), 0.1)))
    edits = channel.of("edit")
    assert edits[-1].part.text.endswith("w29")
    # The 429 asked for 2 s: the next edit waited for it.
    assert edits[0].at >= channel.of("send")[0].at + 1.0 + 2.0


def test_telegram_buttons_arrive_with_the_final_edit() -> None:
    channel = RecordingChannel(TELEGRAM)
    yes_no = (Suggestion("y", "Yes"), Suggestion("n", "No"))
    run(StreamDelivery(channel, "c", suggestions=yes_no).deliver(deltas(_words(5), 0.1)))
    assert channel.calls[-1].part.buttons == yes_no
    assert all(not c.part.buttons for c in channel.calls[:-1])


def test_whatsapp_gets_whole_paragraphs_as_they_complete() -> None:
    channel = RecordingChannel(WHATSAPP)
    pieces = [
        "First **para",
        "graph** here.\n",
        "\nSecond one",
        ".\n\n```\ncode\n\n",
        "more\n```\n\n",
        "La",
        "st",
    ]

    ids = run(StreamDelivery(channel, "u").deliver(deltas(pieces, 1.0)))

    texts = [c.part.text for c in channel.of("send")]
    assert texts == ["First *paragraph* here.", "Second one.", "```code\n\nmore```", "Last"]
    assert ids == ["m1", "m2", "m3", "m4"]
    # Each paragraph went out once text followed it, not at the end.
    assert [c.at for c in channel.calls] == [3.0, 4.0, 6.0, 7.0]


def test_the_last_paragraph_waits_for_the_end_even_after_a_blank_line() -> None:
    channel = RecordingChannel(WHATSAPP)

    async def stream() -> LiveResult:
        live = LiveStream(channel, "u")
        for piece in ["One.\n\n", "Two.\n\n"]:
            live.feed(piece)
            await asyncio.sleep(1.0)
        return await live.close()

    result = run(stream())
    # "Two." is complete, but nothing follows it: it may be the whole reply's end, which
    # only the final step (after the turn commits) sends.
    assert [c.part.text for c in channel.calls] == ["One."]
    assert result.chars == len("One.\n\n") and result.provider_ids == ("m1",)
    assert [p.part.text for p in final_parts(result.source, result, WHATSAPP)] == ["Two."]


def test_paragraphs_waiting_for_the_pacer_go_together() -> None:
    from channels.pacing import Pacer

    slow = dataclasses.replace(WHATSAPP, chat_messages_per_second=1 / 6)
    channel = RecordingChannel(slow)
    pieces = ["One.\n\nT", "wo.\n\nThr", "ee.\n\nFo", "ur."]
    run(StreamDelivery(channel, "u", pacer=Pacer(slow)).deliver(deltas(pieces, 1.0)))
    assert [(c.at, c.part.text) for c in channel.calls] == [
        (1.0, "One."),
        # Two. waited 6 s for the pair rate; what completed meanwhile went with it.
        (7.0, "Two.\n\nThree.\n\nFour."),
    ]


def test_web_gets_every_delta() -> None:
    web = Capabilities(
        max_text_length=100_000, text_format=TextFormat.MARKDOWN, stream_mode=StreamMode.DELTAS
    )
    channel = RecordingChannel(web)
    seen: list[str] = []

    async def on_delta(delta: str) -> None:
        seen.append(delta)

    ids = run(StreamDelivery(channel, "w", on_delta=on_delta).deliver(deltas(["a", "b", "c"], 0.1)))
    assert seen == ["a", "b", "c"] and ids == [] and channel.calls == []


@pytest.mark.parametrize(
    ("source", "end"),
    [
        ("no edge yet", 0),
        ("one\n\ntwo", 5),
        ("one\n\ntwo\n\nthr", 10),
        ("```\na\n\nb", 0),
        ("```\na\n\nb\n```\n\nc", 14),
    ],
)
def test_complete_paragraphs(source: str, end: int) -> None:
    assert complete_paragraphs(source) == end


# -- live streams: what a turn sends before it commits, and its retry ------------------------


class EditableChannel(RecordingChannel):
    """Refuses edits of messages it never sent, as Telegram does (deleted, or not ours);
    ``slow_sends`` makes each send take that long."""

    def __init__(self, capabilities: Capabilities, *, slow_sends: float = 0.0) -> None:
        super().__init__(capabilities)
        self.known = {"m-earlier"}
        self.slow_sends = slow_sends

    async def send(self, conversation: str, part: RenderedPart) -> SendResult:
        if self.slow_sends:
            await asyncio.sleep(self.slow_sends)
        result = await super().send(conversation, part)
        self.known.add(result.provider_id)
        return result

    async def edit(self, conversation: str, provider_id: str, part: RenderedPart) -> None:
        if provider_id not in self.known:
            raise SendRefused("Bad Request: message to edit not found", code="400")
        await super().edit(conversation, provider_id, part)


async def live(
    channel: RecordingChannel, pieces: Sequence[str], every: float, **options: Any
) -> LiveResult:
    stream = LiveStream(channel, "chat", **options)
    for piece in pieces:
        await asyncio.sleep(every)
        stream.feed(piece)
    await asyncio.sleep(every)
    return await stream.close()


def test_a_live_stream_never_sends_the_final_formatted_edit() -> None:
    channel = RecordingChannel(TELEGRAM)
    result = run(live(channel, _words(20, bold_every=5), 0.1))
    assert channel.calls[0].kind == "send"
    assert all(c.part.text_format is TextFormat.PLAIN for c in channel.calls)
    assert result.editing == "m1" and result.parts_sent == 0
    # The final step, after the commit: the formatted edit of that message.
    (step,) = final_parts(result.source, result, TELEGRAM)
    assert step.edit_of == "m1" and step.part.text.startswith("<b>w0</b> w1")


def test_a_retried_turn_edits_the_message_its_first_attempt_sent() -> None:
    channel = EditableChannel(TELEGRAM)
    recorded: list[LiveEntry] = []

    async def record(entry: LiveEntry) -> bool:
        recorded.append(entry)
        return True

    result = run(live(channel, _words(5), 0.1, reuse=[LiveEntry("m-earlier")], on_sent=record))
    assert channel.of("send") == []
    assert {c.provider_id for c in channel.of("edit")} == {"m-earlier"}
    assert result.provider_ids == ("m-earlier",) and recorded == []


def test_a_message_that_cannot_be_edited_any_more_is_replaced_by_a_new_one() -> None:
    channel = EditableChannel(TELEGRAM)
    recorded: list[LiveEntry] = []

    async def record(entry: LiveEntry) -> bool:
        recorded.append(entry)
        return True

    result = run(live(channel, _words(5), 0.1, reuse=[LiveEntry("m-gone")], on_sent=record))
    assert channel.calls[0].kind == "send"
    assert result.provider_ids == ("m1",) and recorded == [LiveEntry("m1")]


def test_a_retry_counts_the_paragraphs_it_would_send_the_same_as_sent() -> None:
    first = RecordingChannel(WHATSAPP)
    recorded: list[LiveEntry] = []

    async def record(entry: LiveEntry) -> bool:
        recorded.append(entry)
        return True

    pieces = ["One.\n\n", "Two.\n\n", "Three.\n\n", "Four."]
    run(live(first, pieces, 1.0, on_sent=record))
    assert [c.part.text for c in first.calls] == ["One.", "Two.", "Three."]

    # The same answer: nothing is sent again; the final step sends what is left.
    again = RecordingChannel(WHATSAPP)
    result = run(live(again, pieces, 1.0, reuse=recorded))
    assert again.calls == []
    assert result.provider_ids == ("m1", "m2", "m3") and result.parts_sent == 3
    assert [p.part.text for p in final_parts(result.source, result, WHATSAPP)] == ["Four."]

    # Another answer from its second paragraph on: the first counts, the rest goes anew.
    other = RecordingChannel(WHATSAPP)
    result = run(live(other, ["One.\n\n", "Deux.\n\n", "Trois."], 1.0, reuse=recorded))
    assert [c.part.text for c in other.calls] == ["Deux."]
    assert result.provider_ids == ("m1", "m1")  # the earlier attempt's, then this one's


def test_closing_waits_for_a_send_on_its_way_and_counts_it() -> None:
    channel = EditableChannel(TELEGRAM, slow_sends=5.0)

    async def stream() -> LiveResult:
        stream = LiveStream(channel, "chat")
        stream.feed("Hello")
        await asyncio.sleep(1.0)  # the send is on its way
        return await stream.close()

    result = run(stream())
    assert [c.kind for c in channel.calls] == ["send"]
    assert result.provider_ids == ("m1",) and result.editing == "m1"


def test_a_failed_live_send_stops_the_stream_and_leaves_the_rest_to_the_final_step() -> None:
    class Failing(RecordingChannel):
        async def send(self, conversation: str, part: RenderedPart) -> SendResult:
            raise ProviderUnavailable("Bad Gateway", code="502")

    channel = Failing(TELEGRAM)

    async def stream() -> tuple[LiveResult, LiveStream]:
        stream = LiveStream(channel, "chat")
        for piece in _words(10):
            stream.feed(piece)
            await asyncio.sleep(0.2)
        return await stream.close(), stream

    result, stream = run(stream())
    assert isinstance(stream.error, ProviderUnavailable)
    assert result.provider_ids == ()
    assert result.for_text(result.source) is None  # the reply then goes out whole
