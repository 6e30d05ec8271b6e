"""Which messages are held back for a window, and which of the pending ones belong with a
leased message: albums by their id, bursts by time, actions never."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from channels.base import Attachment, InboundMessage, MediaKind
from pipeline.gathering import TAG, GatherPolicy, gather, merge
from pipeline.message_codec import inbound_from_json, inbound_to_json


def message(
    text: str = "",
    *,
    channel: str = "telegram",
    external_id: str = "1",
    photo: str | None = None,
    **raw: Any,
) -> InboundMessage:
    attachments = ()
    if photo is not None:
        attachments = (
            Attachment(MediaKind.IMAGE, "image/jpeg", provider_id=photo, caption=text or None),
        )
    return InboundMessage(
        channel=channel,
        bot="b",
        conversation="c",
        sender="c",
        external_id=external_id,
        text=text,
        attachments=attachments,
        raw=raw,
    )


def row(policy: GatherPolicy, msg: InboundMessage) -> dict[str, Any]:
    """The message as its inbox row keeps it, with its mark."""
    data = inbound_to_json(msg)
    mark = policy.mark(msg)
    if mark is not None:
        data[TAG] = mark[0]
    return data


def test_the_defaults_hold_back_album_items_only() -> None:
    policy = GatherPolicy()
    assert policy.mark(message("hello")) is None
    tag, hold = policy.mark(message(photo="p", media_group_id="77")) or ({}, 0.0)
    assert hold == 1.0 and tag["album"] == "telegram:77"
    assert policy.mark(message(photo="p")) is None  # a photo alone is not an album
    # WhatsApp has no album id: its photos and videos, sent one after another, are one.
    wa = message(channel="whatsapp", photo="9", message={"type": "image"})
    assert (policy.mark(wa) or ({}, 0.0))[0]["album"] == "whatsapp:media"
    twilio = message(channel="twilio-whatsapp", photo="MM1", MessageSid="MM1")
    assert (policy.mark(twilio) or ({}, 0.0))[0]["album"] == "twilio-whatsapp:media"
    assert policy.mark(message(channel="twilio-sms", photo="MM2")) is None  # MMS: one message
    assert policy.mark(message(photo="p", channel="web", media_group_id="77")) is None


def test_actions_are_never_held_back() -> None:
    policy = GatherPolicy(album_window=1.0, burst_window=2.0)
    assert policy.mark(message("words")) == (
        {"album": None, "album_window": 1.0, "burst_window": 2.0},
        2.0,
    )
    assert policy.mark(message("/start", command="/start", command_args="")) is None
    assert policy.mark(message("yes", callback_query_id="9", callback_data="yes")) is None
    assert policy.mark(message("fixed", edited=True)) is None
    for kind in ("interactive", "button"):
        assert policy.mark(message("k", channel="whatsapp", message={"type": kind})) is None
    assert policy.mark(message("ok", channel="twilio-whatsapp", ButtonPayload="ok")) is None
    assert policy.mark(message("words", channel="twilio-sms")) is not None
    assert GatherPolicy(album_window=0).mark(message(photo="p", media_group_id="7")) is None


def test_an_album_takes_its_own_items_within_the_window_and_stops_at_anything_else() -> None:
    policy = GatherPolicy()
    head = row(policy, message("trip", external_id="1", photo="a", media_group_id="7"))
    second = row(policy, message(external_id="2", photo="b", media_group_id="7"))
    third = row(policy, message(external_id="3", photo="c", media_group_id="7"))
    other = row(policy, message(external_id="4", photo="d", media_group_id="8"))
    text = row(policy, message("and this", external_id="5"))
    decided = gather(head, [(second, 0.1), (third, 0.2), (other, 0.3), (text, 0.4)])
    assert decided is not None
    count, merged = decided
    assert count == 2
    turn = inbound_from_json(merged)
    assert [a.provider_id for a in turn.attachments] == ["a", "b", "c"]
    assert [a.caption for a in turn.attachments] == ["trip", None, None]
    assert (turn.text, turn.external_id, turn.raw["merged"]) == ("trip", "1", ["2", "3"])
    assert merged[TAG] == head[TAG]  # a retried turn gathers by the same rule
    # An item written after the window runs its own turn; so does one after a gap.
    assert gather(head, [(second, 1.5)]) is None
    assert gather(head, [(text, 0.1), (second, 0.2)]) is None


def test_a_burst_takes_the_plain_messages_written_within_the_window() -> None:
    policy = GatherPolicy(burst_window=2.0)
    head = row(policy, message("I would like", external_id="1"))
    lines = [row(policy, message(t, external_id=str(n))) for n, t in [(2, "a table"), (3, "now")]]
    late = row(policy, message("later", external_id="4"))
    command = row(policy, message("/help", external_id="5", command="/help", command_args=""))
    decided = gather(head, [(lines[0], 0.5), (lines[1], 1.9), (late, 2.1)])
    assert decided is not None and decided[0] == 2
    assert inbound_from_json(decided[1]).text == "I would like\na table\nnow"
    assert gather(head, [(command, 0.1), (lines[0], 0.2)]) is None
    # Messages not marked (no window when they came) are never taken.
    assert gather(head, [(inbound_to_json(message("x", external_id="6")), 0.1)]) is None
    assert gather(inbound_to_json(message("x")), [(lines[0], 0.1)]) is None
    # An unreadable row folds nothing in, and is never folded into another.
    assert gather({TAG: head[TAG]}, [(lines[0], 0.1)]) is None
    assert gather(head, [({TAG: head[TAG]}, 0.1), (lines[0], 0.2)]) is None


def test_a_merge_after_a_merge_keeps_every_folded_id_in_order() -> None:
    first = merge(message("a", external_id="1"), [message("b", external_id="2")])
    again = merge(first, [message("c", external_id="3", photo="p")])
    assert (again.text, again.raw["merged"], len(again.attachments)) == ("a\nb\nc", ["2", "3"], 1)


@pytest.mark.parametrize("value", ["soon", "-5", "60000"])
def test_a_window_that_is_not_a_number_of_milliseconds_is_logged_and_the_default_kept(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        policy = GatherPolicy.from_config("b", {"album-window": value, "burst-window": "1500"})
    assert (policy.album_window, policy.burst_window) == (1.0, 1.5)
    assert "album-window" in caplog.text and value in caplog.text
