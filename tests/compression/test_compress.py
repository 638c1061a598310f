"""Compression on tiny random Llama models: int8 layers, pruning, the compress task end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from promptlearning.compression.prune import (
    attention_head_importance,
    block_influence,
    drop_layers,
    heads_to_keep,
    layers_to_drop,
    magnitude_prune,
    mlp_channel_importance,
    prune_attention_heads,
    prune_mlp_width,
    width_to_keep,
)
from promptlearning.errors import PromptLearningError
from promptlearning.models.quantized import Int8Embedding, Int8WeightLinear, check_quant_mode, int8_weight_only

TEXT = "\n".join(["the cat sat on the mat", "a dog ran in the park", "the film was good and the plot was fun"] * 60)


@pytest.fixture(scope="module")
def tiny_deep_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama_builder) -> Path:
    return tiny_llama_builder(tmp_path_factory.mktemp("tiny-deep"), layers=4, tied=True, seed=3)


def _model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def _batches(path: Path, n: int = 2):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(path))(TEXT, return_tensors="pt").input_ids[0][: n * 32]
    ids = ids.reshape(n, 32)
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]


def test_an_int8_linear_layer_computes_what_the_float_one_does() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 5, 64)
    q = Int8WeightLinear.from_linear(linear)
    assert q.weight.dtype == torch.int8
    error = (q(x) - linear(x)).abs().max() / linear(x).abs().max()
    assert error < 0.02
    table = nn.Embedding(100, 16)
    ids = torch.tensor([[1, 5, 99]])
    assert torch.allclose(Int8Embedding.from_embedding(table)(ids), table(ids), atol=0.03)


def test_int8_weight_only_unties_and_quantizes_every_layer(tiny_deep_dir: Path) -> None:
    model = _model(tiny_deep_dir)
    ids = _batches(tiny_deep_dir)[0]["input_ids"]
    reference = model(ids).logits
    layout = int8_weight_only(model)
    assert "lm_head" in layout["linear"] and layout["embedding"] == ["model.embed_tokens"]
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert model.config.tie_word_embeddings is False
    logits = model(ids).logits
    similarity = nn.functional.cosine_similarity(logits.flatten(), reference.flatten(), dim=0)
    assert 0.995 < similarity < 1.0  # close, and quantized (not the float weights any more)


def test_block_influence_finds_a_block_that_does_nothing(tiny_deep_dir: Path) -> None:
    model = _model(tiny_deep_dir)
    with torch.no_grad():  # block 2 adds nothing to the residual stream: its output is its input
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    influence = block_influence(model, _batches(tiny_deep_dir))
    assert len(influence) == 4 and influence[2] < 1e-6 < min(influence[:2] + influence[3:])
    assert layers_to_drop(influence, 1) == [2]
    ids = _batches(tiny_deep_dir)[0]["input_ids"]
    before = model(ids).logits
    drop_layers(model, [2])
    assert model.config.num_hidden_layers == 3 and len(model.model.layers) == 3
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2]
    assert torch.allclose(model(ids).logits, before, atol=1e-4)  # the dropped block changed nothing
    out = model.generate(ids[:1, :5], max_new_tokens=3, do_sample=False)  # the KV cache follows the new indices
    assert out.shape[1] == 8


def test_width_pruning_keeps_the_strongest_channels_as_a_dense_smaller_model(tiny_deep_dir: Path) -> None:
    model = _model(tiny_deep_dir)
    importance = mlp_channel_importance(model, _batches(tiny_deep_dir))
    assert len(importance) == 4 and importance[0].shape == (128,)
    keep = width_to_keep(128, 0.25)
    assert keep == 96
    strongest = set(torch.topk(importance[1], keep).indices.tolist())
    original = model.model.layers[1].mlp.up_proj.weight.detach().clone()
    prune_mlp_width(model, importance, keep)
    mlp = model.model.layers[1].mlp
    assert mlp.up_proj.weight.shape == (96, 64) and mlp.down_proj.weight.shape == (64, 96)
    assert model.config.intermediate_size == 96
    kept_rows = {i for i in range(128) if any(torch.equal(original[i], row) for row in mlp.up_proj.weight)}
    assert kept_rows == strongest
    model(_batches(tiny_deep_dir)[0]["input_ids"])


def test_head_pruning_keeps_the_strongest_query_heads_of_every_key_value_group(tiny_deep_dir: Path, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    model = _model(tiny_deep_dir)  # 4 query heads in 2 key/value groups, head_dim 16
    batch = _batches(tiny_deep_dir)[0]
    importance = attention_head_importance(model, [batch])
    assert len(importance) == 4 and importance[0].shape == (4,) and bool((importance[0] > 0).all())
    original = model.model.layers[2].self_attn.q_proj.weight.detach().clone()
    expected = [2 * g + int(torch.argmax(importance[2][2 * g : 2 * g + 2])) for g in range(2)]
    prune_attention_heads(model, importance, heads_to_keep(4, 2, 0.5))
    attention = model.model.layers[2].self_attn
    assert attention.q_proj.weight.shape == (32, 64) and attention.o_proj.weight.shape == (64, 32)
    assert attention.k_proj.weight.shape == (32, 64)  # the key/value groups stay whole
    assert torch.equal(attention.q_proj.weight, torch.cat([original[h * 16 : (h + 1) * 16] for h in expected]))
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 2)
    logits = model(batch["input_ids"]).logits
    model.save_pretrained(tmp_path)  # a dense model that loads back as it is
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    assert torch.allclose(again(batch["input_ids"]).logits, logits, atol=1e-5)


def test_head_pruning_without_grouped_queries_cuts_whole_heads(tiny_llama_builder, tmp_path: Path) -> None:
    path = tiny_llama_builder(tmp_path / "mha", layers=2, seed=5)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    model.config.num_key_value_heads = 4  # rebuild as multi-head attention: one key/value per query head
    model = AutoModelForCausalLM.from_config(model.config).eval()
    batch = _batches(path)[0]
    prune_attention_heads(model, attention_head_importance(model, [batch]), heads_to_keep(4, 4, 0.25))
    attention = model.model.layers[0].self_attn
    assert attention.q_proj.out_features == attention.k_proj.out_features == attention.v_proj.out_features == 48
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (3, 3)
    model(batch["input_ids"])


def test_magnitude_pruning_zeroes_the_share_asked_for(tiny_deep_dir: Path) -> None:
    model = _model(tiny_deep_dir)
    assert magnitude_prune(model, 0.5) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: layers_to_drop([0.1, 0.2, 0.3], 3), "at least one stays"),
        (lambda: layers_to_drop([0.1, 0.2], 0), "between 1 and 1"),
        (lambda: width_to_keep(128, 1.0), "above 0 and below 1"),
        (lambda: heads_to_keep(9, 3, 0.9), "each key/value group's 3 query heads would leave no head.*at most 67%"),
        (lambda: heads_to_keep(4, 4, 0.9), "the 4 attention heads would leave no head"),
        (lambda: check_quant_mode("int3"), "supported: bf16, int8-weight, int8-dynamic, int4-weight"),
        (lambda: check_quant_mode("int4-weight", group_size=48), "group_size must be 32, 64, 128 or 256"),
        (lambda: check_quant_mode("int8-weight", "meta"), "runs on cpu or cuda"),
    ],
)
def test_impossible_compression_settings_say_what_is_possible(call, message: str) -> None:
    with pytest.raises(PromptLearningError, match=message):
        call()


def _task(tmp_path: Path, model: Path, **sections) -> Path:
    import yaml

    (tmp_path / "text.txt").write_text(TEXT)
    task = {"type": "compress", "name": "tiny", "model": str(model), "output_dir": str(tmp_path / "runs"),
            "calibration": {"files": [str(tmp_path / "text.txt")], "samples": 4, "block_size": 16},
            "evaluate": {"perplexity": str(tmp_path / "text.txt"), "max_chars": 2000, "max_length": 32},
            **sections}  # fmt: skip
    path = tmp_path / "compress.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def test_compress_prunes_recovers_quantizes_and_the_result_loads_everywhere(tmp_path: Path, tiny_deep_dir) -> None:
    from promptlearning.models import load_model
    from promptlearning.tasks import load_task, run_task

    config = load_task(_task(tmp_path, tiny_deep_dir, prune={"depth": 1, "width": 0.25, "heads": 0.5},
                             recover={"tokens": 256, "held_out": 2, "training": {"batch_size": 2, "eval_every": 2,
                                                                                  "log_with": None}},
                             quantize={"mode": "int8-weight"}))  # fmt: skip
    result = run_task(config)
    model_dir = result.run_dir / "model"
    record = json.loads((model_dir / "compression.json").read_text())
    assert [s["step"] for s in record["steps"]] == ["prune", "recover", "quantize"]
    assert len(record["steps"][0]["depth"]["dropped"]) == 1 and record["steps"][0]["width"] == {"from": 128, "to": 96}
    assert record["steps"][0]["heads"] == {"from": 4, "to": 2}
    recover = record["steps"][1]
    assert recover["steps"] == 8 and recover["val_kl_after"] <= recover["val_kl_before"]
    assert record["parameters"] < record["source"]["parameters"]
    assert record["bytes_on_disk"] < 0.5 * record["source"]["bytes"]  # int8 and a layer fewer
    assert record["quality"]["compressed"]["word_perplexity"] > 0
    assert result.metric == "word_perplexity" and (result.run_dir / "report.md").is_file()
    lm = load_model(model_dir, batch_size=2)  # what every task kind and `serve --model` use
    assert type(lm.model.lm_head).__name__ == "Int8WeightLinear" and lm.model.config.num_hidden_layers == 3
    scores = lm.loglikelihood([("the cat sat on", " the mat"), ("the cat sat on", " a dog")])
    assert all(s.logprob < 0 for s in scores)
    assert lm.generate(["the cat"])[0].text is not None


def test_a_bf16_compression_loads_in_bf16_unless_asked_otherwise(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from promptlearning.models import load_model
    from promptlearning.tasks import load_task, run_task

    config = load_task(_task(tmp_path, tiny_llama_dir, calibration=None, quantize={"mode": "bf16"}))
    result = run_task(config)
    assert result.metrics["size_ratio"] == pytest.approx(0.5, abs=0.01)
    assert load_model(result.run_dir / "model").model.dtype == torch.bfloat16
    assert load_model(result.run_dir / "model", dtype="float32").model.dtype == torch.float32


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"prune": None, "quantize": None}, "at least one step"),
        ({"recover": {"tokens": 10}, "quantize": {"mode": "bf16"}}, "recover distils a pruned model"),
        ({"prune": {}}, "prune needs depth"),
        ({"prune": {"width": 1.5}}, "less than 1"),
        ({"quantize": {"mode": "int2"}}, "int2"),
        ({"prune": {"depth": 1}, "calibration": None}, "add calibration"),
    ],
)
def test_bad_compress_tasks_are_refused_before_any_work(tmp_path: Path, tiny_llama_dir, sections, message) -> None:
    from promptlearning.tasks import load_task
    from promptlearning.tasks.config import TaskConfigError

    with pytest.raises((TaskConfigError, PromptLearningError), match=message):
        load_task(_task(tmp_path, tiny_llama_dir, **sections))


@pytest.mark.parametrize(
    ("prune", "message"), [({"depth": 2}, "at least one stays"), ({"heads": 0.8}, "would leave no head")]
)
def test_pruning_everything_away_is_refused_before_any_work(
    tmp_path: Path, tiny_llama_dir: Path, prune, message
) -> None:
    from promptlearning.tasks import load_task, run_task

    with pytest.raises(PromptLearningError, match=message):
        run_task(load_task(_task(tmp_path, tiny_llama_dir, prune=prune)))
    assert not (tmp_path / "runs" / "tiny" / "model").exists()


@pytest.mark.parametrize("mode", ["int8-dynamic", "int4-weight"])
def test_torchao_modes_are_applied_when_the_directory_loads(tmp_path: Path, tiny_llama_dir: Path, mode: str) -> None:
    pytest.importorskip("torchao")
    from promptlearning.models import load_model
    from promptlearning.tasks import load_task, run_task

    reference = load_model(tiny_llama_dir).loglikelihood([("the cat sat on", " the mat")])[0].logprob
    result = run_task(load_task(_task(tmp_path, tiny_llama_dir, calibration=None, quantize={"mode": mode})))
    lm = load_model(result.run_dir / "model")
    weight = lm.model.model.layers[0].mlp.up_proj.weight
    expected = {"int8-dynamic": "Int8Tensor", "int4-weight": "IntxUnpackedToInt8Tensor"}[mode]
    assert type(weight.data).__name__ == expected  # torchao's quantized tensor
    assert lm.loglikelihood([("the cat sat on", " the mat")])[0].logprob == pytest.approx(reference, rel=0.2)


def test_a_lora_program_is_merged_compressed_and_predicts_as_before(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from promptlearning.tasks import load_task, run_task
    from promptlearning.training.program import ProgramSpec, build_program, load_program

    spec = ProgramSpec(objective="pet", model=str(tiny_llama_dir), template={"input": "{{ text }} is"},
                       verbalizer={"label_words": {"bad": [" dog"], "good": [" cat"]}}, peft="lora",
                       peft_options={"r": 2})  # fmt: skip
    program = build_program(spec)
    with torch.no_grad():  # a trained-looking adapter: merging it must change the model
        for name, parameter in program.inner_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    program.save(tmp_path / "program")
    rows = [{"text": t, "label": "good" if i % 2 else "bad"} for i, t in enumerate(TEXT.splitlines()[:24])]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = _task(tmp_path, tmp_path / "program", calibration=None, prune={"magnitude": 0.01},
                 evaluate={"program_data": str(tmp_path / "data.jsonl")})  # fmt: skip
    result = run_task(load_task(task))
    quality = json.loads((result.run_dir / "model" / "compression.json").read_text())["quality"]["program"]
    assert quality["examples"] == 24 and quality["agreement"] == 1.0  # 1 % of the weights zeroed: same answers
    assert result.metric == "program_accuracy" and result.value == quality["compressed_accuracy"]
    compressed = load_program(result.run_dir / "program")
    source = load_program(tmp_path / "program")
    inputs = [{"text": r["text"]} for r in rows]
    assert [p.label for p in compressed.predict(inputs)] == [p.label for p in source.predict(inputs)]


def test_a_prompt_tuning_program_cannot_be_compressed(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from promptlearning.tasks import load_task, run_task
    from promptlearning.training.program import ProgramSpec, build_program

    spec = ProgramSpec(objective="pet", model=str(tiny_llama_dir), template={"input": "{{ text }} is"},
                       verbalizer={"label_words": {"bad": [" dog"], "good": [" cat"]}}, peft="prompt-tuning",
                       peft_options={"num_virtual_tokens": 2})  # fmt: skip
    build_program(spec).save(tmp_path / "program")
    with pytest.raises(PromptLearningError, match="no model weights"):
        run_task(load_task(_task(tmp_path, tmp_path / "program", calibration=None, quantize={"mode": "bf16"})))


def test_an_interrupted_compression_leaves_no_model_and_resumes_exactly(tmp_path: Path, tiny_deep_dir, monkeypatch):
    from safetensors.torch import load_file

    from promptlearning.compression.distill import Distillation
    from promptlearning.tasks import load_task, run_task

    recover = {"tokens": 256, "held_out": 2, "training": {"batch_size": 2, "eval_every": 2, "log_with": None}}
    config = load_task(_task(tmp_path, tiny_deep_dir, prune={"depth": 1}, recover=recover))
    forward, calls = Distillation.forward, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # during step 4, after the step-2 checkpoint
            raise KeyboardInterrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(Distillation, "forward", interrupted)
    run = tmp_path / "runs" / "tiny"
    with pytest.raises(KeyboardInterrupt):
        run_task(config)
    assert not (run / "model").exists() and any((run / "recover").rglob("*.safetensors"))
    monkeypatch.setattr(Distillation, "forward", forward)
    resumed = run_task(config, resume=True)
    record = json.loads((resumed.run_dir / "model" / "compression.json").read_text())
    assert record["steps"][1]["resumed_from"] == 2 and record["steps"][1]["steps"] == 8
    again = run_task(config, run_dir=tmp_path / "unbroken")
    first = load_file(str(resumed.run_dir / "model" / "model.safetensors"))
    second = load_file(str(again.run_dir / "model" / "model.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
