"""Store contracts: what the rest of the product may ask of storage.

Each contract has an embedded backend (a PostgreSQL run by the process
itself, or in-process structures) and a production backend (a PostgreSQL
server, Redis); one contract test suite runs against every backend.
Every key is scoped by bot by the caller or by the store's arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class StorageError(Exception):
    """Root of the errors storage raises."""


class LockTimeout(StorageError):
    """A lock could not be acquired in time."""


class ClaimLost(StorageError):
    """A turn's inbox claim was no longer held when the turn committed (its lease expired
    and another worker took the message): nothing of the turn was written."""


class ConversationChanged(StorageError):
    """A turn whose message was not written yet (see :meth:`Inbox.reserve`) did not commit:
    since its read, another message of its conversation became active, or its session was
    written. Nothing of the turn was written; run the message again, written first."""


@dataclass(slots=True)
class Session:
    """One conversation of a user with a bot on a channel.

    ``state`` is plain JSON data: the serialized dialog continuation, the
    suggestions on offer, context entries, active KBs and tools. ``stored``
    is False for a session made by :meth:`ConversationStore.new` until its
    first save writes it.
    """

    id: str
    bot_id: str
    channel: str
    user_id: str
    status: str = "active"
    state: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    stored: bool = True
    # The row version this copy was read at (PostgreSQL's xmin), where the read says:
    # what a turn whose message is not written yet checks when it commits.
    version: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryAttachment:
    """A file a history row carried: where it is kept, or why it is not (``error``).

    ``key`` is the blob's key (``None`` when it was not stored: too large, gone from the
    provider); ``kind`` is a :class:`channels.base.MediaKind` value; ``transcript`` is
    what a voice note or audio file said (``None`` when it was not transcribed).
    """

    kind: str
    key: str | None
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    filename: str | None = None
    caption: str | None = None
    error: str | None = None
    transcript: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One message of a conversation as kept in its history."""

    role: str  # "user" | "bot" | "system"
    content: str
    tokens_used: int = 0
    created_at: datetime | None = None
    seq: int | None = None  # its place in the history, once stored (a cursor for ``after``)
    attachments: tuple[HistoryAttachment, ...] = ()


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An inbound message to claim: unique per (bot, channel, external id).

    ``message`` is the normalized message as JSON data; ``delay`` holds it back
    from workers for that many seconds (a request waiting to run it itself);
    ``window`` records the user's message time for :class:`ConversationWindows`.
    """

    bot_id: str
    channel: str
    external_id: str
    conversation: str
    received_at: datetime
    message: dict[str, Any]
    delay: float = 0.0
    window: bool = False  # the channel keeps a customer-service window (WhatsApp)


@dataclass(frozen=True, slots=True)
class Claim:
    """An inbox row leased by a worker: only the holder of ``token`` may finish it."""

    seq: int
    token: str
    bot_id: str
    channel: str
    conversation: str
    external_id: str
    message: dict[str, Any]
    attempts: int
    received_at: datetime
    # What earlier attempts of this turn streamed live to the provider before failing
    # (see :meth:`Inbox.record_live`): one entry per message or paragraph sent, in order.
    live: tuple[dict[str, Any], ...] = ()
    # The rows folded into this one by :meth:`Inbox.gather` (an album's other items, the
    # rest of a burst): finished as merged, their messages in ``message``.
    merged: tuple[int, ...] = ()
    # False: the message is not in the inbox yet, only its seq is reserved
    # (:meth:`Inbox.reserve`); the turn's save writes it, done, with everything else.
    written: bool = True


# What to fold into a leased message (see :meth:`Inbox.gather`): given its message and the
# pending messages of its conversation after it, oldest first, each with the seconds
# between its write and the leased one's, how many of them (from the first) belong with
# it and the merged message; ``None`` when none does.
Gatherer = Callable[
    [dict[str, Any], Sequence[tuple[dict[str, Any], float]]], tuple[int, dict[str, Any]] | None
]


@dataclass(slots=True)
class SessionRead:
    """A turn's session, read in the statement that leased its message.

    ``session_id`` is the id the message named (``None``: the user's active session
    of ``bot_id``/``channel``/``user_id``); ``session`` what the read found. While
    it is :data:`turn_session_read`, the conversation store answers the turn's
    first matching ``get``/``find_active`` with it instead of a round trip of its
    own (``used`` then): the lease keeps every other turn of the conversation
    from writing the session in between, so it is the read the turn would make.
    """

    session_id: str | None
    bot_id: str
    channel: str
    user_id: str
    session: Session | None
    used: bool = False

    def take(self, session_id: str | None, bot_id: str, channel: str, user_id: str) -> bool:
        """Whether this read answers that lookup (once)."""
        if self.used or self.session_id != session_id:
            return False
        if session_id is None and (self.bot_id, self.channel, self.user_id) != (
            bot_id,
            channel,
            user_id,
        ):
            return False
        self.used = True
        return True


# The session read with the lease of the turn running in this task, if any (set by the
# message path around the turn).
turn_session_read: ContextVar[SessionRead | None] = ContextVar("turn_session_read", default=None)


@dataclass(frozen=True, slots=True)
class InboxPut:
    """What :meth:`Inbox.put_and_claim` did: ``seq`` is ``None`` for a duplicate; ``claim``
    is the lease when the message was leased at once, ``None`` when it waits for an
    earlier message of its conversation (or is a duplicate); ``session`` the turn's
    session read with the lease, when asked for."""

    seq: int | None
    claim: Claim | None
    session: SessionRead | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A reply committed with its turn. ``delivered``: it already reached the user
    (a web reply sent on the request), so it is kept only as a record.

    A reply streamed live while its turn ran starts with ``parts_sent`` parts already
    confirmed, their ids in ``provider_ids``: the delivery worker goes on from there.
    """

    channel: str
    conversation: str
    message: dict[str, Any]
    delivered: bool = False
    parts_sent: int = 0
    provider_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TransferItem:
    """A transfer to a person (TRANSFER TO HUMAN) a turn commits with its session: what the
    bot asked for (see :mod:`storage.handoff_base`)."""

    attendant: str | None = None  # a person asked for by name
    department: str | None = None
    priority: int = 1  # 0 low, 1 normal, 2 high, 3 urgent
    reason: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A leased outbox row: a reply to send, with the parts already confirmed."""

    seq: int
    token: str
    bot_id: str
    channel: str
    conversation: str
    message: dict[str, Any]
    parts_sent: int
    provider_ids: tuple[str, ...]
    attempts: int
    created_at: datetime
    # Sent, and a later reply of the same conversation waits behind it (as its last record
    # found: see Outbox.part_sent).
    has_next: bool = False


class ConversationStore(Protocol):
    """Sessions and their message history."""

    async def create(self, *, bot_id: str, channel: str, user_id: str) -> Session:
        """Start a new active session, written at once."""

    def new(self, *, bot_id: str, channel: str, user_id: str) -> Session:
        """A new active session, written by its first :meth:`save` (a turn that fails
        before saving leaves no session behind). No I/O."""

    async def get(self, session_id: str) -> Session | None:
        """The session with this id, or ``None`` (also for ids that are not UUIDs)."""

    async def find_active(self, *, bot_id: str, channel: str, user_id: str) -> Session | None:
        """The user's most recently updated active session with this bot on this channel."""

    async def save(
        self,
        session: Session,
        *,
        append: Sequence[HistoryEntry] = (),
        claim: Claim | None = None,
        outbox: Sequence[OutboxItem] = (),
        handoff: TransferItem | None = None,
    ) -> None:
        """Persist the session's status and state and append history, atomically.

        With ``claim``, the same statement marks that inbox row done (writes it, done, for
        a claim not ``written``) and writes ``outbox``: a turn commits whole or not at
        all. ``handoff`` puts the conversation in its bot's queue for a person, in the
        same statement (a conversation already waiting or held keeps its handoff). It fails with
        :class:`ClaimLost` (writing nothing) when the claim's lease was lost, and with
        :class:`ConversationChanged` when a claim not written may not be written.
        Writes a session from :meth:`new` the first time; fails with
        :class:`StorageError` for a stored session that no longer exists (and
        for a new one whose id is taken).
        """

    async def history(
        self, session_id: str, *, limit: int = 50, after: int | None = None
    ) -> list[HistoryEntry]:
        """The last ``limit`` entries of a session, oldest first; with ``after`` (an entry's
        ``seq``), the first ``limit`` entries stored after that one."""

    async def close(self) -> None:
        """Release what the store holds (before its database pool closes)."""


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """Attachment ``position`` of an inbound message, stored under ``key``."""

    bot_id: str
    channel: str
    message_id: str
    position: int
    user_id: str
    kind: str
    key: str
    content_type: str
    size: int
    sha256: str
    filename: str | None = None
    created_at: datetime | None = None


