"""Quantizing a Hugging Face model's weights for CPU (or GPU) inference.

Modes (``QUANT_MODES``):

* ``bf16``: every weight cast to bfloat16 (a native matmul on CPUs with AVX-512 BF16, and on GPUs);
* ``int8-weight``: linear layers (and, unless ``embeddings=False``, the input embedding and the LM
  head, untied) hold int8 weights with one scale per output channel: about a quarter of fp32 on
  disk and in memory. Each call casts the int8 weight to the activations' dtype and applies the
  scales to the output (as torchao's weight-only path does). PyTorch's int8 weight-only kernel
  (``torch._weight_int8pack_mm``, torchchat's) was measured here (torch 2.13, AVX-512 without AMX)
  at 1/35 of fp32's speed on batched scoring and 0.4x on batch-1 generation, the cast at 0.85x and
  0.5x: int8 weights save size here, not time;
* ``int8-dynamic``: torchao's int8 dynamic-activation + int8-weight (``Int8DynamicActivationInt8WeightConfig``);
* ``int4-weight``: torchao's ``IntxWeightOnlyConfig`` with 4-bit weights in groups of ``group_size``
  (32 by default: SmolLM2's width 576 is not a multiple of 128, which torchao's packed int4 CPU
  layout wants).

The two torchao modes are applied when the model is loaded (their tensor subclasses are not plain
safetensors); the directory keeps the weights they are applied to.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from promptlearning.errors import PromptLearningError

QUANT_MODES = ("bf16", "int8-weight", "int8-dynamic", "int4-weight")
TORCHAO_MODES = ("int8-dynamic", "int4-weight")  # applied at load time, with torchao


def check_quant_mode(mode: str, device: torch.device | str = "cpu", group_size: int = 32) -> None:
    """Raise, naming what is supported, when ``mode`` cannot run on ``device`` here."""
    if mode not in QUANT_MODES:
        raise PromptLearningError(f"unknown quantization mode {mode!r}; supported: {', '.join(QUANT_MODES)}")
    device = torch.device(device)
    if mode == "int8-weight" and device.type not in ("cpu", "cuda"):
        raise PromptLearningError(f"int8-weight runs on cpu or cuda, not {device.type}; use bf16 there")
    if mode in TORCHAO_MODES:
        try:
            import torchao  # noqa: F401
        except ImportError as exc:
            raise PromptLearningError(
                f"quantization mode {mode} needs torchao: pip install 'promptlearning[compress]' (bf16 and "
                "int8-weight need nothing more)"
            ) from exc
    if mode == "int4-weight" and group_size not in (32, 64, 128, 256):
        raise PromptLearningError(f"int4-weight group_size must be 32, 64, 128 or 256, got {group_size}")


def _per_row_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: ``weight ≈ q * scale[:, None]``."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8WeightLinear(nn.Module):
    """A linear layer with int8 weights and a float scale per output channel (``weight_scale``);
    activations stay in their float dtype (see the module docstring for the kernel choice)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=dtype))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8WeightLinear:
        dtype = linear.weight.dtype
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype)
        q, scale = _per_row_int8(linear.weight)
        layer.weight.copy_(q)
        layer.weight_scale.copy_(scale.to(dtype))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight.to(x.dtype)) * self.weight_scale.to(x.dtype)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


class Int8Embedding(nn.Module):
    """An embedding table in int8 with a float scale per row; looked-up rows are dequantized."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.register_buffer("weight", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, dtype=dtype))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        dtype = embedding.weight.dtype
        layer = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, dtype)
        q, scale = _per_row_int8(embedding.weight)
        layer.weight.copy_(q)
        layer.weight_scale.copy_(scale.to(dtype))
        return layer.to(embedding.weight.device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight).to(self.weight_scale.dtype)
        return rows * self.weight_scale[ids].unsqueeze(-1)


def _replace_modules(model: nn.Module, wanted: type, make: Any, skip: tuple[nn.Module, ...] = ()) -> list[str]:
    """Replace every submodule of type ``wanted`` (but ``skip``) by ``make(module)``; their names."""
    replaced = []
    for name, module in list(model.named_modules()):
        if type(module) is not wanted or any(module is s for s in skip):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(module))
        replaced.append(name)
    return replaced


def untie_embeddings(model: Any) -> None:
    """Give the LM head its own copy of the input embedding (they are quantized apart)."""
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight is not embeddings.weight:
        return
    head.weight = nn.Parameter(embeddings.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text_config is not None and text_config is not model.config:
        text_config.tie_word_embeddings = False


def int8_weight_only(model: Any, *, embeddings: bool = True) -> dict[str, list[str]]:
    """Swap linear layers (and with ``embeddings`` the input embedding and LM head) for int8 ones, in
    place; the names swapped, by kind (what :func:`restore_int8_structure` rebuilds on load)."""
    head = model.get_output_embeddings()
    skip: tuple[nn.Module, ...] = ()
    if embeddings:
        untie_embeddings(model)
    else:
        skip = tuple(m for m in (head,) if m is not None)
    linear = _replace_modules(model, nn.Linear, Int8WeightLinear.from_linear, skip)
    # only plain nn.Embedding tables: a subclass (Gemma's scaled embedding) does more than a lookup
    embedding = _replace_modules(model, nn.Embedding, Int8Embedding.from_embedding) if embeddings else []
    return {"linear": linear, "embedding": embedding}


def restore_int8_structure(model: nn.Module, layout: dict[str, list[str]]) -> None:
    """Put empty int8 modules where :func:`int8_weight_only` put them (their data are loaded next)."""
    for name in layout.get("linear", []):
        module = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        dtype = module.weight.dtype
        setattr(parent, child, Int8WeightLinear(module.in_features, module.out_features, module.bias is not None,
                                                dtype))  # fmt: skip
    for name in layout.get("embedding", []):
        module = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Embedding(module.num_embeddings, module.embedding_dim, module.padding_idx,
                                             module.weight.dtype))  # fmt: skip


def apply_torchao(model: nn.Module, mode: str, group_size: int = 32) -> None:
    """torchao's quantization of every linear layer, in place (``int8-dynamic`` or ``int4-weight``)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    if mode == "int8-dynamic":
        config: Any = Int8DynamicActivationInt8WeightConfig()
    elif mode == "int4-weight":
        config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))
    else:
        raise PromptLearningError(f"{mode} is not a torchao mode; torchao modes: {', '.join(TORCHAO_MODES)}")
    quantize_(model, config)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and persistent buffers (shared tensors counted once)."""
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
    return total
