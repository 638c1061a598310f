"""The ``promptlearning`` command line: parses arguments, calls the library, prints.

Heavy imports (torch, transformers) happen inside the commands so ``--help`` stays instant.
Everything a command can check without a model (task files, templates, verbalizers, data, output
paths) is checked before the model is loaded. :func:`main` is the one error boundary: a
:class:`PromptLearningError` (or an operating-system error) prints one line and exits 2; any other
exception is a bug: one line, a saved traceback, exit 1 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptlearning.devices import DTYPES, check_device_name  # no torch at import: --help stays fast
from promptlearning.errors import PromptLearningError
from promptlearning.runs.compare import SORT_KEYS

DEFAULT_MODEL = "smollm2-135m-instruct"


# ----------------------------------------------------------------------------- models


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


# ----------------------------------------------------------------------------- requests


def _load(args: argparse.Namespace):
    from promptlearning.models import check_text_model, load_model

    check_text_model(args.model)
    start = time.perf_counter()
    model = load_model(
        args.model,
        pull=True,
        device=args.device,
        dtype=args.dtype,
        backend=getattr(args, "backend", None),
        **_remote_options(args),
    )
    print(f"[{model.name} loaded in {time.perf_counter() - start:.1f} s]", file=sys.stderr)
    return model


def _use_chat(model, mode: str) -> bool:
    if mode == "on" and not model.has_chat_template:
        raise PromptLearningError(f"{model.name} has no chat template; use --chat off")
    return mode == "on" or (mode == "auto" and model.has_chat_template)


def _cmd_generate(args: argparse.Namespace) -> int:
    from promptlearning.models import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        seed=args.seed, stop=args.stop or [],
    )  # fmt: skip
    model = _load(args)
    prompts = list(args.prompts)
    if _use_chat(model, args.chat):
        system = [{"role": "system", "content": args.system}] if args.system else []
        prompts = [model.apply_chat_template([*system, {"role": "user", "content": p}]) for p in prompts]
    start = time.perf_counter()
    generations = model.generate(prompts, config)
    elapsed = time.perf_counter() - start
    for question, generation in zip(args.prompts, generations, strict=True):
        if len(args.prompts) > 1:
            print(f"### {question}")
        print(generation.text.strip())
    tokens = sum(g.num_tokens for g in generations)
    print(f"[{tokens} tokens in {elapsed:.1f} s, {tokens / elapsed:.1f} tokens/s]", file=sys.stderr)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from promptlearning.methods.choices import check_choices, score_choices

    check_choices(args.context, args.choices)  # before the model loads
    model = _load(args)
    scores = score_choices(model, args.context, args.choices, chat=_use_chat(model, args.chat))
    print(f"{'choice':<24} {'logprob':>9} {'tokens':>6} {'per-token':>9} {'greedy':>6} {'p(choice)':>9}")
    for s in scores:
        r = s.result
        print(f"{s.choice!r:<24} {r.logprob:>9.3f} {r.num_tokens:>6} {r.mean_logprob:>9.3f} "
              f"{'yes' if r.is_greedy else 'no':>6} {s.probability:>9.3f}")  # fmt: skip
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from promptlearning.tasks import check_task, load_task, run_task

    config = load_task(args.task, [*(args.set or []), *_device_overrides(args)])
    check_task(config)
    if args.output_dir:
        from promptlearning.runs.directory import prepare_output_dir

        prepare_output_dir(args.output_dir)
    _print_result(run_task(config, output_dir=args.output_dir, progress=True))
    return 0


def _device_overrides(args: argparse.Namespace) -> list[str]:
    """``--device`` / ``--dtype`` / ``--backend`` / ``--base-url`` … as overrides of a task file's
    header (given only when set)."""
    keys = ("device", "dtype", "backend", "base_url", "tokenizer", "api_key_env", "timeout")
    return [f"{key}={getattr(args, key)}" for key in keys if getattr(args, key, None)]


def _remote_options(args: argparse.Namespace) -> dict[str, Any]:
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


def _print_result(result: Any) -> None:
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


def _few_shot_overrides(args: argparse.Namespace) -> list[str]:
    """``--k`` / ``--seeds`` as overrides of the task's ``few_shot`` section."""
    out = []
    if args.k is not None:
        out.append(f"few_shot.k={args.k}")
    if args.seeds:
        out.append(f"few_shot.seeds=[{args.seeds}]")
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from promptlearning.tasks import load_task, run_task

    few_shot = _few_shot_overrides(args) if args.command == "train" else []
    config = load_task(args.task, [*(args.set or []), *few_shot, *_device_overrides(args)])
    if config.type != args.command:
        raise PromptLearningError(
            f"{args.task} is a `type: {config.type}` task; `{args.command}` runs `type: {args.command}` tasks "
            "(use `run`)"
        )
    _print_result(run_task(config, run_dir=args.output, resume=args.resume, progress=True))
    return 0


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


