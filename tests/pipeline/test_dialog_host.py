"""What BASIC keywords do in this gateway: session state, memory, tables, session fields.

Each test runs a small dialog with the real host over real stores (PostgreSQL), as the bot
``llm-tools`` (whose ``get-price.bas`` and ``send-email.bas`` are tools).
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from basic import BasicRuntimeError, Interpreter, MissingCapability, compile_source
from pipeline.dialog_host import DialogHost
from pipeline.session_state import read_state
from pipeline.turn import Turn
from storage.base import Condition
from storage.services import Stores

MakeTurn = Callable[..., Turn]


async def run(turn: Turn, source: str) -> list[str]:
    """Run ``source`` as the turn's dialog; what it said."""
    said: list[str] = []

    async def collect(text: str) -> None:
        said.append(text)

    program = compile_source(textwrap.dedent(source), "test.bas")
    interpreter = Interpreter({"test": program}, DialogHost(turn, talk=collect))
    await interpreter.start("test")
    return said


async def test_prompt_context_and_tools_go_to_the_session_state(make_turn: MakeTurn) -> None:
    turn = make_turn("llm-tools")
    await run(
        turn,
        """
        BEGIN SYSTEM PROMPT
        You sell products.
        END SYSTEM PROMPT
        SET CONTEXT "catalog" AS "Prices are in BRL."
        ADD TOOL "get-price"
        USE TOOL "Send-Email.bas"
        USE TOOL "get-price"
        ADD SUGGESTION "price" AS "Check a price"
        """,
    )
    assert turn.session is not None
    state = turn.session.state
    assert state["system_prompt"].strip() == "You sell products."
    assert state["context"] == {"catalog": "Prices are in BRL."}
    assert state["tools"] == ["get-price", "send-email"]
    assert state["suggestions"] == [["price", "Check a price"]]
    await run(turn, "CLEAR TOOLS")
    assert state["tools"] == []


async def test_a_tool_that_does_not_exist_is_a_warning_and_the_dialog_goes_on(
    make_turn: MakeTurn, caplog: pytest.LogCaptureFixture
) -> None:
    turn = make_turn("llm-tools")
    said = await run(turn, 'ADD TOOL "list-prices"\nUSE TOOL "start"\nTALK "Hello"')
    assert said == ["Hello"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "test.bas:1: warning: no tool 'list-prices' in bot 'llm-tools' (a tool is a .bas with "
        "PARAM or DESCRIPTION lines; available: get-price, send-email)",
        # the start dialog is not a tool
        "test.bas:2: warning: no tool 'start' in bot 'llm-tools' (a tool is a .bas with "
        "PARAM or DESCRIPTION lines; available: get-price, send-email)",
    ]
    assert turn.session is not None
    assert read_state(turn.session).tools == []


async def test_use_kb_and_use_website_are_recorded_for_the_session(make_turn: MakeTurn) -> None:
    turn = make_turn("llm-tools")  # no website crawler here: the sites are only recorded
    said = await run(
        turn,
        """
        USE KB "products.gbkb"
        USE KB "manuals"
        USE WEBSITE "https://example.com/docs" REFRESH "1d"
        USE_WEBSITE("HTTPS://Example.com:443/blog/#latest", "30d")
        USE WEBSITE "https://example.com/docs"
        CLEAR KB "manuals"
        TALK "Welcome"
        """,
    )
    assert said == ["Welcome"]
    assert turn.session is not None
    state = turn.session.state
    assert state["knowledge_bases"] == ["products"]
    assert state["websites"] == [
        {"url": "https://example.com/blog/", "refresh": "30d"},  # one spelling per site
        {"url": "https://example.com/docs", "refresh": ""},  # named again: the bot's default
    ]
    assert state["version"] == 1
    # The questions of this conversation search its collections and its sites'.
    assert read_state(turn.session).searched_collections() == (
        "products",
        "website_example_com_blog",
        "website_example_com_docs",
    )


