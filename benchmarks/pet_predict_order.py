"""What batching by length saves a trained prompt program's prediction: the label logits of SST-2
test sentences (SmolLM2-135M-Instruct, PET + a fresh LoRA, as a seed of ``tasks/sst2-fewshot.yaml``
builds it) in batches of examples of similar length, against batches in input order (how
``PromptProgram.logits`` batched before: each batch padded to its longest sentence).

    python benchmarks/pet_predict_order.py [--n 600] [--batch 32] [--repeats 3]

Both give the same logits (checked); it prints the padded tokens each computes and the medians,
and ends with ``length-sorted over input-order batches: …x``.
"""

from __future__ import annotations

import argparse

import torch
from common import DATA_ROOT, machine, read_jsonl, timed

from promptlearning.training import ProgramSpec, build_program


@torch.no_grad()
def input_order_logits(program, features, batch_size: int) -> list[torch.Tensor]:
    """The baseline: consecutive examples batched together, whatever their lengths."""
    program.module.eval()
    out = []
    for start in range(0, len(features), batch_size):
        batch = program.featurizer.collate(features[start : start + batch_size])
        out.extend(program.module(**batch)["logits"].float().unbind(0))
    return out


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    return sum(
        max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="SST-2 test sentences")
    parser.add_argument("--batch", type=int, default=32, help="eval_batch_size of a training task")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spec = ProgramSpec(
        objective="pet", model="smollm2-135m-instruct", template={"input": "Review: {{ text }}\nSentiment:"},
        verbalizer={"label_words": {"negative": " negative", "positive": " positive"}}, peft="lora",
        peft_options={"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        max_length=128,
    )  # fmt: skip
    program = build_program(spec, seed=13)
    rows = read_jsonl(DATA_ROOT / "sst2" / "test.jsonl", limit=args.n)
    features = program.encode(rows, with_label=False)
    lengths = [len(f["input_ids"]) for f in features]
    print(f"machine: {machine()}; {len(rows)} SST-2 test sentences, batches of {args.batch}")
    print(f"real tokens {sum(lengths)}; computed: input order {padded_tokens(lengths, args.batch)}, "
          f"by length {padded_tokens(sorted(lengths, reverse=True), args.batch)}")  # fmt: skip
    baseline_s, baseline = timed(lambda: input_order_logits(program, features, args.batch), args.repeats)
    sorted_s, ours = timed(lambda: program.logits(features, batch_size=args.batch), args.repeats)
    torch.testing.assert_close(torch.stack(ours), torch.stack(baseline), rtol=1e-4, atol=1e-4)
    print(f"input-order batches: {baseline_s:.2f} s ({len(rows) / baseline_s:.0f} sentences/s)")
    print(f"length-sorted batches: {sorted_s:.2f} s ({len(rows) / sorted_s:.0f} sentences/s)")
    print(f"length-sorted over input-order batches: {baseline_s / sorted_s:.2f}x")


if __name__ == "__main__":
    main()
