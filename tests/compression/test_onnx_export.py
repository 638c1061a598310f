"""ONNX export of sentence encoders: the directory loads as an embedder and embeds as the source does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptlearning.compression.onnx_export import export_encoder_onnx
from promptlearning.errors import CorruptModelError, PromptLearningError

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "the film was good"]


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_an_exported_encoder_embeds_like_the_source(tmp_path: Path, tiny_encoder_dir: Path, quant: str) -> None:
    from promptlearning.models import load_embedder, load_model

    info = export_encoder_onnx(tiny_encoder_dir, tmp_path / "onnx", quant)
    assert info["file"] == ("model.int8.onnx" if quant == "int8" else "model.onnx")
    exported = load_embedder(str(tmp_path / "onnx"))  # what kNN selection and /v1/embeddings take
    assert type(exported).__name__ == "ONNXEncoder"
    reference = load_model(tiny_encoder_dir).embed(TEXTS)
    vectors = exported.embed(TEXTS)
    assert vectors.shape == reference.shape
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.min() > (0.9999 if quant == "fp32" else 0.98)
    assert not np.allclose(np.linalg.norm(exported.embed(TEXTS, normalize=False), axis=1), 1)  # mean-pooled as is


def test_onnx_export_refuses_what_it_cannot_export(tmp_path: Path, tiny_llama_dir: Path, tiny_encoder_dir) -> None:
    with pytest.raises(PromptLearningError, match="language models export to GGUF"):
        export_encoder_onnx(tiny_llama_dir, tmp_path / "x", "int8")
    with pytest.raises(PromptLearningError, match="supported: int8, fp32"):
        export_encoder_onnx(tiny_encoder_dir, tmp_path / "x", "int4")
    assert not (tmp_path / "x").exists()


def test_a_damaged_onnx_directory_says_so(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from promptlearning.models import load_model

    export_encoder_onnx(tiny_encoder_dir, tmp_path / "onnx", "fp32")
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(CorruptModelError, match="export it again"):
        load_model(tmp_path / "onnx")
