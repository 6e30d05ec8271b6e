"""Split sections into overlapping chunks at paragraph, sentence and word edges.

A chunk never spans two sections, so it keeps one heading and one page. Each
chunk is at most ``max_chars`` long (plus the overlap it starts with): whole
paragraphs are packed together; a paragraph too long is cut between
sentences, a sentence too long between words. A chunk after the first of its
section starts with the last sentences (up to ``overlap_chars``) of the one
before, so a passage cut at an edge is still found whole in one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.kb.documents import Section

#: ~250 MiniLM word pieces: a chunk fits the local model's window (256) whole.
MAX_CHARS = 1000
OVERLAP_CHARS = 150

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document to index; ``ordinal`` counts from 0 within its file."""

    ordinal: int
    text: str
    heading: str
    page: int | None


def chunk_sections(
    sections: Iterable[Section], *, max_chars: int = MAX_CHARS, overlap_chars: int = OVERLAP_CHARS
) -> list[Chunk]:
    """Every section's chunks, in document order."""
    if max_chars <= 0 or overlap_chars < 0 or overlap_chars >= max_chars:
        raise ValueError("need 0 <= overlap_chars < max_chars")
    chunks: list[Chunk] = []
    for section in sections:
        for text in _section_chunks(section.text, max_chars, overlap_chars):
            chunks.append(Chunk(len(chunks), text, section.heading, section.page))
    return chunks


def _section_chunks(text: str, max_chars: int, overlap_chars: int) -> list[str]:
    pieces: list[tuple[str, str]] = []  # (text, joiner before it)
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            pieces.append((paragraph, "\n\n"))
            continue
        for i, sentence in enumerate(_sentences(paragraph, max_chars)):
            pieces.append((sentence, "\n\n" if i == 0 else " "))
    out: list[str] = []
    current = ""
    fresh = False  # whether current holds text of its own, beyond the overlap it began with
    for piece, joiner in pieces:
        if fresh and len(current) + len(joiner) + len(piece) > max_chars:
            out.append(current)
            current, fresh = _tail(current, overlap_chars), False
            joiner = " "
        current = f"{current}{joiner}{piece}" if current else piece
        fresh = True
    if fresh:
        out.append(current)
    return out


def _sentences(paragraph: str, max_chars: int) -> list[str]:
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        sentence = sentence.strip()
        if not sentence:
            continue
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars  # one word longer than a chunk
            out.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if sentence:
            out.append(sentence)
    return out


def _tail(text: str, overlap_chars: int) -> str:
    """The last whole sentences of ``text`` within ``overlap_chars``; else its last words."""
    if overlap_chars == 0:
        return ""
    sentences = [s for s in _SENTENCE_END.split(text.replace("\n\n", " ")) if s.strip()]
    tail = ""
    for sentence in reversed(sentences):
        candidate = f"{sentence.strip()} {tail}".strip()
        if len(candidate) > overlap_chars:
            break
        tail = candidate
    if tail:
        return tail
    words = text.split()
    tail = ""
    for word in reversed(words):
        candidate = f"{word} {tail}".strip()
        if len(candidate) > overlap_chars:
            break
        tail = candidate
    return tail
