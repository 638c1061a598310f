"""Few-shot (ICL) classification: lm-evaluation-harness vs promptlearning, side by side.

SST-2 dev, template ``Review: {{text}}\\nSentiment:``, choices " negative" / " positive", the same 4
fixed demonstrations (in the same order), the same converted SmolLM2 files, fp32, same machine.

    pip install -e ".[bench]"      # lm_eval[hf]
    python benchmarks/icl_vs_lm_eval.py [--limit 872] [--batch-size 16]

Prints both accuracies and examples/s (model loading excluded on both sides) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import DATA_ROOT, machine, read_jsonl

from promptlearning.methods import PromptClassifier
from promptlearning.models import hub, load_model
from promptlearning.prompts import PromptTemplate, Verbalizer, select_fixed

TASK_YAML = """
task: sst2_promptlearning_bench
dataset_path: json
dataset_kwargs:
  data_files:
    train: {demos}
    validation: {dev}
training_split: train
validation_split: validation
fewshot_split: train
fewshot_config:
  sampler: first_n
num_fewshot: 4
output_type: multiple_choice
doc_to_text: "Review: {{{{text}}}}\\nSentiment:"
doc_to_target: "{{{{ ['negative', 'positive'].index(label) }}}}"
doc_to_choice: ["negative", "positive"]
metric_list:
  - metric: acc
"""


def run_lm_eval(model_dir: Path, task_dir: Path, limit: int, batch_size: int) -> tuple[float, float]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, dtype="float32", device="cpu")
    manager = TaskManager(include_path=str(task_dir))
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm, tasks=["sst2_promptlearning_bench"], task_manager=manager, limit=limit, num_fewshot=4
    )
    seconds = time.perf_counter() - start
    return results["results"]["sst2_promptlearning_bench"]["acc,none"], seconds


def run_ours(dev: list[dict], demos: list[dict], batch_size: int) -> tuple[float, float]:
    model = load_model("smollm2-135m-instruct", batch_size=batch_size)
    template = PromptTemplate("Review: {{ text }}\nSentiment:", separator="\n\n")
    verbalizer = Verbalizer({"negative": " negative", "positive": " positive"})
    classifier = PromptClassifier(model, template, verbalizer, method="icl", shots=4, selection="first")
    start = time.perf_counter()
    evaluation = classifier.fit(demos).evaluate(dev, progress=False)
    return evaluation.metrics["accuracy"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=872, help="first N dev rows (default: all 872)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    dev = read_jsonl(DATA_ROOT / "sst2" / "dev.jsonl", args.limit)
    pool = read_jsonl(DATA_ROOT / "sst2" / "train.jsonl", 2000)
    pool = [row for row in pool if 4 <= len(row["text"].split()) <= 25]  # sentences, not tiny phrases
    demos = [pool[i] for i in select_fixed(pool, 4, "balanced", label_field="label", seed=0)]
    model_dir = hub.pull("smollm2-135m-instruct")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        (tmp_dir / "demos.jsonl").write_text("".join(json.dumps(d) + "\n" for d in demos))
        (tmp_dir / "dev.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dev))
        task_dir = tmp_dir / "tasks"
        task_dir.mkdir()
        (task_dir / "sst2_bench.yaml").write_text(
            TASK_YAML.format(demos=tmp_dir / "demos.jsonl", dev=tmp_dir / "dev.jsonl")
        )
        ours_acc, ours_s = run_ours(dev, demos, args.batch_size)
        peer_acc, peer_s = run_lm_eval(model_dir, task_dir, len(dev), args.batch_size)

    n = len(dev)
    print(f"machine: {machine()}")
    print(f"SST-2 dev, first {n} rows, 4 fixed demonstrations, batch size {args.batch_size}, fp32")
    print(f"{'system':<24} {'accuracy':>9} {'seconds':>8} {'examples/s':>11}")
    print(f"{'lm-evaluation-harness':<24} {peer_acc:>9.4f} {peer_s:>8.1f} {n / peer_s:>11.2f}")
    print(f"{'promptlearning icl':<24} {ours_acc:>9.4f} {ours_s:>8.1f} {n / ours_s:>11.2f}")
    print(f"accuracy difference: {100 * (ours_acc - peer_acc):+.2f} points")
    print(f"speed-up vs lm_eval: {peer_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
