"""Syntax tree -> Program: one flat instruction list per unit (main body, each SUB/FUNCTION).

Expressions become Python closures over a Frame.  A user FUNCTION or a host keyword inside an
expression is hoisted into its own instruction that stores into a hidden temporary before the
statement runs, so expressions themselves never suspend or await and every point where the
dialog can stop is an instruction boundary with a program counter.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from basic import machine as m
from basic import nodes as n
from basic.analysis import Analysis, analyze
from basic.errors import BasicSyntaxError
from basic.functions import BUILTINS
from basic.parser import parse
from basic.values import add, arithmetic, compare, get_field, get_index, to_number, to_text, truthy

Eval = m.Eval

# The format of compiled instructions: part of every program's digest, so that a dialog saved
# while waiting never resumes, after an upgrade that changed it, at a wrong instruction.
INSTRUCTION_FORMAT = 2


@dataclass(frozen=True, eq=False)
class Unit:
    """A compiled body: the main program or one SUB/FUNCTION."""

    name: str  # "" for the main body
    kind: str  # MAIN, SUB or FUNCTION
    params: tuple[str, ...]
    code: tuple[m.Instr, ...]
    starts: tuple[int, ...]  # pc of each statement's first instruction (ON ERROR RESUME NEXT)

    def next_statement(self, pc: int) -> int:
        i = bisect.bisect_right(self.starts, pc)
        return self.starts[i] if i < len(self.starts) else len(self.code) - 1


@dataclass(frozen=True, eq=False)
class Program:
    """An immutable compiled .bas file; compile once, run many times."""

    name: str  # file name without .bas, lowercased
    filename: str
    digest: str  # identifies the source; a saved state only resumes the same program
    units: Mapping[str, Unit]
    analysis: Analysis = field(repr=False)

    @property
    def main(self) -> Unit:
        return self.units[""]

    @property
    def params(self) -> tuple[n.Param, ...]:
        return self.analysis.params

    @property
    def description(self) -> n.Description | None:
        return self.analysis.description

    @property
    def tables(self) -> tuple[n.TableSchema, ...]:
        """The ``TABLE … END TABLE`` definitions of the file."""
        return self.analysis.tables

    @property
    def schedules(self) -> tuple[str, ...]:
        """The crons (seconds first) of its ``SET SCHEDULE`` lines: the file is a job of the
        bot, run at each of them."""
        return self.analysis.schedules

    @property
    def websites(self) -> tuple[tuple[str, str], ...]:
        """The ``(url, refresh)`` of its ``USE WEBSITE`` lines with a quoted URL (refresh
        ``""`` when not given): the bot crawls them from the moment the file loads."""
        return self.analysis.websites


def program_name(filename: str) -> str:
    base = os.path.basename(filename.replace("\\", "/"))
    return (base[:-4] if base.lower().endswith(".bas") else base).lower()


def check_source(source: str, filename: str) -> list[BasicSyntaxError]:
    """Every syntax and analysis error found in ``source`` (empty when it is fine)."""
    module, errors = parse(source, filename)
    analysis = analyze(module)
    seen = {(e.line, e.column) for e in errors}
    errors = errors + [e for e in analysis.errors if (e.line, e.column) not in seen]
    errors.sort(key=lambda e: (e.line, e.column))
    return errors


def compile_source(source: str, filename: str) -> Program:
    """Parse, analyze and compile; raises the first BasicSyntaxError."""
    module, errors = parse(source, filename)
    if errors:
        raise errors[0]
    analysis = analyze(module)
    if analysis.errors:
        raise analysis.errors[0]
    units: dict[str, Unit] = {"": _UnitCompiler(module, analysis, None).compile()}
    for proc in module.procedures:
        units[proc.name] = _UnitCompiler(module, analysis, proc).compile()
    identity = f"{INSTRUCTION_FORMAT}\n{source}"
    digest = hashlib.sha1(identity.encode(), usedforsecurity=False).hexdigest()[:16]
    return Program(program_name(filename), filename, digest, units, analysis)


@dataclass
class _LoopContext:
    kind: str  # FOR, DO, WHILE
    exits: list[m.Jump]
    slot: str | None


class _UnitCompiler:
    def __init__(self, module: n.Module, analysis: Analysis, proc: n.Procedure | None) -> None:
        self.module = module
        self.analysis = analysis
        self.proc = proc
        self.code: list[m.Instr] = []
        self.starts: list[int] = []
        self.loops: list[_LoopContext] = []
        self.with_var: str | None = None
        self.temps = 0
        self.line = proc.line if proc else 1

    def compile(self) -> Unit:
        proc = self.proc
        body = proc.body if proc else self.module.body
        self.block(body)
        end_line = self.code[-1].line if self.code else self.line
        self.starts.append(len(self.code))
        self.code.append(self.default_return(end_line))
        if proc is None:
            return Unit("", "MAIN", (), tuple(self.code), tuple(self.starts))
        return Unit(proc.name, proc.kind, proc.params, tuple(self.code), tuple(self.starts))

    def default_return(self, line: int) -> m.Return:
        if self.proc is not None and self.proc.kind == "FUNCTION":
            return m.Return(line, None, self.proc.name)
        return m.Return(line, None)

    def temp(self, prefix: str = "t") -> str:
        self.temps += 1
        unit = self.proc.name if self.proc else ""
        return f"${prefix}{self.temps}{'.' + unit if unit else ''}"

    def emit(self, ins: m.Instr) -> m.Instr:
        self.code.append(ins)
        return ins

    @property
    def pc(self) -> int:
        return len(self.code)

    # -- statements
    def block(self, stmts: tuple[n.Stmt, ...]) -> None:
        for stmt in stmts:
            self.line = stmt.line
            self.starts.append(self.pc)
            self.stmt(stmt)

    def stmt(self, s: n.Stmt) -> None:
        line = s.line
        if isinstance(s, n.Talk):
            self.emit(m.Talk(line, self.value(s.value)))
        elif isinstance(s, n.TalkBlock):
            if s.system:
                self.emit(m.HostCall(line, "SYSTEM PROMPT", (self.expr(s.text),), None))
            else:
                self.emit(m.Talk(line, self.expr(s.text)))
        elif isinstance(s, n.Hear):
            self.emit(m.Hear(line, s.var, s.kind, s.options))
        elif isinstance(s, n.Assign):
            self.assign(s)
        elif isinstance(s, n.If):
            self.if_(s)
        elif isinstance(s, n.Select):
            self.select(s)
        elif isinstance(s, n.ForTo):
            self.for_to(s)
        elif isinstance(s, n.ForEach):
            self.for_each(s)
        elif isinstance(s, n.Loop):
            self.loop(s)
        elif isinstance(s, n.With):
            self.emit(m.WithStart(line, s.var))
            outer, self.with_var = self.with_var, s.var
            self.block(s.body)
            self.with_var = outer
        elif isinstance(s, n.Exit):
            self.exit(s)
        elif isinstance(s, n.CallDialog):
            self.emit(m.CallDialog(line, s.name))
        elif isinstance(s, n.CallProc):
            self.call_stmt(s)
        elif isinstance(s, n.Return):
            if s.value is None:
                self.emit(self.default_return(line))
            else:
                self.emit(m.Return(line, self.value(s.value)))
        elif isinstance(s, n.End):
            self.emit(m.EndProgram(line))
        elif isinstance(s, n.OnError):
            self.emit(m.OnError(line, s.resume_next))
        elif isinstance(s, n.Throw):
            self.emit(m.Throw(line, self.expr(s.value)))
        elif isinstance(s, n.AddSuggestion):
            key = self.expr(s.key)
            label = self.expr(s.label) if s.label is not None else None
            self.emit(m.Suggestion(line, key, label))
        elif isinstance(s, n.ClearSuggestions):
            self.emit(m.Suggestion(line, None, None))
        elif isinstance(s, n.SetContext):
            name = self.expr(s.name) if s.name is not None else _const("")
            self.emit(m.HostCall(line, "SET CONTEXT", (name, self.expr(s.text)), None))
        elif isinstance(s, n.KeywordStmt):
            args = tuple(self.expr(a) for a in s.args)
            names = tuple(a.name if isinstance(a, n.Var) else None for a in s.args)
            self.emit(m.HostCall(line, s.keyword, args, None, names))
        elif isinstance(s, n.HostStmt):
            self.host_value(s.call, None)
        elif isinstance(s, n.ExprStmt):
            self.emit(m.Evaluate(line, self.temp(), self.expr(s.value)))
        elif isinstance(s, n.Param | n.Description | n.SetSchedule | n.Webhook):
            pass  # declarations for tools.py and the bot's jobs; arguments arrive as variables
        else:  # pragma: no cover - the parser produces no other statements
            raise AssertionError(f"cannot compile {type(s).__name__}")

    def assign(self, s: n.Assign) -> None:
        line = s.line
        name, path = s.name, s.path
        if self.with_var is not None and all(isinstance(p, str) for p in path):
            # inside WITH obj, `field = v` and `.field = v` set obj.field
            name, path = self.with_var, (path if s.name == "" else (s.written, *path))
        if not path and not s.op and isinstance(s.value, n.HostValue):
            self.host_value(s.value, name)  # the host's answer goes straight to the variable
            return
        value = self.value(s.value)
        if s.op:
            value = _compound(s.op, self.expr(_target_expr(name, path)), value)
        if path:
            steps = tuple(p if isinstance(p, str) else self.expr(p) for p in path)
            self.emit(m.AssignPath(line, name, steps, value))
        else:
            self.emit(m.Evaluate(line, name, value))

    def if_(self, s: n.If) -> None:
        ends: list[m.Jump] = []
        for i, (cond, body) in enumerate(s.branches):
            if i > 0:
                self.starts.append(self.pc)  # an ELSEIF condition is a statement of its own
            skip = m.JumpIf(s.line, self.expr(cond), False)
            self.emit(skip)
            self.block(body)
            if i < len(s.branches) - 1 or s.orelse:
                ends.append(self.emit(m.Jump(s.line)))  # type: ignore[arg-type]
            skip.target = self.pc
        self.block(s.orelse)
        for jump in ends:
            jump.target = self.pc

    def select(self, s: n.Select) -> None:
        subject = self.temp("case")
        self.emit(m.Evaluate(s.line, subject, self.expr(s.subject)))
        ends: list[m.Jump] = []
        for items, body in s.cases:
            matchers = [self.case_item(subject, item) for item in items]
            skip = m.JumpIf(s.line, _any(matchers), False)
            self.emit(skip)
            self.block(body)
            ends.append(self.emit(m.Jump(s.line)))  # type: ignore[arg-type]
            skip.target = self.pc
        self.block(s.orelse)
        for jump in ends:
            jump.target = self.pc

    def case_item(self, subject: str, item: n.CaseItem) -> Eval:
        value = self.expr(item.value)
        if item.kind == "range":
            assert item.upper is not None
            upper = self.expr(item.upper)
            return lambda f: (
                compare(">=", f.load(subject), value(f))
                and compare("<=", f.load(subject), upper(f))
            )
        op = item.op if item.kind == "is" else "="
        return lambda f: compare(op, f.load(subject), value(f))

    def for_to(self, s: n.ForTo) -> None:
        slot = self.temp("for")
        start, stop = self.expr(s.start), self.expr(s.stop)
        step = self.expr(s.step) if s.step is not None else None
        self.emit(m.ForInit(s.line, s.var, slot, start, stop, step))
        top = self.pc
        test = m.ForTest(s.line, s.var, slot)
        self.emit(test)
        context = _LoopContext("FOR", [], slot)
        self.loops.append(context)
        self.block(s.body)
        self.loops.pop()
        self.emit(m.ForStep(s.line, s.var, slot, top))
        test.target = self.pc
        for jump in context.exits:
            jump.target = self.pc

    def for_each(self, s: n.ForEach) -> None:
        slot = self.temp("each")
        self.emit(m.ForEachInit(s.line, slot, self.expr(s.iterable)))
        top = self.pc
        step = m.ForEachNext(s.line, s.var, slot)
        self.emit(step)
        context = _LoopContext("FOR", [], slot)
        self.loops.append(context)
        self.block(s.body)
        self.loops.pop()
        self.emit(m.LoopJump(s.line, top))
        step.target = self.pc
        for jump in context.exits:
            jump.target = self.pc

    def loop(self, s: n.Loop) -> None:
        top = self.pc
        skip: m.JumpIf | None = None
        if s.pre is not None:
            skip = m.JumpIf(s.line, self.expr(s.pre), s.pre_until)
            self.emit(skip)
        context = _LoopContext("DO" if s.kind == "do" else "WHILE", [], None)
        self.loops.append(context)
        self.block(s.body)
        self.loops.pop()
        if s.post is not None:
            self.starts.append(self.pc)
            self.emit(m.JumpIf(s.line, self.expr(s.post), not s.post_until, top, loop=True))
        else:
            self.emit(m.LoopJump(s.line, top))
        if skip is not None:
            skip.target = self.pc
        for jump in context.exits:
            jump.target = self.pc

    def exit(self, s: n.Exit) -> None:
        if s.what == "" and self.proc is None:
            self.emit(m.EndProgram(s.line))  # bare EXIT ends the dialog
            return
        if s.what in ("SUB", "FUNCTION", ""):
            self.emit(self.default_return(s.line))
            return
        for context in reversed(self.loops):
            if context.kind == s.what:
                if context.slot is not None:
                    self.emit(m.Discard(s.line, context.slot))
                context.exits.append(self.emit(m.Jump(s.line)))  # type: ignore[arg-type]
                return
        raise AssertionError("EXIT outside its loop passed analysis")  # pragma: no cover

    def call_stmt(self, s: n.CallProc) -> None:
        args = tuple(self.expr(a) for a in s.args)
        if s.name in self.analysis.procedures:
            self.emit(m.CallProc(s.line, s.name, args, None))
        else:  # a built-in called as a statement: evaluate and discard
            fn = BUILTINS[s.name].fn
            self.emit(m.Evaluate(s.line, self.temp(), lambda f: fn(*[a(f) for a in args])))

    def host_value(self, call: n.HostValue, target: str | None) -> None:
        args = tuple(self.expr(a) for a in call.args)
        self.emit(m.HostCall(call.line, call.keyword, args, target))

    # -- expressions
    def value(self, e: n.Expr) -> Eval:
        return self.expr(e)

    def expr(self, e: n.Expr) -> Eval:
        if isinstance(e, n.Const):
            return _const(e.value)
        if isinstance(e, n.Var):
            name = e.name
            return lambda f: f.load(name)
        if isinstance(e, n.Interpolated):
            return self.interpolated(e)
        if isinstance(e, n.Binary):
            return self.binary(e)
        if isinstance(e, n.Unary):
            operand = self.expr(e.operand)
            if e.op == "not":
                return lambda f: not truthy(operand(f))
            return lambda f: -to_number(operand(f))
        if isinstance(e, n.Attr):
            obj, attr = self.expr(e.obj), e.name
            return lambda f: get_field(obj(f), attr)
        if isinstance(e, n.Index):
            obj, index = self.expr(e.obj), self.expr(e.index)
            return lambda f: get_index(obj(f), index(f))
        if isinstance(e, n.ListLiteral):
            items = tuple(self.expr(i) for i in e.items)
            return lambda f: [i(f) for i in items]
        if isinstance(e, n.MapLiteral):
            entries = tuple((k, self.expr(v)) for k, v in e.items)
            return lambda f: {k: v(f) for k, v in entries}
        if isinstance(e, n.Method):
            fn = BUILTINS[e.name].fn
            obj, margs = self.expr(e.obj), tuple(self.expr(a) for a in e.args)
            return lambda f: fn(obj(f), *[a(f) for a in margs])
        if isinstance(e, n.Call):
            return self.call(e)
        if isinstance(e, n.HostValue):
            temp = self.temp()
            self.host_value(e, temp)
            return lambda f: f.vars.get(temp)
        raise AssertionError(f"cannot compile {type(e).__name__}")  # pragma: no cover

    def interpolated(self, e: n.Interpolated) -> Eval:
        parts: list[str | Eval] = [p if isinstance(p, str) else self.expr(p) for p in e.parts]

        def interpolate(f: m.Frame) -> str:
            return "".join(p if isinstance(p, str) else to_text(p(f)) for p in parts)

        return interpolate

    def binary(self, e: n.Binary) -> Eval:
        left, right, op = self.expr(e.left), self.expr(e.right), e.op
        if op == "+":
            return lambda f: add(left(f), right(f))
        if op == "&":
            return lambda f: to_text(left(f)) + to_text(right(f))
        if op == "and":
            return lambda f: truthy(left(f)) and truthy(right(f))
        if op == "or":
            return lambda f: truthy(left(f)) or truthy(right(f))
        if op == "??":
            return lambda f: _or_else(left(f), right, f)
        if op in ("=", "<>", "<", ">", "<=", ">="):
            return lambda f: compare(op, left(f), right(f))
        return lambda f: arithmetic(op, left(f), right(f))

    def call(self, e: n.Call) -> Eval:
        args = tuple(self.expr(a) for a in e.args)
        if e.name in self.analysis.procedures:
            temp = self.temp()
            self.emit(m.CallProc(e.line, e.name, args, temp))
            return lambda f: f.vars.get(temp)
        builtin = BUILTINS.get(e.name)
        if builtin is not None:
            fn = builtin.fn
            if not args:
                return lambda f: fn()
            if len(args) == 1:
                a0 = args[0]
                return lambda f: fn(a0(f))
            return lambda f: fn(*[a(f) for a in args])
        # name(i): an element of a list variable
        name, index = e.name, args[0]
        return lambda f: get_index(f.load(name), index(f))


def _or_else(value: Any, other: Eval, f: m.Frame) -> Any:
    return other(f) if value is None else value


def _target_expr(name: str, path: tuple[str | n.Expr, ...]) -> n.Expr:
    """The current value of an assignment's target, for ``x += v``."""
    expr: n.Expr = n.Var(name)
    for step in path:
        expr = n.Attr(expr, step) if isinstance(step, str) else n.Index(expr, step)
    return expr


def _compound(op: str, current: Eval, value: Eval) -> Eval:
    if op == "+":
        return lambda f: add(current(f), value(f))
    if op == "&":
        return lambda f: to_text(current(f)) + to_text(value(f))
    return lambda f: arithmetic(op, current(f), value(f))


def _const(value: Any) -> Eval:
    return lambda f: value


def _any(matchers: list[Eval]) -> Eval:
    if len(matchers) == 1:
        return matchers[0]
    return lambda f: any(match(f) for match in matchers)
