"""GSM8K 8-shot chain-of-thought: lm-evaluation-harness vs promptlearning, side by side.

The first N GSM8K test questions, lm-eval's ``gsm8k-cot`` setting reproduced by a local task YAML
over our JSONL (the same 8 Wei et al. exemplars, ``Q: …\\nA:`` format, greedy, max 256 new tokens,
stop at "Q:"), the same converted SmolLM2 files, fp32, same machine. Prints both strict and
flexible accuracies (each side scored by its own extraction), the share of identical generations,
and the time of each.

    pip install -e ".[bench]"
    python benchmarks/cot_vs_lm_eval.py [--limit 100] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import DATA_ROOT, machine, read_jsonl

from promptlearning.methods.cot import ChainOfThought
from promptlearning.models import hub, load_model
from promptlearning.tasks.cot import load_exemplars

STOP = ["Q:", "</s>", "<|im_end|>"]


def task_yaml(test_file: Path, exemplars: list[dict]) -> dict:
    """lm-eval's gsm8k-cot settings (v3.0) over a local JSONL file."""
    return {
        "task": "gsm8k_cot_local",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(test_file)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "Q: {{question}}\nA:",
        "doc_to_target": "{{answer.split('####')[-1].strip() if answer is defined else target}}",
        "fewshot_config": {
            "sampler": "first_n",
            "samples": [
                {"question": e["question"], "target": f"{e['rationale']} The answer is {e['answer']}."}
                for e in exemplars
            ],
        },
        "num_fewshot": 8,
        "generation_kwargs": {"do_sample": False, "until": STOP},
        "filter_list": [
            {
                "name": "strict-match",
                "filter": [
                    {"function": "regex", "regex_pattern": "The answer is (\\-?[0-9\\.\\,]+)."},
                    {"function": "take_first"},
                ],
            },
            {
                "name": "flexible-extract",
                "filter": [
                    {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                    {"function": "take_first"},
                ],
            },
        ],
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": False,
                "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
            }
        ],
    }


def run_lm_eval(model_dir: Path, task_dir: Path, limit: int, batch_size: int, out_dir: Path) -> tuple[dict, float]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, dtype="float32", device="cpu")
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm, tasks=["gsm8k_cot_local"], task_manager=TaskManager(include_path=str(task_dir)), limit=limit,
        log_samples=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    samples = results["samples"]["gsm8k_cot_local"]
    generations = {s["doc_id"]: s["resps"][0][0] for s in samples}
    (out_dir / "lm_eval_generations.json").write_text(json.dumps(generations, indent=1))
    return {"results": results["results"]["gsm8k_cot_local"], "generations": generations}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    questions = read_jsonl(DATA_ROOT / "gsm8k" / "test.jsonl", args.limit)
    exemplars = load_exemplars("gsm8k-wei2022")
    model_dir = hub.pull("smollm2-135m-instruct")

    model = load_model("smollm2-135m-instruct", batch_size=args.batch_size)
    cot = ChainOfThought(model, exemplars=exemplars, max_new_tokens=256, stop=STOP)
    start = time.perf_counter()
    ours = cot.evaluate(questions, progress=False)
    ours_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        (tmp_dir / "test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
        task_dir = tmp_dir / "tasks"
        task_dir.mkdir()
        (task_dir / "gsm8k_cot_local.yaml").write_text(yaml.safe_dump(task_yaml(tmp_dir / "test.jsonl", exemplars)))
        peer, peer_s = run_lm_eval(model_dir, task_dir, len(questions), args.batch_size, Path("/tmp"))

    results = peer["results"]
    peer_strict, peer_flexible = results["exact_match,strict-match"], results["exact_match,flexible-extract"]
    ours_texts = [s.rationales[0] for s in ours.solutions]
    same = sum(peer["generations"].get(i, "").strip() == t.strip() for i, t in enumerate(ours_texts))
    n = len(questions)
    print(f"machine: {machine()}")
    print(f"GSM8K test, first {n} questions, 8-shot CoT (Wei et al. exemplars), greedy, batch {args.batch_size}, fp32")
    print(f"{'system':<24} {'strict':>7} {'flexible':>9} {'seconds':>8} {'s/question':>11}")
    print(f"{'lm-evaluation-harness':<24} {100 * peer_strict:>7.1f} {100 * peer_flexible:>9.1f} {peer_s:>8.1f} "
          f"{peer_s / n:>11.2f}")  # fmt: skip
    m = ours.metrics
    print(f"{'promptlearning':<24} {100 * m['accuracy_strict']:>7.1f} {100 * m['accuracy_flexible']:>9.1f} "
          f"{ours_s:>8.1f} {ours_s / n:>11.2f}")  # fmt: skip
    print(f"identical generations: {same}/{n}")
    print(f"accuracy difference (ours - lm_eval): strict {100 * (m['accuracy_strict'] - peer_strict):+.1f}, "
          f"flexible {100 * (m['accuracy_flexible'] - peer_flexible):+.1f} points")  # fmt: skip
    print(f"speed-up vs lm_eval: {peer_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
