"""Built-in functions, and keywords that call the host (memory, HTTP, session, tables, mail)."""

from __future__ import annotations

from typing import Any

import pytest

from basic import BasicRuntimeError, Limits
from tests.basic.transcript import CapableHost, converse, run_transcript

# (expression, what TALK shows)
FUNCTIONS = [
    ('LEN("hello")', "5"),
    ('LEFT("hello", 2)', "he"),
    ('RIGHT("hello", 3)', "llo"),
    ('MID("hello", 2, 3)', "ell"),
    ('MID("hello", 3)', "llo"),
    ('UPPER("a")', "A"),
    ('LOWER("A")', "a"),
    ('TRIM("  a  ")', "a"),
    ('REPLACE("a-b-c", "-", "+")', "a+b+c"),
    ('INSTR("hello", "l")', "3"),
    ('INSTR("hello", "z")', "0"),
    ('INSTR(4, "hello", "l")', "4"),
    ('JOIN(SPLIT("a,b,c", ","), "|")', "a|b|c"),
    ('VAL("12.5kg")', "12.5"),
    ('VAL("x")', "0"),
    ('STR(12) + "!"', "12!"),
    ("INT(7.9)", "7"),
    ("ROUND(2.567, 2)", "2.57"),
    ("ROUND(2.5)", "2"),
    ("ABS(-3)", "3"),
    ("UBOUND([1, 2, 3])", "2"),
    ('ISEMPTY("")', "true"),
    ("ISNULL(nothing_here)", "true"),
    ('ISEMPTY("x")', "false"),
    ("LEN(TODAY())", "10"),
    ("LEN(NOW())", "19"),
    ('FORMAT("2024-12-25 10:30:00", "DD/MM/YYYY HH:mm")', "25/12/2024 10:30"),
    ('FORMAT(1234.5, "#,##0.00")', "1,234.50"),
    ('FORMAT(0.25, "0%")', "25%"),
    ("RANDOM(5, 5)", "5"),
    ("7 MOD 3", "1"),
    ("7 \\ 2", "3"),
    ("7 / 2", "3.5"),
    ("2 ^ 10", "1024"),
    ('"a" & 1', "a1"),
    ("-(2 + 3) * 2", "-10"),
]


@pytest.mark.parametrize(("expression", "shown"), FUNCTIONS)
async def test_function(expression: str, shown: str) -> None:
    conversation = await converse(f"TALK {expression}\n", [])
    assert conversation.said == [shown]


async def test_memory_session_and_context() -> None:
    host = CapableHost(session={"user_id": "u1", "channel": "web"})
    await run_transcript(
        """
        SET BOT MEMORY "greeting", "hello"
        SET_USER_MEMORY "visits", 3
        g = GET BOT MEMORY("greeting")
        v = GET USER MEMORY "visits"
        user = GET "session.user_id"
        TALK g + " " + (v + 1) + " " + user + "@" + (GET "session.channel")
        SET CONTEXT "shop" AS "We sell fruit."
        """,
        "hello 4 u1@web",
        host=host,
    )
    assert host.bot_memory == {"greeting": "hello"}
    assert ("context", "shop", "We sell fruit.") in host.calls


async def test_http_keywords_send_headers_and_decode() -> None:
    host = CapableHost(http_responses={"https://api.example.com/items": {"count": 2}})
    await run_transcript(
        """
        SET HEADER "Authorization", "Bearer t"
        data = GET "https://api.example.com/items"
        TALK "count=" + data.count
        WITH order
            item = "fax"
        END WITH
        POST "https://api.example.com/orders", order
        """,
        "count=2",
        host=host,
    )
    assert host.calls == [
        ("http", "GET", "https://api.example.com/items", None, {"Authorization": "Bearer t"}),
        (
            "http",
            "POST",
            "https://api.example.com/orders",
            {"item": "fax"},
            {"Authorization": "Bearer t"},
        ),
    ]


