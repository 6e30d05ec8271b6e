"""Fixtures of the model-provider tests: the fake servers, and no network beyond 127.0.0.1."""

from __future__ import annotations

from tests.fake_servers import fake_server
from tests.llm.fake_anthropic import FakeAnthropic
from tests.llm.fake_openai import FakeOpenAI
from tests.offline_network import offline_network

__all__ = ["offline_network"]

openai_server = fake_server(FakeOpenAI)
anthropic_server = fake_server(FakeAnthropic)
