"""Crawl one website, within limits, politely, through the guarded HTTP client.

Breadth first from the start page: links are followed to ``max_depth`` (the start page is
depth 0) while they stay on the site (:class:`~pipeline.kb.web_urls.SiteScope`), until
``max_pages`` pages were fetched, ``max_site_bytes`` read or ``time_budget`` seconds spent.
Every request goes through :meth:`OutboundHttp.fetch` with the bot's HTTP policy, so private
addresses are refused after DNS and on every redirect hop unless the bot allows them; it
names the crawler in its User-Agent, waits ``delay`` seconds (or robots.txt's
``Crawl-delay``) after the previous one, and is never sent for a URL robots.txt disallows.

Redirects are followed by hand: the start page's anywhere (``example.com`` to
``www.example.com``; its host joins the site), the others only within the site. A page is
read only when it is HTML, text, markdown, PDF or ``.docx``, and only its first
``max_page_bytes`` are read (a cut PDF or ``.docx`` is skipped, a cut HTML page indexed as
far as it was read). ``noindex`` pages are not indexed, ``nofollow`` pages' links not
followed; a page whose ``rel=canonical`` is another page of the site is indexed under that
URL, and a page with the same text as one already indexed in this crawl is not indexed again.

What the crawl does to the index is the :class:`PageSink`'s business; the crawl hands it
each page and saves its :class:`CrawlProgress` through it after each page, so a crawl cut
short (a restart) resumes from its frontier.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from config.packages import BotConfig
from pipeline.kb.documents import UnreadableDocument
from pipeline.kb.parser_processes import read_off_loop
from pipeline.kb.robots import ALLOW_ALL, ROBOTS_MAX_BYTES, Robots, parse_robots, unreachable
from pipeline.kb.text_readers import decode
from pipeline.kb.web_pages import PAGE_TYPES, WHOLE_TYPES, WebPage, read_page
from pipeline.kb.web_urls import SiteScope, normalize_url
from pipeline.outbound_http import Fetched, HttpCallError, HttpPolicy, OutboundHttp

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GONE = frozenset({404, 410})
_ACCEPT = (
    "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9,"
    "application/pdf;q=0.8,*/*;q=0.1"
)
# Links to these are not pages: not even asked for.
_NOT_PAGES = frozenset(
    ".png .jpg .jpeg .gif .webp .svg .ico .bmp .tif .tiff .avif .css .js .mjs .map .json "
    ".xml .rss .atom .zip .gz .tgz .bz2 .xz .7z .rar .tar .jar .exe .msi .dmg .iso .apk .deb "
    ".rpm .mp3 .mp4 .m4a .m4v .wav .ogg .oga .ogv .webm .avi .mov .mkv .flac .woff .woff2 "
    ".ttf .otf .eot .xls .xlsx .ppt .pptx .odt .ods .odp .wasm".split()
)
_SKIPS_KEPT = 50  # skipped pages listed in a report (all are logged)


def _version() -> str:
    try:
        return importlib.metadata.version("botserver")
    except importlib.metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"botserver/{_version()} (knowledge-base crawler; robots token botserver)"


@dataclass(frozen=True, slots=True)
class CrawlLimits:
    """How far one crawl of a site may go (config.csv ``website-*`` keys)."""

    max_depth: int = 3
    max_pages: int = 100
    max_page_bytes: int = 512 * 1024  # General Bots reads 500 kB of a page
    max_site_bytes: int = 50 * 1024 * 1024
    delay: float = 1.0  # seconds between two requests to the site
    time_budget: float = 600.0  # seconds of crawling in all, resumptions included

    @classmethod
    def from_config(cls, config: BotConfig) -> CrawlLimits:
        """General Bots' ``website-max-depth`` and ``website-max-pages`` (its crawler
        template's ``website Max Documents`` too), and this gateway's
        ``website-max-page-bytes``, ``website-max-site-bytes``, ``website-crawl-delay`` and
        ``website-time-budget``; a missing or nonsensical value keeps the default."""
        d = cls()

        def positive(key: str, default: float) -> float:
            value = config.number(key, default)
            return value if value > 0 else default

        pages = config.integer("website-max-pages", config.integer("website-max-documents", 0))
        depth = config.integer("website-max-depth", d.max_depth)
        delay = config.number("website-crawl-delay", d.delay)
        return cls(
            max_depth=depth if depth >= 0 else d.max_depth,
            max_pages=pages if pages > 0 else d.max_pages,
            max_page_bytes=int(positive("website-max-page-bytes", d.max_page_bytes)),
            max_site_bytes=int(positive("website-max-site-bytes", d.max_site_bytes)),
            delay=delay if delay >= 0 else d.delay,
            time_budget=positive("website-time-budget", d.time_budget),
        )


@dataclass(slots=True)
class CrawlProgress:
    """Where a crawl stands: saved after each page, read back to resume it."""

    scope: SiteScope | None = None  # None until the start page was fetched
    queue: deque[tuple[str, int]] = field(default_factory=deque)  # (url, depth), in order
    seen: set[str] = field(default_factory=set)  # queued or fetched
    kept: set[str] = field(default_factory=set)  # pages indexed or unchanged in this crawl
    digests: dict[str, str] = field(default_factory=dict)  # text digest -> its page
    pages: int = 0
    bytes: int = 0
    requests: int = 0
    elapsed: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope.to_json() if self.scope is not None else None,
            "queue": [[url, depth] for url, depth in self.queue],
            "seen": sorted(self.seen),
            "kept": sorted(self.kept),
            "digests": self.digests,
            "pages": self.pages,
            "bytes": self.bytes,
            "requests": self.requests,
            "elapsed": round(self.elapsed, 3),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrawlProgress:
        scope = data.get("scope")
        return cls(
            scope=SiteScope.from_json(scope) if isinstance(scope, dict) else None,
            queue=deque((str(u), int(d)) for u, d in data.get("queue") or ()),
            seen={str(u) for u in data.get("seen") or ()},
            kept={str(u) for u in data.get("kept") or ()},
            digests={str(k): str(v) for k, v in (data.get("digests") or {}).items()},
            pages=int(data.get("pages") or 0),
            bytes=int(data.get("bytes") or 0),
            requests=int(data.get("requests") or 0),
            elapsed=float(data.get("elapsed") or 0.0),
        )


class PageSink(Protocol):
    """What a crawl does with what it finds (the knowledge base, in the gateway)."""

    async def page(self, url: str, page: WebPage) -> bool:
        """Index ``page`` as the document ``url``; False when it was indexed unchanged."""
        ...

    async def gone(self, url: str) -> bool:
        """``url`` is no page to index any more (404, noindex, disallowed): remove it if it
        was indexed; True when it was."""
        ...

    async def save(self, progress: CrawlProgress) -> None:
        """Keep ``progress`` so the crawl can resume from it."""
        ...


class Stop(StrEnum):
    """Why a crawl ended."""

    DONE = "done"  # every page within reach was visited
    PAGES = "page limit"
    BYTES = "byte limit"
    TIME = "time budget"
    FAILED = "failed"  # the start page could not be fetched


@dataclass(slots=True)
class CrawlResult:
    """What one crawl (or the resumed rest of one) did."""

    stop: Stop = Stop.DONE
    failure: str | None = None  # why the start page could not be fetched
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (url, reason), the first few
    skipped_count: int = 0
    truncated: int = 0

    @property
    def complete(self) -> bool:
        """The crawl saw the whole site within its limits, so a page it did not see is gone.

        (Not so when the time ran out, which depends on how fast the site answered.)"""
        return self.stop in (Stop.DONE, Stop.PAGES, Stop.BYTES)


class _StartFailed(Exception):
    pass


class _OutOfTime(Exception):
    pass


class SiteCrawl:
    """One crawl of the site at ``start`` (normalized), new or resumed from ``progress``."""

    def __init__(
        self,
        http: OutboundHttp,
        start: str,
        *,
        policy: HttpPolicy,
        limits: CrawlLimits,
        sink: PageSink,
        progress: CrawlProgress | None = None,
        executor: Executor | None = None,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._start = start
        self._policy = policy
        self._limits = limits
        self._sink = sink
        self.progress = progress if progress is not None else CrawlProgress()
        self._executor = executor
        self._label = label or start
        self._clock = clock
        self._robots: dict[str, Robots] = {}
        self._last_request: float | None = None
        self._began = clock()
        self._elapsed_before = self.progress.elapsed
        self.result = CrawlResult()

    # -- the crawl ------------------------------------------------------------------------

    async def run(self) -> CrawlResult:
        p = self.progress
        if p.scope is None:
            p.queue = deque([(self._start, 0)])
            p.seen = {self._start}
        try:
            while p.queue:
                stop = self._limit_reached()
                if stop is not None:
                    self.result.stop = stop
                    break
                url, depth = p.queue[0]
                await self._visit(url, depth)
                p.queue.popleft()
                p.elapsed = self._spent()
                await self._sink.save(p)
        except _OutOfTime:
            self.result.stop = Stop.TIME
        except _StartFailed as e:
            self.result.stop, self.result.failure = Stop.FAILED, str(e)
        p.elapsed = self._spent()
        return self.result

    def _spent(self) -> float:
        return self._elapsed_before + (self._clock() - self._began)

    def _remaining(self) -> float:
        return self._limits.time_budget - self._spent()

    def _limit_reached(self) -> Stop | None:
        p = self.progress
        if self._remaining() <= 0:
            return Stop.TIME
        if p.pages >= self._limits.max_pages:
            return Stop.PAGES
        if p.bytes >= self._limits.max_site_bytes:
            return Stop.BYTES
        return None

    async def _visit(self, url: str, depth: int) -> None:
        p = self.progress
        first = p.scope is None
        if not await self._allowed(url, first=first):
            return
        try:
            fetched = await self._get(url, first=first)
        except HttpCallError as e:
            if first:
                raise _StartFailed(str(e)) from e
            self._skip(url, str(e))
            p.kept.add(url)  # a page that did not answer keeps what was indexed of it
            return
        if fetched is None:
            return
        final = fetched.url
        if first:
            scope = SiteScope.of(self._start)
            p.scope = (
                scope.with_host_of(final)
                if scope.contains(final)
                else (SiteScope.of(final).with_host_of(self._start))
            )
        if fetched.status in _GONE:
            if first:
                raise _StartFailed(f"{url} answered {fetched.status}")
            await self._gone(url, f"answered {fetched.status}")
            return
        if fetched.status != 200:
            if first:
                raise _StartFailed(f"{url} answered {fetched.status}")
            self._skip(url, f"answered {fetched.status}")
            if fetched.status >= 500:
                p.kept.add(url)  # a passing failure: what was indexed of it stays
            return
        if fetched.content_type not in PAGE_TYPES:
            if first:
                raise _StartFailed(f"{url} is {fetched.content_type or 'of no type'}, not a page")
            await self._gone(final, f"not a page ({fetched.content_type or 'no type'})")
            return
        if fetched.truncated and fetched.content_type in WHOLE_TYPES:
            await self._gone(final, f"larger than {self._limits.max_page_bytes} bytes")
            return
        p.pages += 1
        p.bytes += len(fetched.body)
        await self._read(fetched, depth)

    async def _read(self, fetched: Fetched, depth: int) -> None:
        p = self.progress
        final = fetched.url
        try:
            page = await read_off_loop(
                final,
                fetched.content_type in WHOLE_TYPES,
                self._executor,
                read_page,
                final,
                fetched.content_type,
                fetched.body,
                fetched.charset,
                fetched.robots_tag,
            )
        except UnreadableDocument as e:
            await self._gone(final, e.reason)
            return
        assert p.scope is not None
        source = final
        if page.canonical and page.canonical != final and p.scope.contains(page.canonical):
            source = page.canonical
            p.seen.add(source)
        if fetched.truncated:
            self.result.truncated += 1
            log.info(
                "website %s: %s cut at %d bytes", self._label, final, self._limits.max_page_bytes
            )
        if page.directives.noindex:
            await self._gone(final, "noindex")
        elif source in p.kept:
            log.debug("website %s: %s is a copy of %s, already indexed", self._label, final, source)
        elif p.digests.get(page.digest, source) != source:
            self._skip(final, f"the same text as {p.digests[page.digest]}")
        elif not page.document.sections:
            await self._gone(final, "no text")
        else:
            if await self._sink.page(source, page):
                self.result.indexed += 1
            else:
                self.result.unchanged += 1
            p.kept.add(source)
            p.digests[page.digest] = source
        if page.directives.nofollow or depth >= self._limits.max_depth:
            return
        room = 4 * self._limits.max_pages - len(p.queue)
        for link in page.links:
            if room <= 0:
                break
            if link in p.seen or not p.scope.contains(link) or _not_a_page(link):
                continue
            p.seen.add(link)
            p.queue.append((link, depth + 1))
            room -= 1

    async def _gone(self, url: str, reason: str) -> None:
        self._skip(url, reason)
        if await self._sink.gone(url):
            self.result.removed += 1

    def _skip(self, url: str, reason: str) -> None:
        log.info("website %s: %s skipped: %s", self._label, url, reason)
        self.result.skipped_count += 1
        if len(self.result.skipped) < _SKIPS_KEPT:
            self.result.skipped.append((url, reason))

    # -- robots.txt -----------------------------------------------------------------------

    async def _allowed(self, url: str, *, first: bool) -> bool:
        robots = await self._robots_of(url)
        if robots.allows(url):
            return True
        if first:
            why = robots.reason or "disallowed by robots.txt"
            raise _StartFailed(f"{url}: {why}")
        await self._gone(url, robots.reason or "disallowed by robots.txt")
        return False

    async def _robots_of(self, url: str) -> Robots:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        known = self._robots.get(origin)
        if known is not None:
            return known
        robots = await self._read_robots(f"{origin}/robots.txt")
        self._robots[origin] = robots
        return robots

    async def _read_robots(self, url: str) -> Robots:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                fetched = await self._request(current, max_bytes=ROBOTS_MAX_BYTES, wanted=None)
            except HttpCallError as e:
                return unreachable(f"its robots.txt could not be read: {e}")
            if fetched.status in _REDIRECTS and fetched.location:
                target = normalize_url(fetched.location, current)
                if target is None:
                    return ALLOW_ALL
                current = target
                continue
            if fetched.status == 200:
                robots = parse_robots(decode(fetched.body))
                delay = robots.crawl_delay
                if delay is not None and delay > self._limits.delay:
                    log.info(
                        "website %s: robots.txt asks for %g s between requests", self._label, delay
                    )
                return robots
            if 400 <= fetched.status < 500:
                return ALLOW_ALL
            return unreachable(f"its robots.txt answered {fetched.status}")
        return ALLOW_ALL  # RFC 9309: after five redirects, as if there were no robots.txt

    # -- HTTP -----------------------------------------------------------------------------

    async def _get(self, url: str, *, first: bool) -> Fetched | None:
        """The response for ``url`` after following its redirects (None: skipped)."""
        p = self.progress
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            fetched = await self._request(
                current,
                max_bytes=self._limits.max_page_bytes,
                wanted=lambda kind: kind in PAGE_TYPES,
            )
            if fetched.status not in _REDIRECTS or not fetched.location:
                return fetched
            target = normalize_url(fetched.location, current)
            if target is None:
                self._skip(url, f"redirects to {fetched.location!r}, not a page URL")
                return None
            in_site = first or (p.scope is not None and p.scope.contains(target))
            if not in_site:
                await self._gone(url, f"redirects off the site, to {target}")
                return None
            if target != url and target in p.seen:
                log.debug(
                    "website %s: %s redirects to %s, crawled itself", self._label, url, target
                )
                return None
            p.seen.add(target)
            if not await self._allowed(target, first=first):
                return None
            current = target
        if first:
            raise _StartFailed(f"{url}: more than {MAX_REDIRECTS} redirects")
        self._skip(url, f"more than {MAX_REDIRECTS} redirects")
        return None

    async def _request(
        self, url: str, *, max_bytes: int, wanted: Callable[[str], bool] | None
    ) -> Fetched:
        """One GET, after the pause the site is owed, within the time left."""
        robots = self._robots.get(_origin(url))
        delay = max(self._limits.delay, (robots.crawl_delay if robots else None) or 0.0)
        if self._last_request is not None:
            wait = self._last_request + delay - self._clock()
            if wait > 0:
                if wait >= self._remaining():
                    raise _OutOfTime
                await asyncio.sleep(wait)
        remaining = self._remaining()
        if remaining <= 0:
            raise _OutOfTime
        self.progress.requests += 1
        try:
            return await self._http.fetch(
                url,
                policy=self._policy,
                max_bytes=max_bytes,
                headers={"User-Agent": USER_AGENT, "Accept": _ACCEPT},
                within=remaining,
                wanted=wanted or (lambda kind: True),
            )
        finally:
            self._last_request = self._clock()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _not_a_page(url: str) -> bool:
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return dot > path.rfind("/") and path[dot:] in _NOT_PAGES
