"""Label phrases for tasks with many classes or phrase labels (BANKING77's 77 intents, SemEval's 19
relations), where LM-BFF's single-token proposals are no use (" Trich", " Dogs"):

* from the label names: identifiers read as words (``card_payment_wrong_exchange_rate`` becomes
  " card payment wrong exchange rate", ``Cause-Effect(e1,e2)`` " cause effect e1 e2");
* from the model's own continuations: the prompt of each class's pool examples is continued
  greedily for a few tokens, and the phrases a class's examples produce more often than the other
  classes' become that class's candidates.

Written here: no library proposes verbalizer phrases.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from promptlearning.models.interface import GenerationConfig, LanguageModel

MANY_CLASSES = 8  # above this many labels, label phrases replace single-token proposals
_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|[_\-/.,()\s]+")
_PHRASE = re.compile(r"[A-Za-z][A-Za-z' ]*[A-Za-z]|[A-Za-z]")


def label_name_phrase(label: str) -> str:
    """A label identifier as lower-case words with a leading space: ``cardArrival`` / ``card_arrival``
    -> " card arrival"."""
    words = [w.lower() for w in _SPLIT.split(label) if w]
    return " " + " ".join(words) if words else " " + label


def uses_phrases(labels: Sequence[str], seed_words: Mapping[str, Sequence[str]]) -> bool:
    """Whether a task gets phrase proposals: many classes, or label words of several words."""
    return len(labels) > MANY_CLASSES or any(len(w.split()) > 1 for ws in seed_words.values() for w in ws)


def continuation_phrases(
    model: LanguageModel,
    prompts: Sequence[str],
    gold: Sequence[str],
    labels: Sequence[str],
    *,
    per_class: int = 2,
    max_new_tokens: int = 6,
) -> dict[str, list[str]]:
    """Up to ``per_class`` phrases per label from greedy continuations of its examples' prompts: the
    first line, cut to its first clause, lower-cased; ranked by how often the label's examples give it
    against how often the others do (a phrase every class gives is no use)."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop=["\n"])
    texts = [g.text for g in model.generate(list(prompts), config, progress=False)]
    by_label: dict[str, Counter[str]] = {label: Counter() for label in labels}
    for text, label in zip(texts, gold, strict=True):
        phrase = _clause(text)
        if phrase:
            by_label[label][phrase] += 1
    everywhere = sum(by_label.values(), Counter())
    out = {}
    for label in labels:
        own = by_label[label]
        # a phrase belongs to the one class that gives it most (on a tie, to none)
        mine = [p for p in own if all(own[p] > by_label[other][p] for other in labels if other != label)]
        ranked = sorted(mine, key=lambda p: (-own[p] / (1 + everywhere[p] - own[p]), p))
        out[label] = [" " + p for p in ranked if own[p] > 1 or len(own) == 1][:per_class]
    return out


def _clause(text: str) -> str:
    match = _PHRASE.search(text.strip().split("\n", 1)[0])
    return " ".join(match.group(0).lower().split()[:5]) if match else ""


def phrase_options(
    labels: Sequence[str],
    seed_words: Mapping[str, Sequence[str]],
    continuations: Mapping[str, Sequence[str]],
) -> list[dict[str, list[str]]]:
    """Word options to score on dev: the label names, the continuation phrases (the task's words where
    a label has none), and each of those added to the task's own words."""
    names = {label: [label_name_phrase(label)] for label in labels}
    continued = {label: list(continuations.get(label) or seed_words[label])[:1] for label in labels}
    options = [names, continued]
    for option in (names, {label: list(continuations.get(label) or []) for label in labels}):
        options.append({label: list(dict.fromkeys([*seed_words[label], *option[label]])) for label in labels})
    seed = {label: list(seed_words[label]) for label in labels}
    unique: list[dict[str, list[str]]] = []
    for option in options:
        if option not in unique and option != seed and _distinct(option):
            unique.append(option)
    return unique


def _distinct(option: Mapping[str, Sequence[str]]) -> bool:
    """No word names two labels (the verbalizer refuses that: the labels could not be told apart)."""
    words = [w for ws in option.values() for w in ws]
    return len(words) == len(set(words))