def _cmd_predict(args: argparse.Namespace) -> int:
    from promptlearning.loading import load_examples
    from promptlearning.training import load_program
    from promptlearning.training.predict import predict_examples
    from promptlearning.training.program import input_fields, read_program_spec

    spec = read_program_spec(args.program)
    examples = load_examples(args.input, required=input_fields(spec))  # relative to the current directory
    output = _check_output_file(args.output) if args.output else None
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


def _check_output_file(path: str) -> Path:
    output = Path(path).expanduser()
    if output.is_dir():
        raise PromptLearningError(f"--output {output} is a directory; name a file, e.g. {output}/predictions.jsonl")
    if not output.parent.is_dir():
        raise PromptLearningError(f"--output {output}: the folder {output.parent} does not exist")
    return output


def _cmd_sweep(args: argparse.Namespace) -> int:
    from promptlearning.tasks.sweep import parse_grid, run_sweep

    overrides = [*(args.set or []), *_few_shot_overrides(args), *_device_overrides(args)]
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


def _cmd_search(args: argparse.Namespace) -> int:
    from promptlearning.models import check_text_model, load_model
    from promptlearning.search import SearchSettings
    from promptlearning.tasks import load_task
    from promptlearning.tasks.search import run_search

    if args.proposer:
        check_text_model(args.proposer)  # an embedding model proposes nothing: refuse before loading anything
    config = load_task(args.task, [*(args.set or []), *_device_overrides(args)])
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


def _cmd_cot(args: argparse.Namespace) -> int:
    from promptlearning.methods.spec import SolverSpec, build_solver
    from promptlearning.tasks.cot import load_exemplars

    exemplars = load_exemplars(args.exemplars) if args.mode != "zero-shot-cot" else []
    spec = SolverSpec(
        mode=args.mode,
        exemplars=exemplars,
        self_consistency=args.sc,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )  # fmt: skip  (checked here, before loading)
    if not args.question.strip():
        raise PromptLearningError("empty question: nothing to reason about")
    solver = build_solver(spec, _load(args))
    [solution] = solver.predict([{"question": args.question}])
    if args.show_rationales:
        for i, rationale in enumerate(solution.rationales, 1):
            answer = solution.sample_answers["flexible"][i - 1]
            print(f"--- sample {i} (answer: {answer if answer is not None else 'none'})\n{rationale.strip()}")
    answer = solution.answers["flexible"]
    print(f"answer: {answer if answer is not None else 'no answer found'}")
    if args.sc > 1:
        votes = ", ".join(f"{a}: {c}" for a, c in solution.votes["flexible"].items()) or "none"
        print(f"votes: {votes} (agreement {solution.agreement:.2f})")
    print(f"[{solution.generated_tokens} tokens in {solver.last_seconds:.1f} s]", file=sys.stderr)
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


def _cmd_serve(args: argparse.Namespace) -> int:
    from promptlearning.serving import load_settings, serve
    from promptlearning.training.program import read_program_spec

    flags = {name: getattr(args, name) for name in _SERVE_FLAGS}
    flags["program"] = dict(_program_pair(text) for text in args.program or [])
    settings = load_settings(args.config, **flags)
    for name, directory in settings.program.items():
        read_program_spec(directory)  # a wrong directory fails now, not after the model loaded
        print(f"[program {name}: {directory}]", file=sys.stderr)
    where = f"http://{settings.host}:{settings.port}"
    auth = "no API key (loopback only)" if settings.no_auth else "API key required"
    print(f"[serving {settings.model or 'programs'} on {where}/v1 ({auth}); Ctrl-C drains and stops]", file=sys.stderr)
    return serve(settings)


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


