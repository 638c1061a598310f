"""The bad-input catalogue: the project's reliability regression suite.

Every case is what a new user might type (a wrong file, a bad value, a damaged model, a hostile
template) and runs through the real command line in a process of its own (forked from a server that
has done the slow imports once: tests/forkserver.py), with the network blocked: any
attempt to connect is printed and fails, so "never goes online" is checked for every case. A case
asserts the exit code (0 success, 2 a user's error told in one line, 1 a bug) and the message.

Cases whose id starts with ``issue11-`` failed before the reliability issue (#11) was fixed; the
others were already handled and are kept so that they stay so. Models are tiny random ones built in
the tests; commands that name an embedded model get a tiny model installed in a temporary cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from forkserver import ForkServer

# Blocks the network for the command it runs, then calls the CLI's main().
RUNNER = """
import socket, sys
def _blocked(*args, **kwargs):
    sys.stderr.write("NETWORK ATTEMPT %r\\n" % (args[:2],))
    raise OSError("network access is blocked in the bad-input catalogue")
socket.socket.connect = _blocked
socket.getaddrinfo = _blocked
socket.create_connection = _blocked
{prelude}
from promptlearning.cli import main
sys.argv[0] = "promptlearning"
sys.exit(main(sys.argv[1:]))
"""

ROWS = [
    {"text": "i loved this film , the acting was wonderful", "label": "positive"},
    {"text": "a dull , tedious mess", "label": "negative"},
    {"text": "great movie !", "label": "positive"},
    {"text": "awful . it wasted two hours of my life", "label": "negative"},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@dataclass
class Case:
    """One bad (or edge) input and what the command line must answer."""

    id: str
    argv: list[str]
    code: int
    message: str = ""  # a substring expected in stderr
    stdout: str = ""  # a substring expected in stdout
    setup: Callable[[dict[str, Path]], None] | None = None
    fake_models: bool = False  # a cache where the embedded names load tiny models
    env: dict[str, str] = field(default_factory=dict)
    prelude: str = ""  # Python run before main() (e.g. to plant a bug)
    max_seconds: float = 60.0
    absent: tuple[str, ...] = ()  # substrings that must not appear in stderr
    after: Callable[[dict[str, Path]], None] | None = None  # checks of the files left behind


# ----------------------------------------------------------------------------- set-ups


def corrupt_cached_weights(paths: dict[str, Path]) -> None:
    weights = paths["home"] / "models" / "smollm2-135m-instruct" / "hf" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)  # zeroed in place: same size
    weights.write_bytes(bytes(data))


def damage_manifest(paths: dict[str, Path]) -> None:
    (paths["home"] / "models" / "smollm2-135m-instruct" / "manifest.json").write_text('{"name": "smollm2')


def damage_safetensors_header(paths: dict[str, Path]) -> None:
    weights = paths["model_copy"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"{this is not a safetensors header"[:32]
    weights.write_bytes(bytes(data))


def truncate_weights(paths: dict[str, Path]) -> None:
    weights = paths["model_copy"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def plant_leftover_pulls(paths: dict[str, Path]) -> None:
    (paths["home"] / "models" / ".tmp-smollm2-135m-instruct-x1y2" / "files").mkdir(parents=True)


def no_leftover_pulls(paths: dict[str, Path]) -> None:
    assert not list((paths["home"] / "models").glob(".tmp-*")), "the leftover staging folder is still there"


def drop_adapter_file(name: str) -> Callable[[dict[str, Path]], None]:
    def setup(paths: dict[str, Path]) -> None:
        (paths["program_copy"] / "adapter" / name).unlink()

    return setup


def hostile_program_template(paths: dict[str, Path]) -> None:
    spec_path = paths["program_copy"] / "program.json"
    spec = json.loads(spec_path.read_text())
    spec["template"]["input"] = "{{ 9**(9**9) }} {{ text }}"
    spec_path.write_text(json.dumps(spec))


def ensemble_program(*member_paths: str, weight: float = 0.5) -> Callable[[dict[str, Path]], None]:
    """``{cwd}/ens``: an ensemble program.json whose members are at ``member_paths`` (relative to it);
    ``member-*`` ones are copies of the trained program."""

    def setup(paths: dict[str, Path]) -> None:
        spec = json.loads((paths["program_copy"] / "program.json").read_text())
        directory = paths["cwd"] / "ens"
        directory.mkdir()
        for path in member_paths:
            if path.startswith("member-"):
                shutil.copytree(paths["program_copy"], directory / path)
        members = [{"path": path, "weight": weight, "inputs": ["text"]} for path in member_paths]
        ensemble = {**spec, "objective": "ensemble", "peft": None, "members": members}
        (directory / "program.json").write_text(json.dumps(ensemble))

    return setup


def other_file_in_data_root(paths: dict[str, Path]) -> None:
    write_jsonl(paths["cwd"] / "in.jsonl", ROWS)  # 4 rows here, 1 row under $PROMPTLEARNING_DATA
    write_jsonl(paths["elsewhere"] / "in.jsonl", ROWS[:1])


def json_inputs(paths: dict[str, Path]) -> None:
    (paths["cwd"] / "array.json").write_text(json.dumps(ROWS, indent=2))
    (paths["cwd"] / "one.json").write_text(json.dumps(ROWS[0], indent=2))


def resume_with_other_settings(paths: dict[str, Path]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "promptlearning.cli", "train", str(paths["train_task"]), "--output",
         str(paths["cwd"] / "run"), "--no-progress"],
        capture_output=True, text=True, env=paths_env(paths), cwd=paths["cwd"], check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def failed_start_then_plain_rerun(paths: dict[str, Path]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "promptlearning.cli", "train", str(paths["train_task"]), "--output",
         str(paths["cwd"] / "run"), "--set", "model=/no/such/model", "--no-progress"],
        capture_output=True, text=True, env=paths_env(paths), cwd=paths["cwd"], check=False,
    )  # fmt: skip
    assert run.returncode == 2 and "no/such/model" in run.stderr, run.stderr


def a_file_where_a_folder_goes(paths: dict[str, Path]) -> None:
    (paths["cwd"] / "taken").write_text("a file, not a folder")


def pretrain_task(corpus_text: str | bytes) -> Callable[[dict[str, Path]], None]:
    """A tiny ``type: pretrain`` task (char tokenizer, nano model, 4 steps) over a corpus in the cwd."""

    def setup(paths: dict[str, Path]) -> None:
        corpus = paths["cwd"] / "corpus.txt"
        corpus.write_bytes(corpus_text if isinstance(corpus_text, bytes) else corpus_text.encode())
        task = {
            "type": "pretrain", "name": "pt", "corpus": {"files": [str(corpus)], "validation_fraction": 0.2},
            "tokenizer": {"train": "char"}, "objective": "causal", "block_size": 16, "eval_blocks": 4,
            "architecture": {"preset": "nano", "overrides": {"hidden_size": 16, "num_hidden_layers": 1,
                                                             "num_attention_heads": 2, "intermediate_size": 32}},
            "training": {"max_steps": 4, "batch_size": 4, "eval_every": 2, "log_with": None},
            "samples": None, "output_dir": str(paths["cwd"] / "runs"),
        }  # fmt: skip
        (paths["cwd"] / "pt.yaml").write_text(yaml.safe_dump(task))

    return setup


def compress_task(sections: dict, model: str | None = None) -> Callable[[dict[str, Path]], None]:
    """A ``type: compress`` task on the tiny model with a calibration text in the cwd (``model``: a
    folder the set-up makes a compressed copy of the tiny model)."""

    def setup(paths: dict[str, Path]) -> None:
        text = paths["cwd"] / "text.txt"
        text.write_text("the cat sat on the mat and the dog ran in the park\n" * 40)
        source = str(paths["model_copy"])
        if model is not None:
            shutil.copytree(paths["model_copy"], paths["cwd"] / model)
            record = {"format": 1, "dtype": "float32", "quantize": {"mode": "int8-weight"}}
            (paths["cwd"] / model / "compression.json").write_text(json.dumps(record))
            source = str(paths["cwd"] / model)
        task = {"type": "compress", "name": "c", "model": source, "output_dir": str(paths["cwd"] / "runs"),
                "calibration": {"files": [str(text)], "samples": 4, "block_size": 16},
                "evaluate": {"perplexity": str(text), "max_chars": 500, "max_length": 32}}  # fmt: skip
        for key, value in sections.items():
            if key == "calibration":
                value = {**task["calibration"], **value}
            task[key] = value
        (paths["cwd"] / "c.yaml").write_text(yaml.safe_dump(task))

    return setup


def _nothing_left(directory: Path, pattern: str) -> None:
    left = [p.name for p in directory.rglob(pattern)] + [p.name for p in directory.rglob(f".{pattern}")]
    assert not left, left


def write_file(name: str, content: str | bytes) -> Callable[[dict[str, Path]], None]:
    def setup(paths: dict[str, Path]) -> None:
        target = paths["cwd"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def paths_env(paths: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTLEARNING_DATA"}
    return {**env, "PROMPTLEARNING_HOME": str(paths["home"]), "HF_HUB_OFFLINE": "0"}


# ----------------------------------------------------------------------------- the catalogue

T, COT, TRAIN, DATA, TINY = "{task}", "{cot_task}", "{train_task}", "{data}", "{tiny}"
GEN = "{gen_task}"
SMOL = "smollm2-135m-instruct"
EVAL1 = ["--set", "data.eval_limit=1"]

# fmt: off
CASES = [
    # --- wrong (issue 11, fix first) ---
    Case("issue11-chat-score", ["score", "--context", "the capital of france is the cat sat on the mat and the dog ",
         "--choices", "paris", "london", "--chat", "on", "--model", TINY], 0, stdout="'london'"),
    Case("issue11-chat-run", ["run", T, *EVAL1, "--set", "template.mode=chat", "--set", "method.calibrate=false",
         "--set", "verbalizer.words={negative: [' negative'], positive: [' positive']}"], 0, stdout="accuracy"),
    Case("issue11-corrupted-weights", ["generate", "hi", "--model", SMOL, "--max-new-tokens", "2"], 2,
         "changed since it was pulled", setup=corrupt_cached_weights, fake_models=True),
    Case("issue11-corrupted-weights-list", ["models", "list"], 0, stdout="changed", setup=corrupt_cached_weights,
         fake_models=True),
    Case("issue11-corrupted-weights-verify", ["models", "verify", SMOL], 2, stdout="DAMAGED",
         setup=corrupt_cached_weights, fake_models=True),
    Case("issue11-batch-calibration-one-example", ["run", T, *EVAL1, "--set", "method.calibration=batch"], 0,
         "warning: batch calibration needs at least 16 examples"),
    Case("issue11-resume-changed-config", ["train", TRAIN, "--output", "{cwd}/run", "--resume", "--set",
         "training.learning_rate=0.5"], 2, "training.learning_rate: 0.01 -> 0.5", setup=resume_with_other_settings),
    Case("issue11-predict-reads-the-named-file", ["predict", "{program}", "in.jsonl"], 0, "on 4 labelled examples",
         setup=other_file_in_data_root, env={"PROMPTLEARNING_DATA": "{elsewhere}"}),
    Case("issue11-embedder-generate", ["generate", "hi", "--model", "minilm-l6"], 2, "sentence-embedding model"),
    Case("issue11-embedder-score", ["score", "--context", "a", "--choices", " b", "--model", "minilm-l6"], 2,
         "cannot score or generate text"),
    Case("issue11-embedder-run", ["run", T, "--set", "model=minilm-l6"], 2, "sentence-embedding model"),
    Case("issue11-template-power", ["run", T, "--set", "template.input={{ 9**(9**9) }} {{ text }}"], 2,
         "larger than 4096 bits", max_seconds=20),
    Case("issue11-template-repeat", ["run", T, "--set", "template.input={{ text * 10**11 }}"], 2, "repeating a value"),
    Case("issue11-template-range", ["run", T, "--set",
         "template.input={% for i in range(10**9) %}{% endfor %}{{ text }}"], 2, "above the limit"),
    Case("issue11-template-in-program", ["predict", "{program_copy}", "{data}/dev.jsonl"], 2, "larger than 4096 bits",
         setup=hostile_program_template, max_seconds=30),
    Case("issue11-program-without-adapter-config", ["predict", "{program_copy}", "{data}/dev.jsonl"], 2,
         "missing adapter_config.json", setup=drop_adapter_file("adapter_config.json"), max_seconds=20),
    Case("issue11-same-word-two-labels", ["run", T, "--set",
         "verbalizer.words={negative: [' bad', ' great'], positive: [' great']}"], 2, "given for both"),
    Case("issue11-null-field", ["run", T, "--set", "data.eval=null.jsonl"], 2, "row 2: field 'text' is null"),
    # --- unclear (issue 11): one actionable line, never a traceback ---
    Case("issue11-damaged-manifest", ["generate", "hi", "--model", SMOL], 2, "manifest.json is damaged",
         setup=damage_manifest, fake_models=True),
    Case("issue11-damaged-safetensors-header", ["generate", "hi", "--model", "{model_copy}"], 2,
         "could not load the model", setup=damage_safetensors_header),
    Case("issue11-sweep-empty-grid", ["sweep", TRAIN, "--grid", "peft.method="], 2, "gives no values"),
    Case("issue11-output-dir-is-a-file", ["run", T, "--set", "model=/no/such/model", "--output-dir", "taken"], 2,
         "is a file", setup=a_file_where_a_folder_goes, max_seconds=15),
    Case("issue11-compare-plot-into-new-folder", ["compare", "{run}", "--plot", "new/folder/plot.png"], 0,
         stdout="plot written"),
    Case("issue11-compare-plot-not-an-image", ["compare", "{run}", "--plot", "plot.txt"], 2, "name an image file"),
    Case("issue11-template-none", ["python", "PromptTemplate(None)"], 2, "must be a string"),
    Case("issue11-verbalizer-list", ["python", "Verbalizer([' good', ' bad'])"], 2, "must map each label"),
    Case("issue11-predict-a-string", ["python", "PromptClassifier(MODEL, PromptTemplate('{{ text }}'), "
         "Verbalizer({'a': ' good', 'b': ' bad'})).fit().predict('a string')"], 2, "wrap it in a list"),
    Case("issue11-program-without-adapter-weights", ["predict", "{program_copy}", "{data}/dev.jsonl"], 2,
         "missing adapter_model.safetensors", setup=drop_adapter_file("adapter_model.safetensors")),
    Case("issue11-load-model-empty-name", ["generate", "hi", "--model", ""], 2, "no model given"),
    Case("issue11-cot-row-without-question", ["run", COT, "--set", "data.eval=noquestion.jsonl"], 2,
         "row 1: no field 'question'"),
    Case("issue11-json-array", ["predict", "{program}", "array.json"], 0, "on 4 labelled examples", setup=json_inputs),
    Case("issue11-json-object", ["predict", "{program}", "one.json"], 0, "on 1 labelled examples", setup=json_inputs),
    Case("issue11-set-empty-key", ["run", T, "--set", "=5"], 2, "names no key"),
    Case("issue11-set-name-no", ["run", T, "--set", "name=no", *EVAL1, "--output-dir", "out"], 0, stdout="out/no-"),
    Case("issue11-set-shots-true", ["run", T, "--set", "shots=true"], 2, "expects a number, got the boolean true"),
    # issue 12: compare reads runs of every kind (it refused training runs before)
    Case("issue12-compare-training-run", ["compare", "{train_run}", "{run}"], 0, stdout="pet + lora"),
    Case("issue12-task-device-unknown", ["run", T, "--set", "device=gpu"], 2, "device must be auto, cpu, cuda"),
    Case("issue12-task-dtype-unknown", ["run", T, "--set", "dtype=fp8"], 2, "dtype: must be one of auto"),
    Case("issue12-device-not-here", ["run", T, *EVAL1, "--device", "cuda:99"], 2, "cuda:99"),
    Case("issue12-cli-device-unknown", ["run", T, "--device", "tpu"], 2, "device must be auto, cpu, cuda"),
    Case("issue12-cli-dtype-unknown", ["train", TRAIN, "--dtype", "float8"], 2, "invalid choice: 'float8'"),
    Case("issue12-predict-device-unknown", ["predict", "{program}", "{data}/dev.jsonl", "--device", "gpu"], 2,
         "device must be auto"),
    Case("issue12-score-same-choice-twice", ["score", "--context", "a", "--choices", " b", " b", "--model", TINY], 2,
         "given twice"),
    Case("issue12-compare-plot-mixed-metrics", ["compare", "{run}", "{cot_run}", "--plot", "p.png"], 2,
         "different metrics"),
    Case("issue11-failed-start-then-rerun", ["train", TRAIN, "--output", "{cwd}/run"], 0, stdout="accuracy",
         setup=failed_start_then_plain_rerun),
    Case("issue11-sweep-repeated-values", ["sweep", TRAIN, "--grid", "peft.method=lora,lora"], 2,
         "repeats the value(s) lora", max_seconds=15),
    Case("issue11-remove-cleans-leftover-pulls", ["models", "remove", SMOL], 0, stdout="removed",
         setup=plant_leftover_pulls, fake_models=True, after=no_leftover_pulls),
    Case("issue11-pull-cleans-leftover-pulls", ["models", "pull", SMOL], 0, stdout="already in the cache",
         setup=plant_leftover_pulls, fake_models=True, after=no_leftover_pulls),
    # --- make the class impossible: checked before the model load, one error boundary ---
    Case("issue11-validated-before-loading", ["run", T, "--set", "model=/no/such/model", "--set",
         "verbalizer.words={negative: ' x', positive: ' x'}"], 2, "given for both", max_seconds=15),
    Case("issue11-cot-checked-before-loading", ["cot", "two plus two?", "--exemplars", "no-such-set"], 2,
         "no shipped exemplar set 'no-such-set'", max_seconds=15),
    Case("issue11-sc-must-be-positive", ["cot", "two plus two?", "--sc", "0"], 2, "--sc: must be at least 1"),
    Case("issue11-a-bug-is-one-line-and-a-saved-traceback", ["run", T], 1, "internal error (a bug in promptlearning)",
         prelude="import promptlearning.tasks as t\ndef broken(*a, **k): raise ZeroDivisionError('planted')\n"
                 "t.load_task = broken", absent=("Traceback",)),
    Case("issue11-debug-shows-the-traceback", ["run", T, "--debug"], 1, "Traceback",
         prelude="import promptlearning.tasks as t\ndef broken(*a, **k): raise ZeroDivisionError('planted')\n"
                 "t.load_task = broken"),
    Case("issue11-no-bars-in-logs", ["run", T], 0, stdout="accuracy", absent=("\r", "Loading weights", "it/s]")),
    Case("issue11-bars-on-request", ["run", T, "--progress"], 0, "loglikelihood: "),
    # --- issue 14: generation tasks and prompt search ---
    Case("issue14-generate-empty-reference", ["run", GEN, "--set", "data.eval=gen_empty.jsonl"], 2,
         "example 2: the reference 'answer' is empty"),
    Case("issue14-generate-unknown-metric", ["run", GEN, "--set", "metrics=[rouge, bleuu]"], 2,
         "metrics.1: must be one of squad, rouge, bleu, chrf, distinct, relation, perplexity, got 'bleuu'"),
    Case("issue14-generate-empty-prompt", ["run", GEN, "--set", "template.input={{ question[:0] }}"], 2,
         "empty prompt"),
    Case("issue14-generate-ok", ["run", GEN], 0, stdout="(2 examples)"),
    Case("issue14-search-empty-templates", ["search", T, "--templates", "none.yaml", "--dev-size", "4"], 2,
         "list of candidate templates is empty", setup=lambda p: (p["cwd"] / "none.yaml").write_text("[]\n")),
    Case("issue14-search-budget-below-one-candidate", ["search", T, "--dev-size", "4", "--budget", "3"], 2,
         "smaller than one candidate"),
    Case("issue14-search-negative-confirm-size", ["search", T, "--confirm-size", "-1"], 2,
         "confirm_size >= 0"),
    Case("issue14-search-generation-task", ["search", GEN], 2, "search works on classification tasks"),
    Case("issue14-search-dev-file-too-small-to-confirm", ["search", T, "--dev", "dev.jsonl", "--confirm-size", "3"],
         2, "too few to keep a dev sample"),
    # --- issue 15: pretraining and perplexity ---
    Case("issue15-pretrain-a-classification-task", ["pretrain", T], 2, "`pretrain` runs `type: pretrain` tasks"),
    Case("issue15-embed-train-a-classification-task", ["embed-train", T], 2,
         "`embed-train` runs `type: embed-train` tasks"),
    Case("issue15-perplexity-missing-file", ["perplexity", TINY, "nope.txt"], 2, "text file nope.txt does not exist"),
    Case("issue15-perplexity-empty-file", ["perplexity", TINY, "empty.txt"], 2, "the text is empty",
         setup=lambda p: (p["cwd"] / "empty.txt").write_text("\n")),
    Case("issue15-perplexity-stride-over-window", ["perplexity", TINY, "t.txt", "--max-length", "8", "--stride", "9"],
         2, "stride must be between 1 and max_length 8", setup=lambda p: (p["cwd"] / "t.txt").write_text("a b c\n")),
    # --- issue 28: the new commands, reliably ---
    Case("issue28-generate-non-utf8-argument", ["generate", "\udced\udca0\udc80", "--model", TINY], 2,
         "is not valid UTF-8 text", absent=("Traceback", "internal error")),
    Case("issue28-generate-tiny-temperature", ["generate", "hi", "--model", TINY, "--temperature", "1e-40",
         "--max-new-tokens", "3", "--chat", "off"], 0),
    Case("issue28-perplexity-binary-file", ["perplexity", TINY, "binary.bin"], 2, "binary.bin is not UTF-8 text",
         setup=write_file("binary.bin", bytes(range(128, 256)) * 8)),
    Case("issue28-perplexity-embedding-model", ["perplexity", "minilm-l6", "t.txt"], 2, "sentence-embedding model",
         setup=write_file("t.txt", "a plain text\n"), fake_models=True),
    Case("issue28-pretrain-latin1-corpus", ["pretrain", "pt.yaml", "--no-progress"], 2, "corpus.txt is not UTF-8 text",
         setup=pretrain_task("caf\xe9 au lait, cr\xe8me br\xfbl\xe9e\n".encode("latin-1") * 50)),
    Case("issue28-no-progress-silences-third-party-bars", ["pretrain", "pt.yaml", "--no-progress"], 0,
         setup=pretrain_task("the cat sees a tree .\n" * 200), max_seconds=90,
         absent=("Writing model shards", "Loading weights", "it/s]")),
    Case("issue28-serve-broken-yaml", ["serve", "--config", "bad.yaml"], 2, "is not valid YAML",
         setup=write_file("bad.yaml", "port: [8000\n")),
    Case("issue28-serve-yaml-list", ["serve", "--config", "list.yaml"], 2, "must be a mapping of settings",
         setup=write_file("list.yaml", "- port\n- 8000\n")),
    Case("issue28-serve-empty-api-key", ["serve", "--api-key", ""], 2, "--api-key is empty"),
    Case("issue28-serve-plain-keys-file", ["serve", "--api-keys-file", "keys.txt", "--port", "0"], 2,
         "is not a sha256 hash", setup=write_file("keys.txt", "my-secret-key-in-clear\n"), absent=("[serving",)),
    Case("issue28-search-negative-shots", ["search", T, "--shots", "-1"], 2, "must be 0 or more"),
    Case("issue28-search-negative-ape", ["search", T, "--ape", "-1"], 2, "must be 0 or more"),
    Case("issue28-search-embedding-proposer", ["search", T, "--proposer", "minilm-l6"], 2,
         "sentence-embedding model", fake_models=True, max_seconds=20),
    Case("issue28-search-dev-unknown-label", ["search", T, "--dev", "{data}/unknown_label.jsonl"], 2,
         "label(s) ['neutral'] that the task does not have"),
    Case("issue28-search-dev-size-one", ["search", T, "--dev-size", "1", "--confirm-size", "0", "--no-test",
         "--stages", "words"], 0, "cannot tell prompts apart"),
    Case("issue28-openai-timeout-zero", ["generate", "hi", "--backend", "openai", "--base-url",
         "http://127.0.0.1:9/v1", "--timeout", "0"], 2, "must be a positive number of seconds"),
    Case("issue28-serve-max-request-tokens-zero", ["serve", "--no-auth", "--max-request-tokens", "0"], 2,
         "max_request_tokens"),
    Case("issue28-task-timeout-negative", ["run", T, "--set", "timeout=-1"], 2, "timeout"),
    Case("issue28-method-max-length-too-small", ["run", T, "--set", "method.max_length=3"], 2, "max_length"),
    Case("issue28-method-calibration-unknown", ["run", T, "--set", "method.calibration=off"], 2, "calibration"),
    # --- issue 30: adoption by test, ensembles, channel scoring ---
    Case("issue30-search-time-budget-zero", ["search", T, "--time-budget", "0"], 2, "must be a number > 0"),
    Case("issue30-search-level-one", ["search", T, "--level", "1"], 2, "below 1"),
    Case("issue30-search-adopt-unknown", ["search", T, "--adopt", "sometimes"], 2, "invalid choice"),
    Case("issue30-search-channel-negative", ["search", T, "--channel", "-1"], 2, "must be 0 or more"),
    Case("issue30-search-confirmation-too-small", ["search", T, "--dev-size", "4", "--confirm-size", "3", "--no-test",
         "--stages", "words"], 0, "too small for the adoption test"),
    Case("issue30-scoring-unknown", ["run", T, "--set", "method.scoring=noisy"], 2, "method.scoring"),
    Case("issue30-channel-two-fields", ["run", T, "--set", "method.scoring=channel", "--set",
         "template.input={{ text }} / {{ label }}"], 2, "one input field"),
    Case("issue30-channel-chars", ["run", T, "--set", "method.scoring=channel", "--set", "verbalizer.word_score=chars"],
         2, "word_score must be sum or mean"),
    Case("issue30-ensemble-other-labels", ["run", T, "--set", "method.ensemble=[{verbalizer: {words: {a: ' a'}}}]"],
         2, "same labels"),
    Case("issue30-ensemble-partial-weights", ["run", T, "--set", "method.ensemble=[{weight: 1}, {}]"], 2,
         "a weight, or none"),
    Case("issue30-ensemble-unknown-field", ["run", T, "--set", "method.ensemble=[{shots: 2}]"], 2, "shots"),
    Case("issue30-ensemble-weighting-unknown", ["run", T, "--set", "method.ensemble_weighting=vote"], 2,
         "ensemble_weighting"),
    Case("issue30-bias-without-calibration", ["run", T, "--set", "method.calibrate=false", "--set",
         "method.bias={negative: 0.5, positive: 0.5}"], 2, "needs a calibration"),
    Case("issue30-bias-zero", ["run", T, "--set", "method.calibration=batch", "--set",
         "method.bias={negative: 0, positive: 1}"], 2, "must be > 0"),
    Case("ok-run-ensemble-channel", ["run", T, "--set", "method.ensemble=[{}, {scoring: channel}]", *EVAL1], 0,
         stdout="accuracy"),
    # --- issue 31: compress and export ---
    Case("issue31-export-unknown-quant", ["export", TINY, "--quant", "q5_k"], 2, "supported: f32, f16, q8_0, q4_0"),
    Case("issue31-export-encoder-as-gguf", ["export", "minilm-l6", "--format", "gguf"], 2, "Llama-architecture",
         fake_models=True),
    Case("issue31-export-lm-as-onnx", ["export", TINY, "--format", "onnx"], 2, "language models export to GGUF"),
    Case("issue31-export-onnx-unknown-quant", ["export", "minilm-l6", "--quant", "int4"], 2,
         "unknown ONNX type 'int4'; supported: int8, fp32", fake_models=True),
    Case("issue31-export-unknown-format", ["export", TINY, "--format", "tflite"], 2, "invalid choice: 'tflite'"),
    Case("ok-export-onnx", ["export", "minilm-l6", "-o", "enc"], 0, stdout="wrote enc/", fake_models=True),
    Case("issue31-export-into-a-folder", ["export", TINY, "-o", "."], 2, "is a directory"),
    Case("issue31-export-prompt-tuning-program", ["export", "prog"], 2, "cannot be exported",
         setup=write_file("prog/adapter_config.json", '{"peft_type": "PROMPT_TUNING"}')),
    Case("issue31-export-interrupted", ["export", TINY, "--quant", "f16", "-o", "t.gguf"], 130,
         prelude="import gguf\ndef stop(*a, **k): raise KeyboardInterrupt\n"
                 "gguf.GGUFWriter.write_tensors_to_file = stop\n",
         after=lambda paths: _nothing_left(paths["cwd"], "*gguf*")),
    Case("issue31-cpu-dtype-env-unknown", ["run", T, *EVAL1], 2, "must be float32 or bfloat16",
         env={"PROMPTLEARNING_CPU_DTYPE": "int8"}),
    Case("ok-export-f16", ["export", TINY, "--quant", "f16", "-o", "t.gguf"], 0, stdout="wrote t.gguf"),
    Case("issue31-compress-every-layer", ["compress", "c.yaml"], 2, "at least one stays",
         setup=compress_task({"prune": {"depth": 2}})),
    Case("issue31-compress-width-all", ["compress", "c.yaml"], 2, "prune.width: Input should be less than 1",
         setup=compress_task({"prune": {"width": 1.0}})),
    # --- issue 33: the web UI's command checks its folder and settings before serving ---
    Case("issue33-ui-missing-runs-dir", ["ui", "no-such-runs"], 2, "is not a directory of runs"),
    Case("issue33-ui-runs-dir-is-a-file", ["ui", "afile"], 2, "is not a directory of runs",
         setup=lambda p: (p["cwd"] / "afile").write_text("x")),
    Case("issue33-ui-open-on-all-addresses", ["ui", "runs", "--host", "0.0.0.0"], 2, "needs API keys",
         setup=lambda p: (p["cwd"] / "runs").mkdir()),
    Case("issue33-ui-bad-port", ["ui", "runs", "--port", "70000"], 2, "port",
         setup=lambda p: (p["cwd"] / "runs").mkdir()),
    Case("issue33-serve-ui-runs-is-a-file", ["serve", "--no-auth", "--ui-runs", "afile"], 2,
         "--ui-runs afile is a file", setup=lambda p: (p["cwd"] / "afile").write_text("x")),
    Case("issue33-ui-empty-api-key", ["ui", "runs", "--api-key", ""], 2, "--api-key is empty",
         setup=lambda p: (p["cwd"] / "runs").mkdir()),
    Case("issue32-pet-ensemble-of-one", ["train", TRAIN, "--set", "pet_ensemble={members: [{}]}"], 2,
         "one member is not an ensemble"),
    Case("issue32-pet-ensemble-other-labels", ["train", TRAIN, "--set",
         "pet_ensemble={members: [{}, {verbalizer: {words: {a: ' x', b: ' y'}}}]}"], 2, "member 2's label words"),
    Case("issue32-ipet-no-generation", ["train", TRAIN, "--set", "pet_ensemble={members: [{}, {}], generations: 0}"],
         2, "generations: Input should be greater than or equal to 1"),
    Case("issue32-ipet-growth-one", ["train", TRAIN, "--set", "pet_ensemble={members: [{}, {}], generations: 2, "
         "growth: 1}"], 2, "growth: Input should be greater than 1"),
    Case("issue32-pet-member-lr-zero", ["train", TRAIN, "--set", "pet_ensemble={members: [{}, {learning_rate: 0}]}"],
         2, "learning_rate: Input should be greater than 0"),
    Case("issue32-pet-member-peft-unknown", ["train", TRAIN, "--set",
         "pet_ensemble={members: [{}, {peft: {method: lorax}}]}"], 2, "method"),
    Case("issue32-pet-member-peft-bad-option", ["train", TRAIN, "--set",
         "pet_ensemble={members: [{}, {peft: {method: lora, options: {bogus: 1}}}]}"], 2, "bogus"),
    Case("issue32-pet-distill-labelled-not-a-switch", ["train", TRAIN, "--set",
         "pet_ensemble={members: [{}, {}], distill_labelled: maybe}"], 2, "distill_labelled"),
    Case("issue32-pet-evaluate-members-not-a-switch", ["train", TRAIN, "--set",
         "pet_ensemble={members: [{}, {}], evaluate_members: sometimes}"], 2, "evaluate_members"),
    Case("issue32-ensemble-program-member-outside", ["predict", "{cwd}/ens", "{data}/dev.jsonl"], 2,
         "a member's path must be a directory inside the program, got '../program'",
         setup=ensemble_program("member-1", "../program")),
    Case("issue32-ensemble-program-absolute-member", ["predict", "{cwd}/ens", "{data}/dev.jsonl"], 2,
         "a member's path must be a directory inside the program, got '/etc'",
         setup=ensemble_program("member-1", "/etc")),
    Case("issue32-ensemble-program-itself-a-member", ["predict", "{cwd}/ens", "{data}/dev.jsonl"], 2,
         "a member's path must be a directory inside the program, got '.'", setup=ensemble_program("member-1", ".")),
    Case("issue32-ensemble-program-nan-weight", ["predict", "{cwd}/ens", "{data}/dev.jsonl"], 2,
         "needs a weight of 0 or more, got nan", setup=ensemble_program("member-1", "member-2", weight=float("nan"))),
    Case("issue32-ensemble-program-of-one", ["predict", "{cwd}/ens", "{data}/dev.jsonl"], 2,
         "an ensemble program needs at least two members", setup=ensemble_program("member-1")),
    Case("issue32-ensemble-program-member-missing", ["predict", "{cwd}/ens", "{data}/dev.jsonl"], 2,
         "not a prompt program directory (no program.json)", setup=ensemble_program("member-1", "gone")),
    Case("ok-ensemble-program-predicts", ["predict", "{cwd}/ens", "{data}/dev.jsonl"], 0, "labelled examples",
         setup=ensemble_program("member-1", "member-2")),
    Case("issue32-rationale-with-few-shot", ["train", TRAIN, "--set", "objective=rationale", "--set",
         "few_shot={k: 4}"], 2, "few_shot does not apply"),
    Case("issue32-rationale-missing-field", ["train", TRAIN, "--set", "objective=rationale"], 2,
         "train.jsonl, row 1: no field 'answer'"),
    Case("issue32-cot-calculator-not-a-switch", ["run", COT, "--set", "calculator=maybe"], 2, "calculator"),
    Case("ok-cot-calculator", ["cot", "2+2?", "--model", TINY, "--mode", "zero-shot-cot", "--calculator",
                                "--max-new-tokens", "4"], 0, stdout="answer:"),
    Case("issue31-compress-zero-heads", ["compress", "c.yaml"], 2, "would leave no head",
         setup=compress_task({"prune": {"heads": 0.9}})),
    Case("issue31-compress-heads-all", ["compress", "c.yaml"], 2, "prune.heads: Input should be less than 1",
         setup=compress_task({"prune": {"heads": 1.0}})),
    Case("issue31-compress-unknown-mode", ["compress", "c.yaml"], 2, "int3",
         setup=compress_task({"quantize": {"mode": "int3"}})),
    Case("issue31-compress-int4-group", ["compress", "c.yaml"], 2, "group_size must be 32, 64, 128 or 256",
         setup=compress_task({"quantize": {"mode": "int4-weight", "group_size": 48}})),
    Case("issue31-compress-recover-unpruned", ["compress", "c.yaml"], 2, "recover distils a pruned model",
         setup=compress_task({"recover": {"tokens": 64}, "quantize": {"mode": "bf16"}})),
    Case("issue31-compress-no-calibration-file", ["compress", "c.yaml"], 2, "does not exist",
         setup=compress_task({"prune": {"depth": 1}, "calibration": {"files": ["nope.txt"]}})),
    Case("issue31-compress-a-quantized-model", ["compress", "c.yaml"], 2, "already quantized (int8-weight)",
         setup=compress_task({"quantize": {"mode": "bf16"}}, model="squeezed")),
    Case("issue31-compress-program-data-not-a-program", ["compress", "c.yaml"], 2, "the task's model is not a program",
         setup=compress_task({"quantize": {"mode": "bf16"}, "evaluate": {"program_data": "text.txt"}})),
    Case("issue31-compress-evaluate-nothing", ["compress", "c.yaml"], 2, "evaluate needs perplexity",
         setup=compress_task({"quantize": {"mode": "bf16"}, "evaluate": {"max_chars": 10}})),
    Case("ok-compress", ["compress", "c.yaml"], 0, stdout="word_perplexity",
         setup=compress_task({"prune": {"depth": 1}, "quantize": {"mode": "int8-weight"}})),
    # --- already handled before issue 11: kept that way ---
    Case("ok-run-zero-shot", ["run", T], 0, stdout="accuracy"),
    Case("ok-missing-task-file", ["run", "nope.yaml"], 2, "task file nope.yaml does not exist"),
    # --- issue 13: serve flags are checked before anything loads ---
    Case("issue13-serve-open-on-all-addresses", ["serve", "--no-auth", "--host", "0.0.0.0"], 2, "loopback"),
    Case("issue13-serve-without-keys", ["serve", "--host", "0.0.0.0"], 2, "needs API keys"),
    Case("issue13-serve-bad-program-pair", ["serve", "--no-auth", "--program", "sst2"], 2, "NAME=DIR"),
    Case("issue13-serve-missing-keys-file", ["serve", "--api-keys-file", "nope.keys", "--port", "0"], 2,
         "does not exist"),
    Case("issue13-serve-missing-config", ["serve", "--config", "nope.yaml"], 2, "does not exist"),
    Case("issue13-openai-backend-without-url", ["generate", "hi", "--backend", "openai"], 2, "base_url"),
    Case("ok-task-yaml-syntax", ["run", "{bad_yaml}"], 2, "is not valid YAML (line"),
    Case("ok-unknown-task-key", ["run", T, "--set", "template.inpt=x"], 2, "template.inpt: "),
    Case("ok-bad-literal", ["run", T, "--set", "method.name=magic"], 2, "method.name: Input should be"),
    Case("ok-negative-shots", ["run", T, "--set", "shots=-1"], 2, "shots: Input should be greater than or equal"),
    Case("ok-icl-without-train", ["run", T, "--set", "shots=2", "--set", "data.train=null"], 2, "icl needs data.train"),
    Case("ok-missing-data-file", ["run", T, "--set", "data.eval=missing.jsonl"], 2, "does not exist"),
    Case("ok-broken-jsonl", ["run", T, "--set", "data.eval=broken.jsonl"], 2, "broken.jsonl:2: not valid JSON"),
    Case("ok-empty-data", ["run", T, "--set", "data.eval=empty.jsonl"], 2, "holds no examples"),
    Case("ok-unknown-label", ["run", T, "--set", "data.eval=unknown_label.jsonl"], 2, "['neutral'] have no words"),
    Case("ok-missing-template-field", ["run", T, "--set", "template.input=Review: {{ review }} {{ text }}"], 2,
         "'review'"),
    Case("ok-template-syntax", ["run", T, "--set", "template.input={{ text"], 2, "does not parse"),
    Case("ok-sandbox-class", ["run", T, "--set", "template.input={{ ''.__class__.__mro__ }} {{ text }}"], 2, "unsafe"),
    Case("ok-sandbox-globals", ["run", T, "--set", "template.input={{ cycler.__init__.__globals__ }} {{ text }}"], 2,
         "unsafe"),
    Case("ok-sandbox-self", ["run", T, "--set", "template.input={{ self._TemplateReference__context }} {{ text }}"], 2,
         "unsafe"),
    Case("ok-shorten-unknown-field", ["run", T, "--set", "template.shorten=title"], 2, "shorten names field 'title'"),
    Case("ok-unknown-model", ["generate", "hi", "--model", "no-such-model"], 2, "unknown model 'no-such-model'"),
    Case("ok-model-not-pulled", ["models", "path", "gemma3-270m"], 2, "is not in the cache"),
    Case("issue11-truncated-weights-local-dir", ["generate", "hi", "--model", "{model_copy}"], 2,
         "could not load the model", setup=truncate_weights),
    Case("ok-directory-without-config", ["generate", "hi", "--model", "{data}"], 2, "no config.json"),
    Case("ok-empty-choice", ["score", "--context", "a", "--choices", "", "--model", TINY], 2, "empty continuation"),
    Case("ok-prompt-too-long", ["generate", "the cat " * 200, "--model", TINY, "--chat", "off"], 2, "exceeds"),
    Case("ok-negative-temperature", ["generate", "hi", "--temperature", "-1"], 2, "temperature"),
    Case("ok-chat-without-template", ["generate", "hi", "--model", "{model_copy}", "--chat", "on"], 2,
         "has no chat template"),
    Case("ok-predict-not-a-program", ["predict", "{data}", "{data}/dev.jsonl"], 2, "not a prompt program"),
    Case("ok-train-a-classification-task", ["train", T], 2, "`train` runs `type: train` tasks"),
    Case("ok-existing-run-needs-resume", ["train", TRAIN, "--output", "{train_run}"], 2, "continue it with --resume"),
    Case("ok-unknown-peft-option", ["train", TRAIN, "--output", "{cwd}/run", "--set", "peft.options.rank=4"], 2,
         "unknown option(s) ['rank']"),
    Case("ok-compare-nothing", ["compare", "{data}"], 2, "no run directories"),
    Case("ok-cot-empty-question", ["cot", " "], 2, "empty question"),
    Case("ok-models-unknown", ["models", "path", "nope"], 2, "unknown model 'nope'"),
    Case("ok-models-info", ["models", "info", "gemma3-270m"], 0, stdout="a5fd3b62230aa5ec"),
]
# fmt: on


# ----------------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_llama_dir, tiny_encoder_dir, fake_model_installer) -> dict[str, Path]:
    """Tiny models, data, task files, one trained program and one run of each kind, built once."""
    from promptlearning.tasks import load_task, run_task

    root = tmp_path_factory.mktemp("catalogue")
    data = root / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", ROWS * 3)
    write_jsonl(data / "dev.jsonl", ROWS)
    write_jsonl(data / "null.jsonl", [ROWS[0], {"text": None, "label": "negative"}])
    write_jsonl(data / "unknown_label.jsonl", [*ROWS, {"text": "fine", "label": "neutral"}])
    (data / "broken.jsonl").write_text(json.dumps(ROWS[0]) + "\n{oops\n")
    (data / "empty.jsonl").write_text("")
    questions = [{"question": "what is two plus three ?", "final": "5"}]
    write_jsonl(data / "questions.jsonl", questions)
    write_jsonl(data / "noquestion.jsonl", [{"q": "what is two plus three ?", "final": "5"}])
    answers = [{"question": "what colour is the sky ?", "answer": "blue"}, {"question": "two + two ?", "answer": "4"}]
    write_jsonl(data / "gen.jsonl", answers)
    write_jsonl(data / "gen_empty.jsonl", [answers[0], {"question": "who ?", "answer": " "}])
    task = {
        "name": "catalogue", "model": str(tiny_llama_dir),
        "data": {"root": str(data), "train": "train.jsonl", "eval": "dev.jsonl"},
        "template": {"input": "review : {{ text }}\nsentiment :", "shorten": "text"},
        "verbalizer": {"words": {"negative": [" negative"], "positive": [" positive"]}},
        "method": {"calibrate": True, "calibration": "contextual"}, "output_dir": str(root / "runs"),
    }  # fmt: skip
    cot = {
        "type": "cot", "name": "catalogue-cot", "model": str(tiny_llama_dir), "mode": "direct",
        "data": {"root": str(data), "eval": "questions.jsonl"}, "max_new_tokens": 4,
        "exemplars": [{"question": "what is one plus one ?", "answer": "2"}], "output_dir": str(root / "runs"),
    }  # fmt: skip
    train = {
        "type": "train", "name": "catalogue-train", "model": str(tiny_llama_dir), "objective": "pet",
        "data": {"root": str(data), "train": "train.jsonl", "eval": "dev.jsonl"},
        "template": {"input": "review : {{ text }}\nsentiment :"},
        "verbalizer": {"words": {"negative": " negative", "positive": " positive"}},
        "peft": {"method": "lora", "options": {"r": 2}},
        "training": {"max_steps": 2, "eval_every": 2, "batch_size": 4, "learning_rate": 0.01, "log_with": None},
        "output_dir": str(root / "runs"),
    }  # fmt: skip
    gen = {
        "type": "generate", "name": "catalogue-gen", "model": str(tiny_llama_dir),
        "data": {"root": str(data), "eval": "gen.jsonl", "target_field": "answer"},
        "template": {"input": "question : {{ question }}\nanswer :"}, "decoding": {"max_new_tokens": 3},
        "metrics": ["squad"], "output_dir": str(root / "runs"),
    }  # fmt: skip
    paths = {"root": root, "data": data, "tiny": tiny_llama_dir, "encoder": tiny_encoder_dir}
    for name, content in (("task", task), ("cot_task", cot), ("train_task", train), ("gen_task", gen)):
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(content))
    paths["bad_yaml"] = root / "bad.yaml"
    paths["bad_yaml"].write_text("name: x\ndata: [unclosed\n")
    paths["run"] = run_task(load_task(paths["task"]), output_dir=root / "runs", progress=False).run_dir
    paths["cot_run"] = run_task(load_task(paths["cot_task"]), output_dir=root / "runs", progress=False).run_dir
    paths["train_run"] = run_task(load_task(paths["train_task"]), output_dir=root / "train-run",
                                  progress=False).run_dir  # fmt: skip
    paths["program"] = paths["train_run"] / "seed-0" / "program"
    paths["install_fake_model"] = fake_model_installer  # type: ignore[assignment]
    return paths


def prepare(case: Case, workspace: dict[str, Path], directory: Path) -> tuple[list[str], dict[str, str], dict]:
    """A case's own directory: a cwd, a model cache, copies of what its set-up may damage."""
    paths = dict(workspace)
    paths["cwd"] = directory / "cwd"
    paths["cwd"].mkdir(parents=True)
    paths["home"] = directory / "home"
    paths["home"].mkdir()
    paths["elsewhere"] = directory / "elsewhere"
    paths["elsewhere"].mkdir()
    paths["program_copy"] = shutil.copytree(workspace["program"], directory / "program")
    paths["model_copy"] = directory / "model"
    shutil.copytree(workspace["tiny"], paths["model_copy"])
    (paths["model_copy"] / "chat_template.jinja").unlink(missing_ok=True)
    if case.fake_models:
        install = workspace["install_fake_model"]
        install(paths["home"], SMOL, workspace["tiny"])
        install(paths["home"], "minilm-l6", workspace["encoder"])
    if case.setup is not None:
        case.setup(paths)
    values = {k: str(v) for k, v in paths.items()}

    def fill(text: str) -> str:  # {name} placeholders only; templates and YAML braces stay as they are
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)

    env = {**paths_env(paths), **{k: fill(v) for k, v in case.env.items()}}
    # PROMPTLEARNING_CATALOGUE_SRC runs the catalogue against another checkout's src/ (e.g. the code
    # before a fix, to see its cases fail there)
    if os.environ.get("PROMPTLEARNING_CATALOGUE_SRC"):
        env["PYTHONPATH"] = os.environ["PROMPTLEARNING_CATALOGUE_SRC"]
    return [fill(a) for a in case.argv], env, paths


