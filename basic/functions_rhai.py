"""Built-in functions General Bots registers in its Rhai engine, beyond the classic BASIC set.

Names and behaviour follow General Bots' ``botbasic_core`` keyword sources (dates as
``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS`` text, arrays as lists).  Importing this module
registers them in :data:`basic.functions.BUILTINS`.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
from typing import Any

from basic.errors import ScriptError
from basic.functions import _builtin, _int
from basic.values import compare, to_number, to_text

_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


def parse_when(value: Any) -> dt.datetime | None:
    """A date or date-time written as General Bots writes them, or None."""
    text = to_text(value).strip()
    for fmt in _DATETIME_FORMATS + _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return None


def _unit(unit: Any) -> str:
    word = to_text(unit).strip().lower()
    aliases = {
        "d": "day", "days": "day", "w": "week", "weeks": "week", "h": "hour", "hours": "hour",
        "m": "minute", "min": "minute", "minutes": "minute", "s": "second", "sec": "second",
        "seconds": "second", "months": "month", "y": "year", "years": "year",
    }  # fmt: skip
    return aliases.get(word, word)


def _add_months(when: dt.datetime, months: int) -> dt.datetime:
    index = when.year * 12 + when.month - 1 + months
    year, month = divmod(index, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


@_builtin("dateadd", args=(3, 3))
def _dateadd(date: Any, amount: Any, unit: Any) -> str:
    """DATEADD(date, n, "day"|"week"|"hour"|"minute"|"second"|"month"|"year")."""
    when = parse_when(date)
    if when is None:
        return to_text(date)  # General Bots gives an unreadable date back unchanged
    n = _int(amount)
    kind = _unit(unit)
    steps = {"day": "days", "week": "weeks", "hour": "hours", "minute": "minutes"}
    if kind in steps:
        when = when + dt.timedelta(**{steps[kind]: n})
    elif kind == "second":
        when = when + dt.timedelta(seconds=n)
    elif kind == "month":
        when = _add_months(when, n)
    elif kind == "year":
        when = _add_months(when, 12 * n)
    return when.strftime("%Y-%m-%d %H:%M:%S" if ":" in to_text(date) else "%Y-%m-%d")


@_builtin("datediff", args=(3, 3))
def _datediff(first: Any, second: Any, unit: Any) -> int:
    """DATEDIFF(from, to, unit): whole units from ``from`` to ``to`` (days by default)."""
    a, b = parse_when(first), parse_when(second)
    if a is None or b is None:
        return 0
    seconds = (b - a).total_seconds()
    kind = _unit(unit)
    if kind == "month":
        return (b.year * 12 + b.month) - (a.year * 12 + a.month)
    if kind == "year":
        return b.year - a.year
    size = {"week": 604800, "hour": 3600, "minute": 60, "second": 1}.get(kind, 86400)
    return int(seconds / size)


def _date_part(name: str, attr: str) -> None:
    @_builtin(name, args=(1, 1))
    def part(date: Any) -> int:
        when = parse_when(date)
        if when is None:
            raise ScriptError(f"{name.upper()} needs a date, got {to_text(date)!r}")
        value: int = getattr(when, attr)
        return value


for _name in ("year", "month", "day", "hour", "minute", "second"):
    _date_part(_name, _name)


@_builtin("weekday", args=(1, 1))
def _weekday(date: Any) -> int:
    """1 = Sunday ... 7 = Saturday, as VB's WEEKDAY."""
    when = parse_when(date)
    if when is None:
        raise ScriptError(f"WEEKDAY needs a date, got {to_text(date)!r}")
    return (when.weekday() + 1) % 7 + 1


@_builtin("isdate", "is_date", args=(1, 1))
def _isdate(v: Any) -> bool:
    return parse_when(v) is not None


@_builtin("now_str", args=(0, 0))
def _now_str() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


@_builtin("today_str", args=(0, 0))
def _today_str() -> str:
    return dt.date.today().isoformat()


@_builtin("time", "time_str", args=(0, 0))
def _time() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


@_builtin("timestamp", "unix_timestamp", args=(0, 0))
def _timestamp() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


@_builtin("format_date", args=(2, 2))
def _format_date(date: Any, pattern: Any) -> str:
    from basic.functions import BUILTINS

    return str(BUILTINS["format"].fn(date, pattern))


# ---------------------------------------------------------------------------- choices


@_builtin("iif", "if_func", args=(3, 3))
def _iif(condition: Any, yes: Any, no: Any) -> Any:
    return yes if condition else no


@_builtin("nvl", "ifnull", "coalesce", args=(2, 2))
def _nvl(value: Any, default: Any) -> Any:
    """The value, or ``default`` when it is empty (General Bots: unit or empty text)."""
    return default if value is None or to_text(value) == "" else value


@_builtin("choose", args=(2, 30))
def _choose(index: Any, *options: Any) -> Any:
    i = _int(index)
    return options[i - 1] if 1 <= i <= len(options) else None


# ---------------------------------------------------------------------------- arrays


def _list(v: Any, name: str) -> list[Any]:
    if isinstance(v, list):
        return v
    if v is None:
        return []
    raise ScriptError(f"{name} needs a list, got {to_text(v)!r}")


@_builtin("push", "array_push", "append", args=(2, 2))
def _push(items: Any, value: Any) -> list[Any]:
    """Adds ``value`` at the end of the list, in place (``list.PUSH(x)``), and returns it."""
    target = _list(items, "PUSH")
    target.append(value)
    return target


@_builtin("pop", "array_pop", args=(1, 1))
def _pop(items: Any) -> Any:
    target = _list(items, "POP")
    return target.pop() if target else None


