"""``botserver keys create|list|revoke``: the web API's keys, on the configured database.

``create`` prints the key alone on stdout (for scripts) and what it grants on
stderr; the key is shown this once: the database keeps only its hash.
"""

from __future__ import annotations

import sys

from config.packages import valid_bot_name
from config.settings import Settings
from storage.api_keys import ApiKey, Role
from storage.services import stores


async def create(
    settings: Settings, bot: str | None, role: Role, *, name: str, user_id: str | None
) -> int:
    if bot is not None and not (
        valid_bot_name(bot) and (settings.bots_dir / f"{bot}.gbai").is_dir()
    ):
        print(f"error: no bot {bot!r} in {settings.bots_dir}", file=sys.stderr)
        return 1
    if (role == "user") != (user_id is not None):
        print("error: --user names the user of a user key, and only of one", file=sys.stderr)
        return 2
    async with stores(settings, pool_max_size=2) as opened:
        key, secret = await opened.api_keys.create(
            bot_id=bot, role=role, user_id=user_id, name=name
        )
    print(secret)
    print(
        f"created key {key.id}: role {key.role}, {_scope(key)}"
        + (f", user {key.user_id}" if key.user_id else "")
        + "; it is shown only this once",
        file=sys.stderr,
    )
    return 0


async def list_keys(settings: Settings, bot: str | None) -> int:
    async with stores(settings, pool_max_size=2) as opened:
        keys = await opened.api_keys.list_keys(bot)
    print("id\tbot\trole\tuser\tname\tcreated\trevoked")
    for key in keys:
        print(
            "\t".join(
                [
                    key.id,
                    key.bot_id or "*",
                    key.role,
                    key.user_id or "-",
                    key.name or "-",
                    key.created_at.isoformat(timespec="seconds"),
                    key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
                ]
            )
        )
    return 0


async def revoke(settings: Settings, key_id: str) -> int:
    async with stores(settings, pool_max_size=2) as opened:
        done = await opened.api_keys.revoke(key_id)
    if not done:
        print(f"error: no key {key_id!r} in force", file=sys.stderr)
        return 1
    print(f"revoked key {key_id}")
    return 0


def _scope(key: ApiKey) -> str:
    return f"bot {key.bot_id}" if key.bot_id else "every bot"
