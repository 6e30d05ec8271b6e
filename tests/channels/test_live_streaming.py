"""Model answers streamed live to every channel, through a real gateway on a real PostgreSQL:
the real ``openai`` SDK against the fake OpenAI server writing slowly (its deltas spaced in
time), the real Telegram, WhatsApp and Twilio adapters against their fake APIs on 127.0.0.1.

What the user sees is read at the fakes, with the time each request arrived: Telegram's
one message edited at most once a second, plain while the model writes and formatted at
the end, a second message past 4096 characters; WhatsApp's and SMS's whole paragraphs as
they complete, none twice; a turn that fails after streaming and is retried leaves one
answer, not two; the web channel's deltas as before.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from config.settings import Settings
from gateway.app import create_app
from gateway.keys import STORES
from tests.channels.fake_graph import FakeGraphApi
from tests.channels.fake_telegram import FakeBotApi, TelegramCall
from tests.channels.fake_twilio import FakeTwilioApi
from tests.channels.gateway_harness import (
    Client,
    channel_rows,
    eventually,
    sms,
    tg_post,
    tg_update,
    twilio_post,
    wa_message,
    wa_post,
    write_bot,
)
from tests.databases import database_fixture
from tests.fake_servers import fake_server
from tests.llm import fake_openai
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer

ADMIN_TOKEN = "live-streaming-admin-token"
BOT = "writer"
_chats = itertools.count(500_000)
_updates = itertools.count(9_000)


def new_chat() -> int:
    return next(_chats)


telegram = fake_server(FakeBotApi)
graph = fake_server(FakeGraphApi)
twilio = fake_server(FakeTwilioApi)
model = fake_server(FakeOpenAI)
database = database_fixture("botserver_live")


@pytest.fixture
def bots(
    tmp_path: Path,
    telegram: FakeBotApi,
    graph: FakeGraphApi,
    twilio: FakeTwilioApi,
    model: FakeOpenAI,
) -> Path:
    folder = tmp_path / "bots"
    llm = {"llm-url": f"{model.url}/v1", "llm-key": fake_openai.API_KEY, "llm-model": "gpt-4o"}
    rows = channel_rows(telegram, graph, twilio) | llm
    # No dialog: every message goes to the model.
    write_bot(folder, BOT, rows, dialog="")
    (folder / f"{BOT}.gbai" / f"{BOT}.gbdialog" / "start.bas").unlink()
    # The same, with streaming turned off.
    write_bot(folder, "quiet", rows | {"stream-replies": "false"}, dialog="")
    (folder / "quiet.gbai" / "quiet.gbdialog" / "start.bas").unlink()
    # A start dialog that greets before the model answers a session's first message.
    write_bot(folder, "greeter", rows, dialog='TALK "Welcome!"\n')
    return folder


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    database: str, bots: Path, tmp_path: Path, aiohttp_client, monkeypatch: pytest.MonkeyPatch
) -> Client:
    monkeypatch.setenv("BOTSERVER_ADMIN_TOKEN", ADMIN_TOKEN)
    for name in ("LLM_URL", "LLM_KEY", "LLM_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(
        bots_dir=bots,
        data_dir=tmp_path / "data",
        database_url=database,
        max_message_age=3 * 86400,
        kb_ingest_on_load=False,
    )
    return await aiohttp_client(create_app(settings))


def words(count: int, *, bold_every: int = 0, spacing: float = 0.15) -> Answer:
    pieces = tuple(
        f"**word{i}** " if bold_every and i % bold_every == 0 else f"word{i} " for i in range(count)
    )
    return Answer(text=pieces, spacing=spacing)


async def tg_say(client: Client, chat: int, text: str, bot: str = BOT) -> None:
    """Post the user's ``text`` in ``chat`` to the bot's Telegram webhook."""
    assert await tg_post(client, tg_update(next(_updates), text, chat=chat), bot=bot) == 200


def finished(api: FakeBotApi, chat: int) -> list[TelegramCall]:
    """The chat's writes once its last one was formatted (the final edit), else []."""
    writes = api.writes(chat)
    return writes if writes and writes[-1].params.get("parse_mode") == "HTML" else []


