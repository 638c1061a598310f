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
from promptlearning.methods.spec import ClassifierSpec, build_classifier
from promptlearning.models.interface import LanguageModel
from promptlearning.progress import progress_bar
from promptlearning.prompts.demonstrations import select_fixed
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.runs.report import markdown_table
from promptlearning.search.demonstrations import candidate_sets
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

STAGES = ("words", "templates", "demonstrations")


@dataclass
class SearchSettings:
    """What a search tries and how much it may spend (the CLI's options)."""

    budget: int | None = None  # dev prompts the model may score; default: 40 candidates' worth
    dev_size: int = 200
    dev: str | None = None  # a dev file instead of a sample held out of train (the confirmation comes from it too)
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
    confirm_size: int | None = None  # the fresh sample the finalists are compared on; default: dev's size (with a
    # dev file: half of it); 0: none
    finalists: int = 5
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

    def config_key(self) -> tuple:
        return (repr(self.template), repr(self.words), self.calibration, tuple(self.demonstrations))


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


class Budget:
    """Dev prompts the model may still score."""

    def __init__(self, total: int, unit: int) -> None:
        if total < unit:
            raise PromptLearningError(
                f"the search budget ({total} dev prompts) is smaller than one candidate ({unit} dev prompts): "
                f"raise --budget to at least {unit} or lower --dev-size"
            )
        self.total, self.spent = total, 0

    def allows(self, cost: int) -> bool:
        return self.spent + cost <= self.total

    def spend(self, cost: int) -> None:
        self.spent += cost


class Scorer:
    """Dev (or any) examples scored for a template, label-word columns and demonstrations."""

    def __init__(
        self, model: LanguageModel, cache: ScoreCache, verbalizer: Verbalizer, label_field: str,
        content_free: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.model, self.cache, self.verbalizer, self.label_field = model, cache, verbalizer, label_field
        self.content_free_inputs = list(content_free)

    def classifier(self, template: Mapping[str, Any], words: Mapping[str, Sequence[str]], pool: Sequence) -> Any:
        verbalizer = {"words": dict(words), "word_score": self.verbalizer.word_score,
                      "aggregate": self.verbalizer.aggregate}  # fmt: skip
        spec = ClassifierSpec(template=dict(template), verbalizer=verbalizer, label_field=self.label_field)
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
    ) -> np.ndarray:
        """``[example, word]`` scores of every word after every example's prompt (``progress``: the
        model's progress bar, for the long calls)."""
        clf = self.classifier(template, demo_words, pool)
        prompts = [clf.prompt(ex, demonstrations) for ex in examples]
        results = self.cache.score(clf.word_requests(prompts, words), progress=progress)
        self.cache.checkpoint()
        return word_matrix(results, len(prompts), len(words), lambda j, r: self.verbalizer.score_word(words[j], r))

    def content_free(
        self, template: Mapping[str, Any], words: Sequence[str], *, demo_words: Mapping[str, Sequence[str]],
        pool: Sequence = (), demonstrations: Sequence[int] = (),
    ) -> np.ndarray:  # fmt: skip
        """``[content-free input, word]`` scores: each content-free input in every field of the template."""
        fields = PromptTemplate(**template).input_fields
        inputs = [dict.fromkeys(fields, text) for text in self.content_free_inputs]
        return self.matrix(template, inputs, words, demo_words=demo_words, pool=pool, demonstrations=demonstrations)


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
    for name in ("shots", "ape"):
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise PromptLearningError(f"search {name} must be a whole number >= 0, got {value!r}")


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
    pick_ensemble(state)
    if "demonstrations" in settings.stages and state.shots:
        search_demonstrations(state)
    if state.confirm:
        confirm_finalists(state)
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
        index: Mapping[str, int], demonstrations: Sequence[int] = (),
    ) -> None:  # fmt: skip
        """A scored configuration (dev and content-free ``scores``), once per calibration kind."""
        matrix, free = scores
        for kind, p in calibrated_options(matrix, free, _columns(words, index, self.labels), self.kinds):
            self.candidates.append(Candidate(stage, template, words, kind, self.score(p, self.gold),
                                             demonstrations=list(demonstrations)))  # fmt: skip


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
        confirm_size = len(dev) if settings.confirm_size is None else settings.confirm_size
        if confirm_size and len(rest) < 2 * confirm_size:  # the pool keeps at least as many examples
            warnings.warn(f"{len(rest)} training examples are left after dev: too few for a confirmation sample "
                          f"of {confirm_size} (the dev winner wins)", UserWarning, stacklevel=4)  # fmt: skip
            confirm_size = 0
        confirm = [train[i] for i in rest[:confirm_size]]
        rest = rest[confirm_size:]
    if len(dev) < 2 * len(labels):
        warnings.warn(f"a dev sample of {len(dev)} example(s) cannot tell prompts apart (fewer than two per label): "
                      "the winner is chosen by luck; use a larger --dev-size", UserWarning, stacklevel=4)  # fmt: skip
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
    budget = Budget(settings.budget or 40 * len(dev), len(dev))  # the confirmation is spent outside it
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
    proposal = [ex for label in labels for ex in by_label.get(label, [])[: settings.proposal_per_class]]
    clf = state.scorer.classifier(state.seed_template, seed_words, state.pool)
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


