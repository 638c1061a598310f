"""Automatic label words (LM-BFF, Gao et al. 2021): candidates per class from the model's own
next-token distribution after the prompt of that class's training examples, pruned to the top ``k``,
then assignments (one word per class) ranked on those examples and chosen on dev.

Written here: LM-BFF's code is a research script, not a library. One change from the paper: a
word's score for a class is its mean probability on the class's examples *minus* its mean on all
examples, so words the prompt favours whatever the input (" the", " a") do not crowd out the rest.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from promptlearning.errors import PromptLearningError
from promptlearning.models.interface import LanguageModel, TokenLevelModel

WORD = re.compile(r" [A-Za-z][a-z]+")  # a whole lower- or title-case word with its leading space
MAX_ASSIGNMENTS = 50_000  # beyond this, assignments are built greedily instead of enumerated


def next_token_distributions(model: LanguageModel, prompts: Sequence[str], top: int) -> list[dict[int, float]]:
    """The ``top`` most likely next tokens (id -> probability) after each prompt."""
    if not isinstance(model, TokenLevelModel):
        raise PromptLearningError(
            f"label-word search reads the model's next-token distribution: {type(model).__name__} does not give it "
            "(use the hf backend, or give the label words yourself)"
        )
    ids = [model.encode_prompt(prompt) for prompt in prompts]
    return [{t: float(np.exp(lp)) for t, lp in scored.next_top} for scored in model.score_token_ids(ids, top=top)]


def propose_label_words(
    model: LanguageModel,
    prompts: Sequence[str],
    labels: Sequence[str],
    gold: Sequence[str],
    *,
    per_class: int = 8,
    top: int = 200,
) -> dict[str, list[str]]:
    """Up to ``per_class`` candidate words per label (each word given to one label only)."""
    distributions = next_token_distributions(model, prompts, top)
    vocabulary = sorted({t for d in distributions for t in d})
    strings = dict(zip(vocabulary, model.token_strings(vocabulary), strict=True))  # type: ignore[attr-defined]
    words = [t for t in vocabulary if WORD.fullmatch(strings[t])]
    if not words:
        raise PromptLearningError("no candidate label word: the model's likely next tokens are not words")
    column = {t: j for j, t in enumerate(words)}
    probs = np.zeros((len(prompts), len(words)))
    for i, dist in enumerate(distributions):
        for t, p in dist.items():
            if t in column:
                probs[i, column[t]] = p
    gold_arr = np.asarray(gold)
    overall = probs.mean(axis=0)
    margin = np.stack([probs[gold_arr == label].mean(axis=0) - overall for label in labels])  # [label, word]
    owner = margin.argmax(axis=0)
    out: dict[str, list[str]] = {}
    for li, label in enumerate(labels):
        mine = [j for j in np.argsort(-margin[li]) if owner[j] == li and margin[li, j] > 0]
        out[label] = [strings[words[j]] for j in mine[:per_class]]
    return out


def rank_assignments(
    log_scores: np.ndarray, candidates: Sequence[Sequence[int]], gold: np.ndarray, *, keep: int, calibrate: bool
) -> list[tuple[float, tuple[int, ...]]]:
    """The ``keep`` best assignments (one candidate column per label) by accuracy on these examples.

    ``log_scores`` is ``[example, column]``; ``candidates[label]`` lists the columns allowed for it.
    """
    from promptlearning.search.scoring import accuracy, probabilities

    if any(not c for c in candidates):
        raise PromptLearningError("a label has no candidate word left")
    total = int(np.prod([len(c) for c in candidates], dtype=float))
    if total <= MAX_ASSIGNMENTS:
        pool = itertools.product(*candidates)
    else:  # coordinate ascent from the first candidates: one label at a time, best word kept
        current = [c[0] for c in candidates]
        pool_list = []
        for _ in range(2):
            for li, cols in enumerate(candidates):
                trials = [(*current[:li], col, *current[li + 1 :]) for col in cols]
                pool_list += trials
                scored = [accuracy(probabilities(log_scores[:, list(t)], calibrate), gold) for t in trials]
                current[li] = cols[int(np.argmax(scored))]
        pool = iter(dict.fromkeys(pool_list))
    ranked = [(accuracy(probabilities(log_scores[:, list(a)], calibrate), gold), a) for a in pool]
    ranked.sort(key=lambda item: -item[0])
    return ranked[:keep]


def assignment_words(assignment: Sequence[int], words: Sequence[str], labels: Sequence[str]) -> Mapping[str, Any]:
    return {label: [words[j]] for label, j in zip(labels, assignment, strict=True)}
