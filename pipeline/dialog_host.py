"""The host of a running dialog: what BASIC keywords do in this gateway (see basic/host.py).

Everything a keyword changes in the conversation lives in ``session.state`` as plain JSON:

    suggestions     [[key, label], ...]       ADD SUGGESTION / CLEAR SUGGESTIONS
    system_prompt   "..."                     BEGIN SYSTEM PROMPT
    context         {"name": "text", ...}     SET CONTEXT
    tools           ["get-price", ...]        USE TOOL / ADD TOOL / CLEAR TOOLS

Bot and user memory, tables, HTTP and mail go to the turn's services. Capabilities that later
work brings (LLM, knowledge bases, templates, proactive messages, human hand-off, media) are
deliberately absent: the interpreter then fails the keyword with ``MissingCapability``.

Failures are raised as :class:`basic.errors.ScriptError`, which the interpreter locates at the
failing line (and which ``ON ERROR RESUME NEXT`` can catch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from basic.errors import ScriptError
from basic.tools import is_tool
from pipeline.mail import MailError
from pipeline.outbound_http import HttpCallError
from pipeline.table_conditions import ConditionError, parse_conditions
from pipeline.turn import Turn
from storage.base import Condition, MemoryStore, TableStore

SESSION_FIELDS = ("user_id", "user_email", "user_phone", "channel", "bot")

Talk = Callable[[str], Awaitable[None]]


class DialogHost:
    """The host of one turn's dialog (or tool run), over the turn's session and services.

    ``talk`` replaces where TALK output goes (a tool run collects it instead of sending it).
    """

    def __init__(self, turn: Turn, *, talk: Talk | None = None) -> None:
        assert turn.session is not None, "a dialog runs inside a session"
        self._turn = turn
        self._session = turn.session
        self._state = turn.session.state
        self._bot = turn.bot
        self._services = turn.services
        self._talk = talk if talk is not None else turn.say

    # -- the conversation -----------------------------------------------------------------

    async def talk(self, text: str) -> None:
        await self._talk(text)

    def add_suggestion(self, key: str, label: str) -> None:
        suggestions: list[list[str]] = self._state.setdefault("suggestions", [])
        suggestions[:] = [s for s in suggestions if s[0] != key]
        suggestions.append([key, label])

    def clear_suggestions(self) -> None:
        self._state["suggestions"] = []

    async def set_system_prompt(self, text: str) -> None:
        self._state["system_prompt"] = text

    async def set_context(self, name: str, text: str) -> None:
        context: dict[str, str] = self._state.setdefault("context", {})
        context[name] = text

    async def use_tool(self, name: str) -> None:
        key = name.strip().lower().removesuffix(".bas")
        program = self._bot.programs.get(key)
        if program is None or not is_tool(program):
            available = sorted(n for n, p in self._bot.programs.items() if is_tool(p))
            raise ScriptError(
                f"no tool {name!r} in bot {self._bot.name!r} (a tool is a .bas with PARAM or "
                f"DESCRIPTION lines; available: {', '.join(available) or 'none'})"
            )
        tools: list[str] = self._state.setdefault("tools", [])
        if key not in tools:
            tools.append(key)

    async def clear_tools(self) -> None:
        self._state["tools"] = []

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

    # -- memory ---------------------------------------------------------------------------

    def _memory(self, keyword: str) -> MemoryStore:
        if self._services.memory is None:
            raise ScriptError(f"{keyword} needs a memory store, and none is configured")
        return self._services.memory

    async def get_bot_memory(self, key: str) -> Any:
        return await self._memory("GET BOT MEMORY").get(self._bot.name, key)

    async def set_bot_memory(self, key: str, value: Any) -> None:
        await self._memory("SET BOT MEMORY").set(self._bot.name, key, value)

    async def get_user_memory(self, key: str) -> Any:
        return await self._memory("GET USER MEMORY").get(
            self._bot.name, key, user_id=self._session.user_id
        )

    async def set_user_memory(self, key: str, value: Any) -> None:
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
        return await self._tables("FIND").find(
            self._bot.name, self._table_name(table, "FIND"), self._where(condition, "FIND")
        )

    async def save(self, table: str, row: dict[str, Any]) -> None:
        """SAVE: a row with an ``id`` replaces the fields of the row with that id; any other
        row is inserted."""
        store = self._tables("SAVE")
        name = self._table_name(table, "SAVE")
        row_id = next((v for k, v in row.items() if k.lower() == "id"), None)
        if isinstance(row_id, dict | list):
            raise ScriptError("SAVE: a row's id must be text or a number")
        if row_id not in (None, ""):
            changed = await store.update(self._bot.name, name, [Condition("id", "=", row_id)], row)
            if changed:
                return
        await store.insert(self._bot.name, name, row)

    async def insert(self, table: str, row: dict[str, Any]) -> None:
        await self._tables("INSERT").insert(self._bot.name, self._table_name(table, "INSERT"), row)

    async def update(self, table: str, condition: str, row: dict[str, Any]) -> int:
        return await self._tables("UPDATE").update(
            self._bot.name,
            self._table_name(table, "UPDATE"),
            self._where(condition, "UPDATE", required=True),
            row,
        )

    async def delete(self, table: str, condition: str) -> int:
        return await self._tables("DELETE").delete(
            self._bot.name,
            self._table_name(table, "DELETE"),
            self._where(condition, "DELETE", required=True),
        )

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