class MediaRecords(Protocol):
    """Which attachments of which messages are stored, kept apart from the turn's commit
    so that a turn run again (after a failure) finds what its first run stored."""

    async def find(self, bot_id: str, channel: str, message_id: str) -> list[MediaRecord]:
        """The message's stored attachments, by position."""

    async def add(self, record: MediaRecord) -> MediaRecord:
        """Record a stored attachment; when its position is recorded already, that earlier
        record stays and is returned."""

    async def of_user(
        self, bot_id: str, channel: str, user_id: str, *, limit: int = 100
    ) -> list[MediaRecord]:
        """A user's stored attachments with the bot on the channel, oldest first."""


class BotConfigStore(Protocol):
    """The loaded configuration of each bot (config.csv and package facts)."""

    async def put(self, bot_id: str, config: dict[str, Any]) -> None: ...

    async def get(self, bot_id: str) -> dict[str, Any] | None: ...


class Cache(Protocol):
    """Bytes by key with an optional time to live, shared by all instances."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.per_second > 0 or self.burst < 1:
            raise ValueError(f"a rate needs a positive rate and a burst of 1 or more: {self}")


@dataclass(frozen=True, slots=True)
class BucketDecision:
    """The answer to one :meth:`RateBuckets.take`: allowed or not, and when to try again."""

    allowed: bool
    retry_after: float = 0.0  # seconds until the next request would be allowed; 0 if allowed
    remaining: int = 0  # requests still allowed right now after this one


class RateBuckets(Protocol):
    """Token buckets by key, shared by every instance on the same backend."""

    async def take(self, key: str, rate: Rate, *, cost: int = 1) -> BucketDecision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them (nothing is taken
        otherwise). Raises :class:`StorageError` when the backend cannot be reached."""


