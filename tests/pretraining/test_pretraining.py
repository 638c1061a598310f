"""Pretraining: corpus, tokenizers, the token cache, blocks, and the ``type: pretrain`` task kind end to end
(causal, MLM, MLM+NSP, continued pretraining), with resume after SIGKILL and a prompt method on the result."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.pretraining.corpus import Corpus
from promptlearning.pretraining.tokenizer import train_tokenizer
from promptlearning.pretraining.tokens import TokenBlocks, build_token_cache
from promptlearning.tasks import load_task, run_task
from promptlearning.tasks.config import TaskConfigError
from promptlearning.training import checkpoints

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _text(n: int = 400, seed: int = 0) -> str:
    """A small synthetic language with structure a model can learn."""
    rng = random.Random(seed)
    subjects, verbs, objects = (
        ["the cat", "a dog", "my friend", "the king"],
        ["sees", "likes", "finds"],
        ["the sun", "a tree"],
    )
    lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} ." for _ in range(n)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(_text())
    return path


def _task(tmp_path: Path, corpus: Path, name: str = "pt", **extra) -> Path:
    task = {
        "type": "pretrain", "name": name, "corpus": {"files": [str(corpus)], "validation_fraction": 0.2},
        "tokenizer": {"train": "char"}, "objective": "causal",
        "architecture": {"preset": "nano", "overrides": TINY}, "block_size": 32, "eval_blocks": 16,
        "samples": {"prompt": "the", "max_new_tokens": 8},
        "training": {"max_steps": 30, "batch_size": 8, "learning_rate": 0.01, "eval_every": 10, "log_with": None,
                     "scheduler": "cosine", "min_lr_ratio": 0.1},
        "output_dir": str(tmp_path / "runs"), "seed": 3,
    }  # fmt: skip
    for key, value in extra.items():
        if key == "training":  # merged into the defaults; other sections replace them
            task[key] = {**task[key], **value}
        else:
            task[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "char"])
def test_trained_tokenizers_round_trip(kind: str) -> None:
    tokenizer = train_tokenizer([_text()], kind=kind, vocab_size=300)
    ids = tokenizer("the cat sees a tree .", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    decoded = tokenizer.decode(ids)
    assert decoded.replace(" ", "") == "thecatseesatree." if kind == "wordpiece" else decoded == "the cat sees a tree ."


def test_vocab_smaller_than_the_special_tokens_is_refused() -> None:
    with pytest.raises(PromptLearningError, match="leaves no room beside the 5 special tokens"):
        train_tokenizer([_text()], kind="wordpiece", vocab_size=4)


def test_empty_corpus_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(PromptLearningError, match="holds no text"):
        list(Corpus([str(tmp_path / "empty.txt")]).iter_documents())


def test_token_cache_is_reused_and_an_interrupted_build_is_never_used(tmp_path: Path, corpus_file: Path) -> None:
    corpus = Corpus([str(corpus_file)])
    tokenizer = train_tokenizer(corpus.iter_documents(), kind="char")
    first = build_token_cache(corpus, tokenizer, tmp_path / "cache", progress=False)
    expected = tokenizer(corpus_file.read_text(), add_special_tokens=False)["input_ids"]
    assert first.tokens().tolist() == expected
    stamp = (first.directory / "tokens.bin").stat().st_mtime_ns
    again = build_token_cache(corpus, tokenizer, tmp_path / "cache", progress=False)
    assert again.directory == first.directory and (again.directory / "tokens.bin").stat().st_mtime_ns == stamp
    # a build killed half-way leaves a staging folder; a damaged cache under the final name is rebuilt
    staging = tmp_path / "cache" / f".staging-{first.directory.name}-dead"
    staging.mkdir()
    (staging / "tokens.bin").write_bytes(b"\0\0")
    with (first.directory / "tokens.bin").open("r+b") as f:
        f.truncate(10)
    rebuilt = build_token_cache(corpus, tokenizer, tmp_path / "cache", progress=False)
    assert rebuilt.tokens().tolist() == expected and not staging.exists()


def test_blocks_and_a_corpus_smaller_than_one_block() -> None:
    tokens = np.arange(100, dtype=np.uint16)
    blocks = TokenBlocks(tokens, 10, overlap=1)
    assert len(blocks) == 9 and blocks[1]["input_ids"].tolist() == list(range(10, 21))
    windows = TokenBlocks(tokens, 10, overlap=1, stride=1)
    assert len(windows) == 90 and windows[89]["input_ids"].tolist() == list(range(89, 100))
    with pytest.raises(PromptLearningError, match="fewer than one block"):
        TokenBlocks(tokens[:5], 10, overlap=1)


def test_causal_pretraining_learns_and_a_prompt_method_uses_the_model(
    tmp_path: Path, corpus_file: Path, isolated_home: Path
) -> None:
    result = run_task(load_task(_task(tmp_path, corpus_file)), progress=False)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    history = [h["val_loss"] for h in metrics["history"]]
    assert history[-1] < history[0] and metrics["val_loss"] < np.log(len(json.loads(
        (result.run_dir / "model" / "tokenizer.json").read_text())["model"]["vocab"]))  # fmt: skip
    assert metrics["bits_per_character"] == pytest.approx(metrics["val_loss"] / np.log(2), rel=1e-6)
    assert (result.run_dir / "samples.txt").read_text().count("--- val_loss") == 3
    assert json.loads((result.run_dir / "corpus.json").read_text())["documents"] == 1
    # zero-shot classification with the model pretrained here
    data = tmp_path / "cls"
    data.mkdir()
    rows = [{"text": "the cat sees the sun", "label": "yes"}, {"text": "a dog finds a tree", "label": "no"}]
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cls = {"name": "on-pretrained", "model": str(result.run_dir / "model"), "data": {"root": str(data),
           "eval": "eval.jsonl"}, "template": {"input": "{{ text }} ."},
           "verbalizer": {"words": {"yes": " the", "no": " a"}}, "output_dir": str(tmp_path / "runs")}  # fmt: skip
    (tmp_path / "cls.yaml").write_text(yaml.safe_dump(cls))
    scored = run_task(load_task(tmp_path / "cls.yaml"), progress=False)
    assert scored.num_examples == 2 and 0.0 <= scored.value <= 1.0
    assert all(set(p["label_scores"]) == {"yes", "no"} for p in scored.predictions)


@pytest.mark.parametrize("objective", ["mlm", "mlm-nsp"])
def test_masked_objectives(tmp_path: Path, corpus_file: Path, isolated_home: Path, objective: str) -> None:
    path = _task(tmp_path, corpus_file, objective=objective, tokenizer={"train": "wordpiece", "vocab_size": 200},
                 samples=None)  # fmt: skip
    result = run_task(load_task(path), progress=False)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["mlm_accuracy"] <= 1.0 and metrics["history"][-1]["val_loss"] < metrics["history"][0][
        "val_loss"] + 0.5  # fmt: skip
    assert ("nsp_accuracy" in metrics) == (objective == "mlm-nsp")
    from transformers import AutoModelForMaskedLM

    assert AutoModelForMaskedLM.from_pretrained(str(result.run_dir / "model"), local_files_only=True)


def test_continued_pretraining_with_lora(tmp_path: Path, corpus_file: Path, isolated_home: Path,
                                         tiny_llama_dir: Path) -> None:  # fmt: skip
    path = _task(tmp_path, corpus_file, architecture=None, tokenizer=None, model=str(tiny_llama_dir),
                 peft={"method": "lora", "options": {"r": 4}}, samples=None)  # fmt: skip
    result = run_task(load_task(path), progress=False)
    history = json.loads((result.run_dir / "metrics.json").read_text())["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert not list((result.run_dir / "model").glob("adapter_*")), "the adapter is merged into the saved model"


def test_tokenizer_model_vocab_mismatch(tmp_path: Path, corpus_file: Path, isolated_home: Path,
                                        tiny_llama_dir: Path) -> None:  # fmt: skip
    big = train_tokenizer([_text(3000)], kind="bpe", vocab_size=2000)
    big.save_pretrained(str(tmp_path / "big-tokenizer"))
    path = _task(tmp_path, corpus_file, architecture=None, tokenizer={"from": str(tmp_path / "big-tokenizer")},
                 model=str(tiny_llama_dir), samples=None)  # fmt: skip
    with pytest.raises(PromptLearningError, match="tokenizer/model vocabulary mismatch"):
        run_task(load_task(path), progress=False)


def _pretrain(task: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "promptlearning.cli", "pretrain", str(task), "--output", str(output), *extra]


def test_sigkill_then_resume_continues_the_same_loss_curve(tmp_path: Path, corpus_file: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PROMPTLEARNING_HOME": str(tmp_path / "home")}
    task = _task(tmp_path, corpus_file, training={"max_steps": 30, "eval_every": 5}, samples=None)
    reference = tmp_path / "reference"
    subprocess.run(_pretrain(task, reference), check=True, env=env, capture_output=True)
    broken = tmp_path / "broken"
    process = subprocess.Popen(_pretrain(task, broken), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (not checkpoints.list_checkpoints(broken / "checkpoints") and process.poll() is None
           and time.monotonic() < deadline):  # fmt: skip
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (broken / "metrics.json").exists(), "the run finished before it could be killed"
    resumed = subprocess.run(_pretrain(task, broken, "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((broken / "metrics.json").read_text())
    assert [h["step"] for h in got["history"]] == [h["step"] for h in expected["history"]]
    for a, b in zip(got["history"], expected["history"], strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
    # resuming with another setting is refused, naming it
    changed = subprocess.run(_pretrain(task, broken, "--resume", "--set", "block_size=16"), env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert changed.returncode == 2 and "block_size: 32 -> 16" in changed.stderr


def test_accelerate_launch_pretrains_on_two_processes(tmp_path: Path, corpus_file: Path) -> None:
    """Under ``accelerate launch`` one process trains the tokenizer and builds the token cache, the
    other waits and loads them; both train (DDP over gloo on CPU) and one model is written."""
    import shutil

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PROMPTLEARNING_HOME": str(tmp_path / "home")}
    task = _task(tmp_path, corpus_file, training={"max_steps": 6, "eval_every": 3}, samples=None)
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "promptlearning.cli", "pretrain", str(task),
               "--output", str(tmp_path / "ddp")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "model" / "config.json").is_file()
    assert [p.name for p in (tmp_path / "ddp").iterdir() if p.name.startswith(".tokenizer")] == []
    assert len(list((tmp_path / "home" / "tokens").iterdir())) == 1  # one cache, built once


def test_config_errors(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(TaskConfigError, match="need a wordpiece tokenizer"):
        load_task(_task(tmp_path, corpus_file, objective="mlm"))
    with pytest.raises(TaskConfigError, match="exactly one of train"):
        load_task(_task(tmp_path, corpus_file, tokenizer={"train": "char", "from": "x"}))
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("the cat .\n")
    with pytest.raises(PromptLearningError, match="fewer than one block"):
        run_task(load_task(_task(tmp_path, tiny, name="tiny", output_dir=str(tmp_path / "r2"))), progress=False)


def test_a_failed_start_does_not_block_a_plain_rerun(tmp_path: Path, corpus_file: Path, isolated_home: Path) -> None:
    # block_size larger than the validation split: fails after the tokenizer and config are written
    failing = _task(tmp_path, corpus_file, block_size=4096, samples=None, training={"max_steps": 4, "eval_every": 2})
    output = tmp_path / "run"
    with pytest.raises(PromptLearningError):
        run_task(load_task(failing), run_dir=output, progress=False)
    assert (output / "tokenizer").is_dir(), "the failure came before the set-up this test is about"
    fixed = _task(tmp_path, corpus_file, name="pt2", samples=None, training={"max_steps": 4, "eval_every": 2})
    result = run_task(load_task(fixed), run_dir=output, progress=False)
    assert (result.run_dir / "model" / "config.json").is_file()


def test_resume_refuses_a_tokenizer_trained_on_another_corpus(tmp_path: Path, isolated_home: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("ab " * 400)  # a 4-symbol tokenizer
    task = _task(tmp_path, corpus, samples=None, training={"max_steps": 4, "eval_every": 2})
    output = tmp_path / "run"
    run_task(load_task(task), run_dir=output, progress=False)
    corpus.write_text(_text())  # the same file, another text: the saved tokenizer cannot cover it
    with pytest.raises(PromptLearningError, match="trained on another corpus"):
        run_task(load_task(task), run_dir=output, resume=True, progress=False)
