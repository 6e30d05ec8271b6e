"""The embedded PostgreSQL: data survives restarts and crashes of our process and of postgres."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from config.settings import Settings
from storage.base import HistoryEntry
from storage.embedded_postgres import EmbeddedPostgres
from storage.services import stores

ROOT = Path(__file__).resolve().parents[2]


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[0]) if pid_file.exists() else None


def is_running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def test_conversation_survives_a_restart_and_the_server_stops_on_close(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    async with stores(settings) as first:
        session = await first.conversations.create(bot_id="default", channel="web", user_id="ann")
        session.state = {"waiting": {"hear": "name", "pc": 3}}
        await first.conversations.save(session, append=[HistoryEntry("bot", "Your name?")])
        pid = postmaster_pid(tmp_path)
        assert pid is not None and is_running(pid)

    assert not is_running(pid)  # stopped cleanly: nothing left running

    async with stores(settings) as second:
        loaded = await second.conversations.get(session.id)
        assert loaded is not None and loaded.state == {"waiting": {"hear": "name", "pc": 3}}
        assert [e.content for e in await second.conversations.history(session.id)] == ["Your name?"]


CRASH = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from config.settings import Settings
    from storage.services import open_stores

    async def main() -> None:
        stores = await open_stores(Settings(data_dir=Path(sys.argv[1])))
        await stores.bot_configs.put("default", {"survived": True})
        if sys.argv[2] == "postgres-too":
            os.kill(stores.embedded._server.get_pid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def crash_a_process_using(data_dir: Path, how: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH,
        str(data_dir),
        how,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert await proc.wait() == -9


async def test_after_our_process_is_killed_the_next_start_adopts_the_server(
    tmp_path: Path,
) -> None:
    await crash_a_process_using(tmp_path, "only-us")
    orphan = postmaster_pid(tmp_path)
    assert orphan is not None and is_running(orphan)

    async with stores(Settings(data_dir=tmp_path)) as adopted:
        assert postmaster_pid(tmp_path) == orphan
        assert await adopted.bot_configs.get("default") == {"survived": True}

    assert not is_running(orphan)  # the adopter stopped it: the dead handle was forgotten


async def test_a_stale_postmaster_pid_does_not_prevent_the_next_start(tmp_path: Path) -> None:
    await crash_a_process_using(tmp_path, "postgres-too")
    dead = postmaster_pid(tmp_path)
    assert dead is not None
    for _ in range(100):
        if not is_running(dead):
            break
        await asyncio.sleep(0.05)

    async with stores(Settings(data_dir=tmp_path)) as recovered:
        assert await recovered.bot_configs.get("default") == {"survived": True}


async def test_a_pid_file_naming_another_live_process_is_stale(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path)
    await server.start()
    await server.stop()
    pid_file = tmp_path / "postgres" / "postmaster.pid"
    impostor = await asyncio.create_subprocess_exec("sleep", "30")  # the pid was reused
    pid_file.write_text(f"{impostor.pid}\n{tmp_path / 'postgres'}\n")
    try:
        await server.start()
        assert postmaster_pid(tmp_path) != impostor.pid
    finally:
        await server.stop()
        impostor.kill()
        await impostor.wait()
