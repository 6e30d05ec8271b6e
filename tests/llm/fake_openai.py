"""A fake OpenAI chat-completions server on 127.0.0.1, in the real wire format.

``POST /v1/chat/completions`` answers a ``chat.completion`` object, or with ``"stream":
true`` server-sent events of ``chat.completion.chunk`` objects (``data: {…}`` lines, tool
calls as deltas keyed by ``index``: id, type and name first, the arguments in pieces), a
usage chunk with empty ``choices`` when ``stream_options.include_usage`` asks, and
``data: [DONE]``. ``POST /v1/embeddings`` answers a list of embeddings (out of order, as
``index`` allows). Errors are ``{"error": {"message", "type", "param", "code"}}`` with
the status OpenAI uses; a wrong bearer token gets 401.
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

API_KEY = "sk-test-0123456789"
CREATED = 1_760_000_000
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
    500: "server_error",
    503: "server_error",
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    body = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "api_error"),
            "param": None,
            "code": code,
        }
    }
    return web.json_response(body, status=status, headers=headers)


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _finish(answer: Answer) -> str:
    return answer.finish or ("tool_calls" if answer.tool_calls else "stop")


class FakeOpenAI(ScriptedServer):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__(api_key)
        self.embeddings_down = False  # True: /v1/embeddings answers 503

    def routes(self) -> dict[str, Any]:
        return {"/v1/chat/completions": self._chat, "/v1/embeddings": self._embeddings}

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        call = await self.record(request)
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        outcome = self.next_outcome()
        if isinstance(outcome, Fail):
            return _error(outcome.status, outcome.message, outcome.headers)
        if isinstance(outcome, Hang):
            await self.hang(outcome)
            return _error(500, "hung")
        model = str(call.body.get("model", ""))
        if not call.body.get("stream"):
            assert isinstance(outcome, Answer), "only an Answer can be sent whole"
            return web.json_response(self._completion(outcome, model))
        if isinstance(outcome, Garbage):
            return await self.send_events(request, [f"data: {outcome.data}\n\n".encode()], outcome)
        answer = outcome.answer if isinstance(outcome, Cut) else outcome
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        events = [
            f"data: {json.dumps(chunk)}\n\n".encode()
            for chunk in self._chunks(answer, model, include_usage)
        ]
        events.append(b"data: [DONE]\n\n")
        return await self.send_events(request, events, outcome)

    def _completion(self, answer: Answer, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(answer.text) if answer.text else None,
            "refusal": None,
            "annotations": [],
        }
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": tool.id,
                    "type": "function",
                    "function": {"name": tool.name, "arguments": json.dumps(tool.arguments)},
                }
                for tool in answer.tool_calls
            ]
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": CREATED,
            "model": answer.model or model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(answer)}
            ],
            "usage": _usage(answer),
            "service_tier": "default",
            "system_fingerprint": "fp_test",
        }

    def _chunks(self, answer: Answer, model: str, include_usage: bool) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": answer.model or model,
                "system_fingerprint": "fp_test",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
        chunks.extend(chunk({"content": piece}) for piece in answer.text)
        for index, tool in enumerate(answer.tool_calls):
            chunks.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": tool.id,
                                "type": "function",
                                "function": {"name": tool.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            chunks.extend(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in split(json.dumps(tool.arguments), tool.pieces)
            )
        chunks.append(chunk({}, _finish(answer)))
        if include_usage:
            last = chunk({})
            last["choices"] = []
            last["usage"] = _usage(answer)
            chunks.append(last)
        return chunks

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        call = await self.record(request)
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        if self.embeddings_down:
            return _error(503, "The server is overloaded or not ready yet.")
        texts = call.body["input"]
        texts = [texts] if isinstance(texts, str) else texts
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_of(text)}
            for i, text in enumerate(texts)
        ]
        return web.json_response(
            {
                "object": "list",
                "data": list(reversed(data)),
                "model": call.body["model"],
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
            }
        )


def embedding_of(text: str) -> list[float]:
    """The fake's vector for a text: its length and its count of vowels and spaces."""
    return [float(len(text)), float(sum(c in "aeiou" for c in text)), float(text.count(" "))]
