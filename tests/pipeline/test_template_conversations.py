"""General Bots' template packages (tests/templates-corpus) talked to through the real pipeline
on real stores, as transcripts: the user's messages and the bot's exact replies.  Each greets
on the first message, or says politely that it cannot, and runs until a capability this
gateway lacks yet (the LLM) is reached.

With no LLM provider configured, a message no dialog takes gets the bot's Not Understood
message; the tools the LLM would call are run here as it would run them (``run_tool``), in
the same package and stores (tests/pipeline/llm_turns has them called by a model).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from channels.base import InboundMessage, OutboundMessage
from pipeline.bots import BotRegistry
from pipeline.dialog import DIALOG_ERROR_REPLY
from pipeline.dispatcher import Dispatcher
from pipeline.services import Services
from pipeline.tools import ToolError, ToolResult, run_tool
from pipeline.turn import Turn
from storage.base import Condition, Session
from storage.services import Stores

CORPUS = Path(__file__).resolve().parent.parent / "templates-corpus"
FALLBACK = "Sorry, I have no answer for that."

Reply = tuple[str, tuple[str, ...]]  # text and button labels
Talk = Callable[[str], Awaitable[list[Reply]]]


class _Replies:
    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []

    async def delta(self, text: str) -> None:
        pass

    async def message(self, message: OutboundMessage) -> None:
        self.messages.append(message)


@pytest.fixture(scope="module")
async def corpus(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> BotRegistry:
    folder = tmp_path_factory.mktemp("corpus")
    for package in CORPUS.glob("*.gbai"):
        shutil.copytree(package, folder / package.name)
    registry = BotRegistry(folder, tables=stores.tables, environ={})  # no LLM
    await registry.load_all()
    return registry


@pytest.fixture
def chat(corpus: BotRegistry, services: Services) -> Callable[[str], Talk]:
    dispatcher = Dispatcher(corpus, services)

    def start(bot: str) -> Talk:
        user = f"u-{uuid.uuid4().hex[:8]}"

        async def talk(text: str) -> list[Reply]:
            sink = _Replies()
            message = InboundMessage(
                channel="test",
                bot=bot,
                conversation=user,
                sender=user,
                external_id=uuid.uuid4().hex,
                text=text,
            )
            await dispatcher.handle(message, sink)
            return [(m.text, tuple(s.label for s in m.suggestions)) for m in sink.messages]

        return talk

    return start


@pytest.fixture
def tool(corpus: BotRegistry, services: Services) -> Callable[..., Awaitable[ToolResult]]:
    """``await tool(bot, name, arguments)``: the tool run as the LLM stage would run it."""

    async def run(bot: str, name: str, arguments: dict[str, object]) -> ToolResult:
        loaded = corpus.get(bot)
        assert loaded is not None
        user = f"u-{uuid.uuid4().hex[:8]}"
        message = InboundMessage(
            channel="test",
            bot=bot,
            conversation=user,
            sender=user,
            external_id=uuid.uuid4().hex,
            text="",
            raw={"user_email": "ana@example.com"},
        )
        session = Session(id=str(uuid.uuid4()), bot_id=bot, channel="test", user_id=user)
        sink = _Replies()
        turn = Turn(message=message, bot=loaded, services=services, sink=sink, session=session)
        result = await run_tool(turn, name, arguments)
        assert sink.messages == [], "a tool's TALK output is returned, not sent"
        return result

    return run


HELPDESK_GREETING = (
    "**IT Helpdesk Support**\n\nI can help you with:\n• Create a new support ticket\n"
    "• Check ticket status\n• Password resets\n• Network and VPN problems\n• Email issues\n"
    "• Hardware and software support\n\nFor urgent issues affecting multiple users, mention "
    '"urgent" or "critical".\n\nWhat can I help you with?'
)
HELPDESK_BUTTONS = (
    "Report a problem",
    "Check ticket status",
    "Reset my password",
    "VPN issues",
    "Email not working",
    "View my tickets",
)


async def test_helpdesk_greets_with_its_buttons_and_waits_for_the_llm(
    chat: Callable[[str], Talk],
) -> None:
    talk = chat("helpdesk")
    assert await talk("hi") == [(HELPDESK_GREETING, HELPDESK_BUTTONS)]
    # the greeting is over: the question would go to the LLM, which is not built yet
    assert await talk("my VPN is down") == [(FALLBACK, HELPDESK_BUTTONS)]


REMINDER_GREETING = (
    "**Reminder Assistant**\n\nI can help you with:\n• Create new reminders\n"
    "• View your reminders\n• Manage and snooze reminders\n• Delete completed reminders\n\n"
    "What would you like to do?"
)
REMINDER_BUTTONS = ("Add a reminder", "View my reminders", "Today's reminders", "Delete a reminder")


async def test_reminder_greets_its_missing_tools_are_only_warnings_and_add_reminder_saves(
    chat: Callable[[str], Talk],
    tool: Callable[..., Awaitable[ToolResult]],
    stores: Stores,
    caplog: pytest.LogCaptureFixture,
) -> None:
    talk = chat("reminder")
    with caplog.at_level(logging.WARNING):
        assert await talk("hello") == [(REMINDER_GREETING, REMINDER_BUTTONS)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [re.sub(r"^.*?reminder\.gbdialog/", "", w).split(" (")[0] for w in warned] == [
        f"start.bas:{line}: warning: no tool {name!r} in bot 'reminder'"
        for line, name in ((2, "list-reminders"), (3, "delete-reminder"), (4, "snooze-reminder"))
    ]
    assert await talk("Add a reminder") == [(FALLBACK, REMINDER_BUTTONS)]  # for the LLM

    # the tool the LLM would call for it
    result = await tool(
        "reminder", "add-reminder", {"when": "tomorrow at 9am", "subject": "Call John"}
    )
    assert re.fullmatch(r"REM-\d{8}-\d{4}", result.result)
    assert result.messages == (
        "Reminder set: Call John",
        "When: tomorrow at 9am",
        "Notification: chat",
    )
    (row,) = await stores.tables.find(
        "reminder", "reminders.csv", [Condition("id", "=", result.result)]
    )
    assert {k: row[k] for k in ("remindat", "message", "notifyby", "email", "status")} == {
        "remindat": "tomorrow at 9am",  # names are case-insensitive: kept lower case
        "message": "Call John",
        "notifyby": "chat",
        "email": "ana@example.com",
        "status": "pending",
    }
    assert stores.memory is not None
    assert await stores.memory.get("reminder", "last_reminder") == result.result


ANALYTICS_MENU = [
    (text, ())
    for text in (
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
    )
]


async def test_analytics_menu_reaches_a_dialog_with_errors_and_says_so(
    chat: Callable[[str], Talk], caplog: pytest.LogCaptureFixture
) -> None:
    talk = chat("analytics")
    assert await talk("hi") == ANALYTICS_MENU
    with caplog.at_level(logging.ERROR, logger="pipeline.dialog"):
        assert await talk("1") == [(DIALOG_ERROR_REPLY, ())]
    errors = [r.getMessage() for r in caplog.records if r.name == "pipeline.dialog"]
    assert len(errors) == 1
    assert re.search(
        r"analytics\.gbdialog/start\.bas:28: platform-overview\.bas has errors and could not "
        r"be loaded$",
        errors[0],
    )
    # not a dead end: the next message shows the menu again
    assert await talk("menu") == ANALYTICS_MENU


async def test_analytics_free_question_runs_up_to_the_llm_and_names_it(
    chat: Callable[[str], Talk], caplog: pytest.LogCaptureFixture
) -> None:
    talk = chat("analytics")
    assert await talk("hi") == ANALYTICS_MENU
    assert await talk("9") == []  # CASE ELSE: HEAR query AS TEXT waits for the question
    with caplog.at_level(logging.ERROR, logger="pipeline.dialog"):
        assert await talk("why did errors grow this week?") == [(DIALOG_ERROR_REPLY, ())]
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "pipeline.dialog"]
    assert re.search(
        r"analytics\.gbdialog/start\.bas:56: LLM needs the host capability 'llm', which is "
        r"not available",
        logged,
    ), logged


async def test_store_whose_start_dialog_has_errors_answers_politely(
    chat: Callable[[str], Talk], corpus: BotRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    bot = corpus.get("store")
    assert bot is not None and bot.start_broken
    assert [str(e).split("store.gbdialog/")[-1] for e in bot.errors] == [
        "checkout.bas:49:34: unknown function TOJSON",
        "start.bas:18:1: unknown function TOJSON",
    ]
    talk = chat("store")
    with caplog.at_level(logging.ERROR, logger="pipeline.dialog"):
        assert await talk("hi") == [(DIALOG_ERROR_REPLY, ())]
        assert await talk("hello?") == [(DIALOG_ERROR_REPLY, ())]  # not the Not Understood one
    logged = [r.getMessage() for r in caplog.records if r.name == "pipeline.dialog"]
    assert [line.split(", session=")[0] for line in logged] == [
        "bot store: start dialog has errors"
    ] * 2


async def test_a_reload_of_a_bot_whose_start_dialog_has_errors_logs_it(
    corpus: BotRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pipeline.bots"):
        await corpus.reload("store")
    assert (
        "bot store: its start dialog start.bas has errors; users get the error reply until fixed"
        in [r.getMessage() for r in caplog.records]
    )


SALES_DEALS_GREETING = (
    "**CRM — Gestão de Vendas**\n\nPosso ajudar com:\n• Criar e gerenciar deals (negócios)\n"
    "• Buscar e cadastrar contatos\n• Cadastrar contas (empresas)\n"
    "• Atualizar estágios do pipeline\n• Relatórios e previsões de vendas\n"
    "• Registrar atividades (ligações, emails, reuniões)\n\nO que deseja fazer?"
)
SALES_DEALS_BUTTONS = (
    "Criar um novo deal",
    "Ver meu pipeline",
    "Buscar contato",
    "Relatório de vendas",
)


async def test_sales_deals_greets_in_portuguese_and_create_deal_runs_to_its_rest_api(
    chat: Callable[[str], Talk], tool: Callable[..., Awaitable[ToolResult]]
) -> None:
    """create-deal.bas fills its defaults with DATEADD and builds #{ } maps for General Bots'
    own REST API (relative /api/crm/... URLs), which this gateway does not serve: with a
    contact it stops at the contact look-up (GET of a non-URL reads a drive file, as in
    General Bots), without one at the POST of the deal's map."""
    talk = chat("sales-deals")
    assert await talk("oi") == [(SALES_DEALS_GREETING, SALES_DEALS_BUTTONS)]
    assert await talk("Criar um novo deal") == [(FALLBACK, SALES_DEALS_BUTTONS)]

    deal = {"title": "Contrato Empresa ABC", "value": 50000}
    with pytest.raises(ToolError) as looked_up:
        await tool("sales-deals", "create-deal", {**deal, "contact_email": "joao@empresa.com"})
    assert str(looked_up.value).endswith(
        "crm.gbdialog/create-deal.bas:38: GET '/api/crm/contacts?search=joao@empresa.com': "
        "not a path inside the bot's drive"
    )
    with pytest.raises(ToolError) as posted:
        await tool("sales-deals", "create-deal", {**deal, "contact_email": ""})
    assert str(posted.value).endswith(
        "crm.gbdialog/create-deal.bas:79: POST /api/crm/deals: only http and https URLs can be "
        "called"
    )


