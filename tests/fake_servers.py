"""Fixtures that run one of the tests' fake servers on 127.0.0.1 for the length of a test.

A test module names the fixture and the server it runs::

    telegram = fake_server(FakeBotApi)
    stt = fake_server(lambda: FakeSpeechToText(default="Hello."))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import pytest


class FakeServer(Protocol):
    """A server the tests start on 127.0.0.1 and close when they are done with it."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


Server = TypeVar("Server", bound=FakeServer)


def fake_server(make: Callable[[], Server]) -> Any:
    """A fixture that starts the server ``make()`` builds before the test, yields it, and
    closes it after the test (and after every fixture that uses it)."""

    @pytest.fixture
    async def running() -> AsyncIterator[Server]:
        server = make()
        await server.start()
        yield server
        await server.close()

    return running
