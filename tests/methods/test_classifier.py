"""PromptClassifier on a tiny real model: scoring, ICL selection, the calibration and ordering wrappers, errors."""

from __future__ import annotations

import math

import pytest

from promptlearning.errors import PromptLearningError
from promptlearning.methods import Calibrated, Method, OrderingEnsemble, PromptClassifier
from promptlearning.methods.classifier import EmptyDataError
from promptlearning.models import load_model
from promptlearning.prompts import PromptTemplate, Verbalizer, VerbalizerError
from promptlearning.prompts.demonstrations import DemonstrationError

TRAIN = [
    {"text": "i loved this film", "label": "positive"},
    {"text": "the acting was wonderful", "label": "positive"},
    {"text": "great movie !", "label": "positive"},
    {"text": "a dull , tedious mess", "label": "negative"},
    {"text": "awful .", "label": "negative"},
    {"text": "it wasted two hours of my life", "label": "negative"},
]
TEST = [
    {"text": "the story moved me", "label": "positive"},
    {"text": "a tedious film", "label": "negative"},
    {"text": "wonderful acting", "label": "positive"},
]
TEMPLATE = PromptTemplate("review : {{ text }}\nsentiment :")
VERBALIZER = Verbalizer({"negative": [" negative", " awful ."], "positive": [" positive", " great movie"]})


def classifier(lm, **options) -> PromptClassifier:
    return PromptClassifier(lm, TEMPLATE, VERBALIZER, **options)


def test_zero_shot_scores_are_the_verbalizer_aggregate_of_loglikelihoods(tiny_lm):
    [prediction] = classifier(tiny_lm).fit().predict(TEST[:1])
    prompt = "review : the story moved me\nsentiment :"
    results = tiny_lm.loglikelihood([(prompt, w) for w in (" negative", " awful .", " positive", " great movie")])
    expected = {
        "negative": math.log(math.exp(results[0].logprob) + math.exp(results[1].logprob)),
        "positive": math.log(math.exp(results[2].logprob) + math.exp(results[3].logprob)),
    }
    assert prediction.label_scores == pytest.approx(expected, abs=1e-5)
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    assert prediction.label == max(expected, key=expected.get)


def test_icl_puts_the_same_demonstrations_before_every_example(tiny_lm):
    clf = classifier(tiny_lm, method="icl", shots=4, selection="balanced", seed=3).fit(TRAIN)
    predictions = clf.predict(TEST)
    assert all(p.demonstrations == clf.fixed_demonstrations for p in predictions)
    labels = [TRAIN[i]["label"] for i in clf.fixed_demonstrations]
    assert sorted(labels) == ["negative", "negative", "positive", "positive"]
    prompt = clf.prompt(TEST[0], clf.fixed_demonstrations)
    first = TRAIN[clf.fixed_demonstrations[0]]
    assert prompt.startswith(f"review : {first['text']}\nsentiment : {first['label']}\n\n")
    assert prompt.endswith("review : the story moved me\nsentiment :")


def test_icl_scores_with_kv_reuse_equal_the_naive_path(tiny_lm, monkeypatch):
    clf = classifier(tiny_lm, method="icl", shots=6, selection="random").fit(TRAIN)
    cached = clf.predict(TEST)
    monkeypatch.setattr(tiny_lm, "min_shared_prefix", 10**9)
    naive = clf.predict(TEST)
    for c, n in zip(cached, naive, strict=True):
        assert c.label_scores == pytest.approx(n.label_scores, abs=1e-4)


def test_knn_selects_nearest_demonstrations_per_example(tiny_lm, tiny_bert_dir):
    encoder = load_model(tiny_bert_dir)
    clf = classifier(tiny_lm, method="icl", shots=2, selection="knn", embedder=encoder).fit(TRAIN)
    queries = [TRAIN[1], TRAIN[4]]  # an example identical to a pool item has it as nearest
    predictions = clf.predict(queries)
    assert predictions[0].demonstrations[-1] == 1
    assert predictions[1].demonstrations[-1] == 4
    assert predictions[0].demonstrations != predictions[1].demonstrations


