"""The WhatsApp Cloud API adapter against a fake Graph API on 127.0.0.1.

Webhook payloads are shaped as in Meta's webhook reference; sends are read
back as the JSON the fake received.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from multidict import CIMultiDict

from channels.base import (
    Channel,
    ChannelNotConfigured,
    MediaKind,
    OutcomeUnknown,
    PayloadError,
    ProviderUnavailable,
    RateLimited,
    RenderedPart,
    SendError,
    SendRefused,
    StreamMode,
    Suggestion,
    TextFormat,
    VerificationError,
    WebhookRequest,
    WindowClosed,
)
from channels.whatsapp import WhatsAppChannel
from tests.channels.fake_graph import PHONE_NUMBER_ID, TOKEN, FakeGraphApi

APP_SECRET = "e5a8f0c4b1d2a3f49c7e6b5d4c3b2a10"
VERIFY_TOKEN = "meatyhamhock"
USER = "16505551234"
WEBHOOK = "https://bots.example.com/webhooks/whatsapp/shop"
CONFIG = {
    "whatsapp-api-key": TOKEN,
    "whatsapp-phone-number-id": PHONE_NUMBER_ID,
    "whatsapp-app-secret": APP_SECRET,
    "whatsapp-verify-token": VERIFY_TOKEN,
}


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphApi]:
    fake = FakeGraphApi()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def channel(graph: FakeGraphApi) -> AsyncIterator[WhatsAppChannel]:
    adapter = WhatsAppChannel.from_config(
        "shop", CONFIG | {"whatsapp-api-url": graph.api_url}, read_timeout=0.3
    )
    yield adapter
    await adapter.close()


def offline_channel(**overrides: str) -> WhatsAppChannel:
    return WhatsAppChannel.from_config("shop", CONFIG | overrides)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(body: bytes, signature: str | None) -> WebhookRequest:
    headers = CIMultiDict({"Content-Type": "application/json"})
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return WebhookRequest(method="POST", url=WEBHOOK, headers=headers, query={}, body=body)


def handshake(**query: str) -> WebhookRequest:
    return WebhookRequest(method="GET", url=WEBHOOK, headers=CIMultiDict(), query=query, body=b"")


def notification(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """A ``messages`` webhook as Meta sends it."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["contacts"] = [
            {"profile": {"name": "Sheena Nelson"}, "wa_id": USER, "user_id": "US.1349120865530"}
        ]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }


def inbound(
    kind: str,
    content: dict[str, Any],
    wamid: str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
) -> dict[str, Any]:
    return {"from": USER, "id": wamid, "timestamp": "1749416383", "type": kind, kind: content}


async def parse(channel: WhatsAppChannel, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    request = post(body, sign(body))
    channel.verify(request)
    return await channel.parse("shop", request)


# -- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["whatsapp-api-key", "whatsapp-phone-number-id", "whatsapp-app-secret"]
)
def test_a_missing_secret_keeps_the_channel_off_and_says_which(missing: str) -> None:
    with pytest.raises(ChannelNotConfigured, match=missing):
        WhatsAppChannel.from_config("shop", CONFIG | {missing: "  "})


def test_capabilities_and_contract() -> None:
    adapter = offline_channel()
    assert isinstance(adapter, Channel)
    caps = adapter.capabilities
    assert (caps.max_text_length, caps.text_format, caps.stream_mode) == (
        4096,
        TextFormat.WHATSAPP,
        StreamMode.PARAGRAPHS,
    )
    assert (caps.max_buttons, caps.max_button_label) == (3, 20)
    assert (caps.max_list_rows, caps.max_list_row_title) == (10, 24)
    assert (caps.messages_per_second, caps.chat_messages_per_second) == (80, 1 / 6)
    assert not caps.can_edit


# -- webhook authentication -------------------------------------------------------


def test_a_correctly_signed_body_is_accepted() -> None:
    body = json.dumps(notification(messages=[])).encode()
    offline_channel().verify(post(body, sign(body)))


@pytest.mark.parametrize(
    ("case", "signature"),
    [
        ("missing", None),
        ("empty", ""),
        ("other secret", sign(b"{}", "not-the-app-secret")),
        ("no scheme", hmac.new(APP_SECRET.encode(), b"{}", hashlib.sha256).hexdigest()),
        ("sha1 scheme", "sha1=" + hmac.new(APP_SECRET.encode(), b"{}", hashlib.sha1).hexdigest()),
        ("other body", sign(b'{"entry": []}')),
    ],
)
def test_forged_or_missing_signatures_are_refused(case: str, signature: str | None) -> None:
    with pytest.raises(VerificationError):
        offline_channel().verify(post(b"{}", signature))


