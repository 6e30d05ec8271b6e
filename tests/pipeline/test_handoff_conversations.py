"""Human handoff as conversations: the real pipeline on real stores, the concierge test bot
(``TRANSFER TO HUMAN`` when the user says "human"), and an agent on the desk's side.

Each test reads as a transcript: what the user says, what the bot answers (nothing at all
while a person has the conversation), what the agent does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from channels.base import InboundMessage
from gateway.app import build_services
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.handoff import LIVE_CHANNEL, Agent, HandoffConflict, HandoffDesk, UnknownHandoff
from pipeline.mail import MailSettings
from pipeline.outbound_http import OutboundHttp
from pipeline.services import Services
from pipeline.session_state import read_state
from storage.services import Stores
from tests.pipeline.conftest import Replies

CONCIERGE = (
    Path(__file__).resolve().parent.parent
    / "bots"
    / "concierge.gbai"
    / ("concierge.gbdialog/start.bas")
)
GRACE = Agent("key:grace", "Grace")
ALAN = Agent("key:alan", "Alan")
GREETING = "Hello! I am the concierge. Say human to talk to a person."
IN_LINE = "A person will be with you shortly. You are number {n} in line."


@pytest.fixture
def services(stores: Stores, http_client: OutboundHttp, registry: BotRegistry) -> Services:
    return build_services(stores, http_client, mail=MailSettings(), bots=registry)


@pytest.fixture
def desk(services: Services) -> HandoffDesk:
    assert services.handoffs is not None
    return services.handoffs


@dataclass
class User:
    """One user of one bot, talking through the dispatcher."""

    dispatcher: Dispatcher
    stores: Stores
    bot: str
    name: str

    async def says(self, text: str) -> list[str]:
        sink = Replies()
        await self.dispatcher.handle(
            InboundMessage(
                channel="test",
                bot=self.bot,
                conversation=self.name,
                sender=self.name,
                external_id=uuid.uuid4().hex,
                text=text,
            ),
            sink,
        )
        return sink.texts

    async def session_id(self) -> str:
        session = await self.stores.conversations.find_active(
            bot_id=self.bot, channel="test", user_id=self.name
        )
        assert session is not None
        return session.id

    async def history(self) -> list[tuple[str, str]]:
        entries = await self.stores.conversations.history(await self.session_id(), limit=200)
        return [(e.role, e.content) for e in entries]


@pytest.fixture
def user(dispatcher: Dispatcher, stores: Stores) -> Callable[..., User]:
    def make(bot: str = "concierge") -> User:
        return User(dispatcher, stores, bot, f"u-{uuid.uuid4().hex[:8]}")

    return make


@pytest.fixture
def dispatcher(registry: BotRegistry, services: Services) -> Dispatcher:
    return Dispatcher(registry, services)


@pytest.fixture
async def live(stores: Stores) -> AsyncIterator[list[dict[str, Any]]]:
    """What the agents' consoles hear, as it is published."""
    heard: list[dict[str, Any]] = []

    async def listen(ready: asyncio.Event) -> None:
        async with stores.pubsub.subscribe(LIVE_CHANNEL) as messages:
            ready.set()
            async for raw in messages:
                heard.append(orjson.loads(raw))

    ready = asyncio.Event()
    task = asyncio.create_task(listen(ready))
    await ready.wait()
    yield heard
    task.cancel()


