"""Prompt-based classification: zero-shot and in-context learning.

A :class:`PromptClassifier` renders each example with a template (after ``k`` demonstrations for
``icl``), asks the model for the log-likelihood of every label word, aggregates the words of each
label with the verbalizer and predicts the most probable label. Everything goes to the model as one
``loglikelihood`` call, so the backend can share work (label words of one prompt, demonstrations of
all prompts). Calibration and ensembles over demonstration orderings wrap a classifier
(:class:`~promptlearning.methods.calibration.Calibrated`, :class:`OrderingEnsemble`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from functools import cached_property, partial
from typing import Any

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.methods.base import (
    ClassifierMixin,
    ClassifierWrapper,
    EmptyDataError,
    Evaluation,
    Prediction,
    mean_distribution,
)
from promptlearning.models.embedding_cache import embed_cached
from promptlearning.models.interface import LanguageModel, LoglikelihoodRequest
from promptlearning.prompts.demonstrations import SELECTIONS, DemonstrationError, NearestNeighbours, select_fixed
from promptlearning.prompts.examples import Example, as_examples
from promptlearning.prompts.template import Demonstration, PromptTemplate, split_at_blank
from promptlearning.prompts.verbalizer import Verbalizer, label_distribution

METHODS = ("zero-shot", "icl")
SCORINGS = ("direct", "channel")
_INPUT_MARK = "\x00input\x00"  # stands for the input in a rendered template (channel scoring splits there)

__all__ = ["METHODS", "EmptyDataError", "Evaluation", "OrderingEnsemble", "Prediction", "PromptClassifier"]


def check_classifier_settings(*, method: str, shots: int, selection: str, scoring: str = "direct") -> None:
    """The constructor's checks of its settings, callable before any model is loaded."""
    if scoring not in SCORINGS:
        raise PromptLearningError(f"unknown scoring {scoring!r}; use one of {', '.join(SCORINGS)}")
    if method not in METHODS:
        raise PromptLearningError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    if selection not in SELECTIONS:
        raise DemonstrationError(f"unknown selection {selection!r}; use one of {', '.join(SELECTIONS)}")
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
        raise DemonstrationError(f"shots must be a whole number >= 0, got {shots!r}")
    if method == "zero-shot" and shots:
        raise PromptLearningError(f"zero-shot takes no demonstrations (shots={shots}); use method 'icl'")
    if method == "icl" and shots < 1:
        raise DemonstrationError(f"icl needs shots >= 1, got {shots}")


