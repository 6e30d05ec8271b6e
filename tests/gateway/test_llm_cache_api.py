"""The semantic cache through the web API: a gateway whose bot talks to the fake OpenAI server
answers a repeated question with no model call, streamed as server-sent deltas; its counters
are at ``GET /api/v1/bots/{bot}/llm-cache``; a reload that changes the knowledge base drops
the bot's cached answers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.keys import INGESTER, KNOWLEDGE
from tests.fake_servers import fake_server
from tests.gateway.credentials import ADMIN_TOKEN, bearer, hs256_token
from tests.gateway.test_openapi import check, response_schema
from tests.llm import fake_openai
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer
from tests.offline_network import offline_network

__all__ = ["offline_network"]  # nothing beyond 127.0.0.1

Client = TestClient  # type: ignore[type-arg]
BOT = "cached"
STATE = "/api/v1/bots/{bot}/llm-cache"

openai_server = fake_server(FakeOpenAI)


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    gateway_database: str,
    tmp_path: Path,
    aiohttp_client,
    auth_config: AuthConfig,
    monkeypatch: pytest.MonkeyPatch,
    openai_server: FakeOpenAI,
) -> Client:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLM_URL", f"{openai_server.url}/v1")
    monkeypatch.setenv("LLM_KEY", fake_openai.API_KEY)
    monkeypatch.setenv("LLM_MODEL", "gpt-4o")
    package = tmp_path / "bots" / f"{BOT}.gbai"
    (package / f"{BOT}.gbot").mkdir(parents=True)
    (package / f"{BOT}.gbot" / "config.csv").write_text(
        "name,value\nllm-cache,true\nllm-cache-threshold,0.95\n"
    )
    (package / f"{BOT}.gbkb" / "docs").mkdir(parents=True)
    (package / f"{BOT}.gbkb" / "docs" / "hours.md").write_text("# Hours\n\nOpen 9 to 18.\n")
    settings = Settings(
        bots_dir=tmp_path / "bots", data_dir=tmp_path / "data", database_url=gateway_database
    )
    client = await aiohttp_client(
        create_app(settings, auth=auth_config), headers=bearer(hs256_token(roles=["app"]))
    )
    await client.server.app[INGESTER].wait()
    await client.server.app[KNOWLEDGE].indexing()
    return client


async def ask(client: Client, text: str) -> list[str]:
    resp = await client.post(
        f"/api/v1/bots/{BOT}/messages", json={"user_id": f"u-{uuid.uuid4().hex[:8]}", "text": text}
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return [r["text"] for r in body["replies"]]


async def stream(client: Client, text: str) -> list[tuple[str, Any]]:
    resp = await client.post(
        f"/api/v1/bots/{BOT}/messages",
        json={"user_id": f"u-{uuid.uuid4().hex[:8]}", "text": text},
        headers={"Accept": "text/event-stream"},
    )
    assert resp.status == 200
    events = []
    for block in (await resp.read()).decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], orjson.loads(lines["data"])))
    return events


async def state(client: Client) -> dict[str, Any]:
    resp = await client.get(STATE.format(bot=BOT), headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    check(response_schema(STATE, "get", 200), body)
    return body


async def test_a_repeated_question_is_streamed_from_the_cache_and_counted(
    client: Client, openai_server: FakeOpenAI
) -> None:
    openai_server.script(
        Answer(text=("We are open from 9 to 18, ", "every day ", "except Sunday."))
    )
    first = await ask(client, "When are you open?")
    assert first == ["We are open from 9 to 18, every day except Sunday."]

    events = await stream(client, "when are you open")
    kinds = [kind for kind, _ in events]
    assert kinds[-2:] == ["message", "done"] and set(kinds[:-2]) == {"delta"}
    assert len(kinds) > 3  # the cached answer comes in several deltas, as the model's did
    assert "".join(data["text"] for kind, data in events if kind == "delta") == first[0]
    assert events[-2][1]["text"] == first[0]
    assert len(openai_server.calls) == 1

    body = await state(client)
    assert body["enabled"] and body["semantic"] and body["threshold"] == 0.95
    assert body["embedding_model"] == "all-MiniLM-L6-v2-onnx-int8"
    assert body["counters"]["exact"] == {"hits": 1, "misses": 1}
    assert body["counters"]["stored"] == 1


async def test_a_reload_that_changes_the_knowledge_base_drops_the_answers(
    client: Client, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    openai_server.script(Answer(text=("From 9 to 18.",)), Answer(text=("From 8 to 20.",)))
    assert await ask(client, "What are the opening hours?") == ["From 9 to 18."]
    assert await ask(client, "What are the opening hours?") == ["From 9 to 18."]
    docs = tmp_path / "bots" / f"{BOT}.gbai" / f"{BOT}.gbkb" / "docs"
    (docs / "hours.md").write_text("# Hours\n\nOpen 8 to 20 since May.\n")
    resp = await client.post(f"/api/v1/bots/{BOT}/reload", headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200
    await client.server.app[INGESTER].wait()
    assert await ask(client, "What are the opening hours?") == ["From 8 to 20."]
    assert len(openai_server.calls) == 2


async def test_the_cache_state_is_for_admins_of_known_bots(client: Client) -> None:
    anonymous = {"Authorization": ""}
    resp = await client.get(STATE.format(bot=BOT), headers=bearer(hs256_token(roles=["app"])))
    assert resp.status == 403
    check(response_schema(STATE, "get", 403), await resp.json())
    resp = await client.get(STATE.format(bot="nobody"), headers=bearer(ADMIN_TOKEN))
    assert resp.status == 404
    check(response_schema(STATE, "get", 404), await resp.json())
    resp = await client.get(STATE.format(bot="default"), headers=anonymous)
    assert resp.status == 401
