"""A fake Twilio REST API on 127.0.0.1 that speaks Twilio's wire format.

``POST /2010-04-01/Accounts/{sid}/Messages.json`` with a form body and HTTP
basic auth (account sid and auth token) answers 201 with the JSON message
resource (``MediaUrl``, repeated, names files Twilio fetches: absolute http(s) URLs, ten at
most, else error 21620); scripted failures answer Twilio's error object (``code``,
``message``, ``more_info``, ``status``). Every call is recorded.

Media: ``GET /2010-04-01/Accounts/{sid}/Messages/{MM…}/Media/{ME…}`` needs the same
basic auth and answers, as Twilio does, with a redirect to its CDN: a second server
(another origin) that serves the bytes and records any ``Authorization`` header that
reached it (none should). Files are added with :meth:`FakeTwilioApi.add_media`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token"

MESSAGES = {
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "The 'To' number +1555 is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    63016: "Failed to send freeform message because you are outside the allowed window.",
}


@dataclass
class TwilioCall:
    """One request the fake received: its path, headers and form fields, and when it
    arrived (``time.monotonic()``)."""

    path: str
    headers: dict[str, str]
    form: dict[str, str]
    media_urls: list[str] = field(default_factory=list)  # every MediaUrl, in order
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeTwilioApi:
    """The fake server; :meth:`start` returns the ``twilio-api-url`` to configure."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    calls: list[TwilioCall] = field(default_factory=list)
    delay: float = 0.0
    _failures: list[tuple[int, int]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _cdn: web.AppRunner | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    api_url: str = ""
    cdn_url: str = ""
    # media sid -> (content type, bytes); what reached the CDN, and each media's GETs.
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    cdn_authorizations: list[str] = field(default_factory=list)
    media_requests: dict[str, int] = field(default_factory=dict)
    media_failures: list[int] = field(default_factory=list)
    _failures_of: dict[str, list[int]] = field(default_factory=dict)

    def fail_next(self, status: int, code: int) -> None:
        """Answer the next create with HTTP ``status`` and Twilio error ``code``."""
        self._failures.append((status, code))

    def add_media(self, message_sid: str, data: bytes, content_type: str) -> str:
        """A file on an inbound message: its ``MediaUrlN``."""
        media_sid = f"ME{len(self.media):032x}"
        self.media[media_sid] = (content_type, data)
        return (
            f"{self.api_url}/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}"
            f"/Media/{media_sid}"
        )

    def fail_media_next(self, url: str, status: int) -> None:
        """Answer the next GET of this ``MediaUrl`` with ``status``."""
        self._failures_of.setdefault(url.rsplit("/", 1)[1], []).append(status)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.router.add_get(
            "/2010-04-01/Accounts/{sid}/Messages/{message}/Media/{media}", self._media
        )
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.api_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        cdn = web.Application()
        cdn.router.add_get("/cdn/{media}", self._cdn_get)
        self._cdn = web.AppRunner(cdn, shutdown_timeout=0.1)
        await self._cdn.setup()
        await web.TCPSite(self._cdn, "127.0.0.1", 0).start()
        self.cdn_url = f"http://127.0.0.1:{self._cdn.addresses[0][1]}"
        return self.api_url

    async def close(self) -> None:
        for runner in (self._runner, self._cdn):
            if runner is not None:
                await runner.cleanup()

    async def _media(self, request: web.Request) -> web.Response:
        media = request.match_info["media"]
        self.media_requests[media] = self.media_requests.get(media, 0) + 1
        if not self._authorized(request) or request.match_info["sid"] != self.account_sid:
            return self._error(401, 20003, "Authenticate")
        failures = self._failures_of.get(media) or self.media_failures
        if failures:
            status = failures.pop(0)
            return self._error(status, 20500, "Internal Server Error")
        if media not in self.media:
            return self._error(404, 20404, "The requested resource was not found")
        raise web.HTTPTemporaryRedirect(f"{self.cdn_url}/cdn/{media}?Expires=1800000000")

    async def _cdn_get(self, request: web.Request) -> web.Response:
        if "Authorization" in request.headers:
            self.cdn_authorizations.append(request.headers["Authorization"])
        content_type, data = self.media.get(request.match_info["media"], ("", b""))
        if not content_type:
            return web.Response(status=404)
        return web.Response(body=data, headers={"Content-Type": content_type})

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
        )

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    async def _create(self, request: web.Request) -> web.Response:
        posted = await request.post()
        form = {k: str(v) for k, v in posted.items()}
        media_urls = [str(v) for v in posted.getall("MediaUrl", [])]
        self.calls.append(TwilioCall(request.path, dict(request.headers), form, media_urls))
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self._authorized(request) or request.match_info["sid"] != self.account_sid:
            return self._error(401, 20003, "Authenticate")
        if self._failures:
            status, code = self._failures.pop(0)
            return self._error(status, code, MESSAGES.get(code, "Error"))
        if "To" not in form or not (form.get("Body") or media_urls):
            return self._error(400, 21602, "Message body is required.")
        if len(media_urls) > 10 or not all(
            u.startswith(("http://", "https://")) for u in media_urls
        ):
            return self._error(400, 21620, "Invalid media URL(s)")
        sid = f"SM{next(self._ids):032x}"
        now = "Tue, 01 Dec 2026 12:00:00 +0000"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body"),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": str(len(media_urls)),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return web.json_response(resource, status=201)
