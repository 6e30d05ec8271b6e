"""The composition root: builds the aiohttp application and wires every part."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from channels.base import MediaSource, WebhookResult
from channels.hub import PROVIDER_CHANNELS, TWILIO_WHATSAPP, WHATSAPP, ChannelHub
from config.env_values import without_secrets
from config.settings import Settings
from gateway import api, auth_keys, media, openapi_route, webhooks, ws
from gateway.auth import AuthConfig, auth_ctx
from gateway.errors import error_middleware
from gateway.keys import (
    AUTH_CONFIG,
    BOTS,
    CHANNELS,
    DELIVERY,
    DISPATCHER,
    INGESTER,
    KNOWLEDGE,
    MEDIA_URLS,
    MESSAGE_PATH,
    POLLERS,
    PROACTIVE,
    SETTINGS,
    STORES,
)
from gateway.polling import TelegramPollers
from gateway.widget import setup_widget
from pipeline.bots import BotRegistry
from pipeline.delivery import DeliveryPolicy, DeliveryWorker
from pipeline.dispatcher import Dispatcher
from pipeline.kb.service import open_knowledge_base
from pipeline.knowledge import PackageIngester, knowledge_search
from pipeline.mail import MailSettings, SmtpMailer
from pipeline.media import MediaIntake
from pipeline.message_path import MessagePath, PathPolicy
from pipeline.outbound_http import OutboundHttp
from pipeline.proactive import ProactiveSender
from pipeline.scheduler import Scheduler
from pipeline.services import Services
from storage.blob_urls import MediaTokens, MediaUrls
from storage.outbox import PostgresProactiveOutbox
from storage.services import Stores, open_stores

log = logging.getLogger(__name__)

MEDIA_KEY_NAME = "media-url"  # the signing key of /media/{token} URLs, in the database


async def _stores_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    stores = await open_stores(settings)
    app[STORES] = stores
    try:
        app[MEDIA_URLS] = await build_media_urls(settings, stores)
        yield
    finally:
        await stores.close()


async def build_media_urls(settings: Settings, stores: Stores) -> MediaUrls:
    """Stored files' URLs: the store's presigned ones, else the gateway's, signed with
    ``BOTSERVER_MEDIA_SECRET`` or a key kept in the database for every instance."""
    secret = settings.media_secret or await stores.api_keys.signing_key(MEDIA_KEY_NAME)
    return MediaUrls(
        stores.blobs,
        MediaTokens(secret),
        base_url=settings.public_url or "",
        ttl=settings.media_url_ttl,
    )


def media_sources(hub: ChannelHub | None) -> Callable[[str, str], MediaSource | None]:
    """The adapter that fetches a bot's attachments on a channel, when it can."""

    def source(bot: str, channel: str) -> MediaSource | None:
        adapter = hub.adapter(bot, channel) if hub is not None else None
        return adapter if isinstance(adapter, MediaSource) else None

    return source


def build_proactive(stores: Stores, hub: ChannelHub) -> ProactiveSender:
    """Proactive messages (the send API, TALK TO) to the channels the hub has on."""

    def channels_on(bot: str) -> list[str]:
        channels = hub.bot(bot)
        return [] if channels is None else [a.name for a in channels.adapters()]

    return ProactiveSender(PostgresProactiveOutbox(stores.pool), channels_on)


def build_services(
    stores: Stores,
    http: OutboundHttp,
    *,
    mail: MailSettings | None = None,
    hub: ChannelHub | None = None,
) -> Services:
    """What turns may use: the stores, the dialogs' HTTP client, the mail sender
    (``SMTP_*`` from the environment unless ``mail`` is given), users' attachments kept
    in the blob store and, with the ``hub``, proactive messages (TALK TO) and the
    channels that fetch attachments."""
    return Services(
        conversations=stores.conversations,
        locks=stores.locks,
        memory=stores.memory,
        tables=stores.tables,
        http=http,
        mail=SmtpMailer(MailSettings.from_env() if mail is None else mail),
        proactive=build_proactive(stores, hub) if hub is not None else None,
        media=MediaIntake(stores.blobs, stores.media, media_sources(hub)),
    )


def build_message_path(
    settings: Settings,
    dispatcher: Dispatcher,
    stores: Stores,
    *,
    delivered_by_channel: frozenset[str] = frozenset(PROVIDER_CHANNELS),
    policy: PathPolicy | None = None,
    on_commit: Callable[[], None] | None = None,
) -> MessagePath:
    """The inbox, its worker and the synchronous web path, with the settings' limits.

    Replies of the provider channels are left in the outbox for the delivery
    worker (``on_commit`` wakes it); the web channel's go back on the request."""
    return MessagePath(
        dispatcher,
        stores.inbox,
        policy=policy
        or PathPolicy(
            workers=settings.workers,
            lease=settings.lease,
            max_attempts=settings.max_attempts,
            max_age=settings.max_message_age,
        ),
        delivered_by_channel=delivered_by_channel,
        window_channels=WINDOW_CHANNELS,
        on_commit=on_commit,
    )