async def test_http_calls_per_turn_are_limited() -> None:
    with pytest.raises(BasicRuntimeError, match="more than 2 HTTP calls in one turn"):
        await converse(
            'FOR i = 1 TO 5\n  x = GET "https://a.example/"\nNEXT\n',
            [],
            host=CapableHost(),
            limits=Limits(max_http_calls=2),
        )


async def test_find_returns_rows_or_a_falsy_value_and_save_builds_rows() -> None:
    host = CapableHost(tables={"people.csv": [{"name": "ana", "age": "30"}]})
    await run_transcript(
        """
        rows = FIND "people.csv", "name = ana"
        FOR EACH row IN rows
            TALK row.name + " " + row.age
        NEXT
        none = FIND "people.csv", "name = bob"
        IF NOT none THEN TALK "no bob"
        name = "bob"
        age = 40
        SAVE "people.csv", name, age
        """,
        """
        ana 30
        no bob
        """,
        host=host,
    )
    assert host.tables["people.csv"][-1] == {"name": "bob", "age": 40}


async def test_mail_talk_to_transfer_and_llm() -> None:
    host = CapableHost(llm_answer="42")
    await run_transcript(
        """
        SEND MAIL "a@b.com", "Subject", "Body"
        TALK TO "+5581999999999", "Hi there"
        SEND FILE TO "+5581999999999", "menu.pdf"
        send_file_to "telegram:42", "photos/" + "a.png", "A " + 1
        answer = LLM "What is the answer?"
        TALK "LLM says " + answer
        TRANSFER TO HUMAN
        """,
        "LLM says 42",
        host=host,
    )
    assert host.calls == [
        ("mail", "a@b.com", "Subject", "Body"),
        ("talk_to", "+5581999999999", "Hi there"),
        ("send_file_to", "+5581999999999", "menu.pdf", ""),
        ("send_file_to", "telegram:42", "photos/a.png", "A 1"),
        ("llm", "What is the answer?"),
        ("transfer", {}),
    ]


TRANSFERS = [
    ("TRANSFER TO HUMAN", {}),
    ('TRANSFER TO HUMAN "John Smith"', {"name": "John Smith"}),
    ('TRANSFER TO HUMAN "sales", "high"', {"department": "sales", "priority": "high"}),
    (
        'result = TRANSFER TO HUMAN "support", "urgent", "Customer appears frustrated"',
        {"department": "support", "priority": "urgent", "reason": "Customer appears frustrated"},
    ),
    (
        'result = transfer_to_human_ex(#{name: "John", department: "support", priority: "high",'
        ' reason: "billing", context: "since 2020"})',
        {
            "name": "John",
            "department": "support",
            "priority": "high",
            "reason": "billing",
            "context": "since 2020",
        },
    ),
    ('r = transfer_to_human("bob")\nTALK r.status', {"name": "bob"}),
]


@pytest.mark.parametrize(("source", "request_"), TRANSFERS, ids=[s for s, _ in TRANSFERS])
async def test_transfer_to_human_reads_general_bots_forms(
    source: str, request_: dict[str, str]
) -> None:
    host = CapableHost()
    await run_transcript(source, "queued" if "TALK" in source else "", host=host)
    assert host.calls == [("transfer", request_)]


async def test_transfer_to_human_answers_its_result() -> None:
    await run_transcript(
        """
        result = TRANSFER TO HUMAN "support", "high"
        IF result.success THEN
            TALK "You are #" + result.queue_position + " in line."
        END IF
        """,
        "You are #1 in line.",
        host=CapableHost(),
    )


class MediaHost(CapableHost):
    async def receive_media(self, kind: str, text: str) -> Any:
        return f"https://files.example/{kind}/{text}" if text else None


async def test_hear_media_asks_the_host_for_the_stored_file() -> None:
    await run_transcript(
        """
        HEAR photo AS IMAGE
        TALK photo
        """,
        """
        > p1.jpg
        https://files.example/image/p1.jpg
        """,
        host=MediaHost(),
    )
