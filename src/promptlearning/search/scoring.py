"""Scoring candidate prompts on a dev split: every candidate label word after every candidate prompt,
each (prompt, word) pair scored once and cached (in memory and, optionally, in a JSON Lines file that
a later search reuses).

A prompt is sent to the model once for all its candidate words: single-token words of one prompt
share one forward pass in the HF backend, and demonstrations shared by all prompts are a prefix it
runs once. Label-word assignments and calibration are then tried in NumPy, without the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_atomically
from promptlearning.methods.calibration import calibrate_rows, mean_distribution
from promptlearning.models.interface import LanguageModel, LoglikelihoodRequest, LoglikelihoodResult


def _key(model: str, request: LoglikelihoodRequest) -> str:
    text = "\0".join((model, request.context, request.continuation, request.suffix))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class ScoreCache:
    """(model, prompt, word) -> the model's log-likelihood result; ``path`` keeps it across searches."""

    def __init__(self, model: LanguageModel, model_name: str, path: str | Path | None = None) -> None:
        self.model = model
        self.model_name = model_name
        self.path = Path(path) if path else None
        self.results: dict[str, LoglikelihoodResult] = {}
        self.model_calls = 0  # requests sent to the model (cache misses)
        self.hits = 0
        self.saved_at = time.monotonic()
        if self.path and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.results[row["k"]] = LoglikelihoodResult(tuple(row["lp"]), bool(row["g"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a crash: that score is computed again

    def score(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool | None = False) -> list:
        """Results in request order; only the requests never scored before reach the model."""
        keys = [_key(self.model_name, r) for r in requests]
        missing = list(dict.fromkeys(k for k in keys if k not in self.results))
        self.hits += len(keys) - len(missing)
        if missing:
            by_key = dict(zip(keys, requests, strict=True))
            results = self.model.loglikelihood([by_key[k] for k in missing], progress=progress)
            self.model_calls += len(missing)
            self.results.update(zip(missing, results, strict=True))
        return [self.results[k] for k in keys]

    def save(self) -> None:
        """Write every score to ``path`` (whole file, atomically)."""
        self.saved_at = time.monotonic()
        if self.path is None:
            return
        lines = [json.dumps({"k": k, "lp": list(r.token_logprobs), "g": r.is_greedy}) for k, r in self.results.items()]
        write_atomically(self.path, "\n".join(lines) + "\n")

    def checkpoint(self, every: float = 120.0) -> None:
        """:meth:`save` when the last save is ``every`` seconds old: a search that is killed keeps most
        of its scores, and the next one starts from them."""
        if time.monotonic() - self.saved_at >= every:
            self.save()


def word_matrix(results: Sequence[LoglikelihoodResult], n_prompts: int, n_words: int, word_score) -> np.ndarray:
    """``[prompt, word]`` scores from results listed prompt by prompt (``word_score(index, result)``)."""
    out = np.empty((n_prompts, n_words))
    for i in range(n_prompts):
        for j in range(n_words):
            out[i, j] = word_score(j, results[i * n_words + j])
    return out


def label_log_scores(matrix: np.ndarray, columns: Sequence[Sequence[int]]) -> np.ndarray:
    """``[example, label]`` scores: each label's word columns combined by log-sum-exp."""
    return np.stack([np.logaddexp.reduce(matrix[:, list(cols)], axis=1) for cols in columns], axis=1)


def probabilities(scores: np.ndarray, calibration: bool | str = False, bias: np.ndarray | None = None) -> np.ndarray:
    """Softmax over labels, then calibrated as :class:`~promptlearning.methods.calibration.Calibrated`
    does, with its functions: ``batch`` (or ``True``) divides by the mean distribution over the
    examples (Zhou et al. 2024); ``contextual`` and ``domain`` divide by ``bias``, the mean
    distribution of the content-free inputs (Zhao et al. 2021); ``none`` (or ``False``) leaves it."""
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if calibration in (False, "none"):
        return p
    if calibration in (True, "batch"):
        return calibrate_rows(p, mean_distribution(p))
    if calibration not in ("contextual", "domain"):
        raise PromptLearningError(f"unknown calibration {calibration!r}: none, batch, contextual or domain")
    if bias is None:
        raise PromptLearningError(f"{calibration} calibration needs the content-free distribution")
    return calibrate_rows(p, bias)


def content_free_bias(scores: np.ndarray) -> np.ndarray:
    """The mean label distribution of the content-free inputs' ``[input, label]`` scores, renormalised."""
    return mean_distribution(probabilities(scores))


def accuracy(p: np.ndarray, gold: np.ndarray) -> float:
    return float((p.argmax(axis=1) == gold).mean())


def dev_metric(name: str, labels: Sequence[str]) -> Callable[[np.ndarray, np.ndarray], float]:
    """The task's metric (``accuracy``, ``macro_f1`` or ``semeval_macro_f1``, a fraction) of label
    distributions ``[example, label]`` against gold label indices: what a search selects by, computed
    by the evaluation's own implementation."""
    from promptlearning.evaluation.metrics import headline_metric

    metric, names = headline_metric(name, labels), np.asarray(list(labels), dtype=object)
    return lambda p, gold: metric(names[np.asarray(gold)].tolist(), names[p.argmax(axis=1)].tolist())
