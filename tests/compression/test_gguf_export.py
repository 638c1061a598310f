"""GGUF export round trips: the file loads back in transformers (and llama.cpp when installed) and
scores as the source does; a mismatched tokenizer or an impossible export is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from promptlearning.compression.gguf_export import export_gguf, verify_gguf
from promptlearning.errors import PromptLearningError


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_0"])
def test_an_exported_file_loads_back_and_scores_like_the_source(tmp_path: Path, tiny_llama_dir: Path, quant) -> None:
    out = tmp_path / f"tiny-{quant}.gguf"
    info = export_gguf(tiny_llama_dir, out, quant)
    assert out.is_file() and info["tensors"] == 2 * 9 + 3  # 9 per block, embedding, norm, LM head
    assert not list(tmp_path.glob(".*partial*"))
    report = verify_gguf(tiny_llama_dir, out, quant)
    assert abs(report["transformers"]) <= report["tolerance"]
    if quant == "f16":
        assert abs(report["transformers"]) < 1e-3


def test_a_head_pruned_model_exports_and_loads_back(tmp_path: Path, tiny_llama_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptlearning.compression.prune import attention_head_importance, prune_attention_heads

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    ids = torch.arange(5, 37).reshape(1, 32)
    importance = attention_head_importance(model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}])
    prune_attention_heads(model, importance, 1)  # 2 of 4 query heads: head_dim * heads != hidden_size
    pruned = tmp_path / "pruned"
    model.save_pretrained(pruned)
    AutoTokenizer.from_pretrained(str(tiny_llama_dir)).save_pretrained(pruned)
    out = tmp_path / "pruned.gguf"
    export_gguf(pruned, out, "f16")
    report = verify_gguf(pruned, out, "f16")
    assert abs(report["transformers"]) < 1e-3
    if "llama_cpp" in report:
        assert abs(report["llama_cpp"]) <= report["tolerance"]


def test_a_gguf_whose_tokenizer_does_not_match_fails_the_round_trip(tmp_path: Path, tiny_llama_dir: Path) -> None:
    out = tmp_path / "tiny.gguf"
    export_gguf(tiny_llama_dir, out, "f16")
    other = tmp_path / "other"
    shutil.copytree(tiny_llama_dir, other)
    data = json.loads((other / "tokenizer.json").read_text())
    data["model"]["merges"] = data["model"]["merges"][:-150]  # the same vocabulary, fewer merges
    (other / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(PromptLearningError, match="splits the probe texts differently"):
        verify_gguf(other, out, "f16")


def test_exports_that_cannot_be_made_say_why(tmp_path: Path, tiny_llama_dir: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(PromptLearningError, match="supported: f32, f16, q8_0, q4_0"):
        export_gguf(tiny_llama_dir, tmp_path / "x.gguf", "q4_k")
    with pytest.raises(PromptLearningError, match="Llama-architecture"):
        export_gguf(tiny_bert_dir, tmp_path / "x.gguf", "f16")
    program = tmp_path / "program"
    program.mkdir()
    (program / "adapter_config.json").write_text("{}")
    with pytest.raises(PromptLearningError, match="prompt tuning and prefix tuning .* cannot be exported"):
        export_gguf(program, tmp_path / "x.gguf", "f16")
    assert not list(tmp_path.glob("*.gguf"))
