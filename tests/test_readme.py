"""The README's examples run as documented.

Every ```python block and every command of every ```bash block in README.md runs here, unchanged
(a plain ``promptlearning ...`` line, its arguments expanded by bash, runs through the same CLI entry
point in a process forked from one that has done the slow imports: tests/forkserver.py),
in a fresh directory holding a copy of ``tasks/`` (training shortened to 10 steps, 2 seeds). The
embedded model names resolve to tiny random models installed in a temporary cache, and
``$PROMPTLEARNING_DATA`` points at small synthetic data laid out like ``../shared/data``, so nothing
here needs the real weights or benchmark data (the integration tests use those). A few commands are
not run, each for a stated reason.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from forkserver import ForkServer

from promptlearning.models import hub

REPO = Path(__file__).resolve().parents[1]
NOT_RUN = {
    "make ": "the set-up itself (it runs this test)",
    "accelerate launch": "two training processes; covered by tests/training (test_accelerate_launch_...)",
    "promptlearning train tasks/sst2-fewshot.yaml --device cuda": "a GPU; see the cuda-marked tests/test_devices.py",
    "promptlearning serve": "runs until stopped; tests/serving start the server in-process, as the Python example does",
    "promptlearning ui": "runs until stopped; tests/serving/test_ui_browser.py starts it and drives Chromium",
    "promptlearning keygen ~": "writes to the user's config; tests/serving cover keys files",
    "curl ": "needs the server started above; tests/serving send the same requests",
    "-d '": "continuation of a curl command",
    '"inputs"': "continuation of a curl command",
    "--api-keys-file": "continuation of the serve command",
    "vllm serve": "a GPU machine with vLLM",
    "promptlearning compress tasks/smollm2-compress.yaml": "drops 8 of SmolLM2's 30 layers: the tiny test model has "
    "2 (tests/compression run pruning and recovery on a 4-layer one)",
    "python -m llama_cpp.server": "runs until stopped; tests/integration/test_serving_smollm2.py starts it",
    "promptlearning run tasks/sst2.yaml --backend openai": "needs a server on gpu-host",
    "--set model=HuggingFaceTB": "continuation of the command above",
    "lm_eval --model local-completions": "needs the server started above; benchmarks/lm_eval_via_server.py runs it",
    '"model=smollm2-135m-instruct,base_url': "continuation of the lm_eval command",
}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", text, flags=re.S)]


BLOCKS = code_blocks((REPO / "README.md").read_text(encoding="utf-8"))


def runnable(command: str) -> bool:
    return not any(command.startswith(prefix) for prefix in NOT_RUN)


# Each block runs in its own copy of the working directory (its commands in order, as a reader
# would type them); blocks are independent, so they run two at a time.
UNITS = [
    (f"{language}-block-{number}", language, body)
    for number, (language, body) in enumerate(BLOCKS, 1)
    if language == "python"
    or (language == "bash" and any(runnable(line.strip()) for line in body.splitlines() if line.strip()))
]


def commands(body: str) -> list[str]:
    lines = [line.strip() for line in body.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and runnable(line)]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def synthetic_data(root: Path) -> Path:
    """Tiny stand-ins for ../shared/data: the same folders, files and fields, a few rows each."""
    rng = random.Random(0)
    words = {"positive": ["great", "wonderful", "moving"], "negative": ["dull", "awful", "tedious"]}
    sst2 = [{"text": f"the film was {rng.choice(words[label])} and long enough", "label": label}
            for label in ("positive", "negative") for _ in range(40)]  # fmt: skip
    rng.shuffle(sst2)
    for split in ("train", "dev", "test"):
        _jsonl(root / "sst2" / f"{split}.jsonl", sst2)
    topics = ["World", "Sports", "Business", "Sci/Tech"]
    news = [{"text": f"news about {topic.lower()} number {i}", "label": topic} for topic in topics for i in range(10)]
    _jsonl(root / "ag_news" / "train.jsonl", news)
    _jsonl(root / "ag_news" / "test.jsonl", news[:12])
    maths = [{"question": f"what is {a} plus {b} ?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}",
              "final": str(a + b)} for a, b in ((1, 2), (3, 4), (5, 6))]  # fmt: skip
    _jsonl(root / "gsm8k" / "train.jsonl", maths)
    _jsonl(root / "gsm8k" / "test.jsonl", maths)
    tags = ["B-PER", "O", "B-LOC", "O"]
    ner = [{"tokens": ["john", "lives", "in", "paris"], "ner_tags": tags} for _ in range(24)]
    for split in ("train", "dev", "test"):
        _jsonl(root / "conll2003" / f"{split}.jsonl", ner)
    pairs = [{"en": f"a dog runs number {i}", "de": f"ein Hund läuft Nummer {i}"} for i in range(12)]
    for split in ("train", "validation", "test"):
        _jsonl(root / "multi30k" / f"{split}.jsonl", pairs)
    lines = [f"{rng.choice(['ROMEO', 'JULIET'])}:\n{rng.choice(['o', 'my', 'sweet'])} love, good night.\n"
             for _ in range(300)]  # fmt: skip
    sts = [{"sentence1": f"a dog runs in park {i}", "sentence2": f"a dog {rng.choice(['runs', 'sleeps'])} in park {i}",
            "score": float(rng.randint(0, 5))} for i in range(24)]  # fmt: skip
    for split in ("train", "dev", "test"):
        _jsonl(root / "stsb" / f"{split}.jsonl", sts)
    (root / "shakespeare").mkdir()
    (root / "shakespeare" / "input.txt").write_text("\n".join(lines))
    (root / "wikitext2").mkdir()
    for name in ("valid.tokens.txt", "test.txt"):
        (root / "wikitext2" / name).write_text(" = Article = \n\n" + " ".join(lines).replace("\n", " ") + "\n")
    return root


def shorten_training(tasks: Path) -> None:
    """Training task files train for 10 steps over 2 seeds here: the commands are what is tested (the
    loop itself is tested in tests/training and tests/pretraining), and tiny models learn nothing more."""
    for path in tasks.glob("*.yaml"):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        training = config.get("training") or (config.get("finetune") or {}).get("training")
        if not isinstance(training, dict):
            continue
        training["max_steps"] = min(training.get("max_steps", 10), 10)
        training["eval_every"] = min(training.get("eval_every", 5), 5)
        if isinstance(config.get("few_shot"), dict) and "seeds" in config["few_shot"]:
            config["few_shot"]["seeds"] = config["few_shot"]["seeds"][:2]
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory, tiny_encoder_dir, tiny_mlm_dir, fake_model_installer, tiny_llama_builder
) -> tuple[Path, dict]:
    """A working directory, a model cache of tiny models under the embedded names, and the data."""
    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    # a long context: the chain-of-thought examples put 8 GSM8K exemplars in every prompt
    llama = tiny_llama_builder(root / "llama", max_positions=4096)
    llama_bos = tiny_llama_builder(root / "llama-bos", add_bos=True, pad=False, seed=1, max_positions=4096)
    fake_model_installer(home, "smollm2-135m-instruct", llama)
    fake_model_installer(home, "gemma3-270m", llama_bos)
    fake_model_installer(home, "minilm-l6", tiny_encoder_dir)
    data = synthetic_data(root / "data")
    work = root / "work"
    shutil.copytree(REPO / "tasks", work / "tasks")
    shorten_training(work / "tasks")
    shutil.copytree(tiny_mlm_dir, work / "models" / "my-bert")  # "a user's own local model directory"
    _jsonl(work / "reviews.jsonl", [{"text": "a gorgeous film"}, {"text": "a dull mess"}])
    _jsonl(work / "my_questions.jsonl", [{"question": "what is 2 plus 2 ?", "answer": "4"}])
    env = {**os.environ, "PROMPTLEARNING_HOME": str(home), "PROMPTLEARNING_DATA": str(data),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    return work, env


CLI = "import sys\nfrom promptlearning.cli import main\nsys.exit(main(sys.argv[1:]))\n"
SHELL_ONLY = ("|", "&&", ";", ">", "<", "`", "$(")  # a line with these runs in bash as it is


def shell_words(command: str, work: Path, env: dict[str, str]) -> list[str]:
    """The arguments bash would pass for ``command`` (quotes, variables, globs and comments resolved)."""
    expanded = subprocess.run(["bash", "-c", f"set -- {command}\nprintf '%s\\0' \"$@\""], cwd=work, env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
    return expanded.stdout.split("\0")[:-1]


def run_command(command: str, work: Path, env: dict[str, str], server: ForkServer) -> subprocess.CompletedProcess:
    """A README command as a reader's shell runs it; a plain ``promptlearning ...`` line runs through
    the fork server (the same CLI entry point, without paying torch's imports once per command)."""
    if command.startswith("promptlearning ") and not any(token in command for token in SHELL_ONLY):
        argv = shell_words(command.removeprefix("promptlearning "), work, env)
        code, stdout, stderr = server.run(CLI, argv, env=env, cwd=work, timeout=600)
        return subprocess.CompletedProcess(["promptlearning", *argv], code, stdout, stderr)
    return subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip


def run_unit(
    language: str, body: str, work: Path, env: dict[str, str], server: ForkServer
) -> list[tuple[str, subprocess.CompletedProcess]]:
    results = []
    if language == "python":
        step = [sys.executable, "-c", body]
        return [(body, subprocess.run(step, cwd=work, env=env, capture_output=True, text=True, timeout=600))]
    for command in commands(body):
        result = run_command(command, work, env, server)
        results.append((command, result))
        if result.returncode != 0:
            break
    return results


_LOCAL = threading.local()


@pytest.fixture(scope="module")
def outcomes(sandbox):
    work, env = sandbox
    servers: list[ForkServer] = []

    def unit(language: str, body: str, own: Path) -> list[tuple[str, subprocess.CompletedProcess]]:
        if getattr(_LOCAL, "server", None) is None:
            _LOCAL.server = ForkServer(env, cwd=work)
            servers.append(_LOCAL.server)
        return run_unit(language, body, own, env, _LOCAL.server)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {}
            for name, language, body in UNITS:
                own = shutil.copytree(work, work.parent / name)
                futures[name] = pool.submit(unit, language, body, own)
            return {name: future.result() for name, future in futures.items()}
    finally:
        for server in servers:
            server.close()


def test_the_readme_has_examples_to_run():
    assert sum(language == "python" for _, language, _ in UNITS) >= 4
    assert sum(len(commands(body)) for _, language, body in UNITS if language == "bash") >= 20


@pytest.mark.parametrize("unit", UNITS, ids=[name for name, _, _ in UNITS])
def test_readme_example(unit, outcomes):
    name, language, body = unit
    for step, result in outcomes[name]:
        assert result.returncode == 0, f"{step!r} failed:\n--- stderr\n{result.stderr[-3000:]}"
    expected = 1 if language == "python" else len(commands(body))
    assert len(outcomes[name]) == expected


def test_every_embedded_model_name_is_installed_for_the_examples():
    assert set(hub.EMBEDDED_MODELS) == {"smollm2-135m-instruct", "gemma3-270m", "minilm-l6"}


def test_the_readme_method_sections_are_valid_specs():
    """```yaml blocks that show a task file's method: section build a classifier spec as they are."""
    from promptlearning.methods.spec import ClassifierSpec
    from promptlearning.tasks.classification.config import MethodConfig

    shown = [yaml.safe_load(body)["method"] for language, body in BLOCKS
             if language == "yaml" and body.lstrip().startswith("method:")]  # fmt: skip
    assert shown
    for method in shown:
        fields = MethodConfig(**method).model_dump(exclude={"name", "calibrate"})
        ClassifierSpec(template={"input": "Review: {{ text }}\nSentiment:"},
                       verbalizer={"words": {"negative": " negative", "positive": " positive"}}, **fields)  # fmt: skip
