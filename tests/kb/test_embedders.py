"""Embedders: the packaged local model (where installed) and an endpoint's answers checked."""

from __future__ import annotations

import math

import pytest

from pipeline.kb.embedders import EmbeddingFailed, EndpointEmbedder
from pipeline.kb.local_embedder import DIM, MODEL_ID, LocalModelUnavailable, load_local_embedder

LOCAL = load_local_embedder()
needs_local = pytest.mark.skipif(LOCAL is None, reason="the local embedding model is not installed")


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@needs_local
async def test_the_local_model_embeds_meaning() -> None:
    assert LOCAL is not None
    assert (LOCAL.space.model, LOCAL.space.dim) == (MODEL_ID, DIM)
    question, paraphrase, unrelated = await LOCAL.embed(
        ["How do I connect my bot to Telegram?",
         "Setting up the Telegram channel for a chatbot",
         "Bananas are rich in potassium."]
    )  # fmt: skip
    assert len(question) == DIM
    assert math.isclose(cosine(question, question), 1.0, abs_tol=1e-4)
    assert cosine(question, paraphrase) > 0.5 > cosine(question, unrelated) + 0.3
    assert await LOCAL.embed([]) == []


@needs_local
def test_a_model_file_other_than_the_pinned_one_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.kb.local_embedder import LocalEmbedder, model_files

    _, tokenizer = model_files()
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(LocalModelUnavailable, match="sha256"):
        LocalEmbedder(fake, tokenizer).embed_blocking(["x"])


async def test_endpoint_vectors_are_batched_and_normalized() -> None:
    batches: list[int] = []

    async def call(texts: list[str]) -> list[list[float]]:
        batches.append(len(texts))
        return [[3.0, 4.0] for _ in texts]

    embedder = EndpointEmbedder(call, model="remote", dim=2, batch_size=2)
    assert await embedder.embed(["a", "b", "c"]) == [[0.6, 0.8]] * 3
    assert batches == [2, 1]


@pytest.mark.parametrize(
    ("answer", "message"),
    [([[1.0, 0.0]], "2 texts sent, 1 vectors back"),
     ([[1.0], [1.0]], "a 1-dim vector, 2 expected"),
     ([[0.0, 0.0], [1.0, 0.0]], "zero or non-finite")],
)  # fmt: skip
async def test_bad_endpoint_answers_are_refused(answer: list[list[float]], message: str) -> None:
    async def call(texts: list[str]) -> list[list[float]]:
        return answer

    with pytest.raises(EmbeddingFailed, match=message):
        await EndpointEmbedder(call, model="remote", dim=2).embed(["a", "b"])
