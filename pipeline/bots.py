"""Loaded bots: a package read from disk plus its compiled dialogs and its model provider.

A bot's providers (``pipeline.llm``, and speech to text: ``pipeline.speech_config``) are
built once, when the bot loads, from its config.csv
and the process environment; a reload builds new ones and closes the old ones once turns
already running with them had time to finish; :meth:`BotRegistry.close` closes them all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from basic import BasicSyntaxError, Limits, Program, compile_source, normalize_globals
from config.packages import BotConfig, BotPackage, PackageError, discover_packages, load_package
from pipeline.gathering import GatherPolicy
from pipeline.llm import (
    LLMProvider,
    LLMSettings,
    ProviderNotConfigured,
    RetryPolicy,
    llm_settings,
    provider_from_config,
)
from pipeline.outbound_http import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, HttpPolicy
from pipeline.speech_config import BotSpeech, bot_speech
from pipeline.tokens import TokenCounter, answer_reserve, context_window, counter_for_model
from pipeline.voice_reply_config import BotVoice, bot_voice
from storage.base import TableStore

log = logging.getLogger(__name__)

# General Bots reads the bot's system prompt from the first of these in its .gbot folder,
# else from the ``system-prompt`` row of config.csv.
PROMPT_FILES = ("PROMPT.md", "prompt.md", "PROMPT.txt", "prompt.txt")
# The channels whose replies can stream to the provider while the model writes them
# (Telegram edits one message in place; WhatsApp and SMS get whole paragraphs): what the
# ``stream-replies`` row of config.csv chooses among. The web channel always streams.
STREAMING_CHANNELS = frozenset({"telegram", "whatsapp", "twilio-whatsapp", "twilio-sms"})
_ON = frozenset({"", "true", "yes", "on", "1", "all"})
_OFF = frozenset({"false", "no", "off", "0", "none"})

# A replaced provider is closed this long after its deadline, so that a turn that was
# already talking to it when the bot reloaded can finish.
RETIRE_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class BotModel:
    """A bot's language model: its providers as one fallback chain, and its token budget."""

    provider: LLMProvider
    settings: LLMSettings
    counter: TokenCounter
    context_window: int  # tokens the smallest of its models reads
    answer_reserve: int  # tokens kept free for the answer

    @property
    def history_limit(self) -> int:
        return self.settings.history_limit

    @property
    def vision(self) -> bool:
        """Whether one of its providers is configured as reading images (``llm-vision``)."""
        return any(p.vision for p in self.settings.providers)


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
    # The package's own system prompt (.gbot/PROMPT.md …, or the system-prompt row).
    system_prompt: str | None = None
    # The model, or None with the reason in ``model_problem`` (nothing configured, or a
    # provider named that cannot be used).
    model: BotModel | None = field(default=None, compare=False)
    model_problem: str | None = None
    # The channels whose model answers stream live (``stream-replies``; all by default).
    stream_channels: frozenset[str] = STREAMING_CHANNELS
    # Albums and bursts answered as one turn (``album-window``, ``burst-window``).
    gathering: GatherPolicy = field(default_factory=GatherPolicy)
    # Speech to text for voice notes (none, with why, until the bot is given its providers).
    speech: BotSpeech = field(default_factory=BotSpeech, compare=False)
    # Text to speech for voice replies (``voice-replies``; off until given its providers).
    voice: BotVoice = field(default_factory=BotVoice, compare=False)

    @property
    def name(self) -> str:
        return self.package.name

    def streams(self, channel: str) -> bool:
        """Whether the model's answers on ``channel`` are sent as they are written."""
        return channel in self.stream_channels

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


