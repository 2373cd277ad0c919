"""The game's shared-prefix path: when it applies, how it is built and checked, how it runs.

The mechanics (prefix keys and values, cutting block inputs, the runner) are in
:mod:`headspex.game.shared_prefix`; this module decides for one :class:`AblationGame`:

* :func:`plan_for_game` – whether the path applies (static reasons first: switched off,
  resample ablation, the last block at scored positions only, a layer without fused
  attention; then whether the sequences share a prefix worth running once per mask);
* :func:`build_for_game` – the groups' captured inputs, then a check against the game's
  general path on two sequences under two masks (a difference raises :class:`GameError`);
* :func:`evaluate_groups` – candidate logits (or cloze scores) of a block of masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..types import AblationMode
from .block_tail import capture_attention_outputs, check_shortcut_values, run_blocks_cached
from .blocks import QuestionChunk
from .errors import GameError
from .fused_attention import use_fused_attention
from .self_check import check_masks
from .settings import _model_dtype
from .shared_prefix import (PrefixGroup, PrefixGroupPlan, UnsupportedBlockInputs, build_prefix_group,
                            plan_prefix_groups, right_aligned_window, run_group_suffixes)

if TYPE_CHECKING:  # pragma: no cover
    from .core import AblationGame


def static_obstacle(game: "AblationGame", enabled: bool) -> str | None:
    """Why the shared-prefix path cannot apply to ``game`` whatever its prompts, or ``None``."""
    if not enabled:
        return "switched off (shortcuts=False)"
    if game.mode == AblationMode.RESAMPLE:
        return ("resample ablation draws a source prompt per question, aligned from the end, so a prefix's "
                "ablated activations differ between the questions that share it")
    if game.shortcut_plan.scored_positions_only:
        return "L is the last block: it already runs at the scored positions only"
    missing = [layer for layer in attending_layers(game) if layer not in game.fused_layers]
    if missing:
        return f"layers {missing} do not run the fused HF attention that takes the prefix's keys and values"
    return None


def attending_layers(game: "AblationGame") -> list[int]:
    """Layers whose attention must see the prefix's keys and values (block L's is cached)."""
    start = game.first_layer + 1 if game.shortcut_plan.cached_attention else game.first_layer
    return list(range(start, game.model.cfg.n_layers))


def plan_for_game(
    game: "AblationGame", ids: torch.Tensor, attention: torch.Tensor, enabled: bool
) -> tuple[list[PrefixGroupPlan] | None, list[list[int]], str]:
    """The prefix groups for the game's sequences (``ids``/``attention`` ``long[units, width]``,
    left-padded), their real tokens, and the sentence ``describe()`` shows."""
    tokens = [row[mask.bool()].tolist() for row, mask in zip(ids.cpu(), attention.cpu())]
    obstacle = static_obstacle(game, enabled)
    if obstacle is not None:
        return None, tokens, obstacle
    scored = ([len(t) for t in game._unit_targets] if game._unit_targets is not None else [1] * len(tokens))
    groups, why = plan_prefix_groups(tokens, scored, game._unit_question)
    return groups, tokens, why


def check_units(plans: list[PrefixGroupPlan], tokens: list[list[int]]) -> list[int]:
    """The sequences the path is checked on: the first group's longest and shortest."""
    units = sorted(plans[0].units.tolist(), key=lambda u: -len(tokens[u]))
    return sorted({units[0], units[-1]}, key=lambda u: -len(tokens[u]))


def build_for_game(game: "AblationGame", plans: list[PrefixGroupPlan], tokens: list[list[int]],
                   check_chunk: QuestionChunk) -> list[PrefixGroup] | str:
    """Capture every group (the general path's ``check_chunk`` holds :func:`check_units`) and
    check the path against the general one; a reason string when the inputs cannot be cut."""
    model, layer = game.run_model, game.first_layer
    covered = np.sort(np.concatenate([plan.units for plan in plans]))
    if not np.array_equal(covered, np.arange(len(game._unit_question))):
        raise GameError("The shared-prefix groups do not cover every sequence exactly once; build the game "
                        "with shortcuts=False and report this.")

    def suffix_rows(prefix: int, suffix: int) -> int:
        return max(1, game.rows_per_batch(_suffix_positions(game, prefix, suffix)))

    def capture_z(chunk: QuestionChunk) -> torch.Tensor:
        with use_fused_attention(model, game.fused_layers):
            return capture_attention_outputs(model, chunk, layer, chunk.block_kwargs)

    dtype = _model_dtype(model)
    z = capture_z if game.shortcut_plan.cached_attention else None
    try:
        groups = [build_prefix_group(game.model, tokens, plan, layer, dtype, suffix_rows, z) for plan in plans]
        probe_plan = PrefixGroupPlan(check_chunk.unit_index.numpy(), plans[0].prefix_length)
        probe = build_prefix_group(game.model, tokens, probe_plan, layer, dtype, suffix_rows, z)
    except UnsupportedBlockInputs as err:
        return f"not for this model: {err}"
    _check_against_general(game, probe, check_chunk)
    return groups


