"""``promptlearning search TASK.yaml``: find label words, a template and demonstrations for a
classification task on a dev split, then evaluate the winner on the task's eval split once.

Stages, each scored on dev through one :class:`~promptlearning.search.scoring.ScoreCache`:

1. label words — LM-BFF candidates from the seed template, assignments ranked on the proposal
   examples (the best few also added to the task's own words), the best few kept by dev score;
2. templates — pattern families and APE instructions, each with the kept label words, uncalibrated,
   batch-calibrated and calibrated by content-free inputs; the top ones are also ensembled;
3. demonstrations — bootstrapped and random sets (``shots`` > 0), scored with the best prompt;
4. confirmation — the best few configurations on dev and the task's own prompt are scored once more on
   a fresh sample (``confirm_size`` examples held out of train, disjoint from dev and the pool; with a
   dev file, held out of that file), and
   the best there wins, the task's own prompt on a tie. The dev winner of hundreds of candidates is
   the luckiest as much as the best (its dev score is biased upwards); the confirmation scores are not.

Every configuration is scored with each calibration (none, batch, and the task's content-free kind:
contextual, or domain when the task calibrates so), and the task's own prompt is scored as it runs,
with its own calibration and, for few-shot tasks, the demonstrations its selection picks from the pool
(kNN selection, per example, is the exception: that seed is scored zero-shot). Dev is a seeded sample
held out of the training file (or ``--dev FILE``); demonstrations and proposals come from the rest.
The budget counts dev prompts scored by the model (not the few content-free prompts of each template,
nor the task's own few-shot prompt, the reference rather than a candidate, nor the confirmation:
finalists × its size).
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.io import write_atomically, write_json_atomically
from promptlearning.loading import keep_min_words, load_examples, task_data_root
from promptlearning.methods.calibration import domain_content_free_inputs
from promptlearning.methods.ensemble import combine_distributions
from promptlearning.methods.spec import ClassifierSpec, build_classifier
from promptlearning.models.interface import LanguageModel
from promptlearning.progress import progress_bar
from promptlearning.prompts.demonstrations import select_fixed
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.runs.report import markdown_table
from promptlearning.search.adoption import ADOPT_CHOICES, AdoptionTest, index_metric, minimum_disagreements, paired_test
from promptlearning.search.demonstrations import candidate_sets
from promptlearning.search.label_phrases import MANY_CLASSES, continuation_phrases, phrase_options, uses_phrases
from promptlearning.search.label_words import propose_label_words, rank_assignments
from promptlearning.search.scoring import (
    ScoreCache,
    content_free_bias,
    dev_metric,
    label_log_scores,
    probabilities,
    word_matrix,
)
from promptlearning.search.templates import dedupe, propose_instructions, split_seed, template_families

STAGES = ("words", "templates", "channel", "demonstrations")
CONFIRM_PER_CLASS = 8  # confirmation examples per class by default: a paired test needs some of each


@dataclass
class SearchSettings:
    """What a search tries and how much it may spend (the CLI's options)."""

    budget: int | None = None  # dev prompts the model may score; default: 40 candidates' worth
    dev_size: int = 200
    dev: str | None = None  # a dev file instead of a sample held out of train (the confirmation comes from it too)
    dev_file_size: int | None = None  # with a dev file: at most this many of its examples (a seeded sample)
    stages: tuple[str, ...] = STAGES
    words_per_class: int = 8
    proposal_per_class: int = 32
    keep_assignments: int = 3
    ensemble: int = 3
    templates: list[dict[str, Any]] | None = None  # candidates instead of the pattern families
    ape: int = 0  # instructions to induce with the proposer
    proposer: LanguageModel | None = None
    shots: int | None = None  # default: the task's
    demo_sets: int = 8
    confirm_size: int | None = None  # the fresh sample the finalists are compared on; default: dev's size, at least
    # CONFIRM_PER_CLASS per class, bounded by the data (with a dev file: half of it); 0: none
    finalists: int = 5
    channel: int = 3  # the best configurations on dev also tried with channel scoring
    adopt: str = "test"  # test: replace the task's prompt only when significantly better; always: the best wins
    level: float = 0.95  # the adoption test's confidence level
    time_budget: float | None = None  # minutes the search may take (the confirmation's share is kept for it)
    seed: int = 0
    cache: str | Path | None = None


@dataclass
class Candidate:
    """One scored configuration: template, label words, calibration, demonstrations and its dev score
    (the task's metric)."""

    stage: str
    template: dict[str, Any]
    words: dict[str, list[str]]
    calibration: str  # none, batch, contextual or domain
    dev_score: float
    demonstrations: list[int] = field(default_factory=list)
    confirm_score: float | None = None  # on the confirmation sample, for the finalists
    scoring: str = "direct"  # or channel: P(input | label)

    def config_key(self) -> tuple:
        return (repr(self.template), repr(self.words), self.calibration, tuple(self.demonstrations), self.scoring)

    def member(self, bias: dict[str, float] | None = None) -> dict[str, Any]:
        """This configuration as a :class:`~promptlearning.methods.spec.MemberSpec` of an ensemble."""
        out: dict[str, Any] = {"template": self.template, "verbalizer": {"words": self.words},
                               "calibration": self.calibration, "scoring": self.scoring}  # fmt: skip
        if bias is not None:
            out["bias"] = bias
        return out


@dataclass
class SearchResult:
    candidates: list[Candidate]
    best: Candidate
    seed_dev: float  # the task's own prompt on dev
    ensemble_dev: float | None
    ensemble_members: list[Candidate]
    dev_size: int
    budget: int
    spent: int
    seconds: float
    metric: str = "accuracy"  # what dev_score and seed_dev measure: the task's metric
    seed: Candidate | None = None  # the task's own prompt as it runs (its confirm_score too)
    finalists: list[Candidate] = field(default_factory=list)  # the seed first, then by dev score
    confirm_size: int = 0
    bias: dict[str, float] | None = None  # the winner's calibration: dev's or the content-free mean distribution
    dev: list[dict[str, Any]] = field(default_factory=list)
    pool: list[dict[str, Any]] = field(default_factory=list)  # where demonstrations (indices) come from
    confirm: list[dict[str, Any]] = field(default_factory=list)
    dev_file: str | None = None  # --dev: where dev came from (else a sample held out of train)
    task_file: Path | None = None
    program_dir: Path | None = None
    test: Any = None  # the winner's TaskResult on the eval split
    seed_test: Any = None
    output: str = "single"  # what the search returns: single (best), ensemble (members) or own (the task's prompt)
    adoption: AdoptionTest | None = None  # the output against the task's own prompt on the confirmation sample
    ensemble_confirm: float | None = None  # the finalists' ensemble on the confirmation sample
    member_biases: list[dict[str, float] | None] = field(default_factory=list)  # the output members' frozen biases

    @property
    def outputs_members(self) -> list[Candidate]:
        """The configurations the output is made of (one, or the ensemble's members; none: the task's own)."""
        if self.output == "ensemble":
            return self.ensemble_members
        return [] if self.output == "own" else [self.best]


class Budget:
    """Dev prompts the model may still score, and (with ``minutes``) time: a candidate is started only
    when, at the measured seconds per prompt, it ends before the deadline less ``reserved`` seconds."""

    def __init__(self, total: int, unit: int, *, minutes: float | None = None) -> None:
        if total < unit:
            raise PromptLearningError(
                f"the search budget ({total} dev prompts) is smaller than one candidate ({unit} dev prompts): "
                f"raise --budget to at least {unit} or lower --dev-size"
            )
        self.total, self.spent = total, 0
        self.started = time.monotonic()
        self.deadline = None if minutes is None else self.started + 60 * minutes
        self.reserved = 0.0  # seconds kept for the confirmation
        self.seconds_per_prompt: float | None = None

    def allows(self, cost: int) -> bool:
        if self.spent + cost > self.total:
            return False
        if self.deadline is None:
            return True
        needed = cost * (self.seconds_per_prompt or 0.0) + self.reserved
        return time.monotonic() + needed <= self.deadline

    def spend(self, cost: int) -> None:
        self.spent += cost

    def observe(self, prompts: int, seconds: float) -> None:
        """A timed scoring of ``prompts`` dev prompts (the latest weighs most: caches make later ones cheaper)."""
        if prompts <= 0:
            return
        rate = seconds / prompts
        self.seconds_per_prompt = rate if self.seconds_per_prompt is None else 0.5 * (self.seconds_per_prompt + rate)

    def estimate(self, prompts: int) -> float | None:
        """Seconds ``prompts`` more prompts take at the measured rate (None before any measurement)."""
        return None if self.seconds_per_prompt is None else prompts * self.seconds_per_prompt


class Scorer:
    """Dev (or any) examples scored for a template, label-word columns and demonstrations."""

    def __init__(
        self, model: LanguageModel, cache: ScoreCache, verbalizer: Verbalizer, label_field: str,
        content_free: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.model, self.cache, self.verbalizer, self.label_field = model, cache, verbalizer, label_field
        self.content_free_inputs = list(content_free)

    def classifier(
        self, template: Mapping[str, Any], words: Mapping[str, Sequence[str]], pool: Sequence, scoring: str = "direct"
    ) -> Any:
        word_score = self.verbalizer.word_score
        if scoring == "channel" and word_score != "mean":
            word_score = "sum"  # channel scores the input: chars or first-token word scores do not apply
        verbalizer = {"words": dict(words), "word_score": word_score, "aggregate": self.verbalizer.aggregate}
        spec = ClassifierSpec(template=dict(template), verbalizer=verbalizer, label_field=self.label_field,
                              scoring=scoring)  # fmt: skip
        return build_classifier(spec, self.model).fit(pool)  # zero-shot fit keeps the pool: demonstrations index it

    def matrix(
        self,
        template: Mapping[str, Any],
        examples: Sequence[Mapping[str, Any]],
        words: Sequence[str],
        *,
        demo_words: Mapping[str, Sequence[str]],
        pool: Sequence = (),
        demonstrations: Sequence[int] = (),
        progress: bool | None = False,
        scoring: str = "direct",
    ) -> np.ndarray:
        """``[example, word]`` scores of every word for every example, scored as ``scoring`` says
        (``progress``: the model's progress bar, for the long calls)."""
        clf = self.classifier(template, demo_words, pool, scoring)
        requests = clf.scoring_requests(examples, words, [list(demonstrations)] * len(examples))
        results = self.cache.score(requests, progress=progress)
        self.cache.checkpoint()
        verbalizer = clf.verbalizer
        return word_matrix(results, len(examples), len(words), lambda j, r: verbalizer.score_word(words[j], r))

    def content_free(
        self, template: Mapping[str, Any], words: Sequence[str], *, demo_words: Mapping[str, Sequence[str]],
        pool: Sequence = (), demonstrations: Sequence[int] = (), scoring: str = "direct",
    ) -> np.ndarray:  # fmt: skip
        """``[content-free input, word]`` scores: each content-free input in every field of the template."""
        fields = PromptTemplate(**template).input_fields
        inputs = [dict.fromkeys(fields, text) for text in self.content_free_inputs]
        return self.matrix(template, inputs, words, demo_words=demo_words, pool=pool, demonstrations=demonstrations,
                           scoring=scoring)  # fmt: skip


def calibrated_options(
    matrix: np.ndarray, content_free: np.ndarray, columns: Sequence[Sequence[int]], kinds: Sequence[str]
) -> list[tuple[str, np.ndarray]]:
    """``(calibration, [example, label] distribution)`` for each calibration kind of one configuration."""
    scores = label_log_scores(matrix, columns)
    bias = content_free_bias(label_log_scores(content_free, columns))
    return [(kind, probabilities(scores, kind, bias)) for kind in kinds]


def _columns(words: Mapping[str, Sequence[str]], index: Mapping[str, int], labels: Sequence[str]) -> list[list[int]]:
    return [[index[w] for w in words[label]] for label in labels]


def check_search(config: Any, settings: SearchSettings) -> None:
    """What can be wrong with a search before any model loads."""
    if config.type != "classification":
        raise PromptLearningError(f"search works on classification tasks; {config.name} is type {config.type!r}")
    unknown = [s for s in settings.stages if s not in STAGES]
    if unknown:
        raise PromptLearningError(f"unknown search stage(s) {unknown}; stages: {', '.join(STAGES)}")
    if (settings.confirm_size or 0) < 0 or settings.finalists < 1:
        raise PromptLearningError(f"the confirmation needs confirm_size >= 0 (0: none) and finalists >= 1; got "
                                  f"{settings.confirm_size} and {settings.finalists}")  # fmt: skip
    if settings.templates is not None and not settings.templates:
        raise PromptLearningError("the list of candidate templates is empty: give at least one template")
    for name in ("shots", "ape", "channel"):
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise PromptLearningError(f"search {name} must be a whole number >= 0, got {value!r}")
    if settings.adopt not in ADOPT_CHOICES:
        raise PromptLearningError(f"unknown adoption rule {settings.adopt!r}; use one of {', '.join(ADOPT_CHOICES)}")
    if not 0.5 <= settings.level < 1:
        raise PromptLearningError(f"the adoption level must be at least 0.5 and below 1, got {settings.level}")
    if settings.time_budget is not None and not settings.time_budget > 0:
        raise PromptLearningError(f"--time-budget must be a number of minutes > 0, got {settings.time_budget}")


def search(
    config: Any, model: LanguageModel, settings: SearchSettings, *, progress: bool | None = None
) -> SearchResult:
    """Search label words, templates and demonstrations for a classification task on dev: the
    stages below, in order, over one :class:`SearchState`."""
    check_search(config, settings)
    started = time.perf_counter()
    state = start_search(config, model, settings, progress)
    if "words" in settings.stages:
        propose_word_options(state)
    score_word_options(state)
    if "templates" in settings.stages:
        search_templates(state)
    if "channel" in settings.stages and settings.channel:
        search_channel(state)
    pick_ensemble(state)
    if "demonstrations" in settings.stages and state.shots:
        search_demonstrations(state)
    if state.confirm:
        confirm_finalists(state)
        choose_output(state)
    elif settings.adopt == "test":
        state.output = "own"  # nothing to test on: the task's own prompt stays
        state.best = state.seed_candidate
    return finish_search(state, started)


@dataclass
class SearchState:
    """What the stages share: the task's own prompt, the splits, the scorer, the budget, and every
    candidate so far (each stage adds its own and may change ``best``)."""

    config: Any
    settings: SearchSettings
    model: LanguageModel
    scorer: Scorer
    cache: ScoreCache
    budget: Budget
    score: Callable[[np.ndarray, np.ndarray], float]
    labels: list[str]
    fields: list[str]
    seed_template: dict[str, Any]
    seed_words: dict[str, list[str]]
    seed_calibration: str
    kinds: tuple[str, ...]
    dev: list[dict[str, Any]]
    gold: np.ndarray
    pool: list[dict[str, Any]]
    confirm: list[dict[str, Any]]
    progress: bool | None = None
    candidates: list[Candidate] = field(default_factory=list)
    seed_candidate: Candidate | None = None
    word_options: list[dict[str, list[str]]] = field(default_factory=list)
    options_by_dev: list[dict[str, list[str]]] = field(default_factory=list)
    members: list[Candidate] = field(default_factory=list)
    ensemble_dev: float | None = None
    best: Candidate | None = None
    finalists: list[Candidate] = field(default_factory=list)
    output: str = "single"
    adoption: AdoptionTest | None = None
    ensemble_confirm: float | None = None
    confirm_predictions: dict[str, np.ndarray] = field(default_factory=dict)  # [example, label] per finalist key

    @property
    def label_field(self) -> str:
        return self.config.data.label_field

    @cached_property
    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def shots(self) -> int:
        return self.config.shots if self.settings.shots is None else self.settings.shots

    @property
    def bars(self) -> bool:
        return self.progress is not False

    def record(
        self, stage: str, template: dict[str, Any], words: dict[str, list[str]], scores: tuple[np.ndarray, np.ndarray],
        index: Mapping[str, int], demonstrations: Sequence[int] = (), scoring: str = "direct",
    ) -> None:  # fmt: skip
        """A scored configuration (dev and content-free ``scores``), once per calibration kind."""
        matrix, free = scores
        for kind, p in calibrated_options(matrix, free, _columns(words, index, self.labels), self.kinds):
            self.candidates.append(Candidate(stage, template, words, kind, self.score(p, self.gold),
                                             demonstrations=list(demonstrations), scoring=scoring))  # fmt: skip

    def note(self, message: str) -> None:
        """A line for the user (on the terminal, when progress is shown)."""
        if self.bars:
            import sys

            print(message, file=sys.stderr, flush=True)


def split_data(config: Any, settings: SearchSettings, verbalizer: Verbalizer, fields: Sequence[str]) -> tuple:
    """``(dev, confirm, pool)``: a dev sample, a fresh confirmation sample and the demonstration pool,
    disjoint, from the training file (or dev and confirmation from ``settings.dev``)."""
    data, label_field = config.data, config.data.label_field
    if not data.train:
        raise PromptLearningError("search needs data.train (dev, proposals and demonstrations come from it)")
    train = load_examples(data.train, root=task_data_root(data.root), required=[*fields, label_field])
    if data.train_min_words:
        train = keep_min_words(train, fields, data.train_min_words)
    verbalizer.check_labels(str(ex[label_field]) for ex in train)
    labels = verbalizer.labels
    order = list(range(len(train)))
    random.Random(settings.seed).shuffle(order)
    confirm: list = []
    if settings.dev:
        given = Path(settings.dev).expanduser()  # as given, else under the task's data root like its other files
        root = None if given.is_absolute() or given.exists() else task_data_root(data.root)
        dev = load_examples(given, root=root, required=[*fields, label_field])
        if settings.dev_file_size is not None and len(dev) > settings.dev_file_size:  # a seeded sample of the file
            dev = random.Random(settings.seed).sample(dev, settings.dev_file_size)
        unknown = sorted({str(ex[label_field]) for ex in dev} - set(labels))
        if unknown:
            raise PromptLearningError(f"the dev file {settings.dev} has label(s) {unknown} that the task does not "
                                      f"have (its labels: {list(labels)})")  # fmt: skip
        # a dev file is given when train differs from what the task meets (SST-2: phrases vs sentences):
        # the confirmation is then drawn from it too (default: half of it), not from train
        confirm_size = len(dev) // 2 if settings.confirm_size is None else settings.confirm_size
        if settings.confirm_size is None and confirm_size < 2 * len(labels):
            warnings.warn(f"the dev file has {len(dev)} examples: too few to split off a confirmation sample (the "
                          f"dev winner wins)", UserWarning, stacklevel=4)  # fmt: skip
            confirm_size = 0
        if confirm_size and len(dev) - confirm_size < len(labels):
            raise PromptLearningError(f"the dev file has {len(dev)} examples: too few to keep a dev sample after a "
                                      f"confirmation of {confirm_size} (lower --confirm-size, 0: none)")  # fmt: skip
        if confirm_size:
            shuffled = list(dev)
            random.Random(settings.seed).shuffle(shuffled)
            confirm, dev = shuffled[:confirm_size], shuffled[confirm_size:]
        rest = order
    else:
        dev_size = settings.dev_size
        if len(train) < 2 * dev_size:  # a small (few-shot) training file: half is dev, half the pool
            dev_size = len(train) // 2
            if dev_size < 2 * len(labels):
                raise PromptLearningError(f"the training file has {len(train)} examples: too few to hold out a dev "
                                          f"sample of two per label and keep a pool")  # fmt: skip
            warnings.warn(f"the training file has {len(train)} examples: {dev_size} of them are the dev sample "
                          f"(not {settings.dev_size})", UserWarning, stacklevel=4)  # fmt: skip
        dev = [train[i] for i in order[:dev_size]]
        rest = order[dev_size:]
        confirm_size = settings.confirm_size
        if confirm_size is None:  # as large as dev, and some examples of every class for the paired test
            confirm_size = max(len(dev), CONFIRM_PER_CLASS * len(labels))
        if confirm_size and len(rest) < 2 * confirm_size:  # the pool keeps at least as many examples
            warnings.warn(f"{len(rest)} training examples are left after dev: the confirmation sample is "
                          f"{len(rest) // 2}, not {confirm_size}", UserWarning, stacklevel=4)  # fmt: skip
            confirm_size = len(rest) // 2
        confirm = [train[i] for i in rest[:confirm_size]]
        rest = rest[confirm_size:]
    if len(dev) < 2 * len(labels):
        warnings.warn(f"a dev sample of {len(dev)} example(s) cannot tell prompts apart (fewer than two per label): "
                      "the winner is chosen by luck; use a larger --dev-size", UserWarning, stacklevel=4)  # fmt: skip
    if settings.adopt == "test" and len(confirm) < minimum_disagreements(settings.level):
        warnings.warn(f"a confirmation sample of {len(confirm)} example(s) is too small for the adoption test ever to "
                      f"adopt (it needs the prompts to disagree on at least {minimum_disagreements(settings.level)}): "
                      "the task's own prompt will be kept; give more data or --adopt always",
                      UserWarning, stacklevel=4)  # fmt: skip
    pool = [train[i] for i in rest]
    return dev, confirm, pool[: data.train_limit] if data.train_limit else pool


def start_search(config: Any, model: LanguageModel, settings: SearchSettings, progress: bool | None) -> SearchState:
    """The state every stage starts from: the splits, the scorer and cache, the budget, the calibration
    kinds every configuration is tried with."""
    seed_template = config.template.model_dump()
    seed_words = {label: list(w) if isinstance(w, list) else [w] for label, w in config.verbalizer.words.items()}
    labels = list(seed_words)
    verbalizer = Verbalizer(seed_words, word_score=config.verbalizer.word_score, aggregate=config.verbalizer.aggregate)
    fields = PromptTemplate(**seed_template).input_fields
    dev, confirm, pool = split_data(config, settings, verbalizer, fields)
    label_index = {label: i for i, label in enumerate(labels)}
    gold = np.array([label_index[str(ex[config.data.label_field])] for ex in dev])
    budget = Budget(settings.budget or 40 * len(dev), len(dev), minutes=settings.time_budget)  # confirmation: outside
    cache = ScoreCache(model, config.model, settings.cache)
    seed_calibration = config.calibration
    own_kind = seed_calibration if seed_calibration in ("contextual", "domain") else "contextual"
    # every configuration is tried with each kind; the task's own comes first, so that on a tie of dev
    # scores (a stable sort) the task's own prompt, as it runs, stays the winner
    kinds = tuple(dict.fromkeys((seed_calibration, "none", "batch", own_kind)))
    content_free = list(config.method.content_free)
    if own_kind == "domain":
        texts = [str(ex[f]) for ex in pool for f in fields if isinstance(ex.get(f), str)]
        content_free = domain_content_free_inputs(texts, seed=config.seed) if texts else content_free
    scorer = Scorer(model, cache, verbalizer, config.data.label_field, content_free)
    return SearchState(
        config=config, settings=settings, model=model, scorer=scorer, cache=cache, budget=budget,
        score=dev_metric(config.metric, labels), labels=labels, fields=fields, seed_template=seed_template,
        seed_words=seed_words, seed_calibration=seed_calibration, kinds=kinds, dev=dev, gold=gold, pool=pool,
        confirm=confirm, progress=progress, word_options=[seed_words],
    )  # fmt: skip


def propose_word_options(state: SearchState) -> None:
    """Stage "words": LM-BFF label words proposed from the pool, the best assignments ranked on it
    (with and without batch calibration), each also as the task's words plus the proposed one."""
    settings, labels, seed_words, label_field = state.settings, state.labels, state.seed_words, state.label_field
    by_label: dict[str, list] = {}
    for ex in state.pool:
        by_label.setdefault(str(ex[label_field]), []).append(ex)
    clf = state.scorer.classifier(state.seed_template, seed_words, state.pool)
    if uses_phrases(labels, seed_words):
        propose_phrase_options(state, clf, by_label)
        if len(labels) > MANY_CLASSES:
            return  # single-token words cannot name 77 intents
    proposal = [ex for label in labels for ex in by_label.get(label, [])[: settings.proposal_per_class]]
    prompts = [clf.prompt(ex) for ex in proposal]
    proposed = propose_label_words(
        state.model, prompts, labels, [str(ex[label_field]) for ex in proposal], per_class=settings.words_per_class
    )
    empty = [label for label, words in proposed.items() if not words]
    if len(empty) == len(labels):
        return
    for label in empty:  # a class with no distinctive word keeps the task's own
        proposed[label] = list(seed_words[label])
    vocabulary = list(dict.fromkeys(w for words in proposed.values() for w in words))
    index = {w: j for j, w in enumerate(vocabulary)}
    proposal_gold = np.array([state.label_index[str(ex[label_field])] for ex in proposal])
    proposal_scores = state.scorer.matrix(state.seed_template, proposal, vocabulary, demo_words=seed_words,
                                          progress=None if state.bars else False)  # fmt: skip
    ranked = []
    for calibrate in (False, True):  # proposals are ranked without content-free prompts
        ranked += rank_assignments(
            proposal_scores, [[index[w] for w in proposed[label]] for label in labels], proposal_gold,
            keep=3 * settings.keep_assignments, calibrate=calibrate,
        )  # fmt: skip
    ranked.sort(key=lambda item: -item[0])
    for rank, (_, assignment) in enumerate(ranked):
        words = {label: [vocabulary[j]] for label, j in zip(labels, assignment, strict=True)}
        # the best few also as the task's words plus the proposed one (more than one word per label)
        extended = {label: list(dict.fromkeys([*seed_words[label], *words[label]])) for label in labels}
        for option in (words, extended) if rank < settings.keep_assignments else (words,):
            if option not in state.word_options:
                state.word_options.append(option)


PHRASE_EXAMPLES = 4  # pool examples per class whose continuations propose its phrases


def propose_phrase_options(state: SearchState, clf: Any, by_label: Mapping[str, list]) -> None:
    """Label phrases (many classes, or phrase labels): the label names read as words and the model's
    own continuations of each class's prompts, alone and added to the task's words."""
    rows = [(label, ex) for label in state.labels for ex in by_label.get(label, [])[:PHRASE_EXAMPLES]]
    continued = continuation_phrases(state.model, [clf.prompt(ex) for _, ex in rows], [label for label, _ in rows],
                                     state.labels)  # fmt: skip
    for option in phrase_options(state.labels, state.seed_words, continued):
        if option not in state.word_options:
            state.word_options.append(option)


def score_word_options(state: SearchState) -> None:
    """Every word option on dev with the task's template (the task's own prompt among them, as it
    runs: for a few-shot task, with the demonstrations its selection picks); the best few options go on."""
    config, seed_words = state.config, state.seed_words
    all_words = list(dict.fromkeys(w for option in state.word_options for words in option.values() for w in words))
    index = {w: j for j, w in enumerate(all_words)}
    started = time.monotonic()
    matrix = state.scorer.matrix(state.seed_template, state.dev, all_words, demo_words=seed_words,
                                 progress=None if state.bars else False)  # fmt: skip
    free = state.scorer.content_free(state.seed_template, all_words, demo_words=seed_words)
    state.budget.observe(len(state.dev), time.monotonic() - started)
    state.budget.spend(len(state.dev))
    announce_plan(state)
    for option in state.word_options:
        state.record("words", state.seed_template, option, (matrix, free), index)
        if option == seed_words:
            state.seed_candidate = next(c for c in state.candidates if c.words == seed_words
                                        and c.calibration == state.seed_calibration)  # fmt: skip
    method = config.method
    if config.method_name == "icl" and config.shots and method.selection != "knn":
        # the task's own prompt as it runs has demonstrations: those its selection picks from the pool
        # (kNN picks them per example, which a candidate cannot hold: that seed stays zero-shot)
        demos = select_fixed(state.pool, config.shots, method.selection, label_field=state.label_field,
                             seed=config.seed)  # fmt: skip
        seed = Candidate("seed", state.seed_template, seed_words, state.seed_calibration, 0.0, demonstrations=demos)
        seed.dev_score = state.score(candidate_probabilities(state.scorer, seed, state.dev, state.pool), state.gold)
        state.seed_candidate = seed
        state.candidates.insert(0, seed)  # first: on a tie of dev scores it stays the winner
    best_of = {repr(o): max(c.dev_score for c in state.candidates if c.words == o) for o in state.word_options}
    state.options_by_dev = sorted(state.word_options, key=lambda o: -best_of[repr(o)])[
        : state.settings.keep_assignments
    ]
    if seed_words not in state.options_by_dev:
        state.options_by_dev.append(seed_words)


def search_templates(state: SearchState) -> None:
    """Stage "templates": pattern families around the task's template (or the given candidates) and
    APE instructions, each with the best word options, within the budget (half of what is left stays
    for demonstrations)."""
    settings, seed_template, fields, label_field = state.settings, state.seed_template, state.fields, state.label_field
    listed = [w[0] for w in state.options_by_dev[0].values()]
    templates = dedupe(settings.templates) if settings.templates else template_families(seed_template, fields, listed)
    if settings.ape:
        proposer = settings.proposer or state.model
        split_seed(seed_template["input"], fields)  # the seed must have a cue to keep
        pairs = [(PromptTemplate(**seed_template).render_input(ex).strip(), str(ex[label_field]))
                 for ex in state.pool[: 5 * settings.ape]]  # fmt: skip
        for instruction in propose_instructions(proposer, pairs, n=settings.ape, seed=settings.seed):
            templates.append({**seed_template, "instruction": instruction})
    templates = [t for t in dedupe(templates) if t != seed_template]
    words = list(dict.fromkeys(w for option in state.options_by_dev for ws in option.values() for w in ws))
    index = {w: j for j, w in enumerate(words)}
    dev, budget = state.dev, state.budget
    reserve = later_reserve(state, channel=True)
    bar = progress_bar(len(templates), desc="templates", enabled=state.bars, unit="template")
    with bar:
        for template in templates:
            if not budget.allows(len(dev) + reserve):
                bar.write(f"budget or time spent: {len(templates) - bar.n} templates left unscored")
                break
            try:
                scores = score_on_dev(state, template, words, demo_words=state.seed_words)
            except PromptLearningError as exc:
                bar.write(f"skipped a template: {exc}")
                continue
            for option in state.options_by_dev:
                state.record("templates", template, option, scores, index)
            bar.update(1)
            bar.set_postfix(best=f"{max(c.dev_score for c in state.candidates):.3f}")


def score_on_dev(
    state: SearchState, template: dict[str, Any], words: Sequence[str], **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One configuration's dev and content-free ``[example, word]`` scores (``options``: the scorer's
    demo_words, pool, demonstrations, scoring), timed for the time budget and spent from the budget."""
    started = time.monotonic()
    scores = (state.scorer.matrix(template, state.dev, words, **options),
              state.scorer.content_free(template, words, **options))  # fmt: skip
    state.budget.observe(len(state.dev), time.monotonic() - started)
    state.budget.spend(len(state.dev))
    return scores


def later_reserve(state: SearchState, *, channel: bool = False) -> int:
    """Dev prompts kept for the stages still to come (the demonstration sets and, with ``channel``,
    the channel prompts), at most half of what is left."""
    settings, budget = state.settings, state.budget
    reserve = settings.demo_sets * len(state.dev) if "demonstrations" in settings.stages and state.shots else 0
    if channel and "channel" in settings.stages:
        reserve += settings.channel * len(state.dev)
    return min(reserve, (budget.total - budget.spent) // 2)


def confirmation_prompts(state: SearchState) -> int:
    """Prompts the confirmation scores: the finalists, each on every confirmation example."""
    return (state.settings.finalists + 1) * len(state.confirm)


def announce_plan(state: SearchState) -> None:
    """How much the search will score and, at the rate just measured, about how long it takes; with
    a time budget, the confirmation's share of it is kept for the confirmation."""
    budget, confirm = state.budget, confirmation_prompts(state)
    total = budget.total + confirm
    seconds = budget.estimate(total) or 0.0
    state.note(f"search plan: up to {budget.total} dev prompts and {confirm} confirmation prompts; at "
               f"{budget.seconds_per_prompt or 0:.2f} s a prompt, about {seconds / 60:.0f} min"
               + (f" (capped at {state.settings.time_budget:g} min by --time-budget)"
                  if state.settings.time_budget else ""))  # fmt: skip
    budget.reserved = budget.estimate(confirm) or 0.0


def search_channel(state: SearchState) -> None:
    """Stage "channel": the best few distinct (template, words) configurations on dev scored the other
    way round, P(input | label) (Min et al. 2022), with every calibration, within the budget."""
    from promptlearning.methods.classifier import check_channel_template

    picked, seen = [], set()
    for c in sorted(state.candidates, key=lambda c: -c.dev_score):
        key = (repr(c.template), repr(c.words))
        if c.scoring != "direct" or c.demonstrations or key in seen:
            continue
        seen.add(key)
        try:
            check_channel_template(PromptTemplate(**c.template), state.scorer.verbalizer)
        except PromptLearningError:
            continue
        picked.append(c)
        if len(picked) == state.settings.channel:
            break
    dev, budget = state.dev, state.budget
    reserve = later_reserve(state)
    bar = progress_bar(len(picked), desc="channel", enabled=state.bars, unit="prompt")
    with bar:
        for c in picked:
            if not budget.allows(len(dev) + reserve):
                bar.write(f"budget or time spent: {len(picked) - bar.n} channel prompts left unscored")
                break
            words = list(dict.fromkeys(w for ws in c.words.values() for w in ws))
            index = {w: j for j, w in enumerate(words)}
            try:
                scores = score_on_dev(state, c.template, words, demo_words=c.words, scoring="channel")
            except PromptTooLongError as exc:
                bar.write(f"skipped a channel prompt: {exc}")
                continue
            state.record("channel", c.template, c.words, scores, index, scoring="channel")
            bar.update(1)
            bar.set_postfix(best=f"{max(c.dev_score for c in state.candidates):.3f}")


def pick_ensemble(state: SearchState) -> None:
    """The best configurations with different templates, averaged (reported beside the winner); the
    best on dev so far becomes ``best``."""
    ranked = sorted(state.candidates, key=lambda c: -c.dev_score)
    for c in ranked:
        if all(m.template != c.template for m in state.members):
            state.members.append(c)
        if len(state.members) == state.settings.ensemble:
            break
    if len(state.members) > 1:
        on_dev = ensemble_probabilities(state.scorer, state.members, state.dev, state.pool)
        state.ensemble_dev = state.score(on_dev, state.gold)
    state.best = ranked[0]


def search_demonstrations(state: SearchState) -> None:
    """Stage "demonstrations": sets of ``shots`` examples from the pool (bootstrapped from those the
    best prompt gets right, then random), each with the best prompt on dev, within the budget."""
    best, labels, shots, pool, dev = state.best, state.labels, state.shots, state.pool, state.dev
    assert best is not None
    sample = pool[: max(64, 4 * shots)]
    pool_gold = [str(ex[state.label_field]) for ex in sample]
    words = [w for ws in best.words.values() for w in ws]
    index = {w: j for j, w in enumerate(words)}
    matrix = state.scorer.matrix(best.template, sample, words, demo_words=best.words)
    free = state.scorer.content_free(best.template, words, demo_words=best.words)
    predicted = dict(calibrated_options(matrix, free, _columns(best.words, index, labels), state.kinds))[
        best.calibration
    ]
    correct = [labels[p] == g for p, g in zip(predicted.argmax(axis=1), pool_gold, strict=True)]
    sets = candidate_sets(pool_gold, correct, shots, state.settings.demo_sets, seed=state.settings.seed)
    bar = progress_bar(len(sets), desc="demonstrations", enabled=state.bars, unit="set")
    with bar:
        for demos in sets:
            if not state.budget.allows(len(dev)):
                break
            try:
                scores = score_on_dev(state, best.template, words, demo_words=best.words, pool=sample,
                                      demonstrations=demos)  # fmt: skip
            except PromptTooLongError as exc:
                bar.write(f"skipped a demonstration set: {exc}")
                continue
            state.record("demonstrations", best.template, best.words, scores, index,
                         demonstrations=[pool.index(sample[i]) for i in demos])  # fmt: skip
            bar.update(1)
            bar.set_postfix(best=f"{max(c.dev_score for c in state.candidates):.3f}")
    state.best = max(state.candidates, key=lambda c: c.dev_score)


def confirm_finalists(state: SearchState) -> None:
    """The task's own prompt as it runs and the best few diverse configurations on dev, once more on
    the fresh confirmation sample."""
    seed = state.seed_candidate
    assert seed is not None
    state.finalists = pick_finalists(state.candidates, seed, state.settings.finalists)
    gold = confirmation_gold(state)
    bar = progress_bar(len(state.finalists), desc="confirmation", enabled=state.bars, unit="finalist")
    with bar:
        for c in state.finalists:
            if c is seed:
                probabilities = own_prompt_probabilities(state, state.confirm)
            else:
                probabilities = candidate_probabilities(state.scorer, c, state.confirm, state.pool)
            state.confirm_predictions[repr(c.config_key())] = probabilities
            c.confirm_score = state.score(probabilities, gold)
            bar.update(1)


def confirmation_gold(state: SearchState) -> np.ndarray:
    return np.array([state.label_index[str(ex[state.label_field])] for ex in state.confirm])


def own_prompt_probabilities(state: SearchState, examples: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``[example, label]`` distribution of the task's own classifier, built from its spec and run as
    ``promptlearning run`` runs it (its demonstrations, calibration, scoring or ensemble)."""
    classifier = build_classifier(state.config.classifier_spec(), state.model).fit(state.pool)
    predictions = classifier.predict(examples, progress=False)
    return np.array([[p.probabilities[label] for label in state.labels] for p in predictions])


def choose_output(state: SearchState) -> None:
    """The output: the best finalist on the confirmation sample or the ensemble of the best few on
    dev, whichever scores higher there; it replaces the task's own prompt only when a paired test
    says it is better (``adopt: test``; Bonferroni over the options compared), or whenever it
    scores higher (``adopt: always``, the task's own prompt winning ties)."""
    seed, settings = state.seed_candidate, state.settings
    assert seed is not None
    gold, others = confirmation_gold(state), [c for c in state.finalists if c is not seed]
    own = state.confirm_predictions[repr(seed.config_key())]
    state.output, state.best = "own", seed
    if not others:
        return
    single = max(others, key=lambda c: c.confirm_score or 0.0)  # the first best: the higher on dev on a tie
    options = [("single", [single], state.confirm_predictions[repr(single.config_key())])]
    # the best few on dev (finalists are in dev order) that show the same demonstrations (members share them)
    members = [c for c in others if c.demonstrations == others[0].demonstrations][: settings.ensemble]
    if len(members) > 1:
        combined = combine_distributions(np.array([state.confirm_predictions[repr(m.config_key())] for m in members]))
        state.ensemble_confirm = state.score(combined, gold)
        state.members = members  # the ensemble reported is the one confirmed (all cached scores on dev)
        state.ensemble_dev = state.score(
            ensemble_probabilities(state.scorer, members, state.dev, state.pool), state.gold
        )
        options.append(("ensemble", members, combined))
    kind, chosen, probabilities = max(options, key=lambda o: state.score(o[2], gold))
    metric = index_metric(state.config.metric, state.labels)
    state.adoption = paired_test(metric, gold, probabilities.argmax(axis=1), own.argmax(axis=1),
                                 level=settings.level, seed=settings.seed, comparisons=len(others) + 1,
                                 exact=state.config.metric == "accuracy")  # fmt: skip
    if settings.adopt == "always":  # the higher score wins, the task's own prompt on a tie
        state.adoption.rule = "always"
        state.adoption.adopted = state.score(probabilities, gold) > state.score(own, gold)
    if state.adoption.adopted:
        state.output, state.best = kind, chosen[0]
    state.note(f"confirmation ({kind}): {state.adoption.describe(state.config.metric)}")


def finish_search(state: SearchState, started: float) -> SearchResult:
    """The result, with the output's calibration frozen as a bias per configuration (what a saved
    program keeps)."""
    best, seed = state.best, state.seed_candidate
    assert best is not None and seed is not None
    members = state.members if state.output == "ensemble" else [best]
    plain_seed = state.output != "own" or _plain(state.config)
    biases = [winner_bias(state.scorer, c, state.dev, state.pool) if c.calibration != "none" and plain_seed else None
              for c in members]  # fmt: skip
    state.cache.save()
    return SearchResult(
        candidates=state.candidates, best=best, seed_dev=seed.dev_score, seed=seed, finalists=state.finalists,
        confirm_size=len(state.confirm), ensemble_dev=state.ensemble_dev, ensemble_members=state.members,
        dev_size=len(state.dev), budget=state.budget.total, spent=state.budget.spent,
        seconds=time.perf_counter() - started, metric=state.config.metric, bias=biases[0], dev=state.dev,
        pool=state.pool, confirm=state.confirm, dev_file=state.settings.dev, output=state.output,
        adoption=state.adoption, ensemble_confirm=state.ensemble_confirm, member_biases=biases,
    )  # fmt: skip


def _plain(config: Any) -> bool:
    """Whether the task's own classifier is one configuration a candidate can describe: direct
    scoring, no ensemble, no frozen bias, one ordering, no kNN selection."""
    method = config.method
    knn = config.method_name == "icl" and method.selection == "knn"
    return not (method.ensemble or method.scoring != "direct" or method.bias or method.orderings > 1 or knn)


def near_duplicates(a: Candidate, b: Candidate) -> bool:
    """The same prompt but for calibration, scoring or the words of at most one label: confirming both
    would spend the confirmation on one idea."""
    if a.template.get("input") != b.template.get("input") or a.demonstrations != b.demonstrations:
        return False
    changed = [label for label in a.words if a.words[label] != b.words.get(label)]
    return len(changed) <= 1


def pick_finalists(candidates: Sequence[Candidate], seed: Candidate, n: int) -> list[Candidate]:
    """The task's own prompt, then the ``n`` best other configurations on dev that are not near
    duplicates of one already picked (different templates or label-word sets)."""
    finalists: list[Candidate] = [seed]
    ranked = sorted(candidates, key=lambda c: -c.dev_score)
    for c in ranked:
        if len(finalists) > n:
            break
        if c.config_key() != seed.config_key() and not any(near_duplicates(c, f) for f in finalists[1:]):
            finalists.append(c)
    for c in ranked:  # too few distinct ideas: fill up with the best remaining ones
        if len(finalists) > n:
            break
        if all(c.config_key() != f.config_key() for f in finalists):
            finalists.append(c)
    return finalists


def candidate_probabilities(scorer: Scorer, c: Candidate, examples: Sequence, pool: Sequence) -> np.ndarray:
    """``[example, label]`` distribution of one configuration, with its calibration, on other examples."""
    labels = list(c.words)
    words = list(dict.fromkeys(w for ws in c.words.values() for w in ws))
    index = {w: j for j, w in enumerate(words)}
    kw = {"demo_words": c.words, "pool": pool, "demonstrations": c.demonstrations, "scoring": c.scoring}
    matrix = scorer.matrix(c.template, examples, words, **kw)
    free = scorer.content_free(c.template, words, **kw)
    return dict(calibrated_options(matrix, free, _columns(c.words, index, labels), [c.calibration]))[c.calibration]


def winner_bias(scorer: Scorer, best: Candidate, dev: Sequence, pool: Sequence) -> dict[str, float]:
    """The winner's calibration as a fixed label distribution, which a saved program keeps (all cached
    scores): batch — its uncalibrated mean distribution on dev; contextual / domain — the content-free one."""
    labels = list(best.words)
    words = [w for ws in best.words.values() for w in ws]
    index = {w: j for j, w in enumerate(words)}
    examples = dev
    if best.calibration != "batch":
        fields = PromptTemplate(**best.template).input_fields
        examples = [dict.fromkeys(fields, text) for text in scorer.content_free_inputs]
    matrix = scorer.matrix(best.template, examples, words, demo_words=best.words, pool=pool,
                           demonstrations=best.demonstrations, scoring=best.scoring)  # fmt: skip
    mean = probabilities(label_log_scores(matrix, _columns(best.words, index, labels))).mean(axis=0)
    mean = mean / mean.sum()
    return {label: float(value) for label, value in zip(labels, mean, strict=True)}


def ensemble_probabilities(
    scorer: Scorer, members: Sequence[Candidate], examples: Sequence, pool: Sequence = ()
) -> np.ndarray:
    """The members' (calibrated) label distributions combined as :class:`PromptEnsemble` combines them."""
    return combine_distributions(np.array([candidate_probabilities(scorer, m, examples, pool) for m in members]))


def output_spec(config: Any, result: SearchResult) -> tuple[ClassifierSpec, list[dict[str, Any]]]:
    """The search's output as a classifier spec, each configuration with its frozen calibration bias,
    and the demonstration rows it shows (in order)."""
    base = config.classifier_spec()
    if result.output == "own" and not _plain(config):  # as the task runs it, its demonstrations fixed
        if base.method_name != "icl" or base.selection == "knn":
            return base, []
        shown = [result.pool[i] for i in result.best.demonstrations]
        return base.model_copy(update={"selection": "first", "shots": len(shown)}), shown
    best, members = result.best, result.outputs_members or [result.best]
    demonstrations = [result.pool[i] for i in best.demonstrations]
    biases = result.member_biases or [None] * len(members)
    fields: dict[str, Any] = {
        "template": best.template,
        "verbalizer": {**base.verbalizer.model_dump(), "words": best.words},
        "calibration": best.calibration, "bias": biases[0], "scoring": best.scoring, "method": "auto",
        "shots": len(demonstrations), "selection": "first", "orderings": 1, "ensemble": [],
    }  # fmt: skip
    if result.output == "ensemble":
        fields["ensemble"] = [m.member(bias) for m, bias in zip(members, biases, strict=True)]
    return ClassifierSpec(**{**base.model_dump(), **fields}), demonstrations


def winning_task(config: Any, result: SearchResult, demonstrations_file: Path | None) -> dict[str, Any]:
    """The task file of the output: the seed task with its template, words, calibration, scoring, shots
    and ensemble (calibration estimated live, as the task's own runs do: no frozen biases)."""
    raw = config.model_dump(mode="json", exclude_defaults=False)
    raw["name"] = f"{config.name}-searched"
    if result.output == "own":
        return raw
    spec, _ = output_spec(config, result)
    raw["template"] = spec.template.model_dump()
    raw["verbalizer"] = {**raw["verbalizer"], "words": spec.verbalizer.words}
    method = raw["method"]
    method.update(calibrate=None, calibration=spec.calibration, orderings=1, scoring=spec.scoring, bias=None,
                  ensemble=[{k: v for k, v in m.model_dump(exclude_none=True).items() if k != "bias"}
                            for m in spec.ensemble],
                  name="icl" if spec.shots else "zero-shot",
                  selection="first" if spec.shots else method["selection"])  # fmt: skip
    raw["shots"] = spec.shots
    if demonstrations_file is not None:
        raw["data"] = {**raw["data"], "train": str(demonstrations_file.resolve()), "train_limit": None,
                       "train_min_words": None}  # fmt: skip
    return raw


def write_search(directory: Path, config: Any, result: SearchResult) -> Path:
    """``task.yaml`` (the output, runnable with ``promptlearning run``), ``demonstrations.jsonl``,
    ``search.json`` (every candidate) and ``search.md``; returns the task file."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    demos_file = None
    if result.output != "own" and result.best.demonstrations:
        demos_file = directory / "demonstrations.jsonl"
        rows = [result.pool[i] for i in result.best.demonstrations]
        write_atomically(demos_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    task = winning_task(config, result, demos_file)
    task_file = directory / "task.yaml"
    write_atomically(task_file, task_header(result) + yaml.safe_dump(task, sort_keys=False, allow_unicode=True))
    write_json_atomically(directory / "search.json", {
        "dev_size": result.dev_size, "budget": result.budget, "spent": result.spent, "seconds": result.seconds,
        "seed_dev": result.seed_dev, "confirm_size": result.confirm_size, "output": result.output,
        "adoption": asdict(result.adoption) if result.adoption else None,
        "finalists": [asdict(c) for c in result.finalists], "ensemble_dev": result.ensemble_dev,
        "ensemble_confirm": result.ensemble_confirm, "ensemble": [asdict(m) for m in result.ensemble_members],
        "best": asdict(result.best), "candidates": [asdict(c) for c in result.candidates],
    })  # fmt: skip
    result.task_file = task_file
    result.program_dir = write_program(directory / "program", config, result)
    return task_file


def task_header(result: SearchResult) -> str:
    """The comment on top of the written task file: what was found and whether it was adopted."""
    what = {"own": "the task's own prompt (kept)", "single": "one prompt",
            "ensemble": f"an ensemble of {len(result.ensemble_members)} prompts"}[result.output]  # fmt: skip
    best = max(c.dev_score for c in result.candidates)
    header = f"# Found by `promptlearning search`: {what}. Dev ({result.dev_size} examples, {result.metric}): " \
             f"best {best:.4f}, the task's own prompt {result.seed_dev:.4f}.\n"  # fmt: skip
    if result.adoption is not None:
        header += f"# Confirmation: {result.adoption.describe(result.metric)}.\n"
    return header


# A served prompt program's prompts are bounded by its max_length (the model's whole context would let
# one input cost seconds): room for the instruction and input, and generous room per demonstration.
PROMPT_PROGRAM_LENGTH = 512
DEMONSTRATION_LENGTH = 256


def write_program(directory: Path, config: Any, result: SearchResult) -> Path | None:
    """The output as a prompt program (no weights): ``promptlearning predict`` and ``serve --program``
    load it. None when the output needs the whole training pool (the task's own kNN prompt)."""
    from promptlearning.training.prompted import program_from_spec, save_prompted_program

    spec, demonstrations = output_spec(config, result)
    if spec.method_name == "icl" and not demonstrations:
        return None
    program = program_from_spec(spec, str(config.model), demonstrations, dtype=config.dtype)
    program.max_length = PROMPT_PROGRAM_LENGTH + DEMONSTRATION_LENGTH * len(demonstrations)
    scores = {f"dev_{result.metric}": result.best.dev_score, "dev_size": result.dev_size}
    if result.best.confirm_score is not None:
        scores.update({f"confirm_{result.metric}": result.best.confirm_score, "confirm_size": result.confirm_size})
    return save_prompted_program(program, directory, metrics=scores)


def _describe(c: Candidate) -> list[str]:
    instruction = c.template.get("instruction") or ""
    text = (instruction + " ⏎ " if instruction else "") + c.template["input"].replace("\n", " ⏎ ")
    words = ", ".join(f"{label}:{'/'.join(w.strip() for w in ws)}" for label, ws in c.words.items())
    demos = f"{len(c.demonstrations)} demos" if c.demonstrations else "-"
    return [c.stage, f"`{text}`", words, c.calibration, c.scoring, demos, f"{c.dev_score:.4f}"]


COLUMNS = ["stage", "template", "label words", "calibration", "scoring", "demos"]


def search_report(config: Any, result: SearchResult, top: int = 20) -> str:
    """search.md: what was scored, the output and why, the finalists and the best candidates on dev."""
    ranked = sorted(result.candidates, key=lambda c: -c.dev_score)
    best_dev = ranked[0].dev_score if ranked else result.seed_dev
    lines = [
        f"# Prompt search: {config.name}",
        "",
        f"- model `{config.model}`; dev: {result.dev_size} examples "
        + (f"from `{result.dev_file}`" if result.dev_file else f"held out of `{config.data.train}`"),
        f"- {len(result.candidates)} candidates scored; budget {result.spent} / {result.budget} dev prompts; "
        f"{result.seconds:.0f} s",
        f"- dev {result.metric}: the task's own prompt {result.seed_dev:.4f}; the best candidate {best_dev:.4f}",
    ]
    if not _plain(config):
        lines[-1] += " (on dev, the task's own prompt is scored as one direct prompt, zero-shot under kNN; on the " \
                     "confirmation sample and the eval split, as it runs)"  # fmt: skip
    if result.finalists:
        single = max((c for c in result.finalists[1:]), key=lambda c: c.confirm_score or 0.0, default=None)
        scores = f"the task's own prompt {result.finalists[0].confirm_score:.4f}"
        if single is not None:
            scores += f"; the best finalist {single.confirm_score:.4f}"
        if result.ensemble_confirm is not None:
            scores += f"; the ensemble of the best {len(result.ensemble_members)} on dev {result.ensemble_confirm:.4f}"
        lines.append(f"- {result.metric} on {result.confirm_size} fresh examples (confirmation): {scores}")
    output = {"own": "the task's own prompt", "single": "one prompt (the best finalist)",
              "ensemble": f"the ensemble of {len(result.ensemble_members)} prompts"}[result.output]  # fmt: skip
    lines.append(f"- **output: {output}**" + (f" — {result.adoption.describe(result.metric)}" if result.adoption
                                                 else " (no confirmation sample to test on)"))  # fmt: skip
    if result.test is not None:
        own = f", the task's own prompt {result.seed_test.value:.4f}" if result.seed_test else ""
        lines.append(f"- {config.metric} on `{config.data.eval}` (once): the output {result.test.value:.4f}{own}")
    if result.finalists:
        lines += [
            "",
            f"## Finalists: the task's own prompt and the best diverse configurations on dev, on {result.confirm_size} "
            "fresh examples",
            "",
            markdown_table(
                [*COLUMNS, f"dev {result.metric}", f"confirmation {result.metric}"],
                [[*_describe(c), f"{c.confirm_score:.4f}"] for c in result.finalists],
            ),
        ]
    lines += [
        "",
        f"## The top {min(top, len(ranked))} candidates on dev",
        "",
        markdown_table([*COLUMNS, f"dev {result.metric}"], [_describe(c) for c in ranked[:top]]),
        "",
    ]
    return "\n".join(lines)
