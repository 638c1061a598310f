"""Self-consistency sampling: our decoding engine vs a plain per-sample ``model.generate`` loop.

GSM8K test questions, 8-shot CoT prompt (Wei et al. exemplars), n samples per question at
temperature 0.7, max 256 new tokens, stop at "Q:", SmolLM2-135M-Instruct fp32, same machine, same run.

* baseline: for every question and sample, ``model.generate`` on that one prompt (batch 1), the
  loop a user writes with transformers;
* ours: ``HFLanguageModel.sample`` — the exemplar block prefilled once for the run, each question
  prefilled once and expanded to its n samples, rows batched and dropped when they finish;
* llama.cpp (if ``llama-cpp-python`` is installed): the same samples one after the other.

    python benchmarks/self_consistency.py [--questions 32] [--samples 5] [--batch-size 40] [--baseline-questions 8]

Prints generated tokens/s of each, the prefill/decode split of ours, and the speed-up.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import DATA_ROOT, machine, read_jsonl

from promptlearning.methods.cot import ChainOfThought, SelfConsistency
from promptlearning.models import GenerationConfig, load_model
from promptlearning.models.interface import sample_seed
from promptlearning.tasks.cot import load_exemplars


def baseline(model, prompts: list[str], config: GenerationConfig, n: int) -> tuple[int, float]:
    """Per-sample ``model.generate`` calls (batch 1), seeded per sample."""
    from transformers import GenerationConfig as HFGenerationConfig

    hf_config = HFGenerationConfig(
        max_new_tokens=config.max_new_tokens, do_sample=True, temperature=config.temperature, top_p=1.0, top_k=None,
        pad_token_id=model.tokenizer.pad_token_id, eos_token_id=model.eos_token_ids, stop_strings=config.stop,
    )  # fmt: skip
    tokens, start = 0, time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([model._prefix + model.encode(prompt)])
            for j in range(n):
                torch.manual_seed(sample_seed(config.seed or 0, j))
                out = model.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=hf_config,
                    tokenizer=model.tokenizer,
                )  # fmt: skip
                new = out[0, ids.shape[1] :].tolist()
                tokens += sum(1 for t in new if t not in model.eos_token_ids)
    return tokens, time.perf_counter() - start


def report(name: str, tokens: int, seconds: float) -> None:
    print(f"{name:<34} {tokens:>7} tokens {seconds:>8.1f} s {tokens / seconds:>8.1f} tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=40, help="rows (questions x samples) per batch, ours")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--baseline-questions", type=int, default=8,
        help="questions for the per-sample loop (its tokens/s does not depend on how many; it is slow)",
    )  # fmt: skip
    args = parser.parse_args()

    questions = read_jsonl(DATA_ROOT / "gsm8k" / "test.jsonl", args.questions)
    model = load_model("smollm2-135m-instruct", batch_size=args.batch_size)
    cot = ChainOfThought(model, exemplars=load_exemplars("gsm8k-wei2022"), max_new_tokens=args.max_new_tokens)
    prompts = [cot.prompt(q) for q in questions]
    config = cot.generation_config(temperature=SelfConsistency(cot, args.samples).temperature)
    print(f"machine: {machine()}")
    print(f"{len(prompts)} questions x {args.samples} samples, 8-shot CoT, T={config.temperature}, "
          f"max {config.max_new_tokens} new tokens, prompt ~{model.count_tokens(prompts[0])} tokens")  # fmt: skip

    start = time.perf_counter()
    ours = model.sample(prompts, config, n=args.samples, progress=False)
    ours_s = time.perf_counter() - start
    ours_tokens = sum(g.num_tokens for row in ours for g in row)
    stats = model.decoder.last_stats.as_dict()
    report("ours (shared prefill, batched)", ours_tokens, ours_s)
    share = 100 * stats["prefill_share"]
    print(f"  prefill {stats['prefill_seconds']} s, decode {stats['decode_seconds']} s (prefill share {share:.1f} %)")
    print(f"  shared prefix prefilled once: {stats['shared_prefix_tokens']} tokens")

    try:
        llama = load_model("smollm2-135m-instruct", backend="llamacpp")
    except Exception as exc:  # the optional extra is not installed
        print(f"llama.cpp backend skipped: {exc}")
    else:
        start = time.perf_counter()
        samples = llama.sample(prompts, config, n=args.samples)
        seconds = time.perf_counter() - start
        tokens = sum(g.num_tokens for row in samples for g in row)
        report("llama.cpp (sequential)", tokens, seconds)

    if args.skip_baseline:
        return
    base_tokens, base_s = baseline(model, prompts[: args.baseline_questions], config, args.samples)
    report("per-sample model.generate loop", base_tokens, base_s)
    print(f"speed-up vs per-sample generate loop: {(ours_tokens / ours_s) / (base_tokens / base_s):.1f}x (tokens/s)")


if __name__ == "__main__":
    main()
