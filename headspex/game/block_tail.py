"""Block L's mask-independent half cached per question; the last block at scored positions only.

Every player sits at layer ≥ L (the game's first computed layer), and every ablation site
of the hook manager is at or after ``hook_z`` (the input of the output projection): head
outputs ``hook_z``, sub-layer outputs, MLP activations. So in block L the input norm, the
q/k/v projections and attention see the same residual stream under every mask, and the
per-head outputs ``z`` (what ``hook_z`` receives) are a function of the question alone:

* **cached attention** (shortcut 2): ``z`` of block L is computed once per question
  (:func:`capture_attention_outputs`); per mask, block L runs with its attention replaced by
  ``hook_out(o(z))`` (:func:`cached_attention`), so ``hook_z`` still fires (the ablation
  applies there) and the output projection, its bias, any post-attention norm, the MLP and
  the residual adds run as usual. The replacement sits at the attention module's boundary,
  so sandwich norms (Gemma) and parallel attention + MLP (GPT-NeoX) stay exact.
* **scored positions only** (shortcut 3): once attention is cached, the rest of a standard
  block is position-wise. When L is the last block nothing reads the other positions, so
  block L runs on the scored positions only: the last one (letter scoring) or the answer
  span (cloze scoring). Resample ablation aligns its sources from the end, so it sees the
  same values on a right-aligned slice.

Shapes: a chunk of ``qc`` sequences of ``pos`` positions; ``z`` is whatever block L's
attention passes to its output projection (``[qc, pos, n_heads * d_head]`` for the bridges
the game knows); rows are mask-major (``n_masks * qc``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .blocks import BlockInputs, QuestionChunk, repeat_rows
from .errors import GameError

try:
    from transformer_lens.model_bridge.generalized_components.block import BlockBridge
    from transformer_lens.model_bridge.generalized_components.linear import LinearBridge
except ImportError:  # pragma: no cover - other TransformerLens versions: no shortcut
    BlockBridge = LinearBridge = None  # type: ignore[assignment,misc]

# Ablation sites at or after hook_z: the cached z is the unablated input of every one of them.
_SITES_AFTER_Z = ("z", "attn_out", "post", "mlp_out")
# TransformerLens switches under which the attention does more than ``hook_out(o(z))``.
_ATTENTION_SWITCHES = ("use_attn_result", "use_split_qkv_input", "use_attn_in", "gated_q_proj")


class _StopAfterCapture(Exception):
    """Raised inside block L once the input of its output projection is captured."""


@dataclass(frozen=True)
class ShortcutPlan:
    """Which shortcuts a game uses, and why the others do not apply (``describe()``)."""

    cached_attention: bool
    scored_positions_only: bool
    reasons: dict[str, str]
    shared_prefix: bool = False  # decided once the game's sequences are encoded

    def describe(self) -> dict[str, Any]:
        """JSON-able: each shortcut, whether it applies, and why (not)."""
        return {
            "cached_attention": {"applies": self.cached_attention, "why": self.reasons["cached_attention"]},
            "scored_positions_only": {"applies": self.scored_positions_only,
                                      "why": self.reasons["scored_positions_only"]},
            "shared_prefix": {"applies": self.shared_prefix, "why": self.reasons["shared_prefix"]},
        }


def plan_shortcuts(model: Any, first_layer: int, site_kinds: set[str], enabled: bool) -> ShortcutPlan:
    """Decide which shortcuts are exact for blocks ``first_layer…`` of ``model``.

    Args:
        model: the bridge the blocks run in.
        first_layer: L, the first block the game computes per row.
        site_kinds: the kinds of the ablator's sites (``"z"``, ``"post"``, ``"attn_out"``, ``"mlp_out"``).
        enabled: the game's ``shortcuts`` option.
    """
    reasons = {"shared_prefix": "decided when the game first encodes its sequences"}
    if not enabled:
        reasons["cached_attention"] = reasons["scored_positions_only"] = "switched off (shortcuts=False)"
        return ShortcutPlan(False, False, reasons)
    why_not = _attention_cache_obstacle(model, first_layer, site_kinds)
    reasons["cached_attention"] = why_not or (
        f"block {first_layer}'s norm, q/k/v and attention do not depend on the mask (every ablation "
        "site is at or after hook_z): z is computed once per question"
    )
    cached = why_not is None
    if not cached:
        reasons["scored_positions_only"] = "needs the cached attention of block L"
        return ShortcutPlan(False, False, reasons)
    last = first_layer == model.cfg.n_layers - 1
    standard_block = BlockBridge is not None and type(model.blocks[first_layer]) is BlockBridge
    if not last:
        reasons["scored_positions_only"] = (
            f"block {first_layer} is not the last: later blocks attend to every position"
        )
    elif not standard_block:
        reasons["scored_positions_only"] = f"block {first_layer} is not a plain BlockBridge (position-wise unknown)"
    else:
        reasons["scored_positions_only"] = (
            "L is the last block: after the cached attention it is position-wise, so it runs at the scored positions"
        )
    return ShortcutPlan(True, last and standard_block, reasons)


def _attention_cache_obstacle(model: Any, layer: int, site_kinds: set[str]) -> str | None:
    """Why block ``layer``'s attention cannot be replaced by ``hook_out(o(z))``, or ``None``."""
    if LinearBridge is None:
        return "this TransformerLens version has no LinearBridge"
    unknown = site_kinds - set(_SITES_AFTER_Z)
    if unknown:
        return f"ablation sites {sorted(unknown)} may sit before hook_z"
    attention = getattr(model.blocks[layer], "attn", None)
    if attention is None or not isinstance(getattr(attention, "o", None), LinearBridge):
        return f"block {layer}'s attention has no output projection bridge 'o'"
    if not hasattr(attention, "hook_out"):
        return f"block {layer}'s attention has no hook_out"
    switches = [name for name in _ATTENTION_SWITCHES if getattr(attention.config, name, False)]
    if switches:
        return f"TransformerLens switches {switches} change what the attention computes after z"
    return None


