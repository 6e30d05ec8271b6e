"""FIND filters as dialogs write them, read into storage Conditions."""

from __future__ import annotations

import pytest

from pipeline.table_conditions import ConditionError, parse_conditions
from storage.base import Condition as C

READABLE = [
    ("", []),
    ("   ", []),
    ("name = fax", [C("name", "=", "fax")]),
    ("name=fax", [C("name", "=", "fax")]),
    ("name == fax", [C("name", "=", "fax")]),
    ("name = big tv", [C("name", "=", "big tv")]),
    ("price > 100", [C("price", ">", 100)]),
    ("price >= 99.5", [C("price", ">=", 99.5)]),
    ("price < -3", [C("price", "<", -3)]),
    ("price <= .5", [C("price", "<=", 0.5)]),
    ("status != done", [C("status", "!=", "done")]),
    ("status <> done", [C("status", "!=", "done")]),
    ("active = true", [C("active", "=", True)]),
    ('code = "007"', [C("code", "=", "007")]),
    ("name = 'a = b'", [C("name", "=", "a = b")]),
    ('name = "tv AND radio"', [C("name", "=", "tv AND radio")]),
    ("name = ", [C("name", "=", "")]),
    ("name = fax AND price > 100", [C("name", "=", "fax"), C("price", ">", 100)]),
    ("a = 1 and b = 2 AnD c = x y", [C("a", "=", 1), C("b", "=", 2), C("c", "=", "x y")]),
    ("user_email = ana@example.com", [C("user_email", "=", "ana@example.com")]),
]


@pytest.mark.parametrize(
    ("text", "conditions"), READABLE, ids=[t or "<empty>" for t, _ in READABLE]
)
def test_readable_filters(text: str, conditions: list[C]) -> None:
    assert parse_conditions(text) == conditions


MALFORMED = [
    ("fax", "cannot read 'fax' in filter 'fax': expected 'column op value'"),
    ("= fax", "cannot read '= fax'"),
    ("name fax", "cannot read 'name fax'"),
    ("name = fax AND", "empty comparison around AND"),
    ("name = fax AND AND price > 1", "cannot read 'AND price > 1'"),
    ("AND name = fax", "cannot read 'AND name = fax'"),
    ('name = "fax', "unclosed quote"),
    ('name = fax"', "unclosed quote"),
    ("name = 'it''s'", "stray quote"),
    ("1name = x", "cannot read '1name = x'"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED, ids=[t for t, _ in MALFORMED])
def test_malformed_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConditionError) as error:
        parse_conditions(text)
    assert message in str(error.value)
