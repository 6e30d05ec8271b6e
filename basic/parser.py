"""Source text -> syntax tree (nodes.Module), with ``file:line:col`` errors.

Each logical line is parsed on its own with the lark grammar (loaded once, cached), so one bad
line yields one error and the rest of the file is still checked.  Block statements (IF, FOR,
SUB, ...) come out of the grammar as open/close markers and are nested here, which is also where
"END IF without IF" style errors are found.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from basic import nodes as n
from basic.errors import BasicSyntaxError, BasicWarning


@functools.cache
def _lark() -> Lark:
    return Lark.open_from_package(
        "basic", "grammar.lark", parser="lalr", start=["line", "expr"], maybe_placeholders=True
    )


def canonical_keyword(text: str) -> str:
    """``set_bot_memory`` / ``Set  Bot Memory`` -> ``SET BOT MEMORY``."""
    word = re.sub(r"[\s_]+", " ", text.strip().upper())
    return "SEND MAIL" if word == "SEND EMAIL" else word


# ---------------------------------------------------------------------------- block markers


@dataclass(frozen=True)
class _Open(n.Stmt):
    kind: str  # IF, SELECT, FOR, FOREACH, DO, WHILE, SUB, FUNCTION, WITH
    data: tuple[Any, ...]


@dataclass(frozen=True)
class _Middle(n.Stmt):
    kind: str  # ELSEIF, ELSE, CASE, CASEELSE
    data: tuple[Any, ...]


@dataclass(frozen=True)
class _Close(n.Stmt):
    kind: str  # END IF, END SELECT, NEXT, LOOP, WEND, END SUB, END FUNCTION, END WITH
    data: tuple[Any, ...]


_CLOSES = {
    "END IF": ("IF",),
    "END SELECT": ("SELECT",),
    "NEXT": ("FOR", "FOREACH"),
    "LOOP": ("DO",),
    "WEND": ("WHILE",),
    "END SUB": ("SUB",),
    "END FUNCTION": ("FUNCTION",),
    "END WITH": ("WITH",),
}
_OPEN_NAMES = {
    "IF": "IF",
    "SELECT": "SELECT CASE",
    "FOR": "FOR",
    "FOREACH": "FOR EACH",
    "DO": "DO",
    "WHILE": "WHILE",
    "SUB": "SUB",
    "FUNCTION": "FUNCTION",
    "WITH": "WITH",
}
_CLOSER_OF = {
    "IF": "END IF",
    "SELECT": "END SELECT",
    "FOR": "NEXT",
    "FOREACH": "NEXT",
    "DO": "LOOP",
    "WHILE": "WEND",
    "SUB": "END SUB",
    "FUNCTION": "END FUNCTION",
    "WITH": "END WITH",
}

_COMP = {"==": "=", "!=": "<>"}


class _SyntaxProblem(Exception):
    def __init__(self, column: int, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _items(children: list[Any]) -> list[Any]:
    """Children without keyword tokens and missing optionals."""
    return [c for c in children if c is not None and not isinstance(c, Token)]


class _ToNodes(Transformer[Token, Any]):
    """One line's parse tree -> a statement node (or a block marker)."""

    def __init__(self, line: int, column: int, string_parser: Callable[[Token], n.Expr]) -> None:
        super().__init__()
        self.ln = line
        self.col = column
        self.string_parser = string_parser

    # -- expressions
    def number(self, c: list[Token]) -> n.Const:
        text = str(c[0])
        if re.fullmatch(r"\d+", text):
            return n.Const(int(text))
        return n.Const(float(text))

    def string(self, c: list[Token]) -> n.Expr:
        return self.string_parser(c[0])

    def var(self, c: list[Token]) -> n.Var:
        return n.Var(str(c[0]).lower())

    def true(self, c: list[Any]) -> n.Const:
        return n.Const(True)

    def false(self, c: list[Any]) -> n.Const:
        return n.Const(False)

    def null(self, c: list[Any]) -> n.Const:
        return n.Const(None)

    def list_lit(self, c: list[Any]) -> n.ListLiteral:
        return n.ListLiteral(c[0] if c and c[0] is not None else ())

    def map_lit(self, c: list[Any]) -> n.MapLiteral:
        return n.MapLiteral(c[0] if c and c[0] is not None else ())

    def map_items(self, c: list[tuple[str, n.Expr]]) -> tuple[tuple[str, n.Expr], ...]:
        return tuple(c)

    def map_item(self, c: list[Any]) -> tuple[str, n.Expr]:
        key = str(c[0])
        return (_unquote(key) if key.startswith('"') else key), c[1]

    def args(self, c: list[n.Expr]) -> tuple[n.Expr, ...]:
        return tuple(c)

    items = args

    def method(self, c: list[Any]) -> n.Expr:
        tok: Token = c[1]
        return n.Method(c[0], str(tok).lower(), c[2] or (), self.ln, tok.column or 1)

    def getattr(self, c: list[Any]) -> n.Attr:
        return n.Attr(c[0], str(c[1]))

    def getitem(self, c: list[Any]) -> n.Index:
        return n.Index(c[0], c[1])

    def call(self, c: list[Any]) -> n.Expr:
        tok: Token = c[0]
        name = str(tok).lower()
        keyword = KEYWORD_FUNCTIONS.get(name)
        if keyword is not None and keyword in _VALUE_KEYWORDS:
            return n.HostValue(keyword, c[1] or (), self.ln, tok.column or 1)
        return n.Call(name, c[1] or (), self.ln, tok.column or 1)

    def neg(self, c: list[Any]) -> n.Unary:
        return n.Unary("-", c[-1])

    def unary(self, c: list[Any]) -> n.Expr:
        return c[-1]  # type: ignore[no-any-return]

    def not_(self, c: list[Any]) -> n.Unary:
        return n.Unary("not", c[-1])

    def _chain(self, c: list[Any], op: str | None = None) -> n.Expr:
        result: n.Expr = c[0]
        i = 1
        while i < len(c):
            if isinstance(c[i], Token):
                sym = str(c[i]).lower()
                result = n.Binary(_COMP.get(sym, sym), result, c[i + 1])
                i += 2
            else:
                assert op is not None
                result = n.Binary(op, result, c[i])
                i += 1
        return result

    def or_expr(self, c: list[Any]) -> n.Expr:
        return self._chain([x for x in c if not isinstance(x, Token)], "or")

    def and_expr(self, c: list[Any]) -> n.Expr:
        return self._chain([x for x in c if not isinstance(x, Token)], "and")

    def coalesce(self, c: list[Any]) -> n.Expr:
        return self._chain(c, "??")

    def comparison(self, c: list[Any]) -> n.Expr:
        return self._chain(c)

    sum = comparison
    product = comparison

    def concat(self, c: list[Any]) -> n.Expr:
        return self._chain(c, "&")

    def power(self, c: list[Any]) -> n.Expr:
        return self._chain(c, "^")

    def host_value_one(self, c: list[Any]) -> n.HostValue:
        tok: Token = c[0]
        return n.HostValue(canonical_keyword(tok), (c[1],), self.ln, tok.column or 1)

    def host_value(self, c: list[Any]) -> n.HostValue:
        tok: Token = c[0]
        return n.HostValue(canonical_keyword(tok), c[1] or (), self.ln, tok.column or 1)

    def play(self, c: list[Any]) -> n.HostValue:
        """``PLAY source`` and ``PLAY source WITH OPTIONS "autoplay,loop"``."""
        tok: Token = c[0]
        return n.HostValue("PLAY", tuple(_items(c)), self.ln, tok.column or 1)

    def stop_player(self, c: list[Any]) -> n.KeywordStmt:
        return n.KeywordStmt(self.ln, self.col, "STOP", ())

    # -- statements
    def line(self, c: list[Any]) -> n.Stmt | None:
        return self._stmt(c[0]) if c else None

    def _stmt(self, item: n.Stmt | n.HostValue) -> n.Stmt:
        if isinstance(item, n.HostValue):
            return n.HostStmt(self.ln, self.col, item)
        return item

    def talk(self, c: list[Any]) -> n.Talk:
        return n.Talk(self.ln, self.col, c[-1])

    def talk_to(self, c: list[Any]) -> n.KeywordStmt:
        return n.KeywordStmt(self.ln, self.col, "TALK TO", (c[1], c[2]))

    def hear_kind(self, c: list[Token]) -> tuple[str, tuple[str, ...]]:
        return str(c[0]).upper(), ()

    def hear_menu(self, c: list[Token]) -> tuple[str, tuple[str, ...]]:
        return "MENU", tuple(_unquote(str(t)) for t in c)

    def hear(self, c: list[Any]) -> n.Hear:
        name = str(c[1]).lower()
        if len(c) > 3:
            kind, options = c[3]
            return n.Hear(self.ln, self.col, name, kind, options)
        return n.Hear(self.ln, self.col, name)

    def field(self, c: list[Token]) -> str:
        return str(c[0])

    def index_accessor(self, c: list[Any]) -> n.Expr:
        return c[0]  # type: ignore[no-any-return]

    def var_target(self, c: list[Any]) -> tuple[str, tuple[str | n.Expr, ...], str]:
        return str(c[0]).lower(), tuple(c[1:]), str(c[0])

    def with_target(self, c: list[Any]) -> tuple[str, tuple[str | n.Expr, ...], str]:
        return "", tuple(c), ""

    def assign(self, c: list[Any]) -> n.Assign:
        target = next(x for x in c if isinstance(x, tuple))
        name, path, written = target
        op = next((str(x)[0] for x in c if isinstance(x, Token) and x.type == "ASSIGN_OP"), "")
        return n.Assign(self.ln, self.col, name, path, c[-1], written, op)

    def if_block(self, c: list[Any]) -> _Open:
        return _Open(self.ln, self.col, "IF", (c[1],))

    def if_inline(self, c: list[Any]) -> n.If:
        stmts = [self._stmt(x) for x in c[3:] if isinstance(x, n.Stmt | n.HostValue)]
        orelse = (stmts[1],) if len(stmts) > 1 else ()
        return n.If(self.ln, self.col, ((c[1], (stmts[0],)),), orelse)

    def elseif(self, c: list[Any]) -> _Middle:
        return _Middle(self.ln, self.col, "ELSEIF", (c[1],))

    def else_(self, c: list[Any]) -> _Middle:
        return _Middle(self.ln, self.col, "ELSE", ())

    def end_if(self, c: list[Any]) -> _Close:
        return _Close(self.ln, self.col, "END IF", ())

    def select(self, c: list[Any]) -> _Open:
        return _Open(self.ln, self.col, "SELECT", (c[1],))

    def case_value(self, c: list[Any]) -> n.CaseItem:
        return n.CaseItem("value", c[0])

    def case_range(self, c: list[Any]) -> n.CaseItem:
        return n.CaseItem("range", c[0], c[2])

    def case_is(self, c: list[Any]) -> n.CaseItem:
        op = str(c[1])
        return n.CaseItem("is", c[2], None, _COMP.get(op, op))

    def case(self, c: list[Any]) -> _Middle:
        return _Middle(self.ln, self.col, "CASE", tuple(c[1:]))

    def case_else(self, c: list[Any]) -> _Middle:
        return _Middle(self.ln, self.col, "CASEELSE", ())

    def end_select(self, c: list[Any]) -> _Close:
        return _Close(self.ln, self.col, "END SELECT", ())

    def for_each(self, c: list[Any]) -> _Open:
        return _Open(self.ln, self.col, "FOREACH", (str(c[1]).lower(), c[3]))

    def for_to(self, c: list[Any]) -> _Open:
        step = c[6] if len(c) > 6 else None
        return _Open(self.ln, self.col, "FOR", (str(c[1]).lower(), c[2], c[4], step))

    def next(self, c: list[Any]) -> _Close:
        name = str(c[1]).lower() if len(c) > 1 and c[1] is not None else None
        return _Close(self.ln, self.col, "NEXT", (name,))

    def exit(self, c: list[Token]) -> n.Exit:
        words = str(c[0]).split()
        return n.Exit(self.ln, self.col, words[-1].upper() if len(words) > 1 else "")

    def _condition(self, c: list[Any]) -> tuple[n.Expr | None, bool]:
        if len(c) < 2:
            return None, False
        return c[-1], str(c[1]).upper() == "UNTIL"

    def do_start(self, c: list[Any]) -> _Open:
        return _Open(self.ln, self.col, "DO", self._condition(c))

    def loop_end(self, c: list[Any]) -> _Close:
        return _Close(self.ln, self.col, "LOOP", self._condition(c))

    def while_start(self, c: list[Any]) -> _Open:
        return _Open(self.ln, self.col, "WHILE", (c[1], False))

    def wend(self, c: list[Any]) -> _Close:
        return _Close(self.ln, self.col, "WEND", ())

    def proc_param(self, c: list[Any]) -> str:
        return str(c[0]).lower()

    def params(self, c: list[str]) -> tuple[str, ...]:
        return tuple(c)

    def sub_start(self, c: list[Any]) -> _Open:
        params = next((x for x in c[2:] if isinstance(x, tuple)), ())
        return _Open(self.ln, self.col, str(c[0]).upper(), (str(c[1]).lower(), params))

    function_start = sub_start

    def end_proc(self, c: list[Token]) -> _Close:
        return _Close(self.ln, self.col, canonical_keyword(c[0]), ())

    def end_program(self, c: list[Any]) -> n.End:
        return n.End(self.ln, self.col)

    def call_dialog(self, c: list[Token]) -> n.CallDialog:
        name = _unquote(str(c[1])).strip().lower()
        return n.CallDialog(self.ln, self.col, name.removesuffix(".bas"))

    def call_proc(self, c: list[Any]) -> n.CallProc:
        args = c[2] if len(c) > 2 and c[2] is not None else ()
        return n.CallProc(self.ln, self.col, str(c[1]).lower(), args)

    def bare_call(self, c: list[Any]) -> n.Stmt:
        args = c[1] if len(c) > 1 and c[1] is not None else ()
        name = str(c[0]).lower()
        keyword = KEYWORD_FUNCTIONS.get(name)
        if keyword is not None and len(c) > 1:
            if keyword in _VALUE_KEYWORDS:
                tok: Token = c[0]
                return n.HostStmt(
                    self.ln, self.col, n.HostValue(keyword, args, self.ln, tok.column or 1)
                )
            return n.KeywordStmt(self.ln, self.col, keyword, args)
        return n.CallProc(self.ln, self.col, name, args)

    def return_(self, c: list[Any]) -> n.Return:
        return n.Return(self.ln, self.col, c[1] if len(c) > 1 else None)

    def with_start(self, c: list[Token]) -> _Open:
        return _Open(self.ln, self.col, "WITH", (str(c[1]).lower(),))

    def end_with(self, c: list[Any]) -> _Close:
        return _Close(self.ln, self.col, "END WITH", ())

    def on_error_resume(self, c: list[Any]) -> n.OnError:
        return n.OnError(self.ln, self.col, True)

    def on_error_off(self, c: list[Any]) -> n.OnError:
        return n.OnError(self.ln, self.col, False)

    def throw(self, c: list[Any]) -> n.Throw:
        return n.Throw(self.ln, self.col, c[1])

    def param_like(self, c: list[Any]) -> tuple[str, Any]:
        return "like", c[1]

    def param_enum(self, c: list[Any]) -> tuple[str, Any]:
        return "enum", c[1]

    def param_description(self, c: list[Any]) -> tuple[str, Any]:
        return "description", c[1]

    def param_optional(self, c: list[Any]) -> tuple[str, Any]:
        return "optional", True

    def param_required(self, c: list[Any]) -> tuple[str, Any]:
        return "optional", False

    def param_default(self, c: list[Any]) -> tuple[str, Any]:
        return "default", c[1]

    def param_named_type(self, c: list[Token]) -> tuple[str, Any]:
        return "type", str(c[0]).upper()

    def param_text_type(self, c: list[Token]) -> tuple[str, Any]:
        # `PARAM unit AS "celsius", "fahrenheit"` (one text: its description): General Bots
        # reads any word after AS as the type, and an unknown type is a string
        texts = [_unquote(str(t)) for t in c]
        if len(texts) == 1:
            return "described", texts[0]
        return "choices", texts

    def param(self, c: list[Any]) -> n.Param:
        kind, value = c[3]
        options: dict[str, Any] = dict(x for x in c[4:] if isinstance(x, tuple))
        if kind == "described":
            options.setdefault("description", n.Const(value))
        elif kind == "choices":
            options.setdefault("enum", n.ListLiteral(tuple(n.Const(v) for v in value)))
        param_type = value if kind == "type" else "STRING"
        return n.Param(self.ln, self.col, str(c[1]).lower(), param_type, **options)

    def set_schedule(self, c: list[Any]) -> n.SetSchedule:
        return n.SetSchedule(self.ln, self.col, c[1])

    def set_table(self, c: list[Any]) -> n.KeywordStmt:
        table = self.string_parser(c[1])
        return n.KeywordStmt(self.ln, self.col, "SET TABLE", (table, c[2], c[3]))

    def webhook(self, c: list[Token]) -> n.Webhook:
        return n.Webhook(self.ln, self.col, _unquote(str(c[1])))

    def add_bot(self, c: list[Any]) -> n.KeywordStmt:
        kind = n.Const(str(c[3]).upper())
        return n.KeywordStmt(self.ln, self.col, "ADD BOT", (c[1], kind, c[4]))

    def use_website(self, c: list[Any]) -> n.KeywordStmt:
        return n.KeywordStmt(self.ln, self.col, "USE WEBSITE", tuple(_items(c)))

    def clear_headers(self, c: list[Any]) -> n.KeywordStmt:
        return n.KeywordStmt(self.ln, self.col, "CLEAR HEADERS", ())

    def description(self, c: list[Any]) -> n.Description:
        return n.Description(self.ln, self.col, c[1])

    def add_suggestion(self, c: list[Any]) -> n.AddSuggestion:
        exprs = _items(c)
        return n.AddSuggestion(self.ln, self.col, exprs[0], exprs[1] if len(exprs) > 1 else None)

    def clear_suggestions(self, c: list[Any]) -> n.ClearSuggestions:
        return n.ClearSuggestions(self.ln, self.col)

    def set_context(self, c: list[Any]) -> n.SetContext:
        exprs = _items(c)
        if len(exprs) == 1:
            return n.SetContext(self.ln, self.col, None, exprs[0])
        return n.SetContext(self.ln, self.col, exprs[0], exprs[1])

    def keyword_stmt(self, c: list[Any]) -> n.KeywordStmt:
        return n.KeywordStmt(self.ln, self.col, canonical_keyword(c[0]), c[1] or ())


