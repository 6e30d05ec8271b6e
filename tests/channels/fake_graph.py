"""A fake Graph API (WhatsApp Cloud API) on 127.0.0.1 that speaks Meta's wire format.

``POST /{version}/{phone-number-id}/messages`` with a Bearer token answers
``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid.…"}]}``;
scripted failures answer Meta's error object with the HTTP status Meta uses.
Every call is recorded for the tests to read.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

VERSION = "v23.0"
PHONE_NUMBER_ID = "106540352242922"
TOKEN = "EAAG-test-access-token"

# What Meta answers for the codes the adapter maps (message, type, HTTP status).
ERRORS: dict[int, tuple[str, str, int]] = {
    131047: ("(#131047) Re-engagement message", "OAuthException", 400),
    130429: ("(#130429) Rate limit hit", "OAuthException", 400),
    131056: (
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "OAuthException",
        400,
    ),
    131000: ("(#131000) Something went wrong", "OAuthException", 500),
    100: ("(#100) Invalid parameter", "OAuthException", 400),
}


@dataclass
class GraphCall:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str
    retry_after: str | None
    raw_body: bytes | None = None


@dataclass
class FakeGraphApi:
    """The fake server; :meth:`start` returns the ``whatsapp-api-url`` to configure."""

    version: str = VERSION
    phone_number_id: str = PHONE_NUMBER_ID
    token: str = TOKEN
    calls: list[GraphCall] = field(default_factory=list)
    delay: float = 0.0
    _failures: list[_Failure] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    api_url: str = ""

    def fail_next(
        self,
        code: int | None,
        *,
        status: int | None = None,
        retry_after: str | None = None,
        raw_body: bytes | None = None,
    ) -> None:
        """Answer the next send with Meta's error ``code`` (and its usual HTTP status)."""
        message, _, usual_status = ERRORS.get(code or 0, ("(#0) Error", "OAuthException", 400))
        self._failures.append(
            _Failure(status or usual_status, code, message, retry_after, raw_body)
        )

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{version}/{phone_id}/messages", self._messages)
        # A handler sleeping for a timeout test must not hold the shutdown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.api_url = f"http://127.0.0.1:{port}/{self.version}"
        return self.api_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def sent(self) -> list[Any]:
        """The JSON bodies of the accepted and refused sends, in order."""
        return [c.json for c in self.calls]

    def _error(self, status: int, code: int, message: str, **extra: Any) -> web.Response:
        body = {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": message},
                "fbtrace_id": "AbCdEf0123456789",
                **extra,
            }
        }
        return web.json_response(body, status=status)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        self.calls.append(GraphCall(request.path, dict(request.headers), payload))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.match_info["version"] != self.version:
            return self._error(
                400, 2635, f"(#2635) Unknown API version {request.match_info['version']}"
            )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.match_info["phone_id"] != self.phone_number_id:
            return self._error(
                400,
                100,
                f"Unsupported post request. Object with ID '{request.match_info['phone_id']}' "
                "does not exist",
                error_subcode=33,
            )
        if self._failures:
            failure = self._failures.pop(0)
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
            if failure.raw_body is not None:
                return web.Response(body=failure.raw_body, status=failure.status, headers=headers)
            response = self._error(failure.status, failure.code or 0, failure.message)
            if headers:
                response.headers.update(headers)
            return response
        if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
            return self._error(400, 100, "(#100) The parameter messaging_product is required.")
        to = str(payload.get("to", ""))
        wamid = "wamid." + base64.b64encode(f"HBgL{to}{next(self._ids):08d}".encode()).decode()
        message: dict[str, Any] = {"id": wamid}
        if payload.get("type") == "template":
            message["message_status"] = "accepted"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [message],
            }
        )
