"""Every PEFT method trains through the PET objective and survives a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptlearning.training import ProgramSpec, TrainingArguments, build_program, load_program, train
from promptlearning.training.peft_methods import (
    PeftMethodError,
    adalora_orthogonality_penalty,
    method_names,
    peft_config,
    valid_options,
)

TEMPLATE = {"input": "review : {{ text }}\nsentiment :"}
VERBALIZER = {"label_words": {"negative": " negative", "positive": " positive"}}


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(PeftMethodError, match="unknown PEFT method 'loraa'.*lora.*prefix-tuning"):
        peft_config("loraa")


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(PeftMethodError, match=r"unknown option\(s\) \['rank'\].*valid options:.*lora_alpha"):
        peft_config("lora", {"rank": 8})
    assert "num_virtual_tokens" in valid_options("prompt-tuning")
    assert "task_type" not in valid_options("lora")


def test_prompt_tuning_starts_from_the_template_words(tiny_llama_dir: Path) -> None:
    spec = ProgramSpec(objective="pet", model=str(tiny_llama_dir), template=TEMPLATE, verbalizer=VERBALIZER,
                       peft="prompt-tuning")  # fmt: skip
    config = build_program(spec).inner_model.peft_config["default"]
    assert config.prompt_tuning_init == "TEXT"
    assert config.prompt_tuning_init_text == "review : \nsentiment :"


@pytest.mark.parametrize("options", [{}, {"init_weights": "zero"}])
def test_an_untrained_prefix_reads_as_the_template_words_written_before_the_input(
    tiny_llama_dir: Path, options: dict
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptlearning.training.peft_methods import apply_peft

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).eval()
    prefixed = apply_peft(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)), "prefix-tuning",
                          {"num_virtual_tokens": 7, **options}, init_text="review : sentiment",
                          tokenizer_dir=str(tiny_llama_dir)).eval()  # fmt: skip
    words = tokenizer.encode(" review : sentiment", add_special_tokens=False)
    prefix = (words * 7)[:7]  # the words repeated to the prefix's length
    text = tokenizer.encode(" the film was great", add_special_tokens=False)
    with torch.no_grad():
        logits = prefixed(input_ids=torch.tensor([text]), attention_mask=torch.ones(1, len(text))).logits[0]
        expected = reference(input_ids=torch.tensor([prefix + text])).logits[0, len(prefix) :]
    assert torch.allclose(logits, expected, atol=1e-4) == (not options)  # init_weights: peft's own start


@pytest.mark.parametrize("method", [None, *method_names()])
def test_method_trains_saves_and_reloads(method: str | None, tiny_llama_dir: Path, tmp_path: Path, make_rows) -> None:
    spec = ProgramSpec(
        objective="pet", model=str(tiny_llama_dir), template=TEMPLATE, verbalizer=VERBALIZER, peft=method
    )
    program = build_program(spec, total_steps=16, seed=0)
    trainable = sum(p.numel() for p in program.module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in program.module.parameters())
    assert 0 < trainable <= total
    if method is not None:
        assert trainable < total / 2  # only the method's parameters train
    data = make_rows(32, 0)
    features = program.encode(data)
    batch = program.featurizer.collate(features)
    with torch.no_grad():
        loss_before = program.module(**batch)["loss"].item()
    args = TrainingArguments(max_steps=16, eval_every=8, batch_size=8, learning_rate=0.02 if method else 2e-3)
    result = train(
        program.module, features, program.featurizer.collate,
        lambda _: {"accuracy": program.evaluate(data)["accuracy"]}, args, tmp_path / "run",
        progress=False, after_step=program.after_step,
    )  # fmt: skip
    with torch.no_grad():
        loss_after = program.module(**batch)["loss"].item()
    assert loss_after < loss_before
    assert result.best_metric == max(h["accuracy"] for h in result.history)

    program.save(tmp_path / "program")
    saved = sorted(p.name for p in (tmp_path / "program").rglob("*.safetensors"))
    assert saved == (["adapter_model.safetensors"] if method else ["weights.safetensors"])
    restored = load_program(tmp_path / "program")
    unlabelled = program.encode(data, with_label=False)
    torch.testing.assert_close(
        torch.stack(restored.logits(unlabelled)), torch.stack(program.logits(unlabelled)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("method", [None, "lora"])
def test_a_corrupt_program_is_reported(method: str | None, tiny_llama_dir: Path, tmp_path: Path) -> None:
    from promptlearning.errors import CorruptModelError

    spec = ProgramSpec(
        objective="pet", model=str(tiny_llama_dir), template=TEMPLATE, verbalizer=VERBALIZER, peft=method
    )
    build_program(spec).save(tmp_path)
    [weights] = tmp_path.rglob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CorruptModelError, match="could not"):
        load_program(tmp_path)
    (tmp_path / "program.json").write_text("{not json")
    with pytest.raises(CorruptModelError, match="not a valid program"):
        load_program(tmp_path)


def test_adalora_adds_its_orthogonality_penalty_to_the_pet_loss(tiny_llama_dir: Path, make_rows) -> None:
    spec = ProgramSpec(objective="pet", model=str(tiny_llama_dir), template=TEMPLATE, verbalizer=VERBALIZER,
                       peft="adalora")  # fmt: skip
    program = build_program(spec, total_steps=16, seed=0)
    batch = program.featurizer.collate(program.encode(make_rows(8, 0)))
    model = program.inner_model
    with torch.no_grad():
        penalty = adalora_orthogonality_penalty(model).item()
        program.module.train()
        train_loss = program.module(**batch)["loss"].item()
        program.module.eval()
        eval_loss = program.module(**batch)["loss"].item()
        # peft adds the same penalty to a loss the wrapped model computes itself
        lm_batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with_penalty = model(**lm_batch, labels=batch["input_ids"]).loss.item()
        without = model.base_model.model(**lm_batch, labels=batch["input_ids"]).loss.item()
    assert penalty > 0
    assert train_loss == pytest.approx(eval_loss + penalty, rel=1e-5)
    assert with_penalty - without == pytest.approx(penalty, rel=1e-4)


def test_transformers_notice_about_prefix_caches_is_not_shown() -> None:
    import logging

    import promptlearning.training.peft_methods  # noqa: F401  (installs the filter)

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        generic = logging.getLogger("transformers.utils.generic")
        generic.warning("`past_key_values`/`cache_params` are deprecated. Use `cache` instead.")
        generic.warning("another notice")
    finally:
        library.removeHandler(handler)
    assert seen == ["another notice"]
