"""The ``botserver`` command: serve, migrate, check, chat, keys, kb and telegram set-webhook."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from basic import BasicSyntaxError, compile_source
from basic.tools import is_tool
from channels.base import InboundMessage, OutboundMessage
from config.packages import PackageError, load_package
from config.settings import Settings, SettingsError
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.errors import PipelineError
from pipeline.outbound_http import OutboundHttp
from pipeline.package_check import CheckReport, check_dialog, check_package
from pipeline.tools import tool_schemas
from storage.api_keys import ROLES
from storage.services import open_stores, run_migrations


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx (under python-telegram-bot) logs each request's URL at INFO, and a
    # Bot API URL carries the bot's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Read retry_after as python-telegram-bot's next major version will give it.
    os.environ.setdefault("PTB_TIMEDELTA", "1")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        bots_dir=getattr(args, "bots", None),
        data_dir=getattr(args, "data_dir", None),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.heap import settle_heap

    settings = _settings(args)
    _configure_logging(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is not available on every platform
        pass
    app = create_app(settings)
    app.on_startup.append(settle_heap)  # after the stores and bots are loaded
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=lambda text: print(text, flush=True),
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging(settings.log_level)
    applied = asyncio.run(run_migrations(settings))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _read_targets(
    targets: Sequence[str],
) -> tuple[list[tuple[str, str]], CheckReport]:
    """The (source, filename) of every dialog of the given .bas files and .gbai packages, and
    what checking them found (unreadable targets are errors, as ``path: reason``)."""
    sources: list[tuple[str, str]] = []
    report = CheckReport()
    for target in targets:
        path = Path(target)
        if path.is_dir():
            try:
                package = load_package(path)
            except PackageError as e:
                report.errors.append(str(e))
                continue
            sources += [
                (source, str(package.dialog_files.get(name, name + ".bas")))
                for name, source in package.dialogs.items()
            ]
            report.extend(check_package(package))
        elif path.is_file() and path.suffix.lower() != ".bas":
            report.errors.append(f"{path}: not a .bas dialog or a .gbai package")
        elif path.is_file():
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                report.errors.append(f"{path}: {e}")
                continue
            sources.append((source, str(path)))
            report.extend(check_dialog(source, str(path)))
        else:
            report.errors.append(f"{path}: no such file or package")
    return sources, report


def cmd_check(args: argparse.Namespace) -> int:
    """Errors fail the check; warnings (things General Bots tolerates) only with --strict."""
    sources, report = _read_targets(args.targets)
    failed = bool(report.errors) or (args.strict and bool(report.warnings))
    if args.tools:
        return _print_tools(sources, report.lines(), failed)
    for line in report.lines():
        print(line)
    return 1 if failed else 0


def _print_tools(sources: list[tuple[str, str]], problems: list[str], failed: bool) -> int:
    """``check --tools``: every tool's schema as one JSON list on stdout, problems on stderr."""
    tools: list[dict[str, Any]] = []
    for source, filename in sources:
        try:
            program = compile_source(source, filename)
        except BasicSyntaxError:
            continue  # already among the problems
        if is_tool(program):
            tools.append(tool_schemas(program))
    print(json.dumps(tools, indent=2, ensure_ascii=False))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if failed else 0


class _TerminalSink:
    async def delta(self, text: str) -> None:
        print(text, end="", flush=True)

    async def message(self, message: OutboundMessage) -> None:
        print(f"bot> {message.text}")
        if message.suggestions:
            print("     [" + "] [".join(s.label for s in message.suggestions) + "]")


async def _chat(settings: Settings, bot: str) -> int:
    from gateway.app import build_services

    stores = await open_stores(settings)
    http = OutboundHttp()
    registry = BotRegistry(settings.bots_dir, tables=stores.tables)
    try:
        await http.open()
        await registry.load_all()
        if registry.get(bot) is None:
            print(f"no bot named {bot!r} in {settings.bots_dir}", file=sys.stderr)
            return 2
        dispatcher = Dispatcher(registry, build_services(stores, http))
        sink = _TerminalSink()
        count = 0
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, _prompt)
            if line is None:
                return 0
            if not line.strip():
                continue
            count += 1
            message = InboundMessage(
                channel="terminal",
                bot=bot,
                conversation="terminal",
                sender="terminal",
                external_id=str(count),
                text=line,
            )
            try:
                await dispatcher.handle(message, sink)
            except PipelineError as e:
                print(f"error: {e}", file=sys.stderr)
    finally:
        await registry.close()
        await http.close()
        await stores.close()


def _prompt() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        return None


