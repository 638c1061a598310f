"""Prompt ensembles and noisy-channel scoring on a tiny real model: the numbers they produce are
the ones their definitions give, and bad settings are refused before any model call."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptlearning.errors import PromptLearningError, UnsupportedOperationError
from promptlearning.methods import PromptClassifier
from promptlearning.methods.ensemble import PromptEnsemble
from promptlearning.methods.spec import ClassifierSpec, build_classifier
from promptlearning.prompts import PromptTemplate, Verbalizer

TRAIN = [
    {"text": "i loved this film", "label": "positive"},
    {"text": "a dull , tedious mess", "label": "negative"},
    {"text": "great movie !", "label": "positive"},
    {"text": "awful .", "label": "negative"},
]
TEST = [{"text": "the story moved me"}, {"text": "a tedious film"}, {"text": "wonderful acting"}]
WORDS = {"negative": " negative", "positive": " positive"}


def _spec(**fields) -> ClassifierSpec:
    return ClassifierSpec(**{"template": {"input": "review : {{ text }}\nsentiment :"}, "verbalizer": {"words": WORDS},
                             **fields})  # fmt: skip


# ----------------------------------------------------------------------------- channel scoring


def test_channel_scores_the_input_after_the_label_statement(tiny_lm) -> None:
    clf = build_classifier(_spec(scoring="channel"), tiny_lm).fit()
    requests = clf.requests(TEST[:1])
    assert [(r.context, r.continuation) for r in requests] == [
        ("sentiment : negative\nreview : ", "the story moved me"),
        ("sentiment : positive\nreview : ", "the story moved me"),
    ]
    [prediction] = clf.predict(TEST[:1])
    results = tiny_lm.loglikelihood(requests)
    assert prediction.label_scores == pytest.approx({"negative": results[0].logprob, "positive": results[1].logprob})
    expected = "positive" if results[1].logprob > results[0].logprob else "negative"
    assert prediction.label == expected


def test_channel_demonstrations_are_shown_label_first(tiny_lm) -> None:
    clf = build_classifier(_spec(scoring="channel", shots=2, selection="first", template={
        "input": "review : {{ text }}\nsentiment :", "instruction": "Reviews."}), tiny_lm).fit(TRAIN)  # fmt: skip
    [first, _] = clf.requests(TEST[:1])
    assert first.context == (
        "Reviews.\n\nsentiment : positive\nreview : i loved this film\n\nsentiment : negative\nreview : a dull , "
        "tedious mess\n\nsentiment : negative\nreview : "
    )


def test_channel_with_calibration_and_an_empty_input(tiny_lm) -> None:
    clf = build_classifier(_spec(scoring="channel", calibration="contextual"), tiny_lm).fit()
    predictions = clf.predict([*TEST, {"text": ""}])
    assert all(math.isclose(sum(p.probabilities.values()), 1.0) for p in predictions)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"template": {"input": "{{ premise }} ? {{ hypothesis }}"}}, "one input field"),
        ({"template": {"input": "{{ text }} It was {{ mask }}."}}, "plain template"),
        ({"template": {"input": "{{ text }}", "mode": "chat"}}, "plain template"),
        ({"verbalizer": {"words": WORDS, "word_score": "chars"}}, "word_score must be sum or mean"),
    ],
)
def test_channel_refuses_what_it_cannot_score(fields, words) -> None:
    with pytest.raises(PromptLearningError, match=words):
        _spec(scoring="channel", **fields)


def test_channel_on_an_embedding_model_is_a_clear_error(tiny_encoder_dir) -> None:
    from promptlearning.models import load_model

    encoder = load_model(tiny_encoder_dir)
    with pytest.raises(UnsupportedOperationError):
        build_classifier(_spec(scoring="channel"), encoder).fit().predict(TEST[:1])


# ----------------------------------------------------------------------------- ensembles

TWO = [{}, {"template": {"input": "text : {{ text }}\nopinion :"}, "calibration": "batch"}]


def test_an_ensemble_averages_its_members_log_probabilities(tiny_lm) -> None:
    ensemble = build_classifier(_spec(ensemble=TWO), tiny_lm).fit()
    assert isinstance(ensemble, PromptEnsemble) and len(ensemble.members) == 2
    members = [build_classifier(member, tiny_lm).fit() for member in _spec(ensemble=TWO).members()]
    runs = [m.predict(TEST) for m in members]
    for i, prediction in enumerate(ensemble.predict(TEST)):
        log_p = {x: np.mean([math.log(run[i].probabilities[x]) for run in runs]) for x in WORDS}
        total = sum(math.exp(v) for v in log_p.values())
        assert prediction.probabilities == pytest.approx({x: math.exp(v) / total for x, v in log_p.items()})
        assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.__getitem__)


def test_ensemble_weights_and_agreement(tiny_lm) -> None:
    weighted = [{**TWO[0], "weight": 1.0}, {**TWO[1], "weight": 0.0}]
    only_first = build_classifier(_spec(ensemble=weighted), tiny_lm).fit().predict(TEST)
    first = build_classifier(_spec(), tiny_lm).fit().predict(TEST)
    for a, b in zip(only_first, first, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities)
    agreement = build_classifier(_spec(ensemble=TWO, ensemble_weighting="agreement"), tiny_lm).fit()
    assert len(agreement.predict(TEST)) == 3
    log_p = np.log(np.array([[[0.9, 0.1], [0.8, 0.2]], [[0.2, 0.8], [0.3, 0.7]], [[0.6, 0.4], [0.7, 0.3]]]))
    weights = agreement.member_weights(log_p)  # members 0 and 2 agree with the majority, member 1 never
    assert weights[0] == weights[2] > weights[1] and weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("ensemble", "words"),
    [
        ([{"verbalizer": {"words": {"bad": " bad", "good": " good"}}}], "same labels"),
        ([{"weight": 1.0}, {}], "a weight, or none"),
        ([{"template": {"input": "{{ text }}"}, "bogus": 1}], "bogus"),
    ],
)
def test_bad_ensembles_are_refused(ensemble, words) -> None:
    with pytest.raises(Exception, match=words):
        _spec(ensemble=ensemble)


def test_prompt_ensemble_checks_its_members(tiny_lm) -> None:
    template = PromptTemplate("{{ text }}")
    a = PromptClassifier(tiny_lm, template, Verbalizer(WORDS))
    b = PromptClassifier(tiny_lm, template, Verbalizer({"x": " x", "y": " y"}))
    with pytest.raises(PromptLearningError, match="at least one member"):
        PromptEnsemble([])
    with pytest.raises(PromptLearningError, match="same labels"):
        PromptEnsemble([a, b])
    with pytest.raises(PromptLearningError, match="2 members"):
        PromptEnsemble([a, a], weights=[1.0])
    with pytest.raises(PromptLearningError, match="not all 0"):
        PromptEnsemble([a, a], weights=[0.0, 0.0])


def test_a_frozen_bias_calibrates_without_estimating(tiny_lm) -> None:
    bias = {"negative": 0.8, "positive": 0.2}
    frozen = build_classifier(_spec(calibration="batch", bias=bias), tiny_lm).fit().predict(TEST[:1])
    raw = build_classifier(_spec(), tiny_lm).fit().predict(TEST[:1])
    scaled = {x: raw[0].probabilities[x] / bias[x] for x in WORDS}
    total = sum(scaled.values())
    assert frozen[0].probabilities == pytest.approx({x: v / total for x, v in scaled.items()})
    with pytest.raises(PromptLearningError, match="needs a calibration"):
        _spec(bias=bias)
    with pytest.raises(PromptLearningError, match="labels"):
        _spec(calibration="batch", bias={"negative": 1.0})


def test_members_requests_go_to_the_model_in_one_call(tiny_lm) -> None:
    class Counting:
        """The tiny model, counting its loglikelihood calls and requests."""

        def __init__(self, model) -> None:
            self.model, self.calls, self.requests = model, 0, 0

        def __getattr__(self, name):
            return getattr(self.__dict__["model"], name)

        def loglikelihood(self, requests, **options):
            self.calls, self.requests = self.calls + 1, self.requests + len(requests)
            return self.model.loglikelihood(requests, **options)

    model = Counting(tiny_lm)
    same_prompt = [{}, {"verbalizer": {"words": {"negative": " bad", "positive": " positive"}}}]
    predictions = build_classifier(_spec(ensemble=same_prompt), model).fit().predict(TEST)
    assert model.calls == 1 and model.requests == 3 * 3  # " positive" is asked by both members: scored once
    assert len(predictions) == 3
