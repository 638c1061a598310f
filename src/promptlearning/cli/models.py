"""``promptlearning models``: list, pull, verify and inspect the embedded models."""

from __future__ import annotations

import argparse
import json
import time

from promptlearning.cli.options import command
from promptlearning.errors import PromptLearningError


def _cmd_models_list(args: argparse.Namespace) -> int:
    from promptlearning.models import hub

    print(f"{'name':<24} {'kind':<20} {'pulled':<8} description")
    states = {}
    for spec in hub.EMBEDDED_MODELS.values():
        states[spec.name] = hub.cache_state(spec.name)
        default = " (default)" if spec.name == hub.DEFAULT_MODEL else ""
        print(f"{spec.name:<24} {spec.kind:<20} {states[spec.name]:<8} {spec.description}{default}")
    print(f"\ncache: {hub.home()}  (set PROMPTLEARNING_HOME to move it)")
    if any(state in ("changed", "damaged") for state in states.values()):
        print("changed: a file's size or time differs from the pull (`promptlearning models verify` checks it); "
              "damaged: re-pull with `promptlearning models pull NAME --force`")  # fmt: skip
    return 0


def _cmd_models_verify(args: argparse.Namespace) -> int:
    from promptlearning.models import hub

    names = args.names or [name for name in hub.EMBEDDED_MODELS if hub.is_pulled(name)]
    if not names:
        raise PromptLearningError("no model is pulled yet; pull one with `promptlearning models pull NAME`")
    damaged = []
    for name in names:
        hub.get_spec(name)
        if not hub.is_pulled(name):
            raise PromptLearningError(f"{name} is not pulled; nothing to verify")
        problems = hub.verify(name)
        if problems:
            damaged.append(name)
            print(f"{name}: DAMAGED ({'; '.join(problems)})")
        else:
            print(f"{name}: ok (every file matches its sha256)")
    if damaged:
        raise PromptLearningError(
            f"{', '.join(damaged)} failed verification: re-pull with "
            f"`promptlearning models pull {' '.join(damaged)} --force`"
        )
    return 0


def _cmd_models_pull(args: argparse.Namespace) -> int:
    from promptlearning.models import hub

    names = list(hub.EMBEDDED_MODELS) if args.all else args.names
    if not names:
        raise PromptLearningError("name a model to pull (see `promptlearning models list`) or pass --all")
    for name in names:
        start = time.perf_counter()
        already = hub.is_pulled(name) and not args.force
        path = hub.pull(name, force=args.force)
        note = "already in the cache" if already else f"pulled in {time.perf_counter() - start:.1f} s"
        print(f"{name}: {path} ({note})")
    return 0


def _cmd_models_info(args: argparse.Namespace) -> int:
    from promptlearning.models import hub

    print(json.dumps(hub.model_info(args.name), indent=2))
    return 0


def _cmd_models_path(args: argparse.Namespace) -> int:
    from promptlearning.models import hub

    print(hub.loadable_path(args.name))
    return 0


def _cmd_models_remove(args: argparse.Namespace) -> int:
    from promptlearning.models import hub

    removed = hub.remove(args.name)
    print(f"{args.name}: {'removed' if removed else 'was not in the cache'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    models = sub.add_parser("models", help="list, pull, verify and inspect the embedded offline models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = command(msub, "list", help="embedded models and whether they are in the cache")
    p.set_defaults(func=_cmd_models_list)
    p = command(msub, "pull", help="fetch, verify (sha256) and convert embedded models into the cache")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="pull every embedded model")
    p.add_argument("--force", action="store_true", help="pull again even if the cache looks complete")
    p.set_defaults(func=_cmd_models_pull)
    p = command(msub, "info", help="sources, checksums, notes and cache state of a model")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_models_info)
    p = command(msub, "verify", help="hash every cached file of pulled models and compare with the pull")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every pulled model")
    p.set_defaults(func=_cmd_models_verify)
    p = command(msub, "path", help="print the directory a backend loads for a pulled model")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_models_path)
    p = command(msub, "remove", help="delete a pulled model from the cache")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_models_remove)
