"""Typed keys of the application state (one per pool, client and registry)."""

from __future__ import annotations

from aiohttp import web

from channels.hub import ChannelHub
from config.settings import Settings
from gateway.polling import TelegramPollers
from pipeline.bots import BotRegistry
from pipeline.delivery import DeliveryWorker
from pipeline.dispatcher import Dispatcher
from pipeline.message_path import MessagePath
from storage.services import Stores

SETTINGS = web.AppKey("settings", Settings)
STORES = web.AppKey("stores", Stores)
BOTS = web.AppKey("bots", BotRegistry)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
MESSAGE_PATH = web.AppKey("message_path", MessagePath)
CHANNELS = web.AppKey("channels", ChannelHub)
DELIVERY = web.AppKey("delivery", DeliveryWorker)
POLLERS = web.AppKey("pollers", TelegramPollers)
WEBSOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])
