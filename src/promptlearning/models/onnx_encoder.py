"""The ``onnx`` backend: a sentence encoder exported by ``promptlearning export --format onnx``,
run by onnxruntime (``embed`` only, like the sentence-transformers backend it replaces)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptlearning.errors import CorruptModelError, UnsupportedOperationError
from promptlearning.models.interface import LanguageModel

MANIFEST = "onnx_encoder.json"


class ONNXEncoder(LanguageModel):
    """A mean-pooling sentence encoder in ONNX (float or int8), with its tokenizer."""

    def __init__(self, path: str | Path, *, name: str | None = None, batch_size: int = 64, **_: Any) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self.session = onnxruntime.InferenceSession(str(self.path / self.manifest["file"]), options,
                                                        providers=["CPUExecutionProvider"])  # fmt: skip
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptModelError(f"could not load the ONNX encoder in {path}: {exc}; export it again") from exc
        except Exception as exc:  # onnxruntime's own errors on a damaged graph
            raise CorruptModelError(f"could not load the ONNX encoder in {path}: {exc}; export it again") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.name = name or str(path)
        self.batch_size = batch_size

    @property
    def max_length(self) -> int:
        return int(self.manifest.get("max_seq_length", 256))

    def fingerprint(self) -> str | None:
        files = sorted(p for p in self.path.resolve().rglob("*") if p.is_file())
        listed = [f"{p.relative_to(self.path.resolve())}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
        return "\n".join(["onnx", str(self.path.resolve()), *listed])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def loglikelihood(self, requests, *, batch_size=None, progress=None):  # type: ignore[override]
        raise UnsupportedOperationError(f"{self.name} is a sentence encoder: it cannot score continuations")

    def generate(self, prompts, config=None, *, batch_size=None, progress=None):  # type: ignore[override]
        raise UnsupportedOperationError(f"{self.name} is a sentence encoder: it cannot generate text")

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None, normalize: bool = True) -> Any:
        """Embeddings of ``texts`` (L2-normalised unless ``normalize=False``), longest texts batched together."""
        texts = list(texts)
        size = batch_size or self.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), int(self.manifest.get("dimension", 0)) or 1), dtype=np.float32)
        for start in range(0, len(order), size):
            chosen = order[start : start + size]
            encoded = self.tokenizer([texts[i] for i in chosen], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="np")  # fmt: skip
            feed = {n: encoded[n].astype(np.int64) if n in encoded else np.zeros_like(encoded["input_ids"],
                                                                                       dtype=np.int64)
                    for n in self.inputs}  # fmt: skip
            vectors = self.session.run(None, feed)[0]
            if out.shape[1] != vectors.shape[1]:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chosen] = vectors
        if normalize:
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out
