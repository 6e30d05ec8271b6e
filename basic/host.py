"""What a dialog can do in the world: the Host protocol the pipeline implements.

Only ``talk``, ``add_suggestion`` and ``clear_suggestions`` are required.  Everything else is a
capability: an optional method looked up by name when a keyword needs it (see keywords.py); a
host without it makes the keyword fail with MissingCapability naming the method.  Capability
methods may be sync or async.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Host(Protocol):
    """The minimal host: where TALK output and suggestions go."""

    async def talk(self, text: str) -> None:
        """Send ``text`` to the user now (replies stream as they are produced)."""

    def add_suggestion(self, key: str, label: str) -> None:
        """Offer a quick-reply button; ``key`` is sent back when pressed, ``label`` is shown."""

    def clear_suggestions(self) -> None:
        """Remove all quick-reply buttons."""


class FullHost(Host, Protocol):
    """Every optional capability, for hosts that implement them all (and for documentation).

    Hosts need not inherit from this: the interpreter checks each method with getattr.
    """

    async def set_system_prompt(self, text: str) -> None:
        """BEGIN SYSTEM PROMPT: the session's system prompt for later LLM calls."""

    async def set_context(self, name: str, text: str) -> None:
        """SET CONTEXT: context added to later LLM prompts of this session."""

    async def get_bot_memory(self, key: str) -> Any: ...
    async def set_bot_memory(self, key: str, value: Any) -> None: ...
    async def get_user_memory(self, key: str) -> Any: ...
    async def set_user_memory(self, key: str, value: Any) -> None: ...

    async def http(self, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
        """An HTTP call; JSON responses decoded.  The host enforces timeouts and refuses
        private, loopback and link-local addresses unless the bot allows them."""

    async def session_field(self, name: str) -> Any:
        """GET "session.user_id|user_email|user_phone|channel|bot"."""

    async def read_file(self, path: str) -> Any:
        """GET "file": a file of the bot's drive."""

    async def llm(self, prompt: str) -> str:
        """x = LLM "prompt": a one-off completion."""

    async def use_kb(self, name: str) -> None: ...
    async def clear_kb(self, name: str | None) -> None: ...
    async def use_tool(self, name: str) -> str | None:
        """USE TOOL / ADD TOOL: offer the tool; a text returned says why it is not available
        (the interpreter logs it as a warning with ``file:line`` and the dialog goes on)."""

    async def use_website(self, url: str, refresh: str) -> None:
        """USE WEBSITE url [REFRESH every]: crawl a website into the bot's knowledge base and
        search it in this conversation (``refresh`` is ``""`` when not given)."""

    async def clear_websites(self) -> None:
        """CLEAR WEBSITES: the conversation stops searching the websites it named."""

    async def clear_tools(self) -> None: ...

    async def find(self, table: str, condition: str) -> list[dict[str, Any]]:
        """FIND "t.csv", "col = val AND n > 2": matching rows."""

    async def save(self, table: str, row: dict[str, Any]) -> None: ...
    async def insert(self, table: str, row: dict[str, Any]) -> None: ...
    async def update(self, table: str, condition: str, row: dict[str, Any]) -> None: ...
    async def delete(self, table: str, condition: str) -> None: ...

    async def send_mail(self, to: str, subject: str, body: str) -> None: ...
    async def send_template(self, *args: Any) -> Any: ...
    async def send_template_to(self, *args: Any) -> Any: ...
    async def talk_to(self, recipient: str, text: str) -> None: ...
    async def send_file_to(self, recipient: str, file: Any, caption: str = "") -> None:
        """SEND FILE TO recipient, file[, caption]: an image, document or audio file from the
        bot's drive, the blob store or a URL, sent as the recipient's channel sends media."""

    async def play(self, source: Any, options: str) -> str:
        """PLAY source [WITH OPTIONS options]: show a file of the bot's drive or a URL in
        the channel's player (the file sent natively where there is none); ``options`` is
        General Bots' text (``"autoplay,loop,muted,start=10"``, ``""`` when not given).
        Its value is the player's JSON, as General Bots'."""

    async def stop_player(self) -> None:
        """STOP: close the player PLAY opened (nothing where a channel has none)."""

    async def transfer_to_human(
        self,
        *,
        name: str | None = None,
        department: str | None = None,
        priority: str | None = None,
        reason: str | None = None,
        context: str | None = None,
    ) -> dict[str, Any]:
        """TRANSFER TO HUMAN: hand the conversation to a person; General Bots' result
        (``success``, ``status``, ``queue_position``, ``message``…)."""

    def offer_choice(self, key: str, label: str) -> None:
        """HEAR x AS "A", "B": offer an option as a button, keeping the label of a suggestion
        already offered with that key (without this method, add_suggestion is used)."""

    async def receive_media(self, kind: str, text: str) -> Any:
        """HEAR x AS IMAGE|FILE|AUDIO...: turn the user's message into the stored value
        (file URL, transcript). A host may say which kinds (``image``, ``file``,
        ``audio``, ``video``) it takes in a ``media_kinds`` collection: HEAR AS another kind
        then fails as a missing capability."""
