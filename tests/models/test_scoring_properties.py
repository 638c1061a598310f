"""Property tests of ``loglikelihood`` around every token-boundary case.

Generated requests share prefixes shorter and longer than the cache threshold, end their contexts
in spaces and newlines (which move into the continuation), go through the chat template or not, and
continue with or without a leading space. Batched, prefix-cached scores must equal an unbatched,
uncached forward pass over the same tokens, and those tokens must be the whole string's.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlearning.models import LoglikelihoodRequest

WORDS = ["the", "cat", "sat", "on", "mat", "capital", "paris", "london", "great", "awful", ":", "!", "Fox"]
TAILS = ["", " ", "  ", "\n", "\n\n", " \n", "\t"]
words = st.lists(st.sampled_from(WORDS), min_size=0, max_size=6).map(" ".join)


def uncached(lm, prefix: list[int], continuation: list[int]) -> list[float]:
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([prefix + continuation])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    return [logprobs[len(prefix) + i - 1, t].item() for i, t in enumerate(continuation)]


@st.composite
def request_batches(draw):
    # a shared start of 0 to ~40 tokens: below, at and above the 16-token cache threshold
    shared = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=30)))
    chat = draw(st.booleans())
    requests = []
    for _ in range(draw(st.integers(1, 5))):
        context = shared + (" " if shared else "") + draw(words) + draw(st.sampled_from(TAILS))
        continuations = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["", " ", "\n"]), st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)
                ).map(lambda t: t[0] + " ".join(t[1])),
                min_size=1,
                max_size=3,
            )
        )
        requests += [(context, c) for c in continuations]
    return chat, requests


@pytest.mark.parametrize("fixture", ["tiny_lm", "tiny_lm_bos"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=request_batches(), batch_size=st.sampled_from([1, 3, 16]))
def test_cached_batched_scores_equal_uncached_single_scores(request, fixture, batch, batch_size):
    lm = request.getfixturevalue(fixture)
    chat, pairs = batch
    if chat:
        pairs = [(lm.apply_chat_template([{"role": "user", "content": c}]), x) for c, x in pairs]
    results = lm.loglikelihood(pairs, batch_size=batch_size)
    for (context, continuation), result in zip(pairs, results, strict=True):
        prefix, target = lm.split_request(LoglikelihoodRequest(context, continuation))
        assert lm.encode(context + continuation)[-len(target) :] == target  # the whole string's tokens
        assert result.token_logprobs == pytest.approx(uncached(lm, prefix, target), abs=1e-4)


def test_chat_context_whose_newline_joins_the_continuation(tiny_lm):
    """The reported crash: chat prompts end in a newline, which moves into every continuation, so
    all rows share the context and the continuation's first token; the cache must stop before it."""
    context = tiny_lm.apply_chat_template([{"role": "user", "content": "the capital of france is the cat sat on"}])
    assert context.endswith("\n") and len(tiny_lm.encode(context)) > tiny_lm.min_shared_prefix
    results = tiny_lm.loglikelihood([(context, "paris"), (context, "london")])
    for word, result in zip(["paris", "london"], results, strict=True):
        prefix, target = tiny_lm.split_request(LoglikelihoodRequest(context, word))
        assert len(target) >= 2  # newline + word
        assert result.token_logprobs == pytest.approx(uncached(tiny_lm, prefix, target), abs=1e-4)
