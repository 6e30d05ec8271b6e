"""The crawler's small rules, as tables: one spelling per page URL, what belongs to a site,
collection names, robots directives, REFRESH intervals and the ``website-*`` limits."""

from __future__ import annotations

import pytest

from config.packages import parse_config_csv
from pipeline.kb.crawl import CrawlLimits
from pipeline.kb.robots import Directives, directives, parse_robots
from pipeline.kb.web_pages import read_page
from pipeline.kb.web_urls import SiteScope, normalize_url, website_collection
from pipeline.websites import InvalidRefresh, refresh_seconds


@pytest.mark.parametrize(
    ("url", "base", "normalized"),
    [
        ("HTTP://Example.COM", None, "http://example.com/"),
        ("https://example.com:443/a", None, "https://example.com/a"),
        ("http://example.com:8080/a", None, "http://example.com:8080/a"),
        ("https://example.com/a/./b/../c#section", None, "https://example.com/a/c"),
        ("https://example.com/a/b/..", None, "https://example.com/a/"),
        ("https://example.com/p?b=2&a=1#x", None, "https://example.com/p?b=2&a=1"),
        ("../c.html", "https://example.com/a/b/page.html", "https://example.com/a/c.html"),
        ("#top", "https://example.com/a", "https://example.com/a"),
        ("//cdn.example.com/x", "https://example.com/", "https://cdn.example.com/x"),
        ("http://[::1]:8080/a", None, "http://[::1]:8080/a"),
        ("mailto:help@example.com", "https://example.com/", None),
        ("javascript:void(0)", "https://example.com/", None),
        ("ftp://example.com/file", None, None),
        ("https://user:pw@example.com/", None, None),
        ("https://example.com:99999/", None, None),
        ("", "https://example.com/", None),
    ],
)
def test_one_spelling_per_page(url: str, base: str | None, normalized: str | None) -> None:
    assert normalize_url(url, base) == normalized


@pytest.mark.parametrize(
    ("start", "url", "inside"),
    [
        ("https://example.com/", "https://example.com/any/page", True),
        ("https://example.com/", "http://example.com/any/page", True),  # same host, http
        ("https://example.com/", "https://www.example.com/", False),
        ("https://example.com/", "https://example.com:8443/", False),
        ("https://example.com/docs/", "https://example.com/docs/a/b.html", True),
        ("https://example.com/docs/", "https://example.com/blog/", False),
        ("https://example.com/docs/intro.html", "https://example.com/docs/setup.html", True),
        ("https://example.com/docs", "https://example.com/blog/", True),  # a page of /
    ],
)
def test_what_belongs_to_a_site(start: str, url: str, inside: bool) -> None:
    assert SiteScope.of(start).contains(url) is inside


def test_a_start_page_that_redirects_brings_its_host_into_the_site() -> None:
    scope = SiteScope.of("https://example.com/docs/").with_host_of("https://www.example.com/docs/")
    assert scope.contains("https://www.example.com/docs/a") and scope.contains(
        "https://example.com/docs/b"
    )
    assert SiteScope.from_json(scope.to_json()) == scope


@pytest.mark.parametrize(
    ("url", "collection"),
    [
        ("https://docs.example.com/path", "website_docs_example_com_path"),  # as General Bots
        ("https://example.com/", "website_example_com"),
        ("http://127.0.0.1:8080/docs/", "website_127_0_0_1_8080_docs"),
    ],
)
def test_collection_names(url: str, collection: str) -> None:
    assert website_collection(url) == collection


