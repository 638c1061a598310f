"""``cot``: one question answered with chain-of-thought (and self-consistency)."""

from __future__ import annotations

import argparse
import sys

from promptlearning.cli.options import add_model_options, command, load_for, non_negative_float, positive_int
from promptlearning.errors import PromptLearningError


def _cmd_cot(args: argparse.Namespace) -> int:
    from promptlearning.methods.spec import SolverSpec, build_solver
    from promptlearning.tasks.cot import load_exemplars

    shown = args.mode != "zero-shot-cot" and args.exemplars != "none"
    exemplars = load_exemplars(args.exemplars) if shown else []
    spec = SolverSpec(
        mode=args.mode,
        exemplars=exemplars,
        self_consistency=args.sc,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        calculator=args.calculator,
    )  # fmt: skip  (checked here, before loading)
    if not args.question.strip():
        raise PromptLearningError("empty question: nothing to reason about")
    solver = build_solver(spec, load_for(args))
    [solution] = solver.predict([{"question": args.question}])
    if args.show_rationales:
        for i, rationale in enumerate(solution.rationales, 1):
            answer = solution.sample_answers["flexible"][i - 1]
            print(f"--- sample {i} (answer: {answer if answer is not None else 'none'})\n{rationale.strip()}")
    answer = solution.answers["flexible"]
    print(f"answer: {answer if answer is not None else 'no answer found'}")
    if args.sc > 1:
        votes = ", ".join(f"{a}: {c}" for a, c in solution.votes["flexible"].items()) or "none"
        print(f"votes: {votes} (agreement {solution.agreement:.2f})")
    print(f"[{solution.generated_tokens} tokens in {solver.last_seconds:.1f} s]", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "cot", help="answer one question with chain-of-thought (and self-consistency)")
    p.add_argument("question")
    add_model_options(p, chat_default=None)
    p.add_argument("--mode", default="few-shot-cot", choices=["few-shot-cot", "zero-shot-cot", "direct"])
    p.add_argument("--exemplars", default="gsm8k-wei2022",
                   help="shipped exemplar set or YAML file (few-shot modes); none: the question alone")  # fmt: skip
    p.add_argument("--sc", type=positive_int, default=1, metavar="N",
                   help="self-consistency: sample N rationales and vote")  # fmt: skip
    p.add_argument("--temperature", type=non_negative_float, help="default: 0 for one sample, 0.7 with --sc > 1")
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calculator", action="store_true",
                   help="evaluate <<expr= calls while decoding (models trained on GSM8K-style rationales)")  # fmt: skip
    p.add_argument("--show-rationales", action="store_true", help="print every sampled rationale")
    p.set_defaults(func=_cmd_cot)
