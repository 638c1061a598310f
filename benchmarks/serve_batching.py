"""Server-side batching: 32 concurrent clients sending SST-2 classification requests.

Two workloads against ``promptlearning serve`` on SmolLM2-135M-Instruct (in-process uvicorn on a
loopback port, real HTTP):

* ``/v1/classify`` — one review per request, the SST-2 zero-shot template and label words;
* ``/v1/completions`` with ``echo`` + ``logprobs`` — lm-eval's log-likelihood request (token ids,
  ``max_tokens=1``), one per review and label word.

Each runs with batching on (default settings) and with ``--max-batch-size 1``; throughput and
p50/p99 latency side by side.

    python benchmarks/serve_batching.py [--requests 256] [--clients 32]

Ends with ``throughput ratio batching / max-batch-size 1: …`` (target >= 3x, p99 no worse).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import DATA_ROOT, machine, read_jsonl

from promptlearning.models import load_model
from promptlearning.models.interface import LoglikelihoodRequest
from promptlearning.serving import ServedModels, ServerSettings, start_server

MODEL = "smollm2-135m-instruct"
TEMPLATE = "Review: {{ text }}\nSentiment:"
WORDS = {"negative": " negative", "positive": " positive"}


def run_load(url: str, bodies: list[tuple[str, dict]], clients: int) -> tuple[float, list[float]]:
    """Send every (path, body) with ``clients`` in flight; wall time and per-request latencies."""
    latencies: list[float] = []
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=clients)) as http:

        def one(item: tuple[str, dict]) -> None:
            start = time.perf_counter()
            response = http.post(url + item[0], json=item[1])
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, bodies))
        return time.perf_counter() - start, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="reviews per workload (default 256)")
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()

    rows = read_jsonl(DATA_ROOT / "sst2" / "dev.jsonl", args.requests)
    model = load_model(MODEL)
    served = ServedModels(text={MODEL: model})
    served.loaded.set()
    classify = [("/v1/classify", {"template": TEMPLATE, "verbalizer": WORDS, "inputs": [{"text": r["text"]}]})
                for r in rows]  # fmt: skip
    echo = []
    for r in rows:
        for word in WORDS.values():
            prefix, cont = model.split_request(LoglikelihoodRequest(f"Review: {r['text']}\nSentiment:", word))
            echo.append(("/v1/completions", {"model": MODEL, "prompt": prefix + cont, "max_tokens": 1, "logprobs": 1,
                                             "echo": True, "temperature": 0}))  # fmt: skip
    results = {}
    for setting, batch in (("batching", 32), ("max-batch-size 1", 1)):
        server = start_server(ServerSettings(no_auth=True, port=0, embedding_model=None, max_batch_size=batch,
                                             max_queue=4096), served)  # fmt: skip
        try:
            run_load(server.url, classify[:8] + echo[:8], args.clients)  # warm-up
            for workload, bodies in (("classify", classify), ("completions echo+logprobs", echo)):
                seconds, latencies = run_load(server.url, bodies, args.clients)
                results[(workload, setting)] = (len(bodies) / seconds, percentile(latencies, 50),
                                                percentile(latencies, 99))  # fmt: skip
        finally:
            server.stop()

    print(f"machine: {machine()}")
    print(f"SmolLM2-135M-Instruct, fp32, {args.clients} concurrent clients, SST-2 dev first {len(rows)} reviews")
    print(f"{'workload':<28} {'setting':<18} {'requests/s':>10} {'p50 s':>7} {'p99 s':>7}")
    for (workload, setting), (rps, p50, p99) in results.items():
        print(f"{workload:<28} {setting:<18} {rps:>10.2f} {p50:>7.2f} {p99:>7.2f}")
    ratios = []
    for workload in ("classify", "completions echo+logprobs"):
        on, off = results[(workload, "batching")], results[(workload, "max-batch-size 1")]
        ratios.append(f"{workload} {on[0] / off[0]:.1f}x (p99 {on[2]:.2f} vs {off[2]:.2f} s)")
    print("throughput ratio batching / max-batch-size 1: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
