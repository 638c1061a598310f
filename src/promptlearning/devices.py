"""Devices and precisions: where ``"auto"`` becomes a torch device and dtype, in one place.

* ``device``: ``auto`` (CUDA, else Apple MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
* ``dtype``: ``auto`` (bfloat16 on a GPU that supports it, float16 on other GPUs, float32 on CPU),
  ``float32``, ``bfloat16`` or ``float16``.

Every model, embedder and training loop takes these two options; nothing else picks a device.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from promptlearning.errors import PromptLearningError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class DeviceError(PromptLearningError):
    """A device that is unknown or not present on this machine, or an unknown dtype."""


def check_device_name(device: str) -> str:
    """Validate a device name without touching torch (for task files and the command line)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise DeviceError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    return device


def check_dtype_name(dtype: str) -> str:
    if dtype not in DTYPES:
        raise DeviceError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | Any | None = "auto") -> torch.device:
    """The torch device a name stands for; a device that is not here is a clear error."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = check_device_name(device or "auto")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not _mps_available():
        raise DeviceError("device 'mps' asked for, but Apple's MPS backend is not available here")
    return torch.device(name)


def resolve_dtype(dtype: str | Any | None, device: torch.device) -> torch.dtype:
    """The torch dtype a name stands for on ``device`` (``auto``: bf16/fp16 on GPUs, fp32 on CPU)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = check_dtype_name(dtype or "auto")
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def mixed_precision(setting: str, device: torch.device) -> str:
    """accelerate's ``mixed_precision`` for a training setting: ``auto`` is bf16 (or fp16) on a GPU, none on CPU."""
    if setting not in ("auto", "no", "bf16", "fp16"):
        raise DeviceError(f"mixed precision must be auto, no, bf16 or fp16, got {setting!r}")
    if setting != "auto":
        return setting
    if device.type != "cuda":
        return "no"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
