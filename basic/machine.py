"""The resumable machine: flat instructions, explicit frames, a run loop.

A program is compiled (compiler.py) into one flat instruction list per unit (the main body and
each SUB/FUNCTION).  Running keeps a stack of Frames, each a program counter into one unit plus
its variables, so nothing lives on the Python stack between instructions: at HEAR the machine
just stops and its frames become plain data (see interpreter.py for the state format).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from basic import hear as hear_types
from basic.errors import BasicError, BasicRuntimeError, MissingCapability, ScriptError
from basic.values import (
    get_field,
    get_index,
    plain,
    set_field,
    set_index,
    to_number,
    to_text,
    truthy,
)

if TYPE_CHECKING:
    from basic.compiler import Program, Unit
    from basic.host import Host


log = logging.getLogger(__name__)

_MISSING: Any = object()
MAX_CALL_DEPTH = 64


class Frame:
    """One activation: a unit of a program, its program counter and its variables.

    ``vars`` is the dialog's shared variables for a program's main body (also for dialogs it
    CALLs) and a fresh dict for a SUB/FUNCTION call.
    """

    __slots__ = ("globals", "on_error", "pc", "program", "shared", "target", "unit", "vars")

    def __init__(
        self,
        program: Program,
        unit: Unit,
        variables: dict[str, Any],
        shared: dict[str, Any],
        globals_: Mapping[str, Any],
        pc: int = 0,
        target: str | None = None,
    ) -> None:
        self.program = program
        self.unit = unit
        self.pc = pc
        self.vars = variables
        self.shared = shared
        self.globals = globals_
        self.on_error = False
        self.target = target  # caller variable that receives a FUNCTION's result

    def load(self, name: str) -> Any:
        value = self.vars.get(name, _MISSING)
        if value is _MISSING:
            value = self.shared.get(name, _MISSING)
            if value is _MISSING:
                return self.globals.get(name)
        return value

    def store(self, name: str, value: Any) -> None:
        """In a SUB/FUNCTION only its parameters (and hidden temporaries) are local: there is
        no DIM, so any other assignment sets the dialog's variable."""
        if name in self.vars or name[0] == "$":
            self.vars[name] = value
        else:
            self.shared[name] = value


Eval = Callable[[Frame], Any]


class Suspend(Exception):
    """Raised by HEAR: the machine stops and its frames are saved."""


@dataclass(frozen=True)
class Limits:
    """Per-turn limits; a dialog exceeding one fails with a BasicRuntimeError."""

    max_steps: int = 100_000
    max_loop_iterations: int = 10_000
    wall_time: float = 5.0  # seconds per turn, not counting time waiting on the host
    max_http_calls: int = 20


# ---------------------------------------------------------------------------- instructions


class Instr:
    """One instruction.  ``run`` moves ``f.pc`` itself (usually +1)."""

    __slots__ = ("line",)
    is_async = False

    def __init__(self, line: int) -> None:
        self.line = line

    def run(self, m: Machine, f: Frame) -> None:
        raise NotImplementedError

    async def arun(self, m: Machine, f: Frame) -> None:
        raise NotImplementedError


class Evaluate(Instr):
    """``target = expr`` for a plain variable (also used for hidden temporaries)."""

    __slots__ = ("name", "value")

    def __init__(self, line: int, name: str, value: Eval) -> None:
        super().__init__(line)
        self.name = name
        self.value = value

    def run(self, m: Machine, f: Frame) -> None:
        f.store(self.name, self.value(f))
        f.pc += 1


