"""The composition root: builds the aiohttp application and wires every part."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from config.settings import Settings
from gateway import api, ws
from gateway.errors import error_middleware
from gateway.keys import BOTS, DISPATCHER, MESSAGE_PATH, SETTINGS, STORES
from gateway.widget import setup_widget
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.mail import MailSettings, SmtpMailer
from pipeline.message_path import MessagePath, PathPolicy
from pipeline.outbound_http import OutboundHttp
from pipeline.services import Services
from storage.services import Stores, open_stores

log = logging.getLogger(__name__)


async def _stores_ctx(app: web.Application) -> AsyncIterator[None]:
    stores = await open_stores(app[SETTINGS])
    app[STORES] = stores
    try:
        yield
    finally:
        await stores.close()


def build_services(
    stores: Stores, http: OutboundHttp, *, mail: MailSettings | None = None
) -> Services:
    """What turns may use: the stores, the dialogs' HTTP client and the mail sender
    (``SMTP_*`` from the environment unless ``mail`` is given)."""
    return Services(
        conversations=stores.conversations,
        locks=stores.locks,
        memory=stores.memory,
        tables=stores.tables,
        http=http,
        mail=SmtpMailer(MailSettings.from_env() if mail is None else mail),
    )


def build_message_path(
    settings: Settings,
    dispatcher: Dispatcher,
    stores: Stores,
    *,
    delivered_by_channel: frozenset[str] = frozenset(),
    policy: PathPolicy | None = None,
) -> MessagePath:
    """The inbox, its worker and the synchronous web path, with the settings' limits."""
    return MessagePath(
        dispatcher,
        stores.inbox,
        policy=policy
        or PathPolicy(
            workers=settings.workers,
            max_attempts=settings.max_attempts,
            max_age=settings.max_message_age,
        ),
        delivered_by_channel=delivered_by_channel,
    )


async def _bots_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = app[BOTS]
    stores = app[STORES]
    registry.attach_tables(stores.tables)  # loading (and reloading) seeds .gbdata tables
    await registry.load_all()
    for name in registry.names():
        bot = registry.get(name)
        assert bot is not None
        await stores.bot_configs.put(name, bot.package.config.as_dict())
    http = OutboundHttp()
    try:
        await http.open()
        dispatcher = Dispatcher(registry, build_services(stores, http))
        app[DISPATCHER] = dispatcher
        path = build_message_path(app[SETTINGS], dispatcher, stores)
        app[MESSAGE_PATH] = path
        path.start()
        try:
            yield
        finally:
            await path.stop()
    finally:
        await http.close()


def create_app(settings: Settings) -> web.Application:
    """The gateway application; stores open on startup and close on cleanup."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[BOTS] = BotRegistry(settings.bots_dir)
    # Stores first: loading bots records their configuration in the database.
    app.cleanup_ctx.append(_stores_ctx)
    app.cleanup_ctx.append(_bots_ctx)
    app.add_routes(api.routes)
    ws.setup_websockets(app)
    setup_widget(app)
    return app
