"""FIND/UPDATE/DELETE filters as dialogs write them: ``"name = fax"``, ``"price > 100 AND tv = 1"``.

A filter is comparisons joined by ``AND`` (any case, outside quotes). Each comparison is
``column op value`` with ``op`` one of ``= == != <> < <= > >=``. A value in single or double
quotes is text as written; a bare value is a number when it reads as one, ``true``/``false`` a
boolean, anything else text (trimmed, inner spaces kept: ``name = big tv``). An empty filter
matches every row.
"""

from __future__ import annotations

import re

from storage.base import Condition


class ConditionError(ValueError):
    """A filter that cannot be read; the message quotes it and says what was expected."""


_OPERATORS = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
_COMPARISON = re.compile(
    r"^\s*(?P<column>[A-Za-z_][\w.-]*)\s*(?P<op>==|!=|<>|<=|>=|=|<|>)\s*(?P<value>.*?)\s*$",
    re.DOTALL,
)
_AND = re.compile(r"\s+AND(\s+|\s*$)", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def parse_conditions(text: str) -> list[Condition]:
    """The comparisons of a filter, in order; raise :class:`ConditionError` when malformed."""
    if not text.strip():
        return []
    return [_comparison(part, text) for part in _split_and(text)]


def _split_and(text: str) -> list[str]:
    """Split on AND outside quotes."""
    parts: list[str] = []
    start = 0
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        else:
            match = _AND.match(text, i) if char.isspace() else None
            if match is not None:
                parts.append(text[start:i])
                start = i = match.end()
                continue
        i += 1
    if quote is not None:
        raise ConditionError(f"unclosed quote in filter {text!r}")
    parts.append(text[start:])
    return parts


def _comparison(part: str, whole: str) -> Condition:
    if not part.strip():
        raise ConditionError(f"empty comparison around AND in filter {whole!r}")
    match = _COMPARISON.match(part)
    if match is None:
        raise ConditionError(
            f"cannot read {part.strip()!r} in filter {whole!r}: expected 'column op value' "
            f"with op one of = != < <= > >="
        )
    return Condition(match["column"], _OPERATORS[match["op"]], _value(match["value"], whole))


def _value(raw: str, whole: str) -> str | int | float | bool:
    if len(raw) >= 2 and raw[0] in "\"'" and raw[-1] == raw[0]:
        inner = raw[1:-1]
        if raw[0] in inner:
            raise ConditionError(f"stray quote in value {raw!r} of filter {whole!r}")
        return inner
    if raw[:1] in ("'", '"') or raw[-1:] in ("'", '"'):
        raise ConditionError(f"unbalanced quotes in value {raw!r} of filter {whole!r}")
    if _NUMBER.match(raw):
        return float(raw) if "." in raw else int(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw
