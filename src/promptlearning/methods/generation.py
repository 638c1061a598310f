"""Prompted text generation (QA, summarization, translation, dialogue): a template, optional
demonstrations, decoding settings and an answer post-processing chain, scored with the text metrics
of :mod:`promptlearning.evaluation.text_metrics`."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.text_metrics import check_metric_names, example_score, text_metrics
from promptlearning.models.interface import GenerationConfig, LanguageModel
from promptlearning.prompts.template import Demonstration, PromptTemplate

POSTPROCESSORS: dict[str, Callable[[str], str]] = {
    "strip": str.strip,
    "first_line": lambda text: text.strip().split("\n", 1)[0].strip(),
    "first_sentence": lambda text: re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0],
    "lower": str.lower,
}


def postprocess(text: str, steps: Sequence[str], regex: str | None = None) -> str:
    """Apply ``steps`` in order, then keep the first group (or the whole match) of ``regex`` when it
    matches."""
    for step in steps:
        text = POSTPROCESSORS[step](text)
    if regex:
        match = re.search(regex, text)
        if match:
            text = (match.group(1) if match.groups() else match.group(0)).strip()
    return text


def check_postprocess(steps: Sequence[str], regex: str | None) -> None:
    unknown = [step for step in steps if step not in POSTPROCESSORS]
    if unknown:
        raise PromptLearningError(f"unknown post-processing step(s) {unknown}; available: {', '.join(POSTPROCESSORS)}")
    if regex:
        try:
            re.compile(regex)
        except re.error as exc:
            raise PromptLearningError(f"answer regex {regex!r} does not compile: {exc}") from None


def references_of(row: Mapping[str, Any], field_name: str) -> list[str]:
    """A row's references: a string or a list of strings (several references, as DialogSum's)."""
    value = row.get(field_name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise PromptLearningError(f"field {field_name!r} must be a reference text or a list of them, got {value!r}")


@dataclass
class GenerationEvaluation:
    """Corpus metrics, and per example: the prompt, raw output, answer, references and score."""

    metrics: dict[str, float]
    prompts: list[str]
    outputs: list[str]
    answers: list[str]
    references: list[list[str]]
    scores: list[float] = field(default_factory=list)

    def worst(self, n: int = 10) -> list[int]:
        """Indices of the ``n`` lowest-scoring examples, worst first."""
        return sorted(range(len(self.scores)), key=self.scores.__getitem__)[:n]


class PromptGenerator:
    """Answers by generating text after a prompt: zero-shot, or few-shot with ``shots``
    demonstrations from the ``fit`` pool (``first`` or ``random``), their answers taken from
    ``target_field``."""

    def __init__(
        self,
        model: LanguageModel,
        template: PromptTemplate | str,
        *,
        target_field: str,
        shots: int = 0,
        selection: Literal["first", "random"] = "random",
        config: GenerationConfig | None = None,
        steps: Sequence[str] = ("strip",),
        regex: str | None = None,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        check_postprocess(steps, regex)
        if selection not in ("first", "random"):
            raise PromptLearningError(f"demonstration selection must be 'first' or 'random', got {selection!r}")
        self.model = model
        self.template = PromptTemplate(template) if isinstance(template, str) else template
        self.target_field = target_field
        self.shots = shots
        self.selection = selection
        self.config = config or GenerationConfig(stop=["\n"])
        self.steps = list(steps)
        self.regex = regex
        self.seed = seed
        self.batch_size = batch_size
        self.demonstrations: list[Demonstration] = []

    def fit(self, pool: Sequence[Mapping[str, Any]] = ()) -> PromptGenerator:
        """Choose the demonstrations (none when ``shots`` is 0)."""
        if self.shots > len(pool):
            raise PromptLearningError(f"{self.shots} demonstrations asked for, but the pool has {len(pool)} examples")
        if self.selection == "first":
            chosen = list(pool[: self.shots])
        else:
            chosen = random.Random(self.seed).sample(list(pool), self.shots)
        self.demonstrations = [
            Demonstration(example, " " + references_of(example, self.target_field)[0].strip()) for example in chosen
        ]
        return self

    def prompt(self, example: Mapping[str, Any]) -> str:
        """The prompt for ``example``, its ``shorten`` field cut to leave room for the answer."""
        text = self.template.render_to_fit(
            example,
            self.demonstrations,
            budget=self.model.max_length - self.config.max_new_tokens,
            count_tokens=self.model.count_tokens,
            truncate=self.model.truncate,
            chat=self.model.apply_chat_template if self.template.mode == "chat" else None,
        )
        if not text.strip():
            raise PromptLearningError(f"the template gives an empty prompt for {dict(example)!r}")
        return text

    def predict(self, examples: Sequence[Mapping[str, Any]], *, progress: bool | None = None) -> list[str]:
        """Post-processed answers, one per example."""
        return self._run(examples, progress)[2]

    def _run(
        self, examples: Sequence[Mapping[str, Any]], progress: bool | None
    ) -> tuple[list[str], list[str], list[str]]:
        """(prompts, raw outputs, post-processed answers)."""
        prompts = [self.prompt(example) for example in examples]
        outputs = [
            g.text for g in self.model.generate(prompts, self.config, batch_size=self.batch_size, progress=progress)
        ]
        return prompts, outputs, [postprocess(text, self.steps, self.regex) for text in outputs]

    def evaluate(
        self,
        examples: Sequence[Mapping[str, Any]],
        metrics: Sequence[str],
        *,
        reference_field: str | None = None,
        progress: bool | None = None,
    ) -> GenerationEvaluation:
        """Generate for every example and score against ``reference_field`` (default: the target)."""
        check_metric_names(metrics)
        references = [references_of(row, reference_field or self.target_field) for row in examples]
        prompts, outputs, answers = self._run(examples, progress)
        return GenerationEvaluation(
            metrics=text_metrics(metrics, answers, references),
            prompts=prompts,
            outputs=outputs,
            answers=answers,
            references=references,
            scores=[example_score(metrics, a, refs) for a, refs in zip(answers, references, strict=True)],
        )
