"""Generation served over HTTP: ``promptlearning serve`` vs llama-cpp-python's OpenAI-compatible server.

The same workload against both, one after the other on the same machine: SmolLM2-135M-Instruct,
64 prompts (GSM8K test questions) x 64 new tokens, greedy, 8 concurrent clients posting
``/v1/completions``. Ours runs the transformers model (fp32, weights dequantised from the embedded
GGUF) with server-side batching; llama.cpp runs the GGUF itself (``--n_threads`` = all cores).
Tokens are counted from each server's ``usage.completion_tokens``.

    python benchmarks/serve_vs_llamacpp.py [--prompts 64] [--tokens 64] [--clients 8]

Needs the ``[llamacpp]`` extra (``make llamacpp``). Ends with ``throughput ours / llama.cpp server: …``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import DATA_ROOT, machine, read_jsonl
from load import drive, llamacpp_server, percentile, promptlearning_server

from promptlearning.models import hub

MODEL = "smollm2-135m-instruct"


def measure(url: str, model: str, prompts: list[str], tokens: int, clients: int) -> dict[str, float]:
    bodies = [("/v1/completions", {"model": model, "prompt": p, "max_tokens": tokens, "temperature": 0})
              for p in prompts]  # fmt: skip
    drive(url, bodies[:clients], clients)  # warm-up
    run = drive(url, bodies, clients, keep=True)
    assert run.ok == len(bodies), run.statuses
    generated = sum(body["usage"]["completion_tokens"] for body in run.bodies)
    return {
        "requests/s": len(bodies) / run.seconds,
        "tokens/s": generated / run.seconds,
        "tokens": generated,
        "p50 s": percentile(run.latencies, 50),
        "p99 s": percentile(run.latencies, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of every request (default 64)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ours", action="append", metavar="MODEL",
                        help="what our server runs (repeatable; default: the embedded model), e.g. a compressed "
                             "model directory (runs/<compress task>/model)")  # fmt: skip
    args = parser.parse_args()

    questions = read_jsonl(DATA_ROOT / "gsm8k" / "test.jsonl", args.prompts)
    prompts = [f"Question: {q['question']}\nAnswer: Let's think step by step." for q in questions]
    hub.pull(MODEL, progress=False)
    gguf = hub.model_dir(MODEL) / "files" / hub.EMBEDDED_MODELS[MODEL].gguf_file
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.ours or [MODEL]:
            name = "promptlearning serve" + ("" if model == MODEL else f" ({Path(model).parent.name or model})")
            served = ["--model", model, "--served-model-name", MODEL, "--embedding-model", "none"]
            with promptlearning_server(Path(tmp) / "ours.log", *served) as server:
                results[name] = measure(server.url, MODEL, prompts, args.tokens, args.clients)
        flags = ["--n_ctx", "2048", "--n_threads", str(os.cpu_count()), "--n_threads_batch", str(os.cpu_count())]
        with llamacpp_server(Path(tmp) / "llama.log", gguf, MODEL, *flags) as server:
            results["llama_cpp.server"] = measure(server.url, MODEL, prompts, args.tokens, args.clients)

    print(f"machine: {machine()}")
    print(f"SmolLM2-135M-Instruct ({gguf.name}), {len(prompts)} GSM8K prompts x max {args.tokens} tokens, "
          f"greedy, {args.clients} concurrent clients")  # fmt: skip
    print("| server | requests/s | tokens/s | tokens | p50 s | p99 s |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['requests/s']:.2f} | {r['tokens/s']:.1f} | {r['tokens']:.0f} | {r['p50 s']:.2f} "
              f"| {r['p99 s']:.2f} |")  # fmt: skip
    peer = results["llama_cpp.server"]
    for name, ours in results.items():
        if name != "llama_cpp.server":
            print(
                f"throughput {name.removeprefix('promptlearning serve').strip() or 'ours'} / llama.cpp server: "
                f"{ours['tokens/s'] / peer['tokens/s']:.2f}x tokens/s, p99 {ours['p99 s'] / peer['p99 s']:.2f}x"
            )


if __name__ == "__main__":
    main()