class AssignPath(Instr):
    """``obj.a.b = expr``, ``list[i] = expr``, ``rows[i].sku = expr``: each step is a field
    name or an index; missing objects along field steps are created."""

    __slots__ = ("name", "path", "value")

    def __init__(self, line: int, name: str, path: tuple[str | Eval, ...], value: Eval) -> None:
        super().__init__(line)
        self.name = name
        self.path = path
        self.value = value

    def run(self, m: Machine, f: Frame) -> None:
        value = self.value(f)
        obj = f.load(self.name)
        if isinstance(self.path[0], str) and not isinstance(obj, dict):
            obj = {}
            f.store(self.name, obj)
        for step in self.path[:-1]:
            if isinstance(step, str):
                inner = get_field(obj, step)
                if not isinstance(inner, dict | list):
                    inner = {}
                    set_field(obj, step, inner)
            else:
                inner = get_index(obj, step(f))
                if not isinstance(inner, dict | list):
                    raise ScriptError(f"cannot set a field of {to_text(inner)!r}")
            obj = inner
        last = self.path[-1]
        if isinstance(last, str):
            if not isinstance(obj, dict):
                raise ScriptError(f"cannot set field {last!r} of {to_text(obj)!r}")
            set_field(obj, last, value)
        else:
            set_index(obj, last(f), value)
        f.pc += 1


class WithStart(Instr):
    """WITH obj: makes ``obj`` an object unless it already is one."""

    __slots__ = ("name",)

    def __init__(self, line: int, name: str) -> None:
        super().__init__(line)
        self.name = name

    def run(self, m: Machine, f: Frame) -> None:
        if not isinstance(f.load(self.name), dict):
            f.store(self.name, {})
        f.pc += 1


class Jump(Instr):
    __slots__ = ("target",)

    def __init__(self, line: int, target: int = -1) -> None:
        super().__init__(line)
        self.target = target

    def run(self, m: Machine, f: Frame) -> None:
        f.pc = self.target


class LoopJump(Jump):
    """The backward jump closing a loop body: counts iterations against the limit."""

    __slots__ = ()

    def run(self, m: Machine, f: Frame) -> None:
        m.count_iteration(f)
        f.pc = self.target


class JumpIf(Instr):
    """Jump when ``cond`` is ``when`` (truthiness); ``loop`` marks a backward loop jump."""

    __slots__ = ("cond", "loop", "target", "when")

    def __init__(
        self, line: int, cond: Eval, when: bool, target: int = -1, loop: bool = False
    ) -> None:
        super().__init__(line)
        self.cond = cond
        self.when = when
        self.target = target
        self.loop = loop

    def run(self, m: Machine, f: Frame) -> None:
        if truthy(self.cond(f)) is self.when:
            if self.loop:
                m.count_iteration(f)
            f.pc = self.target
        else:
            f.pc += 1


class ForInit(Instr):
    """FOR v = start TO stop STEP step: sets v and keeps stop/step in hidden variables."""

    __slots__ = ("slot", "start", "step", "stop", "var")

    def __init__(
        self, line: int, var: str, slot: str, start: Eval, stop: Eval, step: Eval | None
    ) -> None:
        super().__init__(line)
        self.var, self.slot, self.start, self.stop, self.step = var, slot, start, stop, step

    def run(self, m: Machine, f: Frame) -> None:
        step = to_number(self.step(f)) if self.step is not None else 1
        if step == 0:
            raise ScriptError("FOR ... STEP 0 would never end")
        f.store(self.var, to_number(self.start(f)))
        f.vars[self.slot] = [to_number(self.stop(f)), step]
        f.pc += 1


class ForTest(Instr):
    __slots__ = ("slot", "target", "var")

    def __init__(self, line: int, var: str, slot: str, target: int = -1) -> None:
        super().__init__(line)
        self.var, self.slot, self.target = var, slot, target

    def run(self, m: Machine, f: Frame) -> None:
        stop, step = f.vars[self.slot]
        value = to_number(f.load(self.var))
        if (step > 0 and value > stop) or (step < 0 and value < stop):
            del f.vars[self.slot]
            f.pc = self.target
        else:
            f.pc += 1


class ForStep(Instr):
    __slots__ = ("slot", "target", "var")

    def __init__(self, line: int, var: str, slot: str, target: int) -> None:
        super().__init__(line)
        self.var, self.slot, self.target = var, slot, target

    def run(self, m: Machine, f: Frame) -> None:
        m.count_iteration(f)
        f.store(self.var, to_number(f.load(self.var)) + f.vars[self.slot][1])
        f.pc = self.target


