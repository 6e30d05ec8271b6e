"""A streamed reply delivered as each channel allows, on a virtual-time loop."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from channels.base import (
    Capabilities,
    RateLimited,
    RenderedPart,
    SendResult,
    StreamMode,
    Suggestion,
    TextFormat,
    WebhookRequest,
    WebhookResult,
)
from channels.streaming import StreamDelivery, complete_paragraphs
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
        "Last",
    ]

    ids = run(StreamDelivery(channel, "u").deliver(deltas(pieces, 1.0)))

    texts = [c.part.text for c in channel.of("send")]
    assert texts == ["First *paragraph* here.", "Second one.", "```code\n\nmore```", "Last"]
    assert ids == ["m1", "m2", "m3", "m4"]
    # The first paragraph went out when it completed, not at the end.
    assert channel.calls[0].at == 3.0


def test_paragraphs_waiting_for_the_pacer_go_together() -> None:
    from channels.pacing import Pacer

    slow = dataclasses.replace(WHATSAPP, chat_messages_per_second=1 / 6)
    channel = RecordingChannel(slow)
    pieces = ["One.\n\n", "Two.\n\n", "Three.\n\n", "Four."]
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
