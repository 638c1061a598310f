"""``search``: prompt search for a classification task."""

from __future__ import annotations

import argparse

from promptlearning.cli.options import (
    SET_HELP,
    add_backend_options,
    add_device_options,
    command,
    confidence_level,
    device_overrides,
    non_negative_int,
    positive_float,
    positive_int,
)


def _cmd_search(args: argparse.Namespace) -> int:
    from promptlearning.models import check_text_model, load_model
    from promptlearning.search import SearchSettings
    from promptlearning.tasks import load_task
    from promptlearning.tasks.search import run_search

    if args.proposer:
        check_text_model(args.proposer)  # an embedding model proposes nothing: refuse before loading anything
    config = load_task(args.task, [*(args.set or []), *device_overrides(args)])
    templates = None
    if args.templates:
        from promptlearning.search.templates import read_templates

        templates = read_templates(args.templates)
    settings = SearchSettings(
        budget=args.budget, dev_size=args.dev_size or 200, dev=args.dev, stages=tuple(args.stages.split(",")),
        dev_file_size=args.dev_size if args.dev else None,
        shots=args.shots, ape=args.ape, templates=templates, seed=args.seed, confirm_size=args.confirm_size,
        channel=args.channel, adopt=args.adopt, level=args.level, time_budget=args.time_budget,
        proposer=load_model(args.proposer, pull=True) if args.proposer else None,
    )  # fmt: skip
    result = run_search(config, settings, output_dir=args.output_dir, test=not args.no_test, progress=True)
    spent = f"{len(result.candidates)} candidates, {result.spent} of {result.budget} dev prompts"
    best = max(c.dev_score for c in result.candidates)
    print(f"dev {result.metric}: best candidate {best:.4f}, the task's own prompt {result.seed_dev:.4f} "
          f"({spent}, {result.seconds:.0f} s)")  # fmt: skip
    if result.adoption is not None:
        print(f"confirmation: {result.adoption.describe(result.metric)}")
    if result.test is not None:
        print(f"{config.data.eval}: the output ({result.output}) {result.test.value:.4f}, the task's own prompt "
              f"{result.seed_test.value:.4f}")  # fmt: skip
    program = f"; as a prompt program: {result.program_dir}" if result.program_dir else ""
    print(f"task written to {result.task_file}{program}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "search", help="search label words, templates and demonstrations for a classification task")
    p.add_argument("task")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--budget", type=positive_int, help="dev prompts the model may score (default: 40 × dev size)")
    p.add_argument("--dev-size", type=positive_int,
                   help="dev examples held out of train (default: 200); with --dev, at most this many examples of "
                        "the file (a seeded sample), dev and confirmation together")  # fmt: skip
    p.add_argument("--dev", help="a dev file instead of a sample held out of the training file (the confirmation "
                                 "sample then comes from it too)")  # fmt: skip
    p.add_argument("--confirm-size", type=int,
                   help="fresh examples held out of train (or of --dev) on which the task's own prompt and the 5 best "
                        "diverse configurations on dev are compared (default: the dev size and at least 8 per class, "
                        "bounded by the data; with --dev half of the file; 0: none)")  # fmt: skip
    p.add_argument("--adopt", choices=("test", "always"), default="test",
                   help="test (default): the searched prompt replaces the task's own only when a paired bootstrap on "
                        "the confirmation sample says it is better; always: the best there wins")  # fmt: skip
    p.add_argument("--level", type=confidence_level, default=0.95,
                   help="the adoption test's confidence level (default: 0.95)")  # fmt: skip
    p.add_argument("--time-budget", type=positive_float, metavar="MINUTES",
                   help="stop scoring candidates in time to confirm and finish within MINUTES")  # fmt: skip
    p.add_argument(
        "--channel",
        type=non_negative_int,
        default=3,
        help="the best configurations also tried with channel scoring, P(input | label) (default: 3)",
    )
    p.add_argument(
        "--stages", default="words,templates,channel,demonstrations", help="what to search (default: %(default)s)"
    )
    p.add_argument("--shots", type=non_negative_int, help="demonstrations to search for (default: the task's shots)")
    p.add_argument("--templates", help="YAML list of candidate templates instead of the built-in pattern families")
    p.add_argument("--ape", type=non_negative_int, default=0,
                   help="instructions to induce with --proposer (APE; default: 0)")  # fmt: skip
    p.add_argument("--proposer", help="model that proposes instructions (default: the task's model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", help="where <task>-search/ goes (default: the task's output_dir, runs/)")
    p.add_argument("--no-test", action="store_true", help="search only: do not evaluate on the task's eval split")
    add_device_options(p)
    add_backend_options(p)
    p.set_defaults(func=_cmd_search)