def test_calibration_makes_the_content_free_input_uniform(tiny_lm):
    clf = Calibrated(classifier(tiny_lm), content_free_inputs=["N/A"]).fit()
    [prediction] = clf.predict([{"text": "N/A"}])
    assert prediction.probabilities == pytest.approx({"negative": 0.5, "positive": 0.5})
    uncalibrated = classifier(tiny_lm).fit().predict([{"text": "N/A"}])[0]
    assert uncalibrated.probabilities != pytest.approx(prediction.probabilities)
    assert prediction.label_scores == pytest.approx(uncalibrated.label_scores)  # scores stay the model's


def test_knn_calibration_is_per_example(tiny_lm, tiny_bert_dir):
    encoder = load_model(tiny_bert_dir)
    clf = Calibrated(classifier(tiny_lm, method="icl", shots=2, selection="knn", embedder=encoder))
    predictions = clf.fit(TRAIN).predict(TEST)
    assert all(sum(p.probabilities.values()) == pytest.approx(1.0) for p in predictions)
    # one bias estimate per distinct set of demonstrations, each made with exactly those demonstrations
    assert set(clf._bias) == {tuple(p.demonstrations) for p in predictions}
    for prediction in predictions:
        demos = [prediction.demonstrations] * 3
        cf = clf.classifier.predict([{"text": t} for t in ("N/A", "", "[MASK]")], demonstrations=demos)
        bias = {k: sum(p.probabilities[k] for p in cf) / 3 for k in ("negative", "positive")}
        assert clf._bias[tuple(prediction.demonstrations)] == pytest.approx(bias, rel=1e-5)


def test_evaluate_reports_metrics_consistent_with_predictions(tiny_lm):
    evaluation = classifier(tiny_lm).fit().evaluate(TEST)
    correct = sum(p.label == ex["label"] for p, ex in zip(evaluation.predictions, TEST, strict=True))
    assert evaluation.metrics["accuracy"] == pytest.approx(correct / len(TEST))
    assert sum(map(sum, evaluation.metrics["confusion_matrix"]["matrix"])) == len(TEST)
    assert 0 <= evaluation.metrics["ece"] <= 1
    assert evaluation.metrics["examples_per_second"] > 0


def test_bad_inputs_are_clear_errors(tiny_lm):
    with pytest.raises(VerbalizerError, match="neutral"):
        classifier(tiny_lm).fit().evaluate([*TEST, {"text": "meh", "label": "neutral"}])
    with pytest.raises(EmptyDataError):
        classifier(tiny_lm).fit().evaluate([])
    with pytest.raises(EmptyDataError):
        classifier(tiny_lm, method="icl", shots=2).fit([])
    with pytest.raises(DemonstrationError, match="only 6 examples"):
        classifier(tiny_lm, method="icl", shots=7).fit(TRAIN)
    with pytest.raises(DemonstrationError, match="needs 3, has 2"):
        classifier(tiny_lm, method="icl", shots=6, selection="balanced").fit([*TRAIN[:5], TRAIN[0]])
    with pytest.raises(PromptLearningError, match="zero-shot takes no demonstrations"):
        classifier(tiny_lm, shots=2)
    with pytest.raises(PromptLearningError, match="unknown method"):
        classifier(tiny_lm, method="magic")
    with pytest.raises(PromptLearningError, match="fit"):
        classifier(tiny_lm).predict(TEST)


def test_long_inputs_are_shortened_to_fit(tiny_lm):
    template = PromptTemplate("review : {{ text }}\nsentiment :", shorten="text")
    clf = PromptClassifier(tiny_lm, template, VERBALIZER).fit()
    long_text = " ".join(["the cat sat on the mat"] * 60)
    [prediction] = clf.predict([{"text": long_text}])
    assert prediction.label in ("negative", "positive")
    assert tiny_lm.count_tokens(clf.prompt({"text": long_text})) <= tiny_lm.max_length


def test_batch_calibration_balances_the_mean_prediction(tiny_lm):
    predictions = Calibrated(classifier(tiny_lm), "batch", min_batch=3).fit().predict(TEST)
    raw = classifier(tiny_lm).fit().predict(TEST)
    bias = {label: sum(p.probabilities[label] for p in raw) / len(raw) for label in ("negative", "positive")}
    for calibrated, uncalibrated in zip(predictions, raw, strict=True):
        scaled = {k: uncalibrated.probabilities[k] / bias[k] for k in bias}
        total = sum(scaled.values())
        assert calibrated.probabilities == pytest.approx({k: v / total for k, v in scaled.items()})