def score_word_options(state: SearchState) -> None:
    """Every word option on dev with the task's template (the task's own prompt among them, as it
    runs: for a few-shot task, with the demonstrations its selection picks); the best few options go on."""
    config, seed_words = state.config, state.seed_words
    all_words = list(dict.fromkeys(w for option in state.word_options for words in option.values() for w in words))
    index = {w: j for j, w in enumerate(all_words)}
    matrix = state.scorer.matrix(state.seed_template, state.dev, all_words, demo_words=seed_words,
                                 progress=None if state.bars else False)  # fmt: skip
    free = state.scorer.content_free(state.seed_template, all_words, demo_words=seed_words)
    state.budget.spend(len(state.dev))
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
    reserve = settings.demo_sets * len(dev) if "demonstrations" in settings.stages and state.shots else 0
    reserve = min(reserve, (budget.total - budget.spent) // 2)  # demonstrations: at most half of what is left
    bar = progress_bar(len(templates), desc="templates", enabled=state.bars, unit="template")
    with bar:
        for template in templates:
            if not budget.allows(len(dev) + reserve):
                bar.write(f"budget spent: {len(templates) - bar.n} templates left unscored")
                break
            try:
                matrix = state.scorer.matrix(template, dev, words, demo_words=state.seed_words)
                free = state.scorer.content_free(template, words, demo_words=state.seed_words)
            except PromptLearningError as exc:
                bar.write(f"skipped a template: {exc}")
                continue
            budget.spend(len(dev))
            for option in state.options_by_dev:
                state.record("templates", template, option, (matrix, free), index)
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
        state.ensemble_dev = state.score(ensemble_probabilities(state.scorer, state.members, state.dev), state.gold)
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
            kw = {"demo_words": best.words, "pool": sample, "demonstrations": demos}
            try:
                scores = (state.scorer.matrix(best.template, dev, words, **kw),
                          state.scorer.content_free(best.template, words, **kw))  # fmt: skip
            except PromptTooLongError as exc:
                bar.write(f"skipped a demonstration set: {exc}")
                continue
            state.budget.spend(len(dev))
            state.record("demonstrations", best.template, best.words, scores, index,
                         demonstrations=[pool.index(sample[i]) for i in demos])  # fmt: skip
            bar.update(1)
            bar.set_postfix(best=f"{max(c.dev_score for c in state.candidates):.3f}")
    state.best = max(state.candidates, key=lambda c: c.dev_score)


def confirm_finalists(state: SearchState) -> None:
    """The task's own prompt and the best few others, once more on the fresh confirmation sample: the
    best there wins (the task's own prompt on a tie)."""
    assert state.seed_candidate is not None
    state.finalists = pick_finalists(state.candidates, state.seed_candidate, state.settings.finalists)
    confirm_gold = np.array([state.label_index[str(ex[state.label_field])] for ex in state.confirm])
    bar = progress_bar(len(state.finalists), desc="confirmation", enabled=state.bars, unit="finalist")
    with bar:
        for c in state.finalists:
            probabilities = candidate_probabilities(state.scorer, c, state.confirm, state.pool)
            c.confirm_score = state.score(probabilities, confirm_gold)
            bar.update(1)
    state.best = max(state.finalists, key=lambda c: c.confirm_score)  # the first best: the task's own prompt on a tie


def finish_search(state: SearchState, started: float) -> SearchResult:
    """The result, with the winner's calibration frozen as a bias (what a saved program keeps)."""
    best, seed = state.best, state.seed_candidate
    assert best is not None and seed is not None
    bias = winner_bias(state.scorer, best, state.dev, state.pool) if best.calibration != "none" else None
    state.cache.save()
    return SearchResult(
        candidates=state.candidates, best=best, seed_dev=seed.dev_score, seed=seed, finalists=state.finalists,
        confirm_size=len(state.confirm), ensemble_dev=state.ensemble_dev, ensemble_members=state.members,
        dev_size=len(state.dev), budget=state.budget.total, spent=state.budget.spent,
        seconds=time.perf_counter() - started, metric=state.config.metric, bias=bias, dev=state.dev,
        pool=state.pool, confirm=state.confirm, dev_file=state.settings.dev,
    )  # fmt: skip


def pick_finalists(candidates: Sequence[Candidate], seed: Candidate, n: int) -> list[Candidate]:
    """The task's own prompt, then the ``n`` best other configurations on dev."""
    finalists, seen = [seed], {seed.config_key()}
    for c in sorted(candidates, key=lambda c: -c.dev_score):
        if len(finalists) > n:
            break
        if c.config_key() not in seen:
            seen.add(c.config_key())
            finalists.append(c)
    return finalists


def candidate_probabilities(scorer: Scorer, c: Candidate, examples: Sequence, pool: Sequence) -> np.ndarray:
    """``[example, label]`` distribution of one configuration, with its calibration, on other examples."""
    labels = list(c.words)
    words = list(dict.fromkeys(w for ws in c.words.values() for w in ws))
    index = {w: j for j, w in enumerate(words)}
    kw = {"demo_words": c.words, "pool": pool, "demonstrations": c.demonstrations}
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
                           demonstrations=best.demonstrations)  # fmt: skip
    mean = probabilities(label_log_scores(matrix, _columns(best.words, index, labels))).mean(axis=0)
    mean = mean / mean.sum()
    return {label: float(value) for label, value in zip(labels, mean, strict=True)}


