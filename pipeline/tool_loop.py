"""The tool loop: the model answers, or calls the session's BASIC tools until it can.

Each round streams one model request: text deltas go to the reply sink as they arrive
(``turn.sink.delta``, inside ``turn.streaming()``: a worker turn's sink sends them on to
Telegram, WhatsApp or SMS live), and the round's whole text then goes through the turn's
normal reply path (``turn.say``).  When the model calls tools, each call (parallel calls too, in the
order the model made them, one after another: they share the session) is checked before it
runs and answered with a tool result:

- a tool the session did not offer is never run, whatever the model (or a document it
  read) asked: the model gets an error result saying so;
- arguments that are not a JSON object, or that do not match the tool's schema, go back as
  an error result naming what is wrong, for the model to correct;
- the tool runs: its TALK output goes to the user as it is said, its RETURN value goes back
  to the model (with what it told the user, so that the model does not repeat it);
  a tool that fails goes back as an error result.

The loop ends at a round with no tool calls (its text is the answer), or after
``max_rounds`` model requests with a clear reply to the user.  A tool that waits at HEAR
suspends the loop: everything needed to go on is saved in the session state
(:class:`PendingTool`), and the next message resumes the tool; its result then goes back
to the model and the loop goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from basic import Program
from basic.tools import is_tool
from pipeline.bots import BotModel
from pipeline.conversation import Conversation
from pipeline.llm import (
    AssistantMessage,
    CompletionRequest,
    Message,
    StreamDone,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from pipeline.session_state import SessionState, write_state
from pipeline.tools import (
    ToolError,
    ToolRun,
    argument_errors,
    normalize_arguments,
    resume_tool,
    start_tool,
    tool_schemas,
)
from pipeline.turn import Turn

log = logging.getLogger(__name__)

DEFAULT_MAX_ROUNDS = 8
TOOL_LOOP_REPLY = (
    "Sorry, I could not finish that: it took more steps than I am allowed. "
    "Please try again, perhaps one thing at a time."
)
PENDING_TOOL_VERSION = 1

# The request's messages, given the turn's exchange so far (the loop calls it every round,
# so that the budget makes room for the growing exchange by dropping older history).
BuildRequest = Callable[[Sequence[Message]], Awaitable[Conversation]]


def offered_tools(turn: Turn, state: SessionState) -> dict[str, Program]:
    """The tools this session offers the model, by name: its ``USE TOOL``/``ADD TOOL`` ones
    that the package has (General Bots offers exactly the session's tools; none by default)."""
    offered: dict[str, Program] = {}
    for name in state.tools:
        program = turn.bot.programs.get(name)
        if program is not None and is_tool(program):
            offered[program.name] = program
    return offered


def tool_definitions(tools: dict[str, Program]) -> list[ToolDefinition]:
    return [ToolDefinition.from_schema(tool_schemas(program)) for program in tools.values()]


# -- the state of a suspended loop ------------------------------------------------------------


def _call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.raw_arguments}


def _call_from_json(data: dict[str, Any]) -> ToolCall:
    return ToolCall.from_json(str(data["id"]), str(data["name"]), str(data.get("arguments", "")))


def message_to_json(message: Message) -> dict[str, Any]:
    if isinstance(message, SystemMessage):
        return {"role": "system", "text": message.text}
    if isinstance(message, UserMessage):
        return {"role": "user", "text": message.text}
    if isinstance(message, AssistantMessage):
        return {
            "role": "assistant",
            "text": message.text,
            "tool_calls": [_call_json(c) for c in message.tool_calls],
        }
    return {
        "role": "tool",
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "content": message.content,
        "is_error": message.is_error,
    }


def message_from_json(data: dict[str, Any]) -> Message:
    role = data.get("role")
    if role == "system":
        return SystemMessage(str(data["text"]))
    if role == "user":
        return UserMessage(str(data["text"]))
    if role == "assistant":
        calls = tuple(_call_from_json(c) for c in data.get("tool_calls") or ())
        return AssistantMessage(str(data.get("text") or ""), calls)
    if role == "tool":
        return ToolResultMessage(
            tool_call_id=str(data["tool_call_id"]),
            content=str(data.get("content") or ""),
            name=str(data.get("name") or ""),
            is_error=bool(data.get("is_error")),
        )
    raise ValueError(f"not a message: {data!r}")


