"""Compression and export of the real SmolLM2-135M-Instruct: its GGUF Q8_0 export loads back in
llama.cpp and transformers and scores as the model does; its int8 compression loads everywhere,
classifies the reviews as the original does and serves completions through the official client."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlearning.models.hub import pull

pytestmark = pytest.mark.integration
SMOL = "smollm2-135m-instruct"


def test_the_q8_0_export_round_trips(tmp_path: Path) -> None:
    from promptlearning.compression.gguf_export import export_gguf, verify_gguf
    from promptlearning.models import resolve_model_dir

    source = Path(str(resolve_model_dir(SMOL, pull=True)))
    info = export_gguf(source, tmp_path / "smol.q8_0.gguf", "q8_0")
    assert info["pre_tokenizer"] in ("smollm", "gpt-2") and info["bytes"] < 0.3 * 538_000_000
    report = verify_gguf(source, tmp_path / "smol.q8_0.gguf", "q8_0")
    assert abs(report["transformers"]) < 0.01  # log perplexity ratio on the probe texts


def test_an_int8_smollm2_classifies_and_serves_as_the_original(tmp_path: Path, reviews) -> None:
    import openai
    import yaml

    from promptlearning.methods.spec import ClassifierSpec, build_classifier
    from promptlearning.models import load_model
    from promptlearning.serving import ServedModels, ServerSettings, start_server
    from promptlearning.tasks import load_task, run_task

    pull(SMOL, progress=False)
    text = tmp_path / "text.txt"
    text.write_text(" ".join(r["text"] for r in reviews) * 20)
    task = {"type": "compress", "name": "smol-int8", "model": SMOL, "output_dir": str(tmp_path),
            "quantize": {"mode": "int8-weight"}, "evaluate": {"perplexity": str(text), "max_length": 128}}  # fmt: skip
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(task))
    result = run_task(load_task(tmp_path / "t.yaml"))
    assert result.metrics["size_ratio"] < 0.31  # int8 weights + per-channel scales and the float norms
    assert result.metrics["word_perplexity"] < 1.05 * result.metrics["source_word_perplexity"]
    spec = ClassifierSpec(template={"input": "Review: {{ text }}\nSentiment:"},
                          verbalizer={"words": {"negative": [" negative"], "positive": [" positive"]}})  # fmt: skip
    inputs = [{"text": r["text"]} for r in reviews]
    labels = {}
    for name, model in (("fp32", load_model(SMOL)), ("int8", load_model(result.run_dir / "model"))):
        labels[name] = [p.label for p in build_classifier(spec, model).fit([]).predict(inputs)]
    assert labels["int8"] == labels["fp32"]
    served = ServedModels.load(model=str(result.run_dir / "model"), served_name="smol-int8", device="cpu")
    settings = ServerSettings(model=str(result.run_dir / "model"), no_auth=True, port=0, embedding_model=None)
    server = start_server(settings, served)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        out = client.completions.create(model="smol-int8", prompt="The capital of France is", max_tokens=6,
                                        temperature=0)  # fmt: skip
    finally:
        server.stop(timeout=5)
    assert "Paris" in out.choices[0].text
