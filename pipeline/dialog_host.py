"""The host of a running dialog: what BASIC keywords do in this gateway (see basic/host.py).

What a keyword changes in the conversation (suggestions, system prompt, context, tools,
knowledge bases, websites) goes to the session's :class:`~pipeline.session_state.SessionState`,
written through to ``session.state`` at each change.  Bot and user memory, tables, HTTP and
mail go to the turn's services; ``x = LLM "prompt"`` to the bot's model provider.
``TALK TO who, text`` (a proactive message, see :mod:`pipeline.proactive`) goes into the
turn's outbox, committed with the turn; a scheduled job, which commits nothing, writes its
outbox row at once; ``SEND TEMPLATE`` (see :mod:`pipeline.templates`) the same way.
``TRANSFER TO HUMAN`` hands the conversation to a person (see :mod:`pipeline.handoff`),
committed with the turn too.  ``HEAR x AS AUDIO|VOICE`` gets what the voice note said
(see :mod:`pipeline.voice`), ``HEAR x AS IMAGE|QRCODE|FILE…`` reads the message's stored
files (see :mod:`pipeline.hear_media`), ``GET "file"`` the bot's drive (see
:mod:`pipeline.drive_files`), ``SEND FILE TO`` sends a file (see
:mod:`pipeline.send_file`) and ``PLAY`` shows one (see :mod:`pipeline.player`).  A
capability this process lacks is absent (``llm`` for a bot with no provider configured,
``receive_media`` and ``send_file`` where no files are kept): the interpreter then fails
the keyword with ``MissingCapability``.

A dialog's own failures are raised as :class:`basic.errors.ScriptError`, which the interpreter
locates at the failing line (and which ``ON ERROR RESUME NEXT`` can catch).  A failure of our
infrastructure (a store that cannot be reached, a lock timeout) is no fault of the dialog: it
is raised as :class:`basic.errors.HostUnavailable`, which no ``ON ERROR`` catches and which
fails the whole turn, to be retried with the dialog as it was.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from basic.errors import HostUnavailable, ScriptError
from basic.tools import is_tool
from pipeline import hear_media, player, templates
from pipeline.drive_files import DriveFileError, read_drive_file
from pipeline.errors import TurnRejected
from pipeline.handoff import CRM_DISABLED, priority_of
from pipeline.kb.web_urls import InvalidWebsite, website_url
from pipeline.llm import CompletionRequest, LLMError, UserMessage
from pipeline.mail import MailError
from pipeline.outbound_http import HttpCallError
from pipeline.proactive import ProactiveSender, Recipient
from pipeline.send_file import send_file_to
from pipeline.session_state import SessionState, Website, read_state, write_state
from pipeline.table_conditions import ConditionError, parse_conditions
from pipeline.turn import Turn
from pipeline.voice import heard_audio
from pipeline.websites import InvalidRefresh, refresh_seconds
from storage.base import Condition, MemoryStore, StorageError, TableStore, TransferItem

log = logging.getLogger(__name__)

SESSION_FIELDS = ("user_id", "user_email", "user_phone", "channel", "bot")
# The channel of a scheduled job's turn (pipeline.scheduler): no user to answer.
JOB_CHANNEL = "schedule"

Talk = Callable[[str], Awaitable[None]]


def _optional(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


@contextlib.contextmanager
def _infrastructure(keyword: str) -> Iterator[None]:
    """A store failure is ours, not the dialog's: HostUnavailable, never a ScriptError."""
    try:
        yield
    except StorageError as e:
        raise HostUnavailable(keyword, f"{type(e).__name__}: {e}") from e


