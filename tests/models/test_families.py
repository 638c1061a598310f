"""Masked LMs (cloze scoring) and encoder-decoders (T5, BART) behind the same interface as causal LMs.

Each family's scores are checked against a plain forward pass of the model written out by hand,
batched against one at a time, and through the prompt classifier (zero-shot and in-context).
"""

from __future__ import annotations

import pytest
import torch

from promptlearning.errors import UnsupportedOperationError
from promptlearning.methods import PromptClassifier
from promptlearning.models import GenerationConfig, LoglikelihoodRequest, load_model
from promptlearning.models.hf import model_family
from promptlearning.models.hf.masked import HFMaskedLM
from promptlearning.models.hf.seq2seq import HFSeq2SeqLM
from promptlearning.prompts import PromptTemplate, Verbalizer

PAIRS = [
    ("the capital of france is", " paris"),
    ("the capital of france is", " london"),
    ("the cat sat on the", " mat and the dog"),
    ("", " great"),
    ("review : great movie !\nsentiment :", " positive"),
]


@pytest.fixture(scope="module")
def models(tiny_mlm_dir, tiny_t5_dir, tiny_bart_dir, tiny_lm):
    return {
        "mlm": load_model(tiny_mlm_dir, batch_size=2),
        "t5": load_model(tiny_t5_dir, batch_size=2),
        "bart": load_model(tiny_bart_dir, batch_size=2),
        "causal": tiny_lm,
    }


@pytest.fixture(scope="module")
def mlm(models):
    return models["mlm"]


@pytest.fixture(scope="module", params=["t5", "bart"])
def seq2seq(request, models):
    return models[request.param]


def test_each_family_loads_as_its_own_model(mlm, seq2seq, tiny_lm, tiny_bert_dir):
    from transformers import AutoConfig

    assert isinstance(mlm, HFMaskedLM) and isinstance(seq2seq, HFSeq2SeqLM)
    assert model_family(AutoConfig.from_pretrained(tiny_bert_dir)) == "encoder"  # no LM head: embeddings only
    assert model_family(tiny_lm.model.config) == "causal"


def test_masked_scores_are_the_log_probabilities_at_the_masks(mlm):
    for context, continuation in PAIRS:
        [result] = mlm.loglikelihood([(context, continuation)])
        ids, start, target = mlm.masked_input(LoglikelihoodRequest(context, continuation))
        assert ids[start : start + len(target)] == [mlm.tokenizer.mask_token_id] * len(target)
        with torch.no_grad():
            logits = mlm.model(input_ids=torch.tensor([ids])).logits[0].float()
        expected = [torch.log_softmax(logits[start + i], -1)[t].item() for i, t in enumerate(target)]
        assert result.token_logprobs == pytest.approx(expected, abs=1e-5)


def test_a_suffix_is_read_by_masked_lms_and_refused_by_left_to_right_models(mlm, seq2seq, tiny_lm):
    with_suffix = LoglikelihoodRequest("the film was", " great", " and the story moved me .")
    without = LoglikelihoodRequest("the film was", " great")
    [a], [b] = mlm.loglikelihood([with_suffix]), mlm.loglikelihood([without])
    assert a.logprob != pytest.approx(b.logprob), "the text after the blank changes the score"
    for model in (seq2seq, tiny_lm):
        with pytest.raises(UnsupportedOperationError, match="left to right"):
            model.loglikelihood([with_suffix])


def test_seq2seq_scores_are_the_decoder_log_probabilities(seq2seq):
    for context, continuation in PAIRS:
        [result] = seq2seq.loglikelihood([(context, continuation)])
        encoder = seq2seq.tokens.prompt_ids(context)
        target = seq2seq.tokens.encode(continuation.lstrip())
        decoder = [*seq2seq.decoder_prefix, *target]
        with torch.no_grad():
            logits = seq2seq.model(input_ids=torch.tensor([encoder]), decoder_input_ids=torch.tensor([decoder])).logits
        logprobs = torch.log_softmax(logits[0].float(), -1)
        start = len(seq2seq.decoder_prefix) - 1
        expected = [logprobs[start + i, t].item() for i, t in enumerate(target)]
        assert result.token_logprobs == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("family", ["mlm", "t5", "bart"])
