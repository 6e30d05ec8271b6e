"""The embedded default database: a real PostgreSQL run by the process itself.

When no ``DATABASE_URL`` is configured, :class:`EmbeddedPostgres` runs the
PostgreSQL binaries shipped in the ``pgserver`` wheel on a data directory
under ``<data_dir>/postgres``, listening only on a Unix socket (no TCP port
to collide with or to expose). The data directory persists, so the next
start reuses it: sessions, history and dialogs waiting on HEAR survive.

Lifetime, decided: the server is **stopped on a clean shutdown**
(:meth:`EmbeddedPostgres.stop`, and pgserver's ``atexit`` hook as a backstop).
A user who stops ``botserver`` expects no database daemon left holding
memory and the data directory, and a restart on an existing data directory
costs about 0.15 s against 0.7 s for the very first start (initdb). Several
processes may share one data directory (``botserver serve`` and
``botserver migrate``): pgserver counts the processes holding a handle in
``postgres/.handle_pids.json``, we count the handles within this process, and
only the last handle to leave stops the server.

After a ``kill -9`` of our process the postmaster keeps running (pg_ctl
daemonizes it); the next start adopts it, and :func:`_forget_dead_state`
prunes the dead process from the handle list so the adopting process stops
the server on its own clean shutdown. If PostgreSQL itself died (``kill -9``,
power loss), ``postmaster.pid`` is stale: it is removed when its pid is not a
live postgres process, and PostgreSQL replays its WAL on the next start.

pgserver blocks (``initdb``, ``pg_ctl -w start``), so every call into it runs
in the default executor and never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from storage.base import StorageError

log = logging.getLogger(__name__)

_POSTGRES_PROCESS_NAMES = frozenset({"postgres", "postmaster"})


class EmbeddedPostgresError(StorageError):
    """The embedded PostgreSQL could not be started or stopped."""


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process, on ``<data_dir>/postgres``.

    ``await start()`` returns a DSN for asyncpg (Unix socket, trust auth, the
    ``postgres`` database); ``await stop()`` releases this process's handle
    and stops the server when no other process holds one.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.pgdata = Path(data_dir).expanduser().resolve() / "postgres"
        self._server: Any = None
        self._dsn: str | None = None

    @property
    def dsn(self) -> str:
        """The DSN of the running server; only valid after :meth:`start`."""
        if self._dsn is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL is not started")
        return self._dsn

    async def start(self) -> str:
        """Start (or adopt) the server and return its DSN."""
        if self._dsn is None:
            loop = asyncio.get_running_loop()
            self._server, dsn = await loop.run_in_executor(None, self._start_blocking)
            self._dsn = dsn
            return dsn
        return self._dsn

    async def stop(self) -> None:
        """Release this handle; the last handle of the last process stops the server."""
        server, self._server, self._dsn = self._server, None, None
        if server is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._stop_blocking, server)

    def _start_blocking(self) -> tuple[Any, str]:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        pgserver = _import_pgserver()
        with _handles_lock:
            try:
                if not _handles.get(self.pgdata):
                    with pgserver.PostgresServer._lock:
                        _forget_dead_state(self.pgdata, _runtime_socket_dir(pgserver, self.pgdata))
                server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
            except Exception as e:  # pgserver raises bare CalledProcessError/AssertionError
                raise EmbeddedPostgresError(
                    f"could not start the embedded PostgreSQL in {self.pgdata}: {e}"
                    f" (server log: {self.pgdata / 'log'})"
                ) from e
            _handles[self.pgdata] = _handles.get(self.pgdata, 0) + 1
        dsn: str = server.get_uri()
        log.info("embedded PostgreSQL ready in %s (pid %s)", self.pgdata, server.get_pid())
        return server, dsn

    def _stop_blocking(self, server: Any) -> None:
        with _handles_lock:
            _handles[self.pgdata] -= 1
            if _handles[self.pgdata] == 0:
                del _handles[self.pgdata]
                server.cleanup()


# pgserver counts handles per process, not per object: count ours so that one
# EmbeddedPostgres stopping does not stop a server another one still uses.
_handles: dict[Path, int] = {}
_handles_lock = threading.Lock()


def _import_pgserver() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers,
    # CI); pgserver only uses that path for a lock file, /tmp is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _forget_dead_state(pgdata: Path, runtime_socket_dir: Path) -> None:
    """Drop what dead processes left behind so pgserver does not trust it.

    * handle pids of processes that no longer exist (else the server is never
      stopped: pgserver stops it only when the leaving handle is the last one);
    * a ``postmaster.pid`` whose pid is not a live postgres process (a reused
      pid would make pgserver believe a server is running).
    """
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        try:
            pids = [int(p) for p in json.loads(handles.read_text())]
        except (ValueError, TypeError):
            pids = []
        alive = [p for p in pids if psutil.pid_exists(p)]
        if alive != pids:
            handles.write_text(json.dumps(alive))

    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    lines = pid_file.read_text().splitlines()
    pid = _first_int(lines)
    if pid is not None and _is_postgres(pid):
        return
    log.warning("removing stale %s (pid %s is not a running postgres)", pid_file, pid)
    pid_file.unlink(missing_ok=True)
    # The socket's lock file names the dead postmaster too, and PostgreSQL
    # refuses to start while that pid exists (an unreaped zombie does).
    socket_dirs = {pgdata, runtime_socket_dir}
    if len(lines) > 4 and lines[4].strip():
        socket_dirs.add(Path(lines[4].strip()))
    for socket_dir in socket_dirs:
        for lock in socket_dir.glob(".s.PGSQL.*.lock"):
            lock_pid = _first_int(lock.read_text().splitlines())
            if lock_pid is None or not _is_postgres(lock_pid):
                lock.unlink(missing_ok=True)
                lock.with_suffix("").unlink(missing_ok=True)


def _runtime_socket_dir(pgserver: Any, pgdata: Path) -> Path:
    """Where pgserver puts the socket when ``pgdata`` is too long a path for one."""
    if not pgdata.exists():
        return pgdata
    key = f"{pgdata}-{pgdata.stat().st_ino}".encode()
    return Path(pgserver.PostgresServer.runtime_path) / hashlib.sha256(key).hexdigest()[:10]


def _first_int(lines: list[str]) -> int | None:
    try:
        return int(lines[0])
    except (IndexError, ValueError):
        return None


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) postgres process."""
    if pid == os.getpid():
        return False
    try:
        process = psutil.Process(pid)
        return (
            process.name() in _POSTGRES_PROCESS_NAMES and process.status() != psutil.STATUS_ZOMBIE
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
