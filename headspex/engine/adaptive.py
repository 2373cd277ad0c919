"""Adaptive second round: spend part of the budget where the pruning question is.

A first fit (on ``1 - fraction`` of the budget) flags what matters near the full model: the
players whose removal costs most (large removal-basis terms) and the removal sets a pruner
would pick (the greedy path that ablates, one player at a time, the player whose removal the
first fit says costs least). The second round draws near-full masks around both:

* *flagged*: a random pair or triple of flagged players ablated, plus the usual near-full
  background of other ablations, as many as the design rule gives near-full masks
  (:mod:`headspex.engine.design`), so interactions among the heads that matter are observed;
* *path*: every prefix of the greedy removal path, and one-player swaps of it (so the
  surrogate's chosen removal sets and their neighbours are observed directly).

The estimator is then refitted on all masks (first and second round).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .design import near_full_keep_probability
from .interactions import Interactions
from .sampling import sample_masks
from .store import mask_keys
from ..errors import EngineError


def removal_importance(interactions: Interactions) -> np.ndarray:
    """Per player, the summed |coefficient| of the removal terms containing it (float64[n])."""
    removal = interactions.to_removal()
    score = np.zeros(interactions.n_players)
    for subset, coef in zip(removal.subsets, removal.coefficients):
        for i in subset:
            score[i] += abs(coef) / len(subset)
    return score


def greedy_removal_path(interactions: Interactions, max_removed: int) -> list[tuple[int, ...]]:
    """Nested removal sets of size 1..max_removed chosen greedily to keep the fitted value highest.

    Returns:
        list of sorted player tuples, the k-th of size k.
    """
    n = interactions.n_players
    mask = np.ones(n, dtype=bool)
    path: list[tuple[int, ...]] = []
    for _ in range(min(max_removed, n - 1)):
        candidates = np.flatnonzero(mask)
        trial = np.repeat(mask[None, :], len(candidates), axis=0)
        trial[np.arange(len(candidates)), candidates] = False
        best = int(candidates[int(np.argmax(interactions(trial)))])
        mask[best] = False
        path.append(tuple(int(i) for i in np.flatnonzero(~mask)))
    return path


def second_round_masks(
    first: Interactions,
    n_masks: int,
    rng: np.random.Generator,
    exclude: np.ndarray,
    near_full_keep: float | None = None,
    n_flagged: int | None = None,
    max_removed: int | None = None,
) -> np.ndarray:
    """Masks for the second round (bool[m', n], m' <= n_masks, none in ``exclude``).

    Args:
        first: the first round's fit.
        exclude: masks already evaluated.
        near_full_keep: keep probability of the background ablations; default: the design rule's
            near-full keep for this many background masks
            (:func:`~headspex.engine.design.near_full_keep_probability`), so the background ablates
            as many players as the first round's near-full masks do at that size (at most 10 %),
            not a fixed 10 % of n.
        n_flagged: how many players to flag (default ``max(4, sqrt(n))``).
        max_removed: length of the greedy path (default ``max(2, 10 % of n)``).
    """
    n = first.n_players
    if n_masks <= 0:
        return np.zeros((0, n), dtype=bool)
    n_flagged = n_flagged or max(4, int(np.ceil(np.sqrt(n))))
    flagged = np.argsort(-removal_importance(first), kind="stable")[: min(n_flagged, n)]
    max_removed = max_removed or max(2, int(np.ceil(0.1 * n)))
    rows: list[np.ndarray] = []
    for removed in greedy_removal_path(first, max_removed):
        base = np.ones(n, dtype=bool)
        base[list(removed)] = False
        rows.append(base)
        swap_in = rng.choice(n, size=min(2, n), replace=False)
        for player in swap_in:  # neighbours: one more or one fewer player ablated
            neighbour = base.copy()
            neighbour[player] = ~neighbour[player]
            rows.append(neighbour)
    n_path = min(len(rows), n_masks // 2)
    rows = rows[:n_path]
    n_background = n_masks - len(rows)
    if near_full_keep is None:
        near_full_keep = near_full_keep_probability(n, n_background)
    background = sample_masks(n, n_background, rng, keep_probability=near_full_keep, distinct=False)
    for row in background:
        size = int(rng.integers(2, 4)) if len(flagged) >= 3 else len(flagged)
        row[rng.choice(flagged, size=min(size, len(flagged)), replace=False)] = False
        rows.append(row)
    candidates = np.asarray(rows, dtype=bool).reshape(-1, n)
    seen = set(mask_keys(exclude)) if len(exclude) else set()
    keep: list[int] = []
    for idx, key in enumerate(mask_keys(candidates)):
        if key not in seen:
            seen.add(key)
            keep.append(idx)
    return candidates[keep][:n_masks]


def fit_adaptive(
    estimator: Any,
    value_fn: Callable[[np.ndarray], np.ndarray],
    n_players: int,
    budget: int,
    fraction: float = 0.25,
    seed: int | None = 0,
    **second_round: Any,
) -> Any:
    """Two-round fit: ``estimator`` on ``(1 - fraction) * budget`` masks, then on all of them.

    Args:
        estimator: an engine estimator (``fit_samples(masks, values)`` and ``design``-based
            ``fit``); its own sampling draws the first round.
        value_fn: ``bool[m, n] -> float[m]``.
        fraction: share of the budget spent in the second round.
        **second_round: passed to :func:`second_round_masks`.

    Returns:
        The estimator's result on all ``<= budget`` fit masks; ``diagnostics["adaptive"]`` says
        how many masks each round used.
    """
    if not 0.0 <= fraction < 1.0:
        raise EngineError(f"fraction must be in [0, 1), got {fraction}")
    first_budget = int(round((1.0 - fraction) * budget))
    first = estimator.fit(value_fn, first_budget, n_players=n_players, n_test=0, progress=False)
    rng = np.random.default_rng(None if seed is None else [int(seed), 0xADA])
    extra = second_round_masks(first.interactions, budget - len(first.masks), rng, first.masks, **second_round)
    extra_values = np.asarray(value_fn(extra.copy()), dtype=np.float64) if len(extra) else np.zeros(0)
    masks = np.concatenate([first.masks, extra])
    values = np.concatenate([first.values, extra_values])
    result = estimator.fit_samples(masks, values)
    result.diagnostics["adaptive"] = {"first_round": int(len(first.masks)), "second_round": int(len(extra))}
    return result
