"""Human handoff: conversations a bot hands to people, and the agents who answer them.

A dialog transfers its conversation with General Bots' ``TRANSFER TO HUMAN`` (see
``botbasic_comms/src/keywords/transfer_to_human.rs``): with no argument, one (a person asked
for by name), two (department, priority) or three (department, priority, reason), or
``transfer_to_human_ex(#{name, department, priority, reason, context})``. It answers General
Bots' result (``success``, ``status``, ``queue_position``, ``estimated_wait_seconds``,
``message``), and as there, it needs ``crm-enabled,true`` in the bot's config.csv (else
``status`` is ``crm_disabled`` and nothing is transferred: no conversation waits for people
nobody said are there). The transfer is committed with the turn (:mod:`storage.handoffs`).

From then on the conversation is *waiting*, then *active* once an agent takes it: the bot
does not answer it (:mod:`pipeline.handoff_stage`); the user's messages are stored in its
history and published to the agents live. The agent's messages reach the user through the
conversation's own channel: the outbox and the delivery worker for provider channels (paced,
retried, WhatsApp's window and template), the user's open socket for the web channel (and
its history, replayed on the next connect). Releasing hands it back to the bot, which goes on
where its dialog waited (``continue``) or starts over (``restart``): the bot's
``handoff-release-mode`` row, or the release's own choice. An agent silent for the bot's
``queue-timeout-minutes`` (General Bots' key, default 30) returns the conversation to the bot
with the bot's ``queue-timeout-message``.

Every change is announced on the pub/sub channel :data:`LIVE_CHANNEL` (every instance's
agent consoles hear it) and, for a bot with its generic webhook on, as a ``handoff`` event
on its callback (an outbox row written with the change).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from channels.base import OutboundMessage
from config.packages import BotConfig
from pipeline.bots import BotRegistry
from pipeline.errors import TurnRejected
from pipeline.message_codec import outbound_to_json
from storage.base import HistoryEntry, OutboxItem, PubSub, StorageError, TransferItem
from storage.handoff_base import (
    RELEASE_MODES,
    Delivery,
    DeliveryFor,
    Handoff,
    HandoffStore,
    ReleaseMode,
)

log = logging.getLogger(__name__)

# Pub/sub channels (storage.base.PubSub): handoff events of every bot, for agent consoles;
# messages for web users' open sockets.
LIVE_CHANNEL = "handoffs"
WEB_PUSH_CHANNEL = "web-push"

EVENT_CHANNEL = "generic"  # the channel whose callback gets ``handoff`` events
AGENT_ROLE = "agent"  # the history role of an agent's messages
MAX_TEXT = 4096 * 4
DEFAULT_TIMEOUT_MINUTES = 30.0
DEFAULT_TIMEOUT_MESSAGE = (
    "Sorry, nobody from our team could answer in time. You are talking with the assistant again."
)
PRIORITIES = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}
_TRUE = frozenset({"true", "yes", "1", "on"})


@dataclass(frozen=True, slots=True)
class HandoffSettings:
    """A bot's handoff rows of config.csv."""

    enabled: bool = False  # crm-enabled
    timeout: float = DEFAULT_TIMEOUT_MINUTES * 60  # seconds of agent silence; 0: never
    timeout_message: str = DEFAULT_TIMEOUT_MESSAGE
    release_mode: ReleaseMode = "continue"


def handoff_settings(config: BotConfig) -> HandoffSettings:
    """``crm-enabled`` and ``queue-timeout-minutes`` (General Bots' keys), and
    ``queue-timeout-message`` and ``handoff-release-mode`` (continue or restart)."""
    minutes = config.number("queue-timeout-minutes", DEFAULT_TIMEOUT_MINUTES)
    mode = config.get("handoff-release-mode", "").strip().lower() or "continue"
    if mode not in RELEASE_MODES:
        log.warning("handoff-release-mode %r is not continue or restart: continue", mode)
        mode = "continue"
    return HandoffSettings(
        enabled=config.get("crm-enabled", "").strip().lower() in _TRUE,
        timeout=max(minutes, 0.0) * 60,
        timeout_message=config.get("queue-timeout-message", "").strip() or DEFAULT_TIMEOUT_MESSAGE,
        release_mode=mode,  # type: ignore[arg-type]
    )


