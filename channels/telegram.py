"""The Telegram adapter on python-telegram-bot: webhook checks, parsing, sends and edits.

One adapter per bot, i.e. per Bot API token. Inbound updates arrive on the
webhook, authenticated by the secret Telegram echoes in
``X-Telegram-Bot-Api-Secret-Token`` (:meth:`TelegramChannel.set_webhook`
makes one), or, for development, by long polling (:meth:`TelegramChannel.poll`).
Reading an update into messages lives in :mod:`channels.telegram_updates`.

Sends and edits go through PTB's :class:`~telegram.Bot` on its httpx client,
pointed at ``telegram-api-url`` (a self-hosted Bot API server, a proxy, or
the tests' fake). Every PTB error becomes a :class:`~channels.base.SendError`
in :func:`channels.telegram_transport.send_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import IO, Any, cast
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
)
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from channels.base import (
    Attachment,
    Capabilities,
    ChannelNotConfigured,
    MediaGone,
    MediaInfo,
    MediaKind,
    MediaRefused,
    MediaTooLarge,
    MediaUnavailable,
    OutcomeUnknown,
    PayloadError,
    ProviderUnavailable,
    RenderedPart,
    SendRefused,
    SendResult,
    StreamMode,
    Suggestion,
    TextFormat,
    VerificationError,
    WebhookRequest,
    WebhookResult,
)
from channels.media_http import HttpDownload, MiB, download, media_session
from channels.outbound_media import OutboundFile
from channels.telegram_transport import TelegramRequest, send_error
from channels.telegram_updates import (
    NAME,
    READ_UPDATES,
    callback_data,
    decode_update,
    read_update,
    to_update,
    update_kind,
)

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.telegram.org/bot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MODES = ("webhook", "polling")
ALLOWED_UPDATES = READ_UPDATES

MAX_TEXT = 4096
MAX_DOWNLOAD = 20 * MiB  # getFile's limit for bots on Telegram's own server
MAX_UPLOAD = 50 * MiB  # a bot's uploads (sendDocument, sendAudio, …)
MAX_PHOTO = 10 * MiB  # sendPhoto's limit
MAX_CAPTION = 1024
VOICE_TYPES = frozenset({"audio/ogg", "audio/opus"})  # sendVoice: OGG/Opus only
AUDIO_TYPES = frozenset({"audio/mpeg", "audio/mp3", "audio/mp4", "audio/m4a", "audio/x-m4a"})
MAX_BUTTONS = 8  # inline keyboards hold up to 100; more than 8 rows is a wall, not a menu
MAX_BUTTON_LABEL = 64

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
DEFAULT_POOL_TIMEOUT = 1.0
DEFAULT_POLL_TIMEOUT = 25  # seconds Telegram holds a getUpdates open

CAPABILITIES = Capabilities(
    max_text_length=MAX_TEXT,
    text_format=TextFormat.TELEGRAM_HTML,
    can_edit=True,
    stream_mode=StreamMode.EDIT,
    min_edit_interval=1.0,
    max_buttons=MAX_BUTTONS,
    max_button_label=MAX_BUTTON_LABEL,
    messages_per_second=30.0,
    chat_messages_per_second=1.0,  # groups allow only 20 per minute
)

_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_NOT_MODIFIED = "message is not modified"
_MAX_POLL_BACKOFF = 30.0


def new_webhook_secret() -> str:
    """A fresh ``secret_token``: 43 characters of ``A-Za-z0-9_-`` (256 random bits)."""
    return secrets.token_urlsafe(32)


class TelegramChannel:
    """One bot's Telegram bot, reached through python-telegram-bot.

    ``mode`` is ``webhook`` or ``polling``. Without a webhook secret every
    webhook is refused (fail closed); polling needs none.
    """

    name = NAME
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        token: str,
        webhook_secret: str | None = None,
        api_url: str = DEFAULT_API_URL,
        mode: str = "webhook",
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        pool_size: int = 64,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"telegram mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self._secret = webhook_secret or None
        self._read_timeout = read_timeout

        def request(size: int) -> TelegramRequest:
            return TelegramRequest(
                connection_pool_size=size,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                write_timeout=read_timeout,
                pool_timeout=pool_timeout,
            )

        self._request = request(pool_size)
        # getUpdates has a connection of its own: a long poll never holds up a send.
        self._updates_request = request(1)
        self.bot = Bot(
            token,
            base_url=api_url,
            base_file_url=file_url(api_url),
            request=self._request,
            get_updates_request=self._updates_request,
        )
        self._downloads: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    def from_config(
        cls,
        bot: str,
        config: Mapping[str, str],
        *,
        require_secret: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> TelegramChannel:
        """Build the adapter from a bot's ``config.csv`` rows.

        Reads ``telegram-bot-token``, ``telegram-webhook-secret``,
        ``telegram-api-url`` and ``telegram-mode`` (``webhook``, the default, or
        ``polling``). Raises :class:`ChannelNotConfigured` naming every missing
        key: in webhook mode a missing secret keeps the channel off.
        ``require_secret=False`` is for ``set-webhook``, which makes the secret.
        """

        def value(key: str) -> str:
            return config.get(key, "").strip()

        token = value("telegram-bot-token")
        secret = value("telegram-webhook-secret")
        mode = value("telegram-mode").lower() or "webhook"
        if mode not in MODES:
            raise ChannelNotConfigured(
                f"bot {bot!r}: telegram-mode must be webhook or polling, not {mode!r}"
            )
        missing = [] if token else ["telegram-bot-token"]
        if mode == "webhook" and require_secret and not secret:
            missing.append("telegram-webhook-secret")
        if missing:
            raise ChannelNotConfigured(f"bot {bot!r}: Telegram needs {', '.join(missing)}")
        if secret and not _SECRET.fullmatch(secret):
            raise ChannelNotConfigured(
                f"bot {bot!r}: telegram-webhook-secret must be 1-256 of A-Z, a-z, 0-9, _ and -"
            )
        return cls(
            token=token,
            webhook_secret=secret or None,
            api_url=value("telegram-api-url") or DEFAULT_API_URL,
            mode=mode,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            pool_timeout=pool_timeout,
        )

    # -- inbound ---------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        """Check ``X-Telegram-Bot-Api-Secret-Token`` against our secret, in constant time."""
        if self._secret is None:
            raise VerificationError("no telegram-webhook-secret is configured: webhooks refused")
        given = request.headers.get(SECRET_HEADER, "")
        if not given:
            raise VerificationError(f"missing {SECRET_HEADER}")
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            raise VerificationError(f"{SECRET_HEADER} does not match")

    async def parse(self, bot: str, request: WebhookRequest) -> WebhookResult:
        """The message of a verified update; a button press is answered here.

        :class:`PayloadError` for a body that is not an update.
        """
        payload = decode_update(request.body)
        kind = update_kind(payload)
        if kind not in READ_UPDATES:
            # Acknowledged unread: a shape PTB cannot parse must not make Telegram retry it.
            return WebhookResult(ignored=(kind,))
        return await self._read(bot, to_update(payload, self.bot), payload)

    async def _read(self, bot: str, update: Update, payload: Mapping[str, Any]) -> WebhookResult:
        result = read_update(bot, update, payload)
        if update.callback_query is not None:
            await self._answer(update.callback_query)
        return result

    async def _answer(self, query: CallbackQuery) -> None:
        # Until answered, the user's client shows a spinner on the button. A failed
        # answer costs only that: the press itself must still reach the dialog.
        try:
            await self.bot.answer_callback_query(
                query.id, read_timeout=min(self._read_timeout, 5.0)
            )
        except TelegramError as e:
            log.warning("telegram: answerCallbackQuery %s failed: %s", query.id, e)

    # -- media -----------------------------------------------------------------

    def media_limit(self, kind: MediaKind) -> int:
        return MAX_DOWNLOAD

    @contextlib.asynccontextmanager
    async def fetch_media(self, attachment: Attachment) -> AsyncIterator[HttpDownload]:
        """``getFile`` through PTB for the file's path, then its download, streamed.

        PTB's own download methods hold the whole file in memory; the URL it builds (on
        ``base_file_url``, with the token) is fetched a chunk at a time instead.
        """
        self._check_open()
        if not attachment.provider_id:
            raise MediaGone("Telegram: the attachment has no file_id")
        if attachment.size is not None and attachment.size > MAX_DOWNLOAD:
            raise MediaTooLarge(
                f"Telegram: the file has {attachment.size} bytes", limit=MAX_DOWNLOAD
            )
        try:
            file = await self.bot.get_file(attachment.provider_id)
        except BadRequest as e:
            if "too big" in e.message.lower():
                raise MediaTooLarge(f"Telegram: {e.message}", limit=MAX_DOWNLOAD) from e
            raise MediaGone(f"Telegram: {e.message}", status=400) from e
        except TelegramError as e:
            error = send_error(e)
            if error.retriable or isinstance(error, OutcomeUnknown):
                raise MediaUnavailable(str(error)) from e
            raise MediaGone(str(error)) from e
        if not file.file_path:
            raise MediaGone("Telegram: getFile gave no file_path")
        if not file.file_path.startswith(("http://", "https://")):  # PTB left a local path
            raise MediaRefused("Telegram: a local Bot API server's files are not read")
        if self._downloads is None:
            self._downloads = media_session()
        info = MediaInfo(
            content_type=attachment.content_type,
            size=file.file_size,
            filename=attachment.filename,
        )
        async with download(
            self._downloads,
            _encoded(file.file_path),
            provider="Telegram",
            limit=MAX_DOWNLOAD,
            info=info,
        ) as body:
            yield body

    # -- outbound --------------------------------------------------------------

    caption_limit = MAX_CAPTION
    fetches_by_url = False

    def file_limit(self, kind: MediaKind, content_type: str) -> int | None:
        """Photos up to 10 MB, every other file up to 50 MB (a bot's upload limit)."""
        return MAX_PHOTO if kind is MediaKind.IMAGE else MAX_UPLOAD

    async def send_file(self, conversation: str, file: OutboundFile) -> SendResult:
        """sendPhoto for an image, sendVoice for an OGG/Opus note, sendAudio for MP3 and
        M4A, sendVideo for a video, sendDocument for anything else: uploaded as PTB sends
        files (multipart), the caption in Telegram's HTML."""
        self._check_open()
        # Held once and read by httpx a chunk at a time as it writes the multipart body.
        held = cast("IO[bytes]", await file.held())
        data = InputFile(held, filename=file.filename, read_file_handle=False)
        options: dict[str, Any] = {"chat_id": _chat_id(conversation)}
        if file.caption:
            options |= {"caption": file.caption, "parse_mode": "HTML"}
        media = file.media_type
        # PTB's write timeout covers the upload: 256 KiB/s at least before it gives up.
        options["write_timeout"] = self._read_timeout + file.size / (256 * 1024)
        await file.about_to_send()
        try:
            message: Message
            if file.kind is MediaKind.IMAGE:
                message = await self.bot.send_photo(photo=data, **options)
            elif file.kind is MediaKind.AUDIO and media in VOICE_TYPES:
                message = await self.bot.send_voice(voice=data, **options)
            elif file.kind is MediaKind.AUDIO and media in AUDIO_TYPES:
                message = await self.bot.send_audio(audio=data, **options)
            elif file.kind is MediaKind.VIDEO and media == "video/mp4":
                message = await self.bot.send_video(video=data, **options)
            else:
                message = await self.bot.send_document(document=data, **options)
        except TelegramError as e:
            raise send_error(e) from e
        return SendResult(provider_id=str(message.message_id))

    async def send(self, conversation: str, part: RenderedPart) -> SendResult:
        """Send a text message, with the part's buttons as an inline keyboard.

        Through PTB's request as ``Bot.send_message`` would, reading only the message id of
        the answer: the :class:`~telegram.Message` PTB builds of it cost as much CPU as the
        request itself.
        """
        self._check_open()
        fields: dict[str, object] = {"chat_id": _chat_id(conversation), "text": part.text}
        if (parse_mode := _parse_mode(part.text_format)) is not None:
            fields["parse_mode"] = parse_mode
        if part.buttons:
            fields["reply_markup"] = keyboard(part.buttons)
        data = RequestData([RequestParameter.from_input(k, v) for k, v in fields.items()])
        try:
            answer = await self._request.post(f"{self.bot.base_url}/sendMessage", data)
        except TelegramError as e:
            raise send_error(e) from e
        message_id = answer.get("message_id") if isinstance(answer, dict) else None
        if not isinstance(message_id, int):  # as PTB's Message would fail to read it
            raise OutcomeUnknown(
                f"Telegram: sendMessage answered without a message id: {str(answer)[:200]}",
                code="bad-answer",
            )
        return SendResult(provider_id=str(message_id))

    async def edit(self, conversation: str, provider_id: str, part: RenderedPart) -> None:
        """Replace a sent message's text and keyboard; an unchanged text is not an error.

        A part without buttons removes the keyboard, as ``editMessageText`` does:
        a streamed reply shows its buttons from the final edit on.
        """
        self._check_open()
        try:
            message_id = int(provider_id)
        except ValueError as e:
            raise SendRefused(f"not a Telegram message id: {provider_id!r}", code="bad-id") from e
        try:
            await self.bot.edit_message_text(
                part.text,
                chat_id=_chat_id(conversation),
                message_id=message_id,
                parse_mode=_parse_mode(part.text_format),
                reply_markup=keyboard(part.buttons) if part.buttons else None,
            )
        except BadRequest as e:
            # A stream whose last delta changed nothing: the message already reads right.
            if _NOT_MODIFIED in e.message.lower():
                return
            raise send_error(e) from e
        except TelegramError as e:
            raise send_error(e) from e

    # -- webhook and polling ---------------------------------------------------

    async def set_webhook(self, url: str, *, drop_pending_updates: bool = False) -> str:
        """Point Telegram at ``url`` with a new secret, and return it for the caller to store.

        From now on this adapter accepts only the new secret. Errors are
        :class:`SendError` s, as for a send.
        """
        self._check_open()
        secret = new_webhook_secret()
        try:
            await self.bot.set_webhook(
                url,
                secret_token=secret,
                allowed_updates=list(ALLOWED_UPDATES),
                drop_pending_updates=drop_pending_updates,
            )
        except TelegramError as e:
            raise send_error(e) from e
        self._secret = secret
        return secret

    async def delete_webhook(self, *, drop_pending_updates: bool = False) -> None:
        """Remove the webhook, which polling needs: getUpdates is off while one is set."""
        self._check_open()
        try:
            await self.bot.delete_webhook(drop_pending_updates=drop_pending_updates)
        except TelegramError as e:
            raise send_error(e) from e

    async def webhook_url(self) -> str | None:
        """The URL Telegram currently delivers to, or ``None`` when no webhook is set."""
        self._check_open()
        try:
            info = await self.bot.get_webhook_info()
        except TelegramError as e:
            raise send_error(e) from e
        return info.url or None

    async def updates(
        self, bot: str, *, poll_seconds: int = DEFAULT_POLL_TIMEOUT, retry_delay: float = 1.0
    ) -> AsyncGenerator[WebhookResult, None]:
        """Long-poll ``getUpdates`` and yield each update read as a webhook would be.

        The webhook is deleted first. An update is confirmed to Telegram (by the
        next call's ``offset``) only once the consumer asks for the next one, so
        none is lost if the consumer fails; updates delivered again after a
        restart carry the same ``update_id`` and are dropped as duplicates.
        Transport and server errors are retried with a growing delay; a rejected
        token raises :class:`ChannelNotConfigured`. Cancelling stops it.
        """
        self._check_open()
        offset: int | None = None
        delay = retry_delay
        webhook_deleted = False
        while True:
            try:
                if not webhook_deleted:
                    await self.bot.delete_webhook()
                    webhook_deleted = True
                batch = await self.bot.get_updates(
                    offset=offset, timeout=poll_seconds, allowed_updates=list(ALLOWED_UPDATES)
                )
            except (InvalidToken, Forbidden) as e:
                raise ChannelNotConfigured(f"telegram: the bot token was rejected: {e}") from e
            except TelegramError as e:
                wait = send_error(e).retry_after or delay
                log.warning("telegram: polling failed (%s); again in %.1f s", e, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, _MAX_POLL_BACKOFF)
                continue
            delay = retry_delay
            for update in batch:
                try:
                    result = await self._read(bot, update, update.to_dict())
                except PayloadError as e:
                    log.warning("telegram: update %s skipped: %s", update.update_id, e)
                    result = WebhookResult(ignored=("malformed update",))
                yield result
                offset = update.update_id + 1

    async def poll(
        self,
        bot: str,
        handler: Callable[[WebhookResult], Awaitable[None]],
        *,
        poll_seconds: int = DEFAULT_POLL_TIMEOUT,
        retry_delay: float = 1.0,
    ) -> None:
        """Run ``handler`` on every polled update until cancelled (development mode).

        A handler that fails is called again with the same update after a
        growing delay, as Telegram redelivers a webhook answered with an error.
        """
        source = self.updates(bot, poll_seconds=poll_seconds, retry_delay=retry_delay)
        async with contextlib.aclosing(source) as results:
            async for result in results:
                delay = retry_delay
                while True:
                    try:
                        await handler(result)
                        break
                    except Exception:
                        log.exception(
                            "telegram: polled update not accepted; again in %.1f s", delay
                        )
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, _MAX_POLL_BACKOFF)

    async def close(self) -> None:
        """Close the Bot's HTTP clients. ``Bot.shutdown`` would skip them: we never call
        ``Bot.initialize`` (it costs a getMe), so the requests are shut down directly."""
        self._closed = True
        await asyncio.gather(self._request.shutdown(), self._updates_request.shutdown())
        if self._downloads is not None:
            await self._downloads.close()
            self._downloads = None

    def _check_open(self) -> None:
        if self._closed:
            # Not the OutcomeUnknown PTB's closed client would yield: nothing was sent.
            raise ProviderUnavailable("the Telegram channel is closed", code="closed")