async def test_the_handshake_echoes_the_challenge_for_the_right_token() -> None:
    adapter = offline_channel()
    request = handshake(
        **{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    )
    adapter.verify(request)
    result = await adapter.parse("shop", request)
    assert result.response is not None
    assert (result.response.status, result.response.body) == (200, b"1158201444")
    assert result.messages == ()


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
    ],
)
async def test_the_handshake_is_refused_otherwise(query: dict[str, str]) -> None:
    adapter = offline_channel()
    with pytest.raises(VerificationError):
        adapter.verify(handshake(**query))
    with pytest.raises(VerificationError):
        await adapter.parse("shop", handshake(**query))


def test_without_a_verify_token_no_handshake_succeeds() -> None:
    adapter = offline_channel(**{"whatsapp-verify-token": ""})
    query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    with pytest.raises(VerificationError, match="verify-token"):
        adapter.verify(handshake(**query))


# -- parsing ----------------------------------------------------------------------

MEDIA_ID = "1013859600285441"

MESSAGES = [
    # (type, content, expected text, expected attachment (kind, mime, caption, filename) or None)
    (
        "text",
        {"body": "Hello, is it me you're looking for?"},
        "Hello, is it me you're looking for?",
        None,
    ),
    (
        "interactive",
        {"type": "button_reply", "button_reply": {"id": "opt-yes", "title": "Yes please"}},
        "opt-yes",
        None,
    ),
    (
        "interactive",
        {
            "type": "list_reply",
            "list_reply": {"id": "priority", "title": "Priority Mail", "description": "1-3 days"},
        },
        "priority",
        None,
    ),
    ("button", {"payload": "STOP-PROMOS", "text": "Stop promotions"}, "STOP-PROMOS", None),
    (
        "image",
        {"caption": "my receipt", "mime_type": "image/jpeg", "sha256": "abc=", "id": MEDIA_ID},
        "my receipt",
        (MediaKind.IMAGE, "image/jpeg", "my receipt", None),
    ),
    (
        "audio",
        {"mime_type": "audio/ogg; codecs=opus", "sha256": "abc=", "id": MEDIA_ID, "voice": True},
        "",
        (MediaKind.AUDIO, "audio/ogg; codecs=opus", None, None),
    ),
    (
        "video",
        {"mime_type": "video/mp4", "sha256": "abc=", "id": MEDIA_ID},
        "",
        (MediaKind.VIDEO, "video/mp4", None, None),
    ),
    (
        "document",
        {
            "caption": "invoice",
            "filename": "invoice-42.pdf",
            "mime_type": "application/pdf",
            "sha256": "abc=",
            "id": MEDIA_ID,
        },
        "invoice",
        (MediaKind.DOCUMENT, "application/pdf", "invoice", "invoice-42.pdf"),
    ),
]


@pytest.mark.parametrize(("kind", "content", "text", "attachment"), MESSAGES)
async def test_each_message_type_is_parsed(
    channel: WhatsAppChannel,
    kind: str,
    content: dict[str, Any],
    text: str,
    attachment: tuple[MediaKind, str, str | None, str | None] | None,
) -> None:
    message = inbound(kind, content)
    result = await parse(channel, notification(messages=[message]))
    assert result.ignored == ()
    (parsed,) = result.messages
    assert (parsed.channel, parsed.bot, parsed.conversation, parsed.sender) == (
        "whatsapp",
        "shop",
        USER,
        USER,
    )
    assert parsed.external_id == message["id"]
    assert parsed.text == text
    assert parsed.received_at.timestamp() == 1749416383
    assert parsed.raw["contact"]["profile"]["name"] == "Sheena Nelson"
    if attachment is None:
        assert parsed.attachments == ()
    else:
        (media,) = parsed.attachments
        assert (media.kind, media.content_type, media.caption, media.filename) == attachment
        assert media.provider_id == MEDIA_ID


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        (
            "sticker",
            {"mime_type": "image/webp", "sha256": "abc=", "id": MEDIA_ID, "animated": False},
        ),
        ("reaction", {"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgA=", "emoji": "\U0001f600"}),
        ("location", {"latitude": 37.44, "longitude": -122.16, "name": "Philz Coffee"}),
        ("contacts", [{"name": {"formatted_name": "Barbara Johnson"}, "phones": []}]),
        ("unsupported", {}),
    ],
)
async def test_other_message_types_are_acknowledged_and_named(
    channel: WhatsAppChannel, kind: str, content: Any
) -> None:
    result = await parse(channel, notification(messages=[inbound(kind, content)]))
    assert result.messages == ()
    assert result.ignored == (kind,)


