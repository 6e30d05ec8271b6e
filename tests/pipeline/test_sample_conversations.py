"""General Bots' own templates, talked to through the real pipeline and real stores.

Where a template needs a capability this gateway does not have yet (LLM, knowledge bases), the
user gets the polite reply and the log names the keyword, its file and line. Tools are called
directly with arguments, as the LLM will call them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.dialog import DIALOG_ERROR_REPLY
from pipeline.tools import run_tool
from pipeline.turn import Turn
from storage.base import Condition
from storage.services import Stores

Talk = Callable[[str], Any]

ANALYTICS_MENU = [
    "Welcome to the Analytics Center. I can help you understand your platform metrics and "
    "generate reports.",
    "What would you like to analyze?",
    "1. Platform Overview - Key metrics summary",
    "2. Message Analytics - Conversation statistics",
    "3. User Analytics - Active users and sessions",
    "4. Performance Metrics - Response times and throughput",
    "5. LLM Usage - Token consumption and costs",
    "6. Storage Analytics - Disk usage and file statistics",
    "7. Error Analysis - Error patterns and trends",
    "8. Generate Custom Report",
]


def logged_error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    return errors[0]


PRODUCT_GREETING = (
    "**Product Assistant**\n\nI can help you check product prices and information.\n\n"
    "Just ask me about any product and I'll look it up for you."
)
REMINDER_GREETING = (
    "**Reminder Assistant**\n\nI can help you with:\n• Create new reminders\n"
    "• View your reminders\n• Manage and snooze reminders\n• Delete completed reminders\n\n"
    "What would you like to do?"
)


async def test_llm_tools_start_greets_with_its_knowledge_base_recorded(
    chat: Callable[..., Talk],
) -> None:
    talk = chat("llm-tools")
    assert await talk("hi") == [PRODUCT_GREETING]  # USE KB "products.gbkb" is recorded
    # the dialog is over; the next message finds no dialog and, without an LLM, the fallback
    assert await talk("price of fax?") == ["Sorry, I have no answer for that."]


async def test_reminder_start_warns_of_the_tools_this_copy_lacks_and_greets(
    chat: Callable[..., Talk], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="basic.machine"):
        assert await chat("reminder")("hello") == [REMINDER_GREETING]
    warnings = [r.getMessage() for r in caplog.records if r.name == "basic.machine"]
    assert [re.sub(r".*reminder\.gbdialog/", "", w).split(" (")[0] for w in warnings] == [
        "start.bas:2: warning: no tool 'list-reminders' in bot 'reminder'",
        "start.bas:3: warning: no tool 'delete-reminder' in bot 'reminder'",
        "start.bas:4: warning: no tool 'snooze-reminder' in bot 'reminder'",
    ]


async def test_reminder_add_reminder_as_a_tool(
    make_turn: Callable[..., Turn], stores: Stores
) -> None:
    turn = make_turn("reminder", raw={"user_email": "ana@example.com"})
    result = await run_tool(
        turn, "add-reminder", {"when": "tomorrow at 9am", "subject": "Call John"}
    )
    assert re.fullmatch(r"REM-\d{8}-\d{4}", result.result)
    assert result.messages == (
        "Reminder set: Call John",
        "When: tomorrow at 9am",
        "Notification: chat",
    )
    saved = await stores.tables.find(
        "reminder", "reminders.csv", [Condition("id", "=", result.result)]
    )
    assert len(saved) == 1
    assert {k: saved[0][k] for k in ("message", "notifyby", "email", "phone", "status")} == {
        "message": "Call John",
        "notifyby": "chat",
        "email": "ana@example.com",
        "phone": "",
        "status": "pending",
    }
    assert await stores.memory.get("reminder", "last_reminder") == result.result


async def test_analytics_menu_reports_to_missing_dialogs(
    chat: Callable[..., Talk], caplog: pytest.LogCaptureFixture
) -> None:
    talk = chat("analytics")
    assert await talk("hi") == ANALYTICS_MENU
    assert await talk("one") == ["Please enter a whole number."]  # HEAR choice AS INTEGER
    with caplog.at_level(logging.ERROR, logger="pipeline.dialog"):
        assert await talk("1") == [DIALOG_ERROR_REPLY]
    assert re.search(
        r"analytics\.gbdialog/start\.bas:28: dialog 'platform-overview\.bas' "
        r"not found$",
        logged_error(caplog),
    )
    # no dead end: the next message starts the start dialog again
    assert await talk("hello?") == ANALYTICS_MENU
    assert await talk("5") == [DIALOG_ERROR_REPLY]  # CALL "llm-usage.bas": missing too


async def test_analytics_free_question_needs_an_llm(
    chat: Callable[..., Talk], caplog: pytest.LogCaptureFixture
) -> None:
    talk = chat("analytics")
    assert await talk("hi") == ANALYTICS_MENU
    assert await talk("9") == []  # CASE ELSE: SET CONTEXT, then HEAR query
    with caplog.at_level(logging.ERROR, logger="pipeline.dialog"):
        assert await talk("why did errors grow?") == [DIALOG_ERROR_REPLY]
    assert re.search(
        r"analytics\.gbdialog/start\.bas:\d+: LLM needs the host capability "
        r"'llm', which is not available \(no LLM provider configured: set llm-provider, "
        r"llm-key and llm-model in the bot's config\.csv, .*\)$",
        logged_error(caplog),
    )