class ForEachInit(Instr):
    """FOR EACH: snapshots the list into a hidden [items, next index] variable."""

    __slots__ = ("iterable", "slot")

    def __init__(self, line: int, slot: str, iterable: Eval) -> None:
        super().__init__(line)
        self.slot, self.iterable = slot, iterable

    def run(self, m: Machine, f: Frame) -> None:
        items = self.iterable(f)
        if items is None or items == "":
            items = []
        elif isinstance(items, dict):
            items = [items]  # FIND with one match may give a row; iterate it once
        elif isinstance(items, str):
            items = list(items)
        elif not isinstance(items, list):
            raise ScriptError(f"FOR EACH needs a list, got {to_text(items)!r}")
        f.vars[self.slot] = [list(items), 0]
        f.pc += 1


class ForEachNext(Instr):
    __slots__ = ("slot", "target", "var")

    def __init__(self, line: int, var: str, slot: str, target: int = -1) -> None:
        super().__init__(line)
        self.var, self.slot, self.target = var, slot, target

    def run(self, m: Machine, f: Frame) -> None:
        state = f.vars[self.slot]
        items, i = state
        if i >= len(items):
            del f.vars[self.slot]
            f.pc = self.target
            return
        state[1] = i + 1
        f.store(self.var, items[i])
        f.pc += 1


class Discard(Instr):
    """Removes a hidden loop variable when EXIT FOR/DO leaves the loop early."""

    __slots__ = ("slot",)

    def __init__(self, line: int, slot: str) -> None:
        super().__init__(line)
        self.slot = slot

    def run(self, m: Machine, f: Frame) -> None:
        f.vars.pop(self.slot, None)
        f.pc += 1


class Talk(Instr):
    __slots__ = ("value",)
    is_async = True

    def __init__(self, line: int, value: Eval) -> None:
        super().__init__(line)
        self.value = value

    async def arun(self, m: Machine, f: Frame) -> None:
        text = to_text(self.value(f))
        await m.host_wait(m.host.talk(text))
        f.pc += 1


class Hear(Instr):
    """Suspends the machine; the next user message resumes it here (Machine.deliver)."""

    __slots__ = ("kind", "options", "var")

    def __init__(self, line: int, var: str, kind: str, options: tuple[str, ...]) -> None:
        super().__init__(line)
        self.var, self.kind, self.options = var, kind, options

    def run(self, m: Machine, f: Frame) -> None:
        media = hear_types.MEDIA_KINDS.get(self.kind)
        if media is not None:
            m.media_capability(media, f"HEAR AS {self.kind}")
        if self.options:  # a menu's options are buttons, as in General Bots
            offer = getattr(m.host, "offer_choice", None) or m.host.add_suggestion
            for option in self.options:
                offer(option, option)
        raise Suspend


class Suggestion(Instr):
    __slots__ = ("key", "label")

    def __init__(self, line: int, key: Eval | None, label: Eval | None) -> None:
        super().__init__(line)
        self.key, self.label = key, label

    def run(self, m: Machine, f: Frame) -> None:
        if self.key is None:
            m.host.clear_suggestions()
        else:
            key = to_text(self.key(f))
            label = to_text(self.label(f)) if self.label is not None else key
            m.host.add_suggestion(key, label)
        f.pc += 1


class HostCall(Instr):
    """A keyword that calls the host; ``target`` receives the value (None: discarded)."""

    __slots__ = ("args", "keyword", "names", "target")
    is_async = True

    def __init__(
        self,
        line: int,
        keyword: str,
        args: tuple[Eval, ...],
        target: str | None,
        names: tuple[str | None, ...] = (),
    ) -> None:
        super().__init__(line)
        self.keyword, self.args, self.target, self.names = keyword, args, target, names

    async def arun(self, m: Machine, f: Frame) -> None:
        args = [a(f) for a in self.args]
        value = await m.keyword(self.keyword, args, self.names, f)
        if self.target is not None:
            f.store(self.target, plain(value))
        f.pc += 1