class PromptClassifier(ClassifierMixin):
    """Turn a language model into a classifier with a template and a verbalizer.

    ``method`` is ``"zero-shot"`` or ``"icl"`` (``shots`` demonstrations chosen by ``selection``:
    ``random``, ``balanced``, ``first`` or ``knn``). Call :meth:`fit` with the training pool (may be
    empty for zero-shot), then :meth:`predict`; probabilities are the softmax of the label scores
    (uncalibrated: wrap the classifier in ``Calibrated`` to correct them).

    ``scoring="channel"`` (Min et al. 2022, "Noisy Channel Language Model Prompting") scores the input
    given each label instead of the label given the input: the template's text after the input, with
    the label word, comes first, then the text before the input, and the input's own tokens are
    scored (``Review: {{ text }}\nSentiment:`` becomes ``Sentiment: positive\nReview: <scored text>``).
    Demonstrations are shown in the same order. It needs a plain template with one input field.
    """

    def __init__(
        self,
        model: LanguageModel,
        template: PromptTemplate,
        verbalizer: Verbalizer,
        *,
        method: str = "zero-shot",
        shots: int = 0,
        selection: str = "random",
        label_field: str = "label",
        seed: int = 0,
        embedder: LanguageModel | str | None = None,
        max_length: int | None = None,
        scoring: str = "direct",
    ) -> None:
        check_classifier_settings(method=method, shots=shots, selection=selection, scoring=scoring)
        if not isinstance(template, PromptTemplate):
            raise PromptLearningError(f"template must be a PromptTemplate, got {type(template).__name__}")
        if not isinstance(verbalizer, Verbalizer):
            raise PromptLearningError(f"verbalizer must be a Verbalizer, got {type(verbalizer).__name__}")
        self.model = model
        self.template = template
        self.verbalizer = verbalizer
        self.method = method
        self.shots = shots
        self.selection = selection
        self.label_field = label_field
        self.seed = seed
        self.embedder = embedder
        self.max_length = max_length  # prompt + answer tokens at most (default: the model's context)
        self.scoring = scoring
        if scoring == "channel":
            check_channel_template(template, verbalizer)
        self.pool: list[Example] = []
        self.fixed_demonstrations: list[int] = []
        self._neighbours: NearestNeighbours | None = None
        self._fitted = False

    @property
    def labels(self) -> list[str]:
        return self.verbalizer.labels

    def check_gold(self, labels: Sequence[str]) -> None:
        self.verbalizer.check_labels(labels)

    # ------------------------------------------------------------------ fitting

    def fit(self, train: Iterable[Example] = ()) -> PromptClassifier:
        """Choose demonstrations from ``train`` (and embed it for kNN)."""
        self.pool = as_examples(train, "fit")
        if self.method == "icl":
            if not self.pool:
                raise EmptyDataError("icl needs a training pool to draw demonstrations from; it is empty")
            missing = [i for i, ex in enumerate(self.pool) if self.label_field not in ex]
            if missing:
                raise PromptLearningError(
                    f"training example {missing[0]} has no {self.label_field!r} field (fields: {sorted(self.pool[0])})"
                )
            self.verbalizer.check_labels(ex[self.label_field] for ex in self.pool)
            if self.uses_knn:
                if self.shots > len(self.pool):
                    raise DemonstrationError(
                        f"{self.shots} shots asked for, but the training pool has only {len(self.pool)} examples"
                    )
                embedder = self._embedder()
                self._neighbours = NearestNeighbours(
                    [self.template.render_input(ex) for ex in self.pool], embedder.embed,
                    embed_pool=partial(embed_cached, embedder),
                )  # fmt: skip
            else:
                self.fixed_demonstrations = select_fixed(
                    self.pool, self.shots, self.selection, label_field=self.label_field, seed=self.seed
                )
        self._fitted = True
        return self

    @property
    def uses_knn(self) -> bool:
        return self.method == "icl" and self.selection == "knn"

    def _embedder(self) -> LanguageModel:
        if not isinstance(self.embedder, LanguageModel):
            from promptlearning.models import load_embedder

            self.embedder = load_embedder(self.embedder)
        return self.embedder

    # ------------------------------------------------------------------ prompts

    def demonstrations(self, indices: Sequence[int]) -> list[Demonstration]:
        return [
            Demonstration(self.pool[i], self.verbalizer.answer(str(self.pool[i][self.label_field]))) for i in indices
        ]

    def demonstration_sets(self, examples: Sequence[Example]) -> list[list[int]]:
        """The demonstrations (pool indices) each example is shown: the fixed ones, or its nearest."""
        if self._neighbours is not None:
            return self._neighbours.select([self.template.render_input(ex) for ex in examples], self.shots)
        return [list(self.fixed_demonstrations)] * len(examples)

    def prompt(self, example: Example, demonstration_indices: Sequence[int] = ()) -> str:
        """The prompt the model continues with a label word, shortened to fit the context window."""
        chat = self.model.apply_chat_template if self.template.mode == "chat" else None
        return self.template.render_to_fit(
            example,
            self.demonstrations(demonstration_indices),
            budget=self.context_length - self.answer_tokens,
            count_tokens=self.model.count_tokens,
            truncate=self.model.truncate,
            chat=chat,
        )

    @property
    def context_length(self) -> int:
        """Tokens a prompt and its answer may take: the model's context, or less when asked."""
        if self.max_length is None:
            return self.model.max_length
        return min(self.max_length, self.model.max_length)

    @cached_property
    def answer_tokens(self) -> int:
        """Tokens to keep free after the prompt: the longest label word."""
        words = [w for ws in self.verbalizer.label_words.values() for w in ws]
        return max(self.model.count_tokens(self.template.answer_text(w)) for w in words)

    def word_requests(self, prompts: Sequence[str], words: Sequence[str]) -> list[LoglikelihoodRequest]:
        """Each of ``words`` after (or in the blank of) each prompt, prompt by prompt: the requests
        that score any candidate label words the way :meth:`predict` scores its own."""
        out = []
        for prompt in prompts:
            context, suffix = split_at_blank(prompt)
            for word in words:
                answer = self.template.answer_text(word)
                if context[-1:].isspace():  # the template spaces the blank itself: "it was {{ mask }}"
                    answer = answer.lstrip()
                out.append(LoglikelihoodRequest(context, answer, suffix))
        return out

    def requests(
        self, examples: Iterable[Example], demonstrations: Sequence[Sequence[int]] | None = None
    ) -> list[LoglikelihoodRequest]:
        """The ``loglikelihood`` requests that :meth:`predict` sends for ``examples``."""
        examples = as_examples(examples, "requests")
        demo_sets = demonstrations if demonstrations is not None else self.demonstration_sets(examples)
        words = [word for label_words in self.verbalizer.label_words.values() for word in label_words]
        return self.scoring_requests(examples, words, demo_sets)

    def scoring_requests(
        self, examples: Sequence[Example], words: Sequence[str], demonstrations: Sequence[Sequence[int]]
    ) -> list[LoglikelihoodRequest]:
        """Each of ``words`` for each example (with its demonstrations), example by example, scored as
        this classifier scores: a label word after the prompt, or (channel) the input after the word."""
        if self.scoring == "channel":
            return [self._channel_request(ex, demos, word)
                    for ex, demos in zip(examples, demonstrations, strict=True) for word in words]  # fmt: skip
        return self.word_requests([self.prompt(ex, demos) for ex, demos in zip(examples, demonstrations, strict=True)],
                                  words)  # fmt: skip

    # ------------------------------------------------------------------ channel scoring

    def _channel_request(self, example: Example, demonstrations: Sequence[int], word: str) -> LoglikelihoodRequest:
        """``instruction, demonstrations, <label statement>\n<text before the input>`` then the input."""
        field = self.template.input_fields[0]
        before, after = self._channel_frame
        parts = [self.template.instruction] if self.template.instruction else []
        for demo in self.demonstrations(demonstrations):
            parts.append(f"{channel_statement(after, demo.answer)}\n{before}{demo.example[field]}")
        context = self.template.separator.join([*parts, f"{channel_statement(after, word)}\n{before}"])
        text = str(example[field]) if example.get(field) is not None else ""
        text = text if text.strip() else "N/A"  # an empty input (a content-free one) has nothing to score
        room = self.context_length - self.model.count_tokens(context)
        if self.model.count_tokens(text) > room:
            if self.template.shorten != field or room < 1:
                raise PromptTooLongError(
                    f"channel scoring: the input does not fit in the {room} tokens left after the label and "
                    "demonstrations (set `shorten: <field>` to cut it)"
                )
            text = self.model.truncate(text, room)
        return LoglikelihoodRequest(context, text)

    @cached_property
    def _channel_frame(self) -> tuple[str, str]:
        """The rendered template's text before and after its input."""
        field = self.template.input_fields[0]
        before, _, after = self.template.render_input({field: _INPUT_MARK}).partition(_INPUT_MARK)
        return before, after

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        examples: Iterable[Example],
        *,
        demonstrations: Sequence[Sequence[int]] | None = None,
        progress: bool | None = None,
    ) -> list[Prediction]:
        """Predict a label for each example; ``demonstrations`` (pool indices per example) replaces
        the classifier's own choice (wrappers use it to try other orderings or content-free inputs)."""
        if not self._fitted:
            raise PromptLearningError("call fit(train) before predict (fit() with no pool for zero-shot)")
        examples = as_examples(examples, "predict")
        if not examples:
            raise EmptyDataError("nothing to predict: the example list is empty")
        demo_sets = [list(d) for d in demonstrations] if demonstrations is not None else None
        if demo_sets is None:
            demo_sets = self.demonstration_sets(examples)
        if len(demo_sets) != len(examples):
            raise PromptLearningError(f"{len(examples)} examples but {len(demo_sets)} demonstration sets")
        requests = self.requests(examples, demo_sets)
        results = self.model.loglikelihood(requests, progress=progress)
        predictions, position = [], 0
        for demos in demo_sets:
            per_label = {}
            for label, words in self.verbalizer.label_words.items():
                per_label[label] = results[position : position + len(words)]
                position += len(words)
            scores = self.verbalizer.label_scores(per_label)
            probabilities = label_distribution(scores)
            label = max(probabilities, key=probabilities.__getitem__)
            predictions.append(Prediction(label, probabilities, scores, demos))
        return predictions


