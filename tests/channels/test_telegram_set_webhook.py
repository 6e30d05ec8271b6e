"""``botserver telegram set-webhook``, run as a user runs it, against a fake Bot API."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.packages import load_package
from tests.channels.fake_telegram import TOKEN, FakeBotApi

BOTSERVER = Path(sys.executable).parent / "botserver"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    fake = FakeBotApi()
    await fake.start()
    yield fake
    await fake.close()


def package(tmp_path: Path, rows: dict[str, str]) -> Path:
    path = tmp_path / "bots" / "shop.gbai"
    (path / "shop.gbdialog").mkdir(parents=True)
    (path / "shop.gbdialog" / "start.bas").write_text('TALK "hi"\n')
    (path / "shop.gbot").mkdir()
    lines = "".join(f"{k},{v}\n" for k, v in rows.items())
    (path / "shop.gbot" / "config.csv").write_text("name,value\nbot-name,Shop\n,\n" + lines)
    return path


async def botserver(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(BOTSERVER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_set_webhook_sends_a_new_secret_and_stores_it_in_config(
    api: FakeBotApi, tmp_path: Path
) -> None:
    path = package(tmp_path, {"telegram-bot-token": TOKEN, "telegram-api-url": api.api_url})
    code, out, err = await botserver(
        "telegram", "set-webhook", "shop", "https://bots.example.com", "--bots", str(path.parent)
    )
    assert code == 0, err
    assert api.webhook is not None
    assert api.webhook["url"] == "https://bots.example.com/webhooks/telegram/shop"
    secret = api.webhook["secret_token"]
    assert secret and len(secret) >= 32
    config = load_package(path).config
    assert config["telegram-webhook-secret"] == secret
    assert config["bot-name"] == "Shop"  # the other rows are kept
    assert secret not in out  # stored, not printed
    # Again: a new secret replaces the old row, not a second one.
    code, _, err = await botserver(
        "telegram", "set-webhook", str(path), "https://bots.example.com/hook/shop"
    )
    assert code == 0, err
    assert api.webhook["url"] == "https://bots.example.com/hook/shop"
    text = (path / "shop.gbot" / "config.csv").read_text()
    assert text.count("telegram-webhook-secret") == 1
    assert api.webhook["secret_token"] in text and secret not in text


async def test_a_secret_read_from_the_environment_is_printed_for_the_user_to_set(
    api: FakeBotApi, tmp_path: Path
) -> None:
    path = package(
        tmp_path,
        {
            "telegram-bot-token": "${SHOP_TG_TOKEN}",
            "telegram-webhook-secret": "${SHOP_TG_SECRET}",
            "telegram-api-url": api.api_url,
        },
    )
    env = {"PATH": "/usr/bin:/bin", "SHOP_TG_TOKEN": TOKEN}
    code, out, err = await botserver("telegram", "set-webhook", str(path), "https://x.io", env=env)
    assert code == 0, err
    assert api.webhook is not None
    assert "SHOP_TG_SECRET" in out and api.webhook["secret_token"] in out
    assert "${SHOP_TG_SECRET}" in (path / "shop.gbot" / "config.csv").read_text()


async def test_set_webhook_fails_clearly_without_a_token_or_when_telegram_refuses(
    api: FakeBotApi, tmp_path: Path
) -> None:
    path = package(tmp_path, {"telegram-api-url": api.api_url})
    code, _, err = await botserver("telegram", "set-webhook", str(path), "https://x.io")
    assert code == 1 and "telegram-bot-token" in err
    path = package(tmp_path / "2", {"telegram-bot-token": TOKEN, "telegram-api-url": api.api_url})
    code, _, err = await botserver("telegram", "set-webhook", str(path), "http://plain.example")
    assert code == 1 and "https url must be provided" in err.lower()
    assert "telegram-webhook-secret" not in (path / "shop.gbot" / "config.csv").read_text()