class CallProc(Instr):
    """CALL name(args) / a FUNCTION used in an expression (result into ``target``)."""

    __slots__ = ("args", "name", "target")

    def __init__(self, line: int, name: str, args: tuple[Eval, ...], target: str | None) -> None:
        super().__init__(line)
        self.name, self.args, self.target = name, args, target

    def run(self, m: Machine, f: Frame) -> None:
        unit = f.program.units[self.name]
        if len(m.frames) >= MAX_CALL_DEPTH:
            raise ScriptError(f"calls nested more than {MAX_CALL_DEPTH} deep (endless recursion?)")
        local = dict(zip(unit.params, (a(f) for a in self.args), strict=True))
        if unit.kind == "FUNCTION":
            local.setdefault(unit.name, None)  # VB style: `Name = value` sets the result
        m.frames.append(Frame(f.program, unit, local, f.shared, f.globals, target=self.target))


class CallDialog(Instr):
    """CALL "other.bas": runs another dialog with the same variables, then comes back."""

    __slots__ = ("name",)

    def __init__(self, line: int, name: str) -> None:
        super().__init__(line)
        self.name = name

    def run(self, m: Machine, f: Frame) -> None:
        program = m.programs.get(self.name)
        if program is None:
            if self.name in m.broken:
                raise ScriptError(f"{self.name}.bas has errors and could not be loaded")
            raise ScriptError(f"dialog {self.name + '.bas'!r} not found")
        if len(m.frames) >= MAX_CALL_DEPTH:
            raise ScriptError(f"calls nested more than {MAX_CALL_DEPTH} deep (endless recursion?)")
        m.frames.append(Frame(program, program.main, f.shared, f.shared, f.globals))


class Return(Instr):
    """RETURN [value] / end of a unit.  A FUNCTION without RETURN value returns the variable
    named like the function (VB style)."""

    __slots__ = ("default_var", "value")

    def __init__(self, line: int, value: Eval | None, default_var: str | None = None) -> None:
        super().__init__(line)
        self.value, self.default_var = value, default_var

    def run(self, m: Machine, f: Frame) -> None:
        if self.value is not None:
            result = self.value(f)
        elif self.default_var is not None:
            result = f.vars.get(self.default_var)
        else:
            result = None
        m.frames.pop()
        if not m.frames:
            m.result = result
            return
        caller = m.frames[-1]
        caller.pc += 1
        if f.target is not None:
            caller.vars[f.target] = result


class EndProgram(Instr):
    __slots__ = ()

    def run(self, m: Machine, f: Frame) -> None:
        m.frames.clear()


class OnError(Instr):
    __slots__ = ("resume_next",)

    def __init__(self, line: int, resume_next: bool) -> None:
        super().__init__(line)
        self.resume_next = resume_next

    def run(self, m: Machine, f: Frame) -> None:
        f.on_error = self.resume_next
        f.pc += 1


class Throw(Instr):
    __slots__ = ("value",)

    def __init__(self, line: int, value: Eval) -> None:
        super().__init__(line)
        self.value = value

    def run(self, m: Machine, f: Frame) -> None:
        raise ScriptError(to_text(self.value(f)) or "error")


# ---------------------------------------------------------------------------- the machine


