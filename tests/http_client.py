"""A tiny blocking JSON client (stdlib only) for tests that drive a server in another process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any


def _call(request: urllib.request.Request, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def get_json(
    url: str, *, timeout: float = 10.0, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    return _call(urllib.request.Request(url, headers=dict(headers or {})), timeout)


def post_json(
    url: str, payload: Any, *, timeout: float = 10.0, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    return _call(request, timeout)
