"""What a prompt ensemble costs: k members against k separate classifiers, on SST-2 dev.

Two ensembles of three members, SmolLM2-135M-Instruct, batch calibration, the first N dev sentences:

* same prompt: one template, three label-word sets (the members' prompts are identical, so the one
  model call of :class:`~promptlearning.methods.ensemble.PromptEnsemble` scores each prompt once for
  all their words);
* three templates: nothing shared but the batching of one call.

Each is timed as one ensemble ``predict`` and as its three members predicting one after another
(what an ensemble costs without shared scoring), medians of ``--repeats``.

    python benchmarks/ensemble_cost.py [--n 200] [--repeats 3]

Ends with ``ensemble vs separate members: same prompt …x, three templates …x``.
"""

from __future__ import annotations

import argparse

from common import DATA_ROOT, machine, read_jsonl, timed

from promptlearning.methods.spec import ClassifierSpec, build_classifier
from promptlearning.models import load_model

TEMPLATE = {"input": "Review: {{ text }}\nSentiment:"}
WORDS = [
    {"negative": [" negative"], "positive": [" positive"]},
    {"negative": [" bad"], "positive": [" good"]},
    {"negative": [" terrible"], "positive": [" great"]},
]
TEMPLATES = [
    TEMPLATE,
    {"input": "{{ text }}\nThe sentiment of this review is"},
    {"input": "Text: {{ text }}\nOpinion:"},
]


def spec(members: list[dict]) -> ClassifierSpec:
    return ClassifierSpec(template=TEMPLATE, verbalizer={"words": WORDS[0]}, calibration="batch", ensemble=members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = load_model("smollm2-135m-instruct")
    rows = [{"text": r["text"]} for r in read_jsonl(DATA_ROOT / "sst2" / "dev.jsonl", args.n)]
    print(f"machine: {machine()}")
    print(f"SST-2 dev first {len(rows)}, SmolLM2-135M-Instruct fp32, 3 members, batch calibration")
    ensembles = {
        "same prompt": spec([{"verbalizer": {"words": w}} for w in WORDS]),
        "three templates": spec([{"template": t} for t in TEMPLATES]),
    }
    ratios = {}
    print(f"{'ensemble':<18}{'one ensemble predict':>24}{'members one by one':>22}{'ratio':>8}")
    for name, ensemble_spec in ensembles.items():
        ensemble = build_classifier(ensemble_spec, model).fit()
        members = [build_classifier(m, model).fit() for m in ensemble_spec.members()]
        ensemble.predict(rows[:8], progress=False)  # warm-up
        together, predicted = timed(lambda e=ensemble: e.predict(rows, progress=False), args.repeats)
        apart, _ = timed(lambda ms=members: [m.predict(rows, progress=False) for m in ms], args.repeats)
        ratios[name] = apart / together
        print(f"{name:<18}{together:>22.1f} s{apart:>20.1f} s{ratios[name]:>7.2f}x")
        assert len(predicted) == len(rows)
    print(f"ensemble vs separate members: same prompt {ratios['same prompt']:.2f}x, "
          f"three templates {ratios['three templates']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
