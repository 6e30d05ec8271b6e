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
from gateway import (
    api,
    auth_keys,
    handoff_api,
    llm_cache_route,
    media,
    openapi_route,
    webhooks,
    ws,
)
from gateway.agent_console import setup_agent_console
from gateway.agent_ws import setup_agent_socket
from gateway.auth import AuthConfig, auth_ctx
from gateway.cors import CorsConfig, cors_middleware, setup_cors
from gateway.errors import error_middleware
from gateway.keys import (
    AUTH_CONFIG,
    BOTS,
    CHANNELS,
    DELIVERY,
    DISPATCHER,
    HANDOFFS,
    INGESTER,
    KNOWLEDGE,
    LIVE,
    LLM_CACHE,
    MEDIA_URLS,
    MESSAGE_PATH,
    POLLERS,
    PROACTIVE,
    SETTINGS,
    STORES,
    WEBSITES,
)
from gateway.live import live_feeds
from gateway.polling import TelegramPollers
from gateway.rate_limits import (
    RATE_LIMIT_CONFIG,
    RATE_LIMITER,
    RateLimitConfig,
    RateLimiter,
    rate_limit_middleware,
)
from gateway.widget import setup_widget
from pipeline.bots import BotRegistry
from pipeline.delivery import WHATSAPP_INTERACTIVE_TEXT, DeliveryPolicy, DeliveryWorker
from pipeline.dispatcher import Dispatcher
from pipeline.gathering import GatherPolicy
from pipeline.handoff import HandoffDesk
from pipeline.handoff_sweep import HandoffSweeper
from pipeline.kb.local_embedder import load_local_embedder
from pipeline.kb.service import KnowledgeBase, open_knowledge_base
from pipeline.knowledge import PackageIngester, knowledge_search
from pipeline.live_replies import LiveReplies
from pipeline.llm_cache import LLMCache
from pipeline.mail import MailSettings, SmtpMailer
from pipeline.media import MediaIntake
from pipeline.media_delivery import DeliveryFiles
from pipeline.message_path import MessagePath, PathPolicy
from pipeline.outbound_files import OutboundFiles
from pipeline.outbound_http import OutboundHttp
from pipeline.proactive import ProactiveSender
from pipeline.protocol_checks import implements
from pipeline.scheduler import Scheduler
from pipeline.services import Services
from pipeline.websites import WebsiteCrawler
from storage.base import StorageError
from storage.blob_urls import MediaTokens, MediaUrls
from storage.kb_websites import PostgresKbWebsites
from storage.outbox import PostgresProactiveOutbox
from storage.services import Stores, open_stores

log = logging.getLogger(__name__)

MEDIA_KEY_NAME = "media-url"  # the signing key of /media/{token} URLs, in the database


async def _stores_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    stores = await open_stores(settings)
    app[STORES] = stores
    # The buckets live in the stores: Redis when configured, so every instance shares them.
    app[RATE_LIMITER] = RateLimiter(app[RATE_LIMIT_CONFIG], stores.rate_buckets)
    try:
        app[MEDIA_URLS] = await build_media_urls(settings, stores)
        yield
    finally:
        await stores.close()


# Seconds to wait at startup for the live news subscriptions (an agent's message published
# before the web socket's instance listens would reach nobody live; it is in the history).
LIVE_READY_TIMEOUT = 5.0


async def _live_ctx(app: web.Application) -> AsyncIterator[None]:
    """This instance's subscriptions to live news (agents' consoles, web users' sockets)."""
    feeds = live_feeds(app[STORES].pubsub)
    app[LIVE] = feeds
    feeds.start()
    if not await feeds.wait_ready(LIVE_READY_TIMEOUT):
        log.warning("live news not subscribed yet; the gateway goes on and keeps trying")
    try:
        yield
    finally:
        await feeds.stop()


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
        return adapter if implements(adapter, MediaSource) else None

    return source


def build_proactive(stores: Stores, hub: ChannelHub) -> ProactiveSender:
    """Proactive messages (the send API, TALK TO) to the channels the hub has on."""
    return ProactiveSender(PostgresProactiveOutbox(stores.pool), channels_on(hub))


def channels_on(hub: ChannelHub) -> Callable[[str], list[str]]:
    """The channels of a bot the hub has on."""

    def on(bot: str) -> list[str]:
        channels = hub.bot(bot)
        return [] if channels is None else [a.name for a in channels.adapters()]

    return on


def build_handoffs(stores: Stores, bots: BotRegistry, hub: ChannelHub | None) -> HandoffDesk:
    """Human handoff: agents' replies on provider channels go through the delivery worker
    (which the composition root sets as its ``wake``), on the web through users' sockets."""
    return HandoffDesk(
        stores.handoffs,
        stores.pubsub,
        bots,
        channels_on=channels_on(hub) if hub is not None else lambda bot: (),
        delivered_by_worker=PROVIDER_CHANNELS,
    )


