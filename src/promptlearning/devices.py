"""Devices and precisions: where ``"auto"`` becomes a torch device and dtype, in one place.

* ``device``: ``auto`` (CUDA, else Apple MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
* ``dtype``: ``auto`` (bfloat16 on a GPU that supports it, float16 on other GPUs; on a CPU bfloat16
  when it multiplies bfloat16 natively, else float32: see :func:`resolve_dtype`), ``float32``,
  ``bfloat16`` or ``float16``.

Every model, embedder and training loop takes these two options; nothing else picks a device.
"""

from __future__ import annotations

import functools
import os
import re
from typing import TYPE_CHECKING, Any

from promptlearning.errors import PromptLearningError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPES = ("auto", "float32", "bfloat16", "float16")
CPU_DTYPE_ENV = "PROMPTLEARNING_CPU_DTYPE"  # float32 or bfloat16: what ``auto`` means on this CPU
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bf16 matmul instructions


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


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX-512 BF16 or AMX; Linux flags)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def resolve_dtype(dtype: str | Any | None, device: torch.device, *, cpu_bf16: bool = True) -> torch.dtype:
    """The torch dtype a name stands for on ``device``.

    ``auto``: bf16 on GPUs that support it (else fp16), fp16 on MPS; on a CPU with native bf16
    matmul (:func:`cpu_has_native_bf16`) bf16, else fp32. The deployment table
    (benchmarks/RESULTS.md, issue 31) measured SmolLM2 in bf16 on such a CPU at the same SST-2
    accuracy (81.66 against 81.71) and WikiText-2 perplexity (+0.08 %), with 2.45x the batched
    classification and 1.40x the batch-8 generation (0.88x at batch 1). ``$PROMPTLEARNING_CPU_DTYPE``
    (float32 or bfloat16) overrides the CPU choice; ``cpu_bf16=False`` keeps fp32 for models the
    table did not measure (sentence encoders).
    """
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
    chosen = os.environ.get(CPU_DTYPE_ENV, "").strip()
    if chosen:
        if chosen not in ("float32", "bfloat16"):
            raise DeviceError(f"${CPU_DTYPE_ENV} must be float32 or bfloat16, got {chosen!r}")
        return getattr(torch, chosen)
    return torch.bfloat16 if cpu_bf16 and cpu_has_native_bf16() else torch.float32


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
