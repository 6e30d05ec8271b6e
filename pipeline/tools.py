"""BASIC tools: a bot's ``.bas`` files with PARAM/DESCRIPTION, described and run for the LLM.

``run_tool`` runs one with arguments inside a turn and gives back its RETURN value (for the
LLM) and its TALK output (for the user) separately; whoever calls it decides where each goes.
``start_tool`` / ``resume_tool`` do the same for the tool loop, where a tool may also wait
for the user's answer (HEAR): its interpreter state is then returned, to be saved with the
session and resumed by the next message.  ``argument_errors`` checks a model's arguments
against the tool's JSON schema before anything runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from basic import BasicRuntimeError, Interpreter, Program
from basic.tools import anthropic_tool, is_tool, openai_tool, parameters_schema
from pipeline.bots import Bot
from pipeline.dialog_host import DialogHost
from pipeline.session_state import SessionState
from pipeline.turn import Turn

Talk = Callable[[str], Awaitable[None]]


class ToolError(Exception):
    """A tool could not run or failed; the message is fit to show the LLM."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool run produced: its RETURN value and the messages it TALKed."""

    result: Any
    messages: tuple[str, ...] = ()


def tool_programs(bot: Bot) -> dict[str, Program]:
    """The bot's dialogs that are tools, by name."""
    return {name: program for name, program in sorted(bot.programs.items()) if is_tool(program)}


def tool_schemas(program: Program) -> dict[str, Any]:
    """One tool as ``{"name", "openai", "anthropic"}`` (what ``botserver check --tools`` prints)."""
    return {
        "name": program.name,
        "openai": openai_tool(program),
        "anthropic": anthropic_tool(program),
    }


@dataclass(frozen=True, slots=True)
class ToolRun:
    """A run of a tool in the tool loop: finished (``waiting`` is None, ``result`` its RETURN
    value), or waiting at HEAR (``waiting`` is the interpreter's state to resume)."""

    result: Any = None
    waiting: dict[str, Any] | None = None


def tool_program(bot: Bot, name: str) -> Program:
    """The bot's tool ``name`` (``.bas`` suffix and case ignored); ToolError if none."""
    key = name.strip().lower().removesuffix(".bas")
    program = bot.programs.get(key)
    if program is None or not is_tool(program):
        raise ToolError(f"no tool {name!r} in bot {bot.name!r}")
    return program


def normalize_arguments(program: Program, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """Argument names lowercased (PARAM names match without regard to case); an optional
    argument given as ``null`` is left out, as if not given."""
    required = {p.name for p in program.params if not p.optional and p.default is None}
    return {
        k.lower(): v for k, v in (arguments or {}).items() if v is not None or k.lower() in required
    }


def argument_errors(program: Program, arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``arguments`` (normalized) against the tool's schema, as lines fit
    to show the model: a missing required argument, a wrong type, a value not in its ENUM.
    Arguments the tool does not declare are ignored."""
    validator = jsonschema.Draft202012Validator(parameters_schema(program))
    errors = []
    for error in sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        errors.append(f"{where}: {error.message}" if where else error.message)
    return errors


def _interpreter(turn: Turn, state: SessionState | None, talk: Talk) -> Interpreter:
    bot = turn.bot
    host = DialogHost(turn, state=state, talk=talk)
    return Interpreter(bot.programs, host, limits=bot.limits, globals=bot.globals)


async def start_tool(
    turn: Turn,
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    state: SessionState | None = None,
    talk: Talk,
) -> ToolRun:
    """Run the tool with ``arguments`` (its PARAMs), TALK output going to ``talk``.

    ``state`` is the session state the caller works on (the tool's keywords change it in
    place and write it through).  A missing required argument or a failing tool raises
    :class:`ToolError`.
    """
    program = tool_program(turn.bot, name)
    given = normalize_arguments(program, arguments)
    declared = {param.name for param in program.params}
    missing = [
        p.name
        for p in program.params
        if not p.optional and p.default is None and given.get(p.name) is None
    ]
    if missing:
        raise ToolError(f"tool {program.name!r} needs the argument(s) {', '.join(missing)}")
    interpreter = _interpreter(turn, state, talk)
    try:
        outcome = await interpreter.start(
            program.name, arguments={k: v for k, v in given.items() if k in declared}
        )
    except BasicRuntimeError as e:
        raise ToolError(f"tool {program.name!r} failed: {e}") from e
    return ToolRun(outcome.result, outcome.state)


async def resume_tool(
    turn: Turn,
    waiting: dict[str, Any],
    text: str,
    *,
    state: SessionState | None = None,
    talk: Talk,
) -> ToolRun:
    """Deliver the user's answer to the HEAR a tool waits at and run it on.

    A tool whose program changed since it waited cannot resume: :class:`ToolError`.
    """
    interpreter = _interpreter(turn, state, talk)
    reason = interpreter.cannot_resume(waiting)
    if reason is not None:
        raise ToolError(f"the tool could not go on: {reason}")
    try:
        outcome = await interpreter.resume(waiting, text)
    except BasicRuntimeError as e:
        raise ToolError(f"tool failed: {e}") from e
    return ToolRun(outcome.result, outcome.state)


async def run_tool(turn: Turn, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
    """Run the bot's tool ``name`` with ``arguments`` (its PARAMs) in this turn's session.

    Parameter names match without regard to case; arguments the tool does not declare are
    ignored; a missing required one is an error. A tool may not wait for the user (HEAR).
    """
    messages: list[str] = []

    async def collect(text: str) -> None:
        messages.append(text)

    run = await start_tool(turn, name, arguments, talk=collect)
    if run.waiting is not None:
        key = name.strip().lower().removesuffix(".bas")
        raise ToolError(f"tool {key!r} waited for the user's answer (HEAR), which a tool cannot do")
    return ToolResult(run.result, tuple(messages))
