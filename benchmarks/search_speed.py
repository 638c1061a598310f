"""Prompt-search scoring speed: candidates scored per minute by the search's cached, batched
scoring against a plain per-prompt ``loglikelihood`` loop, on the same candidates and dev examples.

A candidate is a template with one label-word assignment (SST-2, SmolLM2-135M-Instruct, dev
examples held out of the training file as ``promptlearning search`` holds them out):

* ours — each template's dev prompts go to the model once, in one call, with every candidate word
  (single-token words of one prompt share a forward pass) through the search's score cache; the
  assignments are then scored in NumPy;
* baseline — for every candidate and dev example, one ``loglikelihood`` call with that candidate's
  two label words (what a hand-written search loop over prompts does).

Both sides produce the same accuracies (checked). The baseline runs on the first
``--baseline-templates`` templates only, and its rate is per candidate.

    python benchmarks/search_speed.py [--dev 100] [--templates 8] [--assignments 6]

Ends with ``speed-up vs per-prompt loglikelihood loop: …x``.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

import numpy as np
from common import DATA_ROOT, machine, read_jsonl

from promptlearning.methods.classifier import PromptClassifier
from promptlearning.models import load_model
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.search.scoring import ScoreCache, accuracy, label_log_scores, probabilities, word_matrix
from promptlearning.search.templates import template_families

MODEL = "smollm2-135m-instruct"
SEED = {"input": "Review: {{ text }}\nSentiment:", "shorten": "text"}
NEGATIVE = [" negative", " bad", " terrible", " awful"]
POSITIVE = [" positive", " good", " great", " wonderful"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--templates", type=int, default=8)
    parser.add_argument("--assignments", type=int, default=6)
    parser.add_argument("--baseline-templates", type=int, default=2)
    args = parser.parse_args()

    train = read_jsonl(DATA_ROOT / "sst2" / "train.jsonl")
    rng = random.Random(0)
    dev = [train[i] for i in rng.sample(range(len(train)), args.dev)]
    labels = ["negative", "positive"]
    gold = np.array([labels.index(ex["label"]) for ex in dev])
    templates = template_families(SEED, ["text"], [" negative", " positive"])[: args.templates]
    assignments = list(itertools.product(NEGATIVE, POSITIVE))[: args.assignments]
    words = list(dict.fromkeys(w for pair in assignments for w in pair))
    model = load_model(MODEL)
    verbalizer = Verbalizer({"negative": " negative", "positive": " positive"})
    model.loglikelihood([("warm up", " up")])
    print(f"{len(templates)} templates x {len(assignments)} assignments = {len(templates) * len(assignments)} "
          f"candidates on {len(dev)} dev examples; {machine()}")  # fmt: skip

    # ours: one call per template with every word, through the cache; assignments in NumPy
    ours: dict[tuple[int, int], float] = {}
    start = time.perf_counter()
    cache = ScoreCache(model, MODEL)
    for t, template in enumerate(templates):
        clf = PromptClassifier(model, PromptTemplate(**template), verbalizer).fit()
        prompts = [clf.prompt(ex) for ex in dev]
        results = cache.score(clf.word_requests(prompts, words))
        matrix = word_matrix(results, len(dev), len(words), lambda j, r: r.logprob)
        for a, pair in enumerate(assignments):
            columns = [[words.index(pair[0])], [words.index(pair[1])]]
            ours[t, a] = accuracy(probabilities(label_log_scores(matrix, columns), False), gold)
    ours_seconds = time.perf_counter() - start
    ours_rate = len(ours) / ours_seconds * 60

    # baseline: one loglikelihood call per candidate and dev example
    base: dict[tuple[int, int], float] = {}
    start = time.perf_counter()
    for t, template in enumerate(templates[: args.baseline_templates]):
        clf = PromptClassifier(model, PromptTemplate(**template), verbalizer).fit()
        for a, pair in enumerate(assignments):
            correct = 0
            for ex, g in zip(dev, gold, strict=True):
                results = model.loglikelihood(clf.word_requests([clf.prompt(ex)], list(pair)), batch_size=1)
                correct += int(np.argmax([r.logprob for r in results]) == g)
            base[t, a] = correct / len(dev)
    base_seconds = time.perf_counter() - start
    base_rate = len(base) / base_seconds * 60
    mismatched = [k for k in base if abs(base[k] - ours[k]) > 1e-9]
    print(f"ours:     {len(ours)} candidates in {ours_seconds:.1f} s = {ours_rate:.1f} candidates/min "
          f"({cache.model_calls} (prompt, word) pairs scored)")  # fmt: skip
    print(f"baseline: {len(base)} candidates in {base_seconds:.1f} s = {base_rate:.1f} candidates/min")
    print(f"same accuracies on the {len(base)} shared candidates: {mismatched or 'yes'}")
    print(f"speed-up vs per-prompt loglikelihood loop: {ours_rate / base_rate:.1f}x")


if __name__ == "__main__":
    main()
