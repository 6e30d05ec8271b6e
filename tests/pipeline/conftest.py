"""The real pipeline on real stores: a PostgreSQL schema of its own, the test bots loaded.

``chat`` gives a scripted conversation through the Dispatcher::

    talk = chat("llm-tools")
    assert await talk("hi") == ["**Product Assistant** ..."]
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from channels.base import InboundMessage, OutboundMessage
from config.settings import Settings
from gateway.app import build_services
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.mail import MailSettings
from pipeline.outbound_http import OutboundHttp
from pipeline.services import Services
from pipeline.turn import Turn
from storage.base import Session
from storage.postgres import quote_ident
from storage.services import Stores, open_stores

TEST_BOTS = Path(__file__).resolve().parent.parent / "bots"


class Replies:
    """A reply sink that keeps the bot's messages as text."""

    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []

    async def delta(self, text: str) -> None:
        pass

    async def message(self, message: OutboundMessage) -> None:
        self.messages.append(message)

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


@pytest.fixture(scope="session")
async def stores(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stores]:
    """Every store, on the test server in a schema of this run (dropped at the end)."""
    schema = f"pipeline_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("pipeline"), database_url=server_database_url
    )
    opened = await open_stores(settings, schema=schema)
    yield opened
    await opened.close()
    conn = await asyncpg.connect(server_database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def http_client() -> AsyncIterator[OutboundHttp]:
    client = await OutboundHttp().open()
    yield client
    await client.close()


@pytest.fixture(scope="session")
def bots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the test bots (tests may change a package and reload it)."""
    folder = tmp_path_factory.mktemp("pipeline-bots")
    for package in TEST_BOTS.glob("*.gbai"):
        shutil.copytree(package, folder / package.name)
    return folder


@pytest.fixture(scope="session")
async def registry(bots_dir: Path, stores: Stores) -> BotRegistry:
    # No model settings from the process environment: these bots have no LLM (the tests of
    # tests/pipeline/llm_turns give theirs a fake one).
    bots = BotRegistry(bots_dir, tables=stores.tables, environ={})
    await bots.load_all()
    return bots


@pytest.fixture
def mail_settings() -> MailSettings:
    """No mail server unless a test points one out."""
    return MailSettings()


@pytest.fixture
def services(stores: Stores, http_client: OutboundHttp, mail_settings: MailSettings) -> Services:
    return build_services(stores, http_client, mail=mail_settings)


@pytest.fixture
def dispatcher(registry: BotRegistry, services: Services) -> Dispatcher:
    return Dispatcher(registry, services)


Talk = Callable[[str], Awaitable[list[str]]]


@pytest.fixture
def chat(dispatcher: Dispatcher) -> Callable[..., Talk]:
    """``chat(bot, user=…)`` -> ``talk(text)``: one user's conversation with a bot, turn by turn;
    each call returns the bot's replies to that message."""

    def start(bot: str, *, user: str | None = None, channel: str = "test") -> Talk:
        conversation = user or f"u-{uuid.uuid4().hex[:8]}"

        async def talk(text: str) -> list[str]:
            sink = Replies()
            await dispatcher.handle(
                InboundMessage(
                    channel=channel,
                    bot=bot,
                    conversation=conversation,
                    sender=conversation,
                    external_id=uuid.uuid4().hex,
                    text=text,
                ),
                sink,
            )
            return sink.texts

        return talk

    return start


@pytest.fixture
def make_turn(registry: BotRegistry, services: Services) -> Callable[..., Turn]:
    """A turn of ``bot`` outside the dispatcher (for running tools and hosts directly)."""

    def make(
        bot: str, *, user: str | None = None, text: str = "", raw: dict[str, str] | None = None
    ) -> Turn:
        loaded = registry.get(bot)
        assert loaded is not None, f"no test bot {bot!r}"
        conversation = user or f"u-{uuid.uuid4().hex[:8]}"
        message = InboundMessage(
            channel="test",
            bot=bot,
            conversation=conversation,
            sender=conversation,
            external_id=uuid.uuid4().hex,
            text=text,
            raw=raw or {},
        )
        session = Session(id=str(uuid.uuid4()), bot_id=bot, channel="test", user_id=conversation)
        return Turn(message=message, bot=loaded, services=services, sink=Replies(), session=session)

    return make