def test_domain_calibration_uses_random_in_domain_words(tiny_lm):
    clf = Calibrated(classifier(tiny_lm, method="icl", shots=2), "domain").fit(TRAIN)
    words = {w for ex in TRAIN for w in ex["text"].split()}
    assert len(clf.content_free_inputs) == 20
    assert all(set(text.split()) <= words for text in clf.content_free_inputs)
    [prediction] = clf.predict(TEST[:1])
    assert sum(clf._bias[tuple(prediction.demonstrations)].values()) == pytest.approx(1.0)
    with pytest.raises(PromptLearningError, match="unknown calibration"):
        Calibrated(classifier(tiny_lm), "magic")


def test_wrappers_are_methods_and_compose(tiny_lm):
    ensemble = OrderingEnsemble(Calibrated(classifier(tiny_lm, method="icl", shots=2), "batch", min_batch=3), 2)
    assert isinstance(ensemble, Method) and isinstance(ensemble.classifier, Method)
    evaluation = ensemble.fit(TRAIN).evaluate(TEST)
    assert evaluation.metrics["num_examples"] == 3 and ensemble.labels == ["negative", "positive"]
    assert ensemble.template is TEMPLATE  # the wrapped classifier's attributes show through


def test_orderings_average_the_calibrated_distributions_of_permuted_demonstrations(tiny_lm):
    def calibrated():
        return Calibrated(classifier(tiny_lm, method="icl", shots=4), "batch", min_batch=3)

    ensemble = OrderingEnsemble(calibrated(), 3).fit(TRAIN)
    orders = ensemble.demonstration_orderings
    assert len(orders) == 3 and orders[0] == ensemble.fixed_demonstrations
    assert all(sorted(order) == sorted(orders[0]) for order in orders)
    predictions = ensemble.predict(TEST)
    singles = [calibrated().fit(TRAIN).predict(TEST, demonstrations=[order] * len(TEST)) for order in orders]
    for i, prediction in enumerate(predictions):
        mean = {k: sum(s[i].probabilities[k] for s in singles) / 3 for k in ("negative", "positive")}
        assert prediction.probabilities == pytest.approx(mean, abs=1e-6)
        assert prediction.label == max(mean, key=mean.__getitem__)


def test_orderings_need_fixed_demonstrations(tiny_lm, tiny_bert_dir):
    with pytest.raises(PromptLearningError, match="orderings"):
        OrderingEnsemble(classifier(tiny_lm), 2).fit(TRAIN)
    knn = classifier(tiny_lm, method="icl", shots=2, selection="knn", embedder=load_model(tiny_bert_dir))
    with pytest.raises(PromptLearningError, match="orderings"):
        OrderingEnsemble(knn, 2).fit(TRAIN)
    with pytest.raises(PromptLearningError, match="orderings must be"):
        OrderingEnsemble(classifier(tiny_lm), 0)


def test_batch_calibration_of_too_few_examples_falls_back_to_contextual(tiny_lm):
    """One example calibrated against itself is always 50/50: refuse to estimate from so little."""
    with pytest.warns(UserWarning, match="batch calibration needs at least 16"):
        [batch] = Calibrated(classifier(tiny_lm), "batch").fit().predict(TEST[:1])
    [contextual] = Calibrated(classifier(tiny_lm), "contextual").fit().predict(TEST[:1])
    assert batch.probabilities == pytest.approx(contextual.probabilities)
    assert batch.probabilities["positive"] != pytest.approx(0.5)


def test_a_single_example_or_a_string_is_not_a_list_of_examples(tiny_lm):
    clf = classifier(tiny_lm).fit()
    for wrong in ("a string", {"text": "a dict"}):
        with pytest.raises(PromptLearningError, match="wrap it in a list"):
            clf.predict(wrong)
    with pytest.raises(PromptLearningError, match="example 1 is a str"):
        clf.predict([{"text": "fine"}, "not a dict"])
    with pytest.raises(PromptLearningError, match="null"):
        clf.predict([{"text": None}])
