"""USE WEBSITE's crawler against a site on 127.0.0.1: limits, robots, the guard, re-crawls,
one crawl per site across instances, and a crawl resumed after its instance died.

The real crawler, HTTP client, PostgreSQL rows and embedded index; the site is
:mod:`tests.kb.local_site`, and a second server on 127.0.0.2 stands for the rest of the web
(it must never be asked for anything).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from pipeline.bots import Bot, BotRegistry
from pipeline.kb.crawl import USER_AGENT, Stop
from pipeline.kb.service import KnowledgeBase
from pipeline.kb.web_urls import website_collection
from pipeline.outbound_http import OutboundHttp
from pipeline.websites import WebsiteCrawler
from storage.kb_documents import PostgresKbDocuments
from storage.kb_edge import EdgeIndex
from storage.kb_websites import PostgresKbWebsites, WebsiteStatus
from storage.postgres import create_pool
from tests.kb.conftest import POSTGRES_URL
from tests.kb.local_site import LocalSite, Page, acme_docs, crawled, html, serve

OPEN_SITE = {
    "HTTP Allow Private": "true",  # the test site is on 127.0.0.1
    "website-max-depth": "2",
    "website-crawl-delay": "0.02",
    "website-max-page-bytes": "100000",
}


@pytest.fixture
async def offsite() -> AsyncIterator[LocalSite]:
    async with serve(LocalSite(), host="127.0.0.2") as site:
        yield site


@pytest.fixture
async def site(offsite: LocalSite) -> AsyncIterator[LocalSite]:
    async with serve(LocalSite()) as site:
        site.pages.update(acme_docs(offsite.origin))
        yield site


@pytest.fixture
async def http() -> AsyncIterator[OutboundHttp]:
    client = await OutboundHttp().open()
    yield client
    await client.close()


@pytest.fixture
async def kb(tmp_path: Path, kb_pool: asyncpg.Pool) -> AsyncIterator[KnowledgeBase]:
    base = KnowledgeBase(await EdgeIndex.open(tmp_path / "edge"), PostgresKbDocuments(kb_pool))
    yield base
    await base.close()


MakeBot = Callable[..., "asyncio.Future[Bot]"]


@pytest.fixture
def bots(tmp_path: Path) -> BotRegistry:
    return BotRegistry(tmp_path / "bots", environ={})


async def add_bot(registry: BotRegistry, config: dict[str, str], start: str = "") -> Bot:
    """A bot of its own name (the database is shared by the session's tests)."""
    name = f"acme-{uuid.uuid4().hex[:8]}"
    package = registry.bots_dir / f"{name}.gbai"
    (package / f"{name}.gbot").mkdir(parents=True)
    rows = "".join(f"{k},{v}\n" for k, v in config.items())
    (package / f"{name}.gbot" / "config.csv").write_text("name,value\n" + rows)
    if start:
        (package / f"{name}.gbdialog").mkdir()
        (package / f"{name}.gbdialog" / "start.bas").write_text(start)
    await registry.load_all()
    bot = registry.get(name)
    assert bot is not None
    return bot


def crawler_of(
    kb: KnowledgeBase, pool: asyncpg.Pool, http: OutboundHttp, bots: BotRegistry, **options: float
) -> WebsiteCrawler:
    return WebsiteCrawler(kb, PostgresKbWebsites(pool), http, bots, **options)  # type: ignore[arg-type]


async def sources(kb: KnowledgeBase, bot: Bot, start: str) -> set[str]:
    return {d.source for d in await kb.documents(bot.name, website_collection(start))}


# -- one crawl, within its limits ---------------------------------------------------------


async def test_a_site_is_crawled_within_its_limits(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    http: OutboundHttp,
    bots: BotRegistry,
    site: LocalSite,
    offsite: LocalSite,
) -> None:
    bot = await add_bot(bots, OPEN_SITE)
    start = site.url("/docs/")
    report = await crawler_of(kb, kb_pool, http, bots).crawl_now(bot, start, refresh="1d")
    assert report.status is WebsiteStatus.CRAWLED and report.error is None
    docs = site.url("/docs/")
    assert await sources(kb, bot, start) == {
        docs,
        docs + "install.html",
        docs + "chapter2.html",  # depth 2
        docs + "guide/usage.html",
        docs + "from-noindex.html",  # a noindex page's links are followed
        docs + "big.html",
        docs + "manual.pdf",
        docs + "new.html",  # where old.html redirects, under its own URL
    }
    asked = site.paths()
    assert asked.count("/robots.txt") == 1
    assert asked.count("/docs/install.html") == 1  # install.html#top is the same page
    for never in (
        "/docs/private/secret.html",  # robots.txt disallows it
        "/docs/chapter3.html",  # depth 3
        "/outside.html",  # not under /docs/
        "/docs/ads.html",  # only a nofollow link leads there
        "/docs/logo.png",  # not a page
    ):
        assert never not in asked
    # read, not indexed apart: its canonical page is install.html; the same page again
    assert {"/docs/print/install.html", "/docs/install.html?from=home"} <= set(asked)
    assert offsite.requests == []  # the off-site link was not followed
    assert {r.user_agent for r in site.requests} == {USER_AGENT}
    assert USER_AGENT.startswith("botserver/")
    gaps = [b.at - a.at for a, b in zip(site.requests, site.requests[1:], strict=False)]
    assert min(gaps) >= 0.015  # website-crawl-delay 0.02, with the clock's slack
    assert report.result.truncated == 1  # big.html, cut at 100 kB
    assert report.result.stop is Stop.DONE

    await kb.indexing()
    [best, *_] = await kb.search(bot.name, "how do I install the widget", limit=3)
    assert best.source == docs + "install.html"
    assert best.citation == f"{docs}install.html (Installing)"
    [changelog] = await kb.search(bot.name, "changelog begins version one", limit=1)
    assert changelog.source == docs + "big.html"
    tail = await kb.search(bot.name, "TAILMARKER", limit=5)
    assert all(p.source != docs + "big.html" for p in tail)  # past the cut
    assert await kb.search(bot.name, "zebra", limit=5) == []  # noindex.html is not indexed
    [pdf] = await kb.search(bot.name, "warranty two years", limit=1)
    assert (pdf.source, pdf.page) == (docs + "manual.pdf", 1)

    row = await PostgresKbWebsites(kb_pool).get(bot.name, start)
    assert row is not None
    assert (row.status, row.pages, row.refresh, row.error) == (WebsiteStatus.CRAWLED, 8, "1d", None)
    assert row.claimed_by is None and row.progress is None
    assert row.last_crawled is not None
    due_in = (row.next_crawl - row.last_crawled).total_seconds()
    assert 86390 < due_in < 86410


async def test_a_recrawl_indexes_only_what_changed_and_removes_what_went(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    http: OutboundHttp,
    bots: BotRegistry,
    site: LocalSite,
) -> None:
    bot = await add_bot(bots, OPEN_SITE)
    start = site.url("/docs/")
    crawler = crawler_of(kb, kb_pool, http, bots)
    first = await crawler.crawl_now(bot, start)
    assert (first.result.indexed, first.result.unchanged, first.result.removed) == (8, 0, 0)

    again = await crawler.crawl_now(bot, start)
    assert (again.result.indexed, again.result.unchanged, again.result.removed) == (0, 8, 0)

    site.pages["/docs/install.html"] = Page(
        html(
            "Installing Acme",
            "<h1>Installing</h1><p>Run uv add acme-widget instead.</p>"
            '<a href="chapter2.html">2</a>',
        )
    )
    del site.pages["/docs/chapter2.html"]  # still linked, now a 404
    start_page = site.pages["/docs/"]
    assert isinstance(start_page.body, str)
    start_page.body = start_page.body.replace('<a href="big.html">Changelog</a>', "")  # unlinked
    changed = await crawler.crawl_now(bot, start)
    # indexed: the start page (a link less) and install.html; removed: chapter2.html (404)
    # and big.html (no longer linked)
    assert (changed.result.indexed, changed.result.unchanged, changed.result.removed) == (2, 4, 2)
    assert "/docs/big.html" not in site.paths()[-12:]
    docs = site.url("/docs/")
    assert await sources(kb, bot, start) == {
        docs,
        docs + "install.html",
        docs + "guide/usage.html",
        docs + "from-noindex.html",
        docs + "manual.pdf",
        docs + "new.html",
    }
    await kb.indexing()
    [best, *_] = await kb.search(bot.name, "installing with uv", limit=1)
    assert best.source == docs + "install.html" and "uv add acme-widget" in best.text
    assert await kb.search(bot.name, "pip", limit=5) == []  # the old text is gone


async def test_the_page_limit_and_the_time_budget(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    http: OutboundHttp,
    bots: BotRegistry,
    site: LocalSite,
) -> None:
    few = await add_bot(bots, {**OPEN_SITE, "website-max-pages": "3"})
    start = site.url("/docs/")
    crawler = crawler_of(kb, kb_pool, http, bots)
    report = await crawler.crawl_now(few, start)
    assert report.result.stop is Stop.PAGES
    assert len(await sources(kb, few, start)) == 3

    hasty = await add_bot(bots, {**OPEN_SITE, "website-time-budget": "0.5"})
    site.hold("/docs/install.html")  # never answers within the budget
    loop = asyncio.get_running_loop()
    began = loop.time()
    report = await crawler.crawl_now(hasty, start)
    assert loop.time() - began < 3
    assert report.result.stop is Stop.TIME
    assert report.status is WebsiteStatus.CRAWLED  # what it found is indexed
    assert site.url("/docs/") in await sources(kb, hasty, start)


# -- the guard ----------------------------------------------------------------------------


async def test_a_bot_that_does_not_allow_private_addresses_cannot_crawl_one(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    http: OutboundHttp,
    bots: BotRegistry,
    site: LocalSite,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await add_bot(bots, {"website-crawl-delay": "0"})  # no HTTP Allow Private
    start = site.url("/docs/")
    with caplog.at_level(logging.WARNING, logger="pipeline.websites"):
        report = await crawler_of(kb, kb_pool, http, bots).crawl_now(bot, start)
    assert report.status is WebsiteStatus.FAILED
    assert report.error is not None
    assert "refused to connect to 127.0.0.1" in report.error
    assert "HTTP Allow Private" in report.error
    assert f"website {start} of bot {bot.name} not crawled: " in caplog.text
    assert "refused to connect to 127.0.0.1" in caplog.text
    assert site.requests == []  # not a packet reached it
    row = await PostgresKbWebsites(kb_pool).get(bot.name, start)
    assert row is not None and row.status is WebsiteStatus.FAILED and row.error == report.error
    retry_in = await kb_pool.fetchval(
        "SELECT extract(epoch FROM next_crawl - now()) FROM kb_websites WHERE bot_id = $1",
        bot.name,
    )
    assert 3500 < retry_in <= 3600  # tried again within the hour
    assert await sources(kb, bot, start) == set()


async def test_a_redirect_to_a_private_address_is_refused(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    bots: BotRegistry,
    site: LocalSite,
    offsite: LocalSite,
) -> None:
    """(Offline, 127.0.0.1 stands for the public address and 127.0.0.2 for the private one.)"""
    offsite.pages["/docs/"] = Page(html("Inside", "<p>An internal service.</p>"))
    site.pages["/go/"] = Page(offsite.url("/docs/"), status=302)
    guarded = await OutboundHttp(refuse=lambda address: address != "127.0.0.1").open()
    try:
        bot = await add_bot(bots, {"website-crawl-delay": "0"})
        start = site.url("/go/")
        report = await crawler_of(kb, kb_pool, guarded, bots).crawl_now(bot, start)
    finally:
        await guarded.close()
    assert report.status is WebsiteStatus.FAILED
    assert report.error is not None and "refused to connect to 127.0.0.2" in report.error
    assert site.paths() == ["/robots.txt", "/go/"]
    assert offsite.requests == []


# -- one crawl per site, shared by instances; resumed after a crash -----------------------


async def test_a_site_is_crawled_once_however_many_instances_and_sessions_name_it(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    http: OutboundHttp,
    bots: BotRegistry,
    site: LocalSite,
) -> None:
    bot = await add_bot(bots, OPEN_SITE)
    start = site.url("/docs/")
    store = PostgresKbWebsites(kb_pool)
    instances = [
        crawler_of(kb, kb_pool, http, bots, poll=0.05, instance=f"i{n}")  # type: ignore[arg-type]
        for n in range(3)
    ]
    for crawler in instances:
        crawler.start()
    try:
        for crawler in instances:  # three sessions on three instances name the site
            assert await crawler.use(bot, start.upper().replace("/DOCS/", "/docs/")) == start
        await crawled(store, bot.name, start)
        for crawler in instances:
            await crawler.settled()
    finally:
        for crawler in instances:
            await crawler.stop()
    assert len(await store.list(bot.name)) == 1
    asked = site.paths()
    assert len(asked) == len(set(asked)), asked  # every page fetched once, by one instance
    assert len(await sources(kb, bot, start)) == 8


async def test_a_crawl_cut_short_by_a_dead_instance_is_resumed_elsewhere(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    http: OutboundHttp,
    bots: BotRegistry,
    site: LocalSite,
) -> None:
    bot = await add_bot(bots, OPEN_SITE)
    start = site.url("/docs/")
    schema = await kb_pool.fetchval("SELECT current_schema()")
    doomed_pool = await create_pool(POSTGRES_URL, schema=schema, min_size=1, max_size=2)
    doomed = crawler_of(kb, doomed_pool, http, bots, lease=1.0, instance="doomed")  # type: ignore[arg-type]
    gate = site.hold("/docs/guide/usage.html")  # the third page: the instance dies there
    crawl = asyncio.create_task(doomed.crawl_now(bot, start))
    await site.asked_for("/docs/guide/usage.html")
    doomed_pool.terminate()  # the instance is gone: no heartbeat, no release
    crawl.cancel()
    await asyncio.gather(crawl, return_exceptions=True)
    store = PostgresKbWebsites(kb_pool)
    row = await store.get(bot.name, start)
    assert row is not None and row.claimed_by == "doomed" and row.progress is not None
    before = site.paths()
    gate.set()

    survivor = crawler_of(kb, kb_pool, http, bots, poll=0.1, instance="survivor")  # type: ignore[arg-type]
    survivor.start()
    try:
        await crawled(store, bot.name, start)
    finally:
        await survivor.stop()
    after = site.paths()[len(before) :]
    # Progress is saved at most once a second: the start page's was, the next page's may
    # not have been; the page in flight is fetched again.
    assert before[:2] == ["/robots.txt", "/docs/"] and "/docs/" not in after
    assert "/docs/guide/usage.html" in after
    assert len(await sources(kb, bot, start)) == 8


async def test_load_time_registration_of_a_dialogs_quoted_websites(
    kb: KnowledgeBase,
    kb_pool: asyncpg.Pool,
    http: OutboundHttp,
    bots: BotRegistry,
    site: LocalSite,
) -> None:
    """General Bots registers a file's USE WEBSITE lines as it loads, wherever they are; its
    crawler template names its site in config.csv."""
    start = site.url("/docs/")
    bot = await add_bot(
        bots,
        {**OPEN_SITE, "Website": site.url("/")},
        start=f'IF 1 = 2 THEN\n  USE WEBSITE "{start}" REFRESH "12h"\nEND IF\nTALK "Hi"\n',
    )
    crawler = crawler_of(kb, kb_pool, http, bots)
    crawler.loaded(bot)
    await crawler.settled()
    rows = await PostgresKbWebsites(kb_pool).list(bot.name)
    assert [(r.url, r.status, r.refresh, r.refresh_seconds) for r in rows] == [
        (site.url("/"), WebsiteStatus.PENDING, "1m", 30 * 86400),
        (start, WebsiteStatus.PENDING, "12h", 43200),
    ]
    assert site.requests == []  # registered, not crawled: that is the running crawler's job
