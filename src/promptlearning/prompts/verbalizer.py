"""Verbalizers: map labels to words, and word log-probabilities back to label scores.

Every way of turning word scores into a label score lives here, in one documented place:

* a word's score is its continuation log-probability: ``sum`` over its tokens (default), ``mean``
  per token, ``chars`` (sum divided by the word's length in characters, lm-eval's ``acc_norm``) or
  ``first`` (its first token only: what PET / LM-BFF train and predict with);
* the words of one label are aggregated with ``logsumexp`` (default: the label's total probability
  mass), ``mean`` or ``max``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from promptlearning.errors import PromptLearningError
from promptlearning.models.interface import LoglikelihoodResult

WordScore = Literal["sum", "mean", "chars", "first"]
Aggregate = Literal["logsumexp", "mean", "max"]


class VerbalizerError(PromptLearningError):
    """Labels without words, or an invalid verbalizer definition."""


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def softmax(values: Sequence[float]) -> list[float]:
    total = logsumexp(values)
    return [math.exp(v - total) for v in values]


def label_distribution(scores: Mapping[str, float]) -> dict[str, float]:
    """Label log-scores turned into probabilities over the labels (a softmax)."""
    return dict(zip(scores, softmax(list(scores.values())), strict=True))


class Verbalizer:
    """Label → one or more words (or phrases) that the model may say for it."""

    def __init__(
        self,
        label_words: Mapping[str, str | Sequence[str]],
        *,
        word_score: WordScore = "sum",
        aggregate: Aggregate = "logsumexp",
    ) -> None:
        if not isinstance(label_words, Mapping):
            raise VerbalizerError(
                "label_words must map each label to its word(s), e.g. {'positive': ' great', 'negative': ' awful'}; "
                f"got {type(label_words).__name__}"
            )
        if not label_words:
            raise VerbalizerError("a verbalizer needs at least one label")
        if word_score not in ("sum", "mean", "chars", "first"):
            raise VerbalizerError(f"word_score must be 'sum', 'mean', 'chars' or 'first', got {word_score!r}")
        if aggregate not in ("logsumexp", "mean", "max"):
            raise VerbalizerError(f"aggregate must be 'logsumexp', 'mean' or 'max', got {aggregate!r}")
        self.label_words: dict[str, list[str]] = {}
        for label, words in label_words.items():
            word_list = [words] if isinstance(words, str) else list(words)
            if not word_list or any(not isinstance(w, str) or not w.strip() for w in word_list):
                raise VerbalizerError(f"label {label!r} needs one or more non-empty words, got {words!r}")
            self.label_words[str(label)] = word_list
        owners: dict[str, str] = {}
        for label, word_list in self.label_words.items():
            for word in word_list:
                other = owners.setdefault(word.strip(), label)
                if other != label:
                    raise VerbalizerError(
                        f"the word {word.strip()!r} is given for both {other!r} and {label!r}: the model could not "
                        "tell those labels apart; give each label its own words"
                    )
        self.word_score = word_score
        self.aggregate = aggregate

    @property
    def labels(self) -> list[str]:
        return list(self.label_words)

    def answer(self, label: str) -> str:
        """The word shown as the answer of a demonstration with this label (its first word)."""
        return self.label_words[str(label)][0]

    def check_labels(self, labels: Iterable[object]) -> None:
        """Every label in the data must have words: otherwise say which are missing."""
        missing = sorted({str(label) for label in labels} - set(self.label_words))
        if missing:
            raise VerbalizerError(
                f"label(s) {missing} have no words in the verbalizer (it knows {self.labels}); "
                "add them under `verbalizer.words`"
            )

    def score_word(self, word: str, result: LoglikelihoodResult) -> float:
        if self.word_score == "mean":
            return result.mean_logprob
        if self.word_score == "chars":
            return result.logprob / max(1, len(word.strip()))
        if self.word_score == "first":
            return result.token_logprobs[0]
        return result.logprob

    def label_scores(self, word_results: Mapping[str, Sequence[LoglikelihoodResult]]) -> dict[str, float]:
        """Aggregate per-word results (``label -> results in word order``) into one score per label."""
        scores = {}
        for label, words in self.label_words.items():
            values = [self.score_word(w, r) for w, r in zip(words, word_results[label], strict=True)]
            if self.aggregate == "logsumexp":
                scores[label] = logsumexp(values)
            elif self.aggregate == "max":
                scores[label] = max(values)
            else:
                scores[label] = math.fsum(values) / len(values)
        return scores
