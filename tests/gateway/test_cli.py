"""The ``botserver`` command as a user types it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from config.settings import BUNDLED_TEMPLATES

BOTSERVER = str(Path(sys.executable).parent / "botserver")
TEST_BOTS = Path(__file__).resolve().parent.parent / "bots"


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BOTSERVER, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_check_accepts_a_good_package_and_file() -> None:
    package = BUNDLED_TEMPLATES / "default.gbai"
    result = run("check", str(package), str(package / "default.gbdialog" / "start.bas"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_check_reports_file_line_col_and_fails() -> None:
    broken = TEST_BOTS / "broken.gbai"
    result = run("check", str(broken), str(BUNDLED_TEMPLATES / "default.gbai"))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert re.match(r"^.*broken\.gbdialog/start\.bas:\d+:\d+: .+", lines[0]), lines


def test_check_missing_target() -> None:
    result = run("check", "/nonexistent/thing.bas")
    assert result.returncode == 1
    assert "no such file or package" in result.stdout


def test_check_refuses_a_file_that_is_not_a_dialog(tmp_path: Path) -> None:
    config = tmp_path / "config.csv"
    config.write_text("name,value\nAnswer Mode,direct\n", encoding="utf-8")
    result = run("check", str(config))
    assert result.returncode == 1
    assert result.stdout.strip() == f"{config}: not a .bas dialog or a .gbai package"


def test_check_tools_prints_each_tools_schema() -> None:
    result = run("check", "--tools", str(TEST_BOTS / "llm-tools.gbai"))
    assert result.returncode == 0, result.stderr
    tools = json.loads(result.stdout)
    assert [t["name"] for t in tools] == ["get-price", "send-email"]
    price = tools[0]
    assert price["openai"]["type"] == "function"
    assert price["openai"]["function"]["name"] == "get-price"
    assert price["openai"]["function"]["parameters"]["required"] == ["product"]
    assert price["anthropic"]["input_schema"] == price["openai"]["function"]["parameters"]
    assert price["anthropic"]["description"] == (
        "Get the price of a product by name from the product catalog"
    )


def test_check_tools_still_reports_errors() -> None:
    result = run("check", "--tools", str(TEST_BOTS / "broken.gbai"))
    assert result.returncode == 1
    assert json.loads(result.stdout) == []
    assert re.match(r"^.*broken\.gbdialog/start\.bas:\d+:\d+: ", result.stderr)


def test_chat_in_the_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [BOTSERVER, "chat", "default", "--data-dir", str(tmp_path)],
        input="hi\nada lovelace\nhelp\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "bot> Hello! I am the botserver assistant. What is your name?" in out
    assert "bot> Nice to meet you, Ada Lovelace!" in out
    assert "[What can you do?] [Do you remember my name?] [Goodbye] [Ask about botserver]" in out
    assert "I am a dialog written in BASIC" in out


def test_chat_with_a_package_path(tmp_path: Path) -> None:
    package = TEST_BOTS / "nodialog.gbai"
    result = run(
        "chat", str(package), "--data-dir", str(tmp_path), stdin="hello\n", env={"DATABASE_URL": ""}
    )
    assert result.returncode == 0, result.stderr
    assert "bot> I only know how to say this." in result.stdout


async def test_migrate_applies_once(server_database_url: str) -> None:
    name = f"botserver_cli_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{server_database_url.rpartition('/')[0]}/{name}"
        first = await asyncio.to_thread(run, "migrate", env={"DATABASE_URL": url})
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip().startswith("applied: 0001_core")
        second = await asyncio.to_thread(run, "migrate", env={"DATABASE_URL": url})
        assert second.stdout.strip() == "database is up to date"
        conn = await asyncpg.connect(url)
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        await conn.close()
        assert {"user_sessions", "message_history", "bot_configs", "kb_documents"} <= tables
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
