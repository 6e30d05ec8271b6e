"""With no language model configured, a question no dialog takes is answered from the
bot's knowledge base, its sources named, and the bot says what generative answers need.

The gateway indexes the package's ``.gbkb`` folder as it loads; the test waits for it.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.keys import INGESTER, KNOWLEDGE
from tests.gateway.conftest import TEST_BOTS
from tests.gateway.credentials import ADMIN_TOKEN, bearer, hs256_token

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    gateway_database: str,
    tmp_path: Path,
    aiohttp_client,
    auth_config: AuthConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_URL", "LLM_KEY"):
        monkeypatch.delenv(name, raising=False)
    bots = tmp_path / "bots"
    shutil.copytree(TEST_BOTS / "faq.gbai", bots / "faq.gbai")
    settings = Settings(bots_dir=bots, data_dir=tmp_path / "data", database_url=gateway_database)
    client = await aiohttp_client(
        create_app(settings, auth=auth_config), headers=bearer(hs256_token(roles=["app"]))
    )
    app = client.server.app
    await app[INGESTER].wait()
    await app[KNOWLEDGE].indexing()
    return client


async def ask(client: Client, text: str) -> list[str]:
    resp = await client.post(
        "/api/v1/bots/faq/messages",
        json={"user_id": f"u-{uuid.uuid4().hex[:8]}", "text": text},
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return [r["text"] for r in body["replies"]]


async def test_a_question_is_answered_from_the_knowledge_base_with_its_source(
    client: Client,
) -> None:
    [reply] = await ask(client, "How do I reset my password?")
    assert "Forgot password" in reply
    assert "help/account.md" in reply  # where it came from
    assert "OPENAI_API_KEY" in reply  # and what a generated answer needs


async def test_each_question_finds_its_own_document(client: Client) -> None:
    [returns] = await ask(client, "Can I get a refund for my order?")
    [shipping] = await ask(client, "How long does express delivery take?")
    assert returns.index("help/returns.md") < returns.index("OPENAI_API_KEY")
    assert "30 days" in returns.split("— help/returns.md")[0]
    assert "next business day" in shipping.split("— help/shipping.md")[0]


async def test_the_index_follows_the_package_on_reload(client: Client, tmp_path: Path) -> None:
    kb = tmp_path / "bots" / "faq.gbai" / "faq.gbkb" / "help"
    (kb / "shipping.md").unlink()
    (kb / "gifts.md").write_text("# Gift wrapping\n\nGift wrapping costs 3 euros per parcel.\n")
    resp = await client.post("/api/v1/bots/faq/reload", headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200, await resp.text()
    app = client.server.app
    await app[INGESTER].wait()
    await app[KNOWLEDGE].indexing()
    [reply] = await ask(client, "How much is gift wrapping?")
    assert "3 euros" in reply and "help/gifts.md" in reply
    assert "help/shipping.md" not in reply


async def test_the_bundled_bot_answers_from_its_knowledge_base_on_first_run(
    tmp_path: Path,
    gateway_database: str,
    aiohttp_client,  # type: ignore[no-untyped-def]
    auth_config: AuthConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_URL", "LLM_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path / "data", database_url=gateway_database)
    client = await aiohttp_client(
        create_app(settings, auth=auth_config), headers=bearer(hs256_token(roles=["app"]))
    )
    app = client.server.app
    await app[INGESTER].wait()
    await app[KNOWLEDGE].indexing()
    user = f"u-{uuid.uuid4().hex[:8]}"
    session = None
    replies: list[str] = []
    for text in ("hi", "Ada", "Ask about botserver", "How do I connect a Telegram bot?"):
        resp = await client.post(
            "/api/v1/bots/default/messages",
            json={"user_id": user, "text": text, "session_id": session},
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        session = body["session_id"]
        replies = [r["text"] for r in body["replies"]]
    [answer] = replies
    assert "telegram-bot-token" in answer
    assert "botserver/telegram.md" in answer
    assert "OPENAI_API_KEY" in answer
