"""Human handoff in bots with a language model: the model is not asked while a person has the
conversation, and a tool the model calls can transfer it (General Bots' way of letting the
model decide). The fake OpenAI server on 127.0.0.1 answers as scripted."""

from __future__ import annotations

import uuid
from pathlib import Path

from channels.base import InboundMessage
from gateway.app import build_services
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.handoff import Agent, HandoffDesk
from pipeline.mail import MailSettings
from pipeline.outbound_http import OutboundHttp
from storage.services import Stores
from tests.llm.fake_openai import FakeOpenAI
from tests.llm.scripted import Answer, ToolUse
from tests.pipeline.conftest import Replies
from tests.pipeline.llm_turns.conftest import FAST, environment

GRACE = Agent("key:grace", "Grace")

TOOL = """\
PARAM reason AS STRING LIKE "asked for a person" DESCRIPTION "Why a person should take over"
DESCRIPTION "Hand the conversation to a person of the support team"
result = TRANSFER TO HUMAN "support", "normal", reason
RETURN result.status
"""


def package(folder: Path, name: str, dialogs: dict[str, str]) -> None:
    (folder / f"{name}.gbai" / f"{name}.gbdialog").mkdir(parents=True)
    (folder / f"{name}.gbai" / f"{name}.gbot").mkdir()
    (folder / f"{name}.gbai" / f"{name}.gbot" / "config.csv").write_text(
        "name,value\ncrm-enabled,true\n"
    )
    for dialog, source in dialogs.items():
        (folder / f"{name}.gbai" / f"{name}.gbdialog" / f"{dialog}.bas").write_text(source)


async def setup(
    tmp_path: Path, stores: Stores, http_client: OutboundHttp, server: FakeOpenAI
) -> tuple[BotRegistry, Dispatcher, HandoffDesk]:
    folder = tmp_path / "bots"
    package(folder, "frontdesk", {"start": 'TALK "Let me find you a person."\nTRANSFER TO HUMAN\n'})
    package(folder, "helper", {"start": 'ADD TOOL "handoff"\n', "handoff": TOOL})
    registry = BotRegistry(
        folder, tables=stores.tables, environ=environment(server), llm_policy=FAST
    )
    await registry.load_all()
    services = build_services(stores, http_client, mail=MailSettings(), bots=registry)
    assert services.handoffs is not None
    return registry, Dispatcher(registry, services), services.handoffs


def talker(dispatcher: Dispatcher, bot: str):  # type: ignore[no-untyped-def]
    user = f"u-{uuid.uuid4().hex[:8]}"

    async def talk(text: str) -> list[str]:
        sink = Replies()
        message = InboundMessage(
            channel="test",
            bot=bot,
            conversation=user,
            sender=user,
            external_id=uuid.uuid4().hex,
            text=text,
        )
        await dispatcher.handle(message, sink)
        return sink.texts

    return talk, user


async def test_the_model_is_not_asked_while_a_person_has_the_conversation(
    openai_server: FakeOpenAI, stores: Stores, http_client: OutboundHttp, tmp_path: Path
) -> None:
    registry, dispatcher, desk = await setup(tmp_path, stores, http_client, openai_server)
    talk, user = talker(dispatcher, "frontdesk")
    # The start dialog transfers: its message, and no model answer on top of it.
    assert await talk("hi") == ["Let me find you a person."]
    assert await talk("hello?") == []
    assert openai_server.calls == []
    session = await stores.conversations.find_active(
        bot_id="frontdesk", channel="test", user_id=user
    )
    assert session is not None
    await desk.take("frontdesk", session.id, GRACE)
    await desk.say("frontdesk", session.id, GRACE, "Hi, Grace here: your refund is on its way.")
    assert await talk("thank you") == []
    await desk.release("frontdesk", session.id, GRACE)
    assert openai_server.calls == []

    # Back with the bot: the model answers, and sees what the person said as the assistant's.
    openai_server.script(Answer(text=("Glad to help!",)))
    assert await talk("one more question") == ["Glad to help!"]
    [call] = openai_server.calls
    roles = [(m["role"], m["content"]) for m in call.body["messages"] if m["role"] != "system"]
    assert ("assistant", "Hi, Grace here: your refund is on its way.") in roles
    assert roles[-1] == ("user", "one more question")
    await registry.close()


async def test_a_tool_the_model_calls_can_hand_the_conversation_to_a_person(
    openai_server: FakeOpenAI, stores: Stores, http_client: OutboundHttp, tmp_path: Path
) -> None:
    registry, dispatcher, desk = await setup(tmp_path, stores, http_client, openai_server)
    talk, user = talker(dispatcher, "helper")
    openai_server.script(
        Answer(tool_calls=(ToolUse("call_1", "handoff", {"reason": "wants a refund"}),)),
        Answer(text=("A person from support will take it from here.",)),
    )
    assert await talk("I want to talk to a human about a refund") == [
        "A person from support will take it from here."
    ]
    tool_result = openai_server.calls[1].body["messages"][-1]
    assert tool_result["role"] == "tool" and "queued" in tool_result["content"]
    [waiting] = await desk.queue("helper")
    assert (waiting.conversation, waiting.department, waiting.reason) == (
        user,
        "support",
        "wants a refund",
    )
    assert await talk("hello?") == []
    assert len(openai_server.calls) == 2  # nothing more asked of the model
    await registry.close()
