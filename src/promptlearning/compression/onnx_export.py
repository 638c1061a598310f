"""ONNX export of a sentence encoder (``minilm-l6``, an ``embed-train`` run) with onnxruntime's
dynamic int8 quantization: a directory the ``onnx`` backend loads as a kNN / ``/v1/embeddings``
embedder.

    model.onnx              the encoder + mean pooling, float32 (torch.onnx, TorchScript exporter): fp32
    model.int8.onnx         the same with int8 weights and dynamically quantized activations: int8
                            (the float32 graph it was made from is not kept)
    onnx_encoder.json       which file to run, the sequence limit, the embedding size
    tokenizer files

sentence-transformers' own ONNX backend goes through optimum-onnx, which pins transformers < 4.58;
this project is on transformers 5, so the export is done here with ``torch.onnx`` and
``onnxruntime.quantization`` directly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_directory_atomically

ONNX_QUANTS = ("int8", "fp32")
MANIFEST = "onnx_encoder.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBE_TEXTS = ("a gorgeous, moving film", "the bank declined my card payment abroad", "Stocks fell 3% on Monday.")
MIN_COSINE = {"fp32": 0.9999, "int8": 0.98}  # each probe embedding against the source's


def _pooled_encoder(transformer: Any, pooling: str) -> Any:
    import torch

    class PooledEncoder(torch.nn.Module):
        """The transformer and mean pooling over the attention mask, as one exportable graph."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state  # fmt: skip
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    if pooling != "mean":
        raise PromptLearningError(f"ONNX export supports mean-pooling sentence encoders; this one pools by {pooling}")
    return PooledEncoder().eval()


def _sentence_encoder(source: Path, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    from promptlearning.devices import resolve_device

    if not (source / "modules.json").is_file():
        raise PromptLearningError(f"ONNX export takes sentence encoders (minilm-l6, an embed-train run); {source} is "
                                  "not one (language models export to GGUF: --format gguf)")  # fmt: skip
    encoder = SentenceTransformer(str(source), device=str(resolve_device(device)), local_files_only=True)
    names = [type(m).__name__ for m in encoder]
    if names[0] != "Transformer" or names[1] != "Pooling" or not set(names[2:]) <= {"Normalize"}:
        raise PromptLearningError(f"ONNX export supports Transformer + Pooling (+ Normalize) encoders, not {names}")
    return encoder


def export_encoder_onnx(source: str | Path, output: str | Path, quant: str = "int8", *,
                        device: str = "auto") -> dict[str, Any]:  # fmt: skip
    """Export ``source`` (traced on ``device``) into the directory ``output`` (written atomically)
    and check it against the source on probe sentences."""
    import torch

    if quant not in ONNX_QUANTS:
        raise PromptLearningError(f"unknown ONNX type {quant!r}; supported: {', '.join(ONNX_QUANTS)}")
    source, output = Path(source), Path(output)
    encoder = _sentence_encoder(source, device)
    pooling = encoder[1].get_config_dict().get("pooling_mode", "mean")
    graph = _pooled_encoder(encoder[0].auto_model.eval(), pooling)
    tokenizer = encoder.tokenizer
    sample = tokenizer(list(PROBE_TEXTS[:2]), padding=True, return_tensors="pt").to(encoder.device)
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    manifest = {"file": "model.int8.onnx" if quant == "int8" else "model.onnx", "quant": quant,
                "max_seq_length": int(encoder.max_seq_length), "dimension": int(encoder.get_embedding_dimension()),
                "normalize": "Normalize" in [type(m).__name__ for m in encoder], "source": str(source)}  # fmt: skip

    def write(staging: Path) -> None:
        staging.mkdir(parents=True)
        axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS} | {"embedding": {0: "batch"}}
        # the tracer warns about data-dependent branches in transformers' masking code: nothing to act on
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(sample[n] for n in INPUTS), str(staging / "model.onnx"),
                              input_names=list(INPUTS), output_names=["embedding"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)  # fmt: skip
        if quant == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # a scale per output channel: per-tensor scales cost MiniLM 0.06 of cosine on probe sentences
            quantize_dynamic(str(staging / "model.onnx"), str(staging / "model.int8.onnx"),
                             weight_type=QuantType.QInt8, per_channel=True)  # fmt: skip
            (staging / "model.onnx").unlink()  # the deployment ships what it runs
        tokenizer.save_pretrained(str(staging))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        check_against_source(encoder, staging, quant)

    write_directory_atomically(output, write)
    return {**manifest, "directory": str(output), "bytes": (output / manifest["file"]).stat().st_size}


def check_against_source(encoder: Any, directory: Path, quant: str) -> float:
    """The lowest cosine between the exported and the source embedding of the probe sentences."""
    from promptlearning.models.onnx_encoder import ONNXEncoder

    exported = ONNXEncoder(directory).embed(list(PROBE_TEXTS))
    reference = encoder.encode(list(PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True)
    cosine = float(np.min(np.sum(exported * reference, axis=1)))
    if cosine < MIN_COSINE[quant]:
        raise PromptLearningError(f"the {quant} ONNX encoder differs from the source (cosine {cosine:.4f} < "
                                  f"{MIN_COSINE[quant]} on a probe sentence)")  # fmt: skip
    return cosine
