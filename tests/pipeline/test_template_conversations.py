"""General Bots' template packages (tests/templates-corpus) talked to through the real pipeline
on real stores: each greets on the first message, or says politely that it cannot, and runs
until a capability this gateway lacks yet (the LLM) is reached.

With no LLM stage, a message no dialog takes gets the bot's Not Understood message.
"""

from __future__ import annotations

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
    registry = BotRegistry(folder, tables=stores.tables)
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


async def test_reminder_greets_and_its_missing_tools_are_only_warnings(
    chat: Callable[[str], Talk], caplog: pytest.LogCaptureFixture
) -> None:
    talk = chat("reminder")
    with caplog.at_level(logging.WARNING):
        replies = await talk("hello")
    assert [text.split("\n")[0] for text, _ in replies] == ["**Reminder Assistant**"]
    assert replies[0][1] == (
        "Add a reminder",
        "View my reminders",
        "Today's reminders",
        "Delete a reminder",
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_analytics_menu_reaches_a_dialog_with_errors_and_says_so(
    chat: Callable[[str], Talk], caplog: pytest.LogCaptureFixture
) -> None:
    talk = chat("analytics")
    menu = await talk("hi")
    assert [text for text, _ in menu][-1] == "8. Generate Custom Report"
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
    assert await talk("menu") == menu


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


async def test_sales_deals_greets_in_portuguese_with_its_buttons(
    chat: Callable[[str], Talk],
) -> None:
    replies = await chat("sales-deals")("oi")
    assert len(replies) == 1
    text, buttons = replies[0]
    assert text.startswith("**CRM — Gestão de Vendas**\n\nPosso ajudar com:\n• Criar e gerenciar")
    assert buttons == (
        "Criar um novo deal",
        "Ver meu pipeline",
        "Buscar contato",
        "Relatório de vendas",
    )
