"""The Twilio adapters (WhatsApp and SMS) with the real twilio SDK against a fake REST API.

Webhook forms are shaped as in Twilio's messaging webhook and status callback
documentation and signed with the SDK's own ``RequestValidator``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from multidict import CIMultiDict
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator

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
    Suggestion,
    TextFormat,
    VerificationError,
    WebhookRequest,
    WindowClosed,
)
from channels.twilio_channel import EMPTY_TWIML, SMS, WHATSAPP, TwilioAccount, TwilioChannel
from tests.channels.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioApi

SENDER = "+15557770000"
USER = "+14155550123"
PUBLIC = "https://bots.example.com"
PATH = "/webhooks/twilio/shop"
CONFIG = {
    "twilio-account-sid": ACCOUNT_SID,
    "twilio-auth-token": AUTH_TOKEN,
    "twilio-from-number": SENDER,
}

WHATSAPP_FORM = {
    "SmsMessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
    "NumMedia": "0",
    "ProfileName": "Ana",
    "MessageType": "text",
    "SmsSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
    "WaId": "14155550123",
    "SmsStatus": "received",
    "Body": "Hello there",
    "To": f"whatsapp:{SENDER}",
    "NumSegments": "1",
    "ReferralNumMedia": "0",
    "MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
    "AccountSid": ACCOUNT_SID,
    "From": f"whatsapp:{USER}",
    "ApiVersion": "2010-04-01",
}
SMS_FORM = {
    "ToCountry": "US",
    "SmsMessageSid": "SM2a3b4c5d6e7f8091a2b3c4d5e6f70812",
    "NumMedia": "0",
    "SmsSid": "SM2a3b4c5d6e7f8091a2b3c4d5e6f70812",
    "SmsStatus": "received",
    "Body": "STATUS 4521",
    "FromCountry": "US",
    "To": SENDER,
    "NumSegments": "1",
    "MessageSid": "SM2a3b4c5d6e7f8091a2b3c4d5e6f70812",
    "AccountSid": ACCOUNT_SID,
    "From": USER,
    "ApiVersion": "2010-04-01",
}


def status_form(state: str, **extra: str) -> dict[str, str]:
    return {
        "SmsSid": "SM5a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "SmsStatus": state,
        "MessageStatus": state,
        "To": f"whatsapp:{USER}",
        "ChannelToAddress": USER,
        "MessageSid": "SM5a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{SENDER}",
        "ApiVersion": "2010-04-01",
        **extra,
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilioApi]:
    server = FakeTwilioApi()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def pair(fake: FakeTwilioApi) -> AsyncIterator[tuple[TwilioChannel, TwilioChannel]]:
    channels = TwilioChannel.pair_from_config(
        "shop",
        CONFIG | {"twilio-api-url": fake.api_url, "twilio-public-url": PUBLIC},
        read_timeout=0.3,
    )
    yield channels
    await channels[0].close()


def offline(**overrides: str) -> TwilioChannel:
    return TwilioChannel.from_config("shop", CONFIG | overrides)


def signed(
    form: dict[str, str],
    *,
    signed_url: str = PUBLIC + PATH,
    seen_url: str | None = None,
    headers: dict[str, str] | None = None,
    token: str = AUTH_TOKEN,
) -> WebhookRequest:
    """A webhook as the gateway hands it over: signed by Twilio for ``signed_url``."""
    signature = RequestValidator(token).compute_signature(signed_url, form)
    all_headers = CIMultiDict(
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    )
    all_headers.update(headers or {})
    return WebhookRequest(
        method="POST",
        url=seen_url or signed_url,
        headers=all_headers,
        query={},
        body=urlencode(form).encode(),
    )


# -- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["twilio-account-sid", "twilio-auth-token", "twilio-from-number"]
)
def test_a_missing_key_keeps_the_channel_off_and_says_which(missing: str) -> None:
    with pytest.raises(ChannelNotConfigured, match=missing):
        TwilioChannel.from_config("shop", CONFIG | {missing: ""})


def test_general_bots_phone_number_key_is_accepted_too() -> None:
    config = {k: v for k, v in CONFIG.items() if k != "twilio-from-number"}
    adapter = TwilioChannel.from_config("shop", config | {"twilio-phone-number": SENDER})
    assert adapter.account.from_number == SENDER


def test_the_pair_shares_one_account_and_has_a_capability_set_each() -> None:
    whatsapp, sms = TwilioChannel.pair_from_config("shop", CONFIG)
    assert isinstance(whatsapp, Channel) and isinstance(sms, Channel)
    assert (whatsapp.name, sms.name) == (WHATSAPP, SMS)
    assert whatsapp.account is sms.account
    assert whatsapp.capabilities.text_format is TextFormat.WHATSAPP
    assert sms.capabilities.text_format is TextFormat.PLAIN
    for caps in (whatsapp.capabilities, sms.capabilities):
        assert (caps.max_text_length, caps.max_buttons, caps.messages_per_second) == (1600, 0, 10)
        assert not caps.can_edit


# -- webhook authentication -------------------------------------------------------


def test_a_request_signed_by_the_sdk_validator_is_accepted() -> None:
    offline(**{"twilio-public-url": PUBLIC}).verify(signed(WHATSAPP_FORM))


def test_changing_one_parameter_breaks_the_signature() -> None:
    request = signed(WHATSAPP_FORM)
    tampered = urlencode(WHATSAPP_FORM | {"Body": "Hello therf"}).encode()
    forged = WebhookRequest(request.method, request.url, request.headers, {}, tampered)
    with pytest.raises(VerificationError):
        offline(**{"twilio-public-url": PUBLIC}).verify(forged)


@pytest.mark.parametrize(
    "request_",
    [
        signed(WHATSAPP_FORM, token="another-account-token"),
        signed(
            WHATSAPP_FORM,
            signed_url=PUBLIC + "/webhooks/twilio/other-bot",
            seen_url=PUBLIC + PATH,
        ),
        WebhookRequest("POST", PUBLIC + PATH, CIMultiDict(), {}, urlencode(WHATSAPP_FORM).encode()),
        signed(WHATSAPP_FORM, headers={"X-Twilio-Signature": ""}),
    ],
    ids=["other token", "other url", "missing", "empty"],
)
def test_forged_or_missing_signatures_are_refused(request_: WebhookRequest) -> None:
    with pytest.raises(VerificationError):
        offline(**{"twilio-public-url": PUBLIC}).verify(request_)


def test_the_public_url_is_rebuilt_from_the_configured_base() -> None:
    # Behind a proxy the gateway sees its own address; Twilio signed the public one.
    request = signed(
        WHATSAPP_FORM,
        signed_url=PUBLIC + PATH + "?tenant=7",
        seen_url="http://10.0.0.5:8080" + PATH + "?tenant=7",
    )
    adapter = offline(**{"twilio-public-url": PUBLIC})
    assert adapter.account.signed_url(request) == PUBLIC + PATH + "?tenant=7"
    adapter.verify(request)
    full = offline(**{"twilio-public-url": PUBLIC + PATH})  # the whole webhook URL given
    full.verify(request)


def test_forwarded_headers_count_only_when_trusted() -> None:
    request = signed(
        WHATSAPP_FORM,
        seen_url="http://10.0.0.5:8080" + PATH,
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bots.example.com"},
    )
    offline(**{"twilio-trust-forwarded": "true"}).verify(request)
    with pytest.raises(VerificationError):
        offline().verify(request)


# -- parsing ----------------------------------------------------------------------


async def test_a_whatsapp_message_is_parsed_and_answered_with_empty_twiml() -> None:
    result = await offline().parse("shop", signed(WHATSAPP_FORM))
    (message,) = result.messages
    assert (message.channel, message.bot, message.conversation, message.sender) == (
        WHATSAPP,
        "shop",
        USER,
        USER,
    )
    assert (message.external_id, message.text) == (WHATSAPP_FORM["MessageSid"], "Hello there")
    assert message.raw["ProfileName"] == "Ana"
    assert result.response is not None
    assert result.response.body == EMPTY_TWIML
    assert result.response.content_type == "text/xml"


async def test_an_sms_is_parsed_on_the_sms_channel() -> None:
    (message,) = (await offline().parse("shop", signed(SMS_FORM))).messages
    assert (message.channel, message.conversation, message.text) == (SMS, USER, "STATUS 4521")


async def test_media_urls_become_attachments() -> None:
    base = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM1/Media"
    form = WHATSAPP_FORM | {
        "Body": "",
        "NumMedia": "3",
        "MediaUrl0": f"{base}/ME0",
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": f"{base}/ME1",
        "MediaContentType1": "audio/ogg",
        "MediaUrl2": f"{base}/ME2",
        "MediaContentType2": "application/pdf",
    }
    (message,) = (await offline().parse("shop", signed(form))).messages
    assert [(a.kind, a.content_type, a.url) for a in message.attachments] == [
        (MediaKind.IMAGE, "image/jpeg", f"{base}/ME0"),
        (MediaKind.AUDIO, "audio/ogg", f"{base}/ME1"),
        (MediaKind.DOCUMENT, "application/pdf", f"{base}/ME2"),
    ]
    assert message.text == ""


async def test_a_quick_reply_answers_with_its_payload() -> None:
    form = WHATSAPP_FORM | {"Body": "Yes", "ButtonText": "Yes", "ButtonPayload": "confirm-yes"}
    (message,) = (await offline().parse("shop", signed(form))).messages
    assert message.text == "confirm-yes"


async def test_status_callbacks_are_parsed_even_out_of_order() -> None:
    adapter = offline()
    results = [
        await adapter.parse("shop", signed(status_form("delivered"))),
        await adapter.parse("shop", signed(status_form("sent"))),  # after "delivered"
        await adapter.parse(
            "shop",
            signed(status_form("undelivered", ErrorCode="63016", ErrorMessage="Outside window")),
        ),
    ]
    statuses = [s for r in results for s in r.statuses]
    assert [(s.status, s.conversation) for s in statuses] == [
        ("delivered", USER),
        ("sent", USER),
        ("undelivered", USER),
    ]
    assert {s.provider_id for s in statuses} == {"SM5a1b2c3d4e5f60718293a4b5c6d7e8f9"}
    assert (statuses[2].error_code, statuses[2].error_message) == ("63016", "Outside window")
    assert statuses[0].error_code is None
    assert all(r.messages == () and r.response is not None for r in results)


async def test_other_twilio_channels_and_empty_messages_are_acknowledged() -> None:
    adapter = offline()
    messenger = await adapter.parse("shop", signed(WHATSAPP_FORM | {"From": "messenger:123"}))
    assert (messenger.messages, messenger.ignored) == ((), ("channel messenger",))
    location = WHATSAPP_FORM | {"Body": "", "Latitude": "37.7", "Longitude": "-122.4"}
    assert (await adapter.parse("shop", signed(location))).ignored == ("location",)


@pytest.mark.parametrize(
    "body",
    [
        urlencode({k: v for k, v in WHATSAPP_FORM.items() if "Sid" not in k}).encode(),
        urlencode({k: v for k, v in WHATSAPP_FORM.items() if k != "From"}).encode(),
        urlencode(WHATSAPP_FORM | {"NumMedia": "two"}).encode(),
        urlencode(WHATSAPP_FORM | {"NumMedia": "1"}).encode(),
        b"\xff\xfe not utf-8",
        b"",
    ],
)
async def test_malformed_forms_are_payload_errors(body: bytes) -> None:
    request = WebhookRequest("POST", PUBLIC + PATH, CIMultiDict(), {}, body)
    with pytest.raises(PayloadError):
        await offline().parse("shop", request)


# -- sending ----------------------------------------------------------------------


async def test_whatsapp_sends_through_the_async_client(
    pair: tuple[TwilioChannel, TwilioChannel],
    fake: FakeTwilioApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def blocking(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the blocking Twilio client was called on the loop")

    monkeypatch.setattr(TwilioHttpClient, "request", blocking)
    whatsapp, _ = pair
    result = await whatsapp.send(USER, RenderedPart("*Order* shipped", TextFormat.WHATSAPP))
    assert isinstance(whatsapp.account.client.http_client, AsyncTwilioHttpClient)
    assert result.provider_id.startswith("SM") and result.status == "queued"
    (call,) = fake.calls
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert call.form == {
        "From": f"whatsapp:{SENDER}",
        "To": f"whatsapp:{USER}",
        "Body": "*Order* shipped",
        "StatusCallback": PUBLIC + PATH,
    }
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_sms_sends_without_prefix_and_buttons_are_not_sent(
    pair: tuple[TwilioChannel, TwilioChannel], fake: FakeTwilioApi
) -> None:
    _, sms = pair
    part = RenderedPart("Reply 1 or 2", TextFormat.PLAIN, buttons=(Suggestion("1", "One"),))
    await sms.send(USER, part)
    assert (fake.calls[0].form["From"], fake.calls[0].form["To"]) == (SENDER, USER)
    assert fake.calls[0].form["Body"] == "Reply 1 or 2"


async def test_a_wrong_auth_token_is_refused_by_the_fake(fake: FakeTwilioApi) -> None:
    adapter = TwilioChannel.from_config(
        "shop", CONFIG | {"twilio-api-url": fake.api_url, "twilio-auth-token": "wrong"}
    )
    with pytest.raises(SendRefused) as caught:
        await adapter.send(USER, RenderedPart("hi", TextFormat.WHATSAPP))
    await adapter.close()
    assert caught.value.code == "20003"


async def test_edit_is_refused() -> None:
    with pytest.raises(SendRefused):
        await offline().edit(USER, "SM1", RenderedPart("x", TextFormat.WHATSAPP))


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (429, 20429, RateLimited),
        (500, 20500, ProviderUnavailable),
        (503, 20503, ProviderUnavailable),
        (400, 21610, SendRefused),  # the user sent STOP
        (400, 21211, SendRefused),  # not a valid number
        (400, 63016, WindowClosed),
    ],
)
async def test_rest_errors_are_mapped(
    pair: tuple[TwilioChannel, TwilioChannel],
    fake: FakeTwilioApi,
    status: int,
    code: int,
    error: type[SendError],
) -> None:
    fake.fail_next(status, code)
    with pytest.raises(SendError) as caught:
        await pair[0].send(USER, RenderedPart("hi", TextFormat.WHATSAPP))
    assert type(caught.value) is error
    assert caught.value.code == str(code)
    assert caught.value.retriable is (error in (RateLimited, ProviderUnavailable))
    if error is RateLimited:
        assert caught.value.retry_after is not None and caught.value.retry_after > 0


async def test_no_answer_after_the_request_left_is_outcome_unknown(
    pair: tuple[TwilioChannel, TwilioChannel], fake: FakeTwilioApi
) -> None:
    fake.delay = 2.0  # the adapter reads for 0.3 s
    with pytest.raises(OutcomeUnknown):
        await pair[0].send(USER, RenderedPart("hi", TextFormat.WHATSAPP))
    assert len(fake.calls) == 1


async def test_a_refused_connection_is_provider_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    account = TwilioAccount.from_config(
        "shop", CONFIG | {"twilio-api-url": f"http://127.0.0.1:{port}"}
    )
    with pytest.raises(ProviderUnavailable):
        await TwilioChannel(account, SMS).send(USER, RenderedPart("hi", TextFormat.PLAIN))
    await account.close()
