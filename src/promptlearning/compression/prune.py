"""Structured pruning of decoder models into smaller dense ones, measured on calibration text.

* depth: a block's *influence* is ``1 - cos(input, output)`` of its hidden states, averaged over
  the calibration tokens (ShortGPT's "block influence", Men et al. 2024): blocks that barely turn
  the residual stream are dropped, and the model keeps fewer layers (``num_hidden_layers``);
* width: each MLP's intermediate channels ranked by their mean absolute activation (the input of
  the down projection) on the calibration tokens; the weakest are cut from the gate/up rows and the
  down columns (``intermediate_size``), so every layer keeps the same, smaller width;
* magnitude: unstructured zeroing of the smallest weights of every linear layer, only as a reference
  (dense kernels do the same work on zeros: nothing gets faster or smaller).

``transformers`` has no structured pruning of these models, hence the code here; it works on the
decoder stacks that keep their blocks in ``model.model.layers`` (Llama, Mistral, Qwen, Gemma, SmolLM).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from promptlearning.errors import PromptLearningError


def decoder_layers(model: Any) -> nn.ModuleList:
    """The model's list of decoder blocks."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise PromptLearningError(
            f"structured pruning supports decoders whose blocks are model.model.layers (Llama, Mistral, Qwen, "
            f"Gemma, SmolLM); {type(model).__name__} is not one"
        )
    return layers


def _text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _hidden(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


@torch.inference_mode()
def block_influence(model: Any, batches: Iterable[dict[str, torch.Tensor]]) -> list[float]:
    """``1 - cos(input, output)`` of every decoder block, averaged over the (unmasked) tokens."""
    layers = decoder_layers(model)
    sums = torch.zeros(len(layers), dtype=torch.float64)
    current_mask: list[torch.Tensor] = []
    inputs: dict[int, torch.Tensor] = {}

    def before(index: int) -> Any:
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            inputs[index] = _hidden(args[0] if args else kwargs["hidden_states"])

        return hook

    def after(index: int) -> Any:
        def hook(_module: nn.Module, _args: tuple, _kwargs: dict, output: Any) -> None:
            cos = nn.functional.cosine_similarity(inputs.pop(index).float(), _hidden(output).float(), dim=-1)
            sums[index] += float(((1 - cos) * current_mask[0]).sum())

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(before(i), with_kwargs=True))
        handles.append(layer.register_forward_hook(after(i), with_kwargs=True))
    count = _run_hooked(model, batches, handles, current_mask, "the blocks")
    return (sums / count).tolist()


def _run_hooked(model: Any, batches: Iterable[dict[str, torch.Tensor]], handles: list, mask_now: list,
                what: str) -> int:  # fmt: skip
    """Run the calibration batches through ``model`` with the ``handles``' hooks in place (removed
    after), each batch's attention mask in ``mask_now[0]`` for them; the tokens seen."""
    device = next(model.parameters()).device
    count = 0
    try:
        for batch in batches:
            mask = batch["attention_mask"].to(device)
            mask_now[:] = [mask.float()]
            model(input_ids=batch["input_ids"].to(device), attention_mask=mask)
            count += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
    if count == 0:
        raise PromptLearningError(f"the calibration text has no tokens: cannot measure {what}")
    return count


def layers_to_drop(influence: Sequence[float], drop: int) -> list[int]:
    """The ``drop`` blocks of least influence (ascending index)."""
    if not 0 < drop < len(influence):
        raise PromptLearningError(
            f"depth pruning must drop between 1 and {len(influence) - 1} of the model's {len(influence)} layers "
            f"(at least one stays), got {drop}"
        )
    order = sorted(range(len(influence)), key=lambda i: influence[i])
    return sorted(order[:drop])


def drop_layers(model: Any, indices: Sequence[int]) -> None:
    """Remove decoder blocks ``indices`` in place; the config and the blocks' cache indices follow."""
    layers = decoder_layers(model)
    gone = set(indices)
    kept = [i for i in range(len(layers)) if i not in gone]
    if not kept:
        raise PromptLearningError("depth pruning would remove every layer: keep at least one")
    config = _text_config(model)
    new_layers = nn.ModuleList(layers[i] for i in kept)
    for position, layer in enumerate(new_layers):  # the KV cache is indexed by each attention's layer_idx
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = position
    model.model.layers = new_layers
    config.num_hidden_layers = len(kept)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        config.layer_types = [layer_types[i] for i in kept]