@torch.inference_mode()
def _check_against_general(game: "AblationGame", probe: PrefixGroup, check_chunk: QuestionChunk) -> None:
    """The path's values on ``probe`` (the check units) under :func:`check_masks` against the
    general path's on ``check_chunk``; raises :class:`GameError` if they differ."""
    masks = check_masks(game.n_players)
    with game.run_model.hooks(fwd_hooks=game.ablator.fwd_hooks()), use_fused_attention(game.run_model, game.fused_layers):
        general = game._run_rows(check_chunk, masks)  # [2 * qc, c or 1] mask-major
        fast = evaluate_groups(game, [probe], masks)  # [2, units, c or 1]
    order = check_chunk.unit_index.numpy()
    fast_rows = torch.from_numpy(fast[:, order].reshape(len(masks) * len(order), -1))
    check_shortcut_values(fast_rows, general, low_precision=game.low_precision)


def _suffix_positions(game: "AblationGame", prefix: int, suffix: int) -> int:
    """A suffix row's activation memory in positions of a plain row: its own ``suffix``
    positions, plus keys and values over ``prefix + suffix`` (repeated to every head by SDPA)."""
    cfg = game.model.cfg
    kv_share = 2 * cfg.d_model / (10 * cfg.d_model + 3 * cfg.d_mlp)
    return int(suffix + kv_share * (prefix + suffix))


def masks_per_batch(game: "AblationGame", group: PrefixGroup) -> int:
    """Masks per micro-batch for ``group``: its prefix rows and every suffix chunk's rows fit."""
    prefix = game.rows_per_batch(group.prefix_length)
    suffix = min(max(1, game.rows_per_batch(_suffix_positions(game, group.prefix_length, s.chunk.positions))
                     // s.chunk.size) for s in group.suffixes)
    return max(1, min(prefix, suffix))


def evaluate_groups(game: "AblationGame", groups: list[PrefixGroup], masks: np.ndarray,
                    progress: Any = None) -> np.ndarray:
    """Per-sequence candidate logits (cloze: scores) of ``masks`` through the prefix path.

    Returns ``float32[m, units, c or 1]``; units outside ``groups`` stay 0.
    Hooks and fused attention must be on (the caller's context).
    """
    model, layer = game.run_model, game.first_layer
    width = 1 if game.cloze else game.candidate_ids.shape[1]
    results = np.zeros((len(masks), len(game._unit_question), width), dtype=np.float32)
    layers = attending_layers(game)
    for group in groups:
        per_batch = masks_per_batch(game, group)
        for start in range(0, len(masks), per_batch):
            block = masks[start : start + per_batch]

            def set_rows(rows_per_mask: int, block: np.ndarray = block) -> None:
                game.ablator.set_mask(torch.from_numpy(np.repeat(block, rows_per_mask, axis=0)))

            def run_cached(chunk: QuestionChunk, z: torch.Tensor, n_masks: int) -> torch.Tensor:
                return run_blocks_cached(model, chunk, z, n_masks, layer, None)

            hidden = run_group_suffixes(model, group, len(block), layer, layers, set_rows, run_cached)
            for suffix, rows_hidden in zip(group.suffixes, hidden):
                rows_unit = suffix.chunk.unit_index.repeat(len(block))
                span = int(game._unit_target_lengths[rows_unit].max()) if game.cloze else 1
                window = right_aligned_window(rows_hidden, suffix.lengths.repeat(len(block)), span)
                scores = game._score_rows(window, rows_unit).float().cpu().numpy()
                results[start : start + len(block)][:, suffix.chunk.unit_index.numpy()] = \
                    scores.reshape(len(block), suffix.chunk.size, -1)
                if progress is not None:
                    progress.update(len(block) * suffix.chunk.size)
    return results


__all__ = ["attending_layers", "build_for_game", "check_units", "evaluate_groups", "masks_per_batch",
           "plan_for_game", "static_obstacle"]