@_builtin("contains", "includes", "in_array", "has", args=(2, 2))
def _contains(container: Any, value: Any) -> bool:
    if isinstance(container, list):
        return any(compare("=", item, value) for item in container)
    if isinstance(container, dict):
        return any(k.lower() == to_text(value).lower() for k in container)
    return to_text(value) in to_text(container)


@_builtin("slice", "subarray", args=(2, 3))
def _slice(items: Any, start: Any, end: Any = None) -> Any:
    sequence = items if isinstance(items, list) else to_text(items)
    return sequence[_int(start) : None if end is None else _int(end)]


@_builtin("first", "first_elem", "head", args=(1, 1))
def _first(items: Any) -> Any:
    target = _list(items, "FIRST")
    return target[0] if target else None


@_builtin("last", "last_elem", args=(1, 1))
def _last(items: Any) -> Any:
    target = _list(items, "LAST")
    return target[-1] if target else None


@_builtin("count", "size", args=(1, 1))
def _count(items: Any) -> int:
    if isinstance(items, list | dict):
        return len(items)
    return len(to_text(items))


@_builtin("unique", "distinct", args=(1, 1))
def _unique(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in _list(items, "UNIQUE"):
        if item not in out:
            out.append(item)
    return out


@_builtin("reverse", args=(1, 1))
def _reverse(items: Any) -> Any:
    return list(reversed(items)) if isinstance(items, list) else to_text(items)[::-1]


@_builtin("sort", "sort_asc", args=(1, 1))
def _sort(items: Any) -> list[Any]:
    try:
        return sorted(_list(items, "SORT"), key=lambda v: (isinstance(v, str), v))
    except TypeError:
        raise ScriptError("SORT needs a list of numbers or texts") from None


@_builtin("sort_desc", args=(1, 1))
def _sort_desc(items: Any) -> list[Any]:
    return list(reversed(_sort(items)))


@_builtin("index_of", args=(2, 2))
def _index_of(items: Any, value: Any) -> int:
    if isinstance(items, list):
        return next((i for i, v in enumerate(items) if compare("=", v, value)), -1)
    return to_text(items).find(to_text(value))


def _numbers(items: Any, name: str) -> list[int | float]:
    return [to_number(v) for v in _list(items, name)]


@_builtin("sum", args=(1, 1))
def _sum(items: Any) -> int | float:
    return sum(_numbers(items, "SUM"))


@_builtin("avg", "average", args=(1, 1))
def _avg(items: Any) -> float:
    values = _numbers(items, "AVG")
    return sum(values) / len(values) if values else 0


@_builtin("min", args=(1, 2))
def _min(a: Any, b: Any = None) -> Any:
    values = _numbers(a, "MIN") if b is None else [to_number(a), to_number(b)]
    return min(values) if values else None


@_builtin("max", args=(1, 2))
def _max(a: Any, b: Any = None) -> Any:
    values = _numbers(a, "MAX") if b is None else [to_number(a), to_number(b)]
    return max(values) if values else None


@_builtin("range", args=(1, 2))
def _range(a: Any, b: Any = None) -> list[int]:
    return list(range(_int(a))) if b is None else list(range(_int(a), _int(b)))


@_builtin("lbound", args=(1, 1))
def _lbound(items: Any) -> int:
    return 0


# ---------------------------------------------------------------------------- numbers and types


@_builtin("floor", args=(1, 1))
def _floor(v: Any) -> int:
    return math.floor(to_number(v))


@_builtin("ceil", "ceiling", args=(1, 1))
def _ceil(v: Any) -> int:
    return math.ceil(to_number(v))


@_builtin("sqrt", "sqr", args=(1, 1))
def _sqrt(v: Any) -> float:
    number = to_number(v)
    if number < 0:
        raise ScriptError("SQRT of a negative number")
    return math.sqrt(number)


@_builtin("pow", "power", args=(2, 2))
def _pow(a: Any, b: Any) -> int | float:
    try:
        result: int | float = to_number(a) ** to_number(b)
    except OverflowError:
        raise ScriptError("number too large") from None
    return result


@_builtin("mod", args=(2, 2))
def _mod(a: Any, b: Any) -> int | float:
    if to_number(b) == 0:
        raise ScriptError("division by zero")
    return to_number(a) % to_number(b)


@_builtin("sgn", args=(1, 1))
def _sgn(v: Any) -> int:
    number = to_number(v)
    return (number > 0) - (number < 0)


@_builtin("cdbl", args=(1, 1))
def _cdbl(v: Any) -> float:
    return float(to_number(v))


@_builtin("isnumber", "is_number", "is_numeric", args=(1, 1))
def _isnumber(v: Any) -> bool:
    from basic.functions import BUILTINS

    return bool(BUILTINS["isnumeric"].fn(v))


@_builtin("isarray", "is_array", args=(1, 1))
def _isarray(v: Any) -> bool:
    return isinstance(v, list)


@_builtin("isstring", "is_string", args=(1, 1))
def _isstring(v: Any) -> bool:
    return isinstance(v, str)


@_builtin("isbool", "isboolean", "is_bool", args=(1, 1))
def _isbool(v: Any) -> bool:
    return isinstance(v, bool)


@_builtin("typeof", "typename", args=(1, 1))
def _typeof(v: Any) -> str:
    if v is None:
        return "()"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "i64"
    if isinstance(v, float):
        return "f64"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "map"


# ---------------------------------------------------------------- JSON (Rhai's map method)


@_builtin("to_json", args=(1, 1))
def _to_json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)
