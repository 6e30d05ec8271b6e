"""The ``kb_websites`` rows in PostgreSQL: the sites crawled into bots' knowledge bases.

One row per bot and site, shared by every instance. A crawler claims a due site by taking
its lease (``claimed_by``, ``claimed_until``) with ``FOR UPDATE SKIP LOCKED``, so each site
is crawled by one instance at a time; it renews the lease as it goes, saving the crawl's
progress with it, and a lease that runs out (the instance died) makes the site claimable
again, to be resumed from that progress.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from storage.postgres import translate_errors


class WebsiteStatus(StrEnum):
    """Where a site's crawling stands."""

    PENDING = "pending"  # registered, never crawled (or a crawl handed back unfinished)
    CRAWLING = "crawling"
    CRAWLED = "crawled"
    FAILED = "failed"  # the last crawl could not fetch the site; ``error`` says why


class Registration(StrEnum):
    """What registering a site changed."""

    NEW = "new"
    SHORTER = "shorter"  # its refresh interval was shortened (due sooner)
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class WebsiteRow:
    """One site of a bot's knowledge base (a ``kb_websites`` row)."""

    bot: str
    url: str
    collection: str
    refresh: str
    refresh_seconds: int
    status: WebsiteStatus
    next_crawl: dt.datetime
    claimed_by: str | None
    progress: dict[str, Any] | None
    last_crawled: dt.datetime | None
    pages: int
    error: str | None


_REGISTER = """
INSERT INTO kb_websites (bot_id, url, collection, refresh, refresh_seconds)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (bot_id, url) DO UPDATE SET
    refresh = excluded.refresh,
    refresh_seconds = excluded.refresh_seconds,
    next_crawl = LEAST(
        kb_websites.next_crawl,
        COALESCE(kb_websites.last_crawled, now()) + make_interval(secs => excluded.refresh_seconds)
    ),
    updated_at = now()
WHERE excluded.refresh_seconds < kb_websites.refresh_seconds
RETURNING (xmax = 0) AS inserted
"""

_COLUMNS = """
bot_id, url, collection, refresh, refresh_seconds, status, next_crawl, claimed_by, progress,
last_crawled, pages, error
"""

_CLAIM_DUE = f"""
UPDATE kb_websites w SET
    claimed_by = $2, claimed_until = now() + make_interval(secs => $3),
    status = 'crawling', updated_at = now()
FROM (
    SELECT bot_id, url FROM kb_websites
    WHERE bot_id = ANY($1::varchar[])
      AND ((claimed_until IS NULL AND next_crawl <= now()) OR claimed_until < now())
    ORDER BY next_crawl
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) due
WHERE w.bot_id = due.bot_id AND w.url = due.url
RETURNING {", ".join("w." + c.strip() for c in _COLUMNS.split(","))}
"""

_CLAIM_ONE = f"""
UPDATE kb_websites SET
    claimed_by = $3, claimed_until = now() + make_interval(secs => $4),
    status = 'crawling', updated_at = now()
WHERE bot_id = $1 AND url = $2 AND (claimed_until IS NULL OR claimed_until < now())
RETURNING {_COLUMNS}
"""

_HEARTBEAT = """
UPDATE kb_websites SET
    claimed_until = now() + make_interval(secs => $4),
    progress = COALESCE($5::jsonb, progress),
    updated_at = now()
WHERE bot_id = $1 AND url = $2 AND claimed_by = $3
"""

_FINISH = """
UPDATE kb_websites SET
    claimed_by = NULL, claimed_until = NULL, progress = NULL,
    status = $4::varchar, pages = $5, error = $6,
    last_crawled = CASE WHEN $4::varchar = 'crawled' THEN now() ELSE last_crawled END,
    next_crawl = now() + make_interval(secs => $7),
    updated_at = now()
WHERE bot_id = $1 AND url = $2 AND claimed_by = $3
"""

