"""Scripted conversations for dialect tests.

A transcript is the conversation as a user would see it: lines starting with ``> `` are what the
user types, every other non-blank line is a line the bot says, in order::

    Hello! What is your name?
    > maria
    Hi, Maria

``run_transcript`` starts the dialog, feeds each user line to the waiting HEAR and compares the
bot's lines.  Between turns the state goes through json.dumps/json.loads, so every test also
proves the dialog resumes from plain data.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from basic import Interpreter, Limits, Outcome, Program, compile_source

DEFAULT_LIMITS = Limits()


class RecordingHost:
    """The minimal Host: records what the dialog says and offers."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.suggestions: list[tuple[str, str]] = []

    async def talk(self, text: str) -> None:
        self.said.append(text)

    def add_suggestion(self, key: str, label: str) -> None:
        self.suggestions.append((key, label))

    def clear_suggestions(self) -> None:
        self.suggestions.clear()


class CapableHost(RecordingHost):
    """A host with every capability, answering from dictionaries and recording calls."""

    def __init__(
        self,
        *,
        llm_answer: str = "LLM answer",
        tables: Mapping[str, list[dict[str, Any]]] | None = None,
        session: Mapping[str, Any] | None = None,
        http_responses: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.bot_memory: dict[str, Any] = {}
        self.user_memory: dict[str, Any] = {}
        self.tables = {name: list(rows) for name, rows in (tables or {}).items()}
        self.session = dict(session or {})
        self.http_responses = dict(http_responses or {})
        self.llm_answer = llm_answer

    async def set_system_prompt(self, text: str) -> None:
        self.calls.append(("system_prompt", text))

    async def set_context(self, name: str, text: str) -> None:
        self.calls.append(("context", name, text))

    async def get_bot_memory(self, key: str) -> Any:
        return self.bot_memory.get(key)

    async def set_bot_memory(self, key: str, value: Any) -> None:
        self.bot_memory[key] = value

    async def get_user_memory(self, key: str) -> Any:
        return self.user_memory.get(key)

    async def set_user_memory(self, key: str, value: Any) -> None:
        self.user_memory[key] = value

    async def http(self, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
        self.calls.append(("http", method, url, body, headers))
        return self.http_responses.get(url)

    async def session_field(self, name: str) -> Any:
        return self.session.get(name)

    async def llm(self, prompt: str) -> str:
        self.calls.append(("llm", prompt))
        return self.llm_answer

    async def use_kb(self, name: str) -> None:
        self.calls.append(("use_kb", name))

    async def clear_kb(self, name: str | None) -> None:
        self.calls.append(("clear_kb", name))

    async def use_tool(self, name: str) -> None:
        self.calls.append(("use_tool", name))

    async def clear_tools(self) -> None:
        self.calls.append(("clear_tools",))

    async def find(self, table: str, condition: str) -> list[dict[str, Any]]:
        self.calls.append(("find", table, condition))
        rows = self.tables.get(table, [])
        if not condition:
            return rows
        column, _, value = (part.strip() for part in condition.partition("="))
        return [r for r in rows if str(r.get(column, "")).strip() == value]

    async def save(self, table: str, row: dict[str, Any]) -> None:
        self.tables.setdefault(table, []).append(row)

    async def send_mail(self, to: str, subject: str, body: str) -> None:
        self.calls.append(("mail", to, subject, body))

    async def talk_to(self, recipient: str, text: str) -> None:
        self.calls.append(("talk_to", recipient, text))

    async def send_file_to(self, recipient: str, file: Any, caption: str = "") -> None:
        self.calls.append(("send_file_to", recipient, file, caption))

    async def transfer_to_human(self, **request: str) -> dict[str, Any]:
        self.calls.append(("transfer", request))
        return {"success": True, "status": "queued", "queue_position": 1, "message": "queued"}


@dataclass
class Conversation:
    said: list[str] = field(default_factory=list)  # bot output, one entry per line
    outcome: Outcome | None = None
    states: list[dict[str, Any]] = field(default_factory=list)


def programs(*sources: tuple[str, str]) -> dict[str, Program]:
    """(filename, source) pairs -> the programs mapping the Interpreter takes."""
    compiled = [compile_source(textwrap.dedent(src), name) for name, src in sources]
    return {p.name: p for p in compiled}


async def converse(
    source: str | Mapping[str, Program],
    inputs: list[str],
    *,
    host: RecordingHost | None = None,
    limits: Limits = DEFAULT_LIMITS,
    globals: Mapping[str, Any] | None = None,
    start: str = "start",
    arguments: Mapping[str, Any] | None = None,
) -> Conversation:
    """Run a dialog, answering each HEAR with the next input; state round-trips through JSON."""
    progs = programs(("start.bas", source)) if isinstance(source, str) else source
    host = host if host is not None else RecordingHost()
    interpreter = Interpreter(progs, host, limits=limits, globals=globals)
    conversation = Conversation()
    outcome = await interpreter.start(start, arguments=arguments)
    for text in inputs:
        assert outcome.state is not None, f"the dialog ended before the user said {text!r}"
        state = json.loads(json.dumps(outcome.state))
        assert state == outcome.state
        conversation.states.append(state)
        outcome = await interpreter.resume(state, text)
    conversation.outcome = outcome
    conversation.said = [line for text in host.said for line in text.split("\n")]
    return conversation


def parse_transcript(transcript: str) -> tuple[list[str], list[str]]:
    """-> (user inputs, expected bot lines with the user's lines marked as '> ...')."""
    inputs: list[str] = []
    lines: list[str] = []
    for raw in textwrap.dedent(transcript).strip("\n").split("\n"):
        line = raw.rstrip()
        if line.startswith(">"):
            inputs.append(line[2:] if line.startswith("> ") else line[1:])
            lines.append(line)
        elif line.strip():
            lines.append(line)
    return inputs, lines


async def run_transcript(
    source: str | Mapping[str, Program], transcript: str, **options: Any
) -> Conversation:
    """Assert that the dialog produces exactly this conversation (interleaved with inputs)."""
    inputs, expected = parse_transcript(transcript)
    host: RecordingHost = options.pop("host", None) or RecordingHost()
    progs = programs(("start.bas", source)) if isinstance(source, str) else source
    interpreter = Interpreter(
        progs,
        host,
        limits=options.pop("limits", DEFAULT_LIMITS),
        globals=options.pop("globals", None),
    )
    actual: list[str] = []
    outcome = await interpreter.start(
        options.pop("start", "start"), arguments=options.pop("arguments", None)
    )
    conversation = Conversation()

    def flush() -> None:
        actual.extend(line for text in host.said for line in text.split("\n") if line.strip())
        host.said.clear()

    flush()
    for text in inputs:
        assert outcome.state is not None, (
            f"dialog ended before input {text!r}; said so far:\n" + "\n".join(actual)
        )
        state = json.loads(json.dumps(outcome.state))
        conversation.states.append(state)
        actual.append(f"> {text}")
        outcome = await interpreter.resume(state, text)
        flush()
    conversation.outcome = outcome
    conversation.said = actual
    assert actual == expected
    return conversation