def _encoded(url: str) -> str:
    """A file URL with its path percent-encoded, as PTB's own download does."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=quote(parts.path)))


def file_url(api_url: str) -> str:
    """The file download base for an API base: ``…/bot`` becomes ``…/file/bot``."""
    head, sep, tail = api_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep else api_url.rstrip("/") + "/file/bot"


def keyboard(buttons: Sequence[Suggestion]) -> InlineKeyboardMarkup:
    """One button per row, each sending back :func:`callback_data` of its key."""
    rows = []
    for button in buttons:
        if not button.key:
            raise SendRefused("a button needs a key to send back", code="bad-key")
        label = button.label or button.key
        if len(label) > MAX_BUTTON_LABEL:
            label = label[: MAX_BUTTON_LABEL - 1].rstrip() + "…"
        rows.append([InlineKeyboardButton(label, callback_data=callback_data(button.key))])
    return InlineKeyboardMarkup(rows)


def _parse_mode(text_format: TextFormat) -> str | None:
    # Anything but Telegram's HTML goes out as plain text: never a parse failure.
    return "HTML" if text_format is TextFormat.TELEGRAM_HTML else None


def _chat_id(conversation: str) -> int | str:
    # Numeric ids go out as numbers; "@channelname" stays a string.
    try:
        return int(conversation)
    except ValueError:
        return conversation
