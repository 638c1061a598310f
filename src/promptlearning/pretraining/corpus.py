"""A pretraining corpus: documents read from text files, JSONL fields or a saved ``datasets``
directory, cleaned, and described by a statistics report.

    corpus = Corpus(["data/shakespeare/input.txt"])
    corpus = Corpus(["ag_news/train.jsonl", "sst2/train.jsonl"], field="text", dedupe_lines=True)
    corpus.stats(tokenizer)   # documents, characters, tokens, vocabulary coverage

A plain-text file is one document; a JSONL row or a ``datasets`` row is one document (its ``field``).
Cleaning works on lines: ``dedupe_lines`` drops a line seen before anywhere in the corpus,
``min_chars`` drops lines shorter than that. Both are off by default: they change a text like
Shakespeare's, where short repeated lines ("First Citizen:") are part of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlearning.errors import EmptyDataError, PromptLearningError
from promptlearning.io import utf8_file

TEXT_SUFFIXES = (".txt", ".text", ".raw", ".md")


def _read_jsonl(path: Path, field_name: str) -> Iterator[str]:
    from promptlearning.loading import iter_jsonl

    for number, row in enumerate(iter_jsonl(path), 1):
        if field_name not in row:
            raise PromptLearningError(f"{path}: row {number} has no field {field_name!r} (corpus.field names it)")
        value = row[field_name]
        if isinstance(value, list):  # e.g. a dialogue's turns
            value = "\n".join(str(v) for v in value)
        yield str(value)


def batched(documents: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of ``size`` documents (the last one shorter), for batched tokenization and training."""
    batch: list[str] = []
    for doc in documents:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_datasets_dir(path: Path, field_name: str) -> Iterator[str]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    splits = list(data.values()) if isinstance(data, DatasetDict) else [data]
    for split in splits:
        if field_name not in split.column_names:
            raise PromptLearningError(f"{path}: no column {field_name!r}; columns: {', '.join(split.column_names)}")
        for value in split[field_name]:
            yield str(value)


def read_documents(paths: Sequence[str | Path], field: str = "text") -> Iterator[str]:
    """Documents of every path, in order: a text file is one, a JSONL row or ``datasets`` row one each."""
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise PromptLearningError(f"corpus file {path} does not exist")
        if path.is_dir():
            if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
                raise PromptLearningError(f"{path} is a folder but not a saved datasets directory")
            yield from _read_datasets_dir(path, field)
        elif path.suffix in (".jsonl", ".json"):
            with utf8_file(path):
                yield from _read_jsonl(path, field)
        else:
            with utf8_file(path):
                text = path.read_text(encoding="utf-8")
            yield text


@dataclass
class Corpus:
    """Paths and cleaning options; documents are read lazily (``iter_documents``), so a corpus larger
    than memory streams through tokenization. ``fingerprint`` keys the token cache."""

    paths: list[str]
    field: str = "text"
    dedupe_lines: bool = False
    min_chars: int = 0

    def __post_init__(self) -> None:
        if not self.paths:
            raise EmptyDataError("the corpus names no files")
        for path in self.paths:
            if not Path(path).exists():
                raise PromptLearningError(f"corpus file {path} does not exist")

    def iter_documents(self) -> Iterator[str]:
        """The cleaned, non-empty documents, in order."""
        seen: set[bytes] = set()
        empty = True
        for doc in read_documents(self.paths, self.field):
            if self.dedupe_lines or self.min_chars:
                doc = _clean_lines(doc, seen, self.dedupe_lines, self.min_chars)
            if doc.strip():
                empty = False
                yield doc
        if empty:
            raise EmptyDataError(f"the corpus ({', '.join(self.paths)}) holds no text")

    def fingerprint(self) -> str:
        """The files (path, size, modification time) and the options: a changed file is a new corpus."""
        digest = hashlib.sha256(json.dumps([self.field, self.dedupe_lines, self.min_chars]).encode())
        for raw in self.paths:
            path = Path(raw).resolve()
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                stat = f.stat()
                digest.update(f"{f}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def stats(self, tokenizer: Any | None = None, tokens: int | None = None) -> dict[str, Any]:
        """Documents, characters, bytes, lines; with ``tokens`` the characters per token; with a
        tokenizer the vocabulary coverage (the share of the vocabulary the corpus uses)."""
        documents = characters = size = lines = 0
        alphabet: set[str] = set()
        used: set[int] = set()
        for doc in self.iter_documents():
            documents += 1
            characters += len(doc)
            size += len(doc.encode("utf-8"))
            lines += doc.count("\n") + 1
            alphabet.update(doc)
            if tokenizer is not None and documents <= 2000:  # coverage from a sample: exact for small corpora
                used.update(tokenizer(doc, add_special_tokens=False)["input_ids"])
        out: dict[str, Any] = {"documents": documents, "characters": characters, "bytes": size, "lines": lines,
                               "distinct_characters": len(alphabet)}  # fmt: skip
        if tokens is not None:
            out["tokens"] = tokens
            out["characters_per_token"] = round(characters / max(tokens, 1), 3)
        if tokenizer is not None:
            out["vocabulary_size"] = len(tokenizer)
            out["vocabulary_used"] = len(used)
            out["vocabulary_coverage"] = round(len(used) / len(tokenizer), 4)
        return out


def _clean_lines(doc: str, seen: set[bytes], dedupe_lines: bool, min_chars: int) -> str:
    kept = []
    for line in doc.split("\n"):
        if min_chars and len(line.strip()) < min_chars:
            continue
        if dedupe_lines and line.strip():
            key = hashlib.blake2b(line.strip().encode("utf-8"), digest_size=12).digest()
            if key in seen:
                continue
            seen.add(key)
        kept.append(line)
    return "\n".join(kept)
