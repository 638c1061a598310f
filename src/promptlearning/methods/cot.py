"""Chain-of-thought prompting: direct answers, few-shot CoT, zero-shot CoT and self-consistency.

* ``direct``: exemplars show only the answer ("The answer is 6."); the baseline without reasoning.
* ``few-shot-cot`` (Wei et al. 2022): exemplars show a rationale, then "The answer is N.".
* ``zero-shot-cot`` (Kojima et al. 2022): the answer slot starts with a reasoning trigger ("Let's
  think step by step."); a second prompt appends an answer-extraction trigger ("Therefore, the
  answer (arabic numerals) is") to the generated rationale and reads the number that follows.
* :class:`SelfConsistency` (Wang et al. 2023) wraps a :class:`ChainOfThought`: ``n`` sampled
  rationales per question (T = 0.7 unless set), each answer extracted, the majority answer wins
  (ties: the answer seen first).

Every question is answered by both extraction chains (``strict`` and ``flexible``, see
:mod:`promptlearning.methods.extraction`), and both accuracies are reported.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.methods.extraction import (
    ExtractionChain,
    FirstNumber,
    LastNumber,
    NormaliseNumber,
    normalise_reference,
    numeric_extractors,
)
from promptlearning.models.interface import GenerationConfig, LanguageModel
from promptlearning.prompts.examples import Example, as_examples
from promptlearning.prompts.template import PromptTemplate

MODES = ("direct", "few-shot-cot", "zero-shot-cot")
DEFAULT_STOP = ("Q:", "\n\n\n")


def gsm8k_rationale(answer: str, *, keep_calls: bool = False) -> tuple[str, str]:
    """A GSM8K solution as (rationale, final answer): calculator annotations ``<<…>>`` removed (unless
    ``keep_calls``), lines joined, the ``#### N`` line split off."""
    body, _, final = answer.rpartition("####")
    if not _:
        body, final = answer, ""
    if not keep_calls:
        body = re.sub(r"<<[^>]*>>", "", body)
    rationale = " ".join(line.strip() for line in body.splitlines() if line.strip())
    return rationale, final.strip()


@dataclass
class Solution:
    """The answer to one question: per-sample rationales and answers, and the vote."""

    question: str
    rationales: list[str]
    sample_answers: dict[str, list[str | None]]  # extractor name -> answer of each sample
    answers: dict[str, str | None]  # extractor name -> majority answer
    votes: dict[str, dict[str, int]]  # extractor name -> answer -> count
    generated_tokens: int

    @property
    def agreement(self) -> float:
        """Share of samples that gave the (flexible) majority answer."""
        name = "flexible" if "flexible" in self.votes else next(iter(self.votes))
        votes = self.votes[name]
        return max(votes.values()) / len(self.rationales) if votes else 0.0