def ensemble_probabilities(scorer: Scorer, members: Sequence[Candidate], examples: Sequence) -> np.ndarray:
    """The mean of the members' (calibrated) label distributions."""
    return sum(candidate_probabilities(scorer, m, examples, ()) for m in members) / len(members)


def winning_task(config: Any, best: Candidate, demonstrations_file: Path | None) -> dict[str, Any]:
    """The task file of the winner: the seed task with its template, words, calibration and shots."""
    raw = config.model_dump(mode="json", exclude_defaults=False)
    raw["template"] = best.template
    raw["verbalizer"] = {**raw["verbalizer"], "words": best.words}
    method = raw["method"]
    method.update(calibrate=None, calibration=best.calibration, orderings=1)
    method.update(name="icl" if best.demonstrations else "zero-shot")
    method.update(selection="first" if best.demonstrations else method["selection"])
    raw["shots"] = len(best.demonstrations)
    if demonstrations_file is not None:
        raw["data"] = {**raw["data"], "train": str(demonstrations_file.resolve()), "train_limit": None,
                       "train_min_words": None}  # fmt: skip
    raw["name"] = f"{config.name}-searched"
    return raw


def write_search(directory: Path, config: Any, result: SearchResult) -> Path:
    """``task.yaml`` (the winner, runnable with ``promptlearning run``), ``demonstrations.jsonl``,
    ``search.json`` (every candidate) and ``search.md``; returns the task file."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    demos_file = None
    if result.best.demonstrations:
        demos_file = directory / "demonstrations.jsonl"
        rows = [result.pool[i] for i in result.best.demonstrations]
        write_atomically(demos_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    task = winning_task(config, result.best, demos_file)
    task_file = directory / "task.yaml"
    header = f"# Found by `promptlearning search` on {result.dev_size} dev examples (dev {result.metric} " \
             f"{result.best.dev_score:.4f}; the seed prompt: {result.seed_dev:.4f}).\n"  # fmt: skip
    if result.seed is not None and result.best.confirm_score is not None:
        header += f"# Confirmed on {result.confirm_size} fresh examples: {result.best.confirm_score:.4f} " \
                  f"(the seed prompt: {result.seed.confirm_score:.4f}).\n"  # fmt: skip
    write_atomically(task_file, header + yaml.safe_dump(task, sort_keys=False, allow_unicode=True))
    write_json_atomically(directory / "search.json", {
        "dev_size": result.dev_size, "budget": result.budget, "spent": result.spent, "seconds": result.seconds,
        "seed_dev": result.seed_dev, "confirm_size": result.confirm_size,
        "finalists": [asdict(c) for c in result.finalists], "ensemble_dev": result.ensemble_dev,
        "ensemble": [asdict(m) for m in result.ensemble_members],
        "best": asdict(result.best), "candidates": [asdict(c) for c in result.candidates],
    })  # fmt: skip
    result.task_file = task_file
    result.program_dir = write_program(directory / "program", config, result)
    return task_file


# A served prompt program's prompts are bounded by its max_length (the model's whole context would let
# one input cost seconds): room for the instruction and input, and generous room per demonstration.
PROMPT_PROGRAM_LENGTH = 512
DEMONSTRATION_LENGTH = 256


def write_program(directory: Path, config: Any, result: SearchResult) -> Path:
    """The winner as a prompt program (no weights): ``promptlearning predict`` and ``serve --program`` load it."""
    from promptlearning.training.program import ProgramSpec
    from promptlearning.training.prompted import save_prompted_program

    best, label_field = result.best, config.data.label_field
    verbalizer = {"label_words": best.words, "word_score": config.verbalizer.word_score,
                  "aggregate": config.verbalizer.aggregate}  # fmt: skip
    demonstrations = [{"example": {k: v for k, v in result.pool[i].items() if k != label_field},
                       "answer": str(result.pool[i][label_field])} for i in best.demonstrations]  # fmt: skip
    spec = ProgramSpec(
        objective="prompt", model=str(config.model), labels=list(best.words), template=best.template,
        verbalizer=verbalizer, peft=None, demonstrations=demonstrations, label_field=label_field,
        dtype=config.dtype, bias=result.bias,
        max_length=PROMPT_PROGRAM_LENGTH + DEMONSTRATION_LENGTH * len(demonstrations),
        metrics={f"dev_{result.metric}": best.dev_score, "dev_size": result.dev_size,
                 **({f"confirm_{result.metric}": best.confirm_score, "confirm_size": result.confirm_size}
                    if best.confirm_score is not None else {})},
    )  # fmt: skip
    return save_prompted_program(spec, directory)


def _describe(c: Candidate) -> list[str]:
    instruction = c.template.get("instruction") or ""
    text = (instruction + " ⏎ " if instruction else "") + c.template["input"].replace("\n", " ⏎ ")
    words = ", ".join(f"{label}:{'/'.join(w.strip() for w in ws)}" for label, ws in c.words.items())
    demos = f"{len(c.demonstrations)} demos" if c.demonstrations else "-"
    return [c.stage, f"`{text}`", words, c.calibration, demos, f"{c.dev_score:.4f}"]


def search_report(config: Any, result: SearchResult, top: int = 20) -> str:
    ranked = sorted(result.candidates, key=lambda c: -c.dev_score)
    lines = [
        f"# Prompt search: {config.name}",
        "",
        f"- model `{config.model}`; dev: {result.dev_size} examples "
        + (f"from `{result.dev_file}`" if result.dev_file else f"held out of `{config.data.train}`"),
        f"- {len(result.candidates)} candidates scored; budget {result.spent} / {result.budget} dev prompts; "
        f"{result.seconds:.0f} s",
        f"- dev {result.metric}: the task's own prompt {result.seed_dev:.4f}; the winner {result.best.dev_score:.4f}",
    ]
    if config.method_name == "icl" and config.shots and config.method.selection == "knn":
        lines[-1] += " (the task's own prompt scored zero-shot here: kNN picks its demonstrations per example)"
    if result.finalists:
        lines.append(
            f"- {result.metric} on {result.confirm_size} fresh examples (confirmation): the task's own prompt "
            f"{result.finalists[0].confirm_score:.4f}; the winner {result.best.confirm_score:.4f}"
        )
    if result.ensemble_dev is not None:
        lines.append(
            f"- ensemble of the top {len(result.ensemble_members)} templates on dev: {result.ensemble_dev:.4f}"
        )
    if result.test is not None:
        own = f", the task's own prompt {result.seed_test.value:.4f}" if result.seed_test else ""
        lines.append(f"- {config.metric} on `{config.data.eval}` (once): winner {result.test.value:.4f}{own}")
    if result.finalists:
        lines += [
            "",
            f"## Finalists: the task's own prompt and the best on dev, compared on {result.confirm_size} fresh "
            "examples (the best there wins)",
            "",
            markdown_table(
                [
                    "stage",
                    "template",
                    "label words",
                    "calibration",
                    "demos",
                    f"dev {result.metric}",
                    f"confirmation {result.metric}",
                ],
                [[*_describe(c), f"{c.confirm_score:.4f}"] for c in result.finalists],
            ),
        ]
    lines += [
        "",
        f"## The top {min(top, len(ranked))} candidates on dev",
        "",
        markdown_table(
            ["stage", "template", "label words", "calibration", "demos", f"dev {result.metric}"],
            [_describe(c) for c in ranked[:top]],
        ),
        "",
    ]
    return "\n".join(lines)
