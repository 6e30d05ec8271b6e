"""Value semantics of the dialect: truthiness, text conversion, arithmetic, comparison, fields.

Values are plain JSON data (str, int, float, bool, None, list, dict) so that a suspended dialog
serializes as is.  Operations raise ScriptError; the interpreter adds file and line.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from basic.errors import ScriptError

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def truthy(value: Any) -> bool:
    """None, "", 0, false, empty list/object are false; "false" and "0" stay text (true)."""
    return bool(value)


def to_text(value: Any) -> str:
    """How a value reads when talked or concatenated."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return ", ".join(to_text(v) for v in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def parse_number(text: str) -> int | float | None:
    """A number written as text ("42", " 3.5 "), or None."""
    s = text.strip()
    if not _NUMBER.fullmatch(s):
        return None
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    return float(s)


def to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        number = parse_number(value)
        if number is not None:
            return number
    raise ScriptError(f"expected a number, got {to_text(value)!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def add(a: Any, b: Any) -> Any:
    """``+``: numbers add, lists join, anything else concatenates as text."""
    if _is_number(a) and _is_number(b):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return to_text(a) + to_text(b)


def arithmetic(op: str, a: Any, b: Any) -> Any:
    x, y = to_number(a), to_number(b)
    try:
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            result = x / y
            return (
                int(result)
                if result.is_integer() and isinstance(x, int) and isinstance(y, int)
                else result
            )
        if op == "\\":
            return int(x // y)
        if op == "mod":
            return x % y
        if op == "^":
            return x**y
    except ZeroDivisionError:
        raise ScriptError("division by zero") from None
    except OverflowError:
        raise ScriptError("number too large") from None
    raise ScriptError(f"unknown operator {op}")


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    """Numbers compare as numbers, also against numeric text ("42" = 42); None is ""."""
    if _is_number(a) and isinstance(b, str):
        nb = parse_number(b)
        if nb is not None:
            return a, nb
    if _is_number(b) and isinstance(a, str):
        na = parse_number(a)
        if na is not None:
            return na, b
    if a is None and isinstance(b, str):
        return "", b
    if b is None and isinstance(a, str):
        return a, ""
    return a, b


def compare(op: str, a: Any, b: Any) -> bool:
    x, y = _comparable(a, b)
    if op == "=":
        return bool(x == y)
    if op == "<>":
        return bool(x != y)
    if _is_number(x) != _is_number(y) or x is None or y is None:
        raise ScriptError(f"cannot compare {to_text(a)!r} with {to_text(b)!r}")
    try:
        if op == "<":
            return bool(x < y)
        if op == ">":
            return bool(x > y)
        if op == "<=":
            return bool(x <= y)
        if op == ">=":
            return bool(x >= y)
    except TypeError:
        raise ScriptError(f"cannot compare {to_text(a)!r} with {to_text(b)!r}") from None
    raise ScriptError(f"unknown operator {op}")


def get_field(obj: Any, name: str) -> Any:
    """``obj.name``: object fields are found case-insensitively; a missing field is empty."""
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        lower = name.lower()
        for key, value in obj.items():
            if key.lower() == lower:
                return value
        return None
    if obj is None:
        return None
    if isinstance(obj, list):
        if name.lower() in ("length", "count"):
            return len(obj)
        # FIND returns a list; `row.field` on it reads the first row (General Bots does too)
        return get_field(obj[0], name) if obj else None
    raise ScriptError(f"cannot read field {name!r} of {to_text(obj)!r}")


def get_index(obj: Any, index: Any) -> Any:
    if isinstance(obj, dict):
        return get_field(obj, to_text(index))
    if isinstance(obj, list | str):
        i = to_number(index)
        if not isinstance(i, int) and not (isinstance(i, float) and i.is_integer()):
            raise ScriptError(f"index must be a whole number, got {to_text(index)!r}")
        i = int(i)
        if not 0 <= i < len(obj):
            raise ScriptError(f"index {i} out of range (0 to {len(obj) - 1})")
        return obj[i]
    raise ScriptError(f"cannot index {to_text(obj)!r}")


def set_field(obj: dict[str, Any], name: str, value: Any) -> None:
    lower = name.lower()
    for key in obj:
        if key.lower() == lower:
            obj[key] = value
            return
    obj[name] = value


def set_index(obj: Any, index: Any, value: Any) -> None:
    if isinstance(obj, dict):
        set_field(obj, to_text(index), value)
        return
    if isinstance(obj, list):
        i = int(to_number(index))
        if i == len(obj):
            obj.append(value)
        elif 0 <= i < len(obj):
            obj[i] = value
        else:
            raise ScriptError(f"index {i} out of range (0 to {len(obj) - 1})")
        return
    raise ScriptError(f"cannot index {to_text(obj)!r}")


def plain(value: Any) -> Any:
    """Coerce a host-provided value into plain JSON data (tuples -> lists, NaN kept out)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)
