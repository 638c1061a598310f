"""``serve`` (one flag per server setting) and ``keygen``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from promptlearning.cli.options import command
from promptlearning.errors import PromptLearningError


def _cmd_serve(args: argparse.Namespace) -> int:
    from promptlearning.serving import load_settings, serve
    from promptlearning.training.program import read_program_spec

    settings = load_settings(args.config, **_settings_given(args))
    for name, directory in settings.program.items():
        read_program_spec(directory)  # a wrong directory fails now, not after the model loaded
        print(f"[program {name}: {directory}]", file=sys.stderr)
    where = f"http://{settings.host}:{settings.port}"
    auth = "no API key (loopback only)" if settings.no_auth else "API key required"
    print(f"[serving {settings.model or 'programs'} on {where}/v1 ({auth}); Ctrl-C drains and stops]", file=sys.stderr)
    return serve(settings)


def _settings_given(args: argparse.Namespace) -> dict:
    """The server settings given on the command line (None: left to the environment, file or default)."""
    flags = {name: getattr(args, name, None) for name in _SERVE_FLAGS}
    flags["program"] = dict(_program_pair(text) for text in args.program or [])
    return flags


def _program_pair(text: str) -> tuple[str, str]:
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise PromptLearningError(f"--program takes NAME=DIR, got {text!r}")
    return name, directory


def _cmd_keygen(args: argparse.Namespace) -> int:
    from promptlearning.serving.auth import add_key_to_file

    key = add_key_to_file(Path(args.file).expanduser())
    print(key)
    print(f"[its sha256 was appended to {args.file}; the key is shown only now: keep it. "
          f"Serve with --api-keys-file {args.file}]", file=sys.stderr)  # fmt: skip
    return 0


_SERVE_FLAGS: list[str] = []


def _settings_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per :class:`ServerSettings` field, documented from the field itself."""
    from promptlearning.serving.settings import ENV_PREFIX, ServerSettings

    for name, field in ServerSettings.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        env = f" [env {ENV_PREFIX}{name.upper()}]"
        default = field.get_default(call_default_factory=True)
        shown = f" (default: {default})" if default not in (None, [], {}, False) else ""
        text = (field.description or "") + shown + env
        if name == "program":
            p.add_argument(flag, action="append", metavar="NAME=DIR", help=text.replace("%", "%%"))
        elif name == "api_key":
            p.add_argument(flag, action="append", metavar="KEY", help=text.replace("%", "%%"))
        elif field.annotation is bool:
            p.add_argument(flag, action="store_const", const=True, default=None, help=text.replace("%", "%%"))
        else:
            kind = {int: int, float: float}.get(field.annotation, str)  # type: ignore[call-overload]
            p.add_argument(flag, type=kind, default=None, help=text.replace("%", "%%"))
        if name != "program" and name not in _SERVE_FLAGS:
            _SERVE_FLAGS.append(name)


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    """``serve``: one flag per :class:`ServerSettings` field."""
    p = command(sub, "serve", help="an OpenAI-compatible server for a model and saved prompt programs",
                 description="Settings come from flags, then PROMPTLEARNING_SERVE_* variables, then --config FILE "
                 "(YAML with the same names, underscores for dashes). The web UI is under /ui.")  # fmt: skip
    p.add_argument("--config", metavar="YAML", help="settings file")
    _settings_flags(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_ui(args: argparse.Namespace) -> int:
    from promptlearning.serving import load_settings, serve
    from promptlearning.serving.settings import is_loopback

    runs = Path(args.runs_dir).expanduser()
    if not runs.is_dir():
        raise PromptLearningError(
            f"{runs} is not a directory of runs: `make demo` writes runs/demo, or name the folder your runs are in"
        )
    flags = {**_settings_given(args), "ui_runs": runs}
    keyed = flags.get("api_key") or flags.get("api_keys_file")
    if not keyed and flags.get("no_auth") is None and is_loopback(flags.get("host") or "127.0.0.1"):
        flags["no_auth"] = True  # on this machine only, like a notebook server
    flags["embedding_model"] = flags.get("embedding_model") or "none"  # the playground needs no embedder
    settings = load_settings(args.config, **flags)
    auth = "open on loopback" if settings.no_auth else "API key asked once per browser session"
    print(f"[web UI over {runs} at http://{settings.host}:{settings.port}/ui/ ({auth}); "
          f"playground model: {settings.model or 'none'}; Ctrl-C stops]", file=sys.stderr)  # fmt: skip
    return serve(settings)


def add_ui_command(sub: argparse._SubParsersAction) -> None:
    """``ui``: the web UI over a folder of runs, with the playground on a served model."""
    p = command(sub, "ui", help="web UI: browse and compare runs, and a playground for prompts",
                 description="Serves the runs under RUNS_DIR (read-only) and a playground against the model "
                 "(default: the embedded SmolLM2) at http://127.0.0.1:8000/ui/. Without keys it is open on "
                 "loopback only; with --api-key the browser asks for the key once per session. Every "
                 "`serve` flag works here too.")  # fmt: skip
    p.add_argument("runs_dir", nargs="?", default="runs", help="folder of run directories (default: runs)")
    p.add_argument("--config", metavar="YAML", help="server settings file")
    _settings_flags(p, skip=("ui_runs",))
    p.set_defaults(func=_cmd_ui)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``keygen`` to the parser."""
    add_serve_command(sub)
    add_ui_command(sub)
    p = command(sub, "keygen", help="make an API key for `serve`: prints it once, appends its hash to FILE")
    p.add_argument("file", help="keys file (sha256 hashes, one per line), e.g. ~/.config/promptlearning/keys")
    p.set_defaults(func=_cmd_keygen)
