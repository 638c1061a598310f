"""A bounded overload test of ``promptlearning serve`` on loopback.

1. Capacity: 32 closed-loop clients send SST-2 ``/v1/classify`` requests; requests/s is the capacity.
2. Overload: requests arrive at 4x that rate for 60 s whatever the answers (open loop). Every request
   must be answered 200 or 429 (the bounded queue refusing at once), with zero 5xx and zero
   connection errors, and the latency of accepted requests must stay bounded: the p99 of those
   sent in the second half no more than 10 % above the p99 of those sent in the first half (a queue
   without bound grows by (factor - 1) seconds every second). For scale it also prints
   (max_queue + max_batch_size) / capacity, the time to serve a full server.
3. Endurance: 10,000 small requests (classify, completions, tokenize): the server's resident
   memory at the end must be within 10 % of what it was after the first 1,000.

    python benchmarks/serve_overload.py [--seconds 60] [--factor 4] [--small 10000] [--max-queue 32]

Needs ``psutil`` (the ``[bench]`` extra). Ends with one line: overload factor, errors, p99 and the
memory ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import psutil
from common import DATA_ROOT, machine, read_jsonl
from load import drive, open_loop, percentile, promptlearning_server

MODEL = "smollm2-135m-instruct"
TEMPLATE = "Review: {{ text }}\nSentiment:"
WORDS = {"negative": " negative", "positive": " positive"}
MAX_BATCH_SIZE = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the overload (default 60)")
    parser.add_argument("--factor", type=float, default=4.0, help="arrival rate / capacity (default 4)")
    parser.add_argument("--small", type=int, default=10_000, help="small requests of the endurance part")
    parser.add_argument("--max-queue", type=int, default=32, help="the server's --max-queue (default 32)")
    args = parser.parse_args()

    rows = read_jsonl(DATA_ROOT / "sst2" / "dev.jsonl", 400)
    classify = [("/v1/classify", {"template": TEMPLATE, "verbalizer": WORDS, "inputs": [{"text": r["text"]}]})
                for r in rows]  # fmt: skip
    small = [
        ("/v1/classify", {"template": TEMPLATE, "verbalizer": WORDS, "inputs": [{"text": "a fine film ."}]}),
        ("/v1/completions", {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 1}),
        ("/tokenize", {"model": MODEL, "prompt": "a short sentence to tokenize"}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--model", MODEL, "--embedding-model", "none", "--max-queue", str(args.max_queue),
                 "--max-batch-size", str(MAX_BATCH_SIZE)]  # fmt: skip
        with promptlearning_server(Path(tmp) / "server.log", *flags) as server:
            drive(server.url, classify[:32], 32)  # warm-up
            calm = drive(server.url, classify[32:], 32)
            assert calm.ok == len(classify) - 32, calm.statuses
            capacity = calm.ok / calm.seconds
            rate = args.factor * capacity
            storm = open_loop(server.url, classify, rate, args.seconds)
            full = (args.max_queue + MAX_BATCH_SIZE) / capacity

            process = psutil.Process(server.process.pid)
            first = drive(server.url, [small[i % len(small)] for i in range(1000)], 32)
            rss_first = process.memory_info().rss
            rest = drive(server.url, [small[i % len(small)] for i in range(1000, args.small)], 32)
            rss_end = process.memory_info().rss

    errors_5xx = sum(n for status, n in storm.statuses.items() if isinstance(status, int) and status >= 500)
    connection = sum(n for status, n in storm.statuses.items() if isinstance(status, str))
    other = sum(n for status, n in storm.statuses.items() if status not in (200, 429))
    p99 = percentile(storm.latencies, 99)
    half = args.seconds / 2
    early = percentile([t for t, at in zip(storm.latencies, storm.sent_at, strict=True) if at < half], 99)
    late = percentile([t for t, at in zip(storm.latencies, storm.sent_at, strict=True) if at >= half], 99)
    sent = sum(storm.statuses.values())
    print(f"machine: {machine()}")
    print(f"SmolLM2-135M-Instruct, fp32, --max-queue {args.max_queue} --max-batch-size {MAX_BATCH_SIZE}")
    print(f"capacity: {capacity:.2f} classify requests/s (32 closed-loop clients; p99 "
          f"{percentile(calm.latencies, 99):.2f} s)")  # fmt: skip
    print(f"overload: {rate:.1f} requests/s for {args.seconds:.0f} s, {sent} sent in {storm.seconds:.0f} s; answers "
          f"{dict(sorted(storm.statuses.items(), key=str))}; accepted p50 {percentile(storm.latencies, 50):.2f} s, "
          f"p99 {p99:.2f} s (first half {early:.2f} s, second half {late:.2f} s; a full server drains in "
          f"{full:.2f} s); "
          f"accepted {storm.ok / storm.seconds:.2f} requests/s")  # fmt: skip
    windows = []
    for low in range(0, int(args.seconds), 10):
        window = [t for t, at in zip(storm.latencies, storm.sent_at, strict=True) if low <= at < low + 10]
        windows.append(f"{low}-{low + 10} s: {percentile(window, 99):.2f}")
    print(f"accepted p99 by when sent: {'; '.join(windows)}; 429 answers p50 {percentile(storm.refused, 50):.3f} s, "
          f"p99 {percentile(storm.refused, 99):.3f} s")  # fmt: skip
    print(f"endurance: {args.small} small requests ({sum(r.ok for r in (first, rest))} answered 200) in "
          f"{first.seconds + rest.seconds:.0f} s; RSS {rss_first / 2**20:.0f} MiB after 1,000, "
          f"{rss_end / 2**20:.0f} MiB at the end")  # fmt: skip
    verdict = "PASS" if other == 0 and late <= 1.10 * early and rss_end <= 1.10 * rss_first else "FAIL"
    print(f"overload {args.factor:.0f}x capacity: {errors_5xx} 5xx, {connection} connection errors, "
          f"accepted p99 {p99:.2f} s (halves {early:.2f} / {late:.2f} s); "
          f"RSS end / after 1,000: {rss_end / rss_first:.3f}x; {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
