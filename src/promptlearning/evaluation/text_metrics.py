"""Metrics of tasks whose answer is text, through the field's libraries.

* SQuAD exact match and F1: ``torchmetrics`` (the official v1.1 normalisation: lower case, no
  punctuation, no articles, single spaces; the best over the gold answers);
* ROUGE-1/2/L: ``rouge-score`` (F-measure, Porter stemming, the best over the references);
* BLEU and chrF: ``sacrebleu`` (corpus level, every reference used);
* distinct-1/2 (dialogue diversity): written here, as no library has it.

Every metric takes the predictions and, per prediction, a list of references; scores are in
[0, 100] as papers report them. :func:`example_score` gives one number per example, to list the
worst ones in reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from promptlearning.errors import PromptLearningError

References = Sequence[Sequence[str]]


def squad_scores(predictions: Sequence[str], references: References) -> dict[str, float]:
    """SQuAD v1.1 exact match and token F1 (best over each question's gold answers)."""
    from torchmetrics.functional.text import squad

    preds = [{"prediction_text": p, "id": str(i)} for i, p in enumerate(predictions)]
    target = [
        {"answers": {"text": list(refs), "answer_start": [0] * len(refs)}, "id": str(i)}
        for i, refs in enumerate(references)
    ]
    scores = squad(preds, target)
    return {"exact_match": float(scores["exact_match"]), "f1": float(scores["f1"])}


def _rouge_scorer() -> Any:  # rouge_score.rouge_scorer.RougeScorer (rouge-score has no type hints)
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_scores(predictions: Sequence[str], references: References) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure; an example with several references takes the best of them."""
    scorer = _rouge_scorer()
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, refs in zip(predictions, references, strict=True):
        scores = scorer.score_multi(list(refs), prediction)
        for name in totals:
            totals[name] += scores[name].fmeasure
    return {name: 100 * total / max(len(predictions), 1) for name, total in totals.items()}


def _streams(references: References) -> list[list[str | None]]:
    """sacrebleu's layout: one stream per reference position (None where an example has fewer)."""
    width = max((len(refs) for refs in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def bleu_score(predictions: Sequence[str], references: References) -> dict[str, float]:
    """Corpus BLEU (sacrebleu's defaults: 13a tokenisation, exponential smoothing off)."""
    import sacrebleu

    return {"bleu": float(sacrebleu.corpus_bleu(list(predictions), _streams(references)).score)}


def chrf_score(predictions: Sequence[str], references: References) -> dict[str, float]:
    """Corpus chrF (character 6-grams, beta 2)."""
    import sacrebleu

    return {"chrf": float(sacrebleu.corpus_chrf(list(predictions), _streams(references)).score)}


def distinct_scores(predictions: Sequence[str], references: References | None = None) -> dict[str, float]:
    """distinct-1 and distinct-2 (Li et al. 2016): distinct n-grams / all n-grams over every
    prediction, on whitespace tokens. Written here: no maintained library provides it."""
    out = {}
    for n in (1, 2):
        grams = [tuple(words[i : i + n]) for words in map(str.split, predictions) for i in range(len(words) - n + 1)]
        out[f"distinct_{n}"] = 100 * len(set(grams)) / len(grams) if grams else 0.0
    return out


def relation_scores(predictions: Sequence[str], references: References) -> dict[str, float]:
    """Generated relation labels scored as SemEval-2010 Task 8 is (macro-F1 over the directed
    relations except ``Other``), plus exact-match accuracy; the first reference is the gold label."""
    from promptlearning.evaluation.metrics import semeval2010_macro_f1

    gold = [refs[0].strip() for refs in references]
    answers = [p.strip() for p in predictions]
    accuracy = 100 * sum(g == p for g, p in zip(gold, answers, strict=True)) / max(len(gold), 1)
    return {"semeval_macro_f1": semeval2010_macro_f1(gold, answers)["semeval_macro_f1"], "accuracy": accuracy}


METRICS: dict[str, Callable[[Sequence[str], References], dict[str, float]]] = {
    "squad": squad_scores,
    "rouge": rouge_scores,
    "bleu": bleu_score,
    "chrf": chrf_score,
    "distinct": distinct_scores,
    "relation": relation_scores,
}

# the number each metric is reported by (a run's headline is that of its first metric)
HEADLINES = {
    "squad": "f1",
    "rouge": "rougeL",
    "bleu": "bleu",
    "chrf": "chrf",
    "distinct": "distinct_2",
    "relation": "semeval_macro_f1",
    "perplexity": "perplexity",
}


def check_metric_names(names: Sequence[str]) -> list[str]:
    """The names, checked: an unknown one is an error that lists the available ones."""
    unknown = [name for name in names if name not in METRICS and name != "perplexity"]
    if unknown:
        raise PromptLearningError(
            f"unknown metric {', '.join(map(repr, unknown))}; available: {', '.join(sorted(HEADLINES))}"
        )
    return list(names)


def check_references(references: References) -> None:
    """Every example needs at least one non-empty reference."""
    for index, refs in enumerate(references):
        if isinstance(refs, str) or not refs or not any(r.strip() for r in refs):
            raise PromptLearningError(
                f"example {index} has no reference text (got {refs!r}); every example needs a non-empty reference"
            )


def text_metrics(names: Sequence[str], predictions: Sequence[str], references: References) -> dict[str, float]:
    """Every metric of ``names`` over the corpus, in one flat dictionary."""
    check_metric_names(names)
    check_references(references)
    if len(predictions) != len(references):
        raise PromptLearningError(f"{len(predictions)} predictions for {len(references)} examples")
    out: dict[str, float] = {}
    for name in names:
        if name in METRICS:  # perplexity needs the model: the task runner scores it
            out.update(METRICS[name](predictions, references))
    return out


def example_score(names: Sequence[str], prediction: str, references: Sequence[str]) -> float:
    """One number per example for ranking (worst first in reports): SQuAD F1, else ROUGE-L, else
    sentence chrF."""
    if "squad" in names:
        return squad_scores([prediction], [references])["f1"]
    if "relation" in names:
        return 100.0 * (prediction.strip() == references[0].strip())
    if "rouge" in names:
        return 100 * _rouge_scorer().score_multi(list(references), prediction)["rougeL"].fmeasure
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, list(references)).score)
