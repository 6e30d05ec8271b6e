"""robots.txt and robots directives, as the website crawler honours them.

A site's ``/robots.txt`` is read with the standard library's :mod:`urllib.robotparser`
for the crawler's product token ``botserver`` (a ``User-agent: botserver`` group applies,
else ``*``). As RFC 9309 says: a 4xx means no rules; a 5xx or no answer means the whole
site is off limits for now; only its first 500 KiB are read. ``Crawl-delay`` lengthens the
pause between requests. (The standard library's parser matches path prefixes; it does not
read the ``*`` and ``$`` wildcards some sites use.)

Pages say ``noindex`` / ``nofollow`` (or ``none``) in ``<meta name="robots">``, in
``<meta name="botserver">`` or in an ``X-Robots-Tag`` header; :func:`directives` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

ROBOTS_TOKEN = "botserver"
ROBOTS_MAX_BYTES = 500 * 1024


@dataclass(frozen=True, slots=True)
class Robots:
    """The rules of one host for this crawler."""

    parser: RobotFileParser | None = None  # None: no rules (everything allowed)
    disallow_all: bool = False
    reason: str = ""  # why everything is disallowed

    def allows(self, url: str) -> bool:
        if self.disallow_all:
            return False
        return self.parser is None or self.parser.can_fetch(ROBOTS_TOKEN, url)

    @property
    def crawl_delay(self) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(ROBOTS_TOKEN)
        return float(delay) if delay is not None else None


ALLOW_ALL = Robots()


def parse_robots(text: str) -> Robots:
    parser = RobotFileParser()
    parser.parse(text.splitlines())
    return Robots(parser)


def unreachable(reason: str) -> Robots:
    """The rules when robots.txt could not be read (5xx, no answer): nothing is fetched."""
    return Robots(disallow_all=True, reason=reason)


@dataclass(frozen=True, slots=True)
class Directives:
    """What a page asks of indexers."""

    noindex: bool = False
    nofollow: bool = False

    def __or__(self, other: Directives) -> Directives:
        return Directives(self.noindex or other.noindex, self.nofollow or other.nofollow)


def directives(content: str) -> Directives:
    """The directives of a ``content="noindex, nofollow"`` value or an ``X-Robots-Tag`` header
    (a header's ``otherbot: noindex`` for another crawler is ignored)."""
    noindex = nofollow = False
    for part in content.lower().split(","):
        words = part.strip()
        if ":" in words:
            agent, _, words = words.partition(":")
            if agent.strip() not in (ROBOTS_TOKEN, "*"):
                continue
        for word in words.split():
            if word in ("noindex", "none"):
                noindex = True
            if word in ("nofollow", "none"):
                nofollow = True
    return Directives(noindex, nofollow)
