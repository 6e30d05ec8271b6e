"""Whole turns through the LLM stage: the real pipeline and stores, the real ``openai`` and
``anthropic`` SDKs against the fake model servers of tests/llm, no network beyond 127.0.0.1.

``bots(server, "llm-tools", …)`` loads copies of test packages (tests/bots, or General Bots'
templates in tests/templates-corpus) whose model is the fake server; ``chat(registry, bot)``
talks to one of them, turn by turn, keeping what each turn streamed::

    talk = chat(await bots(openai_server, "llm-tools"), "llm-tools")
    turn = await talk("hi")
    assert turn.replies == ["**Product Assistant** ..."]
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from channels.base import InboundMessage, OutboundMessage
from pipeline.bots import BotRegistry
from pipeline.conversation import Knowledge
from pipeline.dispatcher import Dispatcher
from pipeline.llm import RetryPolicy
from pipeline.services import Services
from storage.base import HistoryEntry
from storage.services import Stores
from tests.llm import fake_anthropic, fake_openai
from tests.llm.fake_anthropic import FakeAnthropic
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import ScriptedServer
from tests.offline_network import offline_network

__all__ = ["offline_network"]  # every test here fails on a connection beyond 127.0.0.1

TESTS = Path(__file__).resolve().parent.parent.parent
SOURCES = (TESTS / "bots", TESTS / "templates-corpus")
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, jitter=0.0)


@dataclass
class Sink:
    """A reply sink that keeps deltas and messages in the order they came."""

    events: list[tuple[str, str]] = field(default_factory=list)
    messages: list[OutboundMessage] = field(default_factory=list)

    async def delta(self, text: str) -> None:
        self.events.append(("delta", text))

    async def message(self, message: OutboundMessage) -> None:
        self.events.append(("message", message.text))
        self.messages.append(message)


@dataclass
class TurnResult:
    replies: list[str]
    deltas: list[str]
    sink: Sink
    session_id: str


Talk = Callable[[str], Awaitable[TurnResult]]


def environment(server: ScriptedServer) -> dict[str, str]:
    """The process-wide model settings that point every bot at ``server``."""
    if isinstance(server, FakeAnthropic):
        return {
            "LLM_PROVIDER": "anthropic",
            "LLM_URL": server.url,
            "LLM_KEY": fake_anthropic.API_KEY,
            "LLM_MODEL": "claude-test",
        }
    assert isinstance(server, FakeOpenAI)
    return {"LLM_URL": f"{server.url}/v1", "LLM_KEY": fake_openai.API_KEY, "LLM_MODEL": "gpt-4o"}


LoadBots = Callable[..., Awaitable[BotRegistry]]


@pytest.fixture
async def bots(tmp_path: Path, stores: Stores) -> AsyncIterator[LoadBots]:
    """``await bots(server, *packages, config={"pkg": {"row": "value"}})``: a registry of
    copies of those packages, with rows added to their config.csv, talking to ``server``."""
    registries: list[BotRegistry] = []

    async def load(
        server: ScriptedServer | None,
        *packages: str,
        config: dict[str, dict[str, str]] | None = None,
    ) -> BotRegistry:
        folder = tmp_path / f"bots-{len(registries)}"
        folder.mkdir()
        for name in packages:
            source = next(s / f"{name}.gbai" for s in SOURCES if (s / f"{name}.gbai").is_dir())
            shutil.copytree(source, folder / source.name)
            rows = (config or {}).get(name)
            if rows:
                csv = folder / source.name / f"{name}.gbot" / "config.csv"
                csv.parent.mkdir(exist_ok=True)
                text = csv.read_text() if csv.exists() else "name,value\n"
                extra = "".join(f"{k},{v}\n" for k, v in rows.items())
                csv.write_text(text.rstrip("\n") + "\n" + extra)
        registry = BotRegistry(
            folder,
            tables=stores.tables,
            environ=environment(server) if server is not None else {},
            llm_policy=FAST,
        )
        await registry.load_all()
        registries.append(registry)
        return registry

    yield load
    for registry in registries:
        await registry.close()


Chat = Callable[..., Talk]


@pytest.fixture
def chat(services: Services) -> Chat:
    """``chat(registry, bot, knowledge=None)`` -> ``talk(text)``: one user's conversation."""

    def start(
        registry: BotRegistry,
        bot: str,
        *,
        knowledge: Knowledge | None = None,
        raw: dict[str, str] | None = None,
    ) -> Talk:
        dispatcher = Dispatcher(registry, services, knowledge=knowledge)
        user = f"u-{uuid.uuid4().hex[:8]}"

        async def talk(text: str) -> TurnResult:
            sink = Sink()
            message = InboundMessage(
                channel="test",
                bot=bot,
                conversation=user,
                sender=user,
                external_id=uuid.uuid4().hex,
                text=text,
                raw=raw or {},
            )
            turn = await dispatcher.handle(message, sink)
            assert turn.session is not None
            return TurnResult(
                replies=[m.text for m in sink.messages],
                deltas=[t for kind, t in sink.events if kind == "delta"],
                sink=sink,
                session_id=turn.session.id,
            )

        return talk

    return start


@pytest.fixture
def history(stores: Stores) -> Callable[[str], Awaitable[list[HistoryEntry]]]:
    async def read(session_id: str) -> list[HistoryEntry]:
        return await stores.conversations.history(session_id, limit=100)

    return read


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def anthropic_server() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.close()
