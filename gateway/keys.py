"""Typed keys of the application state (one per pool, client and registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from channels.hub import ChannelHub
from config.settings import Settings
from gateway.live import LiveFeeds
from gateway.polling import TelegramPollers
from pipeline.bots import BotRegistry
from pipeline.delivery import DeliveryWorker
from pipeline.dispatcher import Dispatcher
from pipeline.handoff import HandoffDesk
from pipeline.kb.service import KnowledgeBase
from pipeline.knowledge import PackageIngester
from pipeline.llm_cache import LLMCache
from pipeline.message_path import MessagePath
from pipeline.proactive import ProactiveSender
from pipeline.websites import WebsiteCrawler
from storage.blob_urls import MediaUrls
from storage.services import Stores

if TYPE_CHECKING:  # gateway.auth reads the stores through these keys
    from gateway.auth import AuthConfig, Authenticator

SETTINGS = web.AppKey("settings", Settings)
STORES = web.AppKey("stores", Stores)
BOTS = web.AppKey("bots", BotRegistry)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
MESSAGE_PATH = web.AppKey("message_path", MessagePath)
CHANNELS = web.AppKey("channels", ChannelHub)
DELIVERY = web.AppKey("delivery", DeliveryWorker)
PROACTIVE = web.AppKey("proactive", ProactiveSender)
POLLERS = web.AppKey("pollers", TelegramPollers)
KNOWLEDGE = web.AppKey("knowledge", KnowledgeBase)
INGESTER = web.AppKey("ingester", PackageIngester)
LLM_CACHE = web.AppKey("llm_cache", LLMCache)
WEBSITES = web.AppKey("websites", WebsiteCrawler)
WEBSOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])
HANDOFFS = web.AppKey("handoffs", HandoffDesk)
LIVE = web.AppKey("live", LiveFeeds)
MEDIA_URLS = web.AppKey("media_urls", MediaUrls)
AUTH_CONFIG: web.AppKey[AuthConfig] = web.AppKey("auth_config")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")