# Channels whose free-form replies are allowed only within 24 hours of the user's message.
WINDOW_CHANNELS = frozenset({WHATSAPP, TWILIO_WHATSAPP})


def build_delivery(stores: Stores, hub: ChannelHub, *, lease: float = 60.0) -> DeliveryWorker:
    """The outbox's delivery worker, sending through the hub's adapters."""

    def config(bot: str) -> dict[str, str]:
        channels = hub.bot(bot)
        return channels.config if channels is not None else {}

    proactive = PostgresProactiveOutbox(stores.pool)

    async def event(bot: str, channel: str, conversation: str, message: dict[str, Any]) -> None:
        await proactive.enqueue(bot, channel, conversation, message)

    return DeliveryWorker(
        stores.outbox,
        stores.windows,
        hub.adapter,
        config=config,
        events=event,
        policy=DeliveryPolicy(lease=lease, window_channels=frozenset({WHATSAPP})),
    )


async def _bots_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = app[BOTS]
    stores = app[STORES]
    registry.attach_tables(stores.tables)  # loading (and reloading) seeds .gbdata tables
    await registry.load_all()
    hub = app[CHANNELS]
    for name in registry.names():
        bot = registry.get(name)
        assert bot is not None
        # Credentials stay in the package (or the environment), out of the database.
        await stores.bot_configs.put(name, without_secrets(bot.package.config))
        await hub.load(name, bot.package.config)
    settings = app[SETTINGS]
    kb = await open_knowledge_base(
        stores.pool,
        settings.data_dir,
        qdrant_url=settings.qdrant_url,
        qdrant_api_key=settings.qdrant_api_key,
    )
    app[KNOWLEDGE] = kb
    ingester = PackageIngester(kb)
    app[INGESTER] = ingester
    if settings.kb_ingest_on_load:
        for name in registry.names():
            loaded = registry.get(name)
            assert loaded is not None
            ingester.ingest(name, loaded.package.path)
    http = OutboundHttp()
    try:
        await http.open()
        services = build_services(stores, http, hub=hub)
        assert services.proactive is not None
        app[PROACTIVE] = services.proactive
        dispatcher = Dispatcher(registry, services, knowledge=knowledge_search(kb))
        app[DISPATCHER] = dispatcher
        delivery = build_delivery(stores, hub, lease=app[SETTINGS].lease)
        app[DELIVERY] = delivery
        path = build_message_path(app[SETTINGS], dispatcher, stores, on_commit=delivery.wake)
        app[MESSAGE_PATH] = path

        async def polled(bot: str, result: WebhookResult) -> None:
            await webhooks.record(path, stores, bot, "telegram", result)

        pollers = TelegramPollers(hub, polled)
        # SET SCHEDULE jobs: each occurrence claimed in the database, so it runs once.
        scheduler = Scheduler(registry, services, stores.pool)
        path.start()
        delivery.start()
        scheduler.start()
        for name in registry.names():
            await pollers.sync(name)
        app[POLLERS] = pollers
        try:
            yield
        finally:
            await scheduler.stop()  # waits for the jobs it started, before the stores close
            await pollers.close()
            await path.stop()
            await delivery.stop()
    finally:
        await ingester.close()
        await kb.close()
        await registry.close()  # the bots' model providers
        await hub.close()
        await http.close()


def create_app(settings: Settings, *, auth: AuthConfig | None = None) -> web.Application:
    """The gateway application; stores open on startup and close on cleanup.

    ``auth``: the credentials accepted (default: from the environment, see
    :meth:`AuthConfig.from_env`; a wrong setting is a ``ValueError`` here, not a
    gateway that starts open)."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[AUTH_CONFIG] = AuthConfig.from_env() if auth is None else auth
    app[BOTS] = BotRegistry(settings.bots_dir)
    app[CHANNELS] = ChannelHub(os.environ)
    # Stores first: loading bots records their configuration in the database.
    app.cleanup_ctx.append(_stores_ctx)
    app.cleanup_ctx.append(auth_ctx)  # API keys and the visitor key are in the stores
    app.cleanup_ctx.append(_bots_ctx)
    app.add_routes(api.routes)
    app.add_routes(auth_keys.routes)
    app.add_routes(webhooks.routes)
    app.add_routes(openapi_route.routes)
    app.add_routes(media.routes)
    ws.setup_websockets(app)
    setup_widget(app)
    return app