async def test_a_batch_of_entries_and_messages_is_read_whole(channel: WhatsAppChannel) -> None:
    payload = notification(
        messages=[
            inbound("text", {"body": "one"}, "wamid.1"),
            inbound("text", {"body": "two"}, "wamid.2"),
        ]
    )
    second = notification(messages=[inbound("text", {"body": "three"}, "wamid.3")])
    payload["entry"].extend(second["entry"])
    result = await parse(channel, payload)
    assert [(m.external_id, m.text) for m in result.messages] == [
        ("wamid.1", "one"),
        ("wamid.2", "two"),
        ("wamid.3", "three"),
    ]


async def test_changes_for_another_number_of_the_app_are_ignored(channel: WhatsAppChannel) -> None:
    payload = notification(messages=[inbound("text", {"body": "hi"})], phone_number_id="999")
    result = await parse(channel, payload)
    assert result.messages == ()
    assert result.ignored == ("phone number 999",)


def status(wamid: str, state: str, timestamp: str, **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": state, "timestamp": timestamp, "recipient_id": USER, **extra}


async def test_statuses_are_parsed_even_out_of_order(channel: WhatsAppChannel) -> None:
    failed = status(
        "wamid.B",
        "failed",
        "1750263775",
        errors=[
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {"details": "More than 24 hours have passed"},
            }
        ],
    )
    payload = notification(
        statuses=[
            status("wamid.A", "delivered", "1750263774", pricing={"billable": True}),
            status("wamid.A", "sent", "1750263773"),  # arrives after "delivered"
            status("wamid.A", "read", "1750263780"),
            failed,
        ]
    )
    result = await parse(channel, payload)
    assert result.messages == ()
    assert [(s.provider_id, s.status, s.conversation) for s in result.statuses] == [
        ("wamid.A", "delivered", USER),
        ("wamid.A", "sent", USER),
        ("wamid.A", "read", USER),
        ("wamid.B", "failed", USER),
    ]
    assert result.statuses[1].at is not None and result.statuses[1].at.timestamp() == 1750263773
    assert (result.statuses[3].error_code, result.statuses[3].error_message) == (
        "131047",
        "Re-engagement message",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"object": "page", "entry": []}',
        b'{"object": "whatsapp_business_account", "entry": {}}',
        b'{"entry": [{"changes": [{"field": "messages", "value": []}]}]}',
        json.dumps(
            notification(messages=[{"from": USER, "type": "text", "text": {"body": "x"}}])
        ).encode(),
        json.dumps(notification(messages=[inbound("text", {})])).encode(),
        json.dumps(notification(statuses=[{"id": "wamid.A"}])).encode(),
    ],
)
async def test_malformed_notifications_are_payload_errors(
    channel: WhatsAppChannel, body: bytes
) -> None:
    with pytest.raises(PayloadError):
        await channel.parse("shop", post(body, sign(body)))


# -- sending ----------------------------------------------------------------------


async def test_text_is_sent_without_link_preview(
    channel: WhatsAppChannel, graph: FakeGraphApi
) -> None:
    result = await channel.send(
        USER, RenderedPart(text="*Hi* there", text_format=TextFormat.WHATSAPP)
    )
    assert result.provider_id.startswith("wamid.")
    assert result.status == "accepted"
    (call,) = graph.calls
    assert call.path == f"/v23.0/{PHONE_NUMBER_ID}/messages"
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": USER,
        "type": "text",
        "text": {"preview_url": False, "body": "*Hi* there"},
    }


async def test_up_to_three_suggestions_are_reply_buttons(
    channel: WhatsAppChannel, graph: FakeGraphApi
) -> None:
    buttons = (
        Suggestion("yes", "Yes"),
        Suggestion("no", "No"),
        Suggestion("later", "Remind me tomorrow morning"),
    )
    part = RenderedPart(text="Confirm?", text_format=TextFormat.WHATSAPP, buttons=buttons)
    await channel.send(USER, part)
    assert graph.sent[0]["interactive"] == {
        "type": "button",
        "body": {"text": "Confirm?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "no", "title": "No"}},
                {"type": "reply", "reply": {"id": "later", "title": "Remind me tomorrow…"}},
            ]
        },
    }
    assert all(
        len(b["reply"]["title"]) <= 20 for b in graph.sent[0]["interactive"]["action"]["buttons"]
    )


