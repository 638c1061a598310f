"""Files written so that a crash leaves the old version or the new one, never half of one; sha256 of files.

One place for what the model cache, training checkpoints, prompt programs, run directories and the
command line all need.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError

CHUNK = 1 << 20


def sha256_file(path: str | Path, *, progress: str | None = None) -> str:
    """The sha256 of a file, read in 1 MiB chunks (``progress``: a progress-bar label for large files)."""
    from promptlearning.progress import progress_bar

    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f, progress_bar(path.stat().st_size, unit="B", unit_scale=True, desc=progress or "",
                                             enabled=progress is not None) as bar:  # fmt: skip
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_atomically(path: str | Path, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding=encoding)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomically(path: str | Path, data: Any) -> Path:
    return write_atomically(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_directory_atomically(directory: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(staging)`` fills a staging directory next to ``directory``, which then replaces it: a
    crash leaves the old directory (or none), never a half-written one."""
    import shutil
    import uuid

    directory = Path(directory)
    staging = directory.with_name(f".{directory.name}-{uuid.uuid4().hex[:8]}")
    write(staging)
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)
    return directory


@contextmanager
def utf8_file(path: Path) -> Iterator[None]:
    """Turn a decoding error while reading ``path`` into an error that names the file and the fix."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise PromptLearningError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); if it is text in "
            "another encoding, convert it first (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
