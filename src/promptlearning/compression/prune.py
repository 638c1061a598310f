"""Structured pruning of decoder models into smaller dense ones, measured on calibration text.

* depth: a block's *influence* is ``1 - cos(input, output)`` of its hidden states, averaged over
  the calibration tokens (ShortGPT's "block influence", Men et al. 2024): blocks that barely turn
  the residual stream are dropped, and the model keeps fewer layers (``num_hidden_layers``);
* width: each MLP's intermediate channels ranked by their mean absolute activation (the input of
  the down projection) on the calibration tokens; the weakest are cut from the gate/up rows and the
  down columns (``intermediate_size``), so every layer keeps the same, smaller width;
* heads: each attention layer's query heads ranked by the mean norm of their contribution to the
  attention output (the output projection applied to that head alone); the weakest are cut from the
  query rows and output columns. With grouped-query attention every key/value group keeps the same
  number of query heads (the groups stay whole); without it (one query per key/value head) whole
  heads go, keys and values included (``num_attention_heads``, ``num_key_value_heads``);
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


def _attention(layer: nn.Module) -> nn.Module:
    attention = getattr(layer, "self_attn", None)
    if attention is None or not all(hasattr(attention, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
        raise PromptLearningError("head pruning supports attention with q_proj, k_proj, v_proj and o_proj only")
    return attention


def _head_shape(attention: nn.Module) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dimension) of an attention module, read from its weights."""
    head_dim = int(attention.head_dim)
    return attention.q_proj.out_features // head_dim, attention.k_proj.out_features // head_dim, head_dim


@torch.inference_mode()
def attention_head_importance(model: Any, batches: Iterable[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Per layer, the mean L2 norm of every query head's contribution to the attention output."""
    layers = decoder_layers(model)
    attentions = [_attention(layer) for layer in layers]
    sums = [torch.zeros(_head_shape(a)[0], dtype=torch.float64) for a in attentions]
    mask_now: list[torch.Tensor] = []

    def capture(index: int, attention: nn.Module) -> Any:
        heads, _, head_dim = _head_shape(attention)
        output_weight = attention.o_proj.weight.reshape(attention.o_proj.out_features, heads, head_dim)

        def hook(_module: nn.Module, args: tuple) -> None:
            per_head = args[0].reshape(*args[0].shape[:-1], heads, head_dim)
            contribution = torch.einsum("bthd,ohd->btho", per_head.float(), output_weight.float()).norm(dim=-1)
            sums[index] += (contribution * mask_now[0].unsqueeze(-1)).sum((0, 1)).double().cpu()

        return hook

    handles = [a.o_proj.register_forward_pre_hook(capture(i, a)) for i, a in enumerate(attentions)]
    count = _run_hooked(model, batches, handles, mask_now, "the attention heads")
    return [s / count for s in sums]


def heads_to_keep(heads: int, kv_heads: int, fraction: float) -> int:
    """Query heads kept per key/value group (grouped-query attention) or in all (one query per key/value
    head) when ``fraction`` of the query heads is cut."""
    if not 0 < fraction < 1:
        raise PromptLearningError(f"the share of attention heads to prune must be above 0 and below 1, got {fraction}")
    unit = heads // kv_heads if heads > kv_heads else heads
    keep = round(unit * (1 - fraction))
    if keep < 1:
        where = f"each key/value group's {unit} query heads" if heads > kv_heads else f"the {heads} attention heads"
        raise PromptLearningError(f"pruning {fraction:.0%} of {where} would leave no head: cut less (at most "
                                  f"{(unit - 1) / unit:.0%} here)")  # fmt: skip
    return keep


def _head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    return (heads.unsqueeze(1) * head_dim + torch.arange(head_dim)).flatten()


def prune_attention_heads(model: Any, importance: Sequence[torch.Tensor], keep: int) -> None:
    """Keep the ``keep`` most important query heads of every key/value group (all heads' when there is
    one query per key/value head), in place; the config follows."""
    layers = decoder_layers(model)
    heads, kv_heads, head_dim = _head_shape(_attention(layers[0]))
    grouped = heads > kv_heads
    for layer, scores in zip(layers, importance, strict=True):
        attention = _attention(layer)
        if grouped:
            per_group = scores.reshape(kv_heads, heads // kv_heads)
            best = torch.sort(torch.topk(per_group, keep, dim=1).indices, dim=1).values
            kept = (best + torch.arange(kv_heads).unsqueeze(1) * (heads // kv_heads)).flatten()
        else:
            kept = torch.sort(torch.topk(scores, keep).indices).values
        rows = _head_rows(kept, head_dim).to(attention.q_proj.weight.device)
        attention.q_proj = _keep_rows(attention.q_proj, rows)
        attention.o_proj = _keep_columns(attention.o_proj, rows)
        if grouped:
            attention.num_key_value_groups = keep
        else:
            attention.k_proj = _keep_rows(attention.k_proj, rows)
            attention.v_proj = _keep_rows(attention.v_proj, rows)
    config = _text_config(model)
    config.head_dim = head_dim  # explicit: hidden_size // num_attention_heads no longer holds
    config.num_attention_heads = kv_heads * keep if grouped else keep
    config.num_key_value_heads = kv_heads if grouped else keep


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
