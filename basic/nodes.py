"""The syntax tree of a BASIC program: produced by parser.py, checked by analysis.py.

Expressions and statements are frozen dataclasses.  Every statement knows its source line and
column so that analysis and runtime errors can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr:
    """Base of all expressions."""


@dataclass(frozen=True)
class Const(Expr):
    value: Any


@dataclass(frozen=True)
class Interpolated(Expr):
    """A string literal with ``${expr}`` parts."""

    parts: tuple[str | Expr, ...]


@dataclass(frozen=True)
class Var(Expr):
    name: str  # lowercased


@dataclass(frozen=True)
class Attr(Expr):
    obj: Expr
    name: str  # as written; lookup is case-insensitive


@dataclass(frozen=True)
class Index(Expr):
    obj: Expr
    index: Expr


@dataclass(frozen=True)
class Call(Expr):
    """``name(args)``: a built-in function, a user FUNCTION, or indexing a list variable."""

    name: str  # lowercased
    args: tuple[Expr, ...]
    line: int
    column: int


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-", "not"
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # + - * / \\ mod ^ & = <> < > <= >= and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class ListLiteral(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class MapLiteral(Expr):
    """``#{ key: value, ... }``: keys keep the case they are written in."""

    items: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True)
class Method(Expr):
    """``obj.NAME(args)``: the built-in NAME with ``obj`` as its first argument (Rhai style)."""

    obj: Expr
    name: str  # lowercased
    args: tuple[Expr, ...]
    line: int
    column: int


@dataclass(frozen=True)
class HostValue(Expr):
    """A keyword that asks the host for a value: ``GET "url"``, ``LLM "prompt"``, ``FIND t, f``."""

    keyword: str  # canonical, e.g. "GET BOT MEMORY"
    args: tuple[Expr, ...]
    line: int
    column: int


# ---------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Stmt:
    line: int
    column: int


@dataclass(frozen=True)
class Talk(Stmt):
    value: Expr


@dataclass(frozen=True)
class TalkBlock(Stmt):
    """``BEGIN TALK ... END TALK`` (``system`` for ``BEGIN SYSTEM PROMPT``)."""

    text: Expr
    system: bool = False


@dataclass(frozen=True)
class Hear(Stmt):
    var: str
    kind: str = "STRING"  # upper-cased type name, or "MENU"
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assign(Stmt):
    """``name = value``, ``obj.a.b = value``, ``list[i].field = value``; ``op`` for ``x += v``.

    ``path`` holds a field name (str) or an index expression for each step after the name.
    """

    name: str  # lowercased variable; "" for a WITH field (`.field = v`)
    path: tuple[str | Expr, ...]
    value: Expr
    written: str = ""  # the name as written (a WITH field keeps its case: remindAt)
    op: str = ""  # "", or the operator of a compound assignment: + - * / &


@dataclass(frozen=True)
class ExprStmt(Stmt):
    """An expression run for its effect: ``list.PUSH(item)``."""

    value: Expr


@dataclass(frozen=True)
class Column:
    """One column of a ``TABLE`` block: its name, type (upper case, size dropped) and the rest
    of its line (``PRIMARY KEY``, ``NOT NULL``, ``DEFAULT …``), kept as written."""

    name: str
    type: str
    options: str = ""


@dataclass(frozen=True)
class TableSchema(Stmt):
    """``TABLE name … END TABLE``: a table of the bot, declared when the file loads."""

    name: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Webhook(Stmt):
    """``WEBHOOK "name"``: the file also runs on an HTTP call of that endpoint."""

    name: str


@dataclass(frozen=True)
class SetSchedule(Stmt):
    """``SET SCHEDULE "cron"``: the file is a job of the bot, run on that schedule."""

    expression: Expr | None


@dataclass(frozen=True)
class If(Stmt):
    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]
    orelse: tuple[Stmt, ...]


@dataclass(frozen=True)
class CaseItem:
    kind: str  # "value", "range", "is"
    value: Expr
    upper: Expr | None = None
    op: str = "="


@dataclass(frozen=True)
class Select(Stmt):
    subject: Expr
    cases: tuple[tuple[tuple[CaseItem, ...], tuple[Stmt, ...]], ...]
    orelse: tuple[Stmt, ...]


@dataclass(frozen=True)
class ForEach(Stmt):
    var: str
    iterable: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class ForTo(Stmt):
    var: str
    start: Expr
    stop: Expr
    step: Expr | None
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Loop(Stmt):
    """DO [WHILE|UNTIL c] ... LOOP [WHILE|UNTIL c] and WHILE c ... WEND."""

    kind: str  # "do" or "while"
    pre: Expr | None
    pre_until: bool
    post: Expr | None
    post_until: bool
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Exit(Stmt):
    what: str  # "FOR", "DO", "WHILE", "SUB", "FUNCTION"


@dataclass(frozen=True)
class With(Stmt):
    var: str
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class CallDialog(Stmt):
    name: str  # lowercased, without .bas


@dataclass(frozen=True)
class CallProc(Stmt):
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Return(Stmt):
    value: Expr | None


@dataclass(frozen=True)
class End(Stmt):
    """Bare END: ends the dialog."""


@dataclass(frozen=True)
class OnError(Stmt):
    resume_next: bool


@dataclass(frozen=True)
class Throw(Stmt):
    value: Expr


@dataclass(frozen=True)
class AddSuggestion(Stmt):
    key: Expr
    label: Expr | None


@dataclass(frozen=True)
class ClearSuggestions(Stmt):
    pass


@dataclass(frozen=True)
class SetContext(Stmt):
    name: Expr | None
    text: Expr


@dataclass(frozen=True)
class KeywordStmt(Stmt):
    """A statement keyword that calls the host: ``SET BOT MEMORY k, v``, ``SAVE t, row`` ..."""

    keyword: str  # canonical: upper case, single spaces, "SEND EMAIL" -> "SEND MAIL"
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class HostStmt(Stmt):
    """A value keyword used as a statement; the value is discarded (``POST url, data``)."""

    call: HostValue


@dataclass(frozen=True)
class Param(Stmt):
    name: str  # lowercased
    type: str  # upper-cased
    like: Expr | None = None
    enum: Expr | None = None
    description: Expr | None = None
    optional: bool = False
    default: Expr | None = None


@dataclass(frozen=True)
class Description(Stmt):
    text: Expr


@dataclass(frozen=True)
class Procedure(Stmt):
    kind: str  # "SUB" or "FUNCTION"
    name: str  # lowercased
    params: tuple[str, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Module:
    """A parsed .bas file: the main body plus its SUBs and FUNCTIONs."""

    filename: str
    body: tuple[Stmt, ...]
    procedures: tuple[Procedure, ...] = field(default=())
    tables: tuple[TableSchema, ...] = field(default=())
    warnings: tuple[Any, ...] = field(default=())  # basic.errors.BasicWarning of the parser