async def until(check: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while not (value := check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
    return value


async def transfer(user: User) -> str:
    assert await user.says("hi") == [GREETING]
    said = await user.says("human")
    assert len(said) == 1 and said[0].startswith("A person will be with you shortly.")
    return await user.session_id()


async def test_a_person_takes_the_conversation_and_the_dialog_goes_on_where_it_waited(
    user: Callable[..., User], desk: HandoffDesk, live: list[dict[str, Any]]
) -> None:
    ada = user()
    assert await ada.says("hi") == [GREETING]
    assert await ada.says("what time is it?") == ["You said: what time is it?"]
    position = len([h for h in await desk.queue("concierge") if h.status == "waiting"]) + 1
    assert await ada.says("human") == [IN_LINE.format(n=position)]
    session_id = await ada.session_id()
    [waiting] = [h for h in await desk.queue("concierge") if h.session_id == session_id]
    assert (waiting.status, waiting.department, waiting.priority) == ("waiting", "support", 2)
    assert waiting.reason == "asked for a person"
    assert waiting.last_message == "human"

    # While it waits, and once Grace holds it, the bot says nothing at all.
    assert await ada.says("hello? anyone?") == []
    handoff, taken = await desk.take("concierge", session_id, GRACE)
    assert taken and handoff.status == "active" and handoff.agent_name == "Grace"
    said = await desk.say("concierge", session_id, GRACE, "Hi Ada, I am Grace. How can I help?")
    assert said.history_id > 0
    assert await ada.says("my order is late") == []

    await desk.release("concierge", session_id, GRACE)
    assert await ada.says("thanks!") == ["Welcome back! You said: thanks!"]
    assert (await ada.history())[-7:] == [
        ("user", "human"),
        ("assistant", IN_LINE.format(n=position)),
        ("user", "hello? anyone?"),
        ("agent", "Hi Ada, I am Grace. How can I help?"),
        ("user", "my order is late"),
        ("user", "thanks!"),
        ("assistant", "Welcome back! You said: thanks!"),
    ]
    # The agents heard it all live: the transfer, the user's messages, the take and release.
    await until(lambda: any(e.get("action") == "released" for e in live))
    mine = [
        e for e in live if e.get("session_id", e.get("handoff", {}).get("session_id")) == session_id
    ]
    assert [(e["type"], e.get("action") or e.get("role")) for e in mine] == [
        ("handoff", "transferred"),
        ("message", "user"),
        ("handoff", "taken"),
        ("message", "agent"),
        ("message", "user"),
        ("handoff", "released"),
    ]
    assert [e["text"] for e in mine if e["type"] == "message"] == [
        "hello? anyone?",
        "Hi Ada, I am Grace. How can I help?",
        "my order is late",
    ]


async def test_released_with_restart_the_conversation_starts_over(
    user: Callable[..., User], desk: HandoffDesk
) -> None:
    bob = user()
    session_id = await transfer(bob)
    await desk.take("concierge", session_id, GRACE)
    await desk.release("concierge", session_id, GRACE, mode="restart", message="Bye for now!")
    assert await bob.says("hello again") == [GREETING]
    assert (await bob.history())[-3:] == [
        ("agent", "Bye for now!"),
        ("user", "hello again"),
        ("assistant", GREETING),
    ]


async def test_the_bot_stays_silent_through_twenty_messages_while_a_person_holds_it(
    user: Callable[..., User], desk: HandoffDesk, stores: Stores
) -> None:
    cy = user()
    session_id = await transfer(cy)
    await desk.take("concierge", session_id, GRACE)
    session = await stores.conversations.get(session_id)
    assert session is not None
    state_before = read_state(session)
    for n in range(20):
        assert await cy.says(f"message {n}") == []
    history = await cy.history()
    assert history[-20:] == [("user", f"message {n}") for n in range(20)]
    session = await stores.conversations.get(session_id)
    assert session is not None and read_state(session) == state_before  # untouched meanwhile
    await desk.release("concierge", session_id, GRACE)
    assert await cy.says("done") == ["Welcome back! You said: done"]


async def test_a_dialog_that_transfers_and_says_nothing_tells_the_user_their_place(
    stores: Stores, http_client: OutboundHttp, tmp_path: Path
) -> None:
    folder = tmp_path / "bots"
    for name, config, dialog in (
        ("quiet", "crm-enabled,true\n", "TRANSFER TO HUMAN\n"),
        ("closed", "", 'result = TRANSFER TO HUMAN\nTALK result.status + ": " + result.message\n'),
    ):
        (folder / f"{name}.gbai" / f"{name}.gbdialog").mkdir(parents=True)
        (folder / f"{name}.gbai" / f"{name}.gbot").mkdir()
        (folder / f"{name}.gbai" / f"{name}.gbdialog" / "start.bas").write_text(dialog)
        (folder / f"{name}.gbai" / f"{name}.gbot" / "config.csv").write_text(
            "name,value\n" + config
        )
    registry = BotRegistry(folder, tables=stores.tables, environ={})
    await registry.load_all()
    services = build_services(stores, http_client, mail=MailSettings(), bots=registry)
    dispatcher = Dispatcher(registry, services)

    quiet = User(dispatcher, stores, "quiet", f"u-{uuid.uuid4().hex[:8]}")
    [said] = await quiet.says("hi")
    assert said.startswith("You have been added to the queue at position ")
    assert await quiet.says("still there?") == []

    # Without crm-enabled nothing is transferred: General Bots' crm_disabled result.
    closed = User(dispatcher, stores, "closed", f"u-{uuid.uuid4().hex[:8]}")
    assert await closed.says("hi") == [
        "crm_disabled: CRM features are not enabled. Add 'crm-enabled,true' to config.csv"
    ]
    assert services.handoffs is not None
    assert await services.handoffs.queue("closed") == []
    # Its dialog ended as any dialog does: the bot, not a person, answers what follows.
    assert await closed.says("hi again") == ["Sorry, I have no answer for that."]


async def test_two_agents_taking_at_once_find_one_winner(
    user: Callable[..., User], desk: HandoffDesk
) -> None:
    dee = user()
    session_id = await transfer(dee)
    outcomes = await asyncio.gather(
        *(desk.take("concierge", session_id, agent) for agent in (GRACE, ALAN) * 4),
        return_exceptions=True,
    )
    winners = {h.agent_id for h, taken in (o for o in outcomes if isinstance(o, tuple)) if taken}
    assert len(winners) == 1
    winner = GRACE if winners == {GRACE.id} else ALAN
    loser = ALAN if winner is GRACE else GRACE
    refused = [o for o in outcomes if isinstance(o, HandoffConflict)]
    assert len(refused) == 4 and all(e.code == "held_by_another" for e in refused)
    # Taking again is the same answer, and the loser can neither answer nor release it.
    handoff, taken = await desk.take("concierge", session_id, winner)
    assert (handoff.agent_id, taken) == (winner.id, False)
    with pytest.raises(HandoffConflict):
        await desk.say("concierge", session_id, loser, "I am here too")
    with pytest.raises(HandoffConflict):
        await desk.release("concierge", session_id, loser)
    await desk.release("concierge", session_id, winner)
    with pytest.raises(UnknownHandoff):
        await desk.take("concierge", session_id, loser)


async def test_another_bots_conversation_is_unknown_and_left_alone(
    user: Callable[..., User], desk: HandoffDesk
) -> None:
    eve = user()
    session_id = await transfer(eve)
    for call in (
        desk.take("resumable", session_id, GRACE),
        desk.say("resumable", session_id, GRACE, "hello"),
        desk.release("resumable", session_id, GRACE),
        desk.get("resumable", session_id),
    ):
        with pytest.raises(UnknownHandoff):
            await call
    handoff = await desk.get("concierge", session_id)
    assert (handoff.status, handoff.agent_id) == ("waiting", None)
    assert await eve.says("hello?") == []


async def expire_all(desk: HandoffDesk, bot: str) -> list[str]:
    settings = desk.settings(bot)
    changes = await desk.store.expire(
        bot, silence=0.0, mode=settings.release_mode, event=lambda h: None, delivery=lambda h: None
    )
    return [c.handoff.session_id for c in changes]


@pytest.fixture(autouse=True)
async def empty_queue(desk: HandoffDesk) -> AsyncIterator[None]:
    """Each test finds the concierge's queue empty (the stores are the session's)."""
    await expire_all(desk, "concierge")
    yield


async def test_the_timeout_returns_each_conversation_once_whoever_sweeps(
    stores: Stores, http_client: OutboundHttp, tmp_path: Path
) -> None:
    """Instances sweeping at once (each its own desk over the same database): every silent
    conversation goes back to the bot once, its user told once."""
    package = tmp_path / "bots" / "hasty.gbai"
    (package / "hasty.gbdialog").mkdir(parents=True)
    (package / "hasty.gbot").mkdir()
    (package / "hasty.gbdialog" / "start.bas").write_text(CONCIERGE.read_text())
    (package / "hasty.gbot" / "config.csv").write_text(
        "name,value\ncrm-enabled,true\nqueue-timeout-minutes,0.002\n"
        "queue-timeout-message,Back with the bot.\n"
    )
    registry = BotRegistry(tmp_path / "bots", tables=stores.tables, environ={})
    await registry.load_all()
    instances = [
        build_services(stores, http_client, mail=MailSettings(), bots=registry) for _ in range(3)
    ]
    dispatcher = Dispatcher(registry, instances[0])
    users = [User(dispatcher, stores, "hasty", f"u-{uuid.uuid4().hex[:8]}") for _ in range(3)]
    sessions = [await transfer(u) for u in users]
    desks = [i.handoffs for i in instances if i.handoffs is not None]
    await desks[0].take("hasty", sessions[0], GRACE)
    await asyncio.sleep(0.3)  # past the 0.12 s of silence

    returned = await asyncio.gather(*(d.expire() for d in desks))
    assert sorted(h.session_id for found in returned for h in found) == sorted(sessions)
    for u in users:
        assert (await u.history()).count(("assistant", "Back with the bot.")) == 1
        assert await u.says("hi") == ["Welcome back! You said: hi"]
    assert await desks[1].queue("hasty") == []