async def outbox_rows(client: Client, channel: str) -> list[asyncpg.Record]:
    async with client.server.app[STORES].pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT status, parts_sent, provider_ids, message FROM outbox"
                " WHERE bot_id = $1 AND channel = $2 ORDER BY seq",
                BOT,
                channel,
            )
        )


def assert_paced(calls: list[Any], interval: float) -> None:
    # Measured where they arrive: a send may travel a little faster than the one before.
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert all(gap >= interval - 0.1 for gap in gaps), gaps


# -- Telegram ---------------------------------------------------------------------------------


async def test_telegram_streaming_edits_at_most_once_a_second_and_ends_formatted(
    client: Client, telegram: FakeBotApi, model: FakeOpenAI
) -> None:
    chat = new_chat()
    model.script(words(24, bold_every=6))  # ~3.6 s of writing
    await tg_say(client, chat, "tell me")
    writes = await eventually(lambda: finished(telegram, chat), within=20)
    (asked,) = model.calls

    # One message: sent with the model's first words, then edited in place.
    first, *edits = writes
    assert first.method == "sendMessage" and len(telegram.calls_to("sendMessage")) == 1
    assert all(e.method == "editMessageText" for e in edits)
    (message,) = telegram.history(chat)
    assert {e.params["message_id"] for e in edits} == {message["message_id"]}
    assert first.at - asked.at < 1.5, "the first words went out while the model wrote"
    assert len(edits) >= 3
    # At most once a second, plain text while streaming, formatted on the last edit.
    assert_paced(writes, 1.0)
    *interim, last = writes
    assert all(w.params.get("parse_mode") is None for w in interim)
    assert all("**" not in w.params["text"] and "<b>" not in w.params["text"] for w in interim)
    assert last.params["parse_mode"] == "HTML"
    assert last.params["text"].startswith("<b>word0</b> word1")
    assert message["text"] == " ".join(f"word{i}" for i in range(24))
    # The reply committed with the message it streamed; the final edit sent it.
    rows = await outbox_rows(client, "telegram")
    for _ in range(100):  # marked sent right after the provider answered the edit
        if rows[0]["status"] == "sent":
            break
        await asyncio.sleep(0.02)
        rows = await outbox_rows(client, "telegram")
    [row] = rows
    assert row["status"] == "sent" and row["provider_ids"] == [str(message["message_id"])]
    assert row["message"]["live"]["mode"] == "edit"


async def test_telegram_starts_a_second_message_past_4096_characters(
    client: Client, telegram: FakeBotApi, model: FakeOpenAI
) -> None:
    chat = new_chat()
    sentences = [f"Sentence **{i}** has some words in it, to fill the space. " for i in range(90)]
    pieces = tuple("".join(sentences[i : i + 6]) for i in range(0, 90, 6))  # ~5,300 chars
    model.script(Answer(text=pieces, spacing=0.15))
    await tg_say(client, chat, "a long one")

    def two_done() -> list[dict[str, Any]]:
        history = telegram.history(chat)
        formatted = all(telegram.formatting[(chat, m["message_id"])][0] == "HTML" for m in history)
        return history if len(history) == 2 and formatted else []

    history = await eventually(two_done, within=20)
    assert len(telegram.calls_to("sendMessage")) == 2
    assert all(len(m["text"]) <= 4096 for m in history)
    whole = "".join(sentences).replace("**", "").strip()
    assert " ".join(m["text"] for m in history) == whole
    assert_paced(telegram.writes(chat), 1.0)


async def test_with_stream_replies_false_the_answer_is_sent_whole(
    client: Client, telegram: FakeBotApi, model: FakeOpenAI
) -> None:
    chat = new_chat()
    model.script(words(12, bold_every=4, spacing=0.1))
    await tg_say(client, chat, "tell me", bot="quiet")
    writes = await eventually(lambda: telegram.writes(chat), within=20)
    await asyncio.sleep(0.5)
    writes = telegram.writes(chat)
    assert [w.method for w in writes] == ["sendMessage"]
    assert writes[0].params["parse_mode"] == "HTML"
    assert writes[0].params["text"].startswith("<b>word0</b> word1")