class Machine:
    """Runs frames until HEAR, the end, or an error.  One per turn; not shared."""

    def __init__(
        self,
        programs: Mapping[str, Program],
        host: Host,
        limits: Limits,
        frames: list[Frame],
        headers: dict[str, str] | None = None,
        broken: Collection[str] = (),
    ) -> None:
        self.programs = programs
        self.broken = broken
        self.host = host
        self.limits = limits
        self.frames = frames
        self.headers: dict[str, str] = headers if headers is not None else {}
        self.result: Any = None
        self.http_calls = 0
        self.steps = 0
        self.iterations: dict[tuple[int, int], int] = {}
        self.started = time.monotonic()
        self.host_time = 0.0

    # -- limits
    def count_iteration(self, f: Frame) -> None:
        key = (id(f), f.pc)
        count = self.iterations.get(key, 0) + 1
        if count > self.limits.max_loop_iterations:
            raise ScriptError(f"loop ran more than {self.limits.max_loop_iterations} iterations")
        self.iterations[key] = count

    def _out_of_time(self) -> bool:
        return time.monotonic() - self.started - self.host_time > self.limits.wall_time

    async def host_wait(self, result: Any) -> Any:
        """Await a host call's result (if awaitable), not counting the wait as dialog time."""
        if inspect.isawaitable(result):
            began = time.monotonic()
            try:
                return await result
            finally:
                self.host_time += time.monotonic() - began
        return result

    @staticmethod
    def line_of(f: Frame) -> int:
        return f.unit.code[min(f.pc, len(f.unit.code) - 1)].line

    def capability(self, name: str, keyword: str) -> Callable[..., Any]:
        method = getattr(self.host, name, None)
        if method is None:
            f = self.frames[-1]
            raise MissingCapability(f.program.filename, f.unit.code[f.pc].line, name, keyword)
        return method  # type: ignore[no-any-return]

    def media_capability(self, kind: str, keyword: str) -> Callable[..., Any]:
        """The host's ``receive_media``, when it takes files of ``kind`` (a host that says
        which kinds it takes, in ``media_kinds``, lacks it for the others)."""
        kinds = getattr(self.host, "media_kinds", None)
        if kinds is not None and kind not in kinds:
            f = self.frames[-1]
            raise MissingCapability(
                f.program.filename, f.unit.code[f.pc].line, "receive_media", keyword
            )
        return self.capability("receive_media", keyword)

    # -- running
    async def run(self) -> bool:
        """Run until the dialog ends (False) or waits at HEAR (True)."""
        frames = self.frames
        max_steps = self.limits.max_steps
        steps = self.steps
        try:
            while frames:
                f = frames[-1]
                ins = f.unit.code[f.pc]
                steps += 1
                if steps & 1023 == 0:
                    if steps > max_steps:
                        self.fail(
                            f,
                            ins,
                            f"dialog ran more than {max_steps} steps in one turn",
                            catchable=False,
                        )
                    if self._out_of_time():
                        self.fail(
                            f,
                            ins,
                            f"dialog ran longer than {self.limits.wall_time:g} s in one turn",
                            catchable=False,
                        )
                    await asyncio.sleep(0)  # let other conversations run
                try:
                    if ins.is_async:
                        await ins.arun(self, f)
                    else:
                        ins.run(self, f)
                except Suspend:
                    raise
                except ScriptError as e:
                    self.fail(f, ins, str(e))
                except MissingCapability as e:
                    self.recover(e)
                except BasicRuntimeError as e:
                    self.recover(e)
                except BasicError:
                    raise
                except Exception as e:  # a host method failed
                    self.fail(f, ins, f"{type(e).__name__}: {e}")
            return False
        except Suspend:
            return True
        finally:
            self.steps = steps

    def fail(self, f: Frame, ins: Instr, message: str, *, catchable: bool = True) -> None:
        error = BasicRuntimeError(f.program.filename, ins.line, message)
        if not catchable:
            raise error
        self.recover(error)

    def recover(self, error: BasicRuntimeError) -> None:
        """ON ERROR RESUME NEXT: continue after the failing statement in the nearest frame
        that asked for it; otherwise the error ends the dialog."""
        for depth in range(len(self.frames) - 1, -1, -1):
            f = self.frames[depth]
            if f.on_error:
                del self.frames[depth + 1 :]
                f.pc = f.unit.next_statement(f.pc)
                f.store("err", error.message)
                return
        raise error

    async def keyword(
        self, keyword: str, args: list[Any], names: tuple[str | None, ...], f: Frame
    ) -> Any:
        """The keywords that reach out to the host (see keywords.py)."""
        if keyword == "GET":
            target = to_text(args[0])
            lowered = target.lower()
            if lowered.startswith(("http://", "https://")):
                return await self.http("GET", target, None, keyword)
            if lowered.startswith("session."):
                method = self.capability("session_field", 'GET "session.*"')
                return await self.host_wait(method(target[len("session.") :].lower()))
            return await self.host_wait(self.capability("read_file", 'GET "file"')(target))
        if keyword in ("POST", "PUT", "PATCH", "DELETE HTTP"):
            method_name = "DELETE" if keyword == "DELETE HTTP" else keyword
            return await self.http(
                method_name, to_text(args[0]), args[1] if len(args) > 1 else None, keyword
            )
        if keyword == "DELETE":
            if to_text(args[0]).lower().startswith(("http://", "https://")):
                return await self.http("DELETE", to_text(args[0]), None, keyword)
            delete = self.capability("delete", keyword)
            return await self.host_wait(
                delete(to_text(args[0]), to_text(args[1]) if len(args) > 1 else "")
            )
        if keyword == "SET HEADER":
            self.headers[to_text(args[0])] = to_text(args[1])
            return None
        if keyword == "CLEAR HEADERS":
            self.headers.clear()
            return None
        if keyword == "USE WEBSITE":
            refresh = to_text(args[1]) if len(args) > 1 else ""  # "": the bot's default
            return await self.host_wait(
                self.capability("use_website", keyword)(to_text(args[0]), refresh)
            )
        if keyword == "WAIT":
            seconds = float(to_number(args[0]))
            remaining = self.limits.wall_time - (time.monotonic() - self.started - self.host_time)
            if seconds > remaining:
                raise ScriptError(f"WAIT {seconds:g} is longer than the turn's time limit")
            await asyncio.sleep(max(seconds, 0))
            return None
        if keyword in ("SAVE", "INSERT"):
            row = _row(args[1:], names[1:])
            return await self.host_wait(
                self.capability(keyword.lower(), keyword)(to_text(args[0]), row)
            )
        if keyword == "UPDATE":
            row = _row(args[2:], names[2:])
            return await self.host_wait(
                self.capability("update", keyword)(to_text(args[0]), to_text(args[1]), row)
            )
        if keyword == "FIND":
            rows = await self.host_wait(
                self.capability("find", keyword)(
                    to_text(args[0]), to_text(args[1]) if len(args) > 1 else ""
                )
            )
            return rows if rows else None  # nothing found is falsy
        if keyword in ("SET BOT MEMORY", "SET USER MEMORY", "TALK TO"):
            method = self.capability(_CAPABILITY[keyword], keyword)
            first = to_text(args[0])
            second = to_text(args[1]) if keyword == "TALK TO" else args[1]
            return await self.host_wait(method(first, second))
        if keyword == "SEND FILE TO":  # recipient, file (a path, key or URL)[, caption]
            method = self.capability(_CAPABILITY[keyword], keyword)
            caption = to_text(args[2]) if len(args) > 2 and args[2] is not None else ""
            return await self.host_wait(method(to_text(args[0]), args[1], caption))
        if keyword == "PLAY":  # source[, options]: General Bots' "autoplay,loop,start=10"
            method = self.capability(_CAPABILITY[keyword], keyword)
            options = to_text(args[1]) if len(args) > 1 and args[1] is not None else ""
            return await self.host_wait(method(args[0], options))
        if keyword == "SEND MAIL" and len(args) == 4:
            if args[3] not in (None, "", []):
                raise ScriptError("SEND MAIL with attachments is not supported yet")
            args = args[:3]
        if keyword in ("USE TOOL", "ADD TOOL"):
            problem = await self.host_wait(self.capability("use_tool", keyword)(to_text(args[0])))
            if isinstance(problem, str):  # General Bots carries on without the tool: so do we
                log.warning("%s:%d: warning: %s", f.program.filename, self.line_of(f), problem)
            return None
        if keyword == "CLEAR KB":
            method = self.capability(_CAPABILITY[keyword], keyword)
            return await self.host_wait(method(to_text(args[0]) if args else None))
        if keyword == "TRANSFER TO HUMAN":
            method = self.capability(_CAPABILITY[keyword], keyword)
            return await self.host_wait(method(**_transfer_request(args)))
        method = self.capability(_CAPABILITY[keyword], keyword)
        return await self.host_wait(
            method(*[a if isinstance(a, list | dict) else to_text(a) for a in args])
        )

    async def http(self, method: str, url: str, body: Any, keyword: str) -> Any:
        call = self.capability("http", keyword)
        self.http_calls += 1
        if self.http_calls > self.limits.max_http_calls:
            raise ScriptError(f"more than {self.limits.max_http_calls} HTTP calls in one turn")
        return await self.host_wait(call(method, url, body, dict(self.headers)))

    async def deliver(self, text: str, retries: int) -> int:
        """Give the user's message to the HEAR the top frame waits at.  Returns the retry count
        still pending (0 when the variable was set)."""
        f = self.frames[-1]
        ins = f.unit.code[f.pc]
        if not isinstance(ins, Hear):
            raise BasicRuntimeError(
                f.program.filename, ins.line, "saved dialog state does not point at a HEAR"
            )
        try:
            media = hear_types.MEDIA_KINDS.get(ins.kind)
            if media is not None:
                method = self.media_capability(media, f"HEAR AS {ins.kind}")
                value = await self.host_wait(method(media, text))
                if value is None or value == "":
                    raise hear_types.Invalid
            else:
                value = hear_types.validate(ins.kind, text, ins.options)
                if ins.options:
                    self.host.clear_suggestions()  # the menu is answered: its buttons go
        except hear_types.Invalid:
            retries += 1
            if retries < 3:
                await self.host_wait(self.host.talk(hear_types.retry_prompt(ins.kind, ins.options)))
                return retries
            value = ""
        f.store(ins.var, plain(value))
        f.pc += 1
        return 0


