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


def model_flops(model, requests: list[tuple[str, str]]) -> float:
    """Forward FLOPs: 2 x non-embedding parameters per input token, plus the vocabulary projection
    for the kept positions and attention scores (2 x 2 x layers x hidden x tokens^2 / 2 per row)."""
    config = model.model.config
    embedding = model.model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in model.model.parameters()) - embedding
    if not config.tie_word_embeddings:
        body -= model.model.get_output_embeddings().weight.numel()
    flops = 0.0
    for context, continuation in requests:
        prefix, cont = model.split_request(LoglikelihoodRequest(context, continuation))
        tokens = len(prefix) + len(cont) - 1
        flops += 2 * body * tokens + 2 * embedding * len(cont)
        flops += 2 * config.num_hidden_layers * config.hidden_size * tokens * tokens
    return flops


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
    flops = model_flops(model, requests)
    print(f"machine: {machine()}")
    print(f"{args.examples} examples x 2 continuations; max |batched - single| logprob = {drift:.2e}")
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s; model work: {flops / 1e9:.1f} GFLOP")
    print(f"{'mode':<22} {'seconds':>8} {'examples/s':>11} {'GFLOP/s':>8} {'MFU':>6}")
    for name, seconds in (("one at a time", single_time), (f"batched ({args.batch_size})", batched_time)):
        gflops = flops / seconds / 1e9
        rate = args.examples / seconds
        print(f"{name:<22} {seconds:>8.2f} {rate:>11.1f} {gflops:>8.1f} {gflops / peak:>6.1%}")
    print(f"speed-up batched vs one-at-a-time: {single_time / batched_time:.1f}x")


if __name__ == "__main__":
    main()
