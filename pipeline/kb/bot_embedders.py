"""Which embedding model each bot's knowledge base uses.

A bot whose ``config.csv`` names an embeddings endpoint (``embedding-url``,
``embedding-key``, ``embedding-model``; or just ``embedding-model`` with ``OPENAI_API_KEY``
in the environment: see :mod:`pipeline.llm.config`) has its chunks and its questions
embedded there, any OpenAI-compatible ``/embeddings`` server. Every other bot uses the
packaged local model when it is installed, else lexical search only.

The endpoint's dimension is learnt by embedding one short text the first time the bot
needs it. An endpoint that does not answer then leaves the bot lexical for the moment
(its documents' rows record no model, so a later ingestion embeds them) and is asked
again after ``retry_after`` seconds. A bot whose embedding rows are wrong (a URL without
a key, say) keeps the local model, with the reason logged once per change of its config.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipeline.kb.embedders import EmbedCall, Embedder, EmbeddingFailed, EndpointEmbedder
from pipeline.llm.base import LLMProvider
from pipeline.llm.config import LLMSettings, ProviderSettings, build_provider, llm_settings
from pipeline.llm.errors import LLMError, ProviderNotConfigured

log = logging.getLogger(__name__)

#: The bot's ``config.csv`` rows, or None for a bot not loaded.
ConfigOf = Callable[[str], Mapping[str, str] | None]
_PROBE = "dimension probe"


@dataclass(slots=True)
class _Endpoint:
    settings: ProviderSettings | None  # None: the rows are wrong, ``problem`` says why
    provider: LLMProvider | None = None
    embedder: Embedder | None = None
    failed_at: float | None = None
    problem: str = ""


class BotEmbedders:
    """``await embedders(bot)``: the bot's :class:`~pipeline.kb.embedders.Embedder`, or
    None for lexical search only (see the module's docstring)."""

    def __init__(
        self,
        local: Embedder | None,
        config_of: ConfigOf,
        *,
        environ: Mapping[str, str] | None = None,
        retry_after: float = 60.0,
    ) -> None:
        self.local = local
        self._config_of = config_of
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._retry_after = retry_after
        self._endpoints: dict[str, _Endpoint] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retired: list[LLMProvider] = []

    async def __call__(self, bot: str) -> Embedder | None:
        config = self._config_of(bot)
        if config is None:
            return self.local
        try:
            resolved = llm_settings(config, self._environ)
        except ProviderNotConfigured as e:  # rows of the chat model are wrong: not ours to say
            resolved = LLMSettings(providers=(), problems=(str(e),))
        settings = resolved.embedding
        if settings is None:
            wrong = [p for p in resolved.problems if p.startswith("embedding")]
            if wrong:
                self._wrong(bot, "; ".join(wrong))
            else:
                self._forget(bot)
            return self.local
        held = self._endpoints.get(bot)
        if held is not None and held.settings == settings and held.embedder is not None:
            return held.embedder
        async with self._locks.setdefault(bot, asyncio.Lock()):
            return await self._open(bot, settings)

    async def _open(self, bot: str, settings: ProviderSettings) -> Embedder | None:
        held = self._endpoints.get(bot)
        if held is None or held.settings != settings:
            self._forget(bot)
            held = self._endpoints[bot] = _Endpoint(settings, build_provider(settings))
            log.info("kb: bot %r embeds with %s at %s", bot, settings.model, settings.base_url)
        if held.embedder is not None:
            return held.embedder
        if held.failed_at is not None and time.monotonic() - held.failed_at < self._retry_after:
            return None
        provider = held.provider
        assert provider is not None
        try:
            [vector] = await provider.embed([_PROBE])
        except (LLMError, ValueError) as e:
            held.failed_at = time.monotonic()
            log.warning(
                "kb: bot %r: the embeddings endpoint did not answer (%s): lexical search"
                " for now, asked again in %.0f s",
                bot,
                e,
                self._retry_after,
            )
            return None
        held.embedder = EndpointEmbedder(_calling(provider), model=settings.model, dim=len(vector))
        return held.embedder

    def _wrong(self, bot: str, problem: str) -> None:
        held = self._endpoints.get(bot)
        if held is None or held.problem != problem:
            self._forget(bot)
            self._endpoints[bot] = _Endpoint(None, problem=problem)
            log.warning("kb: bot %r: its embeddings endpoint is off (%s)", bot, problem)

    def _forget(self, bot: str) -> None:
        held = self._endpoints.pop(bot, None)
        if held is not None and held.provider is not None:
            self._retired.append(held.provider)

    async def close(self) -> None:
        """Close every endpoint's HTTP client."""
        for bot in list(self._endpoints):
            self._forget(bot)
        retired, self._retired = self._retired, []
        for provider in retired:
            await provider.aclose()


def _calling(provider: LLMProvider) -> EmbedCall:
    async def call(texts: list[str]) -> list[list[float]]:
        try:
            return await provider.embed(texts)
        except LLMError as e:  # the knowledge base then searches lexically
            raise EmbeddingFailed(str(e)) from e

    return call
