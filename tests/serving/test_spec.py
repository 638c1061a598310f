"""One classifier spec on every surface: each of its fields, set in a task file, in a ``/v1/classify``
body and in a saved weightless program, gives the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from promptlearning.methods.spec import ClassifierSpec

TEMPLATE = {"input": "review : {{ text }}\nsentiment :"}
WORDS = {"negative": " negative", "positive": " positive"}
POOL = [
    {"text": t, "label": lab}
    for t, lab in [
        ("a gorgeous , witty film", "positive"),
        ("dull and far too long", "negative"),
        ("i loved it", "positive"),
        ("a waste of two hours", "negative"),
        ("great acting", "positive"),
        ("the plot made no sense", "negative"),
    ]
]
INPUTS = [{"text": t} for t in ["the cat sat on the mat", "a wonderful movie", "boring", "not bad at all",
                                "the best film of the year", "i want my money back"]]  # fmt: skip
# each variant sets some of the spec's fields (all fields are set by at least one)
VARIANTS = {
    "zero-shot": {},
    "template-options": {"template": {**TEMPLATE, "instruction": "Classify the review.", "separator": "\n",
                                      "shorten": "text"}},
    "verbalizer-options": {"verbalizer": {"words": {"negative": [" bad", " awful"], "positive": [" good", " great"]},
                                          "word_score": "mean", "aggregate": "max"}},
    "icl-balanced": {"method": "icl", "shots": 2, "selection": "balanced", "seed": 3},
    "icl-random-contextual": {"shots": 3, "selection": "random", "calibration": "contextual",
                              "content_free": ["N/A", "nothing"]},
    "domain": {"calibration": "domain"},
    "batch": {"calibration": "batch"},
    "orderings": {"shots": 2, "selection": "first", "orderings": 2},
    "max-length": {"template": {**TEMPLATE, "shorten": "text"}, "max_length": 12},
    "label-field": {"label_field": "gold", "shots": 2, "selection": "first"},
    "channel": {"scoring": "channel", "shots": 2, "selection": "first", "calibration": "batch"},
    "frozen-bias": {"calibration": "contextual", "bias": {"negative": 0.7, "positive": 0.3}},
    "ensemble": {"ensemble": [{}, {"template": {"input": "text : {{ text }}\nopinion :"}, "calibration": "batch",
                                   "scoring": "channel"},
                              {"verbalizer": {"words": {"negative": " bad", "positive": " good"}}}],
                 "ensemble_weighting": "agreement"},
    "ensemble-weights": {"ensemble": [{"weight": 2.0}, {"calibration": "batch", "weight": 1.0,
                                                        "bias": {"negative": 0.4, "positive": 0.6}}]},
}  # fmt: skip
COVERED = {key for variant in VARIANTS.values() for key in variant} | {"template", "verbalizer"}


def test_every_field_of_the_spec_is_covered() -> None:
    assert set(ClassifierSpec.model_fields) - {"embedder"} <= COVERED  # embedder: the server uses its own


def _spec(variant: dict) -> ClassifierSpec:
    return ClassifierSpec(**{"template": TEMPLATE, "verbalizer": {"words": WORDS}, **variant})


def _pool(spec: ClassifierSpec) -> list[dict]:
    """The labelled pool; a zero-shot task reads no training file, so no surface gets one then (domain
    calibration then takes its words from the inputs, everywhere)."""
    if spec.method_name == "zero-shot":
        return []
    return [{"text": row["text"], spec.label_field: row["label"]} for row in POOL]


def _by_task_file(spec: ClassifierSpec, tmp_path: Path, model_dir: Path) -> list:
    from promptlearning.tasks import load_task, run_task

    field = spec.label_field
    pool = _pool(spec) or [{"text": "unused", field: "positive"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({**r, field: "positive"}) + "\n" for r in INPUTS))
    task = {
        "name": "spec", "model": str(model_dir), "seed": spec.seed, "shots": spec.shots,
        "data": {"root": str(tmp_path), "train": "train.jsonl", "eval": "eval.jsonl", "label_field": field},
        "template": spec.template.model_dump(), "verbalizer": spec.verbalizer.model_dump(),
        "method": {"name": spec.method, "selection": spec.selection, "calibration": spec.calibration,
                   "content_free": spec.content_free, "orderings": spec.orderings, "max_length": spec.max_length,
                   "scoring": spec.scoring, "bias": spec.bias, "ensemble_weighting": spec.ensemble_weighting,
                   "ensemble": [m.model_dump(exclude_none=True) for m in spec.ensemble]},
    }  # fmt: skip
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    result = run_task(load_task(tmp_path / "task.yaml"), write=False, progress=False)
    return [(p.label, p.probabilities) for p in result.evaluation.predictions]


def _by_endpoint(spec: ClassifierSpec, server) -> list:
    body = {**spec.model_dump(exclude={"embedder"}, exclude_none=True), "model": "tiny", "inputs": INPUTS,
            "demonstrations": _pool(spec)}  # fmt: skip
    response = httpx.post(server.base_url + "/classify", json=body, headers={"Authorization": "Bearer test-key-0123"},
                          timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    return [(p["label"], p["probabilities"]) for p in response.json()["predictions"]]


def _by_program(spec: ClassifierSpec, tmp_path: Path, model_dir: Path) -> list:
    from promptlearning.training.program import load_program
    from promptlearning.training.prompted import program_from_spec, save_prompted_program

    save_prompted_program(program_from_spec(spec, str(model_dir), _pool(spec)), tmp_path / "program")
    program = load_program(tmp_path / "program", device="cpu")
    return [(p.label, p.probabilities) for p in program.predict(INPUTS)]


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_a_spec_predicts_alike_on_every_surface(variant, tmp_path, tiny_llama_dir, server) -> None:
    spec = _spec(VARIANTS[variant])
    task = _by_task_file(spec, tmp_path, tiny_llama_dir)
    surfaces = {"endpoint": _by_endpoint(spec, server), "program": _by_program(spec, tmp_path, tiny_llama_dir)}
    for name, predictions in surfaces.items():
        assert [label for label, _ in predictions] == [label for label, _ in task], name
        for (_, got), (_, want) in zip(predictions, task, strict=True):
            assert got == pytest.approx(want, abs=1e-5), name


# ----------------------------------------------------------------------------- chain-of-thought

QUESTIONS = [{"question": "what is two plus three ?", "final": "5"}, {"question": "a b c d ?", "final": "B"}]
EXEMPLARS = [{"question": "what is one plus one ?", "rationale": "one and one make two.", "answer": "2"}]
SOLVER_VARIANTS = {
    "direct": {"mode": "direct", "exemplars": EXEMPLARS},
    "few-shot": {"mode": "few-shot-cot", "exemplars": EXEMPLARS, "template": "Question: {{ question }}\nAnswer:"},
    "zero-shot": {"mode": "zero-shot-cot", "trigger": "Think.", "answer_trigger": "So the answer is"},
    "choices": {"mode": "zero-shot-cot", "answer_type": "multiple_choice"},
    "self-consistency": {"mode": "zero-shot-cot", "self_consistency": 3, "temperature": 0.9, "top_p": 0.9,
                         "top_k": 20, "seed": 7},
    "one-sample-sampled": {"mode": "zero-shot-cot", "temperature": 1.2, "seed": 2},
    "lengths": {"mode": "zero-shot-cot", "max_new_tokens": 5, "stop": ["\n"], "calculator": True},
}  # fmt: skip


def test_every_field_of_the_solver_spec_is_covered() -> None:
    from promptlearning.methods.spec import SolverSpec

    covered = {key for variant in SOLVER_VARIANTS.values() for key in variant}
    assert set(SolverSpec.model_fields) <= covered


@pytest.mark.parametrize("variant", SOLVER_VARIANTS, ids=list(SOLVER_VARIANTS))
def test_a_solver_spec_answers_alike_in_a_task_file_and_v1_solve(variant, tmp_path, tiny_llama_dir, server) -> None:
    from promptlearning.methods.spec import SolverSpec
    from promptlearning.tasks import load_task, run_task

    spec = SolverSpec(**{"max_new_tokens": 12, **SOLVER_VARIANTS[variant]})
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    task = {"type": "cot", "name": "spec", "model": str(tiny_llama_dir), "data": {"root": str(tmp_path),
            "eval": "questions.jsonl"}, **spec.model_dump(exclude={"seed"}), "seed": spec.seed}  # fmt: skip
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    solutions = run_task(load_task(tmp_path / "task.yaml"), write=False, progress=False).evaluation.solutions
    body = {**spec.model_dump(), "model": "tiny", "questions": [q["question"] for q in QUESTIONS]}
    response = httpx.post(server.base_url + "/solve", json=body, headers={"Authorization": "Bearer test-key-0123"},
                          timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    served = response.json()["solutions"]
    assert [s["rationales"] for s in served] == [s.rationales for s in solutions]
    assert [s["answers"] for s in served] == [s.answers for s in solutions]


# ----------------------------------------------------------------------------- prompted generation

ROWS = [
    {"question": q, "reply": a}
    for q, a in [
        ("what colour is the sky ?", "blue"),
        ("how many legs has a cat ?", "four legs, usually"),
        ("what is the capital of france ?", "paris"),
        ("who wrote hamlet ?", "shakespeare wrote it in about 1600"),
    ]
]
GEN_TEMPLATE = {"input": "Q: {{ question }}\nA:"}
GENERATOR_VARIANTS = {
    "zero-shot": {},
    "template-options": {"template": {**GEN_TEMPLATE, "instruction": "Answer briefly.", "separator": "\n",
                                      "shorten": "question"}},
    "first": {"shots": 2, "selection": "first", "target_field": "reply"},
    "random": {"shots": 2, "selection": "random", "target_field": "reply", "seed": 5},
    "length": {"shots": 2, "selection": "length", "target_field": "reply"},
    "knn": {"shots": 1, "selection": "knn", "target_field": "reply"},
    "decoding": {"decoding": {"max_new_tokens": 6, "temperature": 0.8, "top_p": 0.9, "top_k": 10, "stop": ["."]},
                 "seed": 3},
    "postprocess": {"postprocess": ["first_line", "lower"], "answer_regex": r"(\w+)"},
}  # fmt: skip


def test_every_field_of_the_generator_spec_is_covered() -> None:
    from promptlearning.methods.spec import GeneratorSpec

    covered = {key for variant in GENERATOR_VARIANTS.values() for key in variant} | {"template"}
    assert set(GeneratorSpec.model_fields) - {"embedder"} <= covered  # embedder: the server uses its own


@pytest.mark.parametrize("variant", GENERATOR_VARIANTS, ids=list(GENERATOR_VARIANTS))
def test_a_generator_spec_answers_alike_in_a_task_file_and_v1_generate(
    variant, tmp_path, tiny_llama_dir, tiny_encoder_dir, server
) -> None:
    from promptlearning.methods.spec import GeneratorSpec
    from promptlearning.tasks import load_task, run_task

    options = {"template": GEN_TEMPLATE, "decoding": {"max_new_tokens": 8}, **GENERATOR_VARIANTS[variant]}
    spec = GeneratorSpec(embedder=str(tiny_encoder_dir), **options)
    eval_rows = [{"question": "what do cows drink ?", "reply": "water"}, {"question": "is ice cold ?", "reply": "yes"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    fields = spec.model_dump(exclude={"target_field"})
    task = {"type": "generate", "name": "spec", "model": str(tiny_llama_dir), "metrics": ["squad"],
            "data": {"root": str(tmp_path), "train": "train.jsonl", "eval": "eval.jsonl",
                     "target_field": spec.target_field, "reference_field": "reply"}, **fields}  # fmt: skip
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    evaluation = run_task(load_task(tmp_path / "task.yaml"), write=False, progress=False).evaluation
    body = {**spec.model_dump(exclude={"embedder"}), "model": "tiny", "inputs": eval_rows,
            "demonstrations": ROWS if spec.shots else []}  # fmt: skip
    response = httpx.post(server.base_url + "/generate", json=body,
                          headers={"Authorization": "Bearer test-key-0123"}, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    served = response.json()["generations"]
    assert [g["text"] for g in served] == evaluation.outputs
    assert [g["answer"] for g in served] == evaluation.answers
