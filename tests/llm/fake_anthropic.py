"""A fake Anthropic Messages API on 127.0.0.1, in the real wire format.

``POST /v1/messages`` answers a ``message`` object (thinking, text and tool_use content
blocks, ``stop_reason``, ``usage``), or with ``"stream": true`` the named server-sent
events ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``thinking_delta``/``signature_delta``, ``text_delta``, ``input_json_delta``),
``content_block_stop``, ``message_delta`` (stop reason, cumulative output tokens) and
``message_stop``. Errors are ``{"type": "error", "error": {"type", "message"}}`` with
Anthropic's statuses; a request whose key is wrong gets 401 (the key as ``x-api-key``, or
as a bearer token, which is how the SDK 2.x sends it), one without ``anthropic-version``
or ``max_tokens`` 400.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.llm.scripted import (
    Answer,
    Cut,
    Fail,
    Garbage,
    Hang,
    ScriptedServer,
    split,
)

API_KEY = "sk-ant-test-0123456789"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": "req_test",
    }
    return web.json_response(
        body, status=status, headers={"request-id": "req_test", **(headers or {})}
    )


def _stop_reason(answer: Answer) -> str:
    return answer.finish or ("tool_use" if answer.tool_calls else "end_turn")


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


class FakeAnthropic(ScriptedServer):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__(api_key)

    def routes(self) -> dict[str, Any]:
        return {"/v1/messages": self._messages}

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        call = await self.record(request)
        keys = {request.headers.get("x-api-key"), request.headers.get("Authorization")}
        if not keys & {self.api_key, f"Bearer {self.api_key}"}:
            return _error(401, "invalid x-api-key")
        if "anthropic-version" not in request.headers or "max_tokens" not in call.body:
            return _error(400, "anthropic-version header and max_tokens are required")
        outcome = self.next_outcome()
        if isinstance(outcome, Fail):
            return _error(outcome.status, outcome.message, outcome.headers)
        if isinstance(outcome, Hang):
            await self.hang(outcome)
            return _error(500, "hung")
        model = str(call.body.get("model", ""))
        if not call.body.get("stream"):
            assert isinstance(outcome, Answer), "only an Answer can be sent whole"
            return web.json_response(self._message(outcome, model))
        if isinstance(outcome, Garbage):
            return await self.send_events(
                request, [f"event: message_start\ndata: {outcome.data}\n\n".encode()], outcome
            )
        answer = outcome.answer if isinstance(outcome, Cut) else outcome
        return await self.send_events(request, self._events(answer, model), outcome)

    def _usage(self, answer: Answer) -> dict[str, Any]:
        return {
            "input_tokens": answer.input_tokens - answer.cached_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": answer.cached_tokens,
            "output_tokens": answer.output_tokens,
            "service_tier": "standard",
        }

    def _message(self, answer: Answer, model: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if answer.thinking:
            content.append({"type": "thinking", "thinking": answer.thinking, "signature": "sig"})
        if answer.text:
            content.append({"type": "text", "text": "".join(answer.text)})
        content.extend(
            {"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.arguments}
            for tool in answer.tool_calls
        )
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": answer.model or model,
            "content": content,
            "stop_reason": _stop_reason(answer),
            "stop_sequence": None,
            "usage": self._usage(answer),
        }

    def _events(self, answer: Answer, model: str) -> list[bytes]:
        start_usage = self._usage(answer) | {"output_tokens": 1}
        events = [
            _event(
                "message_start",
                {
                    "message": {
                        "id": "msg_test",
                        "type": "message",
                        "role": "assistant",
                        "model": answer.model or model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    }
                },
            ),
            _event("ping", {}),
        ]
        index = 0
        if answer.thinking:
            events.append(
                _event(
                    "content_block_start",
                    {
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                )
            )
            events.extend(
                _event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "thinking_delta", "thinking": piece}},
                )
                for piece in split(answer.thinking, 2)
            )
            events.append(
                _event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "signature_delta", "signature": "sig"}},
                )
            )
            events.append(_event("content_block_stop", {"index": index}))
            index += 1
        if answer.text:
            events.append(
                _event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            events.extend(
                _event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "text_delta", "text": piece}},
                )
                for piece in answer.text
            )
            events.append(_event("content_block_stop", {"index": index}))
            index += 1
        for tool in answer.tool_calls:
            events.append(
                _event(
                    "content_block_start",
                    {
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": tool.id,
                            "name": tool.name,
                            "input": {},
                        },
                    },
                )
            )
            events.extend(
                _event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}},
                )
                for piece in ["", *split(json.dumps(tool.arguments), tool.pieces)]
            )
            events.append(_event("content_block_stop", {"index": index}))
            index += 1
        events.append(
            _event(
                "message_delta",
                {
                    "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                    "usage": {"output_tokens": answer.output_tokens},
                },
            )
        )
        events.append(_event("message_stop", {}))
        return events
