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
    assert sorted(f.name for f in (tmp_path / "onnx").glob("*.onnx")) == [info["file"]]  # only what it runs
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


def test_an_onnx_encoder_serves_embeddings_and_selects_demonstrations(tmp_path: Path, tiny_encoder_dir: Path,
                                                                       tiny_lm) -> None:  # fmt: skip
    import httpx

    from promptlearning.methods.spec import ClassifierSpec, build_classifier
    from promptlearning.models import load_model
    from promptlearning.serving import ServedModels, ServerSettings, start_server

    export_encoder_onnx(tiny_encoder_dir, tmp_path / "onnx", "fp32")
    served = ServedModels.load(model=None, embedding_model=str(tmp_path / "onnx"), device="cpu")
    served.text["tiny"] = tiny_lm
    server = start_server(ServerSettings(api_key=["k" * 24], port=0, model="tiny", embedding_model=None), served)
    try:
        answer = httpx.post(server.url + "/v1/embeddings", json={"model": str(tmp_path / "onnx"), "input": TEXTS},
                            headers={"Authorization": "Bearer " + "k" * 24}, timeout=30).json()  # fmt: skip
    finally:
        server.stop(timeout=5)
    reference = load_model(tiny_encoder_dir).embed(TEXTS)
    assert np.allclose([row["embedding"] for row in answer["data"]], reference, atol=1e-4)

    pool = [{"text": t, "label": label} for t, label in zip(TEXTS * 4, ["a", "b", "a"] * 4, strict=True)]
    chosen = {}
    for embedder in (str(tmp_path / "onnx"), str(tiny_encoder_dir)):
        spec = ClassifierSpec(template={"input": "{{ text }} ->"}, verbalizer={"words": {"a": [" a"], "b": [" b"]}},
                              shots=2, selection="knn", embedder=embedder)  # fmt: skip
        classifier = build_classifier(spec, tiny_lm).fit(pool)
        chosen[embedder] = [p.demonstrations for p in classifier.predict([{"text": "the cat sat"}])]
    assert chosen[str(tiny_encoder_dir)][0] and chosen[str(tmp_path / "onnx")] == chosen[str(tiny_encoder_dir)]
