"""A run's predictions as one shape for every task kind, read a page at a time.

Classification rows carry gold, predicted and label probabilities; chain-of-thought rows their
rationales and votes; generation rows the output and its score. :func:`example_view` turns any of
them into an :class:`Example` (input, gold, prediction, right or wrong, the gold label's probability,
the details), which the run page and the comparison matrix show.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
PAGE_SIZE = 50
MAX_EXAMPLES = 200_000  # a predictions file is read up to this many examples (a page sends PAGE_SIZE)
ORDERS = ("worst", "index")
_CACHED_FILES = 8


@dataclass
class Example:
    """One predicted example, whatever the task kind."""

    index: int
    input: str
    gold: str
    predicted: str
    correct: bool | None  # None when the kind has no right answer (free generation)
    gold_probability: float | None = None
    score: float | None = None  # a generation's per-example metric
    probabilities: dict[str, float] = field(default_factory=dict)
    rationales: list[str] = field(default_factory=list)
    votes: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    references: list[str] = field(default_factory=list)

    def badness(self) -> tuple[float, float]:
        """Sort key of "worst first": wrong before right, then the least probable gold (or lowest score)."""
        wrong = 0.0 if self.correct is False else 1.0
        confidence = self.gold_probability if self.gold_probability is not None else self.score
        return wrong, confidence if confidence is not None else 0.5


def example_view(index: int, row: Mapping[str, Any], fields: tuple[str, ...] = ()) -> Example:
    """The common view of one ``predictions.jsonl`` row; ``fields``: the example fields the run's
    template reads (default: every field but the answer's)."""
    if "rationales" in row or "answers" in row:
        return _chain_of_thought(index, row)
    if "probabilities" in row or "predicted" in row:  # classification, or a trained NER program's tags
        return _classification(index, row, fields)
    return _generation(index, row, fields)


ANSWER_FIELDS = ("label", "answer", "references", "target")


def input_text(example: Mapping[str, Any], fields: tuple[str, ...] = ()) -> str:
    """An example's input fields as text: the one field's value, or ``field: value`` lines."""
    chosen = [f for f in fields if f in example] or [f for f in example if f not in ANSWER_FIELDS]
    fields = {k: example[k] for k in chosen if not isinstance(example[k], dict | list)}
    if len(fields) == 1:
        return str(next(iter(fields.values())))
    return "\n".join(f"{k}: {v}" for k, v in fields.items())


def _classification(index: int, row: Mapping[str, Any], fields: tuple[str, ...]) -> Example:
    probabilities = {str(k): float(v) for k, v in (row.get("probabilities") or {}).items()}
    gold = str(row.get("gold", ""))
    return Example(
        index=index, input=input_text(row.get("example") or {}, fields), gold=gold,
        predicted=str(row.get("predicted", "")), correct=bool(row.get("correct")),
        gold_probability=probabilities.get(gold), probabilities=probabilities,
    )  # fmt: skip


def _chain_of_thought(index: int, row: Mapping[str, Any]) -> Example:
    answers = row.get("answers") or {}
    correct = row.get("correct")
    chain = "flexible" if "flexible" in answers else next(iter(answers), "")
    if isinstance(correct, dict):
        correct = correct.get(chain)
    votes = row.get("votes") or {}
    chain_votes = votes.get(chain, votes) if isinstance(votes, dict) else {}
    chain_votes = chain_votes if isinstance(chain_votes, dict) else {}
    gold = str(row.get("gold", ""))
    counted = sum(v for v in chain_votes.values() if isinstance(v, int | float))
    return Example(
        index=index, input=str(row.get("question", "")), gold=gold,
        predicted=str(answers.get(chain, "")), correct=bool(correct) if correct is not None else None,
        # the share of the sampled solutions that reach the gold answer (not the majority's agreement)
        gold_probability=float(chain_votes.get(gold, 0)) / counted if counted else None,
        rationales=[str(r) for r in row.get("rationales") or []],
        votes=chain_votes,
    )  # fmt: skip


def _generation(index: int, row: Mapping[str, Any], fields: tuple[str, ...]) -> Example:
    references = row.get("references") or []
    references = [str(r) for r in (references if isinstance(references, list) else [references])]
    score = row.get("score")
    score = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
    example = row.get("example") or {}
    return Example(
        index=index, input=input_text(example, fields) if example else str(row.get("prompt", "")),
        gold=references[0] if references else "", predicted=str(row.get("answer", row.get("output", ""))),
        # exact match scores are right or wrong (unless the run's metric is graded: see PredictionReader)
        correct=None if score not in (0.0, 1.0) else score == 1.0,
        score=score, output=str(row.get("output", "")), references=references,
    )  # fmt: skip


class PredictionReader:
    """Parsed prediction files, kept for the last few files read (by path and modification time)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[str, float, int, tuple[str, ...]], list[Example]] = OrderedDict()
        self._lock = threading.Lock()  # one reading at a time: requests for a file being read wait for it

    def examples(self, path: Path, fields: tuple[str, ...] = ()) -> list[Example]:
        stat = path.stat()
        key = (str(path), stat.st_mtime, stat.st_size, fields)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._read(path, fields)
                while len(self._cache) > _CACHED_FILES:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            return self._cache[key]

    @staticmethod
    def _read(path: Path, fields: tuple[str, ...]) -> list[Example]:
        examples: list[Example] = []
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if len(examples) >= MAX_EXAMPLES:
                    break
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        row = {"prompt": "(this line of predictions.jsonl is not JSON)"}
                    examples.append(example_view(len(examples), row if isinstance(row, dict) else {}, fields))
        scored = [e for e in examples if e.score is not None]
        if any(e.score not in (0.0, 1.0) for e in scored):  # a graded metric (ROUGE, F1): no right or wrong
            for example in scored:
                example.correct = None
        return examples


def page(examples: list[Example], *, order: str = "worst", number: int = 1, query: str = "",
         wrong_only: bool = False) -> tuple[list[Example], int]:  # fmt: skip
    """One page of examples (filtered, ordered) and the number of pages."""
    chosen = [e for e in examples if (not wrong_only or e.correct is False)]
    if query:
        needle = query.lower()
        chosen = [e for e in chosen if needle in e.input.lower() or needle in e.predicted.lower()]
    if order == "worst":
        chosen = sorted(chosen, key=Example.badness)
    shown, pages, _ = paged(chosen, number)
    return shown, pages


def paged(items: list[T], number: int) -> tuple[list[T], int, int]:
    """Page ``number`` of ``items`` (clamped to the pages there are), the number of pages, the page's number."""
    pages = max(1, -(-len(items) // PAGE_SIZE))
    number = min(max(1, number), pages)
    return items[(number - 1) * PAGE_SIZE : number * PAGE_SIZE], pages, number
