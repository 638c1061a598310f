"""Prompt search on a tiny random model: stages, budget, cache, the saved task, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from promptlearning.cli import main
from promptlearning.errors import PromptLearningError
from promptlearning.methods.classifier import PromptClassifier
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.search import ScoreCache, SearchSettings, search, write_search
from promptlearning.search.demonstrations import candidate_sets
from promptlearning.search.label_words import propose_label_words, rank_assignments
from promptlearning.search.run import search_report
from promptlearning.search.scoring import probabilities
from promptlearning.search.templates import split_seed, template_families
from promptlearning.tasks import load_task, run_task
from promptlearning.training import load_program

REVIEWS = Path(__file__).parents[2] / "src" / "promptlearning" / "data" / "movie_reviews"


@pytest.fixture
def search_task(tmp_path, tiny_llama_dir) -> Path:
    config = {
        "name": "tiny-reviews",
        "data": {"root": str(REVIEWS), "train": "train.jsonl", "eval": "test.jsonl", "eval_limit": 24},
        "model": str(tiny_llama_dir),
        "template": {"input": "Review: {{ text }}\nSentiment:", "shorten": "text"},
        "verbalizer": {"words": {"negative": " bad", "positive": " good"}},
        "output_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_search_scores_the_seed_prompt_as_the_classifier_does(search_task, tiny_lm):
    config = load_task(search_task)
    settings = SearchSettings(dev_size=20, stages=("words",), budget=20)
    result = search(config, tiny_lm, settings, progress=False)
    assert result.spent == 20 and result.candidates
    seed = next(c for c in result.candidates if c.words == {"negative": [" bad"], "positive": [" good"]}
                and c.calibration == "none")  # fmt: skip
    # the same 20 dev examples (seeded sample of train), classified by the ordinary classifier
    from promptlearning.loading import load_examples

    train = load_examples(REVIEWS / "train.jsonl")
    import random

    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    dev = [train[i] for i in order[:20]]
    clf = PromptClassifier(tiny_lm, PromptTemplate("Review: {{ text }}\nSentiment:"),
                           Verbalizer({"negative": " bad", "positive": " good"})).fit()  # fmt: skip
    expected = np.mean([p.label == ex["label"] for p, ex in zip(clf.predict(dev), dev, strict=True)])
    assert seed.dev_score == pytest.approx(expected)


@pytest.mark.parametrize("calibration", ["contextual", "batch"])
def test_the_seed_prompt_is_scored_with_its_own_calibration(search_task, tiny_lm, calibration):
    """The task's prompt with contextual (or batch) calibration: seed_dev is what the task's own
    classifier scores on the same dev examples, and every calibration kind is among the candidates."""
    from promptlearning.tasks.classification.run import build_classifier

    config = load_task(search_task, ["method.calibrate=true", f"method.calibration={calibration}"])
    result = search(config, tiny_lm, SearchSettings(dev_size=20, stages=("words",), budget=20), progress=False)
    assert {c.calibration for c in result.candidates} == {"none", "batch", "contextual"}
    classifier = build_classifier(config, tiny_lm).fit(result.pool)
    predictions = classifier.predict(result.dev)
    expected = np.mean([p.label == ex["label"] for p, ex in zip(predictions, result.dev, strict=True)])
    assert result.seed_dev == pytest.approx(expected)
    # the first candidate is the task's own prompt as it runs: on a tie it stays the winner
    first = result.candidates[0]
    assert (first.template, first.calibration, first.dev_score) == (config.template.model_dump(), calibration,
                                                                    result.seed_dev)  # fmt: skip
    with pytest.raises(PromptLearningError, match="needs the content-free distribution"):
        probabilities(np.zeros((2, 2)), "contextual")


def test_a_full_search_writes_a_runnable_task_and_reuses_cached_scores(search_task, tiny_lm, tmp_path):
    config = load_task(search_task)
    cache_file = tmp_path / "scores.jsonl"
    settings = SearchSettings(dev_size=16, budget=16 * 8, shots=2, demo_sets=2, cache=cache_file, adopt="always",
                              ensemble=1)  # fmt: skip
    result = search(config, tiny_lm, settings, progress=False)
    assert result.spent <= result.budget
    assert {c.stage for c in result.candidates} == {"words", "templates", "channel", "demonstrations"}
    # adopt always: the best of the finalists (the task's own prompt and the best on dev) on fresh examples
    assert result.confirm_size == 16 and result.best.confirm_score == max(c.confirm_score for c in result.finalists)
    task_file = write_search(tmp_path / "out", config, result)
    saved = load_task(task_file)
    assert saved.template.model_dump() == result.best.template and saved.shots == len(result.best.demonstrations)
    assert run_task(saved, model=tiny_lm, write=False, progress=False).num_examples == 24
    # the winner as a prompt program: its frozen bias is dev's mean distribution, so on dev it
    # predicts exactly as the search scored it
    program = load_program(tmp_path / "out" / "program")
    assert program.spec.objective == "prompt" and len(program.spec.demonstrations) == len(result.best.demonstrations)
    assert program.spec.max_length == 512 + 256 * len(program.spec.demonstrations)  # served prompts stay bounded
    frozen = program.spec.classifier["bias"]  # the calibration, frozen into the classifier spec
    assert (frozen is not None) == (result.best.calibration != "none")
    assert program.evaluate(result.dev)["accuracy"] == pytest.approx(result.best.dev_score)
    report = json.loads((tmp_path / "out" / "search.json").read_text())
    assert len(report["candidates"]) == len(result.candidates)
    # a second search with the same cache file sends nothing new to the model
    cache = ScoreCache(tiny_lm, config.model, cache_file)
    assert cache.results
    again = search(config, tiny_lm, SearchSettings(dev_size=16, budget=16 * 8, shots=2, demo_sets=2, adopt="always",
                                                   ensemble=1, cache=cache_file), progress=False)  # fmt: skip
    assert [c.dev_score for c in again.candidates] == [c.dev_score for c in result.candidates]


def test_cli_search(search_task, tmp_path, capsys):
    code = main(["search", str(search_task), "--dev-size", "16", "--budget", "48", "--stages", "words,templates",
                 "--output-dir", str(tmp_path / "s"), "--no-progress"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "dev accuracy: best candidate" in out and "the task's own prompt" in out and "confirmation: " in out
    directory = tmp_path / "s" / "tiny-reviews-search"
    assert {"task.yaml", "search.json", "search.md", "scores.jsonl", "runs"} <= {p.name for p in directory.iterdir()}
    assert "test.jsonl: the output (" in out
    predictions = tmp_path / "predictions.jsonl"
    assert main(["predict", str(directory / "program"), str(REVIEWS / "test.jsonl"), "-o", str(predictions)]) == 0
    assert "labelled examples" in capsys.readouterr().err
    assert len(predictions.read_text().splitlines()) == len((REVIEWS / "test.jsonl").read_text().splitlines())


def test_search_bad_input(search_task, tiny_lm, tmp_path, capsys):
    config = load_task(search_task)
    with pytest.raises(PromptLearningError, match=r"budget \(10 dev prompts\) is smaller than one candidate \(16"):
        search(config, tiny_lm, SearchSettings(dev_size=16, budget=10), progress=False)
    with pytest.raises(PromptLearningError, match="list of candidate templates is empty"):
        search(config, tiny_lm, SearchSettings(dev_size=16, templates=[]), progress=False)
    empty = tmp_path / "templates.yaml"
    empty.write_text("")
    assert main(["search", str(search_task), "--templates", str(empty), "--no-test"]) == 2
    assert "list of candidate templates is empty" in capsys.readouterr().err
    with pytest.raises(PromptLearningError, match="unknown search stage"):
        search(config, tiny_lm, SearchSettings(stages=("labels",)), progress=False)


def test_a_small_training_file_gives_half_to_dev(search_task, tiny_lm):
    config = load_task(search_task)  # 120 training rows, the default dev size is 200
    with pytest.warns(UserWarning, match="120 examples: 60 of them are the dev sample"):
        result = search(config, tiny_lm, SearchSettings(stages=("words",), budget=60), progress=False)
    # the confirmation (by default as large as dev) is bounded by the data: the pool keeps as many
    assert result.dev_size == 60 and result.confirm_size == 30 and len(result.pool) == 30


def test_label_word_proposals_and_assignments(tiny_lm):
    prompts = [f"Review: {t}\nSentiment:" for t in ["great fun", "a bore", "loved it", "awful"]]
    proposed = propose_label_words(tiny_lm, prompts, ["neg", "pos"], ["pos", "neg", "pos", "neg"], per_class=3)
    assert set(proposed) == {"neg", "pos"} and all(len(w) <= 3 for w in proposed.values())
    words = [w for ws in proposed.values() for w in ws]
    assert len(words) == len(set(words))  # a word serves one label
    assert all(w.startswith(" ") and w[1:].isalpha() for w in words)
    scores = np.array([[0.0, -5.0, -1.0], [-5.0, 0.0, -1.0]])
    ranked = rank_assignments(scores, [[0, 2], [1, 2]], np.array([0, 1]), keep=2, calibrate=False)
    assert ranked[0] == (1.0, (0, 1))


def test_templates_and_demonstration_sets():
    assert split_seed("Review: {{ text }}\nSentiment:", ["text"]) == ("Review: {{ text }}", "Sentiment")
    assert split_seed("{{ text }}", ["text"]) == ("{{ text }}", "Answer")
    families = template_families({"input": "Review: {{ text }}\nSentiment:"}, ["text"], [" bad", " good"])
    assert families[0] == {"input": "Review: {{ text }}\nSentiment:"} and len(families) > 20
    assert all("{{ text }}" in t["input"] for t in families)
    assert any("Options: bad, good" in t["input"] + t.get("instruction", "") for t in families)
    gold = ["a", "b"] * 10
    sets = candidate_sets(gold, [i < 4 for i in range(20)], k=2, n=4, seed=1)
    assert len(sets) == 4 and all(sorted(gold[i] for i in s) == ["a", "b"] for s in sets)
    assert all(i < 4 for i in sets[0] + sets[1])  # the first half is bootstrapped from correct examples


def test_dev_metrics_follow_the_task_metric():
    from promptlearning.search.scoring import dev_metric

    labels = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other"]
    gold = np.array([0, 0, 1, 2, 2, 2])
    p = np.eye(3)[[0, 2, 1, 2, 2, 2]]  # one Cause-Effect(e1,e2) missed as Other
    assert dev_metric("accuracy", labels)(p, gold) == pytest.approx(5 / 6)
    # macro-F1 over all three labels: (2/3 + 1 + 6/7) / 3
    assert dev_metric("macro_f1", labels)(p, gold) == pytest.approx((2 / 3 + 1 + 6 / 7) / 3)
    # SemEval: Other is not a class and the two directions are one: Cause-Effect P = 2/2, R = 2/3 -> F1 0.8
    assert dev_metric("semeval_macro_f1", labels)(p, gold) == pytest.approx(0.8)


def test_finalists_are_compared_on_a_fresh_confirmation_sample(search_task, tiny_lm, tmp_path):
    """The task's own prompt and the best on dev are scored on examples neither dev nor the pool hold;
    the best there wins, and the seed's confirmation score is what its own classifier scores there."""
    from promptlearning.tasks.classification.run import build_classifier

    config = load_task(search_task)
    settings = SearchSettings(dev_size=16, confirm_size=20, finalists=3, stages=("words", "templates"),
                              budget=16 * 5)  # fmt: skip
    result = search(config, tiny_lm, settings, progress=False)
    assert result.confirm_size == 20 and len(result.confirm) == 20
    texts = lambda rows: {r["text"] for r in rows}  # noqa: E731
    assert not texts(result.confirm) & texts(result.dev) and not texts(result.confirm) & texts(result.pool)
    assert len(result.dev) + len(result.confirm) + len(result.pool) == 120
    seed, *others = result.finalists
    assert seed is result.seed and seed.template == config.template.model_dump() and len(others) == 3
    assert [c.dev_score for c in others] == sorted((c.dev_score for c in others), reverse=True)
    assert len({c.config_key() for c in result.finalists}) == 4
    assert result.adoption is not None and result.adoption.n == 20
    assert (result.output == "own") == (not result.adoption.adopted)
    assert result.spent <= result.budget
    classifier = build_classifier(config, tiny_lm).fit(result.pool)
    own = np.mean([p.label == ex["label"] for p, ex in zip(classifier.predict(result.confirm), result.confirm,
                                                            strict=True)])  # fmt: skip
    assert seed.confirm_score == pytest.approx(own)
    task_file = write_search(tmp_path / "out", config, result)
    assert "# Confirmation: accuracy difference" in task_file.read_text()
    report = json.loads((tmp_path / "out" / "search.json").read_text())
    assert [f["confirm_score"] for f in report["finalists"]] == [c.confirm_score for c in result.finalists]
    with pytest.raises(PromptLearningError, match="confirm_size >= 0"):
        search(config, tiny_lm, SearchSettings(dev_size=16, confirm_size=-1), progress=False)


