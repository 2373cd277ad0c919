"""Run a bridge's attention through PyTorch's fused kernel where nothing needs the pattern.

TransformerLens's bridge rebuilds attention step by step (scores, softmax, pattern, z) so that
``hook_attn_scores`` and ``hook_pattern`` can fire, and it switches the wrapped HF model to
eager attention. An ablation game hooks none of those: it edits ``hook_z`` (the input of the
output projection), whole sub-layer outputs and MLP activations. Inside a game the wrapped
HF attention module can therefore run with ``sdpa``, which on CPU is a tiled flash kernel
that never materialises the ``[batch, heads, pos, pos]`` score tensor.

The HF module's projections are the bridge's ``LinearBridge`` s, so ``hook_q/k/v`` and
``hook_z`` still fire on the same tensors; the attention bridge's own ``hook_in`` and
``hook_out`` are fired around the call. Hook points that the fused path skips (scores,
pattern, rotary, split inputs) must carry no hooks, or the layer keeps the bridge's path.

Measured on SmolLM2-135M (block 25, 387 positions, 2 rows, fp32, 2 CPU cores): the fused
block runs at 0.82–0.84 of the matmul FLOP bound against 0.62–0.79 for the bridge's block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

try:  # the class whose forward this module knows how to replace
    from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (
        PositionEmbeddingsAttentionBridge,
    )
except ImportError:  # pragma: no cover - other TransformerLens versions: keep the bridge's path
    PositionEmbeddingsAttentionBridge = None  # type: ignore[assignment,misc]

# Hook points that fire on the fused path too (the projections fire theirs inside HF's forward).
_FIRED_HOOKS = ("hook_in", "hook_out")
# TransformerLens config switches that change what the bridge's attention computes.
_UNSUPPORTED_SWITCHES = ("use_split_qkv_input", "use_attn_in", "use_attn_result", "gated_q_proj")


def _hf_attention(attention_bridge: Any) -> Any | None:
    return getattr(attention_bridge, "original_component", None)


def fusable(attention_bridge: Any) -> bool:
    """Whether this attention bridge computes what its wrapped HF module computes with SDPA.

    Static checks only (class, config switches, SDPA support); hooks are checked when the
    fused path is switched on.
    """
    if PositionEmbeddingsAttentionBridge is None or type(attention_bridge) is not PositionEmbeddingsAttentionBridge:
        return False  # subclasses add steps (sub-norms, gates) between attention and o_proj
    hf_attention = _hf_attention(attention_bridge)
    hf_config = getattr(hf_attention, "config", None)
    if hf_attention is None or not hasattr(hf_config, "_attn_implementation"):
        return False
    if any(getattr(attention_bridge.config, name, False) for name in _UNSUPPORTED_SWITCHES):
        return False
    if getattr(hf_attention, "sinks", None) is not None or getattr(hf_attention, "key_multiplier", None) is not None:
        return False
    return all(hasattr(hf_attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj"))


def _skipped_hook_points(attention_bridge: Any) -> Iterator[tuple[str, Any]]:
    """Hook points owned by the attention bridge itself that the fused path does not fire."""
    for name, child in attention_bridge.named_children():
        if name.startswith("hook_") and name not in _FIRED_HOOKS:
            yield name, child


def fusable_layers(model: Any, layers: Iterable[int]) -> list[int]:
    """The layers among ``layers`` whose attention can run fused (static checks)."""
    return [layer for layer in layers if fusable(model.blocks[layer].attn)]


def _fused_forward(attention_bridge: Any) -> Any:
    hf_attention = _hf_attention(attention_bridge)

    def forward(*args: Any, **kwargs: Any) -> tuple[Any, None]:
        hidden_states = kwargs.pop("hidden_states") if "hidden_states" in kwargs else args[0]
        hidden_states = attention_bridge.hook_in(hidden_states)
        output, _ = hf_attention(hidden_states, **kwargs)
        return attention_bridge.hook_out(output), None

    return forward


@contextmanager
def use_fused_attention(model: Any, layers: Iterable[int]) -> Iterator[list[int]]:
    """Run the attention of ``layers`` through SDPA while the context is open.

    Layers that are not :func:`fusable`, or whose skipped hook points (pattern, scores,
    rotary) carry hooks, keep the bridge's path. Yields the layers that run fused.
    Restores the bridge's forward and the HF attention implementation on exit.
    """
    switched: list[Any] = []
    saved_implementations: dict[int, tuple[Any, str]] = {}
    fused: list[int] = []
    try:
        for layer in fusable_layers(model, layers):
            attention_bridge = model.blocks[layer].attn
            if any(len(point._forward_hooks) for _, point in _skipped_hook_points(attention_bridge)):
                continue
            hf_config = _hf_attention(attention_bridge).config
            saved_implementations.setdefault(id(hf_config), (hf_config, hf_config._attn_implementation))
            hf_config._attn_implementation = "sdpa"
            # An instance attribute shadows the class's forward; nn.Module's __setattr__ is
            # bypassed because bridge components forward attribute writes to the HF module.
            attention_bridge.__dict__["forward"] = _fused_forward(attention_bridge)
            switched.append(attention_bridge)
            fused.append(layer)
        yield fused
    finally:
        for attention_bridge in switched:
            attention_bridge.__dict__.pop("forward", None)
        for hf_config, implementation in saved_implementations.values():
            hf_config._attn_implementation = implementation


__all__ = ["fusable", "fusable_layers", "use_fused_attention"]
