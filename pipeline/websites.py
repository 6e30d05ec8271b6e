"""Websites crawled into bots' knowledge bases: ``USE WEBSITE url [REFRESH every]``.

As in General Bots, naming a site registers it for crawling (once per bot, however many
sessions name it: a ``kb_websites`` row) and makes the conversation search its collection
(``website_<url>``); the crawl runs in the background, never in the turn, and answers get
better as its pages are indexed. A dialog's ``USE WEBSITE`` lines with a quoted URL are
registered as the bot loads (General Bots' preprocessing), so the crawl starts before anyone
talks to the bot. A site is crawled again ``REFRESH`` after its last crawl (the shortest
interval any dialog asked for; default the bot's ``website-expires``, else a month); a
failed crawl is tried again within the hour.

Every instance runs a :class:`WebsiteCrawler`. It claims a due site by its row's lease, so
one instance crawls it; renews the lease while it works, saving the crawl's progress with
it; and hands the site back on shutdown. A site whose lease ran out (its instance died) is
claimed again and resumed from that progress. Pages are indexed one by one as documents of
the site's collection, their URL as their source (so passages cite it); a page whose text
did not change is not indexed again, and after a complete crawl the pages it no longer found
are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipeline.bots import Bot, BotRegistry
from pipeline.kb.crawl import CrawlLimits, CrawlProgress, CrawlResult, SiteCrawl, Stop
from pipeline.kb.service import KnowledgeBase
from pipeline.kb.web_pages import WebPage
from pipeline.kb.web_urls import InvalidWebsite, website_collection, website_url
from pipeline.outbound_http import OutboundHttp
from storage.base import StorageError
from storage.kb_base import DocumentStatus, KbDocument
from storage.kb_websites import PostgresKbWebsites, Registration, WebsiteRow, WebsiteStatus

log = logging.getLogger(__name__)

DEFAULT_REFRESH = "1m"  # General Bots' default
RETRY_AFTER = 3600.0  # seconds before a failed crawl is tried again (at most its refresh)
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([hdwmy]?)\s*$", re.IGNORECASE)

#: ``(url, outcome)`` for each page a crawl handled: "indexed", "unchanged" or "removed".
PageCallback = Callable[[str, str], None]


class InvalidRefresh(ValueError):
    """A REFRESH interval General Bots would not read."""


class WebsiteBusy(Exception):
    """Another instance is crawling the site right now."""


class LeaseLost(Exception):
    """The site's lease ran out and another instance took it: this crawl stops."""


def refresh_seconds(interval: str) -> int:
    """General Bots' intervals: ``12h``, ``1d``, ``2w``, ``1m`` (30 days), ``1y`` (365), or a
    number of days."""
    match = _INTERVAL.match(interval)
    if match is None or int(match.group(1)) <= 0:
        raise InvalidRefresh(
            f'REFRESH {interval!r} is not an interval such as "12h", "1d", "1w", "1m" or "1y"'
        )
    return int(match.group(1)) * _UNITS[(match.group(2) or "d").lower()]


@dataclass(slots=True)
class CrawlReport:
    """What crawling one site did (the CLI prints it)."""

    bot: str
    url: str
    collection: str
    status: WebsiteStatus
    result: CrawlResult
    pages: int  # the site's pages in the index now
    seconds: float
    error: str | None = None


