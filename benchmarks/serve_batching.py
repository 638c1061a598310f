"""Server-side batching: 32 concurrent clients sending SST-2 classification requests.

Two workloads against ``promptlearning serve`` on SmolLM2-135M-Instruct (a server subprocess on a
loopback port, real HTTP; the clients are coroutines in this process):

* ``/v1/classify`` — one review per request, the SST-2 zero-shot template and label words;
* ``/v1/completions`` with ``echo`` + ``logprobs`` — lm-eval's log-likelihood request (token ids,
  ``max_tokens=1``), one per review and label word.

Each runs with batching on (the server's default settings) and with ``--max-batch-size 1``; throughput and
p50/p99 latency side by side. For scale, it also times the model itself on the classify workload,
one review per call vs all in batched calls: no server can batch better than that ratio.

    python benchmarks/serve_batching.py [--requests 256] [--clients 32]

Ends with ``throughput ratio batching / max-batch-size 1: …`` (target >= 3x, p99 no worse).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DATA_ROOT, machine, read_jsonl
from load import drive, percentile, promptlearning_server

from promptlearning.models import load_model
from promptlearning.models.interface import LoglikelihoodRequest
from promptlearning.serving import ServerSettings

MODEL = "smollm2-135m-instruct"
TEMPLATE = "Review: {{ text }}\nSentiment:"
WORDS = {"negative": " negative", "positive": " positive"}


def model_ceiling(rows: list[dict]) -> tuple[float, float]:
    """Reviews per second of the model alone: one review per call, and batched calls of 16."""
    model = load_model(MODEL)
    requests = [LoglikelihoodRequest(f"Review: {r['text']}\nSentiment:", w) for r in rows for w in WORDS.values()]
    model.loglikelihood(requests[:8], progress=False)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(requests), 2):
        model.loglikelihood(requests[i : i + 2], progress=False)
    alone = len(rows) / (time.perf_counter() - start)
    start = time.perf_counter()
    model.loglikelihood(requests, batch_size=16, progress=False)
    return alone, len(rows) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="reviews per workload (default 256)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=ServerSettings.model_fields["max_batch_size"].default,
        help="of the batching server (default: the server's)",
    )
    args = parser.parse_args()

    rows = read_jsonl(DATA_ROOT / "sst2" / "dev.jsonl", args.requests)
    tokens = load_model(MODEL)  # only to build lm-eval's token-id requests
    classify = [("/v1/classify", {"template": TEMPLATE, "verbalizer": WORDS, "inputs": [{"text": r["text"]}]})
                for r in rows]  # fmt: skip
    echo = []
    for r in rows:
        for word in WORDS.values():
            prefix, cont = tokens.split_request(LoglikelihoodRequest(f"Review: {r['text']}\nSentiment:", word))
            echo.append(("/v1/completions", {"model": MODEL, "prompt": prefix + cont, "max_tokens": 1, "logprobs": 1,
                                             "echo": True, "temperature": 0}))  # fmt: skip
    del tokens
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting, batch in (("batching", args.max_batch_size), ("max-batch-size 1", 1)):
            log = Path(tmp) / f"server-{batch}.log"
            flags = ["--model", MODEL, "--embedding-model", "none", "--max-batch-size", str(batch),
                     "--max-queue", "4096"]  # fmt: skip
            with promptlearning_server(log, *flags) as server:
                drive(server.url, classify[:8] + echo[:8], args.clients)  # warm-up
                for workload, bodies in (("classify", classify), ("completions echo+logprobs", echo)):
                    run = drive(server.url, bodies, args.clients)
                    assert run.ok == len(bodies), run.statuses
                    results[(workload, setting)] = (len(bodies) / run.seconds, percentile(run.latencies, 50),
                                                    percentile(run.latencies, 99))  # fmt: skip
    alone, batched = model_ceiling(rows)

    print(f"machine: {machine()}")
    print(f"SmolLM2-135M-Instruct, fp32, {args.clients} concurrent clients, SST-2 dev first {len(rows)} reviews")
    print(f"{'workload':<28} {'setting':<18} {'requests/s':>10} {'p50 s':>7} {'p99 s':>7}")
    for (workload, setting), (rps, p50, p99) in results.items():
        print(f"{workload:<28} {setting:<18} {rps:>10.2f} {p50:>7.2f} {p99:>7.2f}")
    print(f"the model alone on classify: {alone:.2f} reviews/s one per call, {batched:.2f} batched "
          f"({batched / alone:.1f}x: the most batching can give on this machine)")  # fmt: skip
    ratios = []
    for workload in ("classify", "completions echo+logprobs"):
        on, off = results[(workload, "batching")], results[(workload, "max-batch-size 1")]
        ratios.append(f"{workload} {on[0] / off[0]:.1f}x (p99 {on[2]:.2f} vs {off[2]:.2f} s)")
    print("throughput ratio batching / max-batch-size 1: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
