"""A fake Telegram Bot API on 127.0.0.1 that speaks the real wire format.

``GET`` or ``POST /bot<token>/<method>`` with query, form (what PTB sends:
every non-string value JSON-encoded), multipart or JSON parameters answers
``{"ok": true, "result": …}`` with Message, User and WebhookInfo objects as
the Bot API builds them, or ``{"ok": false, "error_code": …, "description": …}``
with the HTTP status Telegram uses. Methods: getMe, sendMessage,
editMessageText, answerCallbackQuery, setWebhook, deleteWebhook,
getWebhookInfo, getUpdates (long polling over :meth:`FakeBotApi.push_update`),
getFile, and the file sends sendPhoto, sendDocument, sendVoice, sendAudio and sendVideo
(the file a multipart upload as PTB sends it, or a file_id sent before; a caption of
1024 characters at most; photos 10 MB and other uploads 50 MB at most, as Telegram's
limits for bots; each upload kept in :attr:`FakeBotApi.uploads`); files added with
:meth:`FakeBotApi.add_file` are downloaded from
``/file/bot<token>/<file_path>`` as from Telegram's file server (20 MB at most
through getFile; a wrong token is 404 there too).

Tests script failures per method (:meth:`FakeBotApi.fail_next`, ``hang_next``,
``drop_next``) and read back every call in :attr:`FakeBotApi.calls`, each with its
arrival time; :meth:`FakeBotApi.writes` gives a chat's sends and edits in order, as the
user saw its messages appear and change, and :meth:`FakeBotApi.history` what it holds.

With ``flood_rate`` set the fake enforces a bot's global flood control as Telegram does:
sendMessage beyond ``flood_rate`` a second (a token bucket with ``flood_burst`` at once;
Telegram documents only "about 30 messages per second") is answered 429 ``Too Many
Requests: retry after N`` with ``parameters.retry_after`` (whole seconds, at least 1), and
nothing is sent; :attr:`FakeBotApi.flood_refused` counts them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

# The shape of a BotFather token (the Bot API docs' example).
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
BOT_USER: dict[str, Any] = {
    "id": 123456789,
    "is_bot": True,
    "first_name": "Shop",
    "username": "shop_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
    "can_connect_to_business": False,
    "has_main_web_app": False,
}

# Parameters Telegram reads as JSON, and as integers, when they come as form fields.
_JSON_FIELDS = frozenset(
    {"reply_markup", "allowed_updates", "entities", "link_preview_options", "reply_parameters"}
)
_INT_FIELDS = frozenset({"message_id", "offset", "limit", "timeout", "max_connections"})
_BOOL_FIELDS = frozenset(
    {"drop_pending_updates", "disable_notification", "show_alert", "protect_content"}
)
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    }
)
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


@dataclass
class TelegramCall:
    """One request the fake received: the method as called, its decoded parameters, and
    when it arrived (``time.monotonic()``)."""

    method: str
    params: dict[str, Any]
    content_type: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Upload:
    """A file a bot uploaded: the method, its multipart field's name, type and bytes."""

    method: str
    field: str
    filename: str | None
    content_type: str
    data: bytes
    file_id: str


# method -> (the file's parameter, the largest upload, the Message field it fills)
_FILE_METHODS = {
    "sendphoto": ("photo", 10 * 1024 * 1024, "photo"),
    "senddocument": ("document", 50 * 1024 * 1024, "document"),
    "sendvoice": ("voice", 50 * 1024 * 1024, "voice"),
    "sendaudio": ("audio", 50 * 1024 * 1024, "audio"),
    "sendvideo": ("video", 50 * 1024 * 1024, "video"),
}


@dataclass
class _Script:
    status: int = 200
    description: str = ""
    parameters: dict[str, Any] | None = None
    raw_body: bytes | None = None
    hang: bool = False
    drop: bool = False


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