async def test_more_suggestions_or_as_list_become_a_list(
    channel: WhatsAppChannel, graph: FakeGraphApi
) -> None:
    labels = ["Track my order", "Returns", "Talk to a person about a delivery problem", "Hours"]
    buttons = tuple(Suggestion(f"k{i}", label) for i, label in enumerate(labels))
    part = RenderedPart(
        text="How can we help?",
        text_format=TextFormat.WHATSAPP,
        buttons=buttons,
        list_title="Choose a topic please",
    )
    await channel.send(USER, part)
    await channel.send(
        USER, RenderedPart("Pick", TextFormat.WHATSAPP, buttons=buttons[:2], as_list=True)
    )
    first, second = graph.sent
    assert first["type"] == "interactive"
    interactive = first["interactive"]
    assert interactive["type"] == "list"
    assert interactive["body"] == {"text": "How can we help?"}
    assert interactive["action"]["button"] == "Choose a topic plea…"
    (section,) = interactive["action"]["sections"]
    assert section["rows"][0] == {"id": "k0", "title": "Track my order"}
    assert section["rows"][2] == {
        "id": "k2",
        "title": "Talk to a person about…",
        "description": "Talk to a person about a delivery problem",
    }
    assert all(len(r["title"]) <= 24 for r in section["rows"])
    assert second["interactive"]["type"] == "list"
    assert len(second["interactive"]["action"]["sections"][0]["rows"]) == 2


async def test_options_beyond_the_limits_are_refused_before_any_request(
    channel: WhatsAppChannel, graph: FakeGraphApi
) -> None:
    eleven = tuple(Suggestion(str(i), str(i)) for i in range(11))
    with pytest.raises(SendRefused, match="at most 10"):
        await channel.send(USER, RenderedPart("Pick", TextFormat.WHATSAPP, buttons=eleven))
    with pytest.raises(SendRefused):
        await channel.send(USER, RenderedPart("x" * 1025, TextFormat.WHATSAPP, buttons=eleven[:2]))
    assert graph.calls == []


async def test_a_template_is_sent_with_its_body_parameters(
    channel: WhatsAppChannel, graph: FakeGraphApi
) -> None:
    result = await channel.send_template(USER, "order_update", "en_US", ["Ana", "#4521"])
    assert result.status == "accepted"
    assert graph.sent[0] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": USER,
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ana"},
                        {"type": "text", "text": "#4521"},
                    ],
                }
            ],
        },
    }


async def test_edit_is_refused(channel: WhatsAppChannel) -> None:
    with pytest.raises(SendRefused):
        await channel.edit(USER, "wamid.A", RenderedPart("x", TextFormat.WHATSAPP))


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "error", "code", "retry_after"),
    [
        ({"code": 130429, "status": 429, "retry_after": "7"}, RateLimited, "130429", 7.0),
        ({"code": 130429, "status": 429}, RateLimited, "130429", 1.0),
        ({"code": 131056}, RateLimited, "131056", 6.0),  # pair rate, HTTP 400
        ({"code": None, "status": 429, "raw_body": b""}, RateLimited, "429", 1.0),
        ({"code": 131047}, WindowClosed, "131047", None),
        ({"code": 131000}, ProviderUnavailable, "131000", None),
        (
            {"code": None, "status": 502, "raw_body": b"<html>Bad Gateway</html>"},
            ProviderUnavailable,
            "502",
            None,
        ),
        ({"code": 100}, SendRefused, "100", None),
    ],
)
async def test_provider_errors_are_mapped(
    channel: WhatsAppChannel,
    graph: FakeGraphApi,
    failure: dict[str, Any],
    error: type[SendError],
    code: str,
    retry_after: float | None,
) -> None:
    graph.fail_next(**failure)
    with pytest.raises(SendError) as caught:
        await channel.send(USER, RenderedPart("hi", TextFormat.WHATSAPP))
    assert type(caught.value) is error
    assert caught.value.code == code
    assert caught.value.retry_after == retry_after
    assert caught.value.retriable is (error in (RateLimited, ProviderUnavailable))


async def test_a_bad_token_is_refused(graph: FakeGraphApi) -> None:
    adapter = WhatsAppChannel.from_config(
        "shop", CONFIG | {"whatsapp-api-url": graph.api_url, "whatsapp-api-key": "wrong"}
    )
    with pytest.raises(SendRefused) as caught:
        await adapter.send(USER, RenderedPart("hi", TextFormat.WHATSAPP))
    await adapter.close()
    assert caught.value.code == "190"


async def test_no_answer_after_the_request_left_is_outcome_unknown(
    channel: WhatsAppChannel, graph: FakeGraphApi
) -> None:
    graph.delay = 2.0  # the adapter reads for 0.3 s
    with pytest.raises(OutcomeUnknown):
        await channel.send(USER, RenderedPart("hi", TextFormat.WHATSAPP))
    assert len(graph.calls) == 1  # it did reach the provider


async def test_a_refused_connection_is_provider_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = offline_channel(**{"whatsapp-api-url": f"http://127.0.0.1:{port}/v23.0"})
    with pytest.raises(ProviderUnavailable):
        await adapter.send(USER, RenderedPart("hi", TextFormat.WHATSAPP))
    await adapter.close()