async def test_a_reply_said_before_the_model_answers_keeps_its_place(
    client: Client, telegram: FakeBotApi, model: FakeOpenAI
) -> None:
    chat = new_chat()
    model.script(words(10, spacing=0.1), words(10, spacing=0.15))
    await tg_say(client, chat, "hello", bot="greeter")
    # The start dialog's greeting waits for the commit: the answer after it goes whole.
    await eventually(lambda: len(telegram.history(chat)) == 2, within=20)
    texts = [m["text"] for m in telegram.history(chat)]
    assert texts[0] == "Welcome!" and texts[1].startswith("word0 word1")
    assert [w.method for w in telegram.writes(chat)] == ["sendMessage", "sendMessage"]
    # The next message has nothing before it: it streams.
    await tg_say(client, chat, "more", bot="greeter")
    await eventually(lambda: len(finished(telegram, chat)) > 2, within=20)
    methods = [w.method for w in telegram.writes(chat)[2:]]
    assert methods[0] == "sendMessage" and set(methods[1:]) == {"editMessageText"}


async def test_a_live_send_that_fails_falls_back_to_the_normal_delivery(
    client: Client, telegram: FakeBotApi, model: FakeOpenAI
) -> None:
    chat = new_chat()
    telegram.fail_next("sendMessage", 500)
    model.script(words(12, bold_every=4, spacing=0.1))
    await tg_say(client, chat, "tell me")
    await eventually(lambda: telegram.history(chat), within=20)
    await asyncio.sleep(0.5)
    sends = [w for w in telegram.writes(chat)]
    # The live stream stopped at its failed first send; the outbox sent the answer whole.
    assert [w.method for w in sends] == ["sendMessage", "sendMessage"]
    assert sends[1].params["parse_mode"] == "HTML"
    (message,) = telegram.history(chat)
    assert message["text"] == " ".join(f"word{i}" for i in range(12))


# -- a turn that fails after it streamed, retried ---------------------------------------------


async def fail_first_commit(client: Client, channel: str) -> None:
    """Make the first commit of a turn on ``channel`` fail in PostgreSQL (a sequence is not
    rolled back with the failed statement, so only the first one fails)."""
    async with client.server.app[STORES].pool.acquire() as conn:
        await conn.execute(
            f"""
            CREATE SEQUENCE IF NOT EXISTS fail_once_{channel.replace("-", "_")};
            CREATE OR REPLACE FUNCTION fail_first_outbox_insert() RETURNS trigger AS $$
            BEGIN
                IF NEW.channel = '{channel}'
                   AND nextval('fail_once_{channel.replace("-", "_")}') = 1 THEN
                    RAISE EXCEPTION 'the store failed at commit';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER fail_first_outbox_insert BEFORE INSERT ON outbox
                FOR EACH ROW EXECUTE FUNCTION fail_first_outbox_insert();
            """
        )


async def test_a_retried_turn_edits_the_message_it_streamed_instead_of_sending_another(
    client: Client, telegram: FakeBotApi, model: FakeOpenAI
) -> None:
    chat = new_chat()
    await fail_first_commit(client, "telegram")
    first = Answer(text=tuple(f"first{i} " for i in range(10)), spacing=0.1)
    second = Answer(text=("The **second** ", "try ", "answers."), spacing=0.2)
    model.script(first, second)
    await tg_say(client, chat, "tell me")
    writes = await eventually(lambda: finished(telegram, chat), within=30)
    assert len(model.calls) == 2  # the turn ran twice
    # One message: the first attempt's, edited by the retry, never a second answer.
    assert len(telegram.calls_to("sendMessage")) == 1
    (message,) = telegram.history(chat)
    assert message["text"] == "The second try answers."
    assert any(w.params["text"].startswith("first0") for w in writes)
    assert writes[-1].params["text"] == "The <b>second</b> try answers."
    assert_paced(writes, 1.0)