class _HtmlText(HTMLParser):
    """Telegram's HTML subset to plain text; unknown tags refused as Telegram does."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            raise ApiError(
                400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"'
            )

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@dataclass
class FakeBotApi:
    """The fake server; :meth:`start` returns the ``telegram-api-url`` to configure."""

    token: str = TOKEN
    calls: list[TelegramCall] = field(default_factory=list)
    blocked: set[int | str] = field(default_factory=set)
    webhook: dict[str, Any] | None = None
    messages: dict[tuple[int | str, int], dict[str, Any]] = field(default_factory=dict)
    # Each message's markup as last sent (parse mode and source): a change of formatting
    # alone is a modification, as Telegram compares the entities too.
    formatting: dict[tuple[int | str, int], tuple[str | None, str]] = field(default_factory=dict)
    api_url: str = ""
    _scripts: dict[str, list[_Script]] = field(default_factory=dict)
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10000))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(2000))
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition | None = None
    flood_rate: float | None = None
    flood_burst: int = 5
    flood_refused: int = 0
    record_calls: bool = True  # a long broadcast keeps its messages, not every call too
    _flood_tat: float = 0.0
    # file_id -> (file_path, bytes); downloads counts each file_path's GETs.
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    downloads: dict[str, int] = field(default_factory=dict)
    _download_failures: list[int] = field(default_factory=list)
    _cut_downloads: int = 0
    uploads: list[Upload] = field(default_factory=list, repr=False)

    # -- scripting ---------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        raw_body: bytes | None = None,
    ) -> None:
        """Answer the next call of ``method`` with an error (``raw_body``: not JSON at all)."""
        parameters: dict[str, Any] = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
            description = description or "Bad Request: group chat was upgraded to a supergroup chat"
        self._script(method).append(
            _Script(
                status,
                description or _DESCRIPTIONS.get(status, f"Error {status}"),
                parameters or None,
                raw_body,
            )
        )

    def hang_next(self, method: str) -> None:
        """Read the next call of ``method`` and never answer it."""
        self._script(method).append(_Script(hang=True))

    def drop_next(self, method: str) -> None:
        """Read the next call of ``method`` and close the connection without an answer."""
        self._script(method).append(_Script(drop=True))

    def _script(self, method: str) -> list[_Script]:
        return self._scripts.setdefault(method.lower(), [])

    def add_file(self, file_id: str, data: bytes, *, file_path: str | None = None) -> str:
        """Make a file getFile knows; its ``file_path`` on the file server is returned."""
        path = file_path or f"documents/file_{len(self.files)}.bin"
        self.files[file_id] = (path, data)
        return path

    def fail_download_next(self, status: int) -> None:
        """Answer the next file download with ``status``."""
        self._download_failures.append(status)

    def cut_download_next(self) -> None:
        """Send half of the next file download, then drop the connection."""
        self._cut_downloads += 1

    async def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates (its ``update_id`` assigned here) and return the id."""
        update_id = next(self._update_ids)
        self._pending.append({"update_id": update_id, **update})
        assert self._arrived is not None, "start the fake first"
        async with self._arrived:
            self._arrived.notify_all()
        return update_id

    def calls_to(self, method: str) -> list[TelegramCall]:
        """The calls of one method, in order (method names are case-insensitive)."""
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def writes(self, chat: int | str) -> list[TelegramCall]:
        """The sendMessage and editMessageText calls to ``chat``, in the order they came,
        each with its arrival time (``at``): what the user saw appear and change."""
        return [
            c
            for c in self.calls
            if c.method.lower() in ("sendmessage", "editmessagetext")
            and c.params.get("chat_id") == chat
        ]

    def history(self, chat: int | str) -> list[dict[str, Any]]:
        """The messages ``chat`` holds now, oldest first (as the Bot API last returned them)."""
        return [
            m for (c, _), m in sorted(self.messages.items(), key=lambda kv: kv[0][1]) if c == chat
        ]

    # -- server ------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=60 * 1024 * 1024)  # 50 MB uploads, and more
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._arrived = asyncio.Condition()
        # A handler that hangs for a timeout test must not hold the shutdown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.api_url = f"http://127.0.0.1:{port}/bot"
        return self.api_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await _params(request)
        except ApiError as e:
            return _error(e)
        if self.record_calls:
            self.calls.append(TelegramCall(method, params, request.content_type))
        if request.match_info["token"] != self.token:
            return _error(ApiError(401, "Unauthorized"))
        scripts = self._scripts.get(method.lower())
        if scripts:
            script = scripts.pop(0)
            if script.hang:
                await asyncio.sleep(3600)
            if script.drop:
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            if script.raw_body is not None:
                return web.Response(body=script.raw_body, status=script.status)
            return _error(ApiError(script.status, script.description, script.parameters))
        if method.lower() in _FILE_METHODS:
            try:
                return web.json_response({"ok": True, "result": self._send_file(method, params)})
            except ApiError as e:
                return _error(e)
        handler = getattr(self, f"_{method.lower()}", None)
        if handler is None:
            return _error(ApiError(404, "Not Found"))
        try:
            result = await handler(params)
        except ApiError as e:
            return _error(e)
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.downloads[path] = self.downloads.get(path, 0) + 1
        found = next((data for p, data in self.files.values() if p == path), None)
        if request.match_info["token"] != self.token or found is None:
            return _error(ApiError(404, "Not Found"))
        if self._download_failures:
            return _error(ApiError(self._download_failures.pop(0), "Internal Server Error"))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(found)
        await response.prepare(request)
        if self._cut_downloads:
            self._cut_downloads -= 1
            await response.write(found[: len(found) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        for start in range(0, len(found), 256 * 1024):
            await response.write(found[start : start + 256 * 1024])
        await response.write_eof()
        return response

    # -- methods -----------------------------------------------------------------

    async def _getfile(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        if len(data) > 20 * 1024 * 1024:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{abs(hash(file_id)) % 10**8}",
            "file_size": len(data),
            "file_path": path,
        }

    async def _getme(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    def _flood_control(self) -> None:
        if self.flood_rate is None:
            return
        now = time.monotonic()
        interval = 1.0 / self.flood_rate
        tat = max(self._flood_tat, now) + interval
        allow_at = tat - self.flood_burst * interval
        if now < allow_at:
            self.flood_refused += 1
            retry_after = max(1, math.ceil(allow_at - now))
            raise ApiError(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        self._flood_tat = tat

    async def _sendmessage(self, params: dict[str, Any]) -> Any:
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            raise ApiError(400, "Bad Request: chat_id is empty")
        self._flood_control()
        text = _message_text(params)
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": _chat(chat_id),
            "date": int(time.time()),
            "text": text,
        }
        markup = _inline_keyboard(params.get("reply_markup"))
        if markup is not None:
            message["reply_markup"] = markup
        self.messages[(chat_id, message["message_id"])] = message
        self.formatting[(chat_id, message["message_id"])] = _formatting(params)
        return message

    def _send_file(self, method: str, params: dict[str, Any]) -> Any:
        name, limit, message_field = _FILE_METHODS[method.lower()]
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            raise ApiError(400, "Bad Request: chat_id is empty")
        self._flood_control()
        value = params.get(name)
        if isinstance(value, Upload):
            if len(value.data) > limit:
                raise ApiError(413, "Request Entity Too Large")
            if not value.data:
                raise ApiError(400, "Bad Request: file must be non-empty")
            upload = Upload(
                method,
                name,
                value.filename,
                value.content_type,
                value.data,
                f"F{len(self.uploads)}",
            )
            self.uploads.append(upload)
            file_id, size, file_name = upload.file_id, len(value.data), value.filename
        elif isinstance(value, str) and any(u.file_id == value for u in self.uploads):
            file_id, size, file_name = value, 0, None
        else:
            raise ApiError(400, f"Bad Request: there is no {name} in the request")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": _chat(chat_id),
            "date": int(time.time()),
        }
        file: dict[str, Any] = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": size,
        }
        if message_field == "photo":
            message["photo"] = [file | {"width": 640, "height": 480}]
        elif message_field in ("voice", "audio"):
            message[message_field] = file | {"duration": 1}
        elif message_field == "video":
            message["video"] = file | {"width": 640, "height": 480, "duration": 1}
        else:
            message["document"] = file | ({"file_name": file_name} if file_name else {})
        if params.get("caption"):
            caption = _message_text(
                {"text": params["caption"], "parse_mode": params.get("parse_mode")}
            )
            if len(caption) > 1024:
                raise ApiError(400, "Bad Request: message caption is too long")
            message["caption"] = caption
        self.messages[(chat_id, message["message_id"])] = message
        return message

    async def _editmessagetext(self, params: dict[str, Any]) -> Any:
        key = (params.get("chat_id"), params.get("message_id"))
        text = _message_text(params)
        message = self.messages.get(key)  # type: ignore[arg-type]
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        markup = _inline_keyboard(params.get("reply_markup"))
        formatting = _formatting(params)
        if (
            message["text"] == text
            and self.formatting.get(key) == formatting  # type: ignore[arg-type]
            and message.get("reply_markup") == markup
        ):
            raise ApiError(400, NOT_MODIFIED)
        self.formatting[key] = formatting  # type: ignore[index]
        message.update(text=text, edit_date=int(time.time()))
        message.pop("reply_markup", None)
        if markup is not None:
            message["reply_markup"] = markup
        return message

    async def _answercallbackquery(self, params: dict[str, Any]) -> Any:
        if not params.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired")
        return True

    async def _setwebhook(self, params: dict[str, Any]) -> Any:
        url = str(params.get("url") or "")
        if not url:
            self.webhook = None
            return True
        if not url.startswith("https://"):
            raise ApiError(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.fullmatch(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": params.get("allowed_updates"),
        }
        return True

    async def _deletewebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _getwebhookinfo(self, params: dict[str, Any]) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.webhook and self.webhook["allowed_updates"]:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    async def _getupdates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        # An offset confirms every update before it: they are never sent again.
        self._pending = [u for u in self._pending if u["update_id"] >= offset]
        allowed = params.get("allowed_updates") or None
        limit = int(params.get("limit") or 100)
        assert self._arrived is not None

        def ready() -> list[dict[str, Any]]:
            return [
                u for u in self._pending if allowed is None or any(kind in u for kind in allowed)
            ][:limit]

        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(ready), timeout=float(params.get("timeout") or 0)
                )
            except TimeoutError:
                pass
        return ready()


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = {k: _coerce(k, v) for k, v in request.query.items()}
    if request.content_type == "application/json":
        body = await request.read()
        if body:
            try:
                data = json.loads(body)
            except ValueError as e:
                raise ApiError(400, "Bad Request: can't parse JSON request body") from e
            if not isinstance(data, dict):
                raise ApiError(400, "Bad Request: request body must be a JSON object")
            params.update(data)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({k: _coerce(k, v) for k, v in form.items() if isinstance(v, str)})
        for k, v in form.items():
            if isinstance(v, web.FileField):
                data = v.file.read()
                params[k] = Upload("", k, v.filename, v.content_type, data, "")
    return params


def _coerce(name: str, value: str) -> Any:
    if name in _JSON_FIELDS or name in _BOOL_FIELDS:
        try:
            return json.loads(value)
        except ValueError as e:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from e
    if name in _INT_FIELDS or (name == "chat_id" and re.fullmatch(r"-?\d+", value)):
        return int(value)
    return value


def _message_text(params: dict[str, Any]) -> str:
    text = str(params.get("text") or "")
    parse_mode = params.get("parse_mode")
    if parse_mode == "HTML":
        parser = _HtmlText()
        parser.feed(text)
        parser.close()
        text = "".join(parser.text)
    elif parse_mode not in (None, "", "MarkdownV2", "Markdown"):
        raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode}")
    if not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if len(text) > 4096:
        raise ApiError(400, "Bad Request: message is too long")
    return text


def _formatting(params: dict[str, Any]) -> tuple[str | None, str]:
    """What stands for a message's entities: its marked-up source, when it has markup."""
    parse_mode = params.get("parse_mode") or None
    source = str(params.get("text") or "")
    if parse_mode is None or not any(mark in source for mark in "<*_"):
        return (None, "")
    return (parse_mode, source)


def _inline_keyboard(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in rows:
        for button in row:
            if not button.get("text"):
                raise ApiError(
                    400, "Bad Request: text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return {"inline_keyboard": rows}


def _chat(chat_id: int | str) -> dict[str, Any]:
    if isinstance(chat_id, int) and chat_id > 0:
        return {"id": chat_id, "first_name": "Ada", "username": "ada", "type": "private"}
    if isinstance(chat_id, int):
        return {"id": chat_id, "title": "Shop customers", "type": "supergroup"}
    return {"id": -1001234567890, "title": chat_id.lstrip("@"), "type": "channel"}


def _error(error: ApiError) -> web.Response:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": error.status,
        "description": error.description,
    }
    if error.parameters:
        body["parameters"] = error.parameters
    return web.json_response(body, status=error.status)