# Keywords General Bots also registers as functions: `USE_KB("sales")`, `x = GET_BOT_MEMORY(k)`
KEYWORD_FUNCTIONS = {
    "use_kb": "USE KB",
    "clear_kb": "CLEAR KB",
    "use_tool": "USE TOOL",
    "use_website": "USE WEBSITE",
    "set_bot_memory": "SET BOT MEMORY",
    "get_bot_memory": "GET BOT MEMORY",
    "send_template": "SEND TEMPLATE",
    "send_template_to": "SEND TEMPLATE TO",
    "bulk_send": "BULK SEND",
    "transfer_to_human": "TRANSFER TO HUMAN",
    "transfer_to_human_ex": "TRANSFER TO HUMAN",  # one map: name, department, priority…
}
_VALUE_KEYWORDS = frozenset(
    {"GET BOT MEMORY", "SEND TEMPLATE", "SEND TEMPLATE TO", "BULK SEND", "TRANSFER TO HUMAN"}
)


def _unquote(token: str) -> str:
    return token[1:-1].replace('""', '"')


_LOOSE_SCHEDULE = re.compile(r'^\s*SET[ \t_]+SCHEDULE\b(?![ \t]*")[^"]*$', re.IGNORECASE)
_PROSE_DESCRIPTION = re.compile(r'^\s*DESCRIPTION[ \t]+([^"\s].*)$', re.IGNORECASE)
_KEYWORD_CALL = re.compile(
    r"^\s*(use_kb|clear_kb|use_tool|use_website|set_bot_memory)\s*\((.*)\)\s*$", re.IGNORECASE
)
_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")


