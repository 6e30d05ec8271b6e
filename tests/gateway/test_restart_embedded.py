"""The gateway as a user runs it: embedded defaults, stopped and started again.

The conversation, its history and a dialog waiting on HEAR must all survive,
whether the process is stopped cleanly or killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.http_client import get_json, post_json

BOTSERVER = Path(sys.executable).parent / "botserver"
# The admin token names the user of each message, as an app backend would.
ADMIN_TOKEN = "restart-tests-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TEST_BOTS = Path(__file__).resolve().parent.parent / "bots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    data_dir: Path,
    port: int,
    *,
    stop: signal.Signals = signal.SIGTERM,
    bots: Path | None = None,
) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["BOTSERVER_ADMIN_TOKEN"] = ADMIN_TOKEN
    extra = ["--bots", str(bots)] if bots is not None else []
    proc = subprocess.Popen(
        [str(BOTSERVER), "serve", "--port", str(port), "--data-dir", str(data_dir), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"server exited with {proc.returncode}:\n{out}")
            try:
                if get_json(f"{base}/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not become ready in 60 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(stop)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def say(
    base: str, user: str, text: str, session_id: str | None = None, *, bot: str = "default"
) -> dict[str, Any]:
    status, body = post_json(
        f"{base}/api/v1/bots/{bot}/messages",
        {"user_id": user, "text": text, "session_id": session_id},
        headers=ADMIN,
    )
    assert status == 200, body
    return body


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_conversation_survives_restart(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    user = f"u-{uuid.uuid4().hex[:6]}"
    with running_server(tmp_path, port, stop=stop) as base:
        session = say(base, user, "hi")["session_id"]
        waiting = say(base, user, "ada lovelace", session)
        assert waiting["replies"][-1]["text"] == "What would you like to do next?"

    with running_server(tmp_path, port) as base:
        resumed = say(base, user, "Do you remember my name?", session)
        assert resumed["session_id"] == session
        assert resumed["replies"][0]["text"] == "Of course: your name is Ada Lovelace."
        status, body = get_json(
            f"{base}/api/v1/bots/default/sessions/{session}/messages?user_id={user}",
            headers=ADMIN,
        )
        assert status == 200
        history = body["messages"]
        assert [m["text"] for m in history if m["role"] == "user"] == [
            "hi",
            "ada lovelace",
            "Do you remember my name?",
        ]
        assert len(history) == 8  # 3 user messages, 5 bot messages


def test_a_dialog_resumes_inside_a_loop_a_sub_and_a_called_dialog(tmp_path: Path) -> None:
    """resumable.gbai: start.bas CALLs quiz.bas, which asks inside SUBs, one of them called
    from a FOR loop. The server is killed while each question waits for its answer."""
    bots = tmp_path / "bots"
    shutil.copytree(TEST_BOTS / "resumable.gbai", bots / "resumable.gbai")
    data, port, user = tmp_path / "data", free_port(), f"u-{uuid.uuid4().hex[:6]}"

    def texts(reply: dict[str, Any]) -> list[str]:
        return [r["text"] for r in reply["replies"]]

    with running_server(data, port, stop=signal.SIGKILL, bots=bots) as base:
        first = say(base, user, "hi", bot="resumable")
        assert texts(first) == ["Welcome to the quiz.", "What is your name?"]  # in a SUB
        session = first["session_id"]
    answers = [
        ("ana", ["Color number 1?"]),  # in a SUB called from a FOR loop
        ("blue", ["Color number 2?"]),  # the same HEAR, the loop's second round
        ("green", ["Thanks, Ana. Your answers: #0000FF, #008000"]),  # back in start.bas
    ]
    for answer, expected in answers:
        with running_server(data, port, stop=signal.SIGKILL, bots=bots) as base:
            assert texts(say(base, user, answer, session, bot="resumable")) == expected

    # A clean start and stop takes over the PostgreSQL the killed server left and stops it.
    with running_server(data, port, bots=bots):
        pass
    pid_file = data / "postgres" / "postmaster.pid"
    assert not pid_file.exists(), "the embedded PostgreSQL is still running"