def _add_serve_command(sub: argparse._SubParsersAction) -> None:
    """``serve``: one flag per :class:`ServerSettings` field, documented from the field itself."""
    from promptlearning.serving.settings import ENV_PREFIX, ServerSettings

    p = _command(sub, "serve", help="an OpenAI-compatible server for a model and saved prompt programs",
                 description="Settings come from flags, then PROMPTLEARNING_SERVE_* variables, then --config FILE "
                 "(YAML with the same names, underscores for dashes).")  # fmt: skip
    p.add_argument("--config", metavar="YAML", help="settings file")
    for name, field in ServerSettings.model_fields.items():
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
        if name != "program":
            _SERVE_FLAGS.append(name)
    p.set_defaults(func=_cmd_serve)


def _cmd_demo(args: argparse.Namespace) -> int:
    from promptlearning.demo import run_demo

    return run_demo(args.model)


# ----------------------------------------------------------------------------- parser


def _whole_number(minimum: int) -> Any:
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


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _common_options() -> argparse.ArgumentParser:
    """Options every command takes: progress display and debugging."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument("--progress", dest="progress", action="store_const", const="bar",
                       help="progress bars even when stderr is not a terminal (default: bars on a terminal, "
                            "plain lines every 15 s elsewhere)")  # fmt: skip
    group.add_argument("--no-progress", dest="progress", action="store_const", const="off", help="no progress output")
    group.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    return common


_COMMON = _common_options()


def _command(subparsers: argparse._SubParsersAction, name: str, **options: object) -> argparse.ArgumentParser:
    """A command (or ``models`` action) that takes the common options."""
    return subparsers.add_parser(name, parents=[_COMMON], **options)  # type: ignore[arg-type]


def _add_model_options(parser: argparse.ArgumentParser, chat_default: str | None = "auto") -> None:
    parser.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help="embedded model name, local HF directory, .gguf file or hub id (default: %(default)s)",
    )
    _add_device_options(parser, default="auto")
    _add_backend_options(parser)
    if chat_default is None:
        return
    parser.add_argument(
        "--chat",
        default=chat_default,
        choices=["auto", "on", "off"],
        help="wrap the input in the model's chat template (auto: when it has one; default: %(default)s)",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["hf", "llamacpp", "openai"],
        help="hf (transformers, default), llamacpp (the GGUF file in-process; needs the [llamacpp] extra) or "
        "openai (a model on an OpenAI-compatible server: vLLM, llama.cpp, `promptlearning serve`)",
    )
    parser.add_argument("--base-url", help="openai backend: the server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--tokenizer", help="openai backend: local tokenizer dir or embedded name (default: --model)")
    parser.add_argument("--api-key-env", help="openai backend: variable holding the key (default: OPENAI_API_KEY)")
    parser.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS",
                        help="openai backend: longest wait for a request, retries included (default: 60)")  # fmt: skip


def _add_device_options(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--device`` and ``--dtype``; ``default=None`` keeps a task file's own setting unless given."""
    from_task = " (default: the task file's, auto)" if default is None else " (default: %(default)s)"
    parser.add_argument(
        "--device",
        default=default,
        type=_device_name,
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps" + from_task,
    )
    parser.add_argument(
        "--dtype",
        default=default,
        choices=list(DTYPES),
        help="weights dtype; auto: bfloat16 on GPUs that support it, float32 elsewhere" + from_task,
    )