class _LineParser:
    """Parses the lines of one file, collecting errors."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[BasicSyntaxError] = []
        self.tables: list[n.TableSchema] = []
        self.warnings: list[BasicWarning] = []

    def error(self, line: int, column: int, message: str) -> None:
        self.errors.append(BasicSyntaxError(self.filename, line, column, message))

    def interpolate(self, text: str, line: int, column: int) -> n.Expr:
        """``"Hi ${name}"`` -> Interpolated(("Hi ", Var("name"))); plain text -> Const."""
        if "${" not in text:
            return n.Const(text)
        parts: list[str | n.Expr] = []
        pos = 0
        for m in _INTERPOLATION.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            try:
                tree = _lark().parse(m.group(1), start="expr")
                parts.append(_ToNodes(line, column, self.string_token).transform(tree))
            except UnexpectedInput as e:
                raise _SyntaxProblem(
                    column + m.start(1) + (e.column or 1) - 1,
                    f"invalid expression in ${{...}}: {m.group(1)!r}",
                ) from e
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        return n.Interpolated(tuple(parts))

    def string_token(self, tok: Token) -> n.Expr:
        return self.interpolate(_unquote(str(tok)), tok.line or 0, (tok.column or 1) + 1)

    def parse_line(self, text: str, line: int) -> n.Stmt | None:
        column = len(text) - len(text.lstrip()) + 1
        prose = _PROSE_DESCRIPTION.match(text)
        if prose:  # General Bots drops DESCRIPTION lines before running: any text goes
            return n.Description(line, column, n.Const(prose.group(1).strip()))
        if _LOOSE_SCHEDULE.match(text):  # General Bots ignores the line (with a warning)
            return n.SetSchedule(line, column, None)
        if _PLAY_ALONE.match(text):  # General Bots' PLAY needs what it plays
            self.error(line, column, f"PLAY needs a file of the bot's drive or a URL: {PLAY_FORMS}")
            return None
        call = _KEYWORD_CALL.match(text)
        if call:  # USE_WEBSITE("url", "30d") -> USE WEBSITE "url", "30d"
            text = f"{text[: call.start(1)]}{call.group(1)} {call.group(2)}"
        try:
            tree = _lark().parse(text, start="line")
            string_parser = self._string_parser(line)
            stmt: n.Stmt | None = _ToNodes(line, column, string_parser).transform(tree)
            return stmt
        except UnexpectedInput as e:
            method = self._method_statement(text, line, column)
            if method is not None:
                return method
            at = e.column if isinstance(e.column, int) and e.column > 0 else column
            message = _describe(e, text)
            if message.startswith("unknown keyword"):
                at = column
            elif isinstance(e, UnexpectedToken) and e.token.type == "$END":
                at = len(text.rstrip()) + 1
            self.error(line, at, message)
        except _SyntaxProblem as e:
            self.error(line, e.column, e.message)
        except Exception as e:  # lark wraps transformer errors in VisitError
            inner = getattr(e, "orig_exc", e)
            if isinstance(inner, _SyntaxProblem):
                self.error(line, inner.column, inner.message)
            else:
                raise
        return None

    def _method_statement(self, text: str, line: int, column: int) -> n.Stmt | None:
        """``items.PUSH(x)`` alone on a line: a method call run for its effect."""
        if "." not in text or not text.rstrip().endswith(")"):
            return None
        try:
            tree = _lark().parse(text, start="expr")
            expr = _ToNodes(line, column, self._string_parser(line)).transform(tree)
        except Exception:  # not an expression either: the statement's own error stands
            return None
        return n.ExprStmt(line, column, expr) if isinstance(expr, n.Method) else None

    def _string_parser(self, line: int) -> Callable[[Token], n.Expr]:
        def parse(tok: Token) -> n.Expr:
            return self.interpolate(_unquote(str(tok)), line, (tok.column or 1) + 1)

        return parse


_BEGIN = re.compile(r"^\s*BEGIN[ \t]+(TALK|SYSTEM[ \t]+PROMPT)\s*('.*)?$", re.IGNORECASE)
_END_BLOCK = re.compile(r"^\s*END[ \t]+(TALK|SYSTEM[ \t]+PROMPT)\s*('.*)?$", re.IGNORECASE)


_SEND_FILE = re.compile(r"^\s*SEND[ \t_]+FILE\b(?![ \t_]+TO\b)", re.IGNORECASE)
_PLAY = re.compile(r"^\s*PLAY\b(?![ \t]*=|[.[])", re.IGNORECASE)
_PLAY_ALONE = re.compile(r"^\s*PLAY[ \t]*(?:'.*)?$", re.IGNORECASE)
_STOP = re.compile(r"^\s*STOP\b(?![ \t]*[=(]|[.[])", re.IGNORECASE)
PLAY_FORMS = "PLAY source [WITH OPTIONS options]"


def _describe(e: UnexpectedInput, text: str) -> str:
    if isinstance(e, UnexpectedCharacters):
        return f"unexpected character {text[e.pos_in_stream or 0]!r}"
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            return "unexpected end of line"
        if _SEND_FILE.match(text):  # General Bots registers SEND FILE TO only
            return "SEND FILE needs its recipient: SEND FILE TO recipient, file[, caption]"
        if _PLAY.match(text):
            return f"unexpected {str(tok)!r}: {PLAY_FORMS}"
        if _STOP.match(text):
            return "STOP takes nothing after it"
        first = re.match(r"\s*([A-Za-z_]\w*)[ \t]*", text)
        if first and (tok.column or 0) - 1 == first.end():
            # `FOOBAR "x"`: a word the grammar does not know, followed by arguments
            return f"unknown keyword or statement {first.group(1)!r}"
        return f"unexpected {str(tok)!r}"
    return "syntax error"


_MAX_JOINED_LINES = 500
_TABLE = re.compile(r"^\s*TABLE[ \t]+([A-Za-z_][\w.]*)\b.*$", re.IGNORECASE)
_END_TABLE = re.compile(r"^\s*END[ \t]+TABLE\s*$", re.IGNORECASE)
_COLUMN = re.compile(
    r"^\s*(?:(?i:FIELD)[ \t]+)?([A-Za-z_]\w*)[ \t]+(?:(?i:AS)[ \t]+)?([A-Za-z_]\w*)(\([^)]*\))?"
    r"[ \t]*(.*)$"
)


def _table_block(lines: list[str], i: int, name: str, parser: _LineParser) -> int:
    """``TABLE name`` up to ``END TABLE``, read as General Bots' table definitions are: one
    ``column TYPE[(size)] [options]`` per line (also ``FIELD column AS TYPE``).  Returns the
    index after the block."""
    start = i
    columns: list[n.Column] = []
    i += 1
    while i < len(lines) and not _END_TABLE.match(lines[i]):
        text = lines[i]
        stripped = text.strip()
        if (
            stripped
            and not stripped.startswith(("'", "//", "#"))
            and not re.match(r"REM\b", stripped, re.IGNORECASE)
        ):
            column = _COLUMN.match(text)
            if column is None:  # General Bots skips such a line with a log line: so do we
                parser.warnings.append(
                    BasicWarning(
                        parser.filename,
                        i + 1,
                        len(text) - len(text.lstrip()) + 1,
                        f"TABLE {name}: not a column (name TYPE), skipped",
                    )
                )
            else:
                columns.append(
                    n.Column(column.group(1), column.group(2).upper(), column.group(4).strip())
                )
        i += 1
    at = len(lines[start]) - len(lines[start].lstrip()) + 1
    if i >= len(lines):
        parser.error(start + 1, at, "TABLE without END TABLE")
        return i
    parser.tables.append(n.TableSchema(start + 1, at, name, tuple(columns)))
    return i + 1


def _is_schema_file(filename: str) -> bool:
    """``tables.bas`` is a schema file: General Bots reads its TABLE blocks and never runs it."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1].lower() == "tables.bas"


