"""The ``promptlearning`` command line: parses arguments, calls the library, prints.

Heavy imports (torch, transformers) happen inside the commands so ``--help`` stays instant.
Everything a command can check without a model (task files, templates, verbalizers, data, output
paths) is checked before the model is loaded. :func:`main` is the one error boundary: a
:class:`PromptLearningError` (or an operating-system error) prints one line and exits 2; any other
exception is a bug: one line, a saved traceback, exit 1 (``--debug`` shows the traceback instead).

One module per command group (``models``, ``text``, ``tasks``, ``perplexity``, ``search``, ``cot``,
``serve``, ``demo``), each with its handlers and an ``add_commands(sub)``; ``options`` holds what they share.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from promptlearning.cli import cot, demo, export, models, perplexity, search, serve, tasks, text
from promptlearning.errors import PromptLearningError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptlearning",
        description="Prompt learning for language models: offline models, scoring, generation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (models, text, tasks, perplexity, export, search, cot, serve, demo):
        module.add_commands(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _save_traceback() -> Path:
    """Write the current exception's traceback where a bug report can pick it up."""
    from promptlearning.models.hub import home

    text = traceback.format_exc()
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    for folder in (home() / "logs", Path(os.environ.get("TMPDIR", "/tmp"))):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            report = f"promptlearning {' '.join(sys.argv[1:])}\n\n{text}"
            # backslashreplace: arguments or messages holding undecodable bytes must not crash the report
            (folder / name).write_text(report, encoding="utf-8", errors="backslashreplace")
            return folder / name
        except Exception:  # the crash report must never crash
            continue
    return Path("(could not be saved)")


def _is_text(argument: str) -> bool:
    """Python keeps bytes that are not UTF-8 in ``sys.argv`` as lone surrogates; no tokenizer takes them."""
    try:
        argument.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; see the module docstring for exit codes."""
    from promptlearning.progress import progress_style, set_progress_style, third_party_bars_off

    argv = list(sys.argv[1:] if argv is None else argv)
    undecodable = next((a for a in argv if not _is_text(a)), None)
    if undecodable is not None:
        shown = undecodable.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        print(f"error: the argument '{shown}' is not valid UTF-8 text; pass text (or a file holding it)",
              file=sys.stderr)  # fmt: skip
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    set_progress_style(getattr(args, "progress", None) or "auto")
    bars = third_party_bars_off() if progress_style() != "bar" else contextlib.nullcontext()
    debug = getattr(args, "debug", False)
    with warnings.catch_warnings(), bars:
        if not debug:
            warnings.showwarning = _show_warning
        try:
            return args.func(args)
        except PromptLearningError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except UnicodeDecodeError as exc:  # a file read without a reader of its own that names it
            print(f"error: a file is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it to UTF-8 first",
                  file=sys.stderr)  # fmt: skip
            return 2
        except OSError as exc:  # the environment, not a bug: a full disk, a permission, a missing file
            if debug:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
            return 2
        except Exception as exc:
            if debug:
                raise
            path = _save_traceback()
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            print(f"internal error (a bug in promptlearning): {type(exc).__name__}: {first}. The traceback is in "
                  f"{path}; please report it (rerun with --debug to see it here).", file=sys.stderr)  # fmt: skip
            return 1
