"""Loaded bots: a package read from disk plus its compiled dialogs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from basic import BasicSyntaxError, Limits, Program, compile_source, normalize_globals
from config.packages import BotConfig, BotPackage, PackageError, discover_packages, load_package
from pipeline.outbound_http import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, HttpPolicy
from storage.base import TableStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Bot:
    """A bot ready to serve: its package, compiled dialogs and per-bot limits."""

    package: BotPackage
    programs: Mapping[str, Program]
    limits: Limits
    errors: tuple[BasicSyntaxError, ...] = ()
    globals: Mapping[str, Any] = field(default_factory=dict)
    http: HttpPolicy = field(default_factory=HttpPolicy)
    broken: frozenset[str] = frozenset()  # dialogs that failed to compile (see ``errors``)

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def display_name(self) -> str:
        return self.package.display_name

    @property
    def theme_color(self) -> str | None:
        return self.package.theme_color

    @property
    def start_program(self) -> str | None:
        start = self.package.start_dialog
        return start if start in self.programs else None

    @property
    def start_broken(self) -> bool:
        """The start dialog exists but failed to compile: users get the polite error reply."""
        return self.package.start_dialog in self.broken

    @property
    def tables(self) -> dict[str, Any]:
        """The tables the bot's ``TABLE`` blocks declare, by name (lowercased).  Rows are kept
        per bot and table in PostgreSQL whatever their columns, so FIND/SAVE/INSERT/UPDATE/
        DELETE work on a declared table with no ``.gbdata`` CSV and nothing to create."""
        return {
            schema.name.lower(): schema
            for program in self.programs.values()
            for schema in program.tables
        }

    @property
    def schedules(self) -> dict[str, tuple[str, ...]]:
        """The bot's jobs: dialog name -> crons (seconds first), from ``SET SCHEDULE`` lines."""
        return {
            name: program.schedules
            for name, program in sorted(self.programs.items())
            if program.schedules
        }


def limits_from_config(package: BotPackage) -> Limits:
    """Per-bot interpreter limits from config.csv, defaulting to safe values."""
    default = Limits()
    cfg = package.config
    return Limits(
        max_steps=cfg.integer("basic-max-steps", default.max_steps),
        max_loop_iterations=cfg.integer("basic-max-loop-iterations", default.max_loop_iterations),
        wall_time=cfg.number("basic-wall-time", default.wall_time),
        max_http_calls=cfg.integer("basic-max-http-calls", default.max_http_calls),
    )


def http_policy_from_config(config: BotConfig) -> HttpPolicy:
    """The bot's HTTP settings: ``HTTP Allow Private`` (default false), ``HTTP Timeout``
    (seconds, default 10), ``HTTP Max Response Bytes`` (default 1 MiB)."""
    timeout = config.number("http-timeout", DEFAULT_TIMEOUT)
    max_bytes = config.integer("http-max-response-bytes", DEFAULT_MAX_BYTES)
    return HttpPolicy(
        allow_private=config.get("http-allow-private", "").strip().lower()
        in ("true", "yes", "1", "on"),
        timeout=timeout if timeout > 0 else DEFAULT_TIMEOUT,
        max_bytes=max_bytes if max_bytes > 0 else DEFAULT_MAX_BYTES,
    )


def build_bot(package: BotPackage) -> Bot:
    """Compile a package's dialogs; a dialog with errors is left out and its errors kept."""
    programs: dict[str, Program] = {}
    errors: list[BasicSyntaxError] = []
    broken: set[str] = set()
    for name, source in package.dialogs.items():
        filename = str(package.dialog_files.get(name, f"{name}.bas"))
        try:
            programs[name] = compile_source(source, filename)
        except BasicSyntaxError as e:
            errors.append(e)
            broken.add(name)
            log.error("dialog not loaded: %s", e)
    if package.start_dialog in broken:
        log.error(
            "bot %s: its start dialog %s.bas has errors; users get the error reply until fixed",
            package.name,
            package.start_dialog,
        )
    return Bot(
        package=package,
        programs=programs,
        limits=limits_from_config(package),
        errors=tuple(errors),
        globals=normalize_globals(package.config.params()),
        http=http_policy_from_config(package.config),
        broken=frozenset(broken),
    )


def load_bot(path: Path) -> Bot:
    return build_bot(load_package(path))


class BotRegistry:
    """The bots of one bots folder, by name; reloaded whole or one at a time.

    With a table store attached, every (re)load seeds the bot's tables from its ``.gbdata``
    CSV files.
    """

    def __init__(self, bots_dir: Path, *, tables: TableStore | None = None) -> None:
        self.bots_dir = bots_dir
        self.tables = tables
        self._bots: dict[str, Bot] = {}

    def attach_tables(self, tables: TableStore) -> None:
        """Seed tables on load from now on (the composition root calls this once stores open)."""
        self.tables = tables

    def get(self, name: str) -> Bot | None:
        return self._bots.get(name)

    def names(self) -> list[str]:
        return sorted(self._bots)

    async def load_all(self) -> None:
        """Read every package of the bots folder (file reads and compiling off the event loop)."""
        bots = await asyncio.to_thread(self._load_all_sync)
        for bot in bots.values():
            await self.seed_tables(bot)
        self._bots = bots
        log.info("loaded bots: %s", ", ".join(self._bots) or "(none)")

    async def seed_tables(self, bot: Bot) -> None:
        """Load the package's ``.gbdata`` rows into the bot's tables (no-op without a store)."""
        if self.tables is None:
            return
        for table, rows in bot.package.data.items():
            if await self.tables.seed(bot.name, table, rows):
                log.info("seeded table %s of bot %s (%d rows)", table, bot.name, len(rows))

    def _load_all_sync(self) -> dict[str, Bot]:
        bots: dict[str, Bot] = {}
        for path in discover_packages(self.bots_dir):
            try:
                bot = load_bot(path)
            except PackageError as e:
                log.error("bot package skipped: %s", e)
                continue
            bots[bot.name] = bot
        return bots

    async def reload(self, name: str) -> Bot | None:
        """Read one bot's package again; ``None`` when its folder is gone."""
        path = self.bots_dir / f"{name}.gbai"
        if not path.is_dir():
            self._bots.pop(name, None)
            return None
        bot = await asyncio.to_thread(load_bot, path)
        await self.seed_tables(bot)
        self._bots[name] = bot
        log.info(
            "reloaded bot %s (%d dialogs, %d errors)", name, len(bot.programs), len(bot.errors)
        )
        return bot
