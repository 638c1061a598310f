"""Sentence-embedding backend through ``sentence-transformers`` (used for ``minilm-l6``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptlearning.errors import CorruptModelError, UnsupportedOperationError
from promptlearning.models.interface import LanguageModel
from promptlearning.progress import quiet_third_party


class SentenceTransformerModel(LanguageModel):
    """A sentence-transformers encoder: ``embed`` only (it neither scores nor generates text)."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        batch_size: int = 64,
        device: str = "auto",
        dtype: str = "float32",
        local_files_only: bool = False,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        from promptlearning.devices import resolve_device, resolve_dtype

        target = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, target, cpu_bf16=False)
        local = local_files_only or Path(str(path)).exists()
        try:
            with quiet_third_party():
                self.encoder = SentenceTransformer(str(path), device=str(target), local_files_only=local)
        except Exception as exc:  # damaged files fail in many ways inside transformers
            if Path(str(path)).exists():
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CorruptModelError(f"could not load the sentence encoder in {path}: {first}") from exc
            raise
        self.encoder.to(torch_dtype)
        self.path = Path(str(path)) if Path(str(path)).exists() else None
        self.dtype = str(torch_dtype)
        self.name = name or str(path)
        self.batch_size = batch_size

    @property
    def max_length(self) -> int:
        return int(self.encoder.max_seq_length)

    def fingerprint(self) -> str | None:
        """The directory's files with their sizes and modification times, and the dtype (a hub id
        that was downloaded elsewhere: ``None``)."""
        if self.path is None:
            return None
        files = sorted(p for p in self.path.resolve().rglob("*") if p.is_file())
        listed = [f"{p.relative_to(self.path.resolve())}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
        return "\n".join(["sentence-transformers", str(self.path.resolve()), self.dtype, *listed])

    def count_tokens(self, text: str) -> int:
        return len(self.encoder.tokenizer(text)["input_ids"])

    def loglikelihood(self, requests, *, batch_size=None, progress=None):  # type: ignore[override]
        raise UnsupportedOperationError(f"{self.name} is a sentence encoder: it cannot score continuations")

    def generate(self, prompts, config=None, *, batch_size=None, progress=None):  # type: ignore[override]
        raise UnsupportedOperationError(f"{self.name} is a sentence encoder: it cannot generate text")

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None, normalize: bool = True) -> Any:
        """L2-normalised embeddings (cosine similarity is then a dot product)."""
        return self.encoder.encode(
            list(texts), batch_size=batch_size or self.batch_size, normalize_embeddings=normalize,
            convert_to_numpy=True, show_progress_bar=False,
        )  # fmt: skip