class DialogHost:
    """The host of one turn's dialog (or tool run), over the turn's session and services.

    ``state`` is the session's state the caller works on (read from the session when not
    given); every change is written through to ``session.state``.  ``talk`` replaces where
    TALK output goes (a tool run collects it instead of sending it).
    """

    def __init__(
        self, turn: Turn, *, state: SessionState | None = None, talk: Talk | None = None
    ) -> None:
        assert turn.session is not None, "a dialog runs inside a session"
        self._turn = turn
        self._session = turn.session
        self.state = state if state is not None else read_state(turn.session)
        self._bot = turn.bot
        self._services = turn.services
        self._talk = talk if talk is not None else turn.say
        self._talked_to = 0

    def _changed(self) -> None:
        write_state(self._session, self.state)

    # -- the conversation -----------------------------------------------------------------

    async def talk(self, text: str) -> None:
        await self._talk(text)

    @property
    def talk_to(self) -> Callable[[str, str], Awaitable[None]] | None:
        """``TALK TO who, text``: present only with proactive messages configured (the
        gateway's), so that elsewhere (the terminal chat) it fails as a missing capability."""
        return self._talk_to if self._services.proactive is not None else None

    async def _talk_to(self, recipient: str, text: str) -> None:
        """A message to anyone the bot can reach, on any channel (see pipeline.proactive)."""
        sender = self._services.proactive
        assert sender is not None, "talk_to is only offered with proactive messages"
        bot = self._bot.name
        try:
            with _infrastructure("TALK TO"):
                to = await sender.parse(bot, str(recipient))
            message = sender.message(bot, to, str(text))
        except TurnRejected as e:
            raise ScriptError(f"TALK TO {str(recipient)!r}: {e.message}") from e
        self._talked_to += 1
        if self._turn.claim is not None:  # committed with the turn, or not at all
            self._turn.talk_to.append(message)
            return
        # No commit to join (a scheduled job): written now, named so that running the same
        # occurrence again would not queue it twice.
        key = f"talk-to:{self._turn.message.external_id}:{self._talked_to}"[:255]
        with _infrastructure("TALK TO"):
            await sender.queue(bot, to, message.text, origin="talk-to", idempotency_key=key)

    @property
    def send_file_to(self) -> Callable[[str, Any, str], Awaitable[None]] | None:
        """``SEND FILE TO recipient, file[, caption]`` (see pipeline.send_file): present
        only where files can be kept (the gateway's blob store)."""
        return self._send_file_to if self._services.files is not None else None

    async def _send_file_to(self, recipient: str, file: Any, caption: str = "") -> None:
        files = self._services.files
        assert files is not None, "send_file_to is only offered with a blob store"
        self._talked_to += 1
        with _infrastructure("SEND FILE TO"):
            await send_file_to(
                self._turn, files, recipient, file, caption, sequence=self._talked_to
            )

    async def play(self, source: Any, options: str) -> str:
        """``PLAY source [WITH OPTIONS options]`` (see pipeline.player)."""
        with _infrastructure("PLAY"):
            return await player.play(self._turn, self._services.files, source, options)

    async def stop_player(self) -> None:
        """``STOP``: the web widget's player closes (see pipeline.player)."""
        await player.stop(self._turn)

    @property
    def send_template(self) -> Callable[..., Awaitable[dict[str, Any]]] | None:
        """``SEND TEMPLATE``: present only with proactive messages configured."""
        return self._send_template if self._services.proactive is not None else None

    @property
    def send_template_to(self) -> Callable[..., Awaitable[dict[str, Any]]] | None:
        """``SEND TEMPLATE TO``, ``SEND_TEMPLATE_TO``, ``BULK_SEND`` (see pipeline.templates)."""
        return self._send_template_to if self._services.proactive is not None else None

    async def _send_template(self, *args: Any) -> dict[str, Any]:
        sender = self._services.proactive
        assert sender is not None, "send_template is only offered with proactive messages"
        bot = self._bot.name
        language = templates.language_of(self._bot.package.config)
        try:
            if templates.is_channel_form(args):
                with _infrastructure("SEND TEMPLATE"):
                    to = await templates.resolve(sender, bot, args[1], str(args[2]))
                variables = args[3] if len(args) > 3 else None
            else:  # to the user of this conversation
                message = self._turn.message
                to = Recipient(message.channel, message.conversation)
                variables = list(args[1:])
            ref = templates.template_ref(args[0], variables, language)
            send = templates.prepared(sender, bot, to, ref)
        except templates.TemplateRefused as e:
            return templates.refused_result(e, bot, "SEND TEMPLATE")
        await self._queue_template(sender, send, "SEND TEMPLATE")
        return templates.sent_result(send)

    async def _send_template_to(self, *args: Any) -> dict[str, Any]:
        sender = self._services.proactive
        assert sender is not None, "send_template_to is only offered with proactive messages"
        bot = self._bot.name
        language = templates.language_of(self._bot.package.config)
        keyword = "SEND TEMPLATE TO"
        if len(args) == 2:  # SEND TEMPLATE TO recipient, name: whom TALK TO would reach
            try:
                ref = templates.template_ref(args[1], None, language)
                with _infrastructure(keyword):
                    to = await templates.resolve(sender, bot, args[0], None)
                send = templates.prepared(sender, bot, to, ref)
            except templates.TemplateRefused as e:
                return templates.refused_result(e, bot, keyword)
            await self._queue_template(sender, send, keyword)
            return templates.sent_result(send)
        try:
            ref = templates.template_ref(args[0], args[3] if len(args) > 3 else None, language)
            recipients = templates.recipients_of(args[1])
        except templates.TemplateRefused as e:
            return templates.refused_result(e, bot, keyword)
        sent, errors = 0, []
        for recipient in recipients:
            try:
                with _infrastructure(keyword):
                    to = await templates.resolve(sender, bot, recipient, str(args[2]))
                send = templates.prepared(sender, bot, to, ref)
            except templates.TemplateRefused as e:
                errors.append(f"{recipient}: {e}")
                continue
            await self._queue_template(sender, send, keyword)
            sent += 1
        if errors:
            log.warning("bot %s: %s: %d of %d refused", bot, keyword, len(errors), len(recipients))
        return templates.batch_result(sent, errors)

    async def _queue_template(
        self, sender: ProactiveSender, send: templates.TemplateSend, keyword: str
    ) -> None:
        """Committed with the turn, or, in a scheduled job, written now under a key that a
        rerun of the same occurrence finds."""
        message = sender.template_message(self._bot.name, send.recipient, send.template)
        self._talked_to += 1
        if self._turn.claim is not None:
            self._turn.talk_to.append(message)
            return
        key = f"template:{self._turn.message.external_id}:{self._talked_to}"[:255]
        with _infrastructure(keyword):
            await sender.queue(
                self._bot.name,
                send.recipient,
                message.text,
                origin="talk-to",
                idempotency_key=key,
                template=send.template,
            )

    @property
    def transfer_to_human(self) -> Callable[..., Awaitable[dict[str, Any]]] | None:
        """``TRANSFER TO HUMAN``: present only where agents can take conversations (the
        gateway's), so that elsewhere (the terminal chat) it fails as a missing capability."""
        return self._transfer if self._services.handoffs is not None else None

    async def _transfer(
        self,
        *,
        name: str | None = None,
        department: str | None = None,
        priority: str | None = None,
        reason: str | None = None,
        context: str | None = None,
    ) -> dict[str, Any]:
        """Put the conversation in the bot's queue for a person (committed with the turn);
        General Bots' result: ``success``, ``status``, ``queue_position``, ``message``…"""
        desk = self._services.handoffs
        assert desk is not None, "transfer_to_human is only offered with a handoff desk"
        if self._turn.message.channel == JOB_CHANNEL:
            raise ScriptError("TRANSFER TO HUMAN needs a user's conversation; a job has none")
        if not desk.settings(self._bot.name).enabled:
            log.warning(
                "TRANSFER TO HUMAN in bot %s: human handoff is off (crm-enabled is not true)",
                self._bot.name,
            )
            return CRM_DISABLED.as_value()
        if self._turn.transfer_result is not None:  # asked twice in one turn
            return self._turn.transfer_result.as_value()
        item = TransferItem(
            attendant=_optional(name),
            department=_optional(department),
            priority=priority_of(priority),
            reason=_optional(reason),
            context=_optional(context),
        )
        with _infrastructure("TRANSFER TO HUMAN"):
            result = await desk.transfer_result(self._bot.name, item)
        self._turn.transfer = item
        self._turn.transfer_result = result
        self.state.needs_human = True
        self._changed()
        log.info(
            "conversation transferred to a person bot=%s session=%s position=%s",
            self._bot.name,
            self._session.id,
            result.queue_position,
        )
        return result.as_value()

    def add_suggestion(self, key: str, label: str) -> None:
        self.state.add_suggestion(key, label)
        self._changed()

    def offer_choice(self, key: str, label: str) -> None:
        if all(k != key for k, _ in self.state.suggestions):
            self.add_suggestion(key, label)

    def clear_suggestions(self) -> None:
        self.state.suggestions = []
        self._changed()

    async def set_system_prompt(self, text: str) -> None:
        self.state.system_prompt = text
        self._changed()

    async def set_context(self, name: str, text: str) -> None:
        self.state.context[name] = text
        self._changed()

    async def use_tool(self, name: str) -> str | None:
        """Offer the tool to the LLM; a tool the bot lacks is not an error (General Bots
        carries on too): the message saying so is returned for the interpreter to log."""
        key = name.strip().lower().removesuffix(".bas")
        program = self._bot.programs.get(key)
        if program is None or not is_tool(program):
            available = sorted(n for n, p in self._bot.programs.items() if is_tool(p))
            broken = " (it has errors)" if key in self._bot.broken else ""
            return (
                f"no tool {name!r} in bot {self._bot.name!r}{broken} (a tool is a .bas with "
                f"PARAM or DESCRIPTION lines; available: {', '.join(available) or 'none'})"
            )
        self.state.add_unique(self.state.tools, key)
        self._changed()
        return None

    async def clear_tools(self) -> None:
        self.state.tools = []
        self._changed()

    async def use_kb(self, name: str) -> None:
        """Make the collection active for the session; the knowledge stage searches it."""
        self.state.add_unique(self.state.knowledge_bases, name.strip().removesuffix(".gbkb"))
        self._changed()

    async def clear_kb(self, name: str | None) -> None:
        if name is None or not name.strip():
            self.state.knowledge_bases = []
        else:
            key = name.strip().removesuffix(".gbkb")
            self.state.knowledge_bases = [k for k in self.state.knowledge_bases if k != key]
        self._changed()

    async def use_website(self, url: str, refresh: str) -> None:
        """Crawl the site into the bot's knowledge base (registered once per bot; the crawl
        runs in the background, never in this turn) and search it in this conversation."""
        crawler = self._services.websites
        try:
            if crawler is None:  # no knowledge base in this process (the terminal chat)
                normalized = website_url(url)
                if refresh.strip():
                    refresh_seconds(refresh)
                log.warning(
                    "bot %s: USE WEBSITE %s: no knowledge base here, so it is not crawled",
                    self._bot.name,
                    normalized,
                )
            else:
                with _infrastructure("USE WEBSITE"):
                    normalized = await crawler.use(self._bot, url, refresh)
        except (InvalidWebsite, InvalidRefresh) as e:
            raise ScriptError(f"USE WEBSITE: {e}") from e
        websites = [w for w in self.state.websites if w.url != normalized]
        self.state.websites = [*websites, Website(normalized, refresh.strip())]
        self._changed()

    async def clear_websites(self) -> None:
        """The conversation stops searching the websites it named (they stay crawled)."""
        self.state.websites = []
        self._changed()

    async def session_field(self, name: str) -> Any:
        """The channel's facts about the user; empty text when the channel does not know.

        Adapters that know a sender's email or phone put it in the message's ``raw`` under
        ``user_email`` / ``user_phone``.
        """
        message = self._turn.message
        if name == "user_id":
            return self._session.user_id
        if name == "channel":
            return message.channel
        if name == "bot":
            return self._bot.name
        if name in ("user_email", "user_phone"):
            value = message.raw.get(name)
            return value if isinstance(value, str) else ""
        raise ScriptError(f"unknown session field {name!r} (known: {', '.join(SESSION_FIELDS)})")

    # -- the model ------------------------------------------------------------------------

    @property
    def llm(self) -> Callable[[str], Awaitable[str]] | None:
        """``x = LLM "prompt"``: present only when the bot has a model provider, so that a
        bot without one fails the keyword as a missing capability."""
        return self._complete if self._bot.model is not None else None

    async def _complete(self, prompt: str) -> str:
        """A one-off completion of ``prompt`` (no history, no tools), as General Bots' LLM
        keyword does; its text is the value.  A provider that does not answer (after its
        retries and fallbacks) is the dialog's error to handle (``ON ERROR RESUME NEXT``)."""
        model = self._bot.model
        assert model is not None, "llm is only offered with a model"
        try:
            completion = await model.provider.complete(
                CompletionRequest([UserMessage(str(prompt))])
            )
        except LLMError as e:
            log.error(
                "LLM keyword failed bot=%s session=%s provider=%s status=%s: %s",
                self._bot.name,
                self._session.id,
                e.provider,
                e.status,
                e,
            )
            raise ScriptError(f"LLM: the language model did not answer: {e}") from e
        if completion.usage is not None:
            self._turn.add_tokens(completion.usage.total_tokens)
        return completion.text

    # -- memory ---------------------------------------------------------------------------

    def _memory(self, keyword: str) -> MemoryStore:
        if self._services.memory is None:
            raise ScriptError(f"{keyword} needs a memory store, and none is configured")
        return self._services.memory

    async def get_bot_memory(self, key: str) -> Any:
        with _infrastructure("GET BOT MEMORY"):
            return await self._memory("GET BOT MEMORY").get(self._bot.name, key)

    async def set_bot_memory(self, key: str, value: Any) -> None:
        with _infrastructure("SET BOT MEMORY"):
            await self._memory("SET BOT MEMORY").set(self._bot.name, key, value)

    async def get_user_memory(self, key: str) -> Any:
        with _infrastructure("GET USER MEMORY"):
            return await self._memory("GET USER MEMORY").get(
                self._bot.name, key, user_id=self._session.user_id
            )

    async def set_user_memory(self, key: str, value: Any) -> None:
        with _infrastructure("SET USER MEMORY"):
            await self._memory("SET USER MEMORY").set(
                self._bot.name, key, value, user_id=self._session.user_id
            )

    # -- tables ---------------------------------------------------------------------------

    def _tables(self, keyword: str) -> TableStore:
        if self._services.tables is None:
            raise ScriptError(f"{keyword} needs a table store, and none is configured")
        return self._services.tables

    @staticmethod
    def _table_name(table: str, keyword: str) -> str:
        name = table.strip()
        if not name:
            raise ScriptError(f'{keyword} needs a table name such as "products.csv"')
        return name

    @staticmethod
    def _where(condition: str, keyword: str, *, required: bool = False) -> list[Condition]:
        try:
            where = parse_conditions(condition)
        except ConditionError as e:
            raise ScriptError(f"{keyword}: {e}") from e
        if required and not where:
            raise ScriptError(f'{keyword} needs a filter such as "id = 42"')
        return where

    async def find(self, table: str, condition: str) -> list[dict[str, Any]]:
        where = self._where(condition, "FIND")
        with _infrastructure("FIND"):
            return await self._tables("FIND").find(
                self._bot.name, self._table_name(table, "FIND"), where
            )

    async def save(self, table: str, row: dict[str, Any]) -> None:
        """SAVE: a row with an ``id`` replaces the fields of the row with that id; any other
        row is inserted."""
        store = self._tables("SAVE")
        name = self._table_name(table, "SAVE")
        row_id = next((v for k, v in row.items() if k.lower() == "id"), None)
        if isinstance(row_id, dict | list):
            raise ScriptError("SAVE: a row's id must be text or a number")
        with _infrastructure("SAVE"):
            if row_id not in (None, ""):
                where = [Condition("id", "=", row_id)]
                if await store.update(self._bot.name, name, where, row):
                    return
            await store.insert(self._bot.name, name, row)

    async def insert(self, table: str, row: dict[str, Any]) -> None:
        name = self._table_name(table, "INSERT")
        with _infrastructure("INSERT"):
            await self._tables("INSERT").insert(self._bot.name, name, row)

    async def update(self, table: str, condition: str, row: dict[str, Any]) -> int:
        name = self._table_name(table, "UPDATE")
        where = self._where(condition, "UPDATE", required=True)
        with _infrastructure("UPDATE"):
            return await self._tables("UPDATE").update(self._bot.name, name, where, row)

    async def delete(self, table: str, condition: str) -> int:
        name = self._table_name(table, "DELETE")
        where = self._where(condition, "DELETE", required=True)
        with _infrastructure("DELETE"):
            return await self._tables("DELETE").delete(self._bot.name, name, where)

    # -- files ----------------------------------------------------------------------------

    # HEAR x AS <kind>: the kinds of file this host takes (see basic/host.py); VIDEO is not.
    media_kinds = frozenset({"audio", *hear_media.KINDS})

    @property
    def receive_media(self) -> Callable[[str, str], Awaitable[Any]] | None:
        """``HEAR x AS AUDIO|VOICE`` (what the voice note said, pipeline.voice) and
        ``HEAR x AS IMAGE|QRCODE|FILE…`` (pipeline.hear_media): present where users' files
        are kept."""
        return self._receive_media if self._services.media is not None else None

    async def _receive_media(self, kind: str, text: str) -> Any:
        if kind == "audio":
            return await heard_audio(self._turn, text)
        if kind in hear_media.KINDS:
            with _infrastructure(f"HEAR AS {kind.upper()}"):
                return await hear_media.receive(self._turn, kind, text)
        raise ScriptError(f"HEAR AS {kind.upper()} is not supported here")

    async def read_file(self, path: str) -> str:
        """``GET "path"``: a file of the bot's drive, as text."""
        intake = self._services.media
        try:
            with _infrastructure("GET"):
                return await read_drive_file(
                    self._bot.name,
                    self._bot.package.path,
                    intake.blobs if intake is not None else None,
                    str(path),
                    user=(self._turn.message.channel, self._turn.message.conversation),
                )
        except DriveFileError as e:
            raise ScriptError(str(e)) from e

    # -- the outside world ----------------------------------------------------------------

    async def http(self, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
        client = self._services.http
        if client is None:
            raise ScriptError(f"HTTP {method} needs an HTTP client, and none is configured")
        try:
            return await client.request(method, url, body, headers, policy=self._bot.http)
        except HttpCallError as e:
            raise ScriptError(str(e)) from e

    async def send_mail(self, to: str, subject: str, body: str) -> None:
        mailer = self._services.mail
        if mailer is None:
            raise ScriptError("SEND MAIL needs a mail sender, and none is configured")
        try:
            await mailer.send(self._bot.package.config, to, subject, body)
        except MailError as e:
            raise ScriptError(str(e)) from e
