"""The PET objective reads the right position: batched, right-padded and soft-prompted alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptlearning.errors import PromptLearningError
from promptlearning.prompts.verbalizer import VerbalizerError
from promptlearning.training import ProgramSpec, build_program
from promptlearning.training.pet import LabelWordError

TEMPLATE = {"input": "review : {{ text }}\nsentiment :"}
VERBALIZER = {"label_words": {"negative": [" negative", " bad"], "positive": " positive"}}
TEXTS = ["the film was great", "it was dull and tedious , a mess that wasted my life", "good"]


def _spec(model_dir: Path, **kwargs) -> ProgramSpec:
    return ProgramSpec(**{"objective": "pet", "model": str(model_dir), "template": TEMPLATE, "verbalizer": VERBALIZER,
                          **kwargs})  # fmt: skip


def _next_token_logprobs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return logits.float()


@pytest.mark.parametrize("method", [None, "prompt-tuning", "prefix-tuning", "lora"])
def test_label_logits_equal_the_unbatched_next_token_logits(method, tiny_llama_dir: Path) -> None:
    program = build_program(_spec(tiny_llama_dir, peft=method), seed=3)
    if method is not None:  # make the method's parameters matter (fresh LoRA is a no-op)
        torch.manual_seed(0)
        for p in program.module.parameters():
            if p.requires_grad:
                p.data.add_(0.5 * torch.randn_like(p))
    features = program.encode([{"text": t} for t in TEXTS], with_label=False)
    batched = torch.stack(program.logits(features, batch_size=2))  # batches by length: the 2nd text first
    tokens = program.featurizer.label_token_ids
    for row, feature in zip(batched, features, strict=True):
        logits = _next_token_logprobs(program.inner_model, feature["input_ids"])
        expected = torch.stack([torch.logsumexp(logits[ids], 0) for ids in tokens])
        torch.testing.assert_close(row, expected, rtol=1e-4, atol=1e-4)


def test_masked_lm_reads_the_mask_position(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import shutil

    from transformers import BertConfig, BertForMaskedLM

    directory = tmp_path / "bert-mlm"
    shutil.copytree(tiny_bert_dir, directory)
    config = BertConfig.from_pretrained(directory)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(directory)
    spec = ProgramSpec(objective="pet", model=str(directory), template={"input": "{{ text }} . it was {{ mask }} ."},
                       verbalizer={"label_words": {"negative": "bad", "positive": "great"}})  # fmt: skip
    program = build_program(spec)
    assert program.featurizer.masked
    [feature] = program.encode([{"text": "the acting was wonderful", "label": "positive"}])
    ids = feature["input_ids"]
    assert ids[feature["answer_index"]] == program.tokenizer.mask_token_id
    with torch.no_grad():
        vocab = program.inner_model(input_ids=torch.tensor([ids])).logits[0, feature["answer_index"]]
    [row] = program.logits([feature])
    torch.testing.assert_close(row, vocab[[t[0] for t in program.featurizer.label_token_ids]], rtol=1e-5, atol=1e-5)
    # without {{ mask }} in the template the mask goes where the answer would
    appended = build_program(ProgramSpec(**{**spec.__dict__, "template": {"input": "{{ text }} . it was"}}))
    assert appended.featurizer.prompt({"text": "fine"}).endswith("it was [MASK]")


def test_label_words_sharing_a_first_token_are_refused(tiny_llama_dir: Path) -> None:
    spec = _spec(tiny_llama_dir)
    spec.verbalizer = {"label_words": {"a": " positive", "b": " positive!"}}
    with pytest.raises(LabelWordError, match="same token"):
        build_program(spec)


def test_a_label_missing_from_the_verbalizer_is_an_error(tiny_llama_dir: Path) -> None:
    program = build_program(_spec(tiny_llama_dir))
    with pytest.raises(VerbalizerError, match=r"\['neutral'\] have no words"):
        program.encode([{"text": "fine", "label": "neutral"}])


def test_a_prompt_is_shortened_to_max_length_or_refused(tiny_llama_dir: Path) -> None:
    long_text = " ".join(["wonderful"] * 200)
    program = build_program(_spec(tiny_llama_dir, max_length=40))
    with pytest.raises(PromptLearningError, match="names no field to shorten"):
        program.encode([{"text": long_text, "label": "positive"}])
    program = build_program(_spec(tiny_llama_dir, max_length=40, template={**TEMPLATE, "shorten": "text"}))
    [feature] = program.encode([{"text": long_text, "label": "positive"}])
    assert len(feature["input_ids"]) <= 40
    assert program.featurizer.prompt({"text": long_text}).endswith("\nsentiment :")


def test_generation_with_a_trained_soft_prompt(tiny_llama_dir: Path) -> None:
    program = build_program(_spec(tiny_llama_dir, peft="prompt-tuning"))
    [text] = program.generate(["review : great\nsentiment :"], max_new_tokens=4)
    assert isinstance(text, str) and text


def test_encoder_decoders_read_the_answer_from_the_first_decoder_step(tiny_t5_dir: Path) -> None:
    program = build_program(_spec(tiny_t5_dir, peft="lora", peft_options={"r": 2, "target_modules": ["q", "v"]}))
    assert program.featurizer.family == "seq2seq"
    [feature] = program.encode([{"text": "the film was great", "label": "positive"}])
    decoder = program.module.decoder_prefix.tolist()
    with torch.no_grad():
        logits = program.inner_model(input_ids=torch.tensor([feature["input_ids"]]),
                                     decoder_input_ids=torch.tensor([decoder])).logits[0, -1].float()  # fmt: skip
    expected = torch.stack([torch.logsumexp(logits[ids], 0) for ids in program.featurizer.label_token_ids])
    [row] = program.logits([feature])
    torch.testing.assert_close(row, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("model", "method"), [("llama", "lora"), ("llama", "prompt-tuning"), ("llama", None),
                                               ("mlm", "lora"), ("t5", "lora")])  # fmt: skip
def test_a_pet_program_reads_as_a_language_model_backed_classifier(model, method, request) -> None:
    """The same predictions from the PET module and from a PromptClassifier over the program's model."""
    fixtures = {"llama": "tiny_llama_dir", "mlm": "tiny_mlm_dir", "t5": "tiny_t5_dir"}
    directory = request.getfixturevalue(fixtures[model])
    options = (
        {"r": 2, "target_modules": ["q", "v"] if model == "t5" else ["query", "value"]} if model != "llama" else {}
    )
    spec = _spec(directory, peft=method, peft_options=options if method == "lora" else {})
    if model != "llama":
        spec.verbalizer = {"label_words": {"negative": ["awful", "bad"], "positive": "great"}}
    program = build_program(spec)
    examples = [{"text": text} for text in TEXTS]
    direct = program.predict(examples)
    through_lm = program.as_classifier().predict(examples)
    for a, b in zip(direct, through_lm, strict=True):
        assert a.label == b.label
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
