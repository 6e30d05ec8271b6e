"""Errors point at file:line:col (syntax, analysis) or file:line (runtime)."""

from __future__ import annotations

import pytest

from basic import (
    BasicError,
    BasicRuntimeError,
    BasicSyntaxError,
    Limits,
    MissingCapability,
    check_source,
    compile_source,
)
from tests.basic.transcript import converse

# (program, "line:col: message" of the first error)
SYNTAX_ERRORS = [
    ('TALK "hi"\nIF x = 1 THEN\n  TALK "a"\nEND IF\nTALK (1 +\n', "5:10: unexpected end of line"),
    ('TALK "unterminated\n', "1:6: unexpected character '\"'"),
    ('FOOBAR "x"\n', "1:1: unknown keyword or statement 'FOOBAR'"),
    ("  END IF\n", "1:3: END IF without IF"),
    ('IF a THEN\n  TALK "x"\n', "1:1: IF without END IF"),
    ("FOR i = 1 TO 3\n  TALK i\nEND IF\n", "1:1: FOR without NEXT"),
    ("ELSE\n", "1:1: ELSE without IF"),
    ("NEXT\n", "1:1: NEXT without FOR"),
    ("HEAR x AS SHOESIZE\n", "1:1: unknown HEAR type SHOESIZE"),
    ("CALL Missing(1)\n", "1:1: undefined SUB 'missing'"),
    (
        "SUB Greet(who)\n  TALK who\nEND SUB\nCALL Greet(1, 2)\n",
        "4:1: SUB greet takes 1 argument, got 2",
    ),
    ('x = LEFT("abc")\n', "1:5: LEFT takes 2 arguments, got 1"),
    (
        'SEND FILE "menu.pdf"\n',
        "1:6: SEND FILE needs its recipient: SEND FILE TO recipient, file[, caption]",
    ),
    ('SEND FILE TO "+5581999999999"\n', "1:1: SEND FILE TO takes 2 to 3 arguments, got 1"),
    ("EXIT FOR\n", "1:1: EXIT FOR outside FOR"),
    ("BEGIN TALK\nhello\n", "1:1: BEGIN TALK without END TALK"),
    ('TALK "a ${1 +} b"\n', "1:13: invalid expression in ${...}: '1 +'"),
    (
        'SELECT CASE x\n  TALK "before"\n  CASE 1\nEND SELECT\n',
        "2:3: statement before the first CASE",
    ),
]


@pytest.mark.parametrize(("program", "expected"), SYNTAX_ERRORS)
def test_syntax_error_location_and_message(program: str, expected: str) -> None:
    with pytest.raises(BasicSyntaxError) as info:
        compile_source(program, "dialogs/start.bas")
    assert str(info.value) == f"dialogs/start.bas:{expected}"
    line, column, message = expected.split(":", 2)
    assert (info.value.file, info.value.line, info.value.column) == (
        "dialogs/start.bas",
        int(line),
        int(column),
    )
    assert info.value.message == message.strip()


def test_check_source_reports_every_bad_line() -> None:
    errors = check_source('TALK "ok"\nFOOBAR 1\nTALK (\nEND IF\n', "a.bas")
    assert [str(e) for e in errors] == [
        "a.bas:2:1: unknown keyword or statement 'FOOBAR'",
        "a.bas:3:7: unexpected end of line",
        "a.bas:4:1: END IF without IF",
    ]


def test_check_source_is_empty_for_a_good_file() -> None:
    assert check_source('TALK "fine"\n', "good.bas") == []


def test_errors_share_one_root() -> None:
    assert issubclass(BasicSyntaxError, BasicError)
    assert issubclass(MissingCapability, BasicRuntimeError)
    assert issubclass(BasicRuntimeError, BasicError)


# (program, "line: message")
RUNTIME_ERRORS = [
    ('TALK "ok"\nx = 1 / 0\n', "2: division by zero"),
    ('x = "abc"\n\nIF x > 3 THEN TALK "?"\n', "3: cannot compare 'abc' with '3'"),
    ('THROW "custom failure"\n', "1: custom failure"),
    ("items = [1, 2]\nTALK items[5]\n", "2: index 5 out of range (0 to 1)"),
    ('CALL "nowhere.bas"\n', "1: dialog 'nowhere.bas' not found"),
    ('x = LLM "hi"\n', "1: LLM needs the host capability 'llm', which is not available"),
    (
        'SET BOT MEMORY "k", 1\n',
        "1: SET BOT MEMORY needs the host capability 'set_bot_memory', which is not available",
    ),
    (
        "HEAR photo AS IMAGE\n",
        "1: HEAR AS IMAGE needs the host capability 'receive_media', which is not available",
    ),
]


@pytest.mark.parametrize(("program", "expected"), RUNTIME_ERRORS)
async def test_runtime_error_carries_file_and_line(program: str, expected: str) -> None:
    with pytest.raises(BasicRuntimeError) as info:
        await converse(program, [])
    assert str(info.value) == f"start.bas:{expected}"
    assert info.value.file == "start.bas"
    assert info.value.line == int(expected.split(":")[0])


async def test_missing_capability_names_it() -> None:
    with pytest.raises(MissingCapability) as info:
        await converse('USE KB "docs"\n', [])
    assert info.value.capability == "use_kb"
    assert "USE KB" in info.value.message


async def test_runtime_error_after_a_hear_still_has_the_line() -> None:
    with pytest.raises(BasicRuntimeError) as info:
        await converse("HEAR n AS INTEGER\nTALK 10 / n\n", ["0"])
    assert str(info.value) == "start.bas:2: division by zero"


@pytest.mark.parametrize(
    ("program", "limits", "message"),
    [
        ("DO\nLOOP\n", Limits(max_loop_iterations=50), "loop ran more than 50 iterations"),
        (
            "WHILE 1 = 1\n  x = 1\nWEND\n",
            Limits(max_steps=5000, max_loop_iterations=10**9),
            "dialog ran more than 5000 steps in one turn",
        ),
        (
            "DO WHILE TRUE\n  x = 1\nLOOP\n",
            Limits(max_steps=10**9, max_loop_iterations=10**9, wall_time=0.05),
            "dialog ran longer than 0.05 s in one turn",
        ),
    ],
)
async def test_endless_loops_end_with_a_clear_error(
    program: str, limits: Limits, message: str
) -> None:
    with pytest.raises(BasicRuntimeError) as info:
        await converse(program, [], limits=limits)
    assert message in str(info.value)