def _is_comment(text: str) -> bool:
    """``//`` and ``#`` start a comment line too (General Bots' preprocessor drops them);
    ``#{`` opens a map."""
    stripped = text.lstrip()
    return stripped.startswith("//") or (stripped.startswith("#") and not stripped.startswith("#{"))


def _open_brackets(text: str) -> int:
    """How many ( [ { the line leaves open, outside strings and before a ' comment."""
    depth = 0
    in_string = False
    for ch in text:
        if ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch == "'":
            break
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth


def _logical_lines(source: str, parser: _LineParser) -> Iterator[tuple[int, str | n.Stmt]]:
    """Yield (line number, text) per logical line, with BEGIN TALK blocks already made
    statements.  A map or list left open (``#{`` or ``[`` at the end of a line) goes on over
    the next lines until it closes, as Rhai reads it."""
    lines = source.splitlines()
    schema_only = _is_schema_file(parser.filename)
    ignored: list[int] = []
    i = 0
    while i < len(lines):
        text = lines[i]
        if _is_comment(text):
            i += 1
            continue
        table = _TABLE.match(text)
        if table:
            i = _table_block(lines, i, table.group(1), parser)
            continue
        if schema_only:
            if text.strip() and not re.match(r"\s*(?:'|REM\b)", text, re.IGNORECASE):
                ignored.append(i)
            i += 1
            continue
        m = _BEGIN.match(text)
        if not m:
            start = i
            depth = _open_brackets(text) if ("{" in text or "[" in text) else 0
            if depth > 0 and ("#{" in text or text.rstrip().endswith(("[", ","))):
                parts = [text]
                while depth > 0 and i + 1 < len(lines) and i - start < _MAX_JOINED_LINES:
                    i += 1
                    if not _is_comment(lines[i]):
                        parts.append(lines[i].strip())
                        depth += _open_brackets(lines[i])
                text = " ".join(parts)
            yield start + 1, text
            i += 1
            continue
        start = i
        system = m.group(1).upper() != "TALK"
        body: list[str] = []
        i += 1
        while i < len(lines) and not _END_BLOCK.match(lines[i]):
            body.append(lines[i])
            i += 1
        column = len(text) - len(text.lstrip()) + 1
        if i >= len(lines):
            word = "SYSTEM PROMPT" if system else "TALK"
            parser.error(start + 1, column, f"BEGIN {word} without END {word}")
            return
        i += 1
        content = textwrap.dedent("\n".join(body)).strip("\n")
        try:
            expr = parser.interpolate(content, start + 2, 1)
        except _SyntaxProblem as e:
            parser.error(start + 2, e.column, e.message)
            continue
        yield start + 1, n.TalkBlock(start + 1, column, expr, system)
    if ignored:
        first = lines[ignored[0]]
        parser.warnings.append(
            BasicWarning(
                parser.filename,
                ignored[0] + 1,
                len(first) - len(first.lstrip()) + 1,
                f"ignored: {len(ignored)} line(s) outside TABLE blocks (General Bots reads only "
                "the TABLE blocks of tables.bas)",
            )
        )


