"""Every bot's provider channels, built from its ``config.csv``.

A channel is *off* when none of its keys is set, *on* when they are all
there, and *disabled* with a note naming what is missing when only some are
(a token without its webhook secret, a ``${VAR}`` not set): a disabled
channel refuses its webhooks and sends nothing — it fails closed — and the
note is logged when the bot loads. Values may be ``${ENV_NAME}`` references.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from channels import generic, telegram, twilio_channel, whatsapp
from channels.base import Channel, ChannelNotConfigured
from config.env_values import MissingVariable, expand

log = logging.getLogger(__name__)

TELEGRAM = "telegram"
WHATSAPP = whatsapp.NAME
TWILIO_WHATSAPP = twilio_channel.WHATSAPP
TWILIO_SMS = twilio_channel.SMS
GENERIC = generic.NAME
PROVIDER_CHANNELS = (TELEGRAM, WHATSAPP, TWILIO_WHATSAPP, TWILIO_SMS, GENERIC)

# The key prefix of each provider's rows: any of them set means the provider is wanted.
_PREFIXES = {
    TELEGRAM: "telegram-",
    WHATSAPP: "whatsapp-",
    "twilio": "twilio-",
    GENERIC: "webhook-",
}
# Rows that only tune a provider do not ask for it.
_TUNING_ONLY = frozenset(
    {"telegram-mode", "whatsapp-template", "whatsapp-template-language", "webhook-allow-private"}
)


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One channel of a bot: its adapter when on, the reason when disabled."""

    name: str
    adapter: Channel | None = None
    note: str | None = None

    @property
    def enabled(self) -> bool:
        return self.adapter is not None


@dataclass(slots=True)
class BotChannels:
    """The provider channels a bot asked for, on or disabled, and its resolved config."""

    bot: str
    states: dict[str, ChannelState] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    def adapter(self, name: str) -> Channel | None:
        state = self.states.get(name)
        return state.adapter if state is not None else None

    def adapters(self) -> list[Channel]:
        """Each enabled adapter once (Twilio's two channels share one account)."""
        return [s.adapter for s in self.states.values() if s.adapter is not None]


def resolve(
    config: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The provider rows of ``config`` with ``${VAR}`` expanded, and a problem per row that
    could not be (the row is then left out, so its channel stays disabled)."""
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for key, value in config.items():
        normalized = key.strip().lower().replace("_", "-").replace(" ", "-")
        if not normalized.startswith(tuple(_PREFIXES.values())):
            continue
        try:
            values[normalized] = expand(value.strip(), environ)
        except MissingVariable as e:
            problems[normalized] = f"{normalized}: {e}"
    return values, problems


def _wanted(provider: str, keys: set[str]) -> bool:
    prefix = _PREFIXES[provider]
    return any(k.startswith(prefix) and k not in _TUNING_ONLY for k in keys)


def build_channels(bot: str, config: Mapping[str, str], environ: Mapping[str, str]) -> BotChannels:
    """The channels ``config`` asks for; never raises for a bad or partial configuration."""
    values, problems = resolve(config, environ)
    asked = set(values) | set(problems)
    channels = BotChannels(bot=bot, config=values)

    def note(provider: str, error: Exception) -> str:
        related = [p for k, p in sorted(problems.items()) if k.startswith(_PREFIXES[provider])]
        return "; ".join([str(error), *related])

    builders: dict[str, Callable[[], list[Channel]]] = {
        TELEGRAM: lambda: [telegram.TelegramChannel.from_config(bot, values)],
        WHATSAPP: lambda: [whatsapp.WhatsAppChannel.from_config(bot, values)],
        "twilio": lambda: list(twilio_channel.TwilioChannel.pair_from_config(bot, values)),
        GENERIC: lambda: [generic.GenericChannel.from_config(bot, values)],
    }
    names = {
        TELEGRAM: (TELEGRAM,),
        WHATSAPP: (WHATSAPP,),
        "twilio": (TWILIO_WHATSAPP, TWILIO_SMS),
        GENERIC: (GENERIC,),
    }
    for provider, build in builders.items():
        if not _wanted(provider, asked):
            continue
        try:
            adapters = build()
        except (ChannelNotConfigured, ValueError) as e:
            text = note(provider, e)
            log.warning("bot %s: channel %s is disabled: %s", bot, provider, text)
            for name in names[provider]:
                channels.states[name] = ChannelState(name, note=text)
            continue
        for adapter in adapters:
            channels.states[adapter.name] = ChannelState(adapter.name, adapter=adapter)
        log.info("bot %s: channel %s on", bot, "/".join(a.name for a in adapters))
    return channels


class ChannelHub:
    """The channels of every loaded bot; rebuilt for a bot when it is reloaded."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._bots: dict[str, BotChannels] = {}

    async def load(self, bot: str, config: Mapping[str, str]) -> BotChannels:
        """(Re)build ``bot``'s channels from its configuration, closing the previous ones."""
        channels = build_channels(bot, config, self._environ)
        previous = self._bots.get(bot)
        self._bots[bot] = channels
        if previous is not None:
            await _close(previous)
        return channels

    def bot(self, bot: str) -> BotChannels | None:
        return self._bots.get(bot)

    def adapter(self, bot: str, channel: str) -> Channel | None:
        channels = self._bots.get(bot)
        return channels.adapter(channel) if channels is not None else None

    def state(self, bot: str, channel: str) -> ChannelState | None:
        channels = self._bots.get(bot)
        return channels.states.get(channel) if channels is not None else None

    def bots(self) -> list[BotChannels]:
        return list(self._bots.values())

    async def close(self) -> None:
        bots, self._bots = list(self._bots.values()), {}
        await asyncio.gather(*(_close(b) for b in bots))


async def _close(channels: BotChannels) -> None:
    seen: set[int] = set()
    for adapter in channels.adapters():
        if id(adapter) in seen:
            continue
        seen.add(id(adapter))
        try:
            await adapter.close()
        except Exception:
            log.exception("bot %s: closing channel %s failed", channels.bot, adapter.name)
