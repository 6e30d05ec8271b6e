"""``botserver telegram set-webhook BOT URL``: point Telegram at the gateway.

A new secret token is made for every call and sent to Telegram with the URL;
it is then written to the bot's ``config.csv`` as ``telegram-webhook-secret``
(unless that row reads it from the environment, ``${VAR}``: then the command
says which variable to set). The running gateway uses it after a reload of
the bot or a restart; until then it refuses Telegram's webhooks (403), which
Telegram retries.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from channels.base import ChannelNotConfigured, SendError
from channels.hub import resolve
from channels.telegram import TelegramChannel
from config.config_writer import set_config_value
from config.packages import PackageError, load_package

_VARIABLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def webhook_url(url: str, bot: str) -> str:
    """``url`` as given, or with ``/webhooks/telegram/BOT`` added when it names only a host."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, f"/webhooks/telegram/{bot}", "", ""))
    return url


async def set_webhook(package_dir: Path, url: str, *, drop_pending_updates: bool = False) -> int:
    """Set the webhook of the bot in ``package_dir``; the exit code of the command."""
    try:
        package = load_package(package_dir)
    except PackageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    bot = package.name
    values, problems = resolve(package.config, os.environ)
    if "telegram-bot-token" in problems:
        print(f"error: {problems['telegram-bot-token']}", file=sys.stderr)
        return 1
    try:
        channel = TelegramChannel.from_config(bot, values, require_secret=False)
    except ChannelNotConfigured as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    target = webhook_url(url, bot)
    try:
        secret = await channel.set_webhook(target, drop_pending_updates=drop_pending_updates)
    except SendError as e:
        print(f"error: Telegram did not set the webhook: {e}", file=sys.stderr)
        return 1
    finally:
        await channel.close()
    stored = package.config.get("telegram-webhook-secret", "").strip()
    variable = _VARIABLE.match(stored)
    if variable:
        print(f"webhook set: {target}")
        print(f"set {variable.group(1)} to the new secret before the gateway reloads the bot:")
        print(secret)
    else:
        config_file = package.path / f"{bot}.gbot" / "config.csv"
        set_config_value(config_file, "telegram-webhook-secret", secret)
        print(f"webhook set: {target}")
        print(f"its secret is stored in {config_file}")
    print(f"reload the bot (POST /api/v1/bots/{bot}/reload) or restart the gateway to use it")
    return 0
