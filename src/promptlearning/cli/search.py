"""``search``: prompt search for a classification task."""

from __future__ import annotations

import argparse

from promptlearning.cli.options import (
    SET_HELP,
    add_backend_options,
    add_device_options,
    command,
    device_overrides,
    non_negative_int,
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
        budget=args.budget, dev_size=args.dev_size, dev=args.dev, stages=tuple(args.stages.split(",")),
        shots=args.shots, ape=args.ape, templates=templates, seed=args.seed, confirm_size=args.confirm_size,
        proposer=load_model(args.proposer, pull=True) if args.proposer else None,
    )  # fmt: skip
    result = run_search(config, settings, output_dir=args.output_dir, test=not args.no_test, progress=True)
    spent = f"{len(result.candidates)} candidates, {result.spent} of {result.budget} dev prompts"
    print(f"dev {result.metric}: winner {result.best.dev_score:.4f}, the task's own prompt {result.seed_dev:.4f} "
          f"({spent}, {result.seconds:.0f} s)")  # fmt: skip
    if result.finalists:
        print(f"confirmation ({result.confirm_size} fresh examples): winner {result.best.confirm_score:.4f}, "
              f"the task's own prompt {result.finalists[0].confirm_score:.4f}")  # fmt: skip
    if result.test is not None:
        print(f"{config.data.eval}: winner {result.test.value:.4f}, the task's own prompt {result.seed_test.value:.4f}")
    print(f"winning task written to {result.task_file}; as a prompt program: {result.program_dir}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "search", help="search label words, templates and demonstrations for a classification task")
    p.add_argument("task")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--budget", type=positive_int, help="dev prompts the model may score (default: 40 × dev size)")
    p.add_argument("--dev-size", type=positive_int, default=200, help="dev examples held out of train (default: 200)")
    p.add_argument("--dev", help="a dev file instead of a sample held out of the training file (the confirmation "
                                 "sample then comes from it too)")  # fmt: skip
    p.add_argument("--confirm-size", type=int,
                   help="fresh examples held out of train (or of --dev) on which the task's own prompt and the 5 best "
                        "on dev are compared, the best there winning (default: the dev size, with --dev half of the "
                        "file; 0: the dev winner wins)")  # fmt: skip
    p.add_argument("--stages", default="words,templates,demonstrations", help="what to search (default: %(default)s)")
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
