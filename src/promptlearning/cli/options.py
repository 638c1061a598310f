"""What the commands share: argument types, option groups, loading the model a command names."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptlearning.devices import DTYPES, check_device_name  # no torch at import: --help stays fast
from promptlearning.errors import PromptLearningError

SET_HELP = "override a config key (repeatable): --set training.max_steps=100 --set peft.method=lora"


DEFAULT_MODEL = "smollm2-135m-instruct"


def whole_number(minimum: int) -> Any:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be at least 1, got {value}" if minimum == 1 else f"must be {minimum} or more, got {value}"
            )
        return value

    return parse


positive_int = whole_number(1)

non_negative_int = whole_number(0)


def number_in(accepts: Callable[[float], bool], wanted: str, *, what: str = "a number") -> Any:
    """An argparse type: a number that ``accepts`` (NaN never does), or an error saying it ``wanted``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or not accepts(value):  # NaN compares false with everything
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    return parse


non_negative_float = number_in(lambda v: v >= 0, "0 or more")
positive_float = number_in(lambda v: 0 < v < float("inf"), "a number > 0")
confidence_level = number_in(lambda v: 0.5 <= v < 1, "at least 0.5 and below 1 (0.95: 95 %)")
positive_seconds = number_in(lambda v: 0 < v < float("inf"), "a positive number of seconds", what="a number of seconds")


def device_name(text: str) -> str:
    try:
        return check_device_name(text)
    except PromptLearningError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def common_options() -> argparse.ArgumentParser:
    """Options every command takes: progress display and debugging."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument("--progress", dest="progress", action="store_const", const="bar",
                       help="progress bars even when stderr is not a terminal (default: bars on a terminal, "
                            "plain lines every 15 s elsewhere)")  # fmt: skip
    group.add_argument("--no-progress", dest="progress", action="store_const", const="off", help="no progress output")
    group.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    return common


COMMON = common_options()


def command(subparsers: argparse._SubParsersAction, name: str, **options: object) -> argparse.ArgumentParser:
    """A command (or ``models`` action) that takes the common options."""
    return subparsers.add_parser(name, parents=[COMMON], **options)  # type: ignore[arg-type]


def add_model_options(parser: argparse.ArgumentParser, chat_default: str | None = "auto") -> None:
    parser.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help="embedded model name, local HF directory, .gguf file or hub id (default: %(default)s)",
    )
    add_device_options(parser, default="auto")
    add_backend_options(parser)
    if chat_default is None:
        return
    parser.add_argument(
        "--chat",
        default=chat_default,
        choices=["auto", "on", "off"],
        help="wrap the input in the model's chat template (auto: when it has one; default: %(default)s)",
    )


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["hf", "llamacpp", "openai"],
        help="hf (transformers, default), llamacpp (the GGUF file in-process; needs the [llamacpp] extra) or "
        "openai (a model on an OpenAI-compatible server: vLLM, llama.cpp, `promptlearning serve`)",
    )
    parser.add_argument("--base-url", help="openai backend: the server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--tokenizer", help="openai backend: local tokenizer dir or embedded name (default: --model)")
    parser.add_argument("--api-key-env", help="openai backend: variable holding the key (default: OPENAI_API_KEY)")
    parser.add_argument("--timeout", type=positive_seconds, metavar="SECONDS",
                        help="openai backend: longest wait for a request, retries included (default: 60)")  # fmt: skip


def add_device_options(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--device`` and ``--dtype``; ``default=None`` keeps a task file's own setting unless given."""
    from_task = " (default: the task file's, auto)" if default is None else " (default: %(default)s)"
    parser.add_argument(
        "--device",
        default=default,
        type=device_name,
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps" + from_task,
    )
    parser.add_argument(
        "--dtype",
        default=default,
        choices=list(DTYPES),
        help="weights dtype; auto: bfloat16 on GPUs and CPUs that support it, else float16 (GPUs) or float32"
        + from_task,
    )


def add_few_shot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=positive_int, help="few-shot protocol: k training (and k dev) examples per class")
    p.add_argument("--seeds", metavar="S1,S2,...", help="few-shot seeds (default: the task's, or 13,21,42,87,100)")


def device_overrides(args: argparse.Namespace) -> list[str]:
    """``--device`` / ``--dtype`` / ``--backend`` / ``--base-url`` … as overrides of a task file's
    header (given only when set)."""
    keys = ("device", "dtype", "backend", "base_url", "tokenizer", "api_key_env", "timeout")
    return [f"{key}={getattr(args, key)}" for key in keys if getattr(args, key, None)]


def remote_options(args: argparse.Namespace) -> dict[str, Any]:
    """``load_model`` options of the openai backend, when it is the one chosen."""
    if getattr(args, "backend", None) != "openai":
        return {}
    options = {
        "base_url": args.base_url,
        "tokenizer": args.tokenizer,
        "api_key_env": args.api_key_env or "OPENAI_API_KEY",
    }
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    return options


def load_for(args: argparse.Namespace):
    from promptlearning.models import check_text_model, load_model

    check_text_model(args.model)
    start = time.perf_counter()
    model = load_model(
        args.model,
        pull=True,
        device=args.device,
        dtype=args.dtype,
        backend=getattr(args, "backend", None),
        **remote_options(args),
    )
    print(f"[{model.name} loaded in {time.perf_counter() - start:.1f} s]", file=sys.stderr)
    return model


def use_chat(model, mode: str) -> bool:
    if mode == "on" and not model.has_chat_template:
        raise PromptLearningError(f"{model.name} has no chat template; use --chat off")
    return mode == "on" or (mode == "auto" and model.has_chat_template)


def print_result(result: Any) -> None:
    """The one-line summary and the run directory of any task kind's :class:`TaskResult`."""
    from promptlearning.runs.compare import comparison_table, result_row

    if os.environ.get("RANK", "0") != "0":
        return  # one of several processes (`accelerate launch`, torchrun): the main one prints
    print(result.summary_line())
    for line in getattr(result.evaluation, "summary_lines", lambda: [])():
        print(line)
    if result.run_dir is not None:
        print(comparison_table([result_row(result)]))
        print(f"run written to {result.run_dir}")


def few_shot_overrides(args: argparse.Namespace) -> list[str]:
    """``--k`` / ``--seeds`` as overrides of the task's ``few_shot`` section."""
    out = []
    if args.k is not None:
        out.append(f"few_shot.k={args.k}")
    if args.seeds:
        out.append(f"few_shot.seeds=[{args.seeds}]")
    return out


def check_output_file(path: str) -> Path:
    output = Path(path).expanduser()
    if output.is_dir():
        raise PromptLearningError(f"--output {output} is a directory; name a file, e.g. {output}/predictions.jsonl")
    if not output.parent.is_dir():
        raise PromptLearningError(f"--output {output}: the folder {output.parent} does not exist")
    return output
