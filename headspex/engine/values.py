"""Single-player values and their uncertainty from Fourier coefficients.

Linear maps from Fourier coefficients to Banzhaf and Shapley values, bootstrap refits of a fit's
own coefficient step (:mod:`headspex.engine.refit`), and the percentile interval of bootstrap
replicates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .interactions import Interactions, Subset
from .result import EngineResult
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


#: Largest difference between a refit of the estimate's own values and the estimate, as a share
#: of its largest non-constant Fourier coefficient, before a bootstrap is refused: round-off for
#: the linear steps. The LASSO estimate was solved to the search's tolerance (1e-3 of ``||y||^2``)
#: and its refits to 1e-10: measured gaps of 0.8-1.1 % on planted games (n = 9-30, 80-150 masks),
#: median 0.5 % and at most 2.4 % over the 17 LASSO-fitted SmolLM2 layer units (80 masks).
REPRODUCTION_TOLERANCE = {"none": 1e-6, "ridge": 1e-6, "lasso": 5e-2}


def bootstrap_coefficients(
    result: EngineResult,
    item_values: np.ndarray,
    n_bootstrap: int,
    seed: int,
    over: str,
) -> tuple[list[Subset], np.ndarray]:
    """Bootstrap replicates of a fit's Fourier coefficients: its own estimator, refitted.

    Each replicate repeats the fit's last step (its :class:`~headspex.engine.refit.CoefficientModel`:
    the winner's terms, basis and penalty, held fixed) on resampled data, so the replicates vary
    around the estimate as the estimator does (conditional on the selection). The refit of the
    data as observed must reproduce the estimate, or the bootstrap is refused.

    Args:
        result: the fit (identity link, with a ``coefficient_model``).
        item_values: float[m, q], the per-item values (e.g. per question) of ``result.masks``;
            a mask's value is the mean over its q items.
        n_bootstrap: B replicates.
        seed: seed of the resampling.
        over: ``"questions"`` (resample the q items, recompute each mask's mean, refit) or
            ``"masks"`` (resample the fit masks, refit; with a removal ladder only the masks off
            the ladder are resampled: the ladder is a fixed part of the design).

    Returns:
        ``(subsets, replicates)``: the T Fourier subsets the model reaches (a superset of the
        estimate's) and float64[T, B], one column per replicate (as stored in ``bootstrap_*.npz``).

    Raises:
        EngineError: no coefficient model, a non-identity link, a refit that does not reproduce
            the estimate, a least-squares model whose terms the masks do not identify (design
            rank < terms), or with ``over="masks"`` any model whose terms the fit masks, or some
            resample of them (repeated rows lose rank), do not identify. Those refits would not
            be the estimator's replicates, or would be shrunk more than the estimate, so their
            percentiles need not be intervals around it.
    """
    model = result.coefficient_model
    if model is None:
        raise EngineError(f"this {result.method} fit records no coefficient model to refit (a result saved before "
                          "bootstrap refits were recorded, or an estimator that records none); fit it again")
    if result.link != "identity":
        raise EngineError(f"bootstrap refits need link='identity'; this fit's link is {result.link!r}")
    masks = result.masks
    m, n = masks.shape
    item_values = np.asarray(item_values, dtype=np.float64)
    if item_values.ndim != 2 or item_values.shape[0] != m:
        raise EngineError(f"item_values must be float[{m}, q] for the fit's {m} masks, got shape {item_values.shape}")
    q = item_values.shape[1]
    subsets, conversion = model.fourier_map(n)
    values = item_values.mean(axis=1)
    observed = model.fit(masks, values[:, None])
    identified = observed.rank == observed.n_fitted
    if model.penalty == "none" and not identified:
        raise EngineError(
            f"a least-squares refit needs its {observed.n_fitted} terms to be identifiable from the fit masks, but "
            f"their design has rank {observed.rank}; fit on more masks, or with fewer terms (method='exact' for a "
            "small unit)")
    # Replicates are shifted by (estimate - refit of the observed data): 0 up to round-off for the
    # linear steps, the solver's error for a LASSO, so they vary around the estimate reported.
    estimate = result.interactions.to_fourier()
    shift = _estimate_on(estimate, subsets) - conversion @ observed.coefficients[:, 0]
    _check_reproduces(estimate, shift, model.penalty)
    rng = np.random.default_rng([int(seed), 0xB007])
    if over == "questions":
        # counts[b, j] = how often item j is drawn in replicate b; the mean is a weighted sum.
        counts = np.stack([np.bincount(rng.integers(0, q, q), minlength=q) for _ in range(n_bootstrap)])
        return subsets, conversion @ model.fit(masks, item_values @ (counts.T / q)).coefficients + shift[:, None]
    if over == "masks":
        if not identified:
            # A resample repeats masks; with fewer distinct masks than terms the penalty shrinks each
            # replicate more than it shrank the estimate (SmolLM2 layers 27-29 as one unit, 3 303
            # ridge terms on 200 masks: 28 % of the largest fifth of its terms fell outside their intervals).
            raise EngineError(
                f"a mask bootstrap needs the {observed.n_fitted} terms to be identifiable from the fit masks, but "
                f"their design has rank {observed.rank} (the penalty, not the masks, pins the rest down, and "
                "resampled masks would shift it); fit on more masks")
        fixed = (~masks).sum(axis=1) <= model.ladder_order if model.ladder_order else np.zeros(m, dtype=bool)
        kept, drawn = np.flatnonzero(fixed), np.flatnonzero(~fixed)
        out = np.empty((len(subsets), n_bootstrap))
        deficient = 0
        for b in range(n_bootstrap):
            rows = np.concatenate([kept, drawn[rng.integers(0, len(drawn), len(drawn))]])
            refit = model.fit(masks[rows], values[rows, None])
            out[:, b] = conversion @ refit.coefficients[:, 0] + shift
            deficient += refit.rank < refit.n_fitted
        if deficient:
            raise EngineError(
                f"{deficient} of {n_bootstrap} mask resamples leave the {observed.n_fitted} terms unidentifiable (a "
                f"resample of {len(drawn)} masks repeats some and loses rank); a mask bootstrap needs more fit masks "
                "per term")
        return subsets, out
    raise EngineError(f"bootstrap 'over' must be 'questions' or 'masks'; got '{over}'")


def _estimate_on(estimate: Interactions, subsets: list[Subset]) -> np.ndarray:
    """The estimate's (Fourier) coefficients on ``subsets``, float64[T] (0 where it has none)."""
    position = {s: t for t, s in enumerate(subsets)}
    outside = [s for s, c in zip(estimate.subsets, estimate.coefficients) if s not in position and c != 0.0]
    if outside:
        raise EngineError(f"the fit's estimate has {len(outside)} Fourier terms its coefficient model cannot reach "
                          f"(e.g. {list(outside[0])}); its bootstrap would not be around the estimate")
    out = np.zeros(len(subsets))
    for subset, coefficient in zip(estimate.subsets, estimate.coefficients):
        out[position[subset]] = coefficient
    return out


def _check_reproduces(estimate: Interactions, shift: np.ndarray, penalty: str) -> None:
    """Raise unless the refit of the observed data is the estimate (Fourier), to
    ``REPRODUCTION_TOLERANCE`` of its largest non-constant coefficient (``shift`` = estimate - refit)."""
    scale = max((abs(c) for s, c in zip(estimate.subsets, estimate.coefficients) if s), default=0.0)
    scale = scale or float(np.max(np.abs(estimate.coefficients), initial=0.0)) or 1.0
    gap = float(np.max(np.abs(shift), initial=0.0)) / scale
    if gap > REPRODUCTION_TOLERANCE[penalty]:
        raise EngineError(
            f"a refit of the fit's own values does not reproduce its estimate (largest difference {gap:.2g} of its "
            f"largest coefficient, {penalty} step); its bootstrap would not be around the estimate")
