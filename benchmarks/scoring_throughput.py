"""loglikelihood throughput on SmolLM2: one request per forward pass vs our batched path.

Each example is a sentiment prompt scored with two continuations (" negative", " positive"),
the work of a zero-shot classifier. Also reports the model-FLOPs utilisation (MFU) against an fp32
matmul peak measured on the same machine in the same run.

    python benchmarks/scoring_throughput.py [--examples 64] [--batch-size 32]

Uses the first rows of SST-2 dev under the data root when present, else built-in sentences.
"""

from __future__ import annotations

import argparse
import time

from common import DATA_ROOT, machine, matmul_peak_gflops, read_jsonl

from promptlearning.models import LoglikelihoodRequest, load_model

FALLBACK = [
    "a gorgeous , witty , seductive movie .",
    "the story is too dull to hold your attention .",
    "an utterly charming and hilarious film .",
    "it 's a bad sign when you 're rooting for the film to end .",
]


def build_requests(n: int) -> list[tuple[str, str]]:
    path = DATA_ROOT / "sst2" / "dev.jsonl"
    texts = [r["text"] for r in read_jsonl(path, n)] if path.exists() else (FALLBACK * n)[:n]
    contexts = [f"Review: {t}\nSentiment:" for t in texts]
    return [(c, w) for c in contexts for w in (" negative", " positive")]


def forward_flops(model, token_rows: list[int], kept_positions: int) -> float:
    """FLOPs of forward passes over rows of the given token counts: 2 x non-embedding parameters per
    token, the vocabulary projection for the kept positions, and attention scores (2 x 2 x layers x
    hidden x tokens^2 / 2 per row)."""
    config = model.model.config
    embedding = model.model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in model.model.parameters()) - embedding
    if not config.tie_word_embeddings:
        body -= model.model.get_output_embeddings().weight.numel()
    flops = 2 * embedding * kept_positions
    for tokens in token_rows:
        flops += 2 * body * tokens + 2 * config.num_hidden_layers * config.hidden_size * tokens * tokens
    return flops


def executed_flops(model, requests: list[tuple[str, str]]) -> tuple[float, float]:
    """Work actually done (padding excluded) one request per forward vs batched, where the
    continuations of one context share a row when they are single tokens."""
    split = [model.split_request(LoglikelihoodRequest(c, w)) for c, w in requests]
    single = forward_flops(model, [len(p) + len(c) - 1 for p, c in split], sum(len(c) for _, c in split))
    rows = {tuple(p): len(p) for p, c in split if len(c) == 1}
    multi = [len(p) + len(c) - 1 for p, c in split if len(c) > 1]
    batched = forward_flops(model, [*rows.values(), *multi], len(rows) + sum(len(c) for p, c in split if len(c) > 1))
    return single, batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    model = load_model("smollm2-135m-instruct", pull=True)
    requests = build_requests(args.examples)
    model.loglikelihood(requests[:4], batch_size=4, progress=False)  # warm-up

    start = time.perf_counter()
    single = [model.loglikelihood([r], batch_size=1, progress=False)[0] for r in requests]
    single_time = time.perf_counter() - start
    start = time.perf_counter()
    batched = model.loglikelihood(requests, batch_size=args.batch_size, progress=False)
    batched_time = time.perf_counter() - start
    drift = max(abs(a.logprob - b.logprob) for a, b in zip(single, batched, strict=True))

    peak = matmul_peak_gflops()
    single_flops, batched_flops = executed_flops(model, requests)
    print(f"machine: {machine()}")
    print(f"{args.examples} examples x 2 continuations; max |batched - single| logprob = {drift:.2e}")
    print(
        f"fp32 matmul peak: {peak:.0f} GFLOP/s; work done: one at a time {single_flops / 1e9:.1f} GFLOP, "
        f"batched {batched_flops / 1e9:.1f} GFLOP (label words of a prompt share one forward pass)"
    )
    print(f"{'mode':<22} {'seconds':>8} {'examples/s':>11} {'GFLOP/s':>8} {'MFU':>6}")
    runs = (("one at a time", single_time, single_flops), (f"batched ({args.batch_size})", batched_time, batched_flops))
    for name, seconds, flops in runs:
        gflops = flops / seconds / 1e9
        rate = args.examples / seconds
        print(f"{name:<22} {seconds:>8.2f} {rate:>11.1f} {gflops:>8.1f} {gflops / peak:>6.1%}")
    print(f"speed-up batched vs one-at-a-time: {single_time / batched_time:.1f}x")


if __name__ == "__main__":
    main()
