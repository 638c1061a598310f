"""Does torch.compile make torchao's int8 dynamic quantization pay on this CPU? SmolLM2-135M-Instruct
batched scoring forward passes (16 x 64 tokens): fp32 eager, int8-dynamic eager, and both compiled,
in one process; compile time reported.

    python benchmarks/int8_dynamic_compiled.py [--batch 16] [--tokens 64] [--repeats 5]

Ends with ``int8-dynamic compiled over fp32 eager: …x (fp32 compiled: …x)``.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import machine, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    from promptlearning.models import resolve_model_dir
    from promptlearning.models.quantized import apply_torchao

    print(f"machine: {machine()}; batch {args.batch} x {args.tokens} tokens, median of {args.repeats}")
    fp32 = AutoModelForCausalLM.from_pretrained(str(resolve_model_dir("smollm2-135m-instruct", pull=True)),
                                                dtype=torch.float32).eval()  # fmt: skip
    int8 = copy.deepcopy(fp32)
    apply_torchao(int8, "int8-dynamic")
    ids = torch.randint(100, 40_000, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0))
    seconds: dict[str, float] = {}
    for name, model in (("fp32 eager", fp32), ("int8-dynamic eager", int8)):
        with torch.inference_mode():
            model(input_ids=ids)
            seconds[name] = timed(lambda m=model: m(input_ids=ids), args.repeats)[0]
    for name, model in (("fp32 compiled", fp32), ("int8-dynamic compiled", int8)):
        compiled = torch.compile(model, dynamic=True)
        with torch.inference_mode():
            started = time.perf_counter()
            compiled(input_ids=ids)
            print(f"{name}: compiled in {time.perf_counter() - started:.0f} s", flush=True)
            seconds[name] = timed(lambda m=compiled: m(input_ids=ids), args.repeats)[0]
    for name, value in seconds.items():
        print(f"{name}: {value:.3f} s per forward, {args.batch / value:.1f} sequences/s")
    base = seconds["fp32 eager"]
    print(f"int8-dynamic compiled over fp32 eager: {base / seconds['int8-dynamic compiled']:.2f}x "
          f"(fp32 compiled: {base / seconds['fp32 compiled']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
