"""Loading examples from local files: JSON Lines, JSON, CSV/TSV, or a saved Hugging Face ``datasets`` directory.

Where relative paths resolve:

* paths given on the command line or to :func:`load_examples` without ``root``: the current directory;
* the ``data:`` paths of a task file: the data root (:func:`task_data_root`), which is
  ``$PROMPTLEARNING_DATA`` when set, else the task's ``data.root`` (relative to the task file),
  else the current directory.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.io import utf8_file


class DataError(PromptLearningError):
    """A data file that is missing, unreadable or empty."""


def task_data_root(root: str | Path | None = None) -> Path:
    """Where a task file's ``data:`` paths resolve: ``$PROMPTLEARNING_DATA``, else ``root``, else the cwd."""
    env = os.environ.get("PROMPTLEARNING_DATA")
    if env:
        return Path(env).expanduser()
    return Path(root).expanduser() if root else Path.cwd()


def resolve_path(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` with ``~`` and ``$VARS`` expanded; a relative path is taken relative to ``root`` (default: cwd)."""
    path = Path(os.path.expandvars(str(path))).expanduser()
    return path if path.is_absolute() else Path(root or Path.cwd()) / path


def load_examples(
    path: str | Path,
    *,
    root: str | Path | None = None,
    limit: int | None = None,
    offset: int = 0,
    required: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Read examples as a list of dicts; ``offset`` skips rows, then ``limit`` keeps the first ones.

    A relative ``path`` resolves against ``root`` (default: the current directory; task runners pass
    :func:`task_data_root`). Every field in ``required`` must be present and not null in every row
    (checked with :func:`check_fields`).
    """
    resolved = resolve_path(path, root)
    if not resolved.exists():
        raise DataError(f"data file {resolved} does not exist")
    try:
        rows = _read_rows(resolved)
    except UnicodeDecodeError as exc:
        raise DataError(f"{resolved} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    rows = rows[offset:]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{resolved} holds no examples")
    check_fields(rows, required, source=str(resolved), first_row=offset + 1)
    return rows


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with utf8_file(path):
        return _read_rows_of(path)


def _read_rows_of(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        return _load_datasets_dir(path)
    if path.suffix == ".jsonl":
        return _load_jsonl(path)
    if path.suffix == ".json":
        return _load_json(path)
    if path.suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    raise DataError(f"{path}: unknown data format (use .jsonl, .json, .csv, .tsv or a datasets directory)")


def check_fields(
    rows: Sequence[Mapping[str, Any]], fields: Iterable[str], *, source: str = "the data", first_row: int = 1
) -> None:
    """Every row must hold every field, and not as null: say which row (1-based) does not."""
    fields = list(dict.fromkeys(fields))
    for number, row in enumerate(rows, first_row):
        if not isinstance(row, Mapping):
            raise DataError(f"{source}, row {number}: an example must be an object of fields, got {type(row).__name__}")
        for name in fields:
            if name not in row:
                raise DataError(f"{source}, row {number}: no field {name!r} (the row has {sorted(row)})")
            if row[name] is None:
                raise DataError(f"{source}, row {number}: field {name!r} is null; give it a value or drop the row")


def keep_min_words(examples: list[dict[str, Any]], fields: list[str], min_words: int) -> list[dict[str, Any]]:
    """The examples whose ``fields`` hold at least ``min_words`` words in all (e.g. SST-2's train
    split is mostly short phrases; this keeps the sentences). A list field (NER tokens) counts its items."""

    def words(value: Any) -> int:
        return len(value) if isinstance(value, list) else len(str(value).split())

    kept = [ex for ex in examples if sum(words(ex.get(f, "")) for f in fields) >= min_words]
    if not kept:
        raise DataError(f"no example has {min_words} or more words in {fields}")
    return kept


def _load_json(path: Path) -> list[dict[str, Any]]:
    """A ``.json`` file: an array of objects, or one (possibly pretty-printed) object; JSON Lines also work."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several objects, one per line: JSON Lines under a .json name
            return _load_jsonl(path)
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    rows = data if isinstance(data, list) else [data]
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: item {number} must be a JSON object of fields, got {type(row).__name__}")
    return rows


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL file one at a time (blank lines skipped), each checked to be an object."""
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
            yield row


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    return list(iter_jsonl(path))


def _load_datasets_dir(path: Path) -> list[dict[str, Any]]:
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError or its own errors
        raise DataError(f"{path} is a directory but not a saved Hugging Face dataset ({exc})") from None
    if hasattr(dataset, "keys"):  # a DatasetDict: take its only split
        splits = list(dataset.keys())
        if len(splits) != 1:
            raise DataError(f"{path} holds several splits {splits}: point at one of them")
        dataset = dataset[splits[0]]
    return [dict(row) for row in dataset]