def stream_channels_from_config(package: BotPackage) -> frozenset[str]:
    """``stream-replies``: ``true`` (the default) streams on every channel that can,
    ``false`` on none, else the channels named (``telegram, whatsapp``); a name that is
    not such a channel is logged and left out."""
    raw = package.config.get("stream-replies", "").strip().lower()
    if raw in _ON:
        return STREAMING_CHANNELS
    if raw in _OFF:
        return frozenset()
    names = {name for name in re.split(r"[\s,;]+", raw) if name}
    unknown = sorted(names - STREAMING_CHANNELS)
    if unknown:
        log.warning(
            "bot %s: stream-replies names %s, which cannot stream (they are %s): left out",
            package.name,
            ", ".join(unknown),
            ", ".join(sorted(STREAMING_CHANNELS)),
        )
    return frozenset(names & STREAMING_CHANNELS)


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
        stream_channels=stream_channels_from_config(package),
        gathering=GatherPolicy.from_config(package.name, package.config),
    )


def package_system_prompt(package: BotPackage) -> str | None:
    """The package's system prompt, as General Bots finds it (file first, then the row)."""
    folder = package.path / f"{package.name}.gbot"
    for name in PROMPT_FILES:
        path = folder / name
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as e:
            log.error("bot %s: %s not read: %s", package.name, path, e)
            continue
        if text.strip():
            return text.strip()
    row = package.config.get("system-prompt", "").strip()
    return row or None


def build_model(
    package: BotPackage, environ: Mapping[str, str], *, policy: RetryPolicy | None = None
) -> tuple[BotModel | None, str | None]:
    """The bot's model from its config.csv and ``environ``, or ``None`` and why not.

    Builds HTTP clients and loads the tokenizer: call it off the event loop.
    """
    config = package.config.as_dict()
    settings = llm_settings(config, environ)
    try:
        provider = provider_from_config(config, environ, policy=policy)
    except ProviderNotConfigured as e:
        return None, str(e)
    models = [p.model for p in settings.providers]
    window = min(context_window(m, package.config) for m in models)
    max_tokens = min((p.max_tokens for p in settings.providers if p.max_tokens), default=None)
    model = BotModel(
        provider=provider,
        settings=settings,
        counter=counter_for_model(models[0]),
        context_window=window,
        answer_reserve=answer_reserve(window, max_tokens),
    )
    for problem in settings.problems:
        log.warning("bot %s: %s", package.name, problem)
    return model, None


def load_bot(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    policy: RetryPolicy | None = None,
) -> Bot:
    """Read, compile and (with ``environ``) give the bot its model; off the event loop."""
    package = load_package(path)
    bot = replace(build_bot(package), system_prompt=package_system_prompt(package))
    if environ is None:
        return bot
    model, problem = build_model(package, environ, policy=policy)
    if model is None:
        log.info("bot %s: no LLM: %s", package.name, problem)
    else:
        log.info("bot %s: LLM %s", package.name, model.provider.name)
    speech = bot_speech(package.config, environ)
    if speech.engine is None and speech.named:
        log.warning("bot %s: speech to text off: %s", package.name, speech.problem)
    elif speech.engine is None:
        log.info("bot %s: no speech to text: %s", package.name, speech.problem)
    else:
        log.info("bot %s: speech to text %s", package.name, speech.engine.name)
    voice = bot_voice(package.config, environ)
    if voice.problem is not None:
        log.warning("bot %s: voice replies off: %s", package.name, voice.problem)
    elif voice.engine is not None:
        log.info(
            "bot %s: voice replies %s by %s (%s, %s)",
            package.name,
            voice.mode.value,
            voice.engine.name,
            voice.engine.model,
            voice.engine.voice,
        )
    return replace(bot, model=model, model_problem=problem, speech=speech, voice=voice)


