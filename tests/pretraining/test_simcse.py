"""Sentence embeddings (``type: embed-train``): unsupervised and supervised SimCSE through
sentence-transformers on tiny random models, STS evaluation, and the trained encoder in kNN selection."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.models import load_model
from promptlearning.pretraining.simcse import build_sentence_encoder, dropout_overrides, unsupervised_pairs
from promptlearning.tasks import load_task, run_task
from promptlearning.tasks.config import TaskConfigError

WORDS = ["cat", "dog", "bird", "fish", "runs", "sleeps", "eats", "jumps", "red", "small", "big", "old", "tree",
         "house", "river", "sun"]  # fmt: skip


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, 5)) for _ in range(n)]


def _sts_rows(n: int, seed: int = 1) -> list[dict]:
    """Pairs whose gold score is their word overlap (0..5), like STS-B's 0..5 scale."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        first = rng.sample(WORDS, 5)
        keep = rng.randint(0, 5)
        second = first[:keep] + rng.sample([w for w in WORDS if w not in first], 5 - keep)
        rows.append({"sentence1": " ".join(first), "sentence2": " ".join(second), "score": float(keep)})
    return rows


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _task(tmp_path: Path, model: Path, **extra) -> Path:
    data = {
        "train": [_jsonl(tmp_path / "train.jsonl", [{"text": s} for s in _sentences(96)])],
        "fields": ["text"],
        "dev": _jsonl(tmp_path / "dev.jsonl", _sts_rows(24, seed=2)),
        "test": _jsonl(tmp_path / "test.jsonl", _sts_rows(24, seed=3)),
    }
    config = {
        "type": "embed-train", "name": "simcse", "model": str(model), "device": "cpu", "max_seq_length": 16,
        "data": data, "training": {"max_steps": 12, "batch_size": 16, "learning_rate": 1e-3, "eval_every": 6},
        "output_dir": str(tmp_path / "runs"),
    }  # fmt: skip
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "simcse.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _mean_cosine(embeddings: np.ndarray) -> float:
    """The mean cosine between different sentences: high for an untrained, anisotropic encoder."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sims = unit @ unit.T
    n = len(unit)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


@pytest.mark.parametrize("model_fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_unsupervised_simcse_spreads_sentences_apart_and_saves_a_loadable_encoder(tmp_path, request, model_fixture):
    model_dir = request.getfixturevalue(model_fixture)
    sentences = _sentences(40, seed=9)
    before = build_sentence_encoder(model_dir, max_seq_length=16, device="cpu").encode(sentences)
    result = run_task(load_task(_task(tmp_path, model_dir)), progress=False)

    metrics = json.loads((result.run_dir / "metrics.json").read_text())["runs"][0]
    assert metrics["steps"] == 12 and metrics["train_sentences"] == 96
    for key in ("untrained_dev_spearman", "untrained_test_spearman", "dev_spearman", "test_spearman"):
        assert -100 <= metrics[key] <= 100
    assert result.metric == "test_spearman" and result.value == pytest.approx(metrics["test_spearman"])
    assert "| seed |" in (result.run_dir / "report.md").read_text()
    assert not (result.run_dir / "checkpoints").exists()

    encoder = load_model(result.model)  # a sentence-transformers directory: the embedder backend
    after = encoder.embed(sentences, normalize=False)
    # in-batch negatives push different sentences apart: the anisotropy of the untrained encoder drops
    assert _mean_cosine(after) < _mean_cosine(before) - 0.05


def test_dropout_is_switched_on_for_a_decoder_without_any(tiny_llama_dir):
    assert dropout_overrides(tiny_llama_dir, 0.1) == {"attention_dropout": 0.1}
    assert dropout_overrides(tiny_llama_dir, None) == {}
    encoder = build_sentence_encoder(tiny_llama_dir, dropout=0.1, device="cpu")
    assert encoder[0].model.config.attention_dropout == 0.1
    encoder.train()  # two passes over the same sentence differ: SimCSE's two views
    features = encoder.preprocess(["a small red cat runs"])
    first = encoder(dict(features))["sentence_embedding"]
    second = encoder(dict(features))["sentence_embedding"]
    assert not np.allclose(first.detach().numpy(), second.detach().numpy())


def test_train_layers_freezes_the_embeddings_and_the_lower_layers(tiny_llama_dir):
    encoder = build_sentence_encoder(tiny_llama_dir, train_layers=1, device="cpu")
    model = encoder[0].model
    assert not model.embed_tokens.weight.requires_grad
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    assert all(p.requires_grad for p in model.layers[-1].parameters()) and model.norm.weight.requires_grad
    with pytest.warns(UserWarning, match="all of them train"):
        build_sentence_encoder(tiny_llama_dir, train_layers=99, device="cpu")


def test_supervised_simcse_with_hard_negatives(tmp_path, tiny_bert_dir):
    pairs = zip(_sentences(48), _sentences(48, 5), strict=True)
    rows = [{"premise": s, "entail": s + " today", "contra": t} for s, t in pairs]
    path = _task(tmp_path, tiny_bert_dir, objective="supervised", dropout=None, seeds=[0, 1],
                 data={"train": [_jsonl(tmp_path / "nli.jsonl", rows)], "test": None,
                       "columns": {"anchor": "premise", "positive": "entail", "negative": "contra"}})  # fmt: skip
    result = run_task(load_task(path), progress=False)
    assert result.metric == "dev_spearman" and len(result.values) == 2
    for seed in (0, 1):
        assert (result.run_dir / f"seed-{seed}" / "model" / "modules.json").is_file()


@pytest.mark.parametrize("seeds", [[0, 1], None])
def test_resume_keeps_finished_seeds_and_a_new_run_needs_an_empty_directory(tmp_path, tiny_bert_dir, seeds):
    path = _task(tmp_path, tiny_bert_dir, seeds=seeds, training={"max_steps": 2})
    first = run_task(load_task(path), progress=False)
    weights = first.run_dir / ("seed-1" if seeds else "") / "model" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = run_task(load_task(path), resume=True, progress=False)  # both seeds were finished: nothing retrains
    assert again.values == first.values and weights.stat().st_mtime_ns == stamp
    with pytest.raises(PromptLearningError, match="already holds a run"):
        run_task(load_task(path), progress=False)


def test_the_trained_encoder_selects_knn_demonstrations(tmp_path, tiny_bert_dir, tiny_llama_dir):
    trained = run_task(load_task(_task(tmp_path, tiny_bert_dir, training={"max_steps": 2})), progress=False)
    rows = [{"text": s, "label": "positive" if "cat" in s else "negative"} for s in _sentences(20)]
    task = {
        "name": "knn", "model": str(tiny_llama_dir), "device": "cpu", "shots": 2,
        "data": {"train": _jsonl(tmp_path / "pool.jsonl", rows), "eval": _jsonl(tmp_path / "eval.jsonl", rows[:4])},
        "template": {"input": "Review: {{ text }}\nSentiment:"},
        "verbalizer": {"words": {"positive": [" good"], "negative": [" bad"]}},
        "method": {"selection": "knn", "embedder": trained.model}, "output_dir": str(tmp_path / "runs"),
    }  # fmt: skip
    (tmp_path / "knn.yaml").write_text(yaml.safe_dump(task))
    from promptlearning.tasks.classification.run import build_classifier

    config = load_task(tmp_path / "knn.yaml")
    classifier = build_classifier(config, load_model(str(tiny_llama_dir), device="cpu"))
    classifier.fit([{**r} for r in rows])
    probe = ["a small red cat runs"]
    assert np.allclose(classifier._embedder().embed(probe), load_model(trained.model).embed(probe), atol=1e-6)
    untrained = build_sentence_encoder(tiny_bert_dir, device="cpu").encode(probe, normalize_embeddings=True)
    assert not np.allclose(classifier._embedder().embed(probe), untrained, atol=1e-3)
    assert run_task(config, progress=False).num_examples == 4


def test_bad_inputs(tmp_path, tiny_bert_dir):
    with pytest.raises(PromptLearningError, match="no training sentences"):
        unsupervised_pairs(["", "  "])
    with pytest.raises(TaskConfigError, match="supervised SimCSE needs data.columns"):
        load_task(_task(tmp_path, tiny_bert_dir, objective="supervised"))
    bad_sts = _task(tmp_path, tiny_bert_dir, data={"test": _jsonl(tmp_path / "bad.jsonl", [{"sentence1": "a"}])})
    with pytest.raises(PromptLearningError, match="no field 'sentence2'"):
        run_task(load_task(bad_sts), progress=False)
    with pytest.raises(PromptLearningError, match="unknown pooling"):
        build_sentence_encoder(tiny_bert_dir, pooling="median")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"train": "one.jsonl"}, "one distinct training sentence"),
        ({"test": "constant.jsonl"}, "the same gold score"),
        ({"test": "single.jsonl"}, "1 pair(s)"),
    ],
)
def test_an_embedding_task_that_cannot_learn_or_be_scored_fails_before_writing(tmp_path, tiny_bert_dir, data, words):
    _jsonl(tmp_path / "one.jsonl", [{"text": "the only sentence"}] * 5)
    _jsonl(tmp_path / "constant.jsonl", [{**row, "score": 3.0} for row in _sts_rows(10)])
    _jsonl(tmp_path / "single.jsonl", _sts_rows(1))
    files = {key: [str(tmp_path / name)] if key == "train" else str(tmp_path / name) for key, name in data.items()}
    path = _task(tmp_path, tiny_bert_dir, data=files)
    with pytest.raises(PromptLearningError, match=words.replace("(", r"\(").replace(")", r"\)")):
        run_task(load_task(path), progress=False)
    assert not (tmp_path / "runs").exists(), "a run directory was written for a task that cannot run"