def build_llm_cache(stores: Stores) -> LLMCache:
    """The semantic cache in front of the bots' models: answers in the stores (Redis when
    configured), questions embedded by the packaged local model when it is installed."""
    return LLMCache(stores.answers, embedder=load_local_embedder())


def build_website_crawler(
    stores: Stores, kb: KnowledgeBase, http: OutboundHttp, registry: BotRegistry
) -> WebsiteCrawler:
    """The crawler of the websites bots name (USE WEBSITE), into ``kb``, through ``http``;
    a crawl that changed a bot's knowledge drops its cached LLM answers (in the stores: the
    gateway's cache, or Redis shared with every instance)."""

    async def changed(bot: str) -> None:
        try:
            await stores.answers.bump_kb_version(bot)
        except StorageError as e:  # the answers then live out their ttl
            log.error("llm cache: bot %s: could not record a website's change: %s", bot, e)

    return WebsiteCrawler(kb, PostgresKbWebsites(stores.pool), http, registry, on_change=changed)


def build_services(
    stores: Stores,
    http: OutboundHttp,
    *,
    mail: MailSettings | None = None,
    hub: ChannelHub | None = None,
    llm_cache: LLMCache | None = None,
    bots: BotRegistry | None = None,
    websites: WebsiteCrawler | None = None,
    media_urls: MediaUrls | None = None,
) -> Services:
    """What turns may use: the stores, the dialogs' HTTP client, the mail sender
    (``SMTP_*`` from the environment unless ``mail`` is given), users' attachments kept
    in the blob store, with the ``hub`` proactive messages (TALK TO) and the channels that
    fetch attachments, the LLM cache (one on the stores unless given), with the ``bots``
    human handoff (TRANSFER TO HUMAN), with ``websites`` USE WEBSITE's crawls, and with
    ``media_urls`` the links to stored files that HEAR AS IMAGE|FILE gives and to the files
    dialogs send (SEND FILE TO) for the web widget."""
    return Services(
        conversations=stores.conversations,
        locks=stores.locks,
        memory=stores.memory,
        tables=stores.tables,
        http=http,
        mail=SmtpMailer(MailSettings.from_env() if mail is None else mail),
        proactive=build_proactive(stores, hub) if hub is not None else None,
        llm_cache=build_llm_cache(stores) if llm_cache is None else llm_cache,
        handoffs=build_handoffs(stores, bots, hub) if bots is not None else None,
        websites=websites,
        media=MediaIntake(stores.blobs, stores.media, media_sources(hub), urls=media_urls),
        files=OutboundFiles(stores.blobs, media_urls, http),
    )


def build_message_path(
    settings: Settings,
    dispatcher: Dispatcher,
    stores: Stores,
    *,
    delivered_by_channel: frozenset[str] = frozenset(PROVIDER_CHANNELS),
    policy: PathPolicy | None = None,
    on_commit: Callable[[], None] | None = None,
    live: LiveReplies | None = None,
    bots: BotRegistry | None = None,
) -> MessagePath:
    """The inbox, its worker and the synchronous web path, with the settings' limits.

    Replies of the provider channels are left in the outbox for the delivery
    worker (``on_commit`` wakes it), the model's answers streamed to them as they
    are written when ``live`` is given; the web channel's go back on the request. With
    the ``bots``, each bot's ``album-window`` and ``burst-window`` gather messages."""
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
        live=live,
        gathering=gather_policies(bots) if bots is not None else None,
    )


def gather_policies(bots: BotRegistry) -> Callable[[str], GatherPolicy | None]:
    """Each bot's album and burst windows, as its config said when it was (re)loaded."""

    def policy(bot: str) -> GatherPolicy | None:
        loaded = bots.get(bot)
        return loaded.gathering if loaded is not None else None

    return policy


# Channels whose free-form replies are allowed only within 24 hours of the user's message.
WINDOW_CHANNELS = frozenset({WHATSAPP, TWILIO_WHATSAPP})


def build_delivery(
    stores: Stores, hub: ChannelHub, *, lease: float = 60.0, urls: MediaUrls | None = None
) -> DeliveryWorker:
    """The outbox's delivery worker, sending through the hub's adapters (files from the
    blob store, linked by ``urls`` where a channel fetches them or cannot take them)."""

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
        files=DeliveryFiles(stores.blobs, urls),
    )


