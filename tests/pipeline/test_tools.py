"""BASIC tools run with arguments: the RETURN value for the LLM, the TALK output for the user.

The bot is General Bots' llm-tools template (get-price.bas, products.csv) plus the default
template's send-email.bas (see tests/bots/llm-tools.gbai/SOURCES.txt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pipeline.bots import BotRegistry
from pipeline.mail import MailSettings
from pipeline.tools import ToolError, ToolResult, run_tool, tool_programs, tool_schemas
from pipeline.turn import Turn
from storage.base import Condition
from storage.services import Stores
from tests.pipeline.smtp import Inbox, smtp_inbox

MakeTurn = Callable[..., Turn]


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as server:
        yield server


@pytest.fixture
def mail_settings(inbox: Inbox) -> MailSettings:
    return MailSettings(host=inbox.host, port=inbox.port, sender="bot@llm-tools.test")


@pytest.mark.parametrize(
    ("product", "price"),
    [
        ("fax", "500"),  # CSV values are text
        ("FAX", "500"),  # text compares without regard to case
        ("chocolate", "30"),  # " 30" in the file: values are trimmed
        ("typewriter", -1),  # not in the catalog
    ],
)
async def test_get_price(make_turn: MakeTurn, product: str, price: object) -> None:
    result = await run_tool(make_turn("llm-tools"), "get-price", {"product": product})
    assert result == ToolResult(price, ())


async def test_send_email_mails_logs_and_talks(
    make_turn: MakeTurn, inbox: Inbox, stores: Stores
) -> None:
    turn = make_turn("llm-tools")
    result = await run_tool(
        turn,
        "send-email",
        {"to_email": "ana@example.com", "subject": "Your quote", "body": "The fax costs 500."},
    )
    assert result.messages == ("Email sent to ana@example.com",)
    assert result.result["to"] == "ana@example.com"
    assert result.result["from"] == "noreply@pragmatismo.com.br"  # the OPTIONAL param's default
    mail = inbox.received[-1]
    assert mail.recipients == ["ana@example.com"]
    assert mail.message["Subject"] == "Your quote"
    logged = await stores.tables.find(
        "llm-tools", "email_log.csv", [Condition("subject", "=", "Your quote")]
    )
    assert [(row["to"], row["body"]) for row in logged][-1] == (
        "ana@example.com",
        "The fax costs 500.",
    )
    assert turn.replies == 0  # a tool's TALK output is returned, not sent


async def test_arguments_match_without_case_and_extra_ones_are_ignored(
    make_turn: MakeTurn,
) -> None:
    result = await run_tool(
        make_turn("llm-tools"), "Get-Price.bas", {"PRODUCT": "tv", "currency": "BRL"}
    )
    assert result.result == "1200"


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("get-price", {}, "tool 'get-price' needs the argument(s) product"),
        (
            "send-email",
            {"to_email": "a@b.c"},
            "tool 'send-email' needs the argument(s) subject, body",
        ),
        ("start", {}, "no tool 'start' in bot 'llm-tools'"),
        ("list-prices", {}, "no tool 'list-prices' in bot 'llm-tools'"),
    ],
)
async def test_tool_errors(
    make_turn: MakeTurn, name: str, arguments: dict[str, str], message: str
) -> None:
    with pytest.raises(ToolError) as error:
        await run_tool(make_turn("llm-tools"), name, arguments)
    assert str(error.value) == message


async def test_a_failing_tool_reports_file_and_line(make_turn: MakeTurn) -> None:
    with pytest.raises(ToolError) as error:
        await run_tool(make_turn("fetch-guarded"), "lookup", {"url": "http://127.0.0.1:9/fax"})
    assert str(error.value).startswith(
        "tool 'lookup' failed: "
        f"{make_turn('fetch-guarded').bot.package.dialog_files['lookup']}:3: "
        "GET http://127.0.0.1:9/fax: refused to connect to 127.0.0.1"
    )


async def test_a_tool_cannot_wait_for_the_user(make_turn: MakeTurn) -> None:
    with pytest.raises(ToolError) as error:
        await run_tool(make_turn("fetch-guarded"), "confirm")
    assert str(error.value) == (
        "tool 'confirm' waited for the user's answer (HEAR), which a tool cannot do"
    )


async def test_the_schemas_of_a_bots_tools(registry: BotRegistry) -> None:
    bot = registry.get("llm-tools")
    assert bot is not None
    tools = tool_programs(bot)
    assert list(tools) == ["get-price", "send-email"]
    schema = tool_schemas(tools["get-price"])
    parameters = {
        "type": "object",
        "properties": {
            "product": {
                "type": "string",
                "description": "Name of the product to get price for",
                "examples": ["fax"],
            }
        },
        "required": ["product"],
    }
    description = "Get the price of a product by name from the product catalog"
    assert schema == {
        "name": "get-price",
        "openai": {
            "type": "function",
            "function": {"name": "get-price", "description": description, "parameters": parameters},
        },
        "anthropic": {"name": "get-price", "description": description, "input_schema": parameters},
    }
    email = tool_schemas(tools["send-email"])["anthropic"]["input_schema"]
    assert email["required"] == ["to_email", "subject", "body"]  # from_email is OPTIONAL
    assert email["properties"]["to_email"]["format"] == "email"
