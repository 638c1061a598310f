"""WikiText-2 test perplexity of SmolLM2-135M: ``promptlearning perplexity`` vs lm-evaluation-harness.

lm-eval scores the same text as one document with its ``loglikelihood_rolling`` (a local task file
built here, wikitext-style metrics: word perplexity, byte perplexity, bits per byte) through its ``hf``
model at the same window (``max_length``); ours is ``perplexity(..., max_length=L)`` with the default
stride (= L), i.e. the same rolling windows. Both in fp32 on the CPU, in this one process.

    python benchmarks/wikitext_perplexity.py [--max-length 1024] [--chars N]   (needs the [bench] extra)

Ends with ``word perplexity difference vs lm_eval: …%`` (target: within 1 %).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import DATA_ROOT, machine

TASK = """
task: wikitext2_promptlearning
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{page}}}}"
should_decontaminate: false
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--chars", type=int, help="score only the first N characters (default: all)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    from promptlearning.models.hub import pull
    from promptlearning.pretraining.perplexity import load_language_model, perplexity

    text = (DATA_ROOT / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    text = text[: args.chars] if args.chars else text
    files = pull("smollm2-135m-instruct", progress=False)
    print(f"machine: {machine()}; {len(text):,} characters, window {args.max_length}")

    start = time.perf_counter()
    model, tokenizer = load_language_model(str(files), device="cpu")
    ours = perplexity(model, tokenizer, text, max_length=args.max_length, batch_size=args.batch_size, progress=True)
    ours_seconds = time.perf_counter() - start
    del model
    print(f"promptlearning: word ppl {ours.word_perplexity:.4f}, token ppl {ours.token_perplexity:.4f}, "
          f"bits/byte {ours.bits_per_byte:.5f} ({ours.tokens:,} tokens, {ours_seconds:.0f} s)")  # fmt: skip

    import lm_eval
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "wikitext2.jsonl"
        data.write_text(json.dumps({"page": text}) + "\n", encoding="utf-8")
        (Path(tmp) / "task.yaml").write_text(TASK.format(data=data), encoding="utf-8")
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(
            model="hf", tasks=["wikitext2_promptlearning"], task_manager=TaskManager(include_path=tmp),
            model_args=f"pretrained={files},dtype=float32,device=cpu,max_length={args.max_length},"
            f"batch_size={args.batch_size}",
        )  # fmt: skip
        theirs_seconds = time.perf_counter() - start
    metrics = results["results"]["wikitext2_promptlearning"]
    theirs = metrics["word_perplexity,none"]
    print(f"lm_eval:        word ppl {theirs:.4f}, bits/byte {metrics['bits_per_byte,none']:.5f} "
          f"({theirs_seconds:.0f} s)")  # fmt: skip
    difference = 100 * abs(ours.word_perplexity - theirs) / theirs
    print(f"word perplexity difference vs lm_eval: {difference:.3f}%")


if __name__ == "__main__":
    main()