def build_live_replies(
    stores: Stores, hub: ChannelHub, delivery: DeliveryWorker, bots: BotRegistry
) -> LiveReplies:
    """Live streams of the model's answers to the provider channels, paced by the
    delivery worker's pacers, for the bots and channels whose ``stream-replies`` say so."""

    def streams(bot: str, channel: str) -> bool:
        loaded = bots.get(bot)
        return loaded is not None and loaded.streams(channel)

    return LiveReplies(
        hub.adapter,
        delivery.pacer,
        stores.inbox,
        stores.outbox,
        streams=streams,
        window_channels=WINDOW_CHANNELS,
        interactive_text_limits={WHATSAPP: WHATSAPP_INTERACTIVE_TEXT},
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
        config_of=registry.config_of,  # a bot's own embeddings endpoint, if it names one
    )
    app[KNOWLEDGE] = kb
    llm_cache = build_llm_cache(stores)
    app[LLM_CACHE] = llm_cache
    ingester = PackageIngester(kb, llm_cache=llm_cache)
    app[INGESTER] = ingester
    if settings.kb_ingest_on_load:
        for name in registry.names():
            loaded = registry.get(name)
            assert loaded is not None
            ingester.ingest(name, loaded.package.path)
    http = OutboundHttp()
    websites = build_website_crawler(stores, kb, http, registry)
    app[WEBSITES] = websites
    try:
        await http.open()
        # USE WEBSITE lines with a quoted URL: crawled from the moment the bot loads.
        for name in registry.names():
            loaded = registry.get(name)
            assert loaded is not None
            websites.loaded(loaded)
        services = build_services(
            stores,
            http,
            hub=hub,
            llm_cache=llm_cache,
            bots=registry,
            websites=websites,
            media_urls=app[MEDIA_URLS],
        )
        assert services.proactive is not None and services.handoffs is not None
        app[PROACTIVE] = services.proactive
        app[HANDOFFS] = services.handoffs
        dispatcher = Dispatcher(registry, services, knowledge=knowledge_search(kb))
        app[DISPATCHER] = dispatcher
        delivery = build_delivery(stores, hub, lease=app[SETTINGS].lease, urls=app[MEDIA_URLS])
        app[DELIVERY] = delivery
        services.handoffs.wake = delivery.wake  # agents' replies, timeout notices, events
        live = build_live_replies(stores, hub, delivery, registry)
        path = build_message_path(
            app[SETTINGS], dispatcher, stores, on_commit=delivery.wake, live=live, bots=registry
        )
        app[MESSAGE_PATH] = path

        async def polled(bot: str, result: WebhookResult) -> None:
            await webhooks.record(path, stores, bot, "telegram", result)

        pollers = TelegramPollers(hub, polled)
        # SET SCHEDULE jobs: each occurrence claimed in the database, so it runs once.
        scheduler = Scheduler(registry, services, stores.pool)
        # Handed-off conversations whose agent went silent go back to their bot.
        sweeper = HandoffSweeper(services.handoffs, interval=settings.handoff_sweep_interval)
        path.start()
        delivery.start()
        scheduler.start()
        sweeper.start()
        websites.start()
        for name in registry.names():
            await pollers.sync(name)
        app[POLLERS] = pollers
        try:
            yield
        finally:
            await sweeper.stop()
            await scheduler.stop()  # waits for the jobs it started, before the stores close
            await pollers.close()
            await path.stop()
            await delivery.stop()
    finally:
        await websites.stop()  # running crawls hand their sites back, progress kept
        await ingester.close()
        await kb.close()
        await registry.close()  # the bots' model providers
        await hub.close()
        await http.close()


def create_app(
    settings: Settings,
    *,
    auth: AuthConfig | None = None,
    limits: RateLimitConfig | None = None,
    cors: CorsConfig | None = None,
) -> web.Application:
    """The gateway application; stores open on startup and close on cleanup.

    ``auth``: the credentials accepted, ``limits``: the rate limits, ``cors``: the origins
    allowed to call the API from a browser (each by default from the environment, see their
    ``from_env``; a wrong setting is a ``ValueError`` here, not a gateway that starts open)."""
    # Preflights are answered first; errors (a 429 included) become JSON answers; the
    # address buckets are taken before a handler reads anything.
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[cors_middleware, error_middleware, rate_limit_middleware],
    )
    app[SETTINGS] = settings
    app[AUTH_CONFIG] = AuthConfig.from_env() if auth is None else auth
    app[RATE_LIMIT_CONFIG] = RateLimitConfig.from_env() if limits is None else limits
    setup_cors(app, CorsConfig.from_env() if cors is None else cors)
    app[BOTS] = BotRegistry(settings.bots_dir)
    app[CHANNELS] = ChannelHub(os.environ)
    # Stores first: loading bots records their configuration in the database.
    app.cleanup_ctx.append(_stores_ctx)
    app.cleanup_ctx.append(_live_ctx)
    app.cleanup_ctx.append(auth_ctx)  # API keys and the visitor key are in the stores
    app.cleanup_ctx.append(_bots_ctx)
    app.add_routes(api.routes)
    app.add_routes(auth_keys.routes)
    app.add_routes(llm_cache_route.routes)
    app.add_routes(webhooks.routes)
    app.add_routes(openapi_route.routes)
    app.add_routes(handoff_api.routes)
    app.add_routes(media.routes)
    ws.setup_websockets(app)
    setup_agent_socket(app)
    setup_widget(app)
    setup_agent_console(app)
    return app
