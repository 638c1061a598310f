"""Which deployment to pick: SmolLM2-135M-Instruct compressed every way ``promptlearning compress``
and ``export`` offer, measured on the same tasks in one run, each in its own process (peak RSS).

Per configuration: SST-2 test accuracy (the shipped zero-shot prompt, ``tasks/sst2.yaml``),
WikiText-2 test word perplexity (the first ``--ppl-chars`` characters, windows of 512), batched
classification examples/s (the SST-2 run), greedy generation tokens/s at batch 1 and batch 8, weights
on disk, peak RSS. Pruning measures its blocks and channels on WikiText-2 *validation* and recovery
distils on it (never on the test text). And ``minilm-l6`` fp32 against its ONNX int8 export:
embeddings/s and STS-B test Spearman.

    python benchmarks/deployment.py [--only fp32,bf16] [--sst2-limit N] [--recover-tokens 200000]

Ends with ``best speed-up over fp32 within 1 point of SST-2 accuracy: <config> …x``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DATA_ROOT, REPO, machine, peak_rss_mb, read_jsonl

SMOL = "smollm2-135m-instruct"
CALIBRATION = {"root": str(DATA_ROOT), "files": ["wikitext2/valid.tokens.txt"], "samples": 32, "block_size": 256}
RECOVER = {"held_out": 8, "training": {"batch_size": 4, "learning_rate": 1e-4, "eval_every": 25, "log_with": None}}
VARIANTS = {  # name -> compress task sections (None: the source model itself)
    "fp32": None,
    "bf16": {"quantize": {"mode": "bf16"}},
    "int8-weight": {"quantize": {"mode": "int8-weight"}},
    "int8-dynamic (eager)": {"quantize": {"mode": "int8-dynamic"}},
    "int4-weight (group 32)": {"quantize": {"mode": "int4-weight"}},
    "magnitude 50 % (reference)": {"prune": {"magnitude": 0.5}},
    "8 of 30 layers dropped": {"prune": {"depth": 8}},
    "8 layers dropped + recovery": {"prune": {"depth": 8}, "recover": RECOVER},
    "MLP width -25 %": {"prune": {"width": 0.25}},
    "MLP width -25 % + recovery": {"prune": {"width": 0.25}, "recover": RECOVER},
    "attention heads -33 %": {"prune": {"heads": 0.33}},
    "8 layers dropped + recovery + bf16": {"from": "8 layers dropped + recovery", "quantize": {"mode": "bf16"}},
    "GGUF Q8_0 (llama.cpp)": "q8_0",
    "GGUF Q4_0 (llama.cpp)": "q4_0",
}
PROGRAM_VARIANTS = {  # the same steps on a trained SST-2 program (``--program``): its LoRA merged first
    "program fp32": None,
    "program bf16": {"quantize": {"mode": "bf16"}},
    "program int8-weight": {"quantize": {"mode": "int8-weight"}},
    "program 8 layers dropped + recovery + bf16": {"prune": {"depth": 8}, "recover": RECOVER,
                                                   "quantize": {"mode": "bf16"}},
}  # fmt: skip
PROMPTS = [
    "Write one sentence about the sea.", "Explain what a bank does.", "List three colours.",
    "Describe a cat in a few words.", "What is the capital of France?", "Give me a tip for studying.",
    "Tell a very short story about a robot.", "Why is the sky blue?",
]  # fmt: skip


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def build(name: str, sections: object, work: Path, recover_tokens: int) -> tuple[str, str]:
    """(model path, backend) of a configuration, built into ``work`` once."""
    from promptlearning.models import resolve_model_dir

    source = Path(str(resolve_model_dir(SMOL, pull=True)))
    if sections is None:
        return str(source), "hf"
    if isinstance(sections, str):
        from promptlearning.compression.gguf_export import export_gguf

        target = work / f"smollm2.{sections}.gguf"
        if not target.is_file():
            export_gguf(source, target, sections)
        return str(target), "llamacpp"
    target = work / slug(name)
    if not (target / "model" / "compression.json").is_file():
        from promptlearning.tasks import run_task
        from promptlearning.tasks.registry import validate_config

        sections = dict(sections)
        model = SMOL
        if "from" in sections:  # a further step on another configuration (built first)
            base = sections.pop("from")
            model = build(base, VARIANTS[base], work, recover_tokens)[0]
        task = {"type": "compress", "name": slug(name), "model": model, "device": "cpu", **sections}
        prune = task.get("prune", {})
        if prune.get("depth") or prune.get("width") or prune.get("heads"):
            task["calibration"] = CALIBRATION
        if "recover" in task:
            task["recover"] = {**task["recover"], "tokens": recover_tokens}
        run_task(validate_config(task), run_dir=target, progress=False)
    return str(target / "model"), "hf"


def build_program(name: str, sections: dict | None, program: Path, work: Path, recover_tokens: int) -> str:
    """The program directory of a configuration on the trained ``program``, built into ``work`` once."""
    if sections is None:
        return str(program)
    target = work / slug(name)
    if not (target / "program" / "program.json").is_file():
        from promptlearning.tasks import run_task
        from promptlearning.tasks.registry import validate_config

        task = {"type": "compress", "name": slug(name), "model": str(program), "device": "cpu", **sections}
        if task.get("prune"):
            task["calibration"] = CALIBRATION
        if "recover" in task:
            task["recover"] = {**task["recover"], "tokens": recover_tokens}
        run_task(validate_config(task), run_dir=target, progress=False)
    return str(target / "program")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    weights = [f for f in path.rglob("*") if f.suffix in (".safetensors", ".gguf", ".onnx")]
    return sum(f.stat().st_size for f in weights)


def _gguf_perplexity(path: str, text: str, window: int) -> float:
    """Word perplexity through llama.cpp: the same windows as ``perplexity`` (no overlap)."""
    import math

    import numpy as np
    from llama_cpp import Llama

    from promptlearning.pretraining.perplexity import count_words

    llm = Llama(model_path=path, n_ctx=window + 1, logits_all=True, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    start_token = llm.token_bos() if llm.token_bos() >= 0 else llm.token_eos()
    sequence = [start_token, *ids]
    nats = 0.0
    for begin in range(0, len(sequence) - 1, window):
        chunk = sequence[begin : begin + window + 1]
        llm.reset()
        llm.eval(chunk[:-1])
        scores = np.asarray(llm.scores[: len(chunk) - 1], dtype=np.float64)
        logprobs = scores - np.logaddexp.reduce(scores, axis=-1, keepdims=True)
        nats -= float(logprobs[np.arange(len(chunk) - 1), chunk[1:]].sum())
    return math.exp(nats / count_words(text))


def measure(path: str, backend: str, sst2_limit: int | None, ppl_chars: int) -> dict:
    """One configuration's numbers (run in a fresh process: its peak RSS is its own)."""
    from promptlearning.models import GenerationConfig, load_model
    from promptlearning.tasks import load_task, run_task

    out: dict = {"size": _size(Path(path))}
    # the source row is fp32 whatever `auto` means on this CPU; a compressed directory has its own dtype
    dtype = "auto" if backend != "hf" or (Path(path) / "compression.json").is_file() else "float32"
    lm = load_model(path, backend=backend, device="cpu", dtype=dtype, batch_size=16)
    overrides = ["data.eval=sst2/test.jsonl", f"data.root={DATA_ROOT}", "output_dir=/tmp/deployment-runs"]
    if sst2_limit:
        overrides.append(f"data.eval_limit={sst2_limit}")
    config = load_task(str(REPO / "tasks" / "sst2.yaml"), overrides)
    start = time.perf_counter()
    result = run_task(config, model=lm, progress=False)
    out["sst2_seconds"] = time.perf_counter() - start
    out["rss_after_sst2_mb"] = peak_rss_mb()
    out["sst2_accuracy"] = 100 * result.value
    out["examples_per_s"] = result.num_examples / out["sst2_seconds"]
    text = (DATA_ROOT / "wikitext2" / "test.txt").read_text(encoding="utf-8")[:ppl_chars]
    if backend == "llamacpp":
        out["word_perplexity"] = _gguf_perplexity(path, text, 512)
    else:
        import torch

        from promptlearning.pretraining.perplexity import perplexity

        with torch.inference_mode():
            out["word_perplexity"] = perplexity(lm.model, lm.tokenizer, text, max_length=512,
                                                progress=False).word_perplexity  # fmt: skip
    out["rss_after_perplexity_mb"] = peak_rss_mb()
    settings = GenerationConfig(max_new_tokens=48)
    chat = [lm.apply_chat_template([{"role": "user", "content": p}]) if lm.has_chat_template else p for p in PROMPTS]
    for batch in (1, 8):
        prompts = chat[:batch]
        lm.generate(prompts[:1], GenerationConfig(max_new_tokens=4))  # warm-up
        start = time.perf_counter()
        generations = lm.generate(prompts, settings, batch_size=batch)
        out[f"tokens_per_s_batch{batch}"] = sum(g.num_tokens for g in generations) / (time.perf_counter() - start)
        out[f"rss_after_batch{batch}_mb"] = peak_rss_mb()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def measure_program(path: str, sst2_limit: int | None) -> dict:
    """A program's SST-2 test accuracy and examples/s (its own process: peak RSS)."""
    from promptlearning.loading import load_examples
    from promptlearning.models import resolve_model_dir
    from promptlearning.training.program import load_program, read_program_spec

    spec = read_program_spec(path)
    examples = load_examples(str(DATA_ROOT / "sst2" / "test.jsonl"), limit=sst2_limit)
    program = load_program(path, device="cpu")
    program.predict(examples[:8])  # warm-up
    start = time.perf_counter()
    predictions = program.predict(examples)
    seconds = time.perf_counter() - start
    correct = sum(p.label == str(e[spec.label_field]) for p, e in zip(predictions, examples, strict=True))
    size = _size(Path(str(resolve_model_dir(spec.model)))) + (_size(Path(path)) if spec.objective != "prompt" else 0)
    return {"sst2_accuracy": 100 * correct / len(examples), "examples_per_s": len(examples) / seconds,
            "size": size, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def measure_encoder(path: str, pairs: list[dict]) -> dict:
    import numpy as np
    from scipy.stats import spearmanr

    from promptlearning.models import load_embedder

    encoder = load_embedder(path, device="cpu")
    first = [p["sentence1"] for p in pairs]
    second = [p["sentence2"] for p in pairs]
    encoder.embed(first[:16])  # warm-up
    start = time.perf_counter()
    a, b = encoder.embed(first), encoder.embed(second)
    seconds = time.perf_counter() - start
    cosine = np.sum(a * b, axis=1)
    spearman = 100 * float(spearmanr(cosine, [p["score"] for p in pairs]).statistic)
    return {"embeddings_per_s": 2 * len(pairs) / seconds, "spearman": spearman, "size": _size(Path(path)),
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def in_subprocess(arguments: list[str], env: dict | None = None) -> dict:
    completed = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True,
                               cwd=Path(__file__).parent, check=False, env=env)  # fmt: skip
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "failed"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="comma-separated configuration names, `encoders` for the minilm rows (default: all)"
    )
    parser.add_argument("--sst2-limit", type=int, help="the first N SST-2 test sentences (default: all 1,821)")
    parser.add_argument("--ppl-chars", type=int, default=100_000, help="WikiText-2 test characters (default 100k)")
    parser.add_argument("--recover-tokens", type=int, default=200_000)
    parser.add_argument("--work", default="/tmp/deployment", help="where the compressed models are built")
    parser.add_argument("--measure", nargs=2, metavar=("PATH", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--encoder", help=argparse.SUPPRESS)
    parser.add_argument("--program", help="a trained PET program on SmolLM2 (its rows: `program …` in --only)")
    parser.add_argument("--measure-program", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.sst2_limit, args.ppl_chars)))
        return
    if args.measure_program:
        print(json.dumps(measure_program(args.measure_program, args.sst2_limit)))
        return
    pairs = read_jsonl(DATA_ROOT / "stsb" / "test.jsonl")
    if args.encoder:
        print(json.dumps(measure_encoder(args.encoder, pairs)))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else [*VARIANTS, "encoders", *(PROGRAM_VARIANTS if args.program else [])]
    unknown = [n for n in names if n not in VARIANTS and n not in PROGRAM_VARIANTS and n != "encoders"]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; known: {', '.join([*VARIANTS, *PROGRAM_VARIANTS])}, "
                     "encoders")  # fmt: skip
    if any(n in PROGRAM_VARIANTS for n in names) and not args.program:
        parser.error("the program rows need --program DIR (a trained PET program, e.g. tasks/sst2-train.yaml's)")
    print(f"machine: {machine()}; SST-2 test {args.sst2_limit or 'all'}, WikiText-2 {args.ppl_chars:,} chars, "
          f"recovery {args.recover_tokens:,} tokens")  # fmt: skip
    rows = {}
    for name in [n for n in names if n in VARIANTS]:
        started = time.perf_counter()
        path, backend = build(name, VARIANTS[name], work, args.recover_tokens)
        built = time.perf_counter() - started
        extra = ["--sst2-limit", str(args.sst2_limit)] if args.sst2_limit else []
        rows[name] = {**in_subprocess(["--measure", path, backend, "--ppl-chars", str(args.ppl_chars), *extra]),
                      "build_seconds": built}  # fmt: skip
        print(name, json.dumps(rows[name]), flush=True)
    print_table(rows)
    encoders = {}
    if "encoders" in names:
        from promptlearning.compression.onnx_export import export_encoder_onnx
        from promptlearning.models import resolve_model_dir

        onnx_dir = work / "minilm-onnx-int8"
        if not (onnx_dir / "onnx_encoder.json").is_file():
            export_encoder_onnx(resolve_model_dir("minilm-l6", pull=True), onnx_dir, "int8")
        for label, path in (("minilm-l6 fp32", "minilm-l6"), ("minilm-l6 ONNX int8", str(onnx_dir))):
            encoders[label] = in_subprocess(["--encoder", path])
            print(label, json.dumps(encoders[label]), flush=True)
        print("\n| encoder | embeddings/s | STS-B test Spearman | weights on disk |\n| --- | ---: | ---: | ---: |")
        for label, row in encoders.items():
            print(f"| {label} | {row['embeddings_per_s']:.0f} | {row['spearman']:.2f} | {row['size'] / 1e6:.0f} MB |")
    programs = measure_programs([n for n in names if n in PROGRAM_VARIANTS], args, work)
    (work / "results.json").write_text(json.dumps({"rows": rows, "encoders": encoders, "programs": programs},
                                                  indent=2))  # fmt: skip
    print_ratio(rows)


