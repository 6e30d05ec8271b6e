"""URLs of crawled websites: one spelling per page, the site's bounds, its collection's name.

A page is known by its normalized URL (:func:`normalize_url`): scheme and host lower case,
default port dropped, dot segments resolved, fragment dropped, an empty path spelled ``/``.
That URL is the page's ``source`` in the knowledge base, so passages cite it.

A site (:class:`SiteScope`) is its host (and the host its start page redirected to) and, as
``wget --no-parent`` does, the folder of its start URL: ``https://example.com/docs/`` keeps the
crawl under ``/docs/``; ``https://example.com/docs`` (a page of ``/``) crawls the whole host.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_COLLECTION_MAX = 100  # kb_documents.collection is VARCHAR(100)


class InvalidWebsite(ValueError):
    """A website URL that cannot be crawled (not http/https, no host, credentials in it)."""


def is_web_source(source: str) -> bool:
    """Whether a knowledge-base source is a crawled page (its URL) rather than a package file."""
    return source.startswith(("http://", "https://"))


def normalize_url(url: str, base: str | None = None) -> str | None:
    """``url`` (relative to ``base``) in its one spelling, or None when it is not a crawlable
    http(s) URL (``mailto:``, ``javascript:``, credentials, no host, malformed)."""
    url = url.strip()
    if not url:
        return None
    try:
        joined = urljoin(base, url) if base else url
        parts = urlsplit(joined)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(parts.path or "/")
    return urlunsplit(SplitResult(scheme, netloc, path, parts.query, ""))


def website_url(url: str) -> str:
    """A ``USE WEBSITE`` URL, normalized; :class:`InvalidWebsite` when it cannot be crawled."""
    text = str(url).strip()
    if not text.lower().startswith(("http://", "https://")):
        raise InvalidWebsite(
            f"{text!r} is not a website URL (it must start with http:// or https://)"
        )
    try:
        credentials = bool(urlsplit(text).username or urlsplit(text).password)
    except ValueError:
        credentials = False
    if credentials:  # not repeated in the message: it would put the password in the logs
        raise InvalidWebsite("a website URL with a user name or password cannot be crawled")
    normalized = normalize_url(text)
    if normalized is None:
        raise InvalidWebsite(f"{text!r} is not a website URL that can be crawled")
    return normalized


def website_collection(url: str) -> str:
    """The knowledge-base collection of the site at ``url`` (normalized), named as General
    Bots names it: ``website_`` and the URL without its scheme, ``/ : .`` as ``_``."""
    bare = re.sub(r"^https?://", "", url)
    slug = re.sub(r"[^a-z0-9_-]", "", re.sub(r"[/:.]", "_", bare.lower())).strip("_")
    name = f"website_{slug}"
    if len(name) > _COLLECTION_MAX:
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        name = f"{name[: _COLLECTION_MAX - 13]}_{digest}"
    return name


@dataclass(frozen=True, slots=True)
class SiteScope:
    """Which URLs belong to a site: its hosts (``host[:port]``), under its path prefix."""

    hosts: frozenset[str]
    prefix: str

    @classmethod
    def of(cls, url: str) -> SiteScope:
        """The site whose start page is ``url`` (normalized)."""
        parts = urlsplit(url)
        folder = parts.path[: parts.path.rfind("/") + 1] or "/"
        return cls(frozenset({parts.netloc}), folder)

    def with_host_of(self, url: str) -> SiteScope:
        """The same site, also on the host ``url`` is on (where the start page redirected)."""
        return SiteScope(self.hosts | {urlsplit(url).netloc}, self.prefix)

    def contains(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.netloc in self.hosts and parts.path.startswith(self.prefix)

    def to_json(self) -> dict[str, object]:
        return {"hosts": sorted(self.hosts), "prefix": self.prefix}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SiteScope:
        hosts = data.get("hosts")
        return cls(
            frozenset(str(h) for h in hosts) if isinstance(hosts, list) else frozenset(),
            str(data.get("prefix") or "/"),
        )


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, so ``/a/./b/../c`` and ``/a/c`` are one page."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    joined = "/".join(out)
    return joined if joined.startswith("/") else "/" + joined
