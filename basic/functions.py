"""Built-in functions (LEN, LEFT, FORMAT, ...): pure, synchronous, on plain values."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from basic.errors import ScriptError
from basic.values import parse_number, to_number, to_text


@dataclass(frozen=True)
class Builtin:
    name: str
    min_args: int
    max_args: int
    fn: Callable[..., Any]


BUILTINS: dict[str, Builtin] = {}


def _builtin(
    *names: str, args: tuple[int, int]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            BUILTINS[name] = Builtin(name.upper(), args[0], args[1], fn)
        return fn

    return register


def _int(value: Any) -> int:
    return int(to_number(value))


@_builtin("len", args=(1, 1))
def _len(v: Any) -> int:
    if isinstance(v, list | dict):
        return len(v)
    return len(to_text(v))


@_builtin("left", args=(2, 2))
def _left(s: Any, n: Any) -> str:
    return to_text(s)[: max(_int(n), 0)]


@_builtin("right", args=(2, 2))
def _right(s: Any, n: Any) -> str:
    count = max(_int(n), 0)
    return to_text(s)[-count:] if count else ""


@_builtin("mid", args=(2, 3))
def _mid(s: Any, start: Any, length: Any = None) -> str:
    text = to_text(s)
    begin = max(_int(start) - 1, 0)
    if length is None:
        return text[begin:]
    return text[begin : begin + max(_int(length), 0)]


@_builtin("upper", "ucase", args=(1, 1))
def _upper(s: Any) -> str:
    return to_text(s).upper()


@_builtin("lower", "lcase", args=(1, 1))
def _lower(s: Any) -> str:
    return to_text(s).lower()


@_builtin("trim", args=(1, 1))
def _trim(s: Any) -> str:
    return to_text(s).strip()


@_builtin("ltrim", args=(1, 1))
def _ltrim(s: Any) -> str:
    return to_text(s).lstrip()


@_builtin("rtrim", args=(1, 1))
def _rtrim(s: Any) -> str:
    return to_text(s).rstrip()


@_builtin("replace", args=(3, 3))
def _replace(s: Any, old: Any, new: Any) -> str:
    return to_text(s).replace(to_text(old), to_text(new))


@_builtin("instr", args=(2, 3))
def _instr(*args: Any) -> int:
    """INSTR(text, part) or INSTR(start, text, part): 1-based position, 0 when absent."""
    start = 1
    if len(args) == 3:
        start, args = _int(args[0]), args[1:]
    return to_text(args[0]).find(to_text(args[1]), max(start - 1, 0)) + 1


@_builtin("split", args=(1, 2))
def _split(s: Any, sep: Any = ",") -> list[str]:
    text = to_text(s)
    return text.split(to_text(sep)) if text else []


@_builtin("join", args=(1, 2))
def _join(items: Any, sep: Any = ",") -> str:
    if not isinstance(items, list):
        raise ScriptError("JOIN needs a list")
    return to_text(sep).join(to_text(v) for v in items)


@_builtin("val", args=(1, 1))
def _val(v: Any) -> int | float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    m = re.match(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)", to_text(v).replace(",", "."))
    if not m:
        return 0
    number = parse_number(m.group(0))
    return number if number is not None else 0


@_builtin("str", "cstr", args=(1, 1))
def _str(v: Any) -> str:
    return to_text(v)


@_builtin("int", "cint", "fix", args=(1, 1))
def _intf(v: Any) -> int:
    return int(to_number(v) // 1)


@_builtin("round", args=(1, 2))
def _round(v: Any, digits: Any = 0) -> int | float:
    d = _int(digits)
    result = round(float(to_number(v)), d)
    return int(result) if d == 0 else result


@_builtin("abs", args=(1, 1))
def _abs(v: Any) -> int | float:
    return abs(to_number(v))


@_builtin("now", args=(0, 0))
def _now() -> str:
    return dt.datetime.now().replace(microsecond=0).isoformat(sep=" ")


@_builtin("today", args=(0, 0))
def _today() -> str:
    return dt.date.today().isoformat()


@_builtin("random", "rnd", args=(0, 2))
def _random(low: Any = None, high: Any = None) -> int | float:
    """RANDOM() in [0, 1); RANDOM(n) in 0..n-1... RANDOM(a, b) in a..b inclusive."""
    if low is None:
        return random.random()
    if high is None:
        return random.randint(0, max(_int(low) - 1, 0))
    return random.randint(_int(low), _int(high))


@_builtin("ubound", args=(1, 1))
def _ubound(v: Any) -> int:
    if not isinstance(v, list):
        raise ScriptError("UBOUND needs a list")
    return len(v) - 1


@_builtin("isempty", "isnull", args=(1, 1))
def _isempty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


@_builtin("isnumeric", args=(1, 1))
def _isnumeric(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int | float) or parse_number(to_text(v)) is not None


_DATE_TOKENS = re.compile(r"YYYY|yyyy|YY|yy|MM|DD|dd|HH|hh|mm|nn|ss|SS")
_DATE_MAP = {
    "YYYY": "%Y",
    "yyyy": "%Y",
    "YY": "%y",
    "yy": "%y",
    "MM": "%m",
    "DD": "%d",
    "dd": "%d",
    "HH": "%H",
    "hh": "%H",
    "mm": "%M",
    "nn": "%M",
    "ss": "%S",
    "SS": "%S",
}


def _as_datetime(v: Any) -> dt.datetime | None:
    if not isinstance(v, str):
        return None
    try:
        return dt.datetime.fromisoformat(v.strip())
    except ValueError:
        return None


@_builtin("format", args=(1, 2))
def _format(v: Any, pattern: Any = None) -> str:
    """FORMAT(date, "YYYYMMDD"), FORMAT(number, "0.00"), FORMAT(x) -> text."""
    if pattern is None:
        return to_text(v)
    fmt = to_text(pattern)
    when = _as_datetime(v)
    if when is not None and _DATE_TOKENS.search(fmt):
        return when.strftime(_DATE_TOKENS.sub(lambda m: _DATE_MAP[m.group(0)], fmt))
    if (
        isinstance(v, int | float | str)
        and not isinstance(v, bool)
        and re.fullmatch(r"[#,0]*(\.[0#]+)?%?", fmt)
    ):
        number = to_number(v)
        decimals = len(fmt.split(".", 1)[1].rstrip("%")) if "." in fmt else 0
        if fmt.endswith("%"):
            number = number * 100
        text = f"{number:{',' if ',' in fmt else ''}.{decimals}f}"
        return text + ("%" if fmt.endswith("%") else "")
    return to_text(v)


def call_builtin(name: str, args: list[Any]) -> Any:
    return BUILTINS[name].fn(*args)


# General Bots' own functions register themselves in BUILTINS (after _builtin exists)
from basic import functions_rhai as _functions_rhai  # noqa: E402

__all__ = ["BUILTINS", "Builtin", "_functions_rhai", "call_builtin"]