async def test_clear_websites_ends_the_search_of_the_sites(make_turn: MakeTurn) -> None:
    turn = make_turn("llm-tools")
    await run(turn, 'USE WEBSITE "https://example.com/"\nUSE KB "faq"\nCLEAR WEBSITES\n')
    assert turn.session is not None
    assert read_state(turn.session).websites == []
    assert read_state(turn.session).searched_collections() == ("faq",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('USE WEBSITE "ftp://example.com/"', "it must start with http:// or https://"),
        ('USE WEBSITE "example.com"', "it must start with http:// or https://"),
        ('USE WEBSITE "https://user:secret@example.com/"', "user name or password cannot be"),
        ('USE WEBSITE "https://exa mple.com:x/"', "not a website URL that can be crawled"),
        ('USE WEBSITE "https://example.com/" REFRESH "soon"', "not an interval"),
        ('USE WEBSITE "https://example.com/" REFRESH "0d"', "not an interval"),
    ],
)
async def test_a_website_that_cannot_be_crawled_is_the_dialogs_error(
    make_turn: MakeTurn, line: str, message: str
) -> None:
    turn = make_turn("llm-tools")
    with pytest.raises(BasicRuntimeError, match=message) as error:
        await run(turn, line)
    assert str(error.value).startswith("test.bas:1: USE WEBSITE: ")
    assert "secret" not in str(error.value)
    assert turn.session is not None and read_state(turn.session).websites == []


SESSION_FIELDS = [
    ({}, 'TALK GET "session.user_id"', "{user}"),
    ({}, 'TALK GET "session.channel"', "test"),
    ({}, 'TALK GET "session.bot"', "llm-tools"),
    ({}, 'x = GET "session.user_email"\nTALK "[" + x + "]"', "[]"),
    ({}, 'x = GET "session.user_phone"\nTALK "[" + x + "]"', "[]"),
    ({"user_email": "ana@example.com"}, 'TALK GET "session.user_email"', "ana@example.com"),
    ({"user_phone": "+5511999990000"}, 'TALK GET "session.USER_PHONE"', "+5511999990000"),
]


@pytest.mark.parametrize(("raw", "source", "said"), SESSION_FIELDS)
async def test_session_fields(
    make_turn: MakeTurn, raw: dict[str, str], source: str, said: str
) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    assert await run(make_turn("llm-tools", user=user, raw=raw), source) == [said.format(user=user)]


async def test_an_unknown_session_field(make_turn: MakeTurn) -> None:
    with pytest.raises(BasicRuntimeError, match="unknown session field 'age'"):
        await run(make_turn("llm-tools"), 'TALK GET "session.age"')


async def test_bot_memory_is_shared_user_memory_is_per_user(make_turn: MakeTurn) -> None:
    ana, bia = f"ana-{uuid.uuid4().hex[:6]}", f"bia-{uuid.uuid4().hex[:6]}"
    key = f"visits-{uuid.uuid4().hex[:6]}"
    count = f"""
        n = GET BOT MEMORY("{key}")
        IF NOT n THEN n = 0
        SET BOT MEMORY "{key}", n + 1
        mine = GET USER MEMORY("{key}")
        IF NOT mine THEN mine = 0
        SET USER MEMORY "{key}", mine + 1
        TALK "bot " + (n + 1) + ", user " + (mine + 1)
        """
    assert await run(make_turn("llm-tools", user=ana), count) == ["bot 1, user 1"]
    assert await run(make_turn("llm-tools", user=ana), count) == ["bot 2, user 2"]
    assert await run(make_turn("llm-tools", user=bia), count) == ["bot 3, user 1"]
    # another bot never sees this bot's memory
    assert await run(make_turn("reminder", user=ana), count) == ["bot 1, user 1"]


async def test_memory_keeps_json_values(make_turn: MakeTurn) -> None:
    turn = make_turn("llm-tools")
    key = f"cart-{uuid.uuid4().hex[:6]}"
    assert await run(
        turn,
        f"""
        WITH item
            name = "fax"
            qty = 2
        END WITH
        SET USER MEMORY "{key}", item
        again = GET USER MEMORY("{key}")
        TALK again.name + " x" + again.qty
        """,
    ) == ["fax x2"]


