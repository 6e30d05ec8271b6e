"""The public runner: start a dialog, resume it with the user's next message.

A dialog waiting at HEAR is nothing but this JSON-serializable dict (format version 1)::

    {"version": 1,
     "vars": {...},            # the dialog's variables (hidden loop/temporary ones start with $)
     "frames": [               # call stack, outermost first; the last one waits at HEAR
        {"program": "start", "digest": "...", "unit": "", "pc": 12,   # digest: of the source
                                                                  # and INSTRUCTION_FORMAT
         "locals": null,       # null: uses "vars" (a dialog body); a dict for a SUB/FUNCTION
         "on_error": false, "target": null}],
     "retries": 0,             # failed validations of the current HEAR
     "headers": {}}            # SET HEADER values for later HTTP calls
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from basic.compiler import Program
from basic.errors import BasicRuntimeError
from basic.host import Host
from basic.machine import Frame, Limits, Machine
from basic.nodes import Const, Param
from basic.values import plain

STATE_VERSION = 1
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Outcome:
    """What a turn left behind."""

    state: dict[str, Any] | None  # None: the dialog finished; else it waits at a HEAR
    result: Any = None  # the RETURN value of a finished dialog (a tool's answer to the LLM)


class Globals(dict[str, Any]):
    """Bot-wide variables with names already normalized (see :func:`normalize_globals`)."""


def normalize_globals(values: Mapping[str, Any] | None) -> Globals:
    """Names are case-insensitive; config.csv's ``param-X`` rows are visible as ``x``.

    A bot normalizes its values once when it loads; an :class:`Interpreter` given a
    :class:`Globals` uses it as it is.
    """
    if isinstance(values, Globals):
        return values
    result = Globals()
    for key, value in (values or {}).items():
        name = key.lower()
        result[name.removeprefix("param-")] = value
    return result


def _default(param: Param) -> Any:
    """A PARAM's DEFAULT when it is a literal (the value a caller leaving it out gets)."""
    return param.default.value if isinstance(param.default, Const) else None


class Interpreter:
    """Runs compiled programs against a host.  Holds no per-dialog state: safe to share."""

    def __init__(
        self,
        programs: Mapping[str, Program],
        host: Host,
        *,
        limits: Limits = DEFAULT_LIMITS,
        globals: Mapping[str, Any] | None = None,
        broken: Collection[str] = (),
    ) -> None:
        """``broken`` names the dialogs that failed to compile, so that reaching one says so."""
        self.programs = programs
        self.host = host
        self.limits = limits
        self.globals = normalize_globals(globals)
        self.broken = broken

    def cannot_resume(self, state: Mapping[str, Any]) -> str | None:
        """Why ``state`` cannot resume with these programs (None when it can): a state of
        another format, a dialog gone, or one whose program changed since it waited (the
        program's digest covers its source and the instruction format of this interpreter)."""
        if state.get("version") != STATE_VERSION or not state.get("frames"):
            return f"dialog state version {state.get('version')!r}, expected {STATE_VERSION}"
        for saved in state["frames"]:
            program = self.programs.get(saved.get("program", ""))
            if program is None:
                return f"dialog {saved.get('program')!r} no longer exists"
            if program.digest != saved.get("digest"):
                return f"{program.filename} changed since the dialog waited"
        return None

    async def start(
        self, name: str = "start", *, arguments: Mapping[str, Any] | None = None
    ) -> Outcome:
        """Run ``name`` from the top.  ``arguments`` become variables (a tool's PARAMs; missing
        OPTIONAL ones are empty)."""
        key = name.lower().removesuffix(".bas")
        program = self.programs.get(key)
        if program is None:
            if key in self.broken:
                raise BasicRuntimeError(f"{key}.bas", 0, f"{key}.bas has errors")
            raise BasicRuntimeError(f"{key}.bas", 0, f"dialog {key + '.bas'!r} not found")
        shared: dict[str, Any] = {p.name: _default(p) for p in program.params}
        shared.update({k.lower(): plain(v) for k, v in (arguments or {}).items()})
        frames = [Frame(program, program.main, shared, shared, self.globals)]
        machine = Machine(self.programs, self.host, self.limits, frames, broken=self.broken)
        return await self._run(machine, shared, 0)

    async def resume(self, state: dict[str, Any], text: str) -> Outcome:
        """Deliver one user message to the HEAR the dialog waits at and run on."""
        shared, frames, headers = self._restore(state)
        machine = Machine(self.programs, self.host, self.limits, frames, headers, self.broken)
        retries = await machine.deliver(text, int(state.get("retries", 0)))
        if retries:
            return Outcome(self._save(machine, shared, retries))
        return await self._run(machine, shared, 0)

    async def _run(self, machine: Machine, shared: dict[str, Any], retries: int) -> Outcome:
        waiting = await machine.run()
        if waiting:
            return Outcome(self._save(machine, shared, retries))
        return Outcome(None, plain(machine.result))

    @staticmethod
    def _save(machine: Machine, shared: dict[str, Any], retries: int) -> dict[str, Any]:
        frames = [
            {
                "program": f.program.name,
                "digest": f.program.digest,
                "unit": f.unit.name,
                "pc": f.pc,
                "locals": None if f.vars is shared else f.vars,
                "on_error": f.on_error,
                "target": f.target,
            }
            for f in machine.frames
        ]
        return {
            "version": STATE_VERSION,
            "vars": shared,
            "frames": frames,
            "retries": retries,
            "headers": machine.headers,
        }

    def _restore(
        self, state: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[Frame], dict[str, str]]:
        if state.get("version") != STATE_VERSION or not state.get("frames"):
            raise BasicRuntimeError(
                "?",
                0,
                f"unsupported dialog state (version "
                f"{state.get('version')!r}, expected {STATE_VERSION})",
            )
        shared: dict[str, Any] = dict(state["vars"])
        frames: list[Frame] = []
        for saved in state["frames"]:
            program = self.programs.get(saved["program"])
            filename = f"{saved['program']}.bas"
            if program is None:
                raise BasicRuntimeError(filename, 0, "the waiting dialog no longer exists")
            if program.digest != saved["digest"]:
                raise BasicRuntimeError(
                    program.filename, 0, "the dialog changed since it started waiting; start over"
                )
            unit = program.units[saved["unit"]]
            local = saved["locals"]
            variables = shared if local is None else dict(local)
            frame = Frame(
                program, unit, variables, shared, self.globals, saved["pc"], saved.get("target")
            )
            frame.on_error = bool(saved.get("on_error"))
            frames.append(frame)
        return shared, frames, dict(state.get("headers") or {})
