"""``export``: a model as a GGUF file for llama.cpp (checked by loading it back)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from promptlearning.cli.options import command


def _cmd_export(args: argparse.Namespace) -> int:
    from promptlearning.compression.gguf_export import GGUF_QUANTS, export_gguf, verify_gguf
    from promptlearning.errors import PromptLearningError
    from promptlearning.models import resolve_model_dir

    if args.quant not in GGUF_QUANTS:
        raise PromptLearningError(f"unknown GGUF type {args.quant!r}; supported: {', '.join(GGUF_QUANTS)}")
    given = Path(args.model)  # a directory is checked by the export (a program is told why it cannot be)
    source = given if given.is_dir() else Path(str(resolve_model_dir(args.model, pull=True)))
    output = Path(args.output or f"{source.name}.{args.quant}.gguf")
    if output.is_dir():
        raise PromptLearningError(f"--output {output} is a directory; name the .gguf file to write")
    info = export_gguf(source, output, args.quant)
    if not args.no_verify:
        try:
            info["round_trip"] = verify_gguf(source, output, args.quant)
        except PromptLearningError:
            output.unlink(missing_ok=True)  # a file that is not the model is not left behind
            raise
    print(json.dumps(info) if args.json else f"wrote {output} ({info['bytes']:,} bytes, {args.quant})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "export", help="write a model as a GGUF file (f32, f16, q8_0, q4_0), checked by loading it back")
    p.add_argument("model", help="embedded model name or model directory (e.g. runs/<compress task>/model)")
    p.add_argument("--quant", default="q8_0", help="GGUF weight type: f32, f16, q8_0 (default) or q4_0")
    p.add_argument("--output", "-o", help="the .gguf file (default: <model>.<quant>.gguf here)")
    p.add_argument("--no-verify", action="store_true", help="skip loading the file back to compare with the source")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_export)
