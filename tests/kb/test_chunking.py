"""Chunking: sizes, overlap at sentence edges, never across a heading or page."""

from __future__ import annotations

import itertools

import pytest

from pipeline.kb.chunking import chunk_sections
from pipeline.kb.documents import Section


def sentences(n: int, start: int = 0) -> str:
    return " ".join(f"Sentence {i} says something." for i in range(start, start + n))


def test_short_paragraphs_are_packed_into_one_chunk() -> None:
    (chunk,) = chunk_sections([Section("One.\n\nTwo.\n\n\nThree.", "H", 2)])
    assert (chunk.ordinal, chunk.text, chunk.heading, chunk.page) == (
        0,
        "One.\n\nTwo.\n\nThree.",
        "H",
        2,
    )


def test_long_text_is_cut_at_sentences_with_overlap() -> None:
    chunks = chunk_sections([Section(sentences(60))], max_chars=200, overlap_chars=60)
    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        assert len(after.text) <= 200 + 60 + 1
        assert after.text[0].isupper() and before.text.endswith(".")  # sentence edges
        overlap = after.text.split(". ")[0] + "."
        assert overlap in before.text  # starts with the previous chunk's last sentence
    words = " ".join(c.text for c in chunks)
    for i in range(60):
        assert f"Sentence {i} says" in words


def test_paragraph_edges_are_preferred() -> None:
    text = f"{sentences(3)}\n\n{sentences(3, 10)}"
    chunks = chunk_sections([Section(text)], max_chars=100, overlap_chars=0)
    assert chunks[0].text == sentences(3)
    assert chunks[1].text == sentences(3, 10)


def test_chunks_never_span_sections() -> None:
    chunks = chunk_sections(
        [
            Section("Page one text.", "A", 1),
            Section("Page two text.", "A", 2),
            Section("B text.", "B"),
        ]
    )
    assert [(c.ordinal, c.text, c.heading, c.page) for c in chunks] == [
        (0, "Page one text.", "A", 1),
        (1, "Page two text.", "A", 2),
        (2, "B text.", "B", None),
    ]


def test_a_sentence_longer_than_a_chunk_is_cut_between_words() -> None:
    text = " ".join(["word"] * 100)  # 499 characters, no sentence end
    chunks = chunk_sections([Section(text)], max_chars=100, overlap_chars=20)
    assert all(len(c.text) <= 121 for c in chunks)
    assert all(not c.text.startswith(" ") and "wor d" not in c.text for c in chunks)
    assert sum(c.text.count("word") for c in chunks) >= 100


def test_empty_sections_give_no_chunks() -> None:
    assert chunk_sections([Section("  \n\n "), Section("")]) == []


@pytest.mark.parametrize(("max_chars", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_bad_sizes_are_refused(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_sections([Section("x")], max_chars=max_chars, overlap_chars=overlap)