def test_a_long_url_gets_a_collection_name_that_fits_and_stays_apart() -> None:
    a = website_collection("https://example.com/" + "a" * 200)
    b = website_collection("https://example.com/" + "a" * 199 + "b")
    assert len(a) == len(b) == 100 and a != b


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("noindex", Directives(noindex=True)),
        ("NOINDEX, NOFOLLOW", Directives(noindex=True, nofollow=True)),
        ("none", Directives(noindex=True, nofollow=True)),
        ("index, follow", Directives()),
        ("googlebot: noindex", Directives()),  # another crawler's
        ("botserver: nofollow", Directives(nofollow=True)),
        ("unavailable_after: 25 Jun 2030 15:00:00 PST", Directives()),
    ],
)
def test_robots_directives(content: str, expected: Directives) -> None:
    assert directives(content) == expected


def test_robots_txt_groups_and_crawl_delay() -> None:
    robots = parse_robots(
        "User-agent: *\nDisallow: /\n\nUser-agent: botserver\nDisallow: /admin/\nCrawl-delay: 2\n"
    )
    assert robots.allows("https://example.com/docs/")
    assert not robots.allows("https://example.com/admin/users")
    assert robots.crawl_delay == 2.0
    assert not parse_robots("User-agent: *\nDisallow: /\n").allows("https://example.com/")


def test_a_page_names_its_links_title_canonical_and_directives() -> None:
    page = read_page(
        "https://example.com/docs/a.html",
        "text/html",
        b"""<html><head><title>A  page</title><base href="/docs/sub/">
        <link rel="canonical" href="https://example.com/docs/a">
        <meta name="robots" content="nofollow"></head>
        <body><p>Intro text.</p><h2>Part</h2><p>More.</p>
        <a href="b.html">b</a><a href="b.html#x">b again</a><a rel="nofollow" href="c.html">c</a>
        <area href="/map.html"></body></html>""",
        "utf-8",
        "noindex",
    )
    assert page.title == "A page"
    assert page.links == (
        "https://example.com/docs/sub/b.html",
        "https://example.com/map.html",
    )
    assert page.canonical == "https://example.com/docs/a"
    assert page.directives == Directives(noindex=True, nofollow=True)  # header + meta
    assert [(s.heading, s.text.split("\n")[0]) for s in page.document.sections] == [
        ("A page", "Intro text."),  # above the first heading: the title
        ("Part", "More."),
    ]


def test_a_pages_charset_is_honoured() -> None:
    page = read_page("https://example.com/", "text/html", "<p>Café</p>".encode("cp1252"), "cp1252")
    assert page.document.sections[0].text == "Café"


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [
        ("12h", 43200),
        ("1d", 86400),
        ("7", 7 * 86400),
        ("2w", 14 * 86400),
        ("1m", 30 * 86400),
        ("1y", 365 * 86400),
        ("30D", 30 * 86400),
        (" 3d ", 3 * 86400),
    ],
)
def test_refresh_intervals(interval: str, seconds: int) -> None:
    assert refresh_seconds(interval) == seconds


@pytest.mark.parametrize("interval", ["", "soon", "0d", "-1d", "1.5d", "1x"])
def test_refresh_intervals_general_bots_would_not_read(interval: str) -> None:
    with pytest.raises(InvalidRefresh):
        refresh_seconds(interval)


@pytest.mark.parametrize(
    ("rows", "limits"),
    [
        ("", CrawlLimits()),
        (
            "website-max-depth,1\nwebsite-max-pages,10\nwebsite-crawl-delay,0.5\n"
            "website-max-page-bytes,2048\nwebsite-max-site-bytes,1000000\n"
            "website-time-budget,60\n",
            CrawlLimits(1, 10, 2048, 1_000_000, 0.5, 60.0),
        ),
        ("website Max Documents, 2\n", CrawlLimits(max_pages=2)),  # the crawler template's
        ("Website Max Depth,0\n", CrawlLimits(max_depth=0)),  # the start page only
        ("website-max-pages,lots\nwebsite-crawl-delay,-1\n", CrawlLimits()),  # nonsense
    ],
)
def test_limits_from_config_csv(rows: str, limits: CrawlLimits) -> None:
    assert CrawlLimits.from_config(parse_config_csv("name,value\n" + rows)) == limits
