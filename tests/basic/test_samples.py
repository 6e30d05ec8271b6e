"""The real General Bots templates in tests/bots (see each SOURCES.txt) check clean and run.

Dialogs run as scripted conversations; tools are called directly with arguments; LLM, KB,
tables, memory and mail are answered by a test host.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from basic import BasicRuntimeError, check_source, compile_source
from basic.tools import anthropic_tool, is_tool, openai_tool
from tests.basic.transcript import CapableHost, run_transcript

BOTS = Path(__file__).parent.parent / "bots"
# The packages copied from General Bots' templates; send-email.bas of its "default"
# template sits in the llm-tools copy.
PACKAGES = ("analytics", "llm-tools", "reminder")
PACKAGE_OF = {"default": "llm-tools"}
SAMPLES = sorted(path for package in PACKAGES for path in (BOTS / f"{package}.gbai").rglob("*.bas"))


def sample(package: str, dialog: str) -> str:
    folder = PACKAGE_OF.get(package, package)
    return (BOTS / f"{folder}.gbai" / f"{folder}.gbdialog" / f"{dialog}.bas").read_text()


def dialogs(package: str, *names: str) -> dict[str, Any]:
    compiled = [compile_source(sample(package, name), f"{name}.bas") for name in names]
    return {p.name: p for p in compiled}


def products() -> list[dict[str, Any]]:
    with (BOTS / "llm-tools.gbai" / "llm-tools.gbdata" / "products.csv").open() as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_checks_clean(path: Path) -> None:
    assert check_source(path.read_text(), path.name) == []


async def test_llm_tools_start_offers_tool_kb_suggestions_and_prompt() -> None:
    host = CapableHost()
    await run_transcript(
        dialogs("llm-tools", "start"),
        """
        **Product Assistant**
        I can help you check product prices and information.
        Just ask me about any product and I'll look it up for you.
        """,
        host=host,
    )
    assert host.calls[:2] == [("use_tool", "get-price"), ("use_kb", "products.gbkb")]
    assert host.suggestions == [
        ("price", "Check product price"),
        ("products", "View products"),
        ("help", "How to use"),
    ]
    kind, prompt = host.calls[2]
    assert kind == "system_prompt"
    assert prompt.startswith("You are a product assistant with access to internal tools.\n\n")
    assert prompt.endswith("just act on their requests naturally.")


@pytest.mark.parametrize(
    ("product", "price"), [("fax", "500"), ("chocolate", "30"), ("spaceship", -1)]
)
async def test_get_price_tool_returns_the_price_or_minus_one(product: str, price: Any) -> None:
    host = CapableHost(tables={"products.csv": products()})
    conversation = await run_transcript(
        dialogs("llm-tools", "get-price"),
        "",
        host=host,
        start="get-price",
        arguments={"product": product},
    )
    assert conversation.outcome is not None and conversation.outcome.result == price
    assert host.calls == [("find", "products.csv", f"name = {product}")]


def test_get_price_tool_schema_for_openai_and_anthropic() -> None:
    program = dialogs("llm-tools", "get-price")["get-price"]
    assert is_tool(program)
    parameters = {
        "type": "object",
        "properties": {
            "product": {
                "type": "string",
                "examples": ["fax"],
                "description": "Name of the product to get price for",
            }
        },
        "required": ["product"],
    }
    description = "Get the price of a product by name from the product catalog"
    assert openai_tool(program) == {
        "type": "function",
        "function": {"name": "get-price", "description": description, "parameters": parameters},
    }
    assert anthropic_tool(program) == {
        "name": "get-price",
        "description": description,
        "input_schema": parameters,
    }


def test_send_email_schema_has_formats_and_optional_sender() -> None:
    schema = openai_tool(dialogs("default", "send-email")["send-email"])["function"]
    assert schema["parameters"]["required"] == ["to_email", "subject", "body"]
    assert schema["parameters"]["properties"]["from_email"]["format"] == "email"


async def test_send_email_tool_mails_logs_and_returns_the_record() -> None:
    host = CapableHost()
    conversation = await run_transcript(
        dialogs("default", "send-email"),
        "Email sent to ana@example.com",
        host=host,
        start="send-email",
        arguments={"to_email": "ana@example.com", "subject": "Hi", "body": "Hello Ana"},
    )
    assert ("mail", "ana@example.com", "Hi", "Hello Ana") in host.calls
    assert conversation.outcome is not None
    record = conversation.outcome.result
    assert record["from"] == "noreply@pragmatismo.com.br"
    assert record["to"] == "ana@example.com"
    assert host.tables["email_log.csv"] == [record]


async def test_add_reminder_tool() -> None:
    host = CapableHost(session={"user_email": "ana@example.com", "user_phone": "+5581999999999"})
    conversation = await run_transcript(
        dialogs("reminder", "add-reminder"),
        """
        Reminder set: Call John
        When: tomorrow at 9am
        Notification: chat
        """,
        host=host,
        start="add-reminder",
        arguments={"when": "tomorrow at 9am", "subject": "Call John"},
    )
    assert conversation.outcome is not None
    reminder_id = conversation.outcome.result
    today = dt.date.today().strftime("%Y%m%d")
    assert re.fullmatch(rf"REM-{today}-\d{{4}}", reminder_id)
    assert host.bot_memory == {"last_reminder": reminder_id}
    (row,) = host.tables["reminders.csv"]
    assert row["email"] == "ana@example.com" and row["status"] == "pending"
    assert row["remindAt"] == "tomorrow at 9am"


async def test_reminder_start_sets_context_and_prompt() -> None:
    host = CapableHost()
    await run_transcript(
        dialogs("reminder", "start"),
        """
        **Reminder Assistant**
        I can help you with:
        • Create new reminders
        • View your reminders
        • Manage and snooze reminders
        • Delete completed reminders
        What would you like to do?
        """,
        host=host,
    )
    assert (
        "context",
        "reminders",
        "You are a reminder assistant helping users manage their "
        "tasks and reminders. Help with creating, viewing, and managing reminders. Be "
        "helpful and confirm actions.",
    ) in host.calls
    assert [c[0] for c in host.calls].count("use_tool") == 4


ANALYTICS_MENU = """
    Welcome to the Analytics Center. I can help you understand your platform metrics and generate reports.
    What would you like to analyze?
    1. Platform Overview - Key metrics summary
    2. Message Analytics - Conversation statistics
    3. User Analytics - Active users and sessions
    4. Performance Metrics - Response times and throughput
    5. LLM Usage - Token consumption and costs
    6. Storage Analytics - Disk usage and file statistics
    7. Error Analysis - Error patterns and trends
    8. Generate Custom Report
"""  # noqa: E501


async def test_analytics_free_question_goes_to_the_llm() -> None:
    host = CapableHost(llm_answer="Traffic doubled this week.")
    await run_transcript(
        dialogs("analytics", "start"),
        textwrap.dedent(ANALYTICS_MENU)
        + """
> 42
> how is traffic?
Traffic doubled this week.
""",
        host=host,
    )
    assert (
        "llm",
        "Analyze this analytics query and provide insights: how is traffic?",
    ) in host.calls
    assert host.calls[0][0] == "context"


async def test_analytics_menu_calls_a_dialog_the_package_lacks() -> None:
    with pytest.raises(BasicRuntimeError, match=r"platform-overview\.bas' not found"):
        await run_transcript(
            dialogs("analytics", "start"),
            textwrap.dedent(ANALYTICS_MENU) + "> 1",
            host=CapableHost(),
        )
