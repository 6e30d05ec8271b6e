"""Checks a parsed module before it runs and summarizes what the compiler and tools need.

Finds what the grammar cannot: undefined SUBs, wrong argument counts, unknown HEAR types, EXIT
outside its block, duplicate procedures.  Produces an Analysis dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from basic import nodes as n
from basic.errors import BasicSyntaxError, BasicWarning
from basic.functions import BUILTINS
from basic.hear import known_kind
from basic.keywords import STATEMENTS, VALUES
from basic.schedule import ScheduleError, normalize_schedule


@dataclass(frozen=True)
class ProcedureInfo:
    kind: str  # SUB or FUNCTION
    name: str
    params: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """A tool (``USE TOOL "x"``) or dialog (``CALL "x.bas"``) a module names, where it does."""

    kind: str  # "tool" or "dialog"
    name: str  # lowercased, without .bas
    line: int
    column: int


@dataclass(frozen=True)
class Analysis:
    """What a module declares: its procedures, tool parameters and description, dialogs it calls,
    the schedule it runs on (``SET SCHEDULE``, normalized to cron with seconds first)."""

    procedures: dict[str, ProcedureInfo]
    params: tuple[n.Param, ...]
    description: n.Description | None
    dialogs_called: frozenset[str]
    errors: list[BasicSyntaxError] = field(default_factory=list)
    references: tuple[Reference, ...] = ()
    schedules: tuple[str, ...] = ()
    warnings: list[BasicWarning] = field(default_factory=list)
    webhooks: tuple[str, ...] = ()
    tables: tuple[n.TableSchema, ...] = ()
    # USE WEBSITE lines with a quoted URL: (url, refresh or ""), registered as the file loads
    websites: tuple[tuple[str, str], ...] = ()


class _Checker:
    def __init__(self, module: n.Module) -> None:
        self.module = module
        self.errors: list[BasicSyntaxError] = []
        self.procedures: dict[str, ProcedureInfo] = {}
        self.params: list[n.Param] = []
        self.description: n.Description | None = None
        self.dialogs: set[str] = set()
        self.references: list[Reference] = []
        self.schedules: list[str] = []
        self.webhooks: list[str] = []
        self.websites: list[tuple[str, str]] = []
        self.warnings: list[BasicWarning] = list(module.warnings)
        self.variables: set[str] = set()

    def error(self, line: int, column: int, message: str) -> None:
        self.errors.append(BasicSyntaxError(self.module.filename, line, column, message))

    def warn(self, line: int, column: int, message: str) -> None:
        self.warnings.append(BasicWarning(self.module.filename, line, column, message))

    def collect_variables(self, stmts: tuple[n.Stmt, ...]) -> None:
        """Names the file assigns: ``name(i)`` on one of them indexes a list (VB style)."""
        for s in stmts:
            if isinstance(s, n.Assign | n.Hear | n.ForEach | n.ForTo | n.With | n.Param):
                self.variables.add(str(getattr(s, "var", None) or getattr(s, "name", "")))
            for attr in ("body", "orelse"):
                inner = getattr(s, attr, None)
                if isinstance(inner, tuple):
                    self.collect_variables(inner)
            if isinstance(s, n.If):
                for _, body in s.branches:
                    self.collect_variables(body)
            elif isinstance(s, n.Select):
                for _, body in s.cases:
                    self.collect_variables(body)

    def run(self) -> Analysis:
        for proc in self.module.procedures:
            if proc.name in self.procedures:
                self.error(proc.line, proc.column, f"{proc.kind} {proc.name!r} is already defined")
            elif proc.name in BUILTINS:
                self.error(
                    proc.line,
                    proc.column,
                    f"{proc.kind} {proc.name!r} has the name of a built-in function",
                )
            self.procedures[proc.name] = ProcedureInfo(proc.kind, proc.name, proc.params)
            self.variables.update(proc.params)
            self.collect_variables(proc.body)
        self.collect_variables(self.module.body)
        self.block(self.module.body, (), top=True)
        for proc in self.module.procedures:
            self.block(proc.body, (proc.kind,), top=False)
        self.errors.sort(key=lambda e: (e.line, e.column))
        return Analysis(
            dict(self.procedures),
            tuple(self.params),
            self.description,
            frozenset(self.dialogs),
            self.errors,
            tuple(self.references),
            tuple(self.schedules),
            self.warnings,
            tuple(self.webhooks),
            self.module.tables,
            tuple(self.websites),
        )

    # -- statements
    def block(self, stmts: tuple[n.Stmt, ...], enclosing: tuple[str, ...], *, top: bool) -> None:
        for stmt in stmts:
            self.stmt(stmt, enclosing, top=top)

    def stmt(self, s: n.Stmt, enclosing: tuple[str, ...], *, top: bool) -> None:
        if isinstance(s, n.Talk | n.Throw):
            self.expr(s.value, s)
        elif isinstance(s, n.TalkBlock):
            self.expr(s.text, s)
        elif isinstance(s, n.Hear):
            if s.kind != "MENU" and not known_kind(s.kind):
                self.error(s.line, s.column, f"unknown HEAR type {s.kind}")
        elif isinstance(s, n.Assign):
            self.expr(s.value, s)
            for step in s.path:
                if isinstance(step, n.Expr):
                    self.expr(step, s)
            if s.name == "" and "WITH" not in enclosing:
                self.error(s.line, s.column, ".field assignment outside WITH")
        elif isinstance(s, n.If):
            for cond, body in s.branches:
                self.expr(cond, s)
                self.block(body, enclosing, top=False)
            self.block(s.orelse, enclosing, top=False)
        elif isinstance(s, n.Select):
            self.expr(s.subject, s)
            for items, body in s.cases:
                for item in items:
                    self.expr(item.value, s)
                    if item.upper is not None:
                        self.expr(item.upper, s)
                self.block(body, enclosing, top=False)
            self.block(s.orelse, enclosing, top=False)
        elif isinstance(s, n.ForEach):
            self.expr(s.iterable, s)
            self.block(s.body, (*enclosing, "FOR"), top=False)
        elif isinstance(s, n.ForTo):
            for e in (s.start, s.stop, s.step):
                if e is not None:
                    self.expr(e, s)
            self.block(s.body, (*enclosing, "FOR"), top=False)
        elif isinstance(s, n.Loop):
            for e in (s.pre, s.post):
                if e is not None:
                    self.expr(e, s)
            self.block(s.body, (*enclosing, "DO" if s.kind == "do" else "WHILE"), top=False)
        elif isinstance(s, n.With):
            self.block(s.body, (*enclosing, "WITH"), top=False)
        elif isinstance(s, n.ExprStmt):
            self.expr(s.value, s)
        elif isinstance(s, n.SetSchedule):
            self.set_schedule(s, top=top)
        elif isinstance(s, n.Webhook):
            self.webhooks.append(s.name)
            self.warn(
                s.line,
                s.column,
                f"WEBHOOK {s.name!r}: this gateway does not serve dialog webhooks yet",
            )
        elif isinstance(s, n.Exit):
            if s.what and s.what not in enclosing:
                self.error(s.line, s.column, f"EXIT {s.what} outside {s.what}")
        elif isinstance(s, n.CallDialog):
            self.dialogs.add(s.name)
            self.references.append(Reference("dialog", s.name, s.line, s.column))
        elif isinstance(s, n.CallProc):
            for a in s.args:
                self.expr(a, s)
            self.call(s.name, len(s.args), s.line, s.column, statement=True)
        elif isinstance(s, n.Return):
            if s.value is not None:
                self.expr(s.value, s)
        elif isinstance(s, n.AddSuggestion):
            self.expr(s.key, s)
            if s.label is not None:
                self.expr(s.label, s)
        elif isinstance(s, n.SetContext):
            self.expr(s.text, s)
            if s.name is not None:
                self.expr(s.name, s)
        elif isinstance(s, n.KeywordStmt):
            spec = STATEMENTS[s.keyword]
            self.arity(s.keyword, spec.min_args, spec.max_args, len(s.args), s)
            for a in s.args:
                self.expr(a, s)
            if s.keyword in ("USE TOOL", "ADD TOOL") and s.args:
                name = s.args[0]
                if isinstance(name, n.Const) and isinstance(name.value, str):
                    tool = name.value.strip().lower().removesuffix(".bas")
                    self.references.append(Reference("tool", tool, s.line, s.column))
            if s.keyword == "USE WEBSITE" and s.args:
                self.use_website(s.args)
        elif isinstance(s, n.HostStmt):
            self.expr(s.call, s)
        elif isinstance(s, n.Param):
            if not top:
                self.error(s.line, s.column, "PARAM must be at the top level of the file")
            self.params.append(s)
        elif isinstance(s, n.Description):
            if not top:
                self.error(s.line, s.column, "DESCRIPTION must be at the top level of the file")
            self.description = s

    def use_website(self, args: tuple[n.Expr, ...]) -> None:
        """General Bots' preprocessor registers each ``USE WEBSITE "url" [REFRESH "every"]``
        of a file for crawling as the file loads, wherever the line is."""
        url, refresh = args[0], args[1] if len(args) > 1 else None
        if not isinstance(url, n.Const) or not isinstance(url.value, str):
            return  # a computed URL is registered when the line runs
        every = ""
        if isinstance(refresh, n.Const) and isinstance(refresh.value, str):
            every = refresh.value
        elif refresh is not None:
            return
        if (url.value, every) not in self.websites:
            self.websites.append((url.value, every))

    def set_schedule(self, s: n.SetSchedule, *, top: bool) -> None:
        """A declaration, as in General Bots, whose preprocessor registers every SET SCHEDULE
        line of a file when it loads, whatever block the line is in."""
        if not isinstance(s.expression, n.Const) or not isinstance(s.expression.value, str):
            # General Bots reads only a quoted expression and ignores the line otherwise
            self.warn(
                s.line,
                s.column,
                "SET SCHEDULE without a quoted expression is ignored: "
                'write SET SCHEDULE "0 9 * * *"',
            )
            return
        try:
            self.schedules.append(normalize_schedule(s.expression.value))
        except ScheduleError as e:
            self.error(s.line, s.column, f"SET SCHEDULE: {e}")
            return
        if not top:
            self.warn(
                s.line,
                s.column,
                "SET SCHEDULE declares the file's schedule when it loads, whatever block it is in",
            )

    def arity(self, what: str, low: int, high: int, got: int, at: Any) -> None:
        if low <= got <= high:
            return
        want = str(low) if low == high else f"{low} to {high}"
        self.error(
            at.line, at.column, f"{what} takes {want} argument{'s' if high != 1 else ''}, got {got}"
        )

    def call(self, name: str, count: int, line: int, column: int, *, statement: bool) -> None:
        proc = self.procedures.get(name)
        if proc is not None:
            if len(proc.params) != count:
                plural = "s" if len(proc.params) != 1 else ""
                self.error(
                    line,
                    column,
                    f"{proc.kind} {name} takes {len(proc.params)} argument{plural}, got {count}",
                )
            return
        builtin = BUILTINS.get(name)
        if builtin is not None:
            self.arity(
                builtin.name, builtin.min_args, builtin.max_args, count, n.Stmt(line, column)
            )
            return
        if statement:
            self.error(line, column, f"undefined SUB {name!r}")
        elif count != 1 or name not in self.variables:
            self.error(line, column, f"unknown function {name.upper()}")
        # name(i) with one argument, name a variable of the file: indexing a list (VB style)

    # -- expressions
    def expr(self, e: n.Expr, at: n.Stmt) -> None:
        if isinstance(e, n.Call):
            for a in e.args:
                self.expr(a, at)
            self.call(e.name, len(e.args), e.line, e.column, statement=False)
        elif isinstance(e, n.HostValue):
            spec = VALUES[e.keyword]
            self.arity(
                e.keyword, spec.min_args, spec.max_args, len(e.args), n.Stmt(e.line, e.column)
            )
            for a in e.args:
                self.expr(a, at)
        elif isinstance(e, n.Binary):
            self.expr(e.left, at)
            self.expr(e.right, at)
        elif isinstance(e, n.Unary):
            self.expr(e.operand, at)
        elif isinstance(e, n.Attr):
            self.expr(e.obj, at)
        elif isinstance(e, n.Index):
            self.expr(e.obj, at)
            self.expr(e.index, at)
        elif isinstance(e, n.ListLiteral):
            for item in e.items:
                self.expr(item, at)
        elif isinstance(e, n.MapLiteral):
            for _, value in e.items:
                self.expr(value, at)
        elif isinstance(e, n.Method):
            self.expr(e.obj, at)
            for a in e.args:
                self.expr(a, at)
            builtin = BUILTINS.get(e.name)
            if builtin is None:
                self.error(e.line, e.column, f"unknown function {e.name.upper()}")
            else:
                self.arity(
                    builtin.name,
                    builtin.min_args - 1,
                    builtin.max_args - 1,
                    len(e.args),
                    n.Stmt(e.line, e.column),
                )
        elif isinstance(e, n.Interpolated):
            for part in e.parts:
                if isinstance(part, n.Expr):
                    self.expr(part, at)


def analyze(module: n.Module) -> Analysis:
    return _Checker(module).run()