def test_the_task_words_are_extended_with_proposed_ones(search_task, tiny_lm):
    config = load_task(search_task)
    result = search(config, tiny_lm, SearchSettings(dev_size=16, stages=("words",), budget=16), progress=False)
    options = {repr(c.words) for c in result.candidates}
    extended = [c.words for c in result.candidates if len(c.words["negative"]) == 2]
    assert extended and all(w["negative"][0] == " bad" and w["positive"][0] == " good" for w in extended)
    assert len(options) > len({repr(w) for w in extended}) + 1


def test_a_dev_file_resolves_under_the_task_data_root(search_task, tiny_lm, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not where the file is: it is found under the task's data root
    config = load_task(search_task)
    rows = len((REVIEWS / "test.jsonl").read_text().splitlines())
    settings = SearchSettings(dev="test.jsonl", confirm_size=0, stages=("words",), budget=rows)
    result = search(config, tiny_lm, settings, progress=False)
    assert result.dev_size == rows and len(result.pool) == 120
    assert f"dev: {rows} examples from `test.jsonl`" in search_report(config, result)


def test_a_few_shot_task_is_compared_with_its_own_demonstrations(search_task, tiny_lm):
    """A 2-shot task: its own prompt on dev is what its classifier (with the demonstrations its
    selection picks from the pool) scores there, and it comes first among the candidates."""
    from promptlearning.tasks.classification.run import build_classifier

    config = load_task(search_task, ["shots=2", "method.selection=balanced"])
    settings = SearchSettings(dev_size=20, stages=("words",), budget=20, confirm_size=10)
    result = search(config, tiny_lm, settings, progress=False)
    assert result.candidates[0] is result.seed and len(result.seed.demonstrations) == 2
    assert result.spent == 20  # the reference is not a candidate: outside the budget
    classifier = build_classifier(config, tiny_lm).fit(result.pool)
    predictions = classifier.predict(result.dev)
    expected = np.mean([p.label == ex["label"] for p, ex in zip(predictions, result.dev, strict=True)])
    assert result.seed_dev == pytest.approx(expected)
    assert result.finalists[0] is result.seed
    kept = classifier.predict(result.confirm)
    confirmed = np.mean([p.label == ex["label"] for p, ex in zip(kept, result.confirm, strict=True)])
    assert result.seed.confirm_score == pytest.approx(confirmed)


def test_with_a_dev_file_the_confirmation_comes_from_it(search_task, tiny_lm):
    """--dev FILE: the file is split (seeded) into dev and confirmation, half each by default; the
    whole training file stays the pool."""
    config = load_task(search_task)
    rows = load_examples_of(REVIEWS / "test.jsonl")
    settings = SearchSettings(dev=str(REVIEWS / "test.jsonl"), stages=("words",), budget=len(rows))
    result = search(config, tiny_lm, settings, progress=False)
    assert result.confirm_size == len(rows) // 2 and result.dev_size == len(rows) - len(rows) // 2
    key = lambda ex: json.dumps(ex, sort_keys=True)  # noqa: E731
    assert sorted(map(key, result.dev + result.confirm)) == sorted(map(key, rows))
    assert len(result.pool) == len(load_examples_of(REVIEWS / "train.jsonl"))
    with pytest.raises(PromptLearningError, match="too few to keep a dev sample"):
        search(config, tiny_lm, SearchSettings(dev=str(REVIEWS / "test.jsonl"), confirm_size=len(rows) - 1,
                                               stages=("words",)), progress=False)  # fmt: skip


def load_examples_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_score_cache_is_checkpointed_during_a_search(tiny_lm, tmp_path):
    """Scores reach the file every ``every`` seconds, not only at the end: a killed search keeps them."""
    from promptlearning.models.interface import LoglikelihoodRequest

    path = tmp_path / "scores.jsonl"
    cache = ScoreCache(tiny_lm, "tiny", path)
    cache.score([LoglikelihoodRequest("Review: fine\nSentiment:", " good")])
    cache.checkpoint(every=3600)
    assert not path.exists()  # saved a moment ago (at creation)
    cache.checkpoint(every=0)
    reloaded = ScoreCache(tiny_lm, "tiny", path)
    assert len(reloaded.results) == 1
    assert [r.token_logprobs for r in reloaded.results.values()] == [r.token_logprobs for r in cache.results.values()]


def test_the_stages_are_units_over_one_state(search_task, tiny_lm, tmp_path):
    from promptlearning.search.run import (
        choose_output,
        confirm_finalists,
        pick_ensemble,
        score_word_options,
        search_templates,
        start_search,
    )

    config = load_task(search_task)
    settings = SearchSettings(dev_size=12, confirm_size=12, budget=12 * 4, cache=tmp_path / "scores.jsonl")
    state = start_search(config, tiny_lm, settings, progress=False)
    assert len(state.dev) == 12 and len(state.confirm) == 12 and state.pool
    assert state.word_options == [state.seed_words]  # no proposals without the words stage
    score_word_options(state)  # the task's own words with its template: one candidate per calibration kind
    assert [c.stage for c in state.candidates] == ["words"] * len(state.kinds)
    assert state.seed_candidate.words == state.seed_words and state.budget.spent == 12
    search_templates(state)  # within the budget: 3 more templates at most
    templates = [c for c in state.candidates if c.stage == "templates"]
    assert templates and len({repr(c.template) for c in templates}) <= 3 and state.budget.spent <= 48
    pick_ensemble(state)
    assert state.best.dev_score == max(c.dev_score for c in state.candidates)
    confirm_finalists(state)
    assert state.finalists[0] is state.seed_candidate and all(c.confirm_score is not None for c in state.finalists)
    choose_output(state)
    assert state.adoption is not None and state.output in ("own", "single", "ensemble")
    assert (state.best is state.seed_candidate) == (state.output == "own")


def test_a_time_budget_stops_scoring_candidates_but_still_confirms(search_task, tiny_lm, capsys):
    config = load_task(search_task)
    settings = SearchSettings(dev_size=16, confirm_size=16, budget=16 * 40, time_budget=1e-4)  # 6 ms
    result = search(config, tiny_lm, settings, progress=True)
    assert {c.stage for c in result.candidates} == {"words"}  # the first stage always runs, nothing after it
    assert result.adoption is not None and result.finalists[0] is result.seed
    assert "search plan: up to 640 dev prompts and 96 confirmation prompts" in capsys.readouterr().err
    with pytest.raises(PromptLearningError, match="--time-budget must be a number of minutes > 0"):
        search(config, tiny_lm, SearchSettings(time_budget=0), progress=False)


def _confirmed_state(search_task, tiny_lm, **settings):
    from promptlearning.search.run import (
        confirm_finalists,
        pick_ensemble,
        score_word_options,
        search_templates,
        start_search,
    )

    options = {"dev_size": 16, "confirm_size": 40, "budget": 16 * 6, "finalists": 3, **settings}
    state = start_search(load_task(search_task), tiny_lm, SearchSettings(**options), progress=False)
    score_word_options(state)
    search_templates(state)
    pick_ensemble(state)
    confirm_finalists(state)
    return state


def test_the_output_replaces_the_task_prompt_only_when_the_test_says_so(search_task, tiny_lm):
    from promptlearning.search.run import choose_output, confirmation_gold

    state = _confirmed_state(search_task, tiny_lm)
    gold = confirmation_gold(state)
    perfect, wrong = np.eye(2)[gold], np.eye(2)[1 - gold]
    seed, first, *_ = state.finalists
    for c in state.finalists:  # the task's prompt always wrong, the best finalist on dev always right
        state.confirm_predictions[repr(c.config_key())] = perfect if c is first else wrong
        c.confirm_score = state.score(state.confirm_predictions[repr(c.config_key())], gold)
    choose_output(state)
    assert state.output == "single" and state.best is first and state.adoption.adopted
    for c in state.finalists:  # all alike: nothing is shown better, the task's own prompt stays
        state.confirm_predictions[repr(c.config_key())] = wrong
        c.confirm_score = 0.0
    choose_output(state)
    assert state.output == "own" and state.best is seed and not state.adoption.adopted
    state.settings.adopt = "always"  # a tie keeps the task's own prompt even then
    choose_output(state)
    assert state.output == "own"


def test_finalists_are_diverse():
    from promptlearning.search.run import Candidate, pick_finalists

    t1, t2 = {"input": "Review: {{ text }}\nSentiment:"}, {"input": "{{ text }} It was"}
    w1 = {"negative": [" bad"], "positive": [" good"]}
    w2 = {"negative": [" awful"], "positive": [" great"]}
    one_word = {"negative": [" bad"], "positive": [" great"]}
    seed = Candidate("words", t1, w1, "none", 0.5)
    a = Candidate("templates", t2, w1, "none", 0.9)
    a_calibrated = Candidate("templates", t2, w1, "batch", 0.89)  # the same idea, another calibration
    a_one_word = Candidate("templates", t2, one_word, "none", 0.88)  # one label's words differ
    b = Candidate("words", t1, w2, "batch", 0.8)
    c = Candidate("templates", t2, w2, "none", 0.7)
    candidates = [seed, a, a_calibrated, a_one_word, b, c]
    assert pick_finalists(candidates, seed, 3) == [seed, a, b, c]
    assert pick_finalists(candidates, seed, 4) == [seed, a, b, c, a_calibrated]  # too few ideas: the best rest


def test_an_ensemble_output_is_written_as_a_task_and_a_program(search_task, tiny_lm, tmp_path):
    settings = SearchSettings(dev_size=16, confirm_size=40, budget=16 * 6, finalists=3)
    result = search(load_task(search_task), tiny_lm, settings, progress=False)
    result.output, result.ensemble_members = "ensemble", result.finalists[1:3]
    result.best, result.member_biases = result.ensemble_members[0], [None, None]
    task_file = write_search(tmp_path / "out", load_task(search_task), result)
    saved = load_task(task_file)
    assert len(saved.method.ensemble) == 2 and saved.method.ensemble[1].template is not None
    assert "an ensemble of 2 prompts" in task_file.read_text()
    assert run_task(saved, model=tiny_lm, write=False, progress=False).num_examples == 24
    program = load_program(tmp_path / "out" / "program")
    assert len(program.spec.classifier["ensemble"]) == 2
    assert {p.label for p in program.predict(result.confirm)} <= {"negative", "positive"}


def test_a_task_the_candidates_cannot_describe_is_kept_as_it_runs(search_task, tiny_lm, tmp_path):
    """A channel-scored, 2-ordering few-shot task: confirmed as it runs, and kept as it is."""
    config = load_task(search_task, ["method.scoring=channel", "shots=2", "method.selection=balanced",
                                     "method.orderings=2"])  # fmt: skip
    with pytest.warns(UserWarning, match="too small for the adoption test"):
        result = search(config, tiny_lm, SearchSettings(dev_size=12, confirm_size=4, stages=("words",), budget=12),
                        progress=False)  # fmt: skip
    assert result.output == "own" and not result.adoption.adopted
    task_file = write_search(tmp_path / "out", config, result)
    assert load_task(task_file).classifier_spec() == config.classifier_spec()
    spec = load_program(tmp_path / "out" / "program").spec.classifier
    assert (spec["scoring"], spec["orderings"], spec["shots"], spec["selection"]) == ("channel", 2, 2, "first")
    assert "as it runs" in search_report(config, result)
