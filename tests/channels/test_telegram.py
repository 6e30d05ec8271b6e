"""The Telegram adapter through python-telegram-bot against a fake Bot API on 127.0.0.1.

Updates are shaped as in the Bot API reference (https://core.telegram.org/bots/api#update);
sends, edits and answers are read back as the calls the fake received.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from multidict import CIMultiDict

from channels.base import (
    Attachment,
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
    WebhookResult,
)
from channels.telegram import SECRET_HEADER, TelegramChannel, file_url
from channels.telegram_updates import callback_data, suggestion_for
from tests.channels.fake_telegram import NOT_MODIFIED, TOKEN, FakeBotApi

SECRET = "s3cr3t_Webhook-token"
WEBHOOK = "https://bots.example.com/webhooks/telegram/shop"
CONFIG = {"telegram-bot-token": TOKEN, "telegram-webhook-secret": SECRET}

USER = {
    "id": 111111111,
    "is_bot": False,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada",
    "language_code": "en",
}
PRIVATE = {"id": 111111111, "first_name": "Ada", "username": "ada", "type": "private"}
GROUP = {"id": -1001234567890, "title": "Shop customers", "type": "supergroup"}
DATE = 1749416383


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    fake = FakeBotApi()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def channel(api: FakeBotApi) -> AsyncIterator[TelegramChannel]:
    adapter = TelegramChannel.from_config(
        "shop", CONFIG | {"telegram-api-url": api.api_url}, read_timeout=0.5
    )
    yield adapter
    await adapter.close()


def post(body: bytes, secret: str | None = SECRET) -> WebhookRequest:
    headers = CIMultiDict({"Content-Type": "application/json"})
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return WebhookRequest(method="POST", url=WEBHOOK, headers=headers, query={}, body=body)


def message(chat: dict[str, Any] = PRIVATE, message_id: int = 1365, **content: Any) -> Any:
    return {"message_id": message_id, "from": USER, "chat": chat, "date": DATE, **content}


def update(update_id: int = 900001, **kinds: Any) -> dict[str, Any]:
    return {"update_id": update_id, **kinds}


async def parse(channel: TelegramChannel, payload: Any) -> WebhookResult:
    request = post(json.dumps(payload).encode())
    channel.verify(request)
    return await channel.parse("shop", request)


def part(text: str = "Hello", *buttons: Suggestion, html: bool = False) -> RenderedPart:
    fmt = TextFormat.TELEGRAM_HTML if html else TextFormat.PLAIN
    return RenderedPart(text=text, text_format=fmt, buttons=buttons)


# -- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"telegram-webhook-secret": SECRET}, "telegram-bot-token"),
        ({"telegram-bot-token": TOKEN}, "telegram-webhook-secret"),
        ({"telegram-bot-token": TOKEN, "telegram-webhook-secret": "  "}, "telegram-webhook-secret"),
        ({"telegram-mode": "polling"}, "telegram-bot-token"),
        (CONFIG | {"telegram-mode": "carrier-pigeon"}, "telegram-mode"),
        (CONFIG | {"telegram-webhook-secret": "has spaces!"}, "telegram-webhook-secret"),
    ],
)
def test_the_channel_stays_off_and_says_what_is_missing(config: dict[str, str], named: str) -> None:
    with pytest.raises(ChannelNotConfigured, match=named):
        TelegramChannel.from_config("shop", config)


async def test_polling_needs_no_secret_but_then_refuses_every_webhook() -> None:
    adapter = TelegramChannel.from_config(
        "shop", {"telegram-bot-token": TOKEN, "telegram-mode": "polling"}
    )
    assert adapter.mode == "polling"
    with pytest.raises(VerificationError, match="no telegram-webhook-secret"):
        adapter.verify(post(b"{}", secret=""))
    await adapter.close()


async def test_capabilities_and_contract() -> None:
    adapter = TelegramChannel.from_config("shop", CONFIG)
    assert isinstance(adapter, Channel)
    caps = adapter.capabilities
    assert (caps.max_text_length, caps.text_format) == (4096, TextFormat.TELEGRAM_HTML)
    assert (caps.can_edit, caps.stream_mode, caps.min_edit_interval) == (
        True,
        StreamMode.EDIT,
        1.0,
    )
    assert (caps.max_buttons, caps.max_button_label) == (8, 64)
    assert (caps.messages_per_second, caps.chat_messages_per_second) == (30, 1)
    await adapter.close()


@pytest.mark.parametrize(
    ("api_url", "files"),
    [
        ("https://api.telegram.org/bot", "https://api.telegram.org/file/bot"),
        ("http://127.0.0.1:8081/bot", "http://127.0.0.1:8081/file/bot"),
        ("https://proxy.example/tg/bot{token}/", "https://proxy.example/tg/file/bot{token}/"),
    ],
)
def test_file_downloads_follow_the_api_url(api_url: str, files: str) -> None:
    assert file_url(api_url) == files


# -- webhook authentication -------------------------------------------------------


def test_the_right_secret_is_accepted() -> None:
    TelegramChannel.from_config("shop", CONFIG).verify(post(b"{}"))


@pytest.mark.parametrize(
    ("case", "secret"),
    [
        ("missing", None),
        ("empty", ""),
        ("forged", "not-the-secret"),
        ("prefix", SECRET[:-1]),
        ("longer", SECRET + "x"),
        ("other case", SECRET.upper()),
        ("not ascii", SECRET + "é"),
    ],
)
def test_forged_or_missing_secrets_are_refused(case: str, secret: str | None) -> None:
    with pytest.raises(VerificationError):
        TelegramChannel.from_config("shop", CONFIG).verify(post(b"{}", secret))


# -- updates ----------------------------------------------------------------------

PHOTO = [
    {"file_id": "AgACAgQAAxk-small", "file_unique_id": "AQADs", "width": 90, "height": 67},
    {
        "file_id": "AgACAgQAAxk-large",
        "file_unique_id": "AQADl",
        "width": 1280,
        "height": 960,
        "file_size": 183562,
    },
]
VOICE = {
    "file_id": "AwACAgQAAxkBAAIBvoice",
    "file_unique_id": "AgADvoice",
    "duration": 3,
    "mime_type": "audio/ogg",
    "file_size": 9071,
}
AUDIO = {
    "file_id": "CQACAgQAAxkBAAIBaudio",
    "file_unique_id": "AgADaudio",
    "duration": 184,
    "performer": "Band",
    "title": "Song",
    "file_name": "song.mp3",
    "mime_type": "audio/mpeg",
    "file_size": 4424148,
}
DOCUMENT = {
    "file_id": "BQACAgQAAxkBAAIBdoc",
    "file_unique_id": "AgADdoc",
    "file_name": "invoice.pdf",
    "mime_type": "application/pdf",
    "file_size": 52312,
}
VIDEO = {
    "file_id": "BAACAgQAAxkBAAIBvideo",
    "file_unique_id": "AgADvideo",
    "width": 720,
    "height": 1280,
    "duration": 9,
    "mime_type": "video/mp4",
    "file_size": 1048576,
}


@pytest.mark.parametrize(
    ("payload", "text", "attachment", "raw"),
    [
        (update(message=message(text="I'd like a pizza")), "I'd like a pizza", None, {}),
        (
            update(
                message=message(
                    text="/start", entities=[{"offset": 0, "length": 6, "type": "bot_command"}]
                )
            ),
            "/start",
            None,
            {"command": "/start", "command_args": ""},
        ),
        (
            update(
                message=message(
                    chat=GROUP,
                    text="/order@shop_bot 2 large",
                    entities=[{"offset": 0, "length": 15, "type": "bot_command"}],
                )
            ),
            "/order@shop_bot 2 large",
            None,
            {"command": "/order", "command_args": "2 large", "chat_type": "supergroup"},
        ),
        (
            update(message=message(photo=PHOTO, caption="this one")),
            "this one",
            Attachment(
                MediaKind.IMAGE,
                "image/jpeg",
                provider_id="AgACAgQAAxk-large",
                size=183562,
                caption="this one",
            ),
            {},
        ),
        (
            update(message=message(voice=VOICE)),
            "",
            Attachment(
                MediaKind.AUDIO, "audio/ogg", provider_id="AwACAgQAAxkBAAIBvoice", size=9071
            ),
            {},
        ),
        (
            update(message=message(audio=AUDIO, caption="listen")),
            "listen",
            Attachment(
                MediaKind.AUDIO,
                "audio/mpeg",
                provider_id="CQACAgQAAxkBAAIBaudio",
                filename="song.mp3",
                size=4424148,
                caption="listen",
            ),
            {},
        ),
        (
            update(message=message(document=DOCUMENT)),
            "",
            Attachment(
                MediaKind.DOCUMENT,
                "application/pdf",
                provider_id="BQACAgQAAxkBAAIBdoc",
                filename="invoice.pdf",
                size=52312,
            ),
            {},
        ),
        (
            update(message=message(video=VIDEO, media_group_id="13611289345627185")),
            "",
            Attachment(
                MediaKind.VIDEO, "video/mp4", provider_id="BAACAgQAAxkBAAIBvideo", size=1048576
            ),
            {"media_group_id": "13611289345627185"},
        ),
    ],
    ids=["text", "command", "group command", "photo", "voice", "audio", "document", "album video"],
)
async def test_messages_are_read(
    channel: TelegramChannel,
    payload: dict[str, Any],
    text: str,
    attachment: Attachment | None,
    raw: dict[str, Any],
) -> None:
    result = await parse(channel, payload)
    assert result.ignored == ()
    (inbound,) = result.messages
    chat = payload["message"]["chat"]
    assert (inbound.channel, inbound.bot, inbound.conversation, inbound.sender) == (
        "telegram",
        "shop",
        str(chat["id"]),
        str(USER["id"]),
    )
    assert inbound.external_id == "900001"  # the update_id: Telegram's redelivery key
    assert inbound.text == text
    assert inbound.received_at.timestamp() == DATE
    assert inbound.attachments == (() if attachment is None else (attachment,))
    for key, value in raw.items():
        assert inbound.raw[key] == value


async def test_album_items_share_their_media_group_id(channel: TelegramChannel) -> None:
    group = "13611289345627185"
    first = await parse(
        channel, update(900010, message=message(photo=PHOTO, caption="both", media_group_id=group))
    )
    second = await parse(
        channel,
        update(900011, message=message(message_id=1366, video=VIDEO, media_group_id=group)),
    )
    items = first.messages + second.messages
    assert [m.raw["media_group_id"] for m in items] == [group, group]
    assert [m.external_id for m in items] == ["900010", "900011"]
    assert [m.attachments[0].kind for m in items] == [MediaKind.IMAGE, MediaKind.VIDEO]


async def test_an_edited_message_is_a_new_message(channel: TelegramChannel) -> None:
    original = await parse(channel, update(900020, message=message(text="two pizzas")))
    edited = await parse(
        channel,
        update(900021, edited_message=message(text="three pizzas", edit_date=DATE + 30)),
    )
    (before,), (after,) = original.messages, edited.messages
    assert after.text == "three pizzas"
    assert after.external_id != before.external_id
    assert (after.raw["edited"], after.raw["edit_date"], after.raw["message_id"]) == (
        True,
        DATE + 30,
        1365,
    )
    assert after.received_at.timestamp() == DATE + 30


def callback(data: str, keyboard: list[list[dict[str, str]]] | None = None) -> dict[str, Any]:
    sent = message(message_id=2001, text="What size?") | {
        "from": {"id": 123456789, "is_bot": True, "first_name": "Shop", "username": "shop_bot"}
    }
    if keyboard is not None:
        sent["reply_markup"] = {"inline_keyboard": keyboard}
    return {
        "id": "4382bfdwdsb323b2d9",
        "from": USER,
        "message": sent,
        "chat_instance": "-7528329381279122381",
        "data": data,
    }


async def test_a_button_press_is_its_key_and_is_answered(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    result = await parse(channel, update(callback_query=callback("size:large")))
    (inbound,) = result.messages
    assert (inbound.text, inbound.conversation, inbound.sender) == (
        "size:large",
        str(PRIVATE["id"]),
        str(USER["id"]),
    )
    assert inbound.raw["message_id"] == 2001
    assert [c.params["callback_query_id"] for c in api.calls_to("answerCallbackQuery")] == [
        "4382bfdwdsb323b2d9"
    ]


async def test_a_failed_answer_is_logged_and_the_press_still_counts(
    api: FakeBotApi, channel: TelegramChannel, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail_next(
        "answerCallbackQuery",
        400,
        "Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    with caplog.at_level(logging.WARNING, logger="channels.telegram"):
        result = await parse(channel, update(callback_query=callback("yes")))
    assert [m.text for m in result.messages] == ["yes"]
    assert "query is too old" in caplog.text.lower()


@pytest.mark.parametrize(
    ("payload", "ignored"),
    [
        (
            update(
                message=message(
                    sticker={
                        "file_id": "CAACAgIAAxkBAAIB",
                        "file_unique_id": "AgADs",
                        "type": "regular",
                        "width": 512,
                        "height": 512,
                        "is_animated": False,
                        "is_video": False,
                    }
                )
            ),
            "sticker",
        ),
        (
            update(message=message(location={"latitude": 38.72, "longitude": -9.14})),
            "location",
        ),
        (update(message=message(chat=GROUP, new_chat_members=[USER])), "new_chat_members"),
        (
            update(
                poll={
                    "id": "5785000",
                    "question": "Pizza?",
                    "options": [{"text": "yes", "voter_count": 1}],
                    "total_voter_count": 1,
                    "is_closed": False,
                    "is_anonymous": True,
                    "type": "regular",
                    "allows_multiple_answers": False,
                }
            ),
            "poll",
        ),
        (
            update(
                message_reaction={
                    "chat": PRIVATE,
                    "message_id": 2001,
                    "user": USER,
                    "date": DATE,
                    "old_reaction": [],
                    "new_reaction": [{"type": "emoji", "emoji": "👍"}],
                }
            ),
            "message_reaction",
        ),
        (
            update(
                my_chat_member={
                    "chat": PRIVATE,
                    "from": USER,
                    "date": DATE,
                    "old_chat_member": {"user": USER, "status": "member"},
                    "new_chat_member": {"user": USER, "status": "kicked", "until_date": 0},
                }
            ),
            "my_chat_member",
        ),
    ],
    ids=["sticker", "location", "member joined", "poll", "reaction", "bot blocked"],
)
async def test_unsupported_updates_are_acknowledged_and_named(
    api: FakeBotApi, channel: TelegramChannel, payload: dict[str, Any], ignored: str
) -> None:
    result = await parse(channel, payload)
    assert (result.messages, result.ignored) == ((), (ignored,))
    assert api.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"update"',
        b'{"message": {"text": "hi"}}',
        b'{"update_id": "1"}',
        b'{"update_id": 1, "message": {"message_id": 1, "text": "no chat, no date"}}',
        b'{"update_id": 1, "message": "hello"}',
    ],
    ids=[
        "not json",
        "list",
        "string",
        "no update_id",
        "text update_id",
        "message without chat",
        "message not an object",
    ],
)
async def test_a_body_that_is_not_an_update_is_a_payload_error(
    channel: TelegramChannel, body: bytes
) -> None:
    with pytest.raises(PayloadError):
        await channel.parse("shop", post(body))


# -- sends ------------------------------------------------------------------------


async def test_plain_and_html_sends(api: FakeBotApi, channel: TelegramChannel) -> None:
    plain = await channel.send("111111111", part("1 < 2, plain"))
    html = await channel.send("111111111", part("<b>Your order</b> is on its way", html=True))
    sent = api.calls_to("sendMessage")
    assert "parse_mode" not in sent[0].params
    assert sent[1].params["parse_mode"] == "HTML"
    assert sent[0].params["chat_id"] == 111111111
    assert api.messages[(111111111, int(html.provider_id))]["text"] == "Your order is on its way"
    assert int(plain.provider_id) + 1 == int(html.provider_id)


async def test_buttons_become_an_inline_keyboard_one_per_row(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    result = await channel.send(
        "111111111",
        part("What size?", Suggestion("size:small", "Small"), Suggestion("size:large", "Large")),
    )
    (call,) = api.calls_to("sendMessage")
    assert call.params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Small", "callback_data": "size:small"}],
            [{"text": "Large", "callback_data": "size:large"}],
        ]
    }
    assert api.messages[(111111111, int(result.provider_id))]["reply_markup"] is not None


async def test_a_key_over_64_bytes_goes_as_a_hash_and_comes_back_recoverable(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    long_key = "Quero falar com um atendente humano sobre a minha encomenda número 4711"
    offered = (Suggestion(long_key, "Falar com atendente"), Suggestion("no", "Não"))
    await channel.send("111111111", part("Precisa de ajuda?", *offered))
    (call,) = api.calls_to("sendMessage")
    rows = call.params["reply_markup"]["inline_keyboard"]
    data = rows[0][0]["callback_data"]
    assert len(data.encode()) <= 64 and data == callback_data(long_key)
    assert rows[1][0]["callback_data"] == "no"
    # The press carries back the hash and the keyboard it was on.
    result = await parse(channel, update(callback_query=callback(data, rows)))
    (inbound,) = result.messages
    assert inbound.text == "Falar com atendente"
    assert suggestion_for(inbound.raw["callback_data"], offered) == offered[0]


def test_callback_data_is_short_stable_and_never_ambiguous() -> None:
    assert callback_data("yes") == "yes"
    assert callback_data("é" * 32) == "é" * 32  # 64 bytes exactly
    hashed = callback_data("é" * 33)
    assert hashed == callback_data("é" * 33) and len(hashed) == 17
    # A short key that looks like a hash is hashed too, so a hash always means one.
    assert callback_data(hashed) != hashed


async def test_long_labels_are_cut_and_empty_keys_refused_before_sending(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    await channel.send("111111111", part("Pick", Suggestion("k", "x" * 80)))
    label = api.calls_to("sendMessage")[0].params["reply_markup"]["inline_keyboard"][0][0]["text"]
    assert len(label) == 64 and label.endswith("…")
    with pytest.raises(SendRefused, match="key"):
        await channel.send("111111111", part("Pick", Suggestion("", "Nothing")))
    assert len(api.calls_to("sendMessage")) == 1


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "options", "error", "code", "retry_after"),
    [
        (429, {"retry_after": 7}, RateLimited, "429", 7.0),
        (500, {}, ProviderUnavailable, "500", None),
        (502, {"raw_body": b"<html><body>502 Bad Gateway</body></html>"}, ProviderUnavailable,
         "502", None),
        (503, {}, ProviderUnavailable, "503", None),
        (400, {"description": "Bad Request: chat not found"}, SendRefused, "400", None),
        (403, {}, SendRefused, "403", None),
        (401, {}, SendRefused, "401", None),
        (413, {}, SendRefused, "413", None),
        (400, {"migrate_to_chat_id": -1009876543210}, SendRefused, "migrated:-1009876543210",
         None),
        (200, {"raw_body": b"<html>maintenance</html>"}, OutcomeUnknown, "bad-answer", None),
    ],
    ids=["429", "500", "502 html", "503", "400", "403", "401", "413", "migrated", "200 unreadable"],
)  # fmt: skip
async def test_provider_errors_are_mapped(
    api: FakeBotApi,
    channel: TelegramChannel,
    status: int,
    options: dict[str, Any],
    error: type[SendError],
    code: str,
    retry_after: float | None,
) -> None:
    api.fail_next("sendMessage", status, **options)
    with pytest.raises(SendError) as caught:
        await channel.send("111111111", part())
    assert type(caught.value) is error
    assert (caught.value.code, caught.value.retry_after) == (code, retry_after)
    assert caught.value.retriable is (error in (RateLimited, ProviderUnavailable))
    assert isinstance(caught.value.__cause__, Exception)


async def test_a_refusal_carries_telegrams_description(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    api.blocked.add(111111111)
    with pytest.raises(SendRefused, match="bot was blocked by the user") as caught:
        await channel.send("111111111", part())
    assert caught.value.code == "403"


async def test_a_server_that_never_answers_is_an_unknown_outcome(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    api.hang_next("sendMessage")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OutcomeUnknown, match="may have been sent"):
        await channel.send("111111111", part())
    assert loop.time() - started < 3  # read timeout 0.5 s
    assert len(api.calls_to("sendMessage")) == 1  # the request did leave


async def test_a_connection_dropped_after_the_request_is_an_unknown_outcome(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    api.drop_next("sendMessage")
    with pytest.raises(OutcomeUnknown):
        await channel.send("111111111", part())
    assert len(api.calls_to("sendMessage")) == 1


async def test_a_refused_connection_is_unavailable_not_unknown() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = TelegramChannel.from_config(
        "shop", CONFIG | {"telegram-api-url": f"http://127.0.0.1:{port}/bot"}
    )
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        await adapter.send("111111111", part())
    await adapter.close()


async def test_no_free_connection_in_time_is_unavailable(api: FakeBotApi) -> None:
    adapter = TelegramChannel(
        token=TOKEN, api_url=api.api_url, read_timeout=0.6, pool_timeout=0.1, pool_size=1
    )
    api.hang_next("sendMessage")
    stuck = asyncio.create_task(adapter.send("111111111", part("first")))
    await asyncio.sleep(0.2)
    with pytest.raises(ProviderUnavailable, match="no connection in time"):
        await adapter.send("111111111", part("second"))
    assert len(api.calls_to("sendMessage")) == 1  # the second never left
    with pytest.raises(OutcomeUnknown):
        await stuck
    await adapter.close()


async def test_a_closed_channel_sends_nothing(api: FakeBotApi, channel: TelegramChannel) -> None:
    await channel.close()
    with pytest.raises(ProviderUnavailable, match="closed"):
        await channel.send("111111111", part())
    assert api.calls == []


# -- edits ------------------------------------------------------------------------


async def test_edits_replace_the_text_and_an_unchanged_text_is_no_error(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    sent = await channel.send("111111111", part("Thinking"))
    await channel.edit("111111111", sent.provider_id, part("Thinking about pizza"))
    await channel.edit(
        "111111111",
        sent.provider_id,
        part("<b>Pizza</b> it is", Suggestion("ok", "OK"), html=True),
    )
    await channel.edit(  # the same text and keyboard again: Telegram says "not modified"
        "111111111",
        sent.provider_id,
        part("<b>Pizza</b> it is", Suggestion("ok", "OK"), html=True),
    )
    edits = api.calls_to("editMessageText")
    assert len(edits) == 3
    assert edits[1].params["parse_mode"] == "HTML"
    stored = api.messages[(111111111, int(sent.provider_id))]
    assert stored["text"] == "Pizza it is"
    assert stored["reply_markup"]["inline_keyboard"] == [[{"text": "OK", "callback_data": "ok"}]]


async def test_edit_errors_are_mapped_like_sends(api: FakeBotApi, channel: TelegramChannel) -> None:
    with pytest.raises(SendRefused, match=r"(?i)message to edit not found"):
        await channel.edit("111111111", "99999", part("late"))
    api.fail_next("editMessageText", 429, retry_after=2)
    with pytest.raises(RateLimited) as caught:
        await channel.edit("111111111", "99999", part("late"))
    assert caught.value.retry_after == 2.0
    with pytest.raises(SendRefused, match="message id"):
        await channel.edit("111111111", "not-an-id", part("late"))
    assert NOT_MODIFIED.startswith("Bad Request: message is not modified")


# -- webhook management and polling -----------------------------------------------


async def test_set_webhook_makes_a_secret_that_telegram_stores_and_we_check(
    api: FakeBotApi,
) -> None:
    config = {"telegram-bot-token": TOKEN, "telegram-api-url": api.api_url}
    adapter = TelegramChannel.from_config("shop", config, require_secret=False)
    with pytest.raises(VerificationError):
        adapter.verify(post(b"{}", "anything"))
    secret = await adapter.set_webhook(WEBHOOK)
    assert api.webhook == {
        "url": WEBHOOK,
        "secret_token": secret,
        "allowed_updates": ["message", "edited_message", "callback_query"],
    }
    assert 1 <= len(secret) <= 256 and set(secret) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    )
    adapter.verify(post(b"{}", secret))
    assert secret != await adapter.set_webhook(WEBHOOK)  # a new secret each time
    assert await adapter.webhook_url() == WEBHOOK
    await adapter.delete_webhook()
    assert api.webhook is None and await adapter.webhook_url() is None
    await adapter.close()


async def test_set_webhook_refused_by_telegram_is_a_refusal(
    api: FakeBotApi, channel: TelegramChannel
) -> None:
    with pytest.raises(SendRefused, match=r"(?i)https url must be provided"):
        await channel.set_webhook("http://bots.example.com/webhooks/telegram/shop")
    channel.verify(post(b"{}"))  # the old secret still holds


async def test_polling_deletes_the_webhook_and_reads_updates_in_order(api: FakeBotApi) -> None:
    adapter = TelegramChannel.from_config(
        "shop", {"telegram-bot-token": TOKEN, "telegram-mode": "polling",
                 "telegram-api-url": api.api_url}, read_timeout=2,
    )  # fmt: skip
    api.webhook = {"url": WEBHOOK, "secret_token": SECRET, "allowed_updates": None}
    first = await api.push_update({"message": message(text="hello")})
    received: list[WebhookResult] = []
    got_three = asyncio.Event()

    async def handler(result: WebhookResult) -> None:
        received.append(result)
        if len(received) == 3:
            got_three.set()

    task = asyncio.create_task(adapter.poll("shop", handler, poll_seconds=1, retry_delay=0.05))
    await asyncio.sleep(0.3)  # the poller now waits in a long poll
    await api.push_update({"callback_query": callback("size:large")})
    await api.push_update({"message": message(message_id=1367, text="/help")})
    await asyncio.wait_for(got_three.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await adapter.close()

    assert api.calls[0].method == "deleteWebhook" and api.webhook is None
    texts = [r.messages[0].text for r in received]
    assert texts == ["hello", "size:large", "/help"]
    assert [r.messages[0].external_id for r in received] == [
        str(first),
        str(first + 1),
        str(first + 2),
    ]
    assert len(api.calls_to("answerCallbackQuery")) == 1
    polls = api.calls_to("getUpdates")
    assert polls[0].params.get("offset") is None
    assert polls[-1].params["offset"] > first  # what was handled is confirmed
    assert polls[0].params["timeout"] == 1
    assert polls[0].params["allowed_updates"] == ["message", "edited_message", "callback_query"]


async def test_polling_rides_out_server_errors_and_a_failing_handler(api: FakeBotApi) -> None:
    adapter = TelegramChannel(token=TOKEN, api_url=api.api_url, mode="polling", read_timeout=2)
    api.fail_next("getUpdates", 502, raw_body=b"<html>502 Bad Gateway</html>")
    api.fail_next("getUpdates", 429, retry_after=0)
    await api.push_update({"message": message(text="still here")})
    attempts: list[str] = []
    done = asyncio.Event()

    async def handler(result: WebhookResult) -> None:
        attempts.append(result.messages[0].text)
        if len(attempts) == 1:
            raise ConnectionError("inbox store down")
        done.set()

    task = asyncio.create_task(adapter.poll("shop", handler, poll_seconds=1, retry_delay=0.05))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await adapter.close()
    assert attempts == ["still here", "still here"]
    assert len(api.calls_to("getUpdates")) >= 3


async def test_polling_with_a_rejected_token_stops_and_says_so(api: FakeBotApi) -> None:
    adapter = TelegramChannel(token="42:wrong", api_url=api.api_url, mode="polling")
    updates = adapter.updates("shop", poll_seconds=1)
    with pytest.raises(ChannelNotConfigured, match="token was rejected"):
        await anext(updates)
    await updates.aclose()
    await adapter.close()
