"""``export``: a language model as a GGUF file for llama.cpp, or a sentence encoder as an ONNX
directory for onnxruntime; both checked against the source before they are kept."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from promptlearning.cli.options import command

FORMATS = ("auto", "gguf", "onnx")


def _cmd_export(args: argparse.Namespace) -> int:
    from promptlearning.compression.gguf_export import GGUF_QUANTS, export_gguf, verify_gguf
    from promptlearning.compression.onnx_export import ONNX_QUANTS, export_encoder_onnx
    from promptlearning.errors import PromptLearningError
    from promptlearning.models import resolve_model_dir

    given = Path(args.model)  # a directory is checked by the export (a program is told why it cannot be)
    source = given if given.is_dir() else Path(str(resolve_model_dir(args.model, pull=True)))
    kind = args.format if args.format != "auto" else ("onnx" if (source / "modules.json").is_file() else "gguf")
    quants = GGUF_QUANTS if kind == "gguf" else ONNX_QUANTS
    quant = args.quant or quants[2 if kind == "gguf" else 0]
    if quant not in quants:
        raise PromptLearningError(f"unknown {kind.upper()} type {quant!r}; supported: {', '.join(quants)}")
    if kind == "onnx":
        output = Path(args.output or f"{source.name}-onnx-{quant}")
        if output.exists() and not output.is_dir():
            raise PromptLearningError(f"--output {output} is a file; an ONNX export is a directory")
        info = export_encoder_onnx(source, output, quant)
        print(json.dumps(info) if args.json else f"wrote {output}/ ({info['bytes']:,} bytes of {quant} weights)")
        return 0
    output = Path(args.output or f"{source.name}.{quant}.gguf")
    if output.is_dir():
        raise PromptLearningError(f"--output {output} is a directory; name the .gguf file to write")
    info = export_gguf(source, output, quant)
    if not args.no_verify:
        try:
            info["round_trip"] = verify_gguf(source, output, quant)
        except PromptLearningError:
            output.unlink(missing_ok=True)  # a file that is not the model is not left behind
            raise
    print(json.dumps(info) if args.json else f"wrote {output} ({info['bytes']:,} bytes, {quant})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "export", help="write a language model as GGUF or a sentence encoder as ONNX, checked on load")
    p.add_argument("model", help="embedded model name or model directory (e.g. runs/<compress task>/model)")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="gguf (language models, for llama.cpp), onnx (sentence encoders, for onnxruntime); "
                        "auto (default): onnx for sentence encoders, else gguf")  # fmt: skip
    p.add_argument("--quant", help="GGUF: f32, f16, q8_0 (default), q4_0; ONNX: int8 (default), fp32")
    p.add_argument("--output", "-o", help="the .gguf file or the ONNX directory (default: named after the model)")
    p.add_argument("--no-verify", action="store_true", help="GGUF: skip loading the file back to compare")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_export)