class BotRegistry:
    """The bots of one bots folder, by name; reloaded whole or one at a time.

    With a table store attached, every (re)load seeds the bot's tables from its ``.gbdata``
    CSV files.
    """

    def __init__(
        self,
        bots_dir: Path,
        *,
        tables: TableStore | None = None,
        environ: Mapping[str, str] | None = None,
        llm_policy: RetryPolicy | None = None,
    ) -> None:
        """``environ`` gives the process-wide model settings (``OPENAI_API_KEY``, ``LLM_URL``…;
        the process environment when not given); ``llm_policy`` the providers' retries."""
        self.bots_dir = bots_dir
        self.tables = tables
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.llm_policy = llm_policy
        self._bots: dict[str, Bot] = {}
        self._retiring: dict[asyncio.Task[None], tuple[str, tuple[_Closable, ...]]] = {}

    def attach_tables(self, tables: TableStore) -> None:
        """Seed tables on load from now on (the composition root calls this once stores open)."""
        self.tables = tables

    def get(self, name: str) -> Bot | None:
        return self._bots.get(name)

    def names(self) -> list[str]:
        return sorted(self._bots)

    def config_of(self, name: str) -> dict[str, str] | None:
        """The rows of a loaded bot's ``config.csv``; None for a bot not loaded."""
        bot = self._bots.get(name)
        return bot.package.config.as_dict() if bot is not None else None

    async def load_all(self) -> None:
        """Read every package of the bots folder (file reads and compiling off the event loop)."""
        bots = await asyncio.to_thread(self._load_all_sync)
        for bot in bots.values():
            await self.seed_tables(bot)
        old, self._bots = self._bots, bots
        for bot in old.values():
            self._retire(bot)
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
                bot = load_bot(path, self.environ, policy=self.llm_policy)
            except PackageError as e:
                log.error("bot package skipped: %s", e)
                continue
            bots[bot.name] = bot
        return bots

    async def reload(self, name: str) -> Bot | None:
        """Read one bot's package again; ``None`` when its folder is gone."""
        path = self.bots_dir / f"{name}.gbai"
        if not path.is_dir():
            gone = self._bots.pop(name, None)
            if gone is not None:
                self._retire(gone)
            return None
        bot = await asyncio.to_thread(load_bot, path, self.environ, policy=self.llm_policy)
        await self.seed_tables(bot)
        old = self._bots.get(name)
        self._bots[name] = bot
        if old is not None:
            self._retire(old)
        log.info(
            "reloaded bot %s (%d dialogs, %d errors)", name, len(bot.programs), len(bot.errors)
        )
        return bot

    def _retire(self, bot: Bot) -> None:
        """Close a replaced bot's providers once turns still using them had time to end."""
        providers = _providers(bot)
        if not providers:
            return
        delay = max(
            bot.model.settings.deadline if bot.model is not None else 0.0,
            bot.speech.timeout,
            bot.voice.timeout,
        )
        delay += RETIRE_GRACE

        async def close_later() -> None:
            await asyncio.sleep(delay)
            for provider in providers:
                await _close_provider(bot.name, provider)

        task = asyncio.create_task(close_later(), name=f"retire-llm-{bot.name}")
        self._retiring[task] = (bot.name, providers)
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def close(self) -> None:
        """Close every bot's providers, replaced ones included (at shutdown)."""
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()
        await asyncio.gather(*(task for task, _ in retiring), return_exceptions=True)
        for _, (name, providers) in retiring:
            for provider in providers:
                await _close_provider(name, provider)
        for bot in self._bots.values():
            for provider in _providers(bot):
                await _close_provider(bot.name, provider)


class _Closable(Protocol):
    async def aclose(self) -> None: ...


def _providers(bot: Bot) -> tuple[_Closable, ...]:
    """The clients a bot holds open: its model's and its speech engines'."""
    found: list[_Closable] = []
    if bot.model is not None:
        found.append(bot.model.provider)
    if bot.speech.engine is not None:
        found.append(bot.speech.engine)
    if bot.voice.engine is not None:
        found.append(bot.voice.engine)
    return tuple(found)


async def _close_provider(bot: str, provider: _Closable) -> None:
    try:
        await provider.aclose()
    except Exception:  # closing is best effort; the process is releasing it either way
        log.exception("bot %s: closing a provider failed", bot)
