"""Task files and runs: ``run``, ``train`` / ``pretrain`` / ``embed-train``, ``predict``, ``sweep``, ``compare``."""

from __future__ import annotations

import argparse
import json
import sys

from promptlearning.cli.options import (
    SET_HELP,
    add_backend_options,
    add_device_options,
    add_few_shot_options,
    check_output_file,
    command,
    device_name,
    device_overrides,
    few_shot_overrides,
    positive_int,
    print_result,
)
from promptlearning.errors import PromptLearningError
from promptlearning.runs.compare import SORT_KEYS


def _cmd_run(args: argparse.Namespace) -> int:
    from promptlearning.tasks import check_task, load_task, run_task

    config = load_task(args.task, [*(args.set or []), *device_overrides(args)])
    check_task(config)
    if args.output_dir:
        from promptlearning.runs.directory import prepare_output_dir

        prepare_output_dir(args.output_dir)
    print_result(run_task(config, output_dir=args.output_dir, progress=True))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from promptlearning.tasks import load_task, run_task

    few_shot = few_shot_overrides(args) if args.command == "train" else []
    config = load_task(args.task, [*(args.set or []), *few_shot, *device_overrides(args)])
    if config.type != args.command:
        raise PromptLearningError(
            f"{args.task} is a `type: {config.type}` task; `{args.command}` runs `type: {args.command}` tasks "
            "(use `run`)"
        )
    print_result(run_task(config, run_dir=args.output, resume=args.resume, progress=True))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from promptlearning.loading import load_examples
    from promptlearning.training import load_program
    from promptlearning.training.predict import predict_examples
    from promptlearning.training.program import input_fields, read_program_spec

    spec = read_program_spec(args.program)
    examples = load_examples(args.input, required=input_fields(spec))  # relative to the current directory
    output = check_output_file(args.output) if args.output else None
    program = load_program(args.program, device=args.device)
    result = predict_examples(program, examples, batch_size=args.batch_size, progress=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows)
    if output is None:
        sys.stdout.write(text)
    else:  # written whole, then renamed: an interrupted run leaves no half file
        from promptlearning.io import write_atomically

        write_atomically(output, text)
        print(f"{len(result.rows)} predictions written to {output}", file=sys.stderr)
    if result.accuracy is not None:
        print(f"accuracy {result.accuracy:.4f} on {len(examples)} labelled examples", file=sys.stderr)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from promptlearning.tasks.sweep import parse_grid, run_sweep

    overrides = [*(args.set or []), *few_shot_overrides(args), *device_overrides(args)]
    result = run_sweep(
        args.task,
        parse_grid(args.grid or []),
        overrides=overrides,
        output_dir=args.output,
        resume=args.resume,
        progress=True,
    )
    print(result.table)
    print(f"sweep written to {result.sweep_dir}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from promptlearning.runs.compare import (
        check_plot_path,
        comparison_table,
        plot_metric,
        read_runs,
        sort_rows,
    )
    from promptlearning.runs.plots import plot_comparison

    plot = check_plot_path(args.plot) if args.plot else None
    rows = sort_rows(read_runs(args.runs), args.sort)
    metric = plot_metric(rows) if plot is not None else None
    print(comparison_table(rows))
    if plot is not None:
        plot_comparison(rows, plot, metric=metric)
        print(f"plot written to {plot}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this module's command(s) to the parser."""
    p = command(
        sub, "run", help="run a task YAML file of any kind (type: classification, cot, train …); write a run directory"
    )
    p.add_argument("task", help="task file, e.g. tasks/sst2.yaml")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key (repeatable): --set shots=16 --set method.calibration=batch",
    )
    p.add_argument("--output-dir", help="where run directories go (default: the task's output_dir, runs/)")
    add_device_options(p)
    add_backend_options(p)
    p.set_defaults(func=_cmd_run)

    p = command(sub, "train", help="train a task YAML file (type: train): PET, PEFT or head fine-tuning")
    p.add_argument("task", help="task file, e.g. tasks/sst2-pet.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--output", help="run directory (default: <output_dir>/<name>)")
    add_few_shot_options(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last good checkpoint")
    add_device_options(p)
    p.set_defaults(func=_cmd_train)

    for name, what, example in (
        ("pretrain", "pretrain a language model on a corpus", "shakespeare-char"),
        ("embed-train", "train sentence embeddings (SimCSE)", "simcse"),
        ("compress", "compress a model: prune, recover by distillation, quantize", "smollm2-compress"),
    ):
        p = command(sub, name, help=f"{what} (a task YAML file, type: {name})")
        p.add_argument("task", help=f"task file, e.g. tasks/{example}.yaml")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
        p.add_argument("--output", help="run directory (default: <output_dir>/<name>)")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        add_device_options(p)
        p.set_defaults(func=_cmd_train)

    p = command(sub, "predict", help="run a saved prompt program on a JSONL file")
    p.add_argument("program", help="program directory (a training run's seed-*/program)")
    p.add_argument("input", help="JSONL file with the fields the program's template uses")
    p.add_argument("--output", "-o", help="write predictions here (JSONL; default: stdout)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--device", type=device_name, default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.set_defaults(func=_cmd_predict)

    p = command(sub, "sweep", help="run a task (any kind) over a grid of settings; one comparison table and plot")
    p.add_argument("task")
    p.add_argument(
        "--grid", action="append", metavar="KEY=V1,V2", help="values to try (repeatable); none drops a section",
    )  # fmt: skip
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--output", help="sweep directory (default: <output_dir>/<name>-sweep)")
    add_few_shot_options(p)
    p.add_argument("--resume", action="store_true")
    add_device_options(p)
    add_backend_options(p)
    p.set_defaults(func=_cmd_sweep)

    p = command(sub, "compare", help="one table comparing run directories")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--sort", default="run", choices=list(SORT_KEYS), help="order the rows (value: the headline metric)")
    p.add_argument("--plot", metavar="PNG", help="also write a plot of the metric by setting (.png, .svg or .pdf)")
    p.set_defaults(func=_cmd_compare)