def majority(answers: Sequence[str | None]) -> tuple[str | None, dict[str, int]]:
    """The most common non-empty answer (ties: the one seen first) and the vote counts."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, {}
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return winner, dict(counts.most_common())


def check_cot_settings(
    *,
    mode: str,
    exemplars: Sequence[Example] = (),
    n: int = 1,
    temperature: float | None = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 256,
    stop: Sequence[str] = DEFAULT_STOP,
) -> None:
    """The constructors' checks (of chain-of-thought and self-consistency), callable before a model is loaded."""
    if mode not in MODES:
        raise PromptLearningError(f"unknown chain-of-thought mode {mode!r}; use one of {', '.join(MODES)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise PromptLearningError(f"self-consistency needs n >= 1 samples, got {n!r}")
    GenerationConfig(  # validates the decoding settings
        max_new_tokens=max_new_tokens, temperature=temperature or 0.0, top_p=top_p, top_k=top_k, stop=list(stop)
    )
    exemplars = as_examples(exemplars, "exemplars")
    if mode == "few-shot-cot" and not exemplars:
        raise PromptLearningError("few-shot-cot needs exemplars (questions with rationale and answer)")
    for i, exemplar in enumerate(exemplars):
        needed = ["answer"] + (["rationale"] if mode != "direct" else [])
        missing = [f for f in needed if not str(exemplar.get(f, "")).strip()]
        if missing:
            raise PromptLearningError(f"exemplar {i} lacks {', '.join(missing)} (has {sorted(exemplar)})")


class ChainOfThought:
    """Answer questions with (or without) generated reasoning; see the module docstring.

    ``exemplars`` are mappings with the question field, ``rationale`` (not needed for ``direct``)
    and ``answer`` (the final answer); :meth:`fit` takes them from solved examples when none were
    given. ``template`` renders one question (``Q: {{ question }}\\nA:``); an exemplar continues it
    with ``" {rationale} The answer is {answer}."``. One rationale per question, greedy unless a
    ``temperature`` is given; wrap in :class:`SelfConsistency` to sample several and vote.
    """

    def __init__(
        self,
        model: LanguageModel,
        *,
        mode: str = "few-shot-cot",
        exemplars: Sequence[Example] = (),
        template: str | PromptTemplate = "Q: {{ question }}\nA:",
        separator: str = "\n\n",
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_new_tokens: int = 256,
        stop: Sequence[str] = DEFAULT_STOP,
        trigger: str = "Let's think step by step.",
        answer_trigger: str = "Therefore, the answer (arabic numerals) is",
        extractors: Mapping[str, ExtractionChain] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        calculator: bool = False,
    ) -> None:
        check_cot_settings(
            mode=mode, exemplars=exemplars, temperature=temperature, top_p=top_p, top_k=top_k,
            max_new_tokens=max_new_tokens, stop=stop,
        )  # fmt: skip
        self.model = model
        self.mode = mode
        self.calculator = calculator
        self.template = template if isinstance(template, PromptTemplate) else PromptTemplate(template)
        self.separator = separator
        self.temperature = temperature
        self.top_p, self.top_k = top_p, top_k
        self.max_new_tokens = max_new_tokens
        self.stop = list(stop)
        self.trigger = trigger
        self.answer_trigger = answer_trigger
        self.extractors = dict(extractors or numeric_extractors())
        self.seed = seed
        self.batch_size = batch_size
        self.exemplars = [dict(e) for e in exemplars]
        self.last_seconds = 0.0

    # ------------------------------------------------------------------ prompts

    @cached_property
    def exemplar_block(self) -> str:
        """The demonstrations shared by every prompt (empty for zero-shot modes)."""
        if self.mode == "zero-shot-cot":
            return ""
        parts = []
        for exemplar in self.exemplars:
            answer = f"The answer is {exemplar['answer']}."
            if self.mode == "few-shot-cot":
                answer = f"{str(exemplar['rationale']).strip()} {answer}"
            parts.append(f"{self.template.render(exemplar)} {answer}")
        return "".join(part + self.separator for part in parts)

    def prompt(self, example: Example) -> str:
        """The full prompt of one question: exemplars, the question, the answer slot."""
        missing = [f for f in self.template.input_fields if f not in example]
        if missing:
            raise PromptLearningError(
                f"a question has no field {missing[0]!r} (it has {sorted(example)}); set the question field "
                "(data.question_field) or the template to match your data"
            )
        if not self._question(example).strip():
            raise PromptLearningError("empty question: nothing to reason about")
        text = self.exemplar_block + self.template.render(example)
        if self.mode == "zero-shot-cot":
            text += " " + self.trigger
        return text

    def _question(self, example: Example) -> str:
        fields = self.template.input_fields
        return " ".join(str(example.get(f, "")) for f in fields)

    def generation_config(self, temperature: float | None = None) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
            stop=self.stop,
            calculator=self.calculator,
        )

    # ------------------------------------------------------------------ solving

    def fit(self, examples: Iterable[Example] = ()) -> ChainOfThought:
        """Take exemplars from solved ``examples`` (question, rationale, answer) when none were given."""
        solved = as_examples(examples, "fit")
        if solved and not self.exemplars:
            check_cot_settings(mode=self.mode, exemplars=solved)
            self.exemplars = [dict(e) for e in solved]
            self.__dict__.pop("exemplar_block", None)
        return self

    def predict(self, inputs: Iterable[Example], *, progress: bool | None = None) -> list[Solution]:
        return self.solve(inputs, progress=progress)

    def solve(
        self,
        examples: Iterable[Example],
        *,
        samples: int = 1,
        temperature: float | None = None,
        progress: bool | None = None,
    ) -> list[Solution]:
        """Answer every example (a mapping with the template's fields) from ``samples`` rationales
        each (their majority answer); ``temperature`` overrides the method's own for these samples."""
        examples = as_examples(examples, "solve")
        if not examples:
            raise PromptLearningError("no questions to answer: the list is empty")
        prompts = [self.prompt(ex) for ex in examples]
        budget = self.model.max_length - self.max_new_tokens
        for example, prompt in zip(examples, prompts, strict=True):
            used = self.model.count_tokens(prompt)
            if used > budget:
                raise PromptTooLongError(
                    f"a prompt takes {used} tokens; with max_new_tokens={self.max_new_tokens} the model's "
                    f"{self.model.max_length}-token context leaves {budget} (question starts "
                    f"{self._question(example)[:60]!r}); shorten it, use fewer exemplars or fewer new tokens"
                )
        start = time.perf_counter()
        config = self.generation_config(temperature)
        if samples == 1:
            outputs = [[g] for g in self.model.generate(prompts, config, batch_size=self.batch_size, progress=progress)]
        else:
            outputs = self.model.sample(prompts, config, n=samples, batch_size=self.batch_size, progress=progress)
        texts = [[g.text for g in row] for row in outputs]
        tokens = [sum(g.num_tokens for g in row) for row in outputs]
        answer_texts = texts
        if self.mode == "zero-shot-cot":
            answer_texts, extra = self._second_stage(prompts, texts, progress)
            tokens = [t + e for t, e in zip(tokens, extra, strict=True)]
        self.last_seconds = time.perf_counter() - start
        return [
            self._solution(ex, rationales, answers, n_tokens)
            for ex, rationales, answers, n_tokens in zip(examples, texts, answer_texts, tokens, strict=True)
        ]

    def _second_stage(
        self, prompts: list[str], rationales: list[list[str]], progress: bool | None
    ) -> tuple[list[list[str]], list[int]]:
        """Kojima et al.'s answer extraction: prompt + rationale + trigger, a few greedy tokens."""
        flat = [
            f"{prompt} {rationale.strip()}\n{self.answer_trigger}"
            for prompt, row in zip(prompts, rationales, strict=True)
            for rationale in row
        ]
        config = GenerationConfig(max_new_tokens=16, stop=["\n", *self.stop])
        outputs = self.model.generate(flat, config, batch_size=self.batch_size, progress=progress)
        answers, extra, position = [], [], 0
        for row in rationales:
            chunk = outputs[position : position + len(row)]
            position += len(row)
            answers.append([f"{self.answer_trigger}{g.text}" for g in chunk])
            extra.append(sum(g.num_tokens for g in chunk))
        return answers, extra

    def _extract(self, name: str, chain: ExtractionChain, rationale: str, answer_text: str) -> str | None:
        if self.mode != "zero-shot-cot":
            return chain(rationale)
        # Kojima et al.: the number right after the answer trigger. Flexible falls back to the
        # last number of the rationale when the second stage gives none.
        after = answer_text[len(self.answer_trigger) :]
        if name not in ("strict", "flexible"):
            return chain(after)
        first = ExtractionChain([FirstNumber(), NormaliseNumber()])(after)
        if name == "strict" or first is not None:
            return first
        return ExtractionChain([LastNumber(), NormaliseNumber()])(rationale)

    def _solution(self, example: Example, rationales: list[str], answer_texts: list[str], n_tokens: int) -> Solution:
        sample_answers = {
            name: [self._extract(name, chain, r, a) for r, a in zip(rationales, answer_texts, strict=True)]
            for name, chain in self.extractors.items()
        }
        answers, votes = {}, {}
        for name, per_sample in sample_answers.items():
            answers[name], votes[name] = majority(per_sample)
        if self.mode == "zero-shot-cot":
            rationales = [f"{r.strip()}\n{a}" for r, a in zip(rationales, answer_texts, strict=True)]
        return Solution(self._question(example), rationales, sample_answers, answers, votes, n_tokens)

    def evaluate(
        self, examples: Iterable[Example], *, answer_field: str = "final", progress: bool | None = None
    ) -> CoTEvaluation:
        """Solve and score against ``answer_field`` (GSM8K's ``final``; a ``#### N`` solution works too)."""
        return evaluate_solver(self, examples, answer_field=answer_field, progress=progress)


