"""Single-player values and their uncertainty from Fourier coefficients.

Linear maps from Fourier coefficients to Banzhaf and Shapley values, bootstrap refits of the
coefficients on a fixed support, and the percentile interval of bootstrap replicates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .candidates import least_squares
from .interactions import Subset, basis_matrix
from ..errors import EngineError


def banzhaf_matrix(subsets: Sequence[Subset], n_players: int) -> np.ndarray:
    """float[n, T] mapping Fourier coefficients to Banzhaf values (``B_i = 2 F({i})``)."""
    out = np.zeros((n_players, len(subsets)))
    for t, subset in enumerate(subsets):
        if len(subset) == 1:
            out[subset[0], t] = 2.0
    return out


def shapley_matrix(subsets: Sequence[Subset], n_players: int) -> np.ndarray:
    """float[n, T] mapping Fourier coefficients to Shapley values.

    The parity ``prod_{j in S} z_j`` moves from ``(-1)^{|S|}`` (all ablated) to ``1`` (all kept);
    by symmetry and the null-player axiom each member of S gets ``(1 - (-1)^{|S|}) / |S|`` of
    it: ``2/|S|`` for odd |S|, 0 for even |S|.
    """
    out = np.zeros((n_players, len(subsets)))
    for t, subset in enumerate(subsets):
        if len(subset) % 2 == 1:
            out[list(subset), t] = 2.0 / len(subset)
    return out


def percentile_interval(replicates: np.ndarray, confidence: float) -> np.ndarray:
    """Two-sided percentile interval of bootstrap replicates.

    Args:
        replicates: float[B, ...], one replicate per row (axis 0).
        confidence: two-sided level in (0, 1), e.g. 0.95.

    Returns:
        float64[2, ...]: the lower bounds, then the upper bounds.
    """
    if not 0.0 < confidence < 1.0:
        raise EngineError(f"confidence must lie in (0, 1); got {confidence}")
    tail = 50.0 * (1.0 - confidence)
    return np.stack([np.percentile(replicates, tail, axis=0), np.percentile(replicates, 100 - tail, axis=0)])


def bootstrap_coefficients(
    masks: np.ndarray,
    item_values: np.ndarray,
    subsets: Sequence[Subset],
    n_bootstrap: int,
    seed: int,
    over: str,
) -> np.ndarray:
    """Bootstrap replicates of the Fourier coefficients on a fixed support.

    Args:
        masks: bool[m, n] fit masks.
        item_values: float[m, q] their per-item values (e.g. per question); a mask's value is
            the mean over its q items.
        subsets: the selected support (T subsets); only the coefficients are refitted.
        n_bootstrap: B replicates.
        seed: seed of the resampling.
        over: ``"questions"`` (resample the q items, recompute each mask's mean, refit) or
            ``"masks"`` (resample the m fit masks, refit).

    Returns:
        float64[T, B] (one column per replicate, as stored in ``bootstrap_*.npz``).

    Raises:
        EngineError: the support is not identifiable from the masks (design rank < T), or
            with ``over="masks"`` from some resample of them (repeated rows lose rank). A
            refit there returns the minimum-norm solution, which need not be near the
            estimate the support came from (a ridge over more terms than masks, say), so its
            percentiles would not be intervals around it.
    """
    rng = np.random.default_rng([int(seed), 0xB007])
    m, q = item_values.shape
    design = basis_matrix(masks, list(subsets), "fourier")
    rank = int(np.linalg.matrix_rank(design))
    if rank < len(subsets):
        raise EngineError(
            f"a fixed-support bootstrap needs the {len(subsets)} terms to be identifiable from the {m} fit masks, "
            f"but their design has rank {rank}; fit on more masks, or with fewer terms (method='exact' for a "
            "small unit)"
        )
    if over == "questions":
        # counts[b, j] = how often item j is drawn in replicate b; the mean is a weighted sum.
        counts = np.stack([np.bincount(rng.integers(0, q, q), minlength=q) for _ in range(n_bootstrap)])
        return least_squares(design, item_values @ (counts.T / q))  # [m, B] targets -> [T, B]
    if over == "masks":
        values = item_values.mean(axis=1)
        out = np.empty((len(subsets), n_bootstrap))
        deficient = 0
        for b in range(n_bootstrap):
            rows = rng.integers(0, m, m)
            # least_squares' own lstsq, called here for the rank it also returns
            out[:, b], _, resample_rank, _ = np.linalg.lstsq(design[rows], values[rows], rcond=None)
            deficient += resample_rank < len(subsets)
        if deficient:
            raise EngineError(
                f"{deficient} of {n_bootstrap} mask resamples leave the {len(subsets)} terms unidentifiable (a "
                f"resample of {m} masks repeats some and loses rank); a mask bootstrap needs more fit masks per term"
            )
        return out
    raise EngineError(f"bootstrap 'over' must be 'questions' or 'masks'; got '{over}'")
