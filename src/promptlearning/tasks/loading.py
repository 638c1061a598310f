"""Loading examples from local files: JSON Lines, CSV, or a saved Hugging Face ``datasets`` directory.

Relative paths resolve against the data root: ``$PROMPTLEARNING_DATA`` when set, else the
directory given by the task (``data.root``), else the current directory.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError


class DataError(PromptLearningError):
    """A data file that is missing, unreadable or empty."""


def data_root(default: str | Path | None = None) -> Path:
    env = os.environ.get("PROMPTLEARNING_DATA")
    if env:
        return Path(env).expanduser()
    return Path(default).expanduser() if default else Path.cwd()


def resolve_path(path: str | Path, root: str | Path | None = None) -> Path:
    path = Path(os.path.expandvars(str(path))).expanduser()
    return path if path.is_absolute() else data_root(root) / path


def load_examples(
    path: str | Path, *, root: str | Path | None = None, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    """Read examples as a list of dicts; ``offset`` skips rows, then ``limit`` keeps the first ones."""
    resolved = resolve_path(path, root)
    if not resolved.exists():
        hint = "" if os.environ.get("PROMPTLEARNING_DATA") else " (set PROMPTLEARNING_DATA to your data folder)"
        raise DataError(f"data file {resolved} does not exist{hint}")
    if resolved.is_dir():
        rows = _load_datasets_dir(resolved)
    elif resolved.suffix in (".jsonl", ".json"):
        rows = _load_jsonl(resolved)
    elif resolved.suffix in (".csv", ".tsv"):
        with open(resolved, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if resolved.suffix == ".tsv" else ","))
    else:
        raise DataError(f"{resolved}: unknown data format (use .jsonl, .csv, .tsv or a datasets directory)")
    rows = rows[offset:]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{resolved} holds no examples")
    return rows


def keep_min_words(examples: list[dict[str, Any]], fields: list[str], min_words: int) -> list[dict[str, Any]]:
    """The examples whose ``fields`` hold at least ``min_words`` words in all (e.g. SST-2's train
    split is mostly short phrases; this keeps the sentences). A list field (NER tokens) counts its items."""

    def words(value: Any) -> int:
        return len(value) if isinstance(value, list) else len(str(value).split())

    kept = [ex for ex in examples if sum(words(ex.get(f, "")) for f in fields) >= min_words]
    if not kept:
        raise DataError(f"no example has {min_words} or more words in {fields}")
    return kept


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _load_datasets_dir(path: Path) -> list[dict[str, Any]]:
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{path} is not a saved Hugging Face dataset: {exc}") from exc
    if hasattr(dataset, "keys"):  # a DatasetDict: take its only split
        splits = list(dataset.keys())
        if len(splits) != 1:
            raise DataError(f"{path} holds several splits {splits}: point at one of them")
        dataset = dataset[splits[0]]
    return [dict(row) for row in dataset]
