"""A small website served on a loopback address, for the crawler's tests.

Its pages are a dict the test can change between crawls; every request is recorded (path,
User-Agent, time), and a page may be made to wait until the test lets it answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

from storage.kb_websites import PostgresKbWebsites, WebsiteRow, WebsiteStatus
from tests.kb.pdf_writer import make_pdf


@dataclass(slots=True)
class Page:
    body: bytes | str
    content_type: str = "text/html"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Request:
    path: str
    user_agent: str
    at: float


class LocalSite:
    """The pages (by path), the requests seen, and the gates pages wait at."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[Request] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.server: TestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    @property
    def origin(self) -> str:
        return self.url("/").rstrip("/")

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def asked_for(self, path: str, *, within: float = 10.0) -> None:
        """Until the site has been asked for ``path``."""
        deadline = time.monotonic() + within
        while path not in self.paths():
            assert time.monotonic() < deadline, f"{path} never asked for: {self.paths()}"
            await asyncio.sleep(0.01)

    def hold(self, path: str) -> asyncio.Event:
        """Make ``path`` wait until the returned event is set."""
        self.gates[path] = asyncio.Event()
        return self.gates[path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        self.requests.append(Request(path, request.headers.get("User-Agent", ""), time.monotonic()))
        gate = self.gates.get(path)
        if gate is not None:
            await gate.wait()
        page = self.pages.get(path) or self.pages.get(request.path)
        if page is None:
            return web.Response(status=404, text="not found")
        if page.status in (301, 302, 303, 307, 308):
            return web.Response(status=page.status, headers={"Location": str(page.body)})
        body = page.body.encode() if isinstance(page.body, str) else page.body
        return web.Response(
            status=page.status, body=body, content_type=page.content_type, headers=page.headers
        )


async def crawled(
    store: PostgresKbWebsites, bot: str, url: str, *, within: float = 30.0
) -> WebsiteRow:
    """The site's row once a crawl of it has ended well."""
    deadline = time.monotonic() + within
    while (row := await store.get(bot, url)) is None or row.status is not WebsiteStatus.CRAWLED:
        assert time.monotonic() < deadline, f"{url} not crawled in {within} s: {row}"
        await asyncio.sleep(0.05)
    return row


@asynccontextmanager
async def serve(site: LocalSite, host: str = "127.0.0.1") -> AsyncIterator[LocalSite]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", site.handle)
    server = TestServer(app, host=host)
    await server.start_server()
    site.server = server
    try:
        yield site
    finally:
        for gate in site.gates.values():
            gate.set()
        await server.close()


def html(title: str, body: str, head: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}</body></html>"
    )


BIG_PAGE_BYTES = 300_000


def acme_docs(offsite: str) -> dict[str, Page]:
    """The Acme documentation under /docs/: pages to depth 3, a robots.txt that disallows
    /docs/private/, an off-site link (to ``offsite``), a noindex page, a big page, a PDF,
    an image, a nofollow link, an in-site redirect, a link out of /docs/, a printable copy
    whose canonical URL is another page and the same page again under a query string."""
    filler = "<p>" + "filler words about nothing in particular. " * 40 + "</p>\n"
    big = (
        "<h1>Changelog</h1><p>The changelog begins with version one of the widget.</p>"
        + filler * (BIG_PAGE_BYTES // len(filler))
        + "<p>TAILMARKER the very last release note.</p>"
    )
    return {
        "/robots.txt": Page("User-agent: *\nDisallow: /docs/private/\n", "text/plain"),
        "/docs/": Page(
            html(
                "Acme Docs",
                """<h1>Acme documentation</h1><p>Welcome to the Acme widget documentation.</p>
                <a href="install.html">Install</a> <a href="install.html#top">Install (top)</a>
                <a href="guide/usage.html">Usage</a> <a href="noindex.html">Internal</a>
                <a href="big.html">Changelog</a> <a href="manual.pdf">Manual</a>
                <a href="logo.png">Logo</a> <a href="private/secret.html">Secret</a>
                <a href="old.html">Old page</a> <a href="../outside.html">Company</a>
                <a rel="nofollow" href="ads.html">Ads</a> <a href="mailto:help@acme.test">Mail</a>
                <a href="javascript:void(0)">Nothing</a>
                <a href="print/install.html">Print</a> <a href="install.html?from=home">Again</a>
                """
                + f'<a href="{offsite}/partner.html">Partner</a>',
            )
        ),
        "/docs/install.html": Page(
            html(
                "Installing Acme",
                """<h1>Installing</h1><p>Run pip install acme-widget to install the widget,
                then restart the server.</p><a href="chapter2.html">Next</a>
                <a href="/docs/">Home</a>""",
            )
        ),
        "/docs/print/install.html": Page(
            html(
                "Installing Acme (print)",
                "<h1>Installing</h1><p>Printable: run pip install acme-widget.</p>",
                head='<link rel="canonical" href="/docs/install.html">',
            )
        ),
        "/docs/chapter2.html": Page(
            html(
                "Configuring",
                "<h1>Configuring</h1><p>Set ACME_COLOR to choose the widget colour.</p>"
                '<a href="chapter3.html">Next</a>',
            )
        ),
        "/docs/chapter3.html": Page(
            html("Too deep", "<h1>Tuning</h1><p>Three levels down: not crawled at depth 2.</p>")
        ),
        "/docs/guide/usage.html": Page(
            html("Usage", "<h1>Usage</h1><p>Press the big green button to start the widget.</p>")
        ),
        "/docs/noindex.html": Page(
            html(
                "Internal",
                "<p>Zebra internal notes must stay out of the index.</p>"
                '<a href="from-noindex.html">More</a>',
                head='<meta name="robots" content="noindex">',
            )
        ),
        "/docs/from-noindex.html": Page(
            html("Linked", "<h1>Linked</h1><p>Reached through a noindex page: still crawled.</p>")
        ),
        "/docs/big.html": Page(html("Changelog", big)),
        "/docs/manual.pdf": Page(
            make_pdf([["Acme manual.", "Warranty covers the widget for two years."]]),
            "application/pdf",
        ),
        "/docs/logo.png": Page(b"\x89PNG not fetched", "image/png"),
        "/docs/private/secret.html": Page(html("Secret", "<p>Disallowed by robots.txt.</p>")),
        "/docs/ads.html": Page(html("Ads", "<p>Only a nofollow link leads here.</p>")),
        "/docs/old.html": Page("/docs/new.html", status=301),
        "/docs/new.html": Page(
            html("Moved", "<h1>Moved</h1><p>The moved page explains the widget's history.</p>")
        ),
        "/outside.html": Page(html("Company", "<p>Outside /docs/: not part of the site.</p>")),
    }
