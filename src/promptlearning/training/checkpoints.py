"""Atomic, verified training checkpoints.

``accelerate``'s ``save_state`` writes the whole model in place and has no integrity check, so this
small module is written by hand: a checkpoint is a directory ``step-000120/`` holding

* ``trainable.safetensors``: only the parameters being trained (a LoRA adapter is a few MB, not the
  whole base model);
* ``state.pt``: optimizer, scheduler and RNG states (tensors and plain containers, loaded with
  ``weights_only=True``);
* ``trainer_state.json``: step, epoch, best metric, history;
* ``manifest.json``: the sha256 of every file above, written last.

It is written under a temporary name and renamed into place, so a crash leaves either the whole
checkpoint or none. On load, checkpoints are tried newest first; one whose files do not match its
manifest is reported and skipped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from promptlearning.io import fsync_file, sha256_file, write_json_atomically

logger = logging.getLogger(__name__)

_FILES = ("trainable.safetensors", "state.pt", "trainer_state.json")


def save_checkpoint(
    root: Path,
    step: int,
    trainable: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    trainer_state: Mapping[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; keep the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / _FILES[0]))
    torch.save(dict(state), tmp / _FILES[1])
    (tmp / _FILES[2]).write_text(json.dumps(dict(trainer_state), indent=2, sort_keys=True) + "\n")
    for name in _FILES:
        fsync_file(tmp / name)
    write_json_atomically(tmp / "manifest.json", {name: sha256_file(tmp / name) for name in _FILES})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete-looking checkpoint directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def verify(checkpoint: Path) -> str | None:
    """None if the checkpoint's files match its manifest, else what is wrong."""
    manifest_path = checkpoint / "manifest.json"
    if not manifest_path.is_file():
        return "no manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return "manifest.json is not valid JSON"
    for name in _FILES:
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if manifest.get(name) != sha256_file(path):
            return f"{name} does not match its checksum"
    return None


def load_latest(root: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any], dict[str, Any]] | None:
    """The newest valid checkpoint as (path, trainable tensors, state, trainer state); None if none."""
    for checkpoint in reversed(list_checkpoints(root)):
        problem = verify(checkpoint)
        if problem:
            logger.warning("checkpoint %s is corrupt (%s); trying the previous one", checkpoint, problem)
            continue
        trainable = load_file(str(checkpoint / _FILES[0]))
        state = torch.load(checkpoint / _FILES[1], weights_only=True)
        trainer_state = json.loads((checkpoint / _FILES[2]).read_text())
        return checkpoint, trainable, state, trainer_state
    return None