API_PRELUDE = """
from promptlearning.errors import PromptLearningError
from promptlearning.methods import PromptClassifier
from promptlearning.models import load_model
from promptlearning.prompts import PromptTemplate, Verbalizer
try:
    MODEL = load_model({tiny!r})
    {statement}
except PromptLearningError as exc:
    print(f"error: {{exc}}", file=sys.stderr)
    sys.exit(2)
sys.exit(0)
"""


def run_case(
    case: Case, workspace: dict[str, Path], directory: Path
) -> tuple[subprocess.CompletedProcess, float, dict]:
    argv, env, paths = prepare(case, workspace, directory)
    cwd = paths["cwd"]
    if argv[0] == "python":  # an API call rather than a command
        prelude = "import sys\n" + API_PRELUDE.format(tiny=str(workspace["tiny"]), statement=argv[1])
        command = [sys.executable, "-c", RUNNER.format(prelude=prelude)]
    else:
        command = [sys.executable, "-c", RUNNER.format(prelude=case.prelude), *argv]
    start = time.perf_counter()
    # a hang is a failure of its case (exit code -9, TIMEOUT), not of the catalogue
    returncode, stdout, stderr = _server(env).run(command[2], command[3:], env=env, cwd=cwd, timeout=120)
    result = subprocess.CompletedProcess(command, returncode, stdout, stderr)
    return result, time.perf_counter() - start, paths