_RELEASE = """
UPDATE kb_websites SET
    claimed_by = NULL, claimed_until = NULL, next_crawl = now(),
    status = CASE WHEN last_crawled IS NULL THEN 'pending' ELSE 'crawled' END,
    updated_at = now()
WHERE bot_id = $1 AND url = $2 AND claimed_by = $3
"""

_GET = f"SELECT {_COLUMNS} FROM kb_websites WHERE bot_id = $1 AND url = $2"
_LIST = f"SELECT {_COLUMNS} FROM kb_websites WHERE bot_id = $1 ORDER BY url"


class PostgresKbWebsites:
    """The ``kb_websites`` rows on the process's asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def register(
        self, bot: str, url: str, collection: str, refresh: str, refresh_seconds: int
    ) -> Registration:
        """Make sure ``bot`` crawls ``url``: a new site is due at once; a site already there
        keeps the shorter of its interval and ``refresh_seconds`` (General Bots' rule)."""
        with translate_errors:
            inserted = await self._pool.fetchval(
                _REGISTER, bot, url, collection, refresh, refresh_seconds
            )
        if inserted is None:
            return Registration.UNCHANGED
        return Registration.NEW if inserted else Registration.SHORTER

    async def claim_due(
        self, bots: Sequence[str], instance: str, lease: float
    ) -> WebsiteRow | None:
        """Take the lease of the site of ``bots`` due first (or whose lease ran out)."""
        if not bots:
            return None
        with translate_errors:
            row = await self._pool.fetchrow(_CLAIM_DUE, list(bots), instance, lease)
        return _row(row) if row is not None else None

    async def claim(self, bot: str, url: str, instance: str, lease: float) -> WebsiteRow | None:
        """Take the lease of one site, due or not (None: another instance holds it)."""
        with translate_errors:
            row = await self._pool.fetchrow(_CLAIM_ONE, bot, url, instance, lease)
        return _row(row) if row is not None else None

    async def heartbeat(
        self,
        bot: str,
        url: str,
        instance: str,
        lease: float,
        progress: dict[str, Any] | None = None,
    ) -> bool:
        """Renew the lease (and save ``progress`` when given); False when it was lost."""
        with translate_errors:
            result: str = await self._pool.execute(_HEARTBEAT, bot, url, instance, lease, progress)
        return result.endswith(" 1")

    async def finish(
        self,
        bot: str,
        url: str,
        instance: str,
        *,
        status: WebsiteStatus,
        pages: int,
        error: str | None,
        next_in: float,
    ) -> bool:
        """End the crawl: record its outcome, clear its progress, due again in ``next_in``
        seconds; False when the lease had been lost (another instance took over)."""
        with translate_errors:
            result: str = await self._pool.execute(
                _FINISH, bot, url, instance, status.value, pages, error, next_in
            )
        return result.endswith(" 1")

    async def release(self, bot: str, url: str, instance: str) -> None:
        """Hand an unfinished crawl back (shutdown): claimable at once, its progress kept."""
        with translate_errors:
            await self._pool.execute(_RELEASE, bot, url, instance)

    async def get(self, bot: str, url: str) -> WebsiteRow | None:
        with translate_errors:
            row = await self._pool.fetchrow(_GET, bot, url)
        return _row(row) if row is not None else None

    async def list(self, bot: str) -> list[WebsiteRow]:
        with translate_errors:
            rows = await self._pool.fetch(_LIST, bot)
        return [_row(r) for r in rows]


def _row(row: asyncpg.Record) -> WebsiteRow:
    progress = row["progress"]
    if isinstance(progress, str):
        progress = json.loads(progress)
    return WebsiteRow(
        bot=row["bot_id"],
        url=row["url"],
        collection=row["collection"],
        refresh=row["refresh"],
        refresh_seconds=row["refresh_seconds"],
        status=WebsiteStatus(row["status"]),
        next_crawl=row["next_crawl"],
        claimed_by=row["claimed_by"],
        progress=progress if isinstance(progress, dict) else None,
        last_crawled=row["last_crawled"],
        pages=row["pages"],
        error=row["error"],
    )
