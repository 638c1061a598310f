"""A compressed model directory: a Hugging Face directory plus ``compression.json``.

    model/config.json            the (possibly smaller) architecture
    model/model.safetensors      the weights: plain float, or int8 tensors with their scales
    model/tokenizer files
    model/compression.json       the steps, sizes and measured quality; how to load the weights

``load_model``, ``perplexity`` and ``serve --model`` read such a directory through
:func:`load_compressed`: int8 layers are rebuilt before their weights are read, torchao modes are
applied after, and ``dtype: auto`` means the dtype the weights were saved in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from promptlearning.errors import CorruptModelError, PromptLearningError
from promptlearning.io import write_directory_atomically
from promptlearning.models.quantized import TORCHAO_MODES, apply_torchao, restore_int8_structure

RECORD = "compression.json"
FORMAT = 1


def compression_record(path: str | Path) -> dict[str, Any] | None:
    """A directory's ``compression.json``, or None for an ordinary model directory."""
    file = Path(str(path)) / RECORD
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"{file} cannot be read ({exc}); compress the model again") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CorruptModelError(f"{file} is not a compression record of format {FORMAT}; compress the model again")
    return record


def save_compressed(model: Any, tokenizer: Any, directory: Path, record: dict[str, Any]) -> None:
    """Write the directory atomically (a crash leaves the previous one, or none)."""
    from safetensors.torch import save_model

    record = {"format": FORMAT, **record}

    def write(staging: Path) -> None:
        if (record.get("quantize") or {}).get("mode") == "int8-weight":
            model.config.save_pretrained(str(staging))
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.save_pretrained(str(staging))
            save_model(model, str(staging / "model.safetensors"))
        else:
            model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    write_directory_atomically(directory, write)


def load_compressed(auto_class: str, path: str | Path, record: dict[str, Any], *, dtype: Any = None) -> Any:
    """The model of a compressed directory (on CPU), quantized as its record says. ``dtype`` None:
    the dtype it was saved in (an int8 directory keeps its own)."""
    import transformers

    quantize = record.get("quantize") or {}
    mode = quantize.get("mode")
    saved = getattr(torch, record.get("dtype", "float32"))
    auto = getattr(transformers, auto_class)
    if mode == "int8-weight":
        from safetensors.torch import load_model

        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        model = _from_config(auto, config, saved)
        restore_int8_structure(model, quantize.get("layout") or {})
        try:
            load_model(model, str(Path(str(path)) / "model.safetensors"), strict=True)
        except (OSError, RuntimeError) as exc:
            raise CorruptModelError(
                f"the int8 weights in {path} do not fit its config ({exc}); compress it again"
            ) from exc
        return model.eval()
    model = auto.from_pretrained(str(path), dtype=dtype or saved, local_files_only=True).eval()
    if mode in TORCHAO_MODES:
        apply_torchao(model, mode, int(quantize.get("group_size", 32)))
    elif mode not in (None, "bf16"):
        raise PromptLearningError(f"{path}/{RECORD} names an unknown quantization mode {mode!r}")
    return model


def _from_config(auto: Any, config: Any, dtype: torch.dtype) -> Any:
    """An empty model of ``config`` (its weights are read next: no time spent initialising them)."""
    from transformers.initialization import no_init_weights

    with no_init_weights():
        return auto.from_config(config, dtype=dtype)


def directory_bytes(path: Path, keep: Callable[[Path], bool] = lambda p: p.suffix == ".safetensors") -> int:
    """Bytes of the weight files in a directory."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and keep(f))