class SelfConsistency:
    """Self-consistency (Wang et al. 2023) around a :class:`ChainOfThought`: ``n`` rationales sampled
    at ``temperature`` per question, the majority of their answers wins. Sample ``j`` of every question
    is seeded by ``(seed, j)``, so answers do not depend on batching."""

    def __init__(self, cot: ChainOfThought, n: int = 5, *, temperature: float = 0.7) -> None:
        check_cot_settings(mode=cot.mode, exemplars=cot.exemplars, n=n, temperature=temperature)
        self.cot = cot
        self.n = n
        self.temperature = temperature

    def __getattr__(self, name: str) -> Any:  # model, mode, exemplars, extractors … of the wrapped method
        return getattr(self.__dict__["cot"], name)

    def fit(self, examples: Iterable[Example] = ()) -> SelfConsistency:
        self.cot.fit(examples)
        return self

    def predict(self, inputs: Iterable[Example], *, progress: bool | None = None) -> list[Solution]:
        return self.solve(inputs, progress=progress)

    def solve(self, examples: Iterable[Example], *, progress: bool | None = None) -> list[Solution]:
        return self.cot.solve(examples, samples=self.n, temperature=self.temperature, progress=progress)

    def evaluate(
        self, examples: Iterable[Example], *, answer_field: str = "final", progress: bool | None = None
    ) -> CoTEvaluation:
        return evaluate_solver(self, examples, answer_field=answer_field, progress=progress)


