"""Model load time: straight from the GGUF file (dequantised by transformers) vs our converted cache.

    python benchmarks/load_time.py [--models smollm2-135m-instruct gemma3-270m] [--repeats 3]

Each load runs in a fresh subprocess; importing torch/transformers and the model classes happens
before the timer in both cases (every process pays it once, whichever way it loads).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from common import machine

from promptlearning.models import hub

# Both snippets import the model classes before the timer: transformers imports them lazily (~3 s),
# a cost every process pays once whichever way it loads.
PRELOAD = "from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM, LlamaForCausalLM\n"

GGUF_LOAD = (
    PRELOAD
    + """
import time, sys
directory, name = sys.argv[1], sys.argv[2]
start = time.perf_counter()
AutoTokenizer.from_pretrained(directory, gguf_file=name)
AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
print(time.perf_counter() - start)
"""
)

CACHED_LOAD = (
    PRELOAD
    + """
import time, sys
from promptlearning.models import load_model
start = time.perf_counter()
load_model(sys.argv[1])
print(time.perf_counter() - start)
"""
)


def run(code: str, *args: str) -> float:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma3-270m"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"{'model':<24} {'GGUF load (s)':>14} {'cached load (s)':>16} {'speed-up':>9}")
    ratios = []
    for name in args.models:
        hub.pull(name)
        spec = hub.get_spec(name)
        gguf_dir = hub.model_dir(name) / "files"
        gguf = statistics.median(run(GGUF_LOAD, str(gguf_dir), spec.gguf_file) for _ in range(args.repeats))
        cached = statistics.median(run(CACHED_LOAD, name) for _ in range(args.repeats))
        ratios.append(gguf / cached)
        print(f"{name:<24} {gguf:>14.1f} {cached:>16.2f} {gguf / cached:>8.1f}x")
    print(f"speed-up cached vs GGUF load: {min(ratios):.1f}x (worst model)")


if __name__ == "__main__":
    main()