@dataclass(frozen=True, slots=True)
class PendingTool:
    """A loop suspended because the tool ``call`` waits at HEAR (saved with the session).

    ``exchange`` is the turn's messages after the user's ``question`` (the model's calls,
    the results so far); ``remaining`` the calls of the same round still to run; ``rounds``
    the model requests made; ``trailing`` how many stored history rows, from the question
    on, belong to the suspended exchange (they are left out of the history on resuming, as
    the exchange itself stands for them).
    """

    call: ToolCall
    waiting: dict[str, Any]
    question: str
    exchange: tuple[Message, ...]
    remaining: tuple[ToolCall, ...]
    rounds: int
    trailing: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PENDING_TOOL_VERSION,
            "call": _call_json(self.call),
            "waiting": self.waiting,
            "question": self.question,
            "exchange": [message_to_json(m) for m in self.exchange],
            "remaining": [_call_json(c) for c in self.remaining],
            "rounds": self.rounds,
            "trailing": self.trailing,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingTool:
        """The saved loop; ``ValueError`` for data of another version or shape."""
        if data.get("version") != PENDING_TOOL_VERSION:
            raise ValueError(f"pending tool version {data.get('version')!r}")
        try:
            return cls(
                call=_call_from_json(data["call"]),
                waiting=dict(data["waiting"]),
                question=str(data["question"]),
                exchange=tuple(message_from_json(m) for m in data["exchange"]),
                remaining=tuple(_call_from_json(c) for c in data["remaining"]),
                rounds=int(data["rounds"]),
                trailing=int(data["trailing"]),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"pending tool: {e!r}") from e


# -- the loop ---------------------------------------------------------------------------------


def _result_content(result: Any, told: Sequence[str]) -> str:
    content: dict[str, Any] = {"result": result}
    if told:
        content["shown_to_user"] = list(told)
    return json.dumps(content, ensure_ascii=False, default=str)


@dataclass(slots=True)
class _Suspended:
    waiting: dict[str, Any]


