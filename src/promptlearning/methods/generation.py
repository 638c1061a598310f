"""Prompted text generation (QA, summarization, translation, dialogue): a template, optional
demonstrations, decoding settings and an answer post-processing chain, scored with the text metrics
of :mod:`promptlearning.evaluation.text_metrics`."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.text_metrics import (
    check_metric_names,
    check_references,
    example_score,
    text_metrics,
)
from promptlearning.models.embedding_cache import embed_cached
from promptlearning.models.interface import GenerationConfig, LanguageModel
from promptlearning.prompts.demonstrations import NearestNeighbours
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


GENERATION_SELECTIONS: tuple[str, ...] = ("random", "first", "length", "knn")


def select_by_length(lengths: Sequence[int], k: int, seed: int) -> list[int]:
    """``k`` indices spread over the length distribution: the pool sorted by length is cut into ``k``
    equal bins and one example is drawn from each, so short and long answers are both shown."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    rng = random.Random(seed)
    chosen = [rng.choice(order[b * len(order) // k : (b + 1) * len(order) // k]) for b in range(k)]
    rng.shuffle(chosen)
    return chosen


class PromptGenerator:
    """Answers by generating text after a prompt: zero-shot, or few-shot with ``shots``
    demonstrations from the ``fit`` pool, their answers taken from ``target_field``.

    ``selection``: ``random`` (seeded), ``first`` (pool order), ``length`` (one per length bin, so
    short and long answers are shown) or ``knn`` (per query, its nearest pool examples by
    sentence-embedding similarity, nearest last; ``embedder``: a loaded encoder, an embedded name or
    a sentence-transformers directory, default ``minilm-l6``).
    """

    def __init__(
        self,
        model: LanguageModel,
        template: PromptTemplate | str,
        *,
        target_field: str,
        shots: int = 0,
        selection: Literal["random", "first", "length", "knn"] = "random",
        config: GenerationConfig | None = None,
        steps: Sequence[str] = ("strip",),
        regex: str | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        embedder: LanguageModel | str | None = None,
    ) -> None:
        check_postprocess(steps, regex)
        if selection not in GENERATION_SELECTIONS:
            raise PromptLearningError(
                f"demonstration selection must be one of {', '.join(GENERATION_SELECTIONS)}, got {selection!r}"
            )
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
        self.embedder = embedder
        self.demonstrations: list[Demonstration] = []
        self._pool: list[Demonstration] = []
        self._neighbours: NearestNeighbours | None = None

    def _demonstration(self, example: Mapping[str, Any]) -> Demonstration:
        return Demonstration(example, " " + references_of(example, self.target_field)[0].strip())

    def fit(self, pool: Sequence[Mapping[str, Any]] = ()) -> PromptGenerator:
        """Choose the demonstrations (none when ``shots`` is 0; for ``knn``, embed the pool)."""
        if self.shots > len(pool):
            raise PromptLearningError(f"{self.shots} demonstrations asked for, but the pool has {len(pool)} examples")
        self.demonstrations, self._neighbours = [], None
        if not self.shots:
            return self
        if self.selection == "knn":
            from promptlearning.models import load_embedder

            self._pool = [self._demonstration(example) for example in pool]
            self.embedder = load_embedder(self.embedder)
            texts = [self.template.render_input(d.example) for d in self._pool]
            self._neighbours = NearestNeighbours(
                texts, self.embedder.embed, embed_pool=partial(embed_cached, self.embedder)
            )
            return self
        if self.selection == "first":
            chosen = list(range(self.shots))
        elif self.selection == "length":
            lengths = [len(references_of(example, self.target_field)[0].split()) for example in pool]
            chosen = select_by_length(lengths, self.shots, self.seed)
        else:
            chosen = random.Random(self.seed).sample(range(len(pool)), self.shots)
        self.demonstrations = [self._demonstration(pool[i]) for i in chosen]
        return self

    def demonstrations_for(self, examples: Sequence[Mapping[str, Any]]) -> list[list[Demonstration]]:
        """Each example's demonstrations (the shared ones, or its nearest neighbours)."""
        if self._neighbours is None:
            return [self.demonstrations] * len(examples)
        queries = [self.template.render_input(example) for example in examples]
        return [[self._pool[i] for i in row] for row in self._neighbours.select(queries, self.shots)]

    def prompt(self, example: Mapping[str, Any], demonstrations: Sequence[Demonstration] | None = None) -> str:
        """The prompt for ``example``, its ``shorten`` field cut to leave room for the answer."""
        if demonstrations is None:
            demonstrations = self.demonstrations_for([example])[0]
        text = self.template.render_to_fit(
            example,
            demonstrations,
            budget=self.model.max_length - self.config.max_new_tokens,
            count_tokens=self.model.count_tokens,
            truncate=self.model.truncate,
            chat=self.model.apply_chat_template if self.template.mode == "chat" else None,
        )
        if not text.strip():
            raise PromptLearningError(f"the template gives an empty prompt for {dict(example)!r}")
        return text

    def prompts(self, examples: Sequence[Mapping[str, Any]]) -> list[str]:
        return [self.prompt(ex, demos) for ex, demos in zip(examples, self.demonstrations_for(examples), strict=True)]

    def perplexity(
        self, prompts: Sequence[str], references: Sequence[str], *, progress: bool | None = None
    ) -> dict[str, float]:
        """Perplexity of the reference texts after their prompts (dialogue: of the reference turn),
        over all reference tokens: exp(-sum log p / tokens)."""
        requests = [(prompt, " " + ref.strip()) for prompt, ref in zip(prompts, references, strict=True)]
        results = self.model.loglikelihood(requests, batch_size=self.batch_size, progress=progress)
        tokens = sum(r.num_tokens for r in results)
        return {"perplexity": math.exp(-math.fsum(r.logprob for r in results) / max(tokens, 1))}

    def predict(self, examples: Sequence[Mapping[str, Any]], *, progress: bool | None = None) -> list[str]:
        """Post-processed answers, one per example."""
        return self.generate(examples, progress=progress)[2]

    def generate(
        self, examples: Sequence[Mapping[str, Any]], *, progress: bool | None = None
    ) -> tuple[list[str], list[str], list[str]]:
        """(prompts, raw outputs, post-processed answers), one each per example."""
        prompts = self.prompts(examples)
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
        check_references(references)  # before any generation
        prompts, outputs, answers = self.generate(examples, progress=progress)
        scores = text_metrics(metrics, answers, references)
        if "perplexity" in metrics:
            scores.update(self.perplexity(prompts, [refs[0] for refs in references], progress=progress))
        return GenerationEvaluation(
            metrics=scores,
            prompts=prompts,
            outputs=outputs,
            answers=answers,
            references=references,
            scores=[example_score(metrics, a, refs) for a, refs in zip(answers, references, strict=True)],
        )