_SERVERS: list[ForkServer] = []
_LOCAL = threading.local()


def _server(env: dict[str, str]) -> ForkServer:
    """This worker thread's fork server: a new process per case, without paying the imports each time."""
    if getattr(_LOCAL, "server", None) is None:
        _LOCAL.server = ForkServer({k: v for k, v in env.items() if k != "PROMPTLEARNING_DATA"})
        _SERVERS.append(_LOCAL.server)
    return _LOCAL.server


@pytest.fixture(scope="module")
def outcomes(workspace, tmp_path_factory):
    """Every case, run two at a time (the commands are mostly start-up and a tiny model's load)."""
    base = tmp_path_factory.mktemp("cases")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {case.id: pool.submit(run_case, case, workspace, base / case.id) for case in CASES}
            return {name: future.result() for name, future in futures.items()}
    finally:
        while _SERVERS:
            _SERVERS.pop().close()


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, outcomes):
    result, seconds, paths = outcomes[case.id]
    report = (
        f"exit {result.returncode} in {seconds:.1f} s\n--- stdout\n{result.stdout[-2000:]}\n"
        f"--- stderr\n{result.stderr[-3000:]}"
    )
    assert "NETWORK ATTEMPT" not in result.stderr, report
    assert result.returncode == case.code, report
    if case.code == 2:
        assert "Traceback" not in result.stderr, report
        assert "error: " in result.stderr, report
    assert case.message in result.stderr, report
    assert case.stdout in result.stdout, report
    for text in case.absent:
        assert text not in result.stderr, report
    assert seconds < case.max_seconds, report
    if case.after is not None:
        case.after(paths)