def test_batched_scores_equal_one_at_a_time(family, models):
    model = models[family]
    batched = model.loglikelihood(PAIRS, batch_size=3)
    for pair, result in zip(PAIRS, batched, strict=True):
        [alone] = model.loglikelihood([pair], batch_size=1)
        assert result.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-5)
        assert result.is_greedy == alone.is_greedy


def test_seq2seq_greedy_generation_equals_a_hand_written_decoder_loop(seq2seq):
    prompts = ["the cat sat on the", "the capital of france is paris and"]
    generations = seq2seq.generate(prompts, GenerationConfig(max_new_tokens=6))
    for prompt, generation in zip(prompts, generations, strict=True):
        decoder = list(seq2seq.decoder_prefix[:1])
        with torch.no_grad():
            for _ in range(6):
                logits = seq2seq.model(input_ids=torch.tensor([seq2seq.tokens.prompt_ids(prompt)]),
                                       decoder_input_ids=torch.tensor([decoder])).logits  # fmt: skip
                token = int(logits[0, -1].argmax())
                if token in seq2seq.eos_token_ids:
                    break
                decoder.append(token)
        generated = decoder[1:]
        if generated[: len(seq2seq.decoder_prefix) - 1] == seq2seq.decoder_prefix[1:]:
            generated = generated[len(seq2seq.decoder_prefix) - 1 :]
        assert generation.text == seq2seq.tokens.decode(generated)


def test_seq2seq_samples_are_seeded_and_independent_of_the_batch(seq2seq):
    config = GenerationConfig(max_new_tokens=6, temperature=1.0, seed=7)
    [alone] = seq2seq.generate(["the cat sat"], config)
    together = seq2seq.generate(["the dog", "the cat sat"], config)
    assert together[1] == alone
    samples = seq2seq.sample(["the cat sat"], config, n=3)[0]
    assert len(samples) == 3


def test_masked_lms_do_not_generate(mlm):
    with pytest.raises(UnsupportedOperationError, match="does not generate"):
        mlm.generate(["the cat"])


@pytest.mark.parametrize("family", ["mlm", "t5", "bart", "causal"])
def test_zero_shot_and_in_context_classification_work_on_every_family(family, models):
    model = models[family]
    template = PromptTemplate("review : {{ text }}\nsentiment :")
    verbalizer = Verbalizer({"negative": [" awful", " dull"], "positive": [" great", " wonderful"]})
    train = [{"text": "i loved this film", "label": "positive"}, {"text": "a dull mess", "label": "negative"}]
    test = [{"text": "the story moved me", "label": "positive"}, {"text": "tedious", "label": "negative"}]
    for options in ({}, {"method": "icl", "shots": 2, "selection": "balanced"}):
        evaluation = PromptClassifier(model, template, verbalizer, **options).fit(train).evaluate(test)
        assert evaluation.metrics["num_examples"] == 2
        assert all(sum(p.probabilities.values()) == pytest.approx(1.0) for p in evaluation.predictions)


def test_a_cloze_template_puts_the_blank_where_mask_is(mlm, tiny_lm):
    """``{{ mask }}`` marks the blank: a masked LM reads what follows it; a causal LM refuses."""
    template = PromptTemplate("{{ text }} . it was {{ mask }} , really .")
    verbalizer = Verbalizer({"negative": [" awful"], "positive": [" great"]})
    classifier = PromptClassifier(mlm, template, verbalizer).fit()
    [prediction] = classifier.predict([{"text": "i loved this film"}])
    requests = classifier.requests([{"text": "i loved this film"}])
    assert requests[0].suffix == " , really ." and requests[0].context.rstrip().endswith("it was")
    results = mlm.loglikelihood(requests)
    assert prediction.label_scores["positive"] == pytest.approx(results[1].logprob, abs=1e-5)
    with pytest.raises(UnsupportedOperationError, match="left to right"):
        PromptClassifier(tiny_lm, template, verbalizer).fit().predict([{"text": "i loved this film"}])
