"""Typed keys of the application state (one per pool, client and registry)."""

from __future__ import annotations

from aiohttp import web

from config.settings import Settings
from pipeline.bots import BotRegistry
from pipeline.dispatcher import Dispatcher
from pipeline.message_path import MessagePath
from storage.services import Stores

SETTINGS = web.AppKey("settings", Settings)
STORES = web.AppKey("stores", Stores)
BOTS = web.AppKey("bots", BotRegistry)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
MESSAGE_PATH = web.AppKey("message_path", MessagePath)
WEBSOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])