def _hooked_points_before_output(attention: Any) -> list[str]:
    """Hook points of the attention that the cached path skips and that carry hooks."""
    fired = {id(module) for module in attention.o.modules()} | {id(attention.hook_out)}
    return [name for name, module in attention.named_modules()
            if id(module) not in fired and name.rsplit(".", 1)[-1].startswith("hook_") and module._forward_hooks]


@torch.inference_mode()
def capture_attention_outputs(model: Any, chunk: QuestionChunk, layer: int, kwargs: dict[str, Any]) -> torch.Tensor:
    """``z`` of block ``layer`` for the chunk's sequences, unablated: the input its attention
    passes to the output projection, ``[qc, pos, ...]``. Block ``layer`` runs up to there."""
    captured: dict[str, torch.Tensor] = {}
    attention = model.blocks[layer].attn

    def grab(module: Any, args: tuple[Any, ...]) -> None:
        captured["z"] = args[0]
        raise _StopAfterCapture

    handle = attention.o.register_forward_pre_hook(grab)
    try:
        model.blocks[layer](chunk.block_args[0], *chunk.block_args[1:], **kwargs)
    except _StopAfterCapture:
        pass
    finally:
        handle.remove()
    if "z" not in captured:
        raise GameError(f"Block {layer}'s output projection was never called; cannot cache its attention.")
    return captured["z"].detach().clone()


@contextmanager
def cached_attention(attention: Any, z: torch.Tensor) -> Iterator[None]:
    """Block L's attention returns ``hook_out(o(z))`` (hook_z fires inside ``o``) while open."""
    hooked = _hooked_points_before_output(attention)
    if hooked:
        raise GameError(f"Hooks on {hooked} would be skipped by the cached attention; build the game "
                        "with shortcuts=False.")

    def forward(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        return attention.hook_out(attention.o(z)), None

    saved = attention.__dict__.get("forward")
    attention.__dict__["forward"] = forward
    try:
        yield
    finally:
        if saved is None:
            attention.__dict__.pop("forward", None)
        else:
            attention.__dict__["forward"] = saved


def check_shortcut_values(fast: torch.Tensor, general: torch.Tensor, low_precision: bool) -> None:
    """Raise a :class:`GameError` unless the shortcut path's values ``fast`` equal the general
    path's ``general`` (same shape, any float) within rounding.

    Both run the same kernels on the same inputs; only batch shapes differ (fp32: ~1e-6 on
    SmolLM2). bf16: 2 bf16 steps at the logits' size, as for the fused-attention check.
    """
    fast, general = fast.float().cpu(), general.float().cpu()  # one path may return on the model's device
    scale = max(1.0, float(general.abs().max()))
    tolerance = max(0.5, 0.05 * scale) if low_precision else 1e-4 * scale
    difference = float((fast - general).abs().max())
    if not difference <= tolerance:
        raise GameError(
            f"The game's shortcuts change values by {difference:.3g} (> {tolerance:.3g}) on this model; "
            "build the game with shortcuts=False and report the model."
        )


def tail_first_sequence(z: torch.Tensor, chunk: QuestionChunk) -> torch.Tensor:
    """The cached ``z`` cut down like :meth:`QuestionChunk.first_sequence`."""
    return z[:1]  # [qc, pos, ...] -> its first sequence, as QuestionChunk.first_sequence()


def run_blocks_cached(
    model: Any, chunk: QuestionChunk, z: torch.Tensor, n_masks: int, first_layer: int, keep_last: int | None
) -> torch.Tensor:
    """Blocks ``first_layer…`` with block ``first_layer``'s attention taken from the cached ``z``.

    Args:
        model: the bridge (ablation hooks registered, mask rows set by the caller).
        chunk: the chunk's captured block inputs; ``z``: :func:`capture_attention_outputs` of it.
        n_masks: masks per call (rows are mask-major, ``n_masks * qc``).
        first_layer: L.
        keep_last: run block L (the last block) at the last ``keep_last`` positions only;
            ``None`` = every position.

    Returns:
        The final hidden state before the final norm, ``[n_masks * qc, pos or keep_last, d_model]``.
    """
    hidden = chunk.hidden
    if keep_last is not None:  # slice before repeating; contiguous for kernels that view()
        hidden, z = hidden[:, -keep_last:].contiguous(), z[:, -keep_last:].contiguous()
    hidden = repeat_rows(hidden, chunk.size, n_masks)
    z_rows = repeat_rows(z, chunk.size, n_masks)
    repeated: dict[int, BlockInputs] = {}  # blocks with equal inputs share one repeat
    for layer, inputs in zip(range(first_layer, model.cfg.n_layers), chunk.layer_inputs):
        if id(inputs) not in repeated:
            repeated[id(inputs)] = repeat_rows(inputs, chunk.size, n_masks)
        rest, kwargs = repeated[id(inputs)]  # each block its own inputs (layer types differ)
        if layer == first_layer:
            with cached_attention(model.blocks[layer].attn, z_rows):
                out = model.blocks[layer](hidden, *rest, **kwargs)
        else:
            out = model.blocks[layer](hidden, *rest, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


__all__ = [
    "ShortcutPlan", "cached_attention", "capture_attention_outputs", "check_shortcut_values", "plan_shortcuts",
    "run_blocks_cached", "tail_first_sequence",
]