SALES_PIPELINE_GREETING = (
    "**Sales Pipeline Manager**\n\nI can help you with:\n• Create new deals and opportunities\n"
    "• View and manage your pipeline\n• Update deal stages\n• Generate sales forecasts\n"
    "• Pipeline analytics and reports\n• Track win/loss rates\n\n"
    "Select an option or tell me what you need."
)


async def test_sales_pipeline_greets_and_create_deal_dates_it_with_dateadd(
    chat: Callable[[str], Talk], tool: Callable[..., Awaitable[ToolResult]], stores: Stores
) -> None:
    talk = chat("sales-pipeline")
    assert await talk("hello") == [
        (
            SALES_PIPELINE_GREETING,
            (
                "Create a new deal",
                "Show my pipeline",
                "Update a deal stage",
                "View sales forecast",
                "Generate pipeline report",
            ),
        )
    ]
    before = dt.date.today()
    result = await tool(
        "sales-pipeline",
        "create-deal",
        {
            "dealname": "Acme Enterprise License",
            "companyname": "Acme Corporation",
            "contactemail": "john@acme.com",
            "dealvalue": 50000,
            "stage": "Proposal",
        },
    )
    after = dt.date.today()
    closes = {(day + dt.timedelta(days=30)).isoformat() for day in (before, after)}
    deal_id = result.result
    assert re.fullmatch(r"DEAL-\d{8}-\d{4}", deal_id)
    *messages, expected_close, weighted = result.messages
    assert messages == [
        "Deal created: Acme Enterprise License",
        f"ID: {deal_id}",
        "Company: Acme Corporation",
        "Value: $50,000",
        "Stage: Proposal (50% probability)",
    ]
    assert expected_close in {f"Expected Close: {day}" for day in closes}
    assert weighted == "Weighted Value: $25,000"
    (row,) = await stores.tables.find(
        "sales-pipeline", "deals.csv", [Condition("id", "=", deal_id)]
    )
    assert (row["company"], row["expectedclose"] in closes, row["owneremail"]) == (
        "Acme Corporation",
        True,
        "ana@example.com",
    )


def _whole_packages(registry: BotRegistry) -> list[str]:
    """The corpus packages with a start dialog whose dialogs all pass the check."""
    names = []
    for name in registry.names():
        bot = registry.get(name)
        if bot is not None and not bot.errors and bot.start_program is not None:
            names.append(name)
    return names


async def test_every_package_whose_dialogs_all_pass_greets_on_the_first_message(
    corpus: BotRegistry, chat: Callable[[str], Talk], caplog: pytest.LogCaptureFixture
) -> None:
    whole = _whole_packages(corpus)
    assert whole == ["attendance", "campaign-manager", "helpdesk", "llm-tools", "reminder"]
    for name in whole:
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            replies = await chat(name)("hi")
        assert replies, name
        texts = [text for text, _ in replies]
        assert texts[0].startswith("**"), (name, texts)  # each opens with its title in bold
        assert DIALOG_ERROR_REPLY not in texts and FALLBACK not in texts, (name, texts)
        assert not caplog.records, (name, [r.getMessage() for r in caplog.records])