def measure_programs(names: list[str], args: argparse.Namespace, work: Path) -> dict:
    """The program rows: each built, then measured in its own process (the source in fp32)."""
    rows: dict = {}
    for name in names:
        path = build_program(name, PROGRAM_VARIANTS[name], Path(args.program), work, args.recover_tokens)
        env = {**os.environ, "PROMPTLEARNING_CPU_DTYPE": "float32"} if PROGRAM_VARIANTS[name] is None else None
        extra = ["--sst2-limit", str(args.sst2_limit)] if args.sst2_limit else []
        rows[name] = in_subprocess(["--measure-program", path, *extra], env=env)
        print(name, json.dumps(rows[name]), flush=True)
    if rows:
        print("\n| program | SST-2 acc | classify ex/s | weights on disk | peak RSS |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, row in rows.items():
            if "error" in row:
                print(f"| {name} | error: {row['error'][:80]} | | | |")
                continue
            print(f"| {name} | {row['sst2_accuracy']:.2f} | {row['examples_per_s']:.1f} | {row['size'] / 1e6:.0f} MB "
                  f"| {row['peak_rss_mb']:.0f} MB |")  # fmt: skip
    return rows


def print_table(rows: dict) -> None:
    print(
        "\n| configuration | SST-2 acc | WikiText-2 word ppl | classify ex/s | gen tok/s b1 | gen tok/s b8 "
        "| weights on disk | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for name, row in rows.items():
        if "error" in row:
            print(f"| {name} | error: {row['error'][:80]} | | | | | | |")
            continue
        print(f"| {name} | {row['sst2_accuracy']:.2f} | {row['word_perplexity']:.2f} | {row['examples_per_s']:.1f} "
              f"| {row['tokens_per_s_batch1']:.1f} | {row['tokens_per_s_batch8']:.1f} | {row['size'] / 1e6:.0f} MB "
              f"| {row['peak_rss_mb']:.0f} MB |")  # fmt: skip


def print_ratio(rows: dict) -> None:
    base = rows.get("fp32")
    if not base or "error" in base:
        return
    best, best_ratio = "fp32", 1.0
    for name, row in rows.items():
        if "error" in row or row["sst2_accuracy"] < base["sst2_accuracy"] - 1:
            continue
        ratio = min(row["examples_per_s"] / base["examples_per_s"],
                    row["tokens_per_s_batch1"] / base["tokens_per_s_batch1"])  # fmt: skip
        if ratio > best_ratio:
            best, best_ratio = name, ratio
    print(f"best speed-up over fp32 within 1 point of SST-2 accuracy (classification and batch-1 generation "
          f"both): {best} {best_ratio:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