def parse(source: str, filename: str) -> tuple[n.Module, list[BasicSyntaxError]]:
    """Parse a whole file; returns the module (best effort) and every syntax error found."""
    parser = _LineParser(filename)
    stmts: list[n.Stmt] = []
    for line, item in _logical_lines(source, parser):
        if isinstance(item, n.Stmt):
            stmts.append(item)
        elif item.strip():
            stmt = parser.parse_line(item, line)
            if stmt is not None:
                stmts.append(stmt)
    module = _Nester(filename, parser).nest(stmts)
    module = n.Module(
        module.filename,
        module.body,
        module.procedures,
        tuple(parser.tables),
        tuple(parser.warnings),
    )
    parser.errors.sort(key=lambda e: (e.line, e.column))
    return module, parser.errors


class _Frame:
    def __init__(self, opener: _Open | None) -> None:
        self.opener = opener
        # list of (marker or None, statements) segments: IF/ELSEIF/ELSE, CASE ...
        self.segments: list[tuple[n.Stmt | None, list[n.Stmt]]] = [(opener, [])]

    @property
    def body(self) -> list[n.Stmt]:
        return self.segments[-1][1]


class _Nester:
    """Turns the flat list of statements and block markers into nested statements."""

    def __init__(self, filename: str, parser: _LineParser) -> None:
        self.filename = filename
        self.parser = parser

    def nest(self, stmts: list[n.Stmt]) -> n.Module:
        stack: list[_Frame] = [_Frame(None)]
        procedures: list[n.Procedure] = []
        for stmt in stmts:
            top = stack[-1]
            if isinstance(stmt, _Open):
                if stmt.kind in ("SUB", "FUNCTION") and len(stack) > 1:
                    self.parser.error(
                        stmt.line, stmt.column, f"{stmt.kind} inside {_OPEN_NAMES[self._kind(top)]}"
                    )
                    continue
                stack.append(_Frame(stmt))
            elif isinstance(stmt, _Middle):
                self._middle(top, stmt)
            elif isinstance(stmt, _Close):
                kinds = _CLOSES[stmt.kind]
                if top.opener is None or top.opener.kind not in kinds:
                    if any(f.opener is not None and f.opener.kind in kinds for f in stack):
                        # close the inner blocks that were left open, reporting each
                        while stack[-1].opener is not None and stack[-1].opener.kind not in kinds:
                            self._unclosed(stack.pop())
                        top = stack[-1]
                    else:
                        self.parser.error(
                            stmt.line, stmt.column, f"{stmt.kind} without {_OPEN_NAMES[kinds[0]]}"
                        )
                        continue
                stack.pop()
                built = self._build(top, stmt)
                if isinstance(built, n.Procedure):
                    procedures.append(built)
                else:
                    stack[-1].body.append(built)
            elif (
                isinstance(stmt, n.End)
                and len(stack) > 1
                and any(
                    f.opener is not None and f.opener.kind in ("SUB", "FUNCTION") for f in stack
                )
            ):
                # a bare END closes the SUB/FUNCTION it is in
                while stack[-1].opener is not None and stack[-1].opener.kind not in (
                    "SUB",
                    "FUNCTION",
                ):
                    self._unclosed(stack.pop())
                frame = stack.pop()
                assert frame.opener is not None
                close = _Close(stmt.line, stmt.column, "END " + frame.opener.kind, ())
                built = self._build(frame, close)
                assert isinstance(built, n.Procedure)
                procedures.append(built)
            else:
                top.body.append(stmt)
        while len(stack) > 1:
            self._unclosed(stack.pop())
        return n.Module(self.filename, tuple(stack[0].body), tuple(procedures))

    @staticmethod
    def _kind(frame: _Frame) -> str:
        return frame.opener.kind if frame.opener is not None else ""

    def _unclosed(self, frame: _Frame) -> None:
        assert frame.opener is not None
        kind = frame.opener.kind
        self.parser.error(
            frame.opener.line,
            frame.opener.column,
            f"{_OPEN_NAMES[kind]} without {_CLOSER_OF[kind]}",
        )

    def _middle(self, top: _Frame, stmt: _Middle) -> None:
        kind = self._kind(top)
        allowed = {"ELSEIF": "IF", "ELSE": "IF", "CASE": "SELECT", "CASEELSE": "SELECT"}[stmt.kind]
        word = "CASE ELSE" if stmt.kind == "CASEELSE" else stmt.kind
        if kind != allowed:
            self.parser.error(stmt.line, stmt.column, f"{word} without {_OPEN_NAMES[allowed]}")
            return
        last = top.segments[-1][0]
        if isinstance(last, _Middle) and last.kind in ("ELSE", "CASEELSE"):
            last_word = "ELSE" if allowed == "IF" else "CASE ELSE"
            self.parser.error(stmt.line, stmt.column, f"{word} after {last_word}")
            return
        if stmt.kind == "CASE" or stmt.kind == "CASEELSE":
            if top.segments[0][1] and len(top.segments) == 1:
                first = top.segments[0][1][0]
                self.parser.error(first.line, first.column, "statement before the first CASE")
        top.segments.append((stmt, []))

    def _build(self, frame: _Frame, close: _Close) -> n.Stmt:
        o = frame.opener
        assert o is not None
        segs = frame.segments
        body = tuple(segs[0][1])
        if o.kind == "IF":
            branches: list[tuple[n.Expr, tuple[n.Stmt, ...]]] = [(o.data[0], body)]
            orelse: tuple[n.Stmt, ...] = ()
            for marker, stmts in segs[1:]:
                assert isinstance(marker, _Middle)
                if marker.kind == "ELSEIF":
                    branches.append((marker.data[0], tuple(stmts)))
                else:
                    orelse = tuple(stmts)
            return n.If(o.line, o.column, tuple(branches), orelse)
        if o.kind == "SELECT":
            cases: list[tuple[tuple[n.CaseItem, ...], tuple[n.Stmt, ...]]] = []
            orelse = ()
            for marker, stmts in segs[1:]:
                assert isinstance(marker, _Middle)
                if marker.kind == "CASE":
                    cases.append((marker.data, tuple(stmts)))
                else:
                    orelse = tuple(stmts)
            return n.Select(o.line, o.column, o.data[0], tuple(cases), orelse)
        if o.kind == "FOREACH":
            self._check_next(o.data[0], close)
            return n.ForEach(o.line, o.column, o.data[0], o.data[1], body)
        if o.kind == "FOR":
            self._check_next(o.data[0], close)
            return n.ForTo(o.line, o.column, o.data[0], o.data[1], o.data[2], o.data[3], body)
        if o.kind == "DO":
            pre, pre_until = o.data
            post, post_until = close.data
            if pre is not None and post is not None:
                self.parser.error(
                    close.line,
                    close.column,
                    "LOOP WHILE/UNTIL after DO WHILE/UNTIL: use one condition",
                )
            return n.Loop(o.line, o.column, "do", pre, pre_until, post, post_until, body)
        if o.kind == "WHILE":
            return n.Loop(o.line, o.column, "while", o.data[0], False, None, False, body)
        if o.kind == "WITH":
            return n.With(o.line, o.column, o.data[0], body)
        return n.Procedure(o.line, o.column, o.kind, o.data[0], o.data[1], body)

    def _check_next(self, var: str, close: _Close) -> None:
        if close.data and close.data[0] is not None and close.data[0] != var:
            self.parser.error(
                close.line, close.column, f"NEXT {close.data[0]} does not match FOR {var}"
            )
