"""``perplexity``: a text file's perplexity (or a masked LM's accuracy)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from promptlearning.cli.options import command, device_name, positive_int
from promptlearning.errors import PromptLearningError


def _cmd_perplexity(args: argparse.Namespace) -> int:
    from promptlearning.pretraining.perplexity import load_language_model, masked_accuracy, perplexity, read_text

    if not Path(args.file).is_file():
        raise PromptLearningError(f"text file {args.file} does not exist")
    text = read_text(args.file, args.field)
    model, tokenizer = load_language_model(args.model, args.device)
    if not type(model).__name__.endswith(("MaskedLM", "ForPreTraining")):
        result = perplexity(model, tokenizer, text, max_length=args.max_length, stride=args.stride,
                            batch_size=args.batch_size, progress=True)  # fmt: skip
        values = result.to_dict()
    else:
        values = masked_accuracy(model, tokenizer, text, block_size=args.max_length or 128)
    if args.json:
        print(json.dumps(values))
    else:
        for key, value in values.items():
            print(f"{key:>18}  {value:.4f}" if isinstance(value, float) else f"{key:>18}  {value}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(sub, "perplexity", help="perplexity of a text file (token, word, bits per byte); MLM accuracy")
    p.add_argument("model", help="embedded model name or model directory (e.g. runs/shakespeare-char/model)")
    p.add_argument("file", help="a text file, or a JSONL file (its --field)")
    p.add_argument("--field", default="text", help="JSONL: the field holding the text (default: text)")
    p.add_argument("--max-length", type=positive_int, help="window in tokens (default: min(1024, the context))")
    p.add_argument("--stride", type=positive_int, help="new tokens scored per window (default: the window)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per forward pass (default: 8)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", type=device_name, default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.set_defaults(func=_cmd_perplexity)
