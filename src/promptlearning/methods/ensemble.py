"""Prompt ensembles: several prompts for the same labels, their (calibrated) label distributions
combined. One prompt of a small model is brittle; averaging a few is what PET's pattern ensembles
(Schick & Schütze 2021) and "Ask Me Anything" (Arora et al. 2022) gain from.

Members are combined by the weighted mean of their log-probabilities, renormalised (a product of
experts: a member sure of a label counts for more than one that hesitates). Weights are given (a
search gives each member its dev score), or ``agreement``: each member weighted by how often it
agrees with the uniform ensemble on the examples being predicted, a label-free estimate of its
accuracy in the spirit of AMA's weak supervision (on a single example every member gets the same weight).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from promptlearning.errors import PromptLearningError
from promptlearning.methods.base import ClassifierMixin, Prediction
from promptlearning.models.interface import LoglikelihoodRequest, LoglikelihoodResult, RequestLike, as_requests
from promptlearning.prompts.examples import Example, as_examples

WEIGHTINGS = ("uniform", "agreement")


class SharedScores:
    """The members' view of their model: :meth:`prefetch` scores every member's requests in one
    ``loglikelihood`` call (so the backend scores a prompt shared by several members once, one
    forward pass for all their single-token words, and batches the rest together); the members'
    own calls are then answered from those results. Everything else is the model's."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._results: dict[LoglikelihoodRequest, LoglikelihoodResult] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["model"], name)

    def prefetch(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool | None = None) -> None:
        missing = [r for r in dict.fromkeys(requests) if r not in self._results]
        if missing:
            self._results.update(zip(missing, self.model.loglikelihood(missing, progress=progress), strict=True))

    def loglikelihood(self, requests: Sequence[RequestLike], **options: Any) -> list[LoglikelihoodResult]:
        requests = as_requests(requests)
        missing = [r for r in dict.fromkeys(requests) if r not in self._results]
        if missing:  # what was not fetched ahead (content-free inputs, other orderings)
            self._results.update(zip(missing, self.model.loglikelihood(missing, **options), strict=True))
        return [self._results[r] for r in requests]

    def clear(self) -> None:
        self._results.clear()


def combine_distributions(distributions: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``[member, example, label]`` distributions combined into ``[example, label]``: the weighted
    mean of their log-probabilities (uniform without ``weights``), renormalised. The one
    implementation of the combination: ensembles predict with it, search scores ensembles with it."""
    log_p = np.log(np.maximum(np.asarray(distributions, dtype=float), 1e-300))
    if weights is None:
        weights = np.full(log_p.shape[0], 1 / log_p.shape[0])
    combined = np.tensordot(weights, log_p, axes=1)
    p = np.exp(combined - combined.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


class PromptEnsemble(ClassifierMixin):
    """Members (any classifiers of the same labels, each with its own template, label words,
    calibration or scoring) predicting together; ``weights`` (one per member) or ``weighting``."""

    def __init__(
        self,
        members: Sequence[Any],
        *,
        weights: Sequence[float] | None = None,
        weighting: str = "uniform",
        shared: SharedScores | None = None,
    ) -> None:
        members = list(members)
        if not members:
            raise PromptLearningError("a prompt ensemble needs at least one member")
        first = set(members[0].labels)
        for i, member in enumerate(members[1:], 1):
            if set(member.labels) != first:
                raise PromptLearningError(
                    f"ensemble member {i} has labels {sorted(member.labels)}, member 0 has {sorted(first)}: "
                    "every member must predict the same labels"
                )
        if weighting not in WEIGHTINGS:
            raise PromptLearningError(f"unknown ensemble weighting {weighting!r}; use one of {', '.join(WEIGHTINGS)}")
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != len(members):
                raise PromptLearningError(f"{len(weights)} ensemble weights for {len(members)} members")
            if any(not math.isfinite(w) or w < 0 for w in weights) or not sum(weights) > 0:
                raise PromptLearningError(f"ensemble weights must be >= 0 and not all 0, got {weights}")
        self.members = members
        self.weights = weights
        self.weighting = weighting
        self.shared = shared  # the members' model, when they share one: their requests go in one call

    @property
    def labels(self) -> list[str]:
        return list(self.members[0].labels)

    @property
    def label_field(self) -> str:  # type: ignore[override]
        return self.members[0].label_field

    def check_gold(self, labels: Sequence[str]) -> None:
        self.members[0].check_gold(labels)

    def fit(self, train: Iterable[Example] = ()) -> PromptEnsemble:
        train = as_examples(train, "fit")
        for member in self.members:
            member.fit(train)
        return self

    def predict(self, examples: Iterable[Example], *, progress: bool | None = None) -> list[Prediction]:
        examples = as_examples(examples, "predict")
        try:
            if self.shared is not None:
                ahead = [r for m in self.members if hasattr(m, "requests") for r in m.requests(examples)]
                self.shared.prefetch(ahead, progress=progress)
            runs = [member.predict(examples, progress=False if self.shared else progress) for member in self.members]
        finally:
            if self.shared is not None:
                self.shared.clear()
        labels = self.labels
        distributions = np.array([[[p.probabilities[x] for x in labels] for p in run] for run in runs])
        weights = self.member_weights(np.log(np.maximum(distributions, 1e-300)))
        probabilities = combine_distributions(distributions, weights)
        out = []
        for i in range(len(examples)):
            row = dict(zip(labels, probabilities[i].tolist(), strict=True))
            scores = {x: float(sum(w * run[i].label_scores[x] for w, run in zip(weights, runs, strict=True)))
                      for x in labels}  # fmt: skip
            out.append(Prediction(max(row, key=row.__getitem__), row, scores, list(runs[0][i].demonstrations)))
        return out

    def member_weights(self, log_p: np.ndarray) -> np.ndarray:
        """Each member's weight, summing to 1: the given ones, uniform, or by agreement with the
        uniform ensemble (``log_p``: ``[member, example, label]``)."""
        k = log_p.shape[0]
        if self.weights is not None:
            weights = np.array(self.weights)
        elif self.weighting == "agreement" and k > 1:
            majority = log_p.mean(axis=0).argmax(axis=1)
            agreement = (log_p.argmax(axis=2) == majority[None, :]).mean(axis=1)
            weights = np.maximum(agreement, 1e-3)
        else:
            weights = np.ones(k)
        return weights / weights.sum()
