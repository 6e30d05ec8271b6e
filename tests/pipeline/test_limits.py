"""Per-bot interpreter limits from config.csv: an endless loop ends within the bot's wall time
with a clear error, the user gets a polite reply, and other conversations go on meanwhile."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from basic import Limits
from pipeline.bots import BotRegistry
from pipeline.dialog import DIALOG_ERROR_REPLY

Talk = Callable[[str], Any]


def test_limits_come_from_config_csv(registry: BotRegistry) -> None:
    endless = registry.get("endless")
    assert endless is not None
    assert endless.limits == Limits(
        max_steps=1_000_000_000, max_loop_iterations=1_000_000_000, wall_time=0.5
    )
    default = registry.get("llm-tools")
    assert default is not None and default.limits == Limits()


async def test_an_endless_loop_ends_politely_and_others_are_served(
    chat: Callable[..., Talk], caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="pipeline.dialog"):
        looping = asyncio.create_task(chat("endless")("hi"))
        await asyncio.sleep(0.1)
        assert not looping.done()
        # another conversation is answered while the loop still runs
        assert await chat("fetch-open")("hi") == ["Which product URL?"]
        assert not looping.done()
        assert await looping == ["Counting forever...", DIALOG_ERROR_REPLY]
    assert time.monotonic() - started < 3
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert re.search(
        r"endless\.gbdialog/start\.bas:\d: dialog ran longer than 0\.5 s in one "
        r"turn$",
        errors[0],
    )