def _device_name(text: str) -> str:
    try:
        return check_device_name(text)
    except PromptLearningError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_few_shot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=_positive_int, help="few-shot protocol: k training (and k dev) examples per class")
    p.add_argument("--seeds", metavar="S1,S2,...", help="few-shot seeds (default: the task's, or 13,21,42,87,100)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptlearning",
        description="Prompt learning for language models: offline models, scoring, generation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list, pull, verify and inspect the embedded offline models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = _command(msub, "list", help="embedded models and whether they are in the cache")
    p.set_defaults(func=_cmd_models_list)
    p = _command(msub, "pull", help="fetch, verify (sha256) and convert embedded models into the cache")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--all", action="store_true", help="pull every embedded model")
    p.add_argument("--force", action="store_true", help="pull again even if the cache looks complete")
    p.set_defaults(func=_cmd_models_pull)
    p = _command(msub, "info", help="sources, checksums, notes and cache state of a model")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_models_info)
    p = _command(msub, "verify", help="hash every cached file of pulled models and compare with the pull")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every pulled model")
    p.set_defaults(func=_cmd_models_verify)
    p = _command(msub, "path", help="print the directory a backend loads for a pulled model")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_models_path)
    p = _command(msub, "remove", help="delete a pulled model from the cache")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_models_remove)

    p = _command(sub, "generate", help="continue one or more prompts")
    p.add_argument("prompts", nargs="+", metavar="PROMPT")
    _add_model_options(p)
    p.add_argument("--system", help="system message (chat mode)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=128)
    p.add_argument("--temperature", type=_non_negative_float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    p.set_defaults(func=_cmd_generate)

    p = _command(sub, "score", help="log-likelihood of each choice as the continuation of a context")
    p.add_argument("--context", required=True)
    p.add_argument(
        "--choices",
        nargs="+",
        required=True,
        metavar="TEXT",
        help='continuations, with their leading space if any: --choices " Paris" " London"',
    )
    _add_model_options(p, chat_default="off")
    p.set_defaults(func=_cmd_score)

    p = _command(
        sub, "run", help="run a task YAML file of any kind (type: classification, cot, train …); write a run directory"
    )
    p.add_argument("task", help="task file, e.g. tasks/sst2.yaml")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key (repeatable): --set shots=16 --set method.calibrate=true",
    )
    p.add_argument("--output-dir", help="where run directories go (default: the task's output_dir, runs/)")
    _add_device_options(p)
    _add_backend_options(p)
    p.set_defaults(func=_cmd_run)

    set_help = "override a config key (repeatable): --set training.max_steps=100 --set peft.method=lora"
    p = _command(sub, "train", help="train a task YAML file (type: train): PET, PEFT or head fine-tuning")
    p.add_argument("task", help="task file, e.g. tasks/sst2-pet.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    p.add_argument("--output", help="run directory (default: <output_dir>/<name>)")
    _add_few_shot_options(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last good checkpoint")
    _add_device_options(p)
    p.set_defaults(func=_cmd_train)

    for name, what, example in (
        ("pretrain", "pretrain a language model on a corpus", "shakespeare-char"),
        ("embed-train", "train sentence embeddings (SimCSE)", "simcse"),
    ):
        p = _command(sub, name, help=f"{what} (a task YAML file, type: {name})")
        p.add_argument("task", help=f"task file, e.g. tasks/{example}.yaml")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
        p.add_argument("--output", help="run directory (default: <output_dir>/<name>)")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        _add_device_options(p)
        p.set_defaults(func=_cmd_train)

    p = _command(sub, "perplexity", help="perplexity of a text file (token, word, bits per byte); MLM accuracy")
    p.add_argument("model", help="embedded model name or model directory (e.g. runs/shakespeare-char/model)")
    p.add_argument("file", help="a text file, or a JSONL file (its --field)")
    p.add_argument("--field", default="text", help="JSONL: the field holding the text (default: text)")
    p.add_argument("--max-length", type=_positive_int, help="window in tokens (default: min(1024, the context))")
    p.add_argument("--stride", type=_positive_int, help="new tokens scored per window (default: the window)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="windows per forward pass (default: 8)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", type=_device_name, default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.set_defaults(func=_cmd_perplexity)

    p = _command(sub, "predict", help="run a saved prompt program on a JSONL file")
    p.add_argument("program", help="program directory (a training run's seed-*/program)")
    p.add_argument("input", help="JSONL file with the fields the program's template uses")
    p.add_argument("--output", "-o", help="write predictions here (JSONL; default: stdout)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--device", type=_device_name, default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.set_defaults(func=_cmd_predict)

    p = _command(sub, "sweep", help="run a task (any kind) over a grid of settings; one comparison table and plot")
    p.add_argument("task")
    p.add_argument(
        "--grid", action="append", metavar="KEY=V1,V2", help="values to try (repeatable); none drops a section",
    )  # fmt: skip
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    p.add_argument("--output", help="sweep directory (default: <output_dir>/<name>-sweep)")
    _add_few_shot_options(p)
    p.add_argument("--resume", action="store_true")
    _add_device_options(p)
    _add_backend_options(p)
    p.set_defaults(func=_cmd_sweep)

    p = _command(sub, "search", help="search label words, templates and demonstrations for a classification task")
    p.add_argument("task")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)
    p.add_argument("--budget", type=_positive_int, help="dev prompts the model may score (default: 40 × dev size)")
    p.add_argument("--dev-size", type=_positive_int, default=200, help="dev examples held out of train (default: 200)")
    p.add_argument("--dev", help="a dev file instead of a sample held out of the training file (the confirmation "
                                 "sample then comes from it too)")  # fmt: skip
    p.add_argument("--confirm-size", type=int,
                   help="fresh examples held out of train (or of --dev) on which the task's own prompt and the 5 best "
                        "on dev are compared, the best there winning (default: the dev size, with --dev half of the "
                        "file; 0: the dev winner wins)")  # fmt: skip
    p.add_argument("--stages", default="words,templates,demonstrations", help="what to search (default: %(default)s)")
    p.add_argument("--shots", type=_non_negative_int, help="demonstrations to search for (default: the task's shots)")
    p.add_argument("--templates", help="YAML list of candidate templates instead of the built-in pattern families")
    p.add_argument("--ape", type=_non_negative_int, default=0,
                   help="instructions to induce with --proposer (APE; default: 0)")  # fmt: skip
    p.add_argument("--proposer", help="model that proposes instructions (default: the task's model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", help="where <task>-search/ goes (default: the task's output_dir, runs/)")
    p.add_argument("--no-test", action="store_true", help="search only: do not evaluate on the task's eval split")
    _add_device_options(p)
    _add_backend_options(p)
    p.set_defaults(func=_cmd_search)

    p = _command(sub, "cot", help="answer one question with chain-of-thought (and self-consistency)")
    p.add_argument("question")
    _add_model_options(p, chat_default=None)
    p.add_argument("--mode", default="few-shot-cot", choices=["few-shot-cot", "zero-shot-cot", "direct"])
    p.add_argument("--exemplars", default="gsm8k-wei2022", help="shipped exemplar set or YAML file (few-shot modes)")
    p.add_argument("--sc", type=_positive_int, default=1, metavar="N",
                   help="self-consistency: sample N rationales and vote")  # fmt: skip
    p.add_argument("--temperature", type=_non_negative_float, help="default: 0 for one sample, 0.7 with --sc > 1")
    p.add_argument("--max-new-tokens", type=_positive_int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-rationales", action="store_true", help="print every sampled rationale")
    p.set_defaults(func=_cmd_cot)

    p = _command(sub, "compare", help="one table comparing run directories")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--sort", default="run", choices=list(SORT_KEYS), help="order the rows (value: the headline metric)")
    p.add_argument("--plot", metavar="PNG", help="also write a plot of the metric by setting (.png, .svg or .pdf)")
    p.set_defaults(func=_cmd_compare)

    _add_serve_command(sub)
    p = _command(sub, "keygen", help="make an API key for `serve`: prints it once, appends its hash to FILE")
    p.add_argument("file", help="keys file (sha256 hashes, one per line), e.g. ~/.config/promptlearning/keys")
    p.set_defaults(func=_cmd_keygen)

    p = _command(sub, "demo", help="the main job on the embedded default model")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL)
    p.set_defaults(func=_cmd_demo)
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


if __name__ == "__main__":
    sys.exit(main())
