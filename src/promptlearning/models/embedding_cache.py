"""Pool embeddings kept on disk, so kNN selection embeds a training pool once per encoder.

kNN demonstration selection embeds its whole pool on every run (76,042 DailyDialog turns take more
than 40 CPU-minutes with minilm-l6). The vectors depend only on the encoder's weights and the texts,
so they are stored under ``<home>/embeddings/<sha256 of both>.npy`` and reused; an encoder without a
:meth:`~promptlearning.models.interface.LanguageModel.fingerprint` (weights built in memory) is never
cached. Written atomically; a damaged file is embedded again, never half-used.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from promptlearning.io import write_atomically
from promptlearning.models.interface import LanguageModel
from promptlearning.progress import progress_bar

CHUNK = 512  # texts per embed call: the progress bar moves, memory stays flat


def cache_path(model: LanguageModel, texts: Sequence[str], root: Path | None = None) -> Path | None:
    """Where the embeddings of ``texts`` by ``model`` are kept (``None``: the model cannot be cached)."""
    fingerprint = model.fingerprint()
    if fingerprint is None:
        return None
    digest = hashlib.sha256(fingerprint.encode())
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))  # lengths keep ["ab", "c"] apart from ["a", "bc"]
        digest.update(encoded)
    if root is None:
        from promptlearning.models.hub import home

        root = home() / "embeddings"
    return root / f"{digest.hexdigest()}.npy"


def embed_cached(
    model: LanguageModel, texts: Sequence[str], *, root: Path | None = None, progress: bool | None = None
) -> np.ndarray:
    """``model.embed(texts)`` as a float32 array, read from the disk cache when it is there."""
    texts = list(texts)
    path = cache_path(model, texts, root)
    if path is not None and path.is_file():
        try:
            vectors = np.load(path, allow_pickle=False)
            if vectors.ndim == 2 and vectors.shape[0] == len(texts):
                return vectors
        except (OSError, ValueError):
            pass  # damaged: embed again and overwrite it
    chunks = []
    with progress_bar(len(texts), desc="embedding pool", unit="text",
                      enabled=progress is not False and len(texts) > CHUNK) as bar:  # fmt: skip
        for start in range(0, len(texts), CHUNK):
            chunks.append(np.asarray(model.embed(texts[start : start + CHUNK]), dtype=np.float32))
            bar.update(len(chunks[-1]))
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    if path is not None and len(texts):
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, vectors, allow_pickle=False)
        write_atomically(path, buffer.getvalue())
    return vectors