def _mlp(layer: nn.Module) -> nn.Module:
    mlp = getattr(layer, "mlp", None)
    if mlp is None or not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
        raise PromptLearningError("width pruning supports gated MLPs (gate_proj, up_proj, down_proj) only")
    return mlp


@torch.inference_mode()
def mlp_channel_importance(model: Any, batches: Iterable[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Per layer, the mean absolute activation of every intermediate MLP channel over the tokens."""
    layers = decoder_layers(model)
    sums = [torch.zeros(_mlp(layer).down_proj.in_features, dtype=torch.float64) for layer in layers]
    mask_now: list[torch.Tensor] = []

    def capture(index: int) -> Any:
        def hook(_module: nn.Module, args: tuple) -> None:
            weights = mask_now[0].reshape(-1, 1).double()
            activation = args[0].reshape(-1, args[0].shape[-1]).abs().double() * weights
            sums[index] += activation.sum(0).cpu()

        return hook

    handles = [_mlp(layer).down_proj.register_forward_pre_hook(capture(i)) for i, layer in enumerate(layers)]
    count = _run_hooked(model, batches, handles, mask_now, "the MLP channels")
    return [s / count for s in sums]


def _keep_rows(linear: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    out = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None,
                    dtype=linear.weight.dtype, device=linear.weight.device)  # fmt: skip
    out.weight.data.copy_(linear.weight.data[rows])
    if linear.bias is not None:
        out.bias.data.copy_(linear.bias.data[rows])
    return out


def _keep_columns(linear: nn.Linear, columns: torch.Tensor) -> nn.Linear:
    out = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None,
                    dtype=linear.weight.dtype, device=linear.weight.device)  # fmt: skip
    out.weight.data.copy_(linear.weight.data[:, columns])
    if linear.bias is not None:
        out.bias.data.copy_(linear.bias.data)
    return out


def prune_mlp_width(model: Any, importance: Sequence[torch.Tensor], keep: int) -> None:
    """Keep the ``keep`` most important intermediate channels of every MLP, in place."""
    layers = decoder_layers(model)
    width = _mlp(layers[0]).down_proj.in_features
    if not 0 < keep <= width:
        raise PromptLearningError(f"width pruning must keep between 1 and {width} MLP channels, got {keep}")
    for layer, scores in zip(layers, importance, strict=True):
        mlp = _mlp(layer)
        channels = torch.sort(torch.topk(scores, keep).indices).values.to(mlp.down_proj.weight.device)
        mlp.gate_proj = _keep_rows(mlp.gate_proj, channels)
        mlp.up_proj = _keep_rows(mlp.up_proj, channels)
        mlp.down_proj = _keep_columns(mlp.down_proj, channels)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    _text_config(model).intermediate_size = keep


def width_to_keep(width: int, fraction: float, multiple: int = 8) -> int:
    """Channels kept when ``fraction`` of ``width`` is cut, rounded to a multiple (fast kernels)."""
    if not 0 < fraction < 1:
        raise PromptLearningError(f"the share of MLP width to prune must be above 0 and below 1, got {fraction}")
    keep = round(width * (1 - fraction) / multiple) * multiple
    return max(multiple, min(width, keep)) if width >= multiple else max(1, round(width * (1 - fraction)))


@torch.no_grad()
def magnitude_prune(model: Any, sparsity: float) -> float:
    """Zero the ``sparsity`` share of smallest-magnitude weights of every linear layer but the LM head
    (a reference: dense kernels gain nothing); the share of those weights now zero."""
    if not 0 < sparsity < 1:
        raise PromptLearningError(f"magnitude sparsity must be above 0 and below 1, got {sparsity}")
    head = model.get_output_embeddings()
    zeros = total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and module is not head:
            weight = module.weight
            k = int(weight.numel() * sparsity)
            if k:
                threshold = weight.abs().flatten().kthvalue(k).values
                weight.masked_fill_(weight.abs() <= threshold, 0.0)
            zeros += int((weight == 0).sum())
            total += weight.numel()
    return zeros / max(total, 1)
