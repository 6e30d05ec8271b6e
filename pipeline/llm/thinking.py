"""Keep a model's reasoning out of what users see.

Reasoning models served through OpenAI-compatible servers (DeepSeek R1, Qwen3, QwQ on
Ollama, vLLM, llama.cpp) write their reasoning inline as ``<think>…</think>``. A stream
may split a tag anywhere (``<thi`` + ``nk>``), and a stream cut short or a response
truncated at ``max_tokens`` may leave a block unclosed: what follows an unclosed
``<think>`` is reasoning too and is dropped. Whitespace right after a block is dropped
at the start of an answer, so it does not begin with the blank lines models put there.
"""

from __future__ import annotations

_OPEN = "<think>"
_CLOSE = "</think>"


def _partial_tag_at_end(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that begins ``tag`` (a tag split off)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkFilter:
    """Strips ``<think>`` blocks from text fed in pieces; :meth:`feed` then :meth:`flush`."""

    __slots__ = ("_after_block", "_held", "_inside", "_leading")

    def __init__(self) -> None:
        self._held = ""  # a possible start of a tag, kept until the next piece decides
        self._inside = False
        self._leading = True  # nothing visible yet
        self._after_block = False  # a block ended before anything visible: drop whitespace

    def feed(self, piece: str) -> str:
        """The visible text of ``piece``, given what came before."""
        text = self._held + piece
        self._held = ""
        out: list[str] = []
        while text:
            if self._inside:
                end = text.find(_CLOSE)
                if end < 0:
                    keep = _partial_tag_at_end(text, _CLOSE)
                    self._held = text[len(text) - keep :] if keep else ""
                    return "".join(out)
                text = text[end + len(_CLOSE) :]
                self._inside = False
                self._after_block = self._leading
                continue
            if self._after_block:
                text = text.lstrip()
                if not text:
                    break
                self._after_block = False
            start = text.find(_OPEN)
            if start >= 0:
                out.append(text[:start])
                self._leading = self._leading and not text[:start].strip()
                text = text[start + len(_OPEN) :]
                self._inside = True
                continue
            keep = _partial_tag_at_end(text, _OPEN)
            visible = text[: len(text) - keep]
            self._held = text[len(visible) :]
            out.append(visible)
            self._leading = self._leading and not visible.strip()
            break
        return "".join(out)

    def flush(self) -> str:
        """What is left at the end: a held piece that never became a tag is text."""
        held, self._held = self._held, ""
        return "" if self._inside else held


def strip_think(text: str) -> str:
    """``text`` without its ``<think>`` blocks (an unclosed one runs to the end)."""
    thinking = ThinkFilter()
    return thinking.feed(text) + thinking.flush()