def priority_of(text: str | None) -> int:
    """General Bots' priorities: low 0, normal 1 (also anything else), high 2, urgent 3."""
    return PRIORITIES.get((text or "").strip().lower(), 1)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What ``TRANSFER TO HUMAN`` answers, as General Bots' ``TransferResult``."""

    success: bool
    status: str  # queued | crm_disabled
    message: str
    queue_position: int | None = None
    estimated_wait_seconds: int | None = None

    def as_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "success": self.success,
            "status": self.status,
            "message": self.message,
        }
        if self.queue_position is not None:
            value["queue_position"] = self.queue_position
        if self.estimated_wait_seconds is not None:
            value["estimated_wait_seconds"] = self.estimated_wait_seconds
        return value


CRM_DISABLED = TransferResult(
    False,
    "crm_disabled",
    "CRM features are not enabled. Add 'crm-enabled,true' to config.csv",
)


def queued(position: int) -> TransferResult:
    """General Bots' estimate: a minute per conversation waiting ahead and this one."""
    minutes = position
    return TransferResult(
        True,
        "queued",
        f"You have been added to the queue at position {position}. Estimated wait time:"
        f" {minutes} minute{'s' if minutes != 1 else ''}.",
        queue_position=position,
        estimated_wait_seconds=minutes * 60,
    )


@dataclass(frozen=True, slots=True)
class Agent:
    """A person answering conversations: an ``agent`` (or admin) credential."""

    id: str
    name: str
    admin: bool = False


class UnknownHandoff(TurnRejected):
    def __init__(self, bot: str, session_id: str, what: str = "was handed to a person") -> None:
        super().__init__(
            "unknown_handoff",
            f"no conversation {session_id!r} of bot {bot!r} {what}",
            status=404,
        )


class HandoffConflict(TurnRejected):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, status=409)