class WebsiteCrawler:
    """Registers the websites bots name and crawls those due, in the background.

    ``use`` is what a dialog's ``USE WEBSITE`` calls; ``start`` the crawling once the stores
    are open, ``stop`` it before they close. ``crawl_now`` crawls one site in the caller's
    task (``botserver kb crawl``).
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        store: PostgresKbWebsites,
        http: OutboundHttp,
        registry: BotRegistry,
        *,
        instance: str | None = None,
        concurrency: int = 2,
        poll: float = 30.0,
        lease: float = 120.0,
        retry: float = RETRY_AFTER,
        on_change: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        """``on_change(bot)`` is told when a crawl changed the bot's knowledge base (the
        semantic cache's answers were given from it as it was)."""
        self.kb = kb
        self._on_change = on_change
        self.store = store
        self._http = http
        self._registry = registry
        self.instance = instance or f"crawler-{uuid.uuid4().hex[:12]}"
        self._concurrency = max(1, concurrency)
        self._poll = poll
        self._lease = lease
        self._retry = retry
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._crawls: dict[tuple[str, str], asyncio.Task[CrawlReport | None]] = {}
        self._registering: set[asyncio.Task[None]] = set()

    # -- naming sites -----------------------------------------------------------------------

    async def use(self, bot: Bot, url: str, refresh: str = "") -> str:
        """Register ``url`` for ``bot`` (crawled soon if new); its normalized URL.

        :class:`InvalidWebsite` or :class:`InvalidRefresh` for what cannot be crawled;
        :class:`StorageError` when the database cannot record it.
        """
        normalized = website_url(url)
        every = refresh.strip() or bot.package.config.get("website-expires", "").strip()
        every = every or DEFAULT_REFRESH
        seconds = refresh_seconds(every)
        collection = website_collection(normalized)
        outcome = await self.store.register(bot.name, normalized, collection, every, seconds)
        if outcome is not Registration.UNCHANGED:
            log.info(
                "website %s of bot %s registered for crawling (refresh %s, collection %s)",
                normalized,
                bot.name,
                every,
                collection,
            )
            self.wake()
        return normalized

    def loaded(self, bot: Bot) -> None:
        """Register the websites ``bot``'s dialogs name with a quoted URL, and the
        ``Website`` row of its config.csv (General Bots' crawler template), in the background
        (a bot loading or reloading never waits for the database)."""
        sites = {site for program in bot.programs.values() for site in program.websites}
        configured = bot.package.config.get("website", "").strip()
        if configured:
            sites.add((configured, ""))
        if not sites:
            return
        task = asyncio.create_task(
            self._register_all(bot, sorted(sites)), name=f"websites-{bot.name}"
        )
        self._registering.add(task)
        task.add_done_callback(self._registering.discard)

    async def _register_all(self, bot: Bot, sites: list[tuple[str, str]]) -> None:
        for url, refresh in sites:
            try:
                await self.use(bot, url, refresh)
            except (InvalidWebsite, InvalidRefresh) as e:
                log.warning("bot %s: USE WEBSITE %r not crawled: %s", bot.name, url, e)
            except StorageError:
                log.exception("bot %s: USE WEBSITE %r could not be registered", bot.name, url)

    # -- the background loop --------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="website-crawler")

    def wake(self) -> None:
        """Look for due sites now (a site was registered, a crawl ended)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop looking for sites; running crawls hand their site back, progress kept."""
        tasks = [t for t in (self._task, *self._registering) if t is not None]
        for task in tasks:
            task.cancel()
        crawls = list(self._crawls.values())
        for crawl in crawls:
            crawl.cancel()
        await asyncio.gather(*tasks, *crawls, return_exceptions=True)
        self._task = None

    async def settled(self) -> None:
        """Until the registrations and crawls started so far have ended (tests, the CLI)."""
        while self._registering or self._crawls:
            await asyncio.gather(*self._registering, *self._crawls.values(), return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                while len(self._crawls) < self._concurrency:
                    row = await self.store.claim_due(
                        self._registry.names(), self.instance, self._lease
                    )
                    if row is None:
                        break
                    self._spawn(row)
            except StorageError as e:  # the database is down: the next round tries again
                log.error("website crawler: no due websites read: %s; again in %g s", e, self._poll)
            except Exception:
                log.exception("website crawler: looking for due websites failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    def _spawn(self, row: WebsiteRow) -> None:
        key = (row.bot, row.url)
        task = asyncio.create_task(self._crawl_claimed(row), name=f"crawl-{row.bot}-{row.url}")
        self._crawls[key] = task

        def done(finished: asyncio.Task[CrawlReport | None]) -> None:
            if self._crawls.get(key) is finished:
                del self._crawls[key]
            self.wake()

        task.add_done_callback(done)

    async def _crawl_claimed(self, row: WebsiteRow) -> CrawlReport | None:
        try:
            return await self._crawl(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("website %s of bot %s: the crawl failed", row.url, row.bot)
            return None

    # -- one crawl ------------------------------------------------------------------------

    async def crawl_now(
        self, bot: Bot, url: str, *, refresh: str = "", on_page: PageCallback | None = None
    ) -> CrawlReport:
        """Register and crawl one site in this task, due or not (:class:`WebsiteBusy` when
        another instance is crawling it)."""
        normalized = await self.use(bot, url, refresh)
        row = await self.store.claim(bot.name, normalized, self.instance, self._lease)
        if row is None:
            raise WebsiteBusy(f"{normalized} is being crawled by another instance")
        report = await self._crawl(row, on_page=on_page)
        assert report is not None
        return report

    async def _crawl(
        self, row: WebsiteRow, *, on_page: PageCallback | None = None
    ) -> CrawlReport | None:
        started = time.perf_counter()
        bot = self._registry.get(row.bot)
        if bot is None:  # unloaded meanwhile: another instance that has it will crawl it
            await self.store.release(row.bot, row.url, self.instance)
            return None
        rows = {d.source: d for d in await self.kb.documents(bot.name, row.collection)}
        stale = bool(rows) and await self.kb.out_of_step(
            bot.name, row.collection, list(rows.values())
        )
        progress = CrawlProgress.from_json(row.progress) if row.progress else None
        if progress is not None:
            log.info(
                "website %s of bot %s: resuming its crawl (%d pages done, %d to visit)",
                row.url,
                bot.name,
                progress.pages,
                len(progress.queue),
            )
        lost = asyncio.Event()
        sink = _IndexSink(self, bot.name, row, rows, stale=stale, on_page=on_page, lost=lost)
        crawl = SiteCrawl(
            self._http,
            row.url,
            policy=bot.http,
            limits=CrawlLimits.from_config(bot.package.config),
            sink=sink,
            progress=progress,
            executor=self.kb.executor,
            label=f"{row.url} of bot {bot.name}",
        )
        heartbeat = asyncio.create_task(self._heartbeat(row, lost))
        running = asyncio.create_task(crawl.run())
        try:
            await asyncio.wait({running, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():  # the heartbeat found the lease lost
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            result = None if lost.is_set() else running.result()
        except asyncio.CancelledError:  # shutdown: the site is handed back, progress kept
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release(row.bot, row.url, self.instance))
            raise
        except LeaseLost:
            result = None
        except Exception as e:
            await self._finish(
                row, WebsiteStatus.FAILED, len(sink.rows), f"{type(e).__name__}: {e}"
            )
            raise
        finally:
            heartbeat.cancel()
        if result is None:
            log.warning(
                "website %s of bot %s: its lease was lost; another instance goes on with it",
                row.url,
                bot.name,
            )
            return None
        if result.complete:
            for source in sorted(set(sink.rows) - crawl.progress.kept):
                await sink.gone(source)
                result.removed += 1
        failed = result.stop is Stop.FAILED
        status = WebsiteStatus.FAILED if failed else WebsiteStatus.CRAWLED
        error = result.failure if failed else None
        if failed:
            log.warning("website %s of bot %s not crawled: %s", row.url, bot.name, error)
        await self._finish(row, status, len(sink.rows), error)
        if result.indexed or result.removed:
            self.kb.changed()
            if self._on_change is not None:
                await self._on_change(bot.name)
        seconds = time.perf_counter() - started
        log.info(
            "website %s of bot %s: %s after %d pages: %d indexed, %d unchanged, %d removed, "
            "%d skipped in %.1f s",
            row.url,
            bot.name,
            result.stop.value,
            crawl.progress.pages,
            result.indexed,
            result.unchanged,
            result.removed,
            result.skipped_count,
            seconds,
        )
        return CrawlReport(
            bot.name, row.url, row.collection, status, result, len(sink.rows), seconds, error
        )

    async def _finish(
        self, row: WebsiteRow, status: WebsiteStatus, pages: int, error: str | None
    ) -> None:
        next_in = float(row.refresh_seconds)
        if status is WebsiteStatus.FAILED:
            next_in = min(self._retry, next_in)
        await self.store.finish(
            row.bot,
            row.url,
            self.instance,
            status=status,
            pages=pages,
            error=error,
            next_in=next_in,
        )

    async def _heartbeat(self, row: WebsiteRow, lost: asyncio.Event) -> None:
        """Renew the lease while the crawl runs; end (setting ``lost``) when it was lost."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                held = await self.store.heartbeat(row.bot, row.url, self.instance, self._lease)
            except Exception as e:  # the database is away for now: the lease has slack
                log.warning("website %s of bot %s: lease not renewed: %s", row.url, row.bot, e)
                continue
            if not held:
                lost.set()
                return

    async def save_progress(
        self, row: WebsiteRow, progress: CrawlProgress, lost: asyncio.Event
    ) -> None:
        """Keep the crawl's progress with its lease (:class:`LeaseLost` if it was lost)."""
        held = await self.store.heartbeat(
            row.bot, row.url, self.instance, self._lease, progress.to_json()
        )
        if not held:
            lost.set()
            raise LeaseLost(f"{row.url} of bot {row.bot} is held by another instance")


@dataclass(slots=True)
class _IndexSink:
    """A crawl's pages into the knowledge base, as documents of the site's collection."""

    crawler: WebsiteCrawler
    bot: str
    row: WebsiteRow
    rows: dict[str, KbDocument]  # the collection's documents by source, kept up to date
    stale: bool = False  # the index lost documents: index every page again
    on_page: PageCallback | None = None
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    async def page(self, url: str, page: WebPage) -> bool:
        kb = self.crawler.kb
        known = None if self.stale else self.rows.get(url)
        changed = await kb.index_one(
            self.bot, self.row.collection, url, page.document, page.digest, known=known
        )
        if url not in self.rows or changed:
            # Only its presence matters from now on (a page is visited once per crawl).
            self.rows[url] = KbDocument(
                self.row.collection, url, page.digest, "", DocumentStatus.INDEXED
            )
        self._tell(url, "indexed" if changed else "unchanged")
        return changed

    async def gone(self, url: str) -> bool:
        if url not in self.rows:
            return False
        await self.crawler.kb.remove_one(self.bot, self.row.collection, url)
        del self.rows[url]
        self._tell(url, "removed")
        return True

    async def save(self, progress: CrawlProgress) -> None:
        await self.crawler.save_progress(self.row, progress, self.lost)

    def _tell(self, url: str, outcome: str) -> None:
        if self.on_page is not None:
            self.on_page(url, outcome)
