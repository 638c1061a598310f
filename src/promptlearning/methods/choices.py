"""Choosing among continuations: the log-likelihood of each choice after one context, and how the
probability mass splits over the choices (what ``promptlearning score`` prints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from promptlearning.errors import PromptLearningError
from promptlearning.models.interface import LanguageModel, LoglikelihoodResult, as_requests
from promptlearning.prompts.verbalizer import label_distribution


@dataclass
class ChoiceScore:
    """One choice: the model's scores of it, and its share of the probability among the choices."""

    choice: str
    result: LoglikelihoodResult
    probability: float


def check_choices(context: str, choices: Sequence[str]) -> None:
    """The checks :func:`score_choices` makes, callable before a model is loaded."""
    as_requests((context, choice) for choice in choices)
    if len(set(choices)) < len(choices):
        raise PromptLearningError(f"a choice is given twice: {list(choices)}")


def score_choices(
    model: LanguageModel, context: str, choices: Sequence[str], *, chat: bool = False
) -> list[ChoiceScore]:
    """Score every choice as the continuation of ``context`` (wrapped as a user turn in the model's chat
    template when ``chat``); probabilities are the softmax of the summed log-probabilities."""
    check_choices(context, choices)
    if chat:
        context = model.apply_chat_template([{"role": "user", "content": context}])
    results = model.loglikelihood([(context, choice) for choice in choices])
    shares = label_distribution({choice: r.logprob for choice, r in zip(choices, results, strict=True)})
    return [ChoiceScore(c, r, shares[c]) for c, r in zip(choices, results, strict=True)]
