"""loglikelihood on tiny real transformers models: boundary handling, batching, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.models import LoglikelihoodRequest
from promptlearning.models.hf.causal import _scoring_rows
from promptlearning.models.hf.decoding import common_prefix_length

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "capital",
    "paris",
    "london",
    "great",
    "awful",
    "\n",
    ":",
    "!",
    "Fox",
]


def reference_logprobs(lm, context_ids: list[int], continuation_ids: list[int]) -> list[float]:
    """Unbatched, unpadded, full-logits forward: the straightforward way to score."""
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    start = len(context_ids)
    return [logprobs[start + i - 1, t].item() for i, t in enumerate(continuation_ids)]


def test_scores_equal_a_plain_forward_pass(tiny_lm):
    context, continuation = "the capital of france is", " paris"
    [result] = tiny_lm.loglikelihood([(context, continuation)])
    expected = reference_logprobs(tiny_lm, tiny_lm.encode(context), tiny_lm.encode(continuation))
    assert result.token_logprobs == pytest.approx(expected, abs=1e-5)
    assert result.logprob == pytest.approx(sum(expected), abs=1e-5)
    assert result.num_tokens == len(expected)


def test_tokens_of_context_and_continuation_reproduce_the_whole_string(tiny_lm):
    # "the cat" merges differently when split: the scored tokens must be the whole string's.
    for context, continuation in [("the ca", "t sat"), ("capit", "al"), ("the", " cat"), ("the cat ", "sat")]:
        prefix, cont = tiny_lm.split_request(LoglikelihoodRequest(context, continuation))
        assert prefix + cont == tiny_lm.encode(context + continuation)
        assert cont, "the continuation must keep at least one token"


def test_trailing_space_of_context_moves_to_continuation(tiny_lm):
    [a, b] = tiny_lm.loglikelihood([("the cat sat on the ", "mat"), ("the cat sat on the", " mat")])
    assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-6)


def test_bos_is_prepended_when_the_tokenizer_adds_it(tiny_lm_bos, tiny_lm):
    assert tiny_lm_bos.add_bos and not tiny_lm.add_bos
    prefix, _ = tiny_lm_bos.split_request(LoglikelihoodRequest("the cat", " sat"))
    assert prefix[0] == tiny_lm_bos.tokenizer.bos_token_id
    [result] = tiny_lm_bos.loglikelihood([("the cat", " sat")])
    expected = reference_logprobs(tiny_lm_bos, prefix, tiny_lm_bos.encode(" sat"))
    assert result.token_logprobs == pytest.approx(expected, abs=1e-5)


def test_missing_pad_token_is_filled_in(tiny_lm_bos):
    assert tiny_lm_bos.tokenizer.pad_token_id is not None


def test_empty_context_is_scored_after_a_start_token(tiny_lm):
    [result] = tiny_lm.loglikelihood([("", "the cat")])
    start = tiny_lm.tokenizer.bos_token_id
    expected = reference_logprobs(tiny_lm, [start], tiny_lm.encode("the cat"))
    assert result.token_logprobs == pytest.approx(expected, abs=1e-5)


def test_is_greedy_is_true_exactly_for_the_argmax_continuation(tiny_lm):
    context = "the capital of"
    ids = torch.tensor([tiny_lm.encode(context)])
    with torch.no_grad():
        top2 = tiny_lm.model(input_ids=ids).logits[0, -1].topk(2).indices.tolist()
    best, second = (tiny_lm.tokenizer.decode([t]) for t in top2)
    results = tiny_lm.loglikelihood([(context, best), (context, second)])
    assert [r.is_greedy for r in results] == [True, False]
    assert results[0].logprob > results[1].logprob


def test_duplicate_requests_get_identical_results_in_order(tiny_lm):
    requests = [("the cat", " sat"), ("the dog", " sat"), ("the cat", " sat")]
    results = tiny_lm.loglikelihood(requests)
    assert results[0] == results[2]
    assert results[0] != results[1]


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(WORDS), min_size=0, max_size=12).map(" ".join),
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(lambda w: " " + " ".join(w)),
        ),
        min_size=1,
        max_size=9,
    )
)
def test_batched_scores_equal_one_at_a_time(tiny_lm, pairs):
    batched = tiny_lm.loglikelihood(pairs, batch_size=4)
    single = [tiny_lm.loglikelihood([pair], batch_size=1)[0] for pair in pairs]
    for b, s in zip(batched, single, strict=True):
        assert b.token_logprobs == pytest.approx(s.token_logprobs, abs=1e-4)
        assert b.is_greedy == s.is_greedy


def test_batched_scores_equal_one_at_a_time_with_bos(tiny_lm_bos):
    pairs = [("the cat sat on the mat and", " the dog"), ("paris", " london"), ("", " great"), ("a", "!")]
    batched = tiny_lm_bos.loglikelihood(pairs, batch_size=4)
    for pair, b in zip(pairs, batched, strict=True):
        [s] = tiny_lm_bos.loglikelihood([pair], batch_size=1)
        assert b.token_logprobs == pytest.approx(s.token_logprobs, abs=1e-4)


def test_empty_request_list_is_an_error(tiny_lm):
    with pytest.raises(PromptLearningError, match="at least one request"):
        tiny_lm.loglikelihood([])


def test_empty_continuation_is_an_error(tiny_lm):
    with pytest.raises(PromptLearningError, match="empty continuation"):
        tiny_lm.loglikelihood([("the cat", "")])


def test_context_longer_than_the_model_is_a_clear_error(tiny_lm):
    long_context = " ".join(["the cat sat"] * 200)
    with pytest.raises(PromptTooLongError, match="maximum of 128"):
        tiny_lm.loglikelihood([(long_context, " mat")])


def test_count_tokens_includes_bos(tiny_lm, tiny_lm_bos):
    assert tiny_lm.count_tokens("the cat") == len(tiny_lm.encode("the cat"))
    assert tiny_lm_bos.count_tokens("the cat") == len(tiny_lm_bos.encode("the cat")) + 1
    assert tiny_lm.max_length == 128


DEMONSTRATIONS = (
    "review : great movie !\nsentiment : positive\n\nreview : awful .\nsentiment : negative\n\n"
    "review : i loved this film , the acting was wonderful\nsentiment : positive\n\n"
)
QUERIES = ["the story moved me", "a dull , tedious mess", "wonderful", "the cat sat on the mat and the dog"]


def few_shot_requests() -> list[tuple[str, str]]:
    contexts = [f"{DEMONSTRATIONS}review : {q}\nsentiment :" for q in QUERIES]
    words = [" positive", " negative", " great movie", " awful ."]  # single- and multi-token
    return [(c, w) for c in contexts for w in words]


@pytest.mark.parametrize("fixture", ["tiny_lm", "tiny_lm_bos"])
def test_shared_prefix_kv_reuse_equals_the_naive_path(request, fixture, monkeypatch):
    lm = request.getfixturevalue(fixture)
    requests = few_shot_requests()
    rows = _scoring_rows([lm.split_request(LoglikelihoodRequest(*r)) for r in requests])
    shared = common_prefix_length([tokens for tokens, _ in rows])
    assert shared > lm.min_shared_prefix, "the demonstrations must be long enough to be cached"
    calls = []
    prefill = lm._prefill
    monkeypatch.setattr(lm, "_prefill", lambda tokens: calls.append(len(tokens)) or prefill(tokens))
    cached = lm.loglikelihood(requests, batch_size=3)
    assert calls == [shared], "the shared prefix is computed once"
    monkeypatch.setattr(lm, "min_shared_prefix", 10**9)
    naive = [lm.loglikelihood([r], batch_size=1)[0] for r in requests]
    for c, n in zip(cached, naive, strict=True):
        assert c.token_logprobs == pytest.approx(n.token_logprobs, abs=1e-4)
        assert c.is_greedy == n.is_greedy


def test_single_token_continuations_of_one_context_share_a_forward_pass(tiny_lm, monkeypatch):
    forward = tiny_lm.model.forward
    calls = []
    monkeypatch.setattr(tiny_lm.model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    words = [w for w in (" the", " cat", " sat", " mat", " dog", " of") if len(tiny_lm.encode(w)) == 1]
    assert len(words) >= 3
    results = tiny_lm.loglikelihood([("the capital of", w) for w in words])
    assert len(calls) == 1
    monkeypatch.setattr(tiny_lm.model, "forward", forward)
    for word, result in zip(words, results, strict=True):
        [alone] = tiny_lm.loglikelihood([("the capital of", word)])
        assert result.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-5)


@pytest.mark.parametrize(
    ("fixture", "instruction"),
    [("tiny_lm", ""), ("tiny_lm_bos", ""), ("tiny_lm", "say how the two marked things in the sentence relate .\n")],
)
def test_multi_token_words_of_one_context_share_its_prefill(request, fixture, instruction, monkeypatch):
    """Contexts, each scored with several multi-token words: each context is prefilled once (all but
    its last token) and its words run on its cache — also when an instruction starts every context
    (a shared prefix that would save fewer tokens); results equal the naive path."""
    lm = request.getfixturevalue(fixture)
    contexts = [f"{instruction}sentence : {q} , and nothing else was said about it at all\nrelation :" for q in QUERIES]
    words = [" e1 causes e2", " e2 is a part of e1", " they are not related", " positive"]
    requests = [(c, w) for c in reversed(contexts) for w in words]
    if instruction:
        rows = _scoring_rows([lm.split_request(LoglikelihoodRequest(*r)) for r in requests])
        assert common_prefix_length([tokens for tokens, _ in rows]) > lm.min_shared_prefix
    calls = []
    prefill = lm._prefill
    monkeypatch.setattr(lm, "_prefill", lambda tokens: calls.append(len(tokens)) or prefill(tokens))
    grouped = lm.loglikelihood(requests, batch_size=2)
    context_lengths = sorted(len(lm.split_request(LoglikelihoodRequest(c, words[0]))[0]) - 1 for c in contexts)
    assert sorted(calls) == context_lengths, "one prefill per context"
    monkeypatch.setattr(lm, "min_shared_prefix", 10**9)
    naive = [lm.loglikelihood([r], batch_size=1)[0] for r in requests]
    for g, n in zip(grouped, naive, strict=True):
        assert g.token_logprobs == pytest.approx(n.token_logprobs, abs=1e-4)
        assert g.is_greedy == n.is_greedy