def check_channel_template(template: PromptTemplate, verbalizer: Verbalizer) -> None:
    """What channel scoring needs of a template and verbalizer (before any model is loaded)."""
    if template.mode == "chat" or template.has_blank:
        raise PromptLearningError(
            "channel scoring needs a plain template whose label follows the input (not a chat or cloze template)"
        )
    if len(template.input_fields) != 1:
        raise PromptLearningError(
            f"channel scoring scores the input given the label: it needs a template with one input field, this "
            f"one reads {template.input_fields}"
        )
    if verbalizer.word_score not in ("sum", "mean"):
        raise PromptLearningError(
            f"channel scoring scores the input, not the label words: word_score must be sum or mean, "
            f"not {verbalizer.word_score!r}"
        )


def channel_statement(after: str, word: str) -> str:
    """The label stated first, as the template states it after the input: ``Sentiment: positive``."""
    return (after.strip() + word).strip() if after.strip() else word.strip()


class OrderingEnsemble(ClassifierWrapper):
    """Average a classifier's (or a calibrated classifier's) label distributions over several orderings
    of the same fixed demonstrations: small models are sensitive to the order (Lu et al. 2022)."""

    def __init__(self, classifier: Any, orderings: int = 4, *, seed: int = 0) -> None:
        if not isinstance(orderings, int) or orderings < 1:
            raise PromptLearningError(f"orderings must be >= 1, got {orderings!r}")
        super().__init__(classifier)
        self.orderings = orderings
        self.seed = seed
        self.demonstration_orderings: list[list[int]] = [[]]

    def fit(self, train: Iterable[Example] = ()) -> OrderingEnsemble:
        self.classifier.fit(train)
        if getattr(self.classifier, "uses_knn", False) or not self.classifier.fixed_demonstrations:
            raise PromptLearningError(
                "orderings > 1 averages orderings of fixed demonstrations: it needs method 'icl' with selection "
                "random, balanced or first"
            )
        base = list(self.classifier.fixed_demonstrations)
        rng = random.Random(f"orderings-{self.seed}")
        self.demonstration_orderings = [base] + [rng.sample(base, len(base)) for _ in range(self.orderings - 1)]
        return self

    def predict(self, examples: Iterable[Example], *, progress: bool | None = None) -> list[Prediction]:
        examples = as_examples(examples, "predict")
        runs = [
            self.classifier.predict(examples, demonstrations=[order] * len(examples), progress=progress)
            for order in self.demonstration_orderings
        ]
        out = []
        for i in range(len(examples)):
            probabilities = mean_distribution([run[i].probabilities for run in runs])
            scores = mean_distribution([run[i].label_scores for run in runs], normalise=False)
            label = max(probabilities, key=probabilities.__getitem__)
            out.append(Prediction(label, probabilities, scores, list(runs[0][i].demonstrations)))
        return out