class ToolLoop:
    """One turn's loop over ``model`` with the session's ``tools``, on the session ``state``
    (shared with the tools' keywords, which write it through)."""

    def __init__(
        self,
        turn: Turn,
        model: BotModel,
        state: SessionState,
        tools: dict[str, Program],
        *,
        question: str,
        build: BuildRequest,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        trailing: int = 0,
    ) -> None:
        self.turn = turn
        self.model = model
        self.state = state
        self.tools = tools
        self.definitions = tool_definitions(tools)
        self.question = question
        self.build = build
        self.max_rounds = max_rounds
        self.trailing = trailing  # stored rows of an exchange resumed from earlier turns

    async def run(self, exchange: list[Message], rounds: int = 0) -> None:
        """Ask the model, run the tools it calls, until an answer, a cap, or a HEAR."""
        while True:
            if rounds >= self.max_rounds:
                log.warning(
                    "tool loop stopped bot=%s session=%s message=%s: %d model requests and "
                    "the model still calls tools",
                    self.turn.bot.name,
                    self._session_id,
                    self.turn.message.external_id,
                    rounds,
                )
                await self.turn.say(TOOL_LOOP_REPLY, tokens_used=self.turn.take_tokens())
                return
            conversation = await self.build(exchange)
            text, calls = await self._ask(conversation)
            rounds += 1
            if not calls:
                if text.strip():
                    await self.turn.say(text, tokens_used=self.turn.take_tokens())
                return
            if text.strip():
                await self.turn.say(text)  # what the model said before calling its tools
            exchange.append(AssistantMessage(text, tuple(calls)))
            if not await self.run_calls(calls, exchange, rounds):
                return

    async def run_calls(
        self, calls: Sequence[ToolCall], exchange: list[Message], rounds: int
    ) -> bool:
        """Run ``calls`` in order, appending their results; False when one waits at HEAR
        (the loop is then saved in the session, to go on with the next message)."""
        for index, call in enumerate(calls):
            outcome = await self._call(call)
            if isinstance(outcome, _Suspended):
                self._suspend(call, outcome.waiting, exchange, calls[index + 1 :], rounds)
                return False
            exchange.append(outcome)
        return True

    async def resume(self, pending: PendingTool, text: str) -> None:
        """Give the user's answer to the waiting tool, then go on with the loop."""
        told: list[str] = []
        try:
            run = await resume_tool(
                self.turn, pending.waiting, text, state=self.state, talk=self._talk(told)
            )
        except ToolError as e:
            log.warning("tool %s failed bot=%s: %s", pending.call.name, self.turn.bot.name, e)
            result = self._error(pending.call, str(e))
        else:
            if run.waiting is not None:  # asked again (an answer HEAR did not accept, …)
                self._suspend(
                    pending.call,
                    run.waiting,
                    list(pending.exchange),
                    pending.remaining,
                    pending.rounds,
                )
                return
            result = ToolResultMessage(
                pending.call.id, _result_content(run.result, told), name=pending.call.name
            )
        exchange = [*pending.exchange, result]
        if await self.run_calls(pending.remaining, exchange, pending.rounds):
            await self.run(exchange, pending.rounds)

    # -- one model request

    async def _ask(self, conversation: Conversation) -> tuple[str, list[ToolCall]]:
        request = CompletionRequest(messages=conversation.messages, tools=self.definitions)
        parts: list[str] = []
        calls: list[ToolCall] = []
        done = None
        async with self.turn.streaming():
            async for event in self.model.provider.stream(request):
                if isinstance(event, TextDelta):
                    if not parts:
                        await self.turn.release()  # what was said before goes out first
                    parts.append(event.text)
                    await self.turn.sink.delta(event.text)
                elif isinstance(event, ToolCallReady):
                    calls.append(event.call)
                elif isinstance(event, StreamDone):
                    done = event.completion
        if done is not None and done.usage is not None:
            self.turn.add_tokens(done.usage.total_tokens)
        text = done.text if done is not None else "".join(parts)
        if done is not None and done.tool_calls:
            calls = list(done.tool_calls)
        return text, calls

    # -- one tool call

    def _error(self, call: ToolCall, message: str) -> ToolResultMessage:
        return ToolResultMessage(call.id, message, name=call.name, is_error=True)

    def _talk(self, told: list[str]) -> Callable[[str], Awaitable[None]]:
        async def talk(text: str) -> None:
            told.append(text)
            await self.turn.say(text)

        return talk

    async def _call(self, call: ToolCall) -> ToolResultMessage | _Suspended:
        program = self.tools.get(call.name)
        if program is None:
            log.warning(
                "the model called a tool this conversation does not offer bot=%s session=%s "
                "tool=%r: not run",
                self.turn.bot.name,
                self._session_id,
                call.name,
            )
            offered = ", ".join(self.tools) or "none"
            return self._error(
                call, f"there is no tool {call.name!r} in this conversation (tools: {offered})"
            )
        if call.arguments is None:
            return self._error(
                call, f"the arguments are not a JSON object: {call.raw_arguments[:500]!r}"
            )
        arguments = normalize_arguments(program, call.arguments)
        problems = argument_errors(program, arguments)
        if problems:
            log.info("tool %s: invalid arguments from the model: %s", call.name, problems)
            return self._error(call, "invalid arguments: " + "; ".join(problems))
        told: list[str] = []
        try:
            run: ToolRun = await start_tool(
                self.turn, call.name, arguments, state=self.state, talk=self._talk(told)
            )
        except ToolError as e:
            log.warning("tool %s failed bot=%s: %s", call.name, self.turn.bot.name, e)
            return self._error(call, str(e))
        if run.waiting is not None:
            return _Suspended(run.waiting)
        return ToolResultMessage(call.id, _result_content(run.result, told), name=call.name)

    def _suspend(
        self,
        call: ToolCall,
        waiting: dict[str, Any],
        exchange: Sequence[Message],
        remaining: Sequence[ToolCall],
        rounds: int,
    ) -> None:
        pending = PendingTool(
            call=call,
            waiting=waiting,
            question=self.question,
            exchange=tuple(exchange),
            remaining=tuple(remaining),
            rounds=rounds,
            # this turn's rows (its message, what was said) join those of earlier turns
            trailing=self.trailing + self.turn.history_size,
        )
        self.state.pending_tool = pending.to_json()
        assert self.turn.session is not None
        write_state(self.turn.session, self.state)

    @property
    def _session_id(self) -> str:
        return self.turn.session.id if self.turn.session is not None else "-"
