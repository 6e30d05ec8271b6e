"""USE WEBSITE through the whole gateway, with no language model: the dialog names a site,
the turn goes on without waiting for the crawl, and once its pages are indexed the bot
answers from them, citing the page.

The site is served on 127.0.0.1 (the bot's config.csv allows private addresses); its start
page waits until the test lets it answer, so the crawl is still running while the user talks.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from gateway.app import create_app
from gateway.auth import AuthConfig
from gateway.keys import INGESTER, KNOWLEDGE, WEBSITES
from pipeline.kb.web_urls import website_collection
from pipeline.llm_stage import NO_LLM_NOTE
from tests.gateway.credentials import bearer, hs256_token
from tests.kb.local_site import LocalSite, acme_docs, crawled, serve

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with serve(LocalSite()) as served:
        served.pages.update(acme_docs("http://offsite.invalid"))
        # The bundled local model embeds every chunk: a few small pages keep this test short.
        del served.pages["/docs/big.html"]
        yield served


@pytest.fixture
def bot() -> str:
    return f"acme-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def gate(site: LocalSite) -> asyncio.Event:
    """The site's start page answers once this is set: until then the crawl cannot go on."""
    return site.hold("/docs/")


@pytest.fixture
async def client(  # type: ignore[no-untyped-def]
    gateway_database: str,
    tmp_path: Path,
    aiohttp_client,
    auth_config: AuthConfig,
    monkeypatch: pytest.MonkeyPatch,
    site: LocalSite,
    bot: str,
    gate: asyncio.Event,
) -> Client:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_URL", "LLM_KEY"):
        monkeypatch.delenv(name, raising=False)
    package = tmp_path / "bots" / f"{bot}.gbai"
    (package / f"{bot}.gbot").mkdir(parents=True)
    (package / f"{bot}.gbot" / "config.csv").write_text(
        "name,value\nHTTP Allow Private,true\nwebsite-crawl-delay,0\n"
    )
    (package / f"{bot}.gbdialog").mkdir()
    (package / f"{bot}.gbdialog" / "start.bas").write_text(
        f'USE WEBSITE "{site.url("/docs/")}" REFRESH "1d"\nTALK "Ask me about the Acme widget."\n'
    )
    manual = package / f"{bot}.gbkb" / "manual"
    manual.mkdir(parents=True)
    (manual / "gadget.md").write_text(
        "# Gadget\n\nInstall the gadget by plugging it into the widget port.\n"
    )
    settings = Settings(
        bots_dir=tmp_path / "bots", data_dir=tmp_path / "data", database_url=gateway_database
    )
    client = await aiohttp_client(
        create_app(settings, auth=auth_config), headers=bearer(hs256_token(roles=["app"]))
    )
    await client.server.app[INGESTER].wait()
    return client


async def say(client: Client, bot: str, user: str, text: str) -> list[str]:
    resp = await client.post(f"/api/v1/bots/{bot}/messages", json={"user_id": user, "text": text})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return [r["text"] for r in body["replies"]]


async def test_use_website_then_a_question_is_answered_from_the_site(
    client: Client, site: LocalSite, bot: str, gate: asyncio.Event
) -> None:
    app = client.server.app
    start = site.url("/docs/")
    user = f"u-{uuid.uuid4().hex[:8]}"

    async with asyncio.timeout(5):  # the turn does not wait for the crawl
        assert await say(client, bot, user, "hi") == ["Ask me about the Acme widget."]
    assert not gate.is_set()
    # Nothing of the site indexed yet: the session searches only the site, so no answer.
    [early] = await say(client, bot, user, "How do I install the widget?")
    assert "pip install" not in early and "gadget" not in early

    gate.set()
    row = await crawled(app[WEBSITES].store, bot, start)
    assert row.refresh == "1d" and row.collection == website_collection(start)
    await app[KNOWLEDGE].indexing()

    [answer] = await say(client, bot, user, "How do I install the widget?")
    assert answer.startswith("Here is what I found:")
    assert "pip install acme-widget" in answer
    assert f"— {start}install.html (Installing)" in answer  # the page it came from
    assert "gadget.md" not in answer  # this conversation searches the site it named
    assert NO_LLM_NOTE in answer
    assert site.paths().count("/docs/") == 1  # crawled once, not per turn