_TRANSFER_FIELDS = ("name", "department", "priority", "reason", "context")


def _transfer_request(args: list[Any]) -> dict[str, str]:
    """General Bots' forms of TRANSFER TO HUMAN: ``"name"``; ``"department", "priority"``;
    ``"department", "priority", "reason"``; ``transfer_to_human_ex(#{name, department,
    priority, reason, context})``."""
    if len(args) == 1 and isinstance(args[0], dict):
        fields = {str(k).lower(): v for k, v in args[0].items()}
        return {k: to_text(fields[k]) for k in _TRANSFER_FIELDS if fields.get(k) is not None}
    if len(args) == 1:
        return {"name": to_text(args[0])}
    return dict(zip(("department", "priority", "reason"), map(to_text, args), strict=False))


def _row(values: list[Any], names: tuple[str | None, ...]) -> dict[str, Any]:
    """SAVE "t.csv", obj -> obj; SAVE "t.csv", name, email -> {"name": ..., "email": ...}."""
    if len(values) == 1 and isinstance(values[0], dict):
        return dict(values[0])
    row: dict[str, Any] = {}
    for i, value in enumerate(values):
        name = (names[i] if i < len(names) else None) or f"column{i + 1}"
        row[name] = value
    return row


_CAPABILITY = {
    "SET BOT MEMORY": "set_bot_memory",
    "SET USER MEMORY": "set_user_memory",
    "GET BOT MEMORY": "get_bot_memory",
    "GET USER MEMORY": "get_user_memory",
    "USE KB": "use_kb",
    "CLEAR KB": "clear_kb",
    "USE TOOL": "use_tool",
    "ADD TOOL": "use_tool",
    "CLEAR TOOLS": "clear_tools",
    "CLEAR WEBSITES": "clear_websites",
    "SEND MAIL": "send_mail",
    "SEND TEMPLATE": "send_template",
    "SEND TEMPLATE TO": "send_template_to",
    "BULK SEND": "send_template_to",
    "TALK TO": "talk_to",
    "SEND FILE TO": "send_file_to",
    "TRANSFER TO HUMAN": "transfer_to_human",
    "LLM": "llm",
    "SET CONTEXT": "set_context",
    "SYSTEM PROMPT": "set_system_prompt",
    "ADD BOT": "add_bot",
    "REMOVE BOT": "remove_bot",
    "LIST BOTS": "list_bots",
    "SET USER": "set_user",
    "CREATE DRAFT": "create_draft",
    "WRITE": "write_file",
    "SET TABLE": "set_rows",
    "FILTER": "filter_rows",
    "AGGREGATE": "aggregate",
    "PLAY": "play",
    "STOP": "stop_player",
}