def _at(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def handoff_view(h: Handoff) -> dict[str, Any]:
    """A handoff as the API and the live feed show it."""
    view: dict[str, Any] = {
        "session_id": h.session_id,
        "channel": h.channel,
        "user_id": h.conversation,
        "status": h.status,
        "attendant": h.attendant,
        "department": h.department,
        "priority": PRIORITY_NAMES.get(h.priority, "normal"),
        "reason": h.reason,
        "context": h.context,
        "agent": {"id": h.agent_id, "name": h.agent_name} if h.agent_id else None,
        "requested_at": _at(h.requested_at),
        "taken_at": _at(h.taken_at),
        "agent_active_at": _at(h.agent_active_at),
        "resolved_at": _at(h.resolved_at),
        "release_mode": h.release_mode,
    }
    if h.last_message is not None:
        view["last_message"] = {"text": h.last_message, "at": _at(h.last_message_at)}
    return view


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """An agent's message, once written: its history id, time and outbox row."""

    handoff: Handoff
    history_id: int
    at: datetime
    outbox_id: int


class HandoffDesk:
    """The agents' side of handoffs, and what turns ask of them.

    ``channels_on(bot)`` names the bot's channels that are on (for its generic webhook's
    events); replies on ``delivered_by_worker`` channels are left to the delivery worker
    (``wake`` tells it), others are written as delivered (the web user's socket gets them
    through :data:`WEB_PUSH_CHANNEL`).
    """

    def __init__(
        self,
        store: HandoffStore,
        pubsub: PubSub,
        bots: BotRegistry,
        *,
        channels_on: Callable[[str], Collection[str]] = lambda bot: (),
        delivered_by_worker: Collection[str] = (),
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self._pubsub = pubsub
        self._bots = bots
        self._channels_on = channels_on
        self._by_worker = frozenset(delivered_by_worker)
        self.wake = wake

    def settings(self, bot: str) -> HandoffSettings:
        loaded = self._bots.get(bot)
        return HandoffSettings() if loaded is None else handoff_settings(loaded.package.config)

    def events_on(self, bot: str) -> bool:
        """Whether the bot's generic webhook is on to hear of handoffs."""
        return EVENT_CHANNEL in self._channels_on(bot)

    # -- what a turn asks ------------------------------------------------------------------

    async def transfer_result(self, bot: str, item: TransferItem) -> TransferResult:
        """The answer of a transfer about to be committed: its place in the queue."""
        return queued(await self.store.queue_position(bot, item.priority))

    def transfer_event(
        self, bot: str, channel: str, conversation: str, session_id: str, item: TransferItem
    ) -> OutboxItem | None:
        """The generic webhook's event of a transfer, committed with its turn."""
        if not self.events_on(bot):
            return None
        return OutboxItem(
            channel=EVENT_CHANNEL,
            conversation=conversation,
            message={
                "event": "handoff",
                "action": "transferred",
                "session_id": session_id,
                "channel": channel,
                "status": "waiting",
                "attendant": item.attendant,
                "department": item.department,
                "priority": PRIORITY_NAMES.get(item.priority, "normal"),
                "reason": item.reason,
            },
        )

    async def transferred(self, bot: str, session_id: str) -> None:
        """Announce a committed transfer to the agents."""
        handoff = await self.store.get(bot, session_id)
        if handoff is not None:
            await self._announce(handoff, "transferred")

    async def user_said(self, handoff: Handoff, text: str) -> None:
        """Show the agents a message the user wrote while a person has the conversation."""
        await self._publish(
            LIVE_CHANNEL,
            {
                "bot": handoff.bot_id,
                "type": "message",
                "session_id": handoff.session_id,
                "role": "user",
                "text": text,
                "at": datetime.now(UTC).isoformat(),
            },
        )

    # -- the agents' calls -----------------------------------------------------------------

    async def queue(self, bot: str) -> list[Handoff]:
        """The bot's waiting and active conversations, in the order agents serve them."""
        return await self.store.open(bot)

    async def get(self, bot: str, session_id: str) -> Handoff:
        handoff = await self.store.get(bot, session_id)
        if handoff is None:
            raise UnknownHandoff(bot, session_id)
        return handoff

    async def take(self, bot: str, session_id: str, agent: Agent) -> tuple[Handoff, bool]:
        """Hold a waiting conversation; ``(handoff, False)`` when the agent already held it
        (taking again changes nothing). Another agent's: :class:`HandoffConflict`."""
        change = await self.store.take(
            bot, session_id, agent.id, agent.name, event=self._event("taken")
        )
        if change is None:
            raise UnknownHandoff(bot, session_id, "waits for a person")
        handoff = change.handoff
        if handoff.agent_id != agent.id:
            raise HandoffConflict(
                "held_by_another",
                f"conversation {session_id!r} is held by {handoff.agent_name or 'another agent'}",
            )
        if change.changed:
            log.info("handoff taken bot=%s session=%s agent=%s", bot, session_id, agent.id)
            self.wake()  # the generic webhook's event
            await self._announce(handoff, "taken")
        return handoff, change.changed

    async def say(self, bot: str, session_id: str, agent: Agent, text: str) -> AgentMessage:
        """The agent's message to the user, through the conversation's channel."""
        change = await self.store.say(
            bot,
            session_id,
            None if agent.admin else agent.id,
            self._saying(text, AGENT_ROLE, agent),
        )
        if change is None:
            raise UnknownHandoff(bot, session_id)
        handoff = change.handoff
        delivered = change.delivered
        if not change.changed or delivered is None:
            if handoff.status == "waiting":
                raise HandoffConflict(
                    "not_taken", f"take conversation {session_id!r} before answering it"
                )
            raise HandoffConflict(
                "held_by_another",
                f"conversation {session_id!r} is held by {handoff.agent_name or 'another agent'}",
            )
        self.wake()
        await self._after_delivery(handoff, text, AGENT_ROLE, delivered.at, agent)
        return AgentMessage(handoff, delivered.history_id, delivered.at, delivered.outbox_id)

    async def release(
        self,
        bot: str,
        session_id: str,
        agent: Agent,
        *,
        mode: ReleaseMode | None = None,
        message: str | None = None,
    ) -> Handoff:
        """Hand the conversation back to the bot, with an optional last message from the
        agent; ``mode`` defaults to the bot's ``handoff-release-mode``."""
        mode = mode or self.settings(bot).release_mode
        change = await self.store.release(
            bot,
            session_id,
            None if agent.admin else agent.id,
            mode,
            event=self._event("released"),
            delivery=self._saying(message, AGENT_ROLE, agent) if message else lambda h: None,
        )
        if change is None:
            raise UnknownHandoff(bot, session_id, "is with a person")
        handoff = change.handoff
        if not change.changed:
            raise HandoffConflict(
                "held_by_another",
                f"conversation {session_id!r} is held by {handoff.agent_name or 'another agent'}",
            )
        log.info(
            "handoff released bot=%s session=%s by=%s mode=%s", bot, session_id, agent.id, mode
        )
        self.wake()
        if change.delivered is not None and message:
            await self._after_delivery(handoff, message, AGENT_ROLE, change.delivered.at, agent)
        await self._announce(handoff, "released")
        return handoff

    async def expire(self) -> list[Handoff]:
        """Return every conversation whose agent has been silent for its bot's timeout to
        the bot, telling the user; safe to run on every instance at once."""
        returned: list[Handoff] = []
        for bot in self._bots.names():
            settings = self.settings(bot)
            if not settings.enabled or settings.timeout <= 0:
                continue
            text = settings.timeout_message
            changes = await self.store.expire(
                bot,
                silence=settings.timeout,
                mode=settings.release_mode,
                event=self._event("abandoned"),
                delivery=self._saying(text, "assistant", None),
            )
            for change in changes:
                handoff = change.handoff
                log.info(
                    "handoff returned to the bot after %.0f s of agent silence bot=%s session=%s",
                    settings.timeout,
                    bot,
                    handoff.session_id,
                )
                if change.delivered is not None:
                    await self._after_delivery(
                        handoff, text, "assistant", change.delivered.at, None
                    )
                await self._announce(handoff, "abandoned")
                returned.append(handoff)
        if returned:
            self.wake()
        return returned

    # -- what a change writes and announces --------------------------------------------------

    def _event(self, action: str) -> Callable[[Handoff], OutboxItem | None]:
        def event(h: Handoff) -> OutboxItem | None:
            if not self.events_on(h.bot_id):
                return None
            message: dict[str, Any] = {
                "event": "handoff",
                "action": action,
                "session_id": h.session_id,
                "channel": h.channel,
                "status": h.status,
            }
            if h.agent_id is not None:
                message["agent"] = {"id": h.agent_id, "name": h.agent_name}
            if h.release_mode is not None and not h.open:
                message["release_mode"] = h.release_mode
            return OutboxItem(channel=EVENT_CHANNEL, conversation=h.conversation, message=message)

        return event

    def _saying(self, text: str, role: str, agent: Agent | None) -> DeliveryFor:
        return lambda h: self._delivery(h, text, role, agent)

    def _delivery(self, h: Handoff, text: str, role: str, agent: Agent | None) -> Delivery:
        """A message to the handoff's user: its history row, and its outbox row (pending for
        the delivery worker, or a record of what the web socket gets)."""
        reply = OutboundMessage(
            channel=h.channel, bot=h.bot_id, conversation=h.conversation, text=text
        )
        data = outbound_to_json(reply, session_id=h.session_id)
        data["origin"] = "agent" if agent is not None else "handoff-timeout"
        if agent is not None:
            data["agent"] = {"id": agent.id, "name": agent.name}
        return Delivery(
            entry=HistoryEntry(role=role, content=text),
            outbox=OutboxItem(
                channel=h.channel,
                conversation=h.conversation,
                message=data,
                delivered=h.channel not in self._by_worker,
            ),
        )

    async def _after_delivery(
        self, h: Handoff, text: str, role: str, at: datetime, agent: Agent | None
    ) -> None:
        """Once committed: the web user's socket, and the agents' consoles."""
        sender = {"id": agent.id, "name": agent.name} if agent is not None else None
        if h.channel not in self._by_worker:
            frame: dict[str, Any] = {
                "type": "message",
                "text": text,
                "suggestions": [],
                "from": "agent" if agent is not None else "bot",
            }
            if agent is not None:
                frame["agent"] = agent.name
            await self._publish(
                WEB_PUSH_CHANNEL,
                {
                    "bot": h.bot_id,
                    "channel": h.channel,
                    "user_id": h.conversation,
                    "session_id": h.session_id,
                    "frame": frame,
                },
            )
        await self._publish(
            LIVE_CHANNEL,
            {
                "bot": h.bot_id,
                "type": "message",
                "session_id": h.session_id,
                "role": role,
                "text": text,
                "at": at.isoformat(),
                "agent": sender,
            },
        )

    async def _announce(self, h: Handoff, action: str) -> None:
        await self._publish(
            LIVE_CHANNEL,
            {"bot": h.bot_id, "type": "handoff", "action": action, "handoff": handoff_view(h)},
        )

    async def _publish(self, channel: str, event: dict[str, Any]) -> None:
        """Live news is best effort: the change is committed, and consoles reload the queue
        when they reconnect."""
        try:
            await self._pubsub.publish(channel, orjson.dumps(event))
        except StorageError as e:
            log.warning("handoff event not published on %s: %s", channel, e)