async def test_tables_find_save_update_delete(make_turn: MakeTurn, stores: Stores) -> None:
    table = f"orders-{uuid.uuid4().hex[:6]}.csv"
    said = await run(
        make_turn("llm-tools"),
        f"""
        id = "1"
        product = "fax"
        total = 500
        SAVE "{table}", id, product, total
        WITH order
            id = "2"
            product = "tv"
            total = 1200
        END WITH
        SAVE "{table}", order
        id = "3"
        product = "mobile"
        total = 200
        INSERT "{table}", id, product, total
        rows = FIND "{table}", "total > 300"
        TALK LEN(rows) + " big orders, first " + rows.product
        order.total = 1100
        SAVE "{table}", order
        rows = FIND "{table}", "id = 2"
        TALK "order 2 now " + rows.total
        status = "sent"
        UPDATE "{table}", "product = mobile", status
        n = DELETE "{table}", "total < 1000 AND product = fax"
        TALK "deleted " + n
        rows = FIND "{table}", "product = fax"
        IF NOT rows THEN TALK "no fax orders"
        """,
    )
    assert said == ["2 big orders, first fax", "order 2 now 1100", "deleted 1", "no fax orders"]
    rows = await stores.tables.find("llm-tools", table, [])
    assert [(r["id"], r["product"], r.get("status")) for r in rows] == [
        ("2", "tv", None),
        ("3", "mobile", "sent"),
    ]
    assert await stores.tables.find("reminder", table, [Condition("id", "=", "2")]) == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            'rows = FIND "products.csv", "name fax"',
            "test.bas:1: FIND: cannot read 'name fax' in filter 'name fax'",
        ),
        ('n = DELETE "products.csv", ""', 'test.bas:1: DELETE needs a filter such as "id = 42"'),
        ('UPDATE "products.csv", "", x', 'test.bas:1: UPDATE needs a filter such as "id = 42"'),
    ],
)
async def test_table_errors_name_the_line(make_turn: MakeTurn, source: str, message: str) -> None:
    with pytest.raises(BasicRuntimeError) as error:
        await run(make_turn("llm-tools"), source)
    assert str(error.value).startswith(message)


MISSING = [
    ('x = LLM "hi"', "llm", "LLM"),
    ('ADD BOT "fraud" WITH TRIGGER "fraud, stolen"', "add_bot", "ADD BOT"),
    ('CREATE_DRAFT "a@example.com", "Subject", "Body"', "create_draft", "CREATE DRAFT"),
    ('SET USER "u-2"', "set_user", "SET USER"),
    ('WRITE "notes.txt", "text"', "write_file", "WRITE"),
    ('x = FILTER rows, "a = 1"', "filter_rows", "FILTER"),
    ('x = AGGREGATE "SUM", rows, "price"', "aggregate", "AGGREGATE"),
    ('SEND TEMPLATE "welcome", "+5511999990000"', "send_template", "SEND TEMPLATE"),
    ('TALK TO "+5511999990000", "hi"', "talk_to", "TALK TO"),
    ("TRANSFER TO HUMAN", "transfer_to_human", "TRANSFER TO HUMAN"),
]


@pytest.mark.parametrize(
    ("source", "capability", "keyword"), MISSING, ids=[k for _, _, k in MISSING]
)
async def test_capabilities_of_later_work_are_missing_by_name(
    make_turn: MakeTurn, source: str, capability: str, keyword: str
) -> None:
    with pytest.raises(MissingCapability) as error:
        await run(make_turn("llm-tools"), source)
    assert error.value.capability == capability
    assert str(error.value) == (
        f"test.bas:1: {keyword} needs the host capability '{capability}', which is not available"
    )


async def test_hear_as_image_needs_media(make_turn: MakeTurn) -> None:
    turn = make_turn("llm-tools")
    turn.services = replace(turn.services, media=None)  # a process that keeps no files
    with pytest.raises(MissingCapability) as error:
        await run(turn, "HEAR photo AS IMAGE")
    assert str(error.value) == (
        "test.bas:1: HEAR AS IMAGE needs the host capability 'receive_media', "
        "which is not available"
    )
