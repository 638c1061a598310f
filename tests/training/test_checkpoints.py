"""Checkpoints are atomic and verified; a killed run resumes to the same result as an unbroken one."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from promptlearning.training import checkpoints, load_program


def _save(root: Path, step: int, value: float, keep: int = 3) -> Path:
    weights = {"w": torch.full((4,), value)}
    state = {"optimizer": {"lr": 0.1}, "torch_rng": torch.get_rng_state()}
    return checkpoints.save_checkpoint(root, step, weights, state, {"step": step}, keep=keep)


def test_newest_valid_checkpoint_is_loaded_and_old_ones_pruned(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        _save(tmp_path, step, float(step), keep=2)
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["step-0000020", "step-0000030"]
    path, weights, state, trainer_state = checkpoints.load_latest(tmp_path)
    assert path.name == "step-0000030" and trainer_state["step"] == 30
    assert torch.equal(weights["w"], torch.full((4,), 30.0))
    assert torch.equal(state["torch_rng"], torch.get_rng_state()) or state["torch_rng"].dtype == torch.uint8


def test_a_corrupt_checkpoint_is_detected_and_the_previous_one_used(tmp_path: Path, caplog) -> None:
    _save(tmp_path, 1, 1.0)
    newest = _save(tmp_path, 2, 2.0)
    data = bytearray((newest / "trainable.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newest / "trainable.safetensors").write_bytes(bytes(data))
    assert "checksum" in checkpoints.verify(newest)
    with caplog.at_level(logging.WARNING):
        path, weights, _, _ = checkpoints.load_latest(tmp_path)
    assert path.name == "step-0000001" and float(weights["w"][0]) == 1.0
    assert "corrupt" in caplog.text
    (path / "manifest.json").unlink()  # a half-written checkpoint has no manifest yet
    assert checkpoints.load_latest(tmp_path) is None


def _train_command(task: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "promptlearning.cli", "train", str(task), "--output", str(output), *extra]


def test_sigkill_then_resume_ends_where_an_uninterrupted_run_ends(write_task, tmp_path: Path) -> None:
    training = {"max_steps": 40, "eval_every": 5, "batch_size": 4, "learning_rate": 0.01, "log_every": 5}
    task = write_task("resume", training=training, peft={"method": "lora", "options": {"r": 4, "lora_dropout": 0.1}})
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    reference = tmp_path / "reference"
    subprocess.run(_train_command(task, reference), check=True, env=env, capture_output=True)

    broken = tmp_path / "broken"
    process = subprocess.Popen(_train_command(task, broken), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint_dir = broken / "seed-1" / "checkpoints"
    deadline = time.monotonic() + 120
    while not checkpoints.list_checkpoints(checkpoint_dir) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (broken / "seed-1" / "metrics.json").exists(), "the run finished before it could be killed"
    killed_at = [p.name for p in checkpoints.list_checkpoints(checkpoint_dir)]
    assert killed_at and killed_at[-1] != "step-0000040"

    resumed = subprocess.run(_train_command(task, broken, "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    expected = json.loads((reference / "seed-1" / "metrics.json").read_text())
    got = json.loads((broken / "seed-1" / "metrics.json").read_text())
    assert got["dev_history"] == expected["dev_history"]
    assert got["eval"]["accuracy"] == expected["eval"]["accuracy"]
    from safetensors.torch import load_file

    a = load_file(str(reference / "seed-1" / "program" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(broken / "seed-1" / "program" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_existing_run_is_not_overwritten_without_resume(write_task, tmp_path: Path) -> None:
    task = write_task("twice")
    out = tmp_path / "twice"
    from promptlearning.tasks import load_task, run_task

    run_task(load_task(task), run_dir=out, progress=False)  # the first run, in process: the CLI's are below
    second = subprocess.run(_train_command(task, out), capture_output=True, text=True)
    assert second.returncode == 2 and "--resume" in second.stderr
    again = subprocess.run(_train_command(task, out, "--resume"), capture_output=True, text=True)
    assert again.returncode == 0 and "accuracy" in again.stdout  # finished seeds are not trained again
    assert "seed 1 (1 of 1): finished before, kept" in again.stderr


def test_accelerate_launch_trains_on_two_processes(write_task, sentiment_data: Path, tmp_path: Path) -> None:
    """The same command under ``accelerate launch --multi_gpu --num_processes 2``: DDP on CPU over gloo."""
    import shutil

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    task = write_task("ddp", few_shot={"k": 8, "seeds": [1, 2]})
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "promptlearning.cli", "train", str(task),
               "--output", str(tmp_path / "ddp")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data parallel: 2 processes (MULTI_CPU)" in result.stdout + result.stderr
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert sorted(summary["per_seed"]) == ["1", "2"]
    # the eval split was shared out between the processes and gathered back whole, in order
    metrics = json.loads((tmp_path / "ddp" / "seed-1" / "metrics.json").read_text())
    test = [json.loads(line) for line in (sentiment_data / "test.jsonl").read_text().splitlines()]
    assert metrics["eval"]["num_examples"] == len(test)
    alone = load_program(tmp_path / "ddp" / "seed-1" / "program").evaluate(test)
    assert alone["accuracy"] == pytest.approx(metrics["eval"]["accuracy"])


class _Regression(torch.nn.Module):
    """One weight fitted to 0: the smallest module the loop can train."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": (self.weight * x).pow(2).mean()}


def test_an_early_stopped_run_resumed_trains_no_further(tmp_path: Path) -> None:
    from promptlearning.training.loop import TrainingArguments, train

    features = [{"x": torch.tensor([1.0])} for _ in range(8)]
    collate = lambda rows: {"x": torch.stack([row["x"] for row in rows])}  # noqa: E731
    scores = iter([0.9, 0.5, 0.4, 0.3, 0.99, 0.99])  # best first, then worse: patience 3 stops at step 8
    calls: list[float] = []

    def evaluate(_: torch.nn.Module) -> dict[str, float]:
        calls.append(next(scores))
        return {"accuracy": calls[-1]}

    args = TrainingArguments(max_steps=12, eval_every=2, batch_size=2, patience=3, log_with=None, keep_checkpoints=1)
    first = train(_Regression(), features, collate, evaluate, args, tmp_path, progress=False)
    assert (first.steps, first.best_step, len(calls)) == (8, 2, 4)
    again = train(_Regression(), features, collate, evaluate, args, tmp_path, resume=True, progress=False)
    assert again.resumed_from == 8 and again.steps == 8 and len(calls) == 4  # no step, no evaluation after the stop
    assert (again.best_metric, again.best_step) == (0.9, 2)