class Locks(Protocol):
    """Mutual exclusion by key, across every instance sharing the backend."""

    def lock(
        self, key: str, *, ttl: float = 30.0, timeout: float = 30.0
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` for the block; raise :class:`LockTimeout` after ``timeout`` seconds.

        ``ttl`` bounds how long a crashed holder can keep the lock.
        """


class PubSub(Protocol):
    """Fire-and-forget messages to every current subscriber of a channel."""

    async def publish(self, channel: str, message: bytes) -> None: ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Subscribe for the ``async with`` block; it yields the messages published to ``channel``.

        The subscription is in place when the block is entered, so nothing
        published after that is missed; leaving the block unsubscribes.
        """


class MemoryStore(Protocol):
    """Key/value memory of a bot (SET BOT MEMORY), or of one user with a bot (SET USER MEMORY).

    Values are JSON data. A key never set reads as ``None``.
    """

    async def get(self, bot_id: str, key: str, *, user_id: str | None = None) -> Any: ...

    async def set(
        self, bot_id: str, key: str, value: Any, *, user_id: str | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Condition:
    """One comparison of a FIND/UPDATE/DELETE filter: ``column op value``.

    ``op`` is one of ``= != < <= > >=``. Column names match without regard to
    case. A number compares numerically with values that read as numbers;
    text compares without regard to case and surrounding spaces.
    """

    column: str
    op: str
    value: str | int | float | bool | None


class TableStore(Protocol):
    """The rows of a bot's tables (``"products.csv"``), FIND/SAVE/UPDATE/DELETE in dialogs.

    Tables are scoped by bot and named as the dialog names them (file name
    with ``.csv``, matched without regard to case). Rows are flat JSON objects.
    """

    async def seed(self, bot_id: str, table: str, rows: Sequence[dict[str, Any]]) -> bool:
        """Load a package's ``.gbdata`` CSV rows: replaces the rows a previous seed of this
        table loaded when the data changed, keeps rows saved at run time; ``True`` when it
        loaded anything."""

    async def find(
        self, bot_id: str, table: str, where: Sequence[Condition], *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Rows matching every condition (AND), in insertion order."""

    async def insert(self, bot_id: str, table: str, row: dict[str, Any]) -> None: ...

    async def update(
        self, bot_id: str, table: str, where: Sequence[Condition], changes: dict[str, Any]
    ) -> int:
        """Merge ``changes`` into every matching row; the number of rows changed."""

    async def delete(self, bot_id: str, table: str, where: Sequence[Condition]) -> int:
        """Delete every matching row; the number of rows deleted."""


@dataclass(frozen=True, slots=True)
class InboxCounts:
    """A channel's inbox at a glance, for the operator."""

    pending: int
    running: int
    dead: int
    last_received_at: datetime | None


@dataclass(frozen=True, slots=True)
class InboxOutcome:
    """A message's state; ``session_id`` and ``replies`` once its turn committed."""

    status: str
    session_id: str | None
    error: str | None
    replies: list[dict[str, Any]]


class Inbox(Protocol):
    """Durable claims of inbound messages, ordered per conversation, leased to workers.

    A conversation is (bot, channel, conversation); only its oldest active
    (pending or running) message can be claimed, so its messages run one at a
    time and in order on every instance sharing the store.
    """

    async def put(self, item: InboxItem) -> int | None:
        """Record an inbound message; its sequence number, or ``None`` for a duplicate."""

    async def put_and_claim(
        self,
        item: InboxItem,
        *,
        lease: float,
        read_session: bool = False,
        session_id: str | None = None,
    ) -> InboxPut:
        """Record an inbound message and, in the same commit, lease it for ``lease`` seconds
        when no other message of its conversation is active (pending or running), on any
        instance; otherwise it is recorded like :meth:`put` and waits for its turn (lease it
        with :meth:`claim` and its ``seq``). With ``read_session``, a leased message comes
        with its turn's session (``session_id``, else the conversation's user's active
        session), read in the same statement."""

    async def reserve(self, item: InboxItem, *, session_id: str | None = None) -> InboxPut | None:
        """Start a turn whose message is written with its outcome, in one read that writes
        nothing: the message's ``seq`` is reserved, and its claim (not ``written``) comes
        with the turn's session, as :meth:`put_and_claim` reads it. The turn's save then
        writes the message, done, with everything else, or fails with
        :class:`ConversationChanged` when the conversation changed in between. ``None``
        when a message of the conversation is active (pending or running): the message
        must wait for it, written first."""

    async def claim(
        self, *, limit: int, lease: float, seq: int | None = None, bot_id: str | None = None
    ) -> list[Claim]:
        """Lease up to ``limit`` claimable messages (pending and due, or with an expired
        lease), each the oldest active one of its conversation; ``seq`` limits it to that
        message, which it claims even before it is due."""

    async def gather(self, claim: Claim, gatherer: Gatherer) -> Claim | None:
        """Fold into ``claim``'s message the pending messages after it in its conversation
        that ``gatherer`` picks, atomically: their rows are finished as ``merged`` and
        share the outcome of ``claim``'s row from then on. The claim with the merged
        message (the same claim when nothing was folded), ``None`` when it is no longer
        held."""

    async def extend(self, claim: Claim, *, lease: float) -> bool:
        """Push the lease back; ``False`` when the claim is no longer held."""

    async def retry(self, claim: Claim, *, delay: float, error: str) -> None:
        """Give the message back, claimable again after ``delay`` seconds."""

    async def finish(self, claim: Claim, *, status: str, error: str | None = None) -> None:
        """End the message without a turn: ``done``, ``dead`` (with its reason) or
        ``dropped``."""

    async def record_live(self, claim: Claim, entry: dict[str, Any]) -> bool:
        """Append what a live stream of the claim's turn just sent (a provider message id,
        with what identifies a paragraph); ``False`` when the claim is no longer held."""

    async def status(self, bot_id: str, channel: str, external_id: str) -> str | None:
        """The state of a message, ``None`` when it was never received; a message folded
        into another's turn has that message's state."""

    async def counts(self, bot_id: str, channel: str) -> InboxCounts: ...

    async def close(self) -> None:
        """Release what the store holds (before its database pool closes)."""

    async def outcome(self, bot_id: str, channel: str, external_id: str) -> InboxOutcome | None:
        """Where a message stands: its status, and once its turn committed, the session and
        the replies (outbox messages, in order); ``None`` when it was never received."""


class Outbox(Protocol):
    """Replies committed by turns, leased to the delivery worker in order per conversation."""

    async def claim(self, *, limit: int, lease: float) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows, each the oldest unsent of its conversation.

        A row whose lease expired while a part's request may have left is marked
        ``unknown`` instead of being handed out again."""

    async def start_part(self, row: OutboxRow, *, lease: float, in_flight: bool = True) -> bool:
        """Mark the next part as on its way; ``False`` when the lease was lost.

        ``in_flight=False`` for a request that may safely be made twice (an edit): a
        crash while it is on its way then hands the row out again, not as unknown."""

    async def busy(self, bot_id: str, channel: str, conversation: str) -> bool:
        """Whether the conversation has replies not yet sent (pending or being sent)."""

    async def part_sent(self, row: OutboxRow, provider_id: str, *, done: bool = False) -> OutboxRow:
        """Record a part the provider confirmed; the row with it counted. ``done``: it was
        the reply's last part, and the row is :meth:`sent` in the same record; the row
        returned then says whether a later reply of its conversation waits (``has_next``)."""

    async def note(self, row: OutboxRow, fields: dict[str, Any]) -> None:
        """Merge ``fields`` into the row's message (what a retry needs: upload ids)."""

    async def sent(self, row: OutboxRow) -> None:
        """Every part confirmed."""

    async def retry(self, row: OutboxRow, *, delay: float, error: str) -> None:
        """Send the rest again after ``delay`` seconds."""

    async def park(self, row: OutboxRow, *, status: str, error: str) -> None:
        """Stop sending: ``dead`` (refused, or retries exhausted) or ``unknown``."""

    async def parked(self, bot_id: str, channel: str) -> int:
        """How many rows of the channel are dead or unknown."""

    async def report(
        self,
        bot_id: str,
        channel: str,
        provider_id: str,
        status: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Keep a provider's delivery report of a message we sent."""

    async def delivery_status(self, bot_id: str, channel: str, provider_id: str) -> str | None:
        """The furthest status reported for a sent message (read > delivered > sent;
        failed wins), whatever order the reports came in."""


class ConversationWindows(Protocol):
    """When each user last wrote, per bot and channel (WhatsApp's 24-hour window)."""

    async def last_inbound(self, bot_id: str, channel: str, conversation: str) -> datetime | None:
        """The time of the user's last message, ``None`` if never or the window was closed
        by the provider since."""

    async def close_window(self, bot_id: str, channel: str, conversation: str) -> None:
        """The provider said the window is closed (WhatsApp 131047)."""