def cmd_chat(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("WARNING")
    bot = args.bot
    path = Path(bot)
    if path.is_dir() and path.name.endswith(".gbai"):
        settings = settings.with_overrides(bots_dir=path.resolve().parent)
        bot = path.name.removesuffix(".gbai")
    try:
        return asyncio.run(_chat(settings, bot))
    except KeyboardInterrupt:
        return 130


def cmd_telegram_set_webhook(args: argparse.Namespace) -> int:
    from gateway.telegram_cli import set_webhook

    settings = _settings(args)
    _configure_logging("WARNING")
    path = Path(args.bot)
    if not (path.is_dir() and path.name.endswith(".gbai")):
        path = settings.bots_dir / f"{args.bot}.gbai"
    if not path.is_dir():
        print(f"error: no bot {args.bot!r} in {settings.bots_dir}", file=sys.stderr)
        return 1
    return asyncio.run(set_webhook(path, args.url, drop_pending_updates=args.drop_pending_updates))


def cmd_keys(args: argparse.Namespace) -> int:
    from gateway import auth_cli

    settings = _settings(args)
    _configure_logging("WARNING")
    if args.keys_command == "create":
        if (args.bot is None) == (not args.all_bots):
            print("error: name a BOT, or give --all-bots", file=sys.stderr)
            return 2
        return asyncio.run(
            auth_cli.create(settings, args.bot, args.role, name=args.name, user_id=args.user)
        )
    if args.keys_command == "list":
        return asyncio.run(auth_cli.list_keys(settings, args.bot))
    return asyncio.run(auth_cli.revoke(settings, args.key_id))


def cmd_kb_ingest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("WARNING")
    path = Path(args.bot)
    if not (path.is_dir() and path.name.endswith(".gbai")):
        path = settings.bots_dir / f"{args.bot}.gbai"
    if not path.is_dir():
        print(f"error: no bot {args.bot!r} in {settings.bots_dir}", file=sys.stderr)
        return 1
    return asyncio.run(_kb_ingest(settings, path.name.removesuffix(".gbai"), path))


async def _kb_ingest(settings: Settings, bot: str, path: Path) -> int:
    from pipeline.kb.progress import ProgressBar
    from pipeline.kb.service import open_knowledge_base

    config = load_package(path).config.as_dict()
    stores = await open_stores(settings)
    try:
        kb = await open_knowledge_base(
            stores.pool,
            settings.data_dir,
            qdrant_url=settings.qdrant_url,
            qdrant_api_key=settings.qdrant_api_key,
            config_of=lambda name: config if name == bot else None,
        )
        try:
            report = await kb.ingest(bot, path, progress=ProgressBar(sys.stderr))
            await kb.indexing()
            if report.indexed or report.removed:
                # Cached answers came from the knowledge base as it was (shared with the
                # gateways through Redis; an in-process cache is the gateway's own).
                await stores.answers.bump_kb_version(bot)
        finally:
            await kb.close()
    finally:
        await stores.close()
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(
        f"{report.indexed} indexed, {report.unchanged} unchanged, {report.removed} removed, "
        f"{len(report.skipped)} skipped, {report.chunks} chunks in {report.seconds:.1f} s"
    )
    return 0


def cmd_kb_crawl(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure_logging("WARNING")
    path = Path(args.bot)
    if path.is_dir() and path.name.endswith(".gbai"):
        settings = settings.with_overrides(bots_dir=path.parent)
    name = path.name.removesuffix(".gbai")
    return asyncio.run(_kb_crawl(settings, name, args.url, args.refresh or ""))


async def _kb_crawl(settings: Settings, name: str, url: str, refresh: str) -> int:
    from gateway.app import build_website_crawler
    from pipeline.kb.service import open_knowledge_base
    from pipeline.kb.web_urls import InvalidWebsite
    from pipeline.websites import InvalidRefresh, WebsiteBusy

    registry = BotRegistry(settings.bots_dir, environ={})  # no model is needed to crawl
    await registry.load_all()
    bot = registry.get(name)
    if bot is None:
        print(f"error: no bot {name!r} in {settings.bots_dir}", file=sys.stderr)
        return 1

    def tell(page: str, outcome: str) -> None:
        print(f"{outcome} {page}", file=sys.stderr)

    stores = await open_stores(settings)
    http = OutboundHttp()
    try:
        await http.open()
        kb = await open_knowledge_base(
            stores.pool,
            settings.data_dir,
            qdrant_url=settings.qdrant_url,
            qdrant_api_key=settings.qdrant_api_key,
            config_of=registry.config_of,
        )
        try:
            crawler = build_website_crawler(stores, kb, http, registry)
            report = await crawler.crawl_now(bot, url, refresh=refresh, on_page=tell)
            await kb.indexing()
        except (InvalidWebsite, InvalidRefresh, WebsiteBusy) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        finally:
            await kb.close()
    finally:
        await http.close()
        await stores.close()
        await registry.close()
    result = report.result
    for page, reason in result.skipped:
        print(f"skipped {page}: {reason}", file=sys.stderr)
    if report.error is not None:
        print(f"error: {report.url} not crawled: {report.error}", file=sys.stderr)
        return 1
    print(
        f"{result.indexed} indexed, {result.unchanged} unchanged, {result.removed} removed, "
        f"{result.skipped_count} skipped; {report.pages} pages of {report.url} in collection "
        f"{report.collection} ({result.stop.value}) in {report.seconds:.1f} s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bots", type=Path, help="folder of *.gbai bots (env BOTSERVER_BOTS)")
        p.add_argument(
            "--data-dir", type=Path, help="where embedded data lives (env BOTSERVER_DATA_DIR)"
        )

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--host", help="address to listen on (env BOTSERVER_HOST, default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, help="port to listen on (env BOTSERVER_PORT, default 8080)"
    )
    common(serve)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    common(migrate)
    migrate.set_defaults(func=cmd_migrate)

    check = sub.add_parser("check", help="check .bas files and .gbai packages for errors")
    check.add_argument("targets", nargs="+", metavar="FILE_OR_PACKAGE")
    check.add_argument(
        "--tools",
        action="store_true",
        help="print each tool's schema (OpenAI function and Anthropic tool) as JSON",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="fail on warnings too (things General Bots tolerates, such as a missing tool)",
    )
    check.set_defaults(func=cmd_check)

    chat = sub.add_parser("chat", help="talk to a bot in the terminal")
    chat.add_argument("bot", metavar="BOT", help="a bot name, or a path to a .gbai package")
    common(chat)
    chat.set_defaults(func=cmd_chat)

    keys = sub.add_parser("keys", help="manage the web API's keys (kept hashed in the database)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key; it is printed this once")
    create.add_argument("bot", metavar="BOT", nargs="?", help="the bot the key is for")
    create.add_argument("--all-bots", action="store_true", help="a key for every bot")
    create.add_argument("--role", required=True, choices=ROLES, help="what the key may do")
    create.add_argument("--user", help="the user a --role user key acts as")
    create.add_argument("--name", default="", help="a label, shown by keys list")
    common(create)
    create.set_defaults(func=cmd_keys)
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("bot", metavar="BOT", nargs="?", help="only this bot's (and every bot's)")
    common(listing)
    listing.set_defaults(func=cmd_keys)
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id keys list shows")
    common(revoke)
    revoke.set_defaults(func=cmd_keys)

    kb = sub.add_parser("kb", help="manage a bot's knowledge base")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    ingest = kb_sub.add_parser("ingest", help="index what changed in the bot's .gbkb folders")
    ingest.add_argument("bot", metavar="BOT", help="a bot name, or a path to a .gbai package")
    common(ingest)
    ingest.set_defaults(func=cmd_kb_ingest)
    crawl = kb_sub.add_parser(
        "crawl", help="crawl a website into the bot's knowledge base now, as USE WEBSITE does"
    )
    crawl.add_argument("bot", metavar="BOT", help="a bot name, or a path to a .gbai package")
    crawl.add_argument("url", metavar="URL", help="the site's start page (http or https)")
    crawl.add_argument(
        "--refresh",
        help="crawl it again after this long (12h, 1d, 1w, 1m; default website-expires or 1m)",
    )
    common(crawl)
    crawl.set_defaults(func=cmd_kb_crawl)

    telegram = sub.add_parser("telegram", help="manage a bot's Telegram channel")
    telegram_sub = telegram.add_subparsers(dest="telegram_command", required=True)
    set_hook = telegram_sub.add_parser(
        "set-webhook", help="point Telegram at URL with a new secret, stored in config.csv"
    )
    set_hook.add_argument("bot", metavar="BOT", help="a bot name, or a path to a .gbai package")
    set_hook.add_argument(
        "url",
        metavar="URL",
        help="the gateway's public https URL (the host alone gets /webhooks/telegram/BOT)",
    )
    set_hook.add_argument(
        "--drop-pending-updates", action="store_true", help="discard updates Telegram holds"
    )
    common(set_hook)
    set_hook.set_defaults(func=cmd_telegram_set_webhook)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as e:  # a configuration that cannot be used: say what, no traceback
        print(f"botserver: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
