"""``demo``: the main job on the embedded default model."""

from __future__ import annotations

import argparse

from promptlearning.cli.options import DEFAULT_MODEL, command


def _cmd_demo(args: argparse.Namespace) -> int:
    from promptlearning.demo import run_demo

    return run_demo(args.model)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "demo", help="the main job on the embedded default model")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL)
    p.set_defaults(func=_cmd_demo)
