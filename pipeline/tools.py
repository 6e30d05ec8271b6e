"""BASIC tools: a bot's ``.bas`` files with PARAM/DESCRIPTION, described and run for the LLM.

``run_tool`` runs one with arguments inside a turn and gives back its RETURN value (for the
LLM) and its TALK output (for the user) separately; whoever calls it decides where each goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from basic import BasicRuntimeError, Interpreter, Program
from basic.tools import anthropic_tool, is_tool, openai_tool
from pipeline.bots import Bot
from pipeline.dialog_host import DialogHost
from pipeline.turn import Turn


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


async def run_tool(turn: Turn, name: str, arguments: Mapping[str, Any] | None = None) -> ToolResult:
    """Run the bot's tool ``name`` with ``arguments`` (its PARAMs) in this turn's session.

    Parameter names match without regard to case; arguments the tool does not declare are
    ignored; a missing required one is an error. A tool may not wait for the user (HEAR).
    """
    bot = turn.bot
    key = name.strip().lower().removesuffix(".bas")
    program = bot.programs.get(key)
    if program is None or not is_tool(program):
        raise ToolError(f"no tool {name!r} in bot {bot.name!r}")
    given = {k.lower(): v for k, v in (arguments or {}).items()}
    declared = {param.name: param for param in program.params}
    missing = [
        p.name
        for p in program.params
        if not p.optional and p.default is None and given.get(p.name) is None
    ]
    if missing:
        raise ToolError(f"tool {key!r} needs the argument(s) {', '.join(missing)}")
    messages: list[str] = []

    async def collect(text: str) -> None:
        messages.append(text)

    interpreter = Interpreter(
        bot.programs, DialogHost(turn, talk=collect), limits=bot.limits, globals=bot.globals
    )
    try:
        outcome = await interpreter.start(
            key, arguments={k: v for k, v in given.items() if k in declared}
        )
    except BasicRuntimeError as e:
        raise ToolError(f"tool {key!r} failed: {e}") from e
    if outcome.state is not None:
        raise ToolError(f"tool {key!r} waited for the user's answer (HEAR), which a tool cannot do")
    return ToolResult(outcome.result, tuple(messages))