# -- WhatsApp and SMS -------------------------------------------------------------------------

PARAGRAPHS = (
    "First paragraph, **bold**.\n\n",
    "Second ",
    "paragraph.\n\n",
    "Third ",
    "paragraph.",
)


async def test_whatsapp_gets_whole_paragraphs_as_they_complete_none_twice(
    client: Client, graph: FakeGraphApi, model: FakeOpenAI
) -> None:
    model.script(Answer(text=PARAGRAPHS, spacing=0.3))
    assert await wa_post(client, wa_message("wamid.LIVE1", "tell me"), bot=BOT) == 200
    await eventually(lambda: len(graph.calls) == 2, within=20)
    await asyncio.sleep(0.5)
    (asked,) = model.calls
    bodies = [c.json["text"]["body"] for c in graph.calls]
    # The first paragraph went out while the model wrote; the others completed while its
    # pair rate (one message per 6 s to a user) held the next send, and went together.
    assert bodies == ["First paragraph, *bold*.", "Second paragraph.\n\nThird paragraph."]
    assert graph.calls[0].at - asked.at < 1.5
    assert_paced(graph.calls, 6.0)
    [row] = await outbox_rows(client, "whatsapp")
    assert row["status"] == "sent" and len(row["provider_ids"]) == 2
    assert row["parts_sent"] == 2


async def sms_say(client: Client, sid: str, body: str) -> None:
    """Post the SMS ``body`` from ``SMS_USER`` to the bot's Twilio webhook."""
    assert (await twilio_post(client, sms(sid, body), bot=BOT)).status == 200


async def test_sms_gets_each_paragraph_as_it_completes(
    client: Client, twilio: FakeTwilioApi, model: FakeOpenAI
) -> None:
    model.script(Answer(text=PARAGRAPHS, spacing=0.3))
    await sms_say(client, "SM" + "a" * 32, "tell me")
    await eventually(lambda: len(twilio.calls) == 3, within=20)
    await asyncio.sleep(0.3)
    (asked,) = model.calls
    assert [c.form["Body"] for c in twilio.calls] == [
        "First paragraph, bold.",
        "Second paragraph.",
        "Third paragraph.",
    ]
    # Each as it completed (the writing takes ~1.8 s), the last once the turn committed.
    assert twilio.calls[0].at - asked.at < 1.2
    assert twilio.calls[1].at - asked.at < 1.8


async def test_a_retried_turn_does_not_send_its_paragraphs_again(
    client: Client, twilio: FakeTwilioApi, model: FakeOpenAI
) -> None:
    await fail_first_commit(client, "twilio-sms")
    answer = Answer(text=PARAGRAPHS, spacing=0.3)
    model.script(answer, answer)  # the model answers the retry the same
    await sms_say(client, "SM" + "b" * 32, "tell me")
    await eventually(lambda: len(twilio.calls) == 3, within=30)
    await asyncio.sleep(1.0)
    assert len(model.calls) == 2
    assert [c.form["Body"] for c in twilio.calls] == [
        "First paragraph, bold.",
        "Second paragraph.",
        "Third paragraph.",
    ]


# -- the web channel --------------------------------------------------------------------------


async def test_the_web_channel_still_gets_deltas(client: Client, model: FakeOpenAI) -> None:
    model.script(Answer(text=("Hello ", "from ", "the ", "**model**."), spacing=0.05))
    resp = await client.post(
        f"/api/v1/bots/{BOT}/messages",
        json={"user_id": "web-live-1", "text": "hi"},
        headers={"Accept": "text/event-stream", "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert resp.status == 200
    events = []
    for block in (await resp.read()).decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    assert [e for e, _ in events] == ["delta"] * 4 + ["message", "done"]
    assert "".join(d["text"] for e, d in events if e == "delta") == "Hello from the **model**."
    assert events[4][1]["text"] == "Hello from the **model**."
