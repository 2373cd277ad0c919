"""The AblationGame's self-check: its block runner against the bridge's own full forward.

A game computes values by re-running blocks ``L…`` from captured inputs, through fused
attention where allowed, and scoring only the positions and candidates it needs. Each of
those shortcuts can be wrong for an architecture it was not checked on (one layer type's
rotary embeddings reused for another's, a kernel without soft-capping, a missed scaling).
So before its first evaluation a game checks itself once: the unablated mask and one
ablated mask, on the longest and on the shortest sequence of its first micro-batch, must
give the values that the bridge's ordinary forward gives with the same ablation hooks
(:func:`headspex.ablation.ablate`) on the unpadded tokens. Any difference beyond float
rounding raises :class:`~headspex.game.GameError` naming the model and the difference: a
wrong value is never returned, and no warning stands in for an error.

Cost: four forwards of single sequences, once per game (the unembedding only at the
positions that are read).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..ablation import ablate, encode_prompts
from .block_tail import check_shortcut_values, tail_first_sequence
from .blocks import QuestionChunk
from .errors import GameError
from .fused_attention import use_fused_attention
from .prompts import unit_inputs

if TYPE_CHECKING:  # pragma: no cover
    from .core import AblationGame


def check_masks(n_players: int) -> np.ndarray:
    """The masks a game checks: everything kept, and every other player ablated (``bool[2, n]``)."""
    masks = np.ones((2, n_players), dtype=bool)
    masks[1, ::2] = False
    return masks


def tolerance(reference: torch.Tensor, low_precision: bool) -> float:
    """Largest difference that float rounding explains, for values of ``reference``'s size.

    fp32: the two paths sum in another order and over another padding width (measured
    ≤ 2e-5 on SmolLM2, logits ~20). bf16: 2 bf16 steps at the logits' size (measured 0.25 at
    ~18). A miswired block moves values by whole units.
    """
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    return max(0.5, 0.05 * scale) if low_precision else 1e-3 * max(1.0, scale)


@torch.inference_mode()
def verify_game(game: "AblationGame", chunk: QuestionChunk) -> None:
    """Raise :class:`GameError` unless the game's rows equal the bridge's full forward.

    Checks :func:`check_masks` on the first and the last sequence of ``chunk`` (the longest
    and the most padded one), with the game's mode, hooks, attention kernel and dtype.
    """
    positions = sorted({0, chunk.size - 1})
    sub = chunk.select(torch.tensor(positions))
    masks = check_masks(game.n_players)
    with game.run_model.hooks(fwd_hooks=game.ablator.fwd_hooks()), use_fused_attention(game.run_model, game.fused_layers):
        got = game._run_rows(sub, masks).float().cpu()  # [2 * len(rows), c or 1], mask-major
    sequences = unit_inputs(game._all_prompts, game._unit_question, game._unit_targets)
    expected = torch.stack([
        _reference_row(game, mask, int(unit), _unit_ids(game, sequences, int(unit)))
        for mask in masks for unit in sub.unit_index.tolist()
    ]).float()
    difference = float((got - expected).abs().max())
    allowed = tolerance(expected, game.low_precision)
    if not difference <= allowed:
        model_name = getattr(game.model, "headspex_source", None) or getattr(game.model.cfg, "model_name", "this model")
        worst = int((got - expected).abs().max(dim=1).values.argmax())
        kind = "unablated" if worst < len(positions) else "ablated (players 0, 2, 4… removed)"
        raise GameError(
            f"Self-check failed for {model_name}: the game's {'cloze scores' if game.cloze else 'candidate logits'} "
            f"differ from the bridge's own forward with the same hooks by {difference:.3g} (tolerance "
            f"{allowed:.3g}; {kind} mask, first layer run {game.first_layer}, fused attention layers "
            f"{list(game.fused_layers)}). Re-running this model's blocks from captured inputs is not exact; "
            "the game refuses rather than return wrong values. Please report the model's architecture."
        )


def _reference_row(game: "AblationGame", mask: np.ndarray, unit: int, ids: torch.Tensor) -> torch.Tensor:
    """What the game should return for one (mask, sequence ``ids long[1, pos]``), from a plain hooked forward."""
    sources = None
    if game.mode == "resample":
        one = type("OneUnit", (), {"unit_index": torch.tensor([unit])})()
        sources = game._resample_sources(mask[None], one)
    model = game.run_model
    span = len(game._unit_targets[unit]) if game.cloze and game._unit_targets is not None else 1
    handle = model.unembed.register_forward_pre_hook(_last_positions(span), with_kwargs=True)
    try:
        with ablate(model, players=game.players, mask=mask[None], mode=game.mode,
                    reference=game.reference_activations, resample_sources=sources):
            logits = model(ids.to(next(model.parameters()).device))[0].float().cpu()  # [span, vocab], soft-capped
    finally:
        handle.remove()
    if not game.cloze:
        question = int(game._unit_question[unit])
        return logits[-1, game.candidate_ids[question]]
    assert game._unit_targets is not None
    target = torch.tensor(game._unit_targets[unit])
    log_probs = torch.log_softmax(logits[-len(target):], dim=-1)
    return log_probs.gather(-1, target[:, None]).mean().reshape(1)


def _unit_ids(game: "AblationGame", inputs: list[str] | dict[str, torch.Tensor], unit: int) -> torch.Tensor:
    """Unpadded token ids ``long[1, pos]`` of one sequence the game runs (``inputs``: all of them)."""
    if isinstance(inputs, dict):
        row = inputs["input_ids"][unit][inputs["attention_mask"][unit].bool()]
        return row[None]
    ids, _ = encode_prompts(game.model, [inputs[unit]])
    return ids.cpu()


def _last_positions(span: int) -> Any:
    """A pre-hook on the unembedding that keeps the last ``span`` positions (what HF's
    ``logits_to_keep`` does): the full vocabulary is only multiplied where it is read."""

    def pre_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if args:
            return (args[0][:, -span:], *args[1:]), kwargs
        kwargs = dict(kwargs)
        key = next(iter(kwargs))
        kwargs[key] = kwargs[key][:, -span:]
        return args, kwargs

    return pre_hook


@torch.inference_mode()
def check_fused_attention(game: "AblationGame", chunk: QuestionChunk) -> None:
    """Compare fused and bridge attention on one question, unablated; keep the bridge's (with a
    warning) if they differ: ``game.fused_layers`` becomes empty."""
    game._fused_checked = True
    chunk = chunk.first_sequence()
    keep_all = np.ones((1, game.n_players), dtype=bool)
    bridge = game._run_rows(chunk, keep_all).float()
    try:
        with use_fused_attention(game.run_model, game.fused_layers):
            fused = game._run_rows(chunk, keep_all).float()
    except torch.OutOfMemoryError:
        raise  # out of memory says nothing about the kernel; the caller's budget is the problem
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
        # A kernel that cannot express this model's attention refuses loudly; keep the bridge's.
        warnings.warn(f"Fused attention cannot run this model ({type(err).__name__}: "
                      f"{str(err).splitlines()[0][:200]}); the game uses the bridge's attention.", stacklevel=3)
        game.fused_layers = []
        return
    # The kernels sum in another order. Measured on SmolLM2 (logits ~18): fp32 agrees to 1e-5;
    # bf16 to 0.25, i.e. 2 bf16 steps at that size, hence a tolerance relative to the logits.
    # Miswiring (a missed hook, a wrong mask) moves logits by whole units.
    scale = float(bridge.abs().max())
    tolerance = max(0.5, 0.05 * scale) if game.low_precision else 1e-2
    difference = float((fused - bridge).abs().max())
    if not difference <= tolerance:
        warnings.warn(
            f"Fused attention changes candidate logits by {difference:.3g} (> {tolerance}) on this "
            "model; the game uses the bridge's attention instead (slower).",
            stacklevel=3,
        )
        game.fused_layers = []


def check_shortcuts(game: "AblationGame", chunk: QuestionChunk, masks: np.ndarray) -> None:
    """Shortcut path against the general path on one sequence, under ``masks[0]`` and its
    complement; a :class:`GameError` if they differ (a wrong value is never returned)."""
    assert game._attention_z is not None
    game._shortcut_checked = True
    masks = np.concatenate([masks[:1], ~masks[:1]])
    one = chunk.first_sequence()
    fast = game._run_rows(one, masks, tail_first_sequence(game._attention_z[0], chunk))
    check_shortcut_values(fast, game._run_rows(one, masks), low_precision=game.low_precision)


__all__ = ["check_fused_attention", "check_masks", "check_shortcuts", "verify_game"]
