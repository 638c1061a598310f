"""``generate`` and ``score``: one model, prompts and choices from the command line."""

from __future__ import annotations

import argparse
import sys
import time

from promptlearning.cli.options import add_model_options, command, load_for, non_negative_float, positive_int, use_chat


def _cmd_generate(args: argparse.Namespace) -> int:
    from promptlearning.models import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        seed=args.seed, stop=args.stop or [],
    )  # fmt: skip
    model = load_for(args)
    prompts = list(args.prompts)
    if use_chat(model, args.chat):
        system = [{"role": "system", "content": args.system}] if args.system else []
        prompts = [model.apply_chat_template([*system, {"role": "user", "content": p}]) for p in prompts]
    start = time.perf_counter()
    generations = model.generate(prompts, config)
    elapsed = time.perf_counter() - start
    for question, generation in zip(args.prompts, generations, strict=True):
        if len(args.prompts) > 1:
            print(f"### {question}")
        print(generation.text.strip())
    tokens = sum(g.num_tokens for g in generations)
    print(f"[{tokens} tokens in {elapsed:.1f} s, {tokens / elapsed:.1f} tokens/s]", file=sys.stderr)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from promptlearning.methods.choices import check_choices, score_choices

    check_choices(args.context, args.choices)  # before the model loads
    model = load_for(args)
    scores = score_choices(model, args.context, args.choices, chat=use_chat(model, args.chat))
    print(f"{'choice':<24} {'logprob':>9} {'tokens':>6} {'per-token':>9} {'greedy':>6} {'p(choice)':>9}")
    for s in scores:
        r = s.result
        print(f"{s.choice!r:<24} {r.logprob:>9.3f} {r.num_tokens:>6} {r.mean_logprob:>9.3f} "
              f"{'yes' if r.is_greedy else 'no':>6} {s.probability:>9.3f}")  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "generate", help="continue one or more prompts")
    p.add_argument("prompts", nargs="+", metavar="PROMPT")
    add_model_options(p)
    p.add_argument("--system", help="system message (chat mode)")
    p.add_argument("--max-new-tokens", type=positive_int, default=128)
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    p.set_defaults(func=_cmd_generate)

    p = command(sub, "score", help="log-likelihood of each choice as the continuation of a context")
    p.add_argument("--context", required=True)
    p.add_argument(
        "--choices",
        nargs="+",
        required=True,
        metavar="TEXT",
        help='continuations, with their leading space if any: --choices " Paris" " London"',
    )
    add_model_options(p, chat_default="off")
    p.set_defaults(func=_cmd_score)