def evaluate_solver(
    solver: Any, examples: Iterable[Example], *, answer_field: str = "final", progress: bool | None = None
) -> CoTEvaluation:
    """Solve ``examples`` with a chain-of-thought method and score each extraction chain."""
    examples = as_examples(examples, "evaluate")
    if not examples:
        raise PromptLearningError("cannot evaluate on an empty dataset")
    gold = [reference_answer(ex, answer_field) for ex in examples]
    solutions = solver.solve(examples, progress=progress)
    return CoTEvaluation.build(solutions, gold, solver.last_seconds, list(solver.extractors))


def reference_answer(example: Example, answer_field: str = "final") -> str | None:
    if answer_field in example:
        value = str(example[answer_field])
    elif "answer" in example:
        value = str(example["answer"]).rpartition("####")[2]
    else:
        raise PromptLearningError(f"example has no {answer_field!r} field (fields: {sorted(example)})")
    return normalise_reference(value)


def sample_curve(solutions: Sequence[Solution], gold: Sequence[str | None], name: str) -> dict[int, float]:
    """Accuracy of the majority vote over the first k samples, for k = 1, 3, 5, …, n."""
    n = min(len(s.rationales) for s in solutions)
    ks = sorted({1, *range(3, n + 1, 2), n})
    curve = {}
    for k in ks:
        correct = sum(
            majority(s.sample_answers[name][:k])[0] == g and g is not None for s, g in zip(solutions, gold, strict=True)
        )
        curve[k] = correct / len(solutions)
    return curve


@dataclass
class CoTEvaluation:
    """Accuracy per extraction chain, the self-consistency curve and generation speed."""

    metrics: dict[str, Any]
    solutions: list[Solution]
    gold: list[str | None]
    curves: dict[str, dict[int, float]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, solutions: list[Solution], gold: list[str | None], seconds: float, names: Sequence[str]
    ) -> CoTEvaluation:
        metrics: dict[str, Any] = {"questions": len(solutions), "samples": len(solutions[0].rationales)}
        for name in names:
            pairs = zip(solutions, gold, strict=True)
            correct = [s.answers[name] is not None and s.answers[name] == g for s, g in pairs]
            metrics[f"accuracy_{name}"] = sum(correct) / len(solutions)
            metrics[f"no_answer_{name}"] = sum(s.answers[name] is None for s in solutions) / len(solutions)
        generated = sum(s.generated_tokens for s in solutions)
        metrics["agreement"] = sum(s.agreement for s in solutions) / len(solutions)
        metrics["generated_tokens"] = generated
        metrics["seconds"] = seconds
        metrics["tokens_per_second"] = generated / seconds if seconds else 0.0
        metrics["questions_per_second"] = len(solutions) / seconds if seconds else 0.0
        curves = {name: sample_curve(solutions, gold, name) for name in names}
        return cls(metrics=metrics, solutions=solutions, gold=gold, curves=curves)

    def summary_lines(self) -> list[str]:
        """What a terminal shows besides the headline: samples, speed and the self-consistency curve."""
        m = self.metrics
        lines = [f"{m['questions']} questions x {m['samples']} samples, {m['generated_tokens']} tokens, "
                 f"{m['tokens_per_second']:.1f} tokens/s"]  # fmt: skip
        curve = self.curves.get("flexible", {})
        if len(curve) > 1:
            points = ", ".join(f"{k}: {v:.4f}" for k, v in curve.items())
            lines.append(f"flexible accuracy by number of samples: {points}")
        return lines
