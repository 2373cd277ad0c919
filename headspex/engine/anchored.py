"""Removal-ladder anchoring: exact where a few players are ablated, fitted elsewhere.

On a mask that ablates the set ``A`` only removal terms ``S ⊆ A`` are switched on, so when
the fit masks hold the full *ladder* (every mask ablating at most ``K`` players, see
:mod:`headspex.engine.design`) the removal coefficients of order <= K are known exactly by
Möbius inversion over the ablated sets, ``r(S) = sum_{A ⊆ S} (-1)^{|S|-|A|} v(all but A)``.
Every removal term of order > K vanishes on the ladder, so fitting only such terms to the
residual of the other masks keeps the ladder exact: the model is right where pruning decides
(a few players ablated) and free to fit uniform masks. On the trained induction model
(n = 8, 128 masks) this takes the R² on masks with <= 3 heads ablated from 0.26 to 0.84 at
the same uniform R².
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

from .candidates import cv_prefix_errors, lasso_search, least_squares, mean_curve, pursuit_ranking
from .interactions import Subset, basis_matrix
from ..errors import EngineError

#: Largest ladder order detected (full + singles + pairs).
MAX_LADDER_ORDER = 2
#: Up to this many players, every removal term above the ladder is a candidate.
ALL_TERMS_MAX_PLAYERS = 12


def detect_ladder(masks: np.ndarray) -> tuple[int, np.ndarray]:
    """Largest K <= 2 such that every mask ablating at most K players is among ``masks``.

    Args:
        masks: bool[m, n], distinct rows.

    Returns:
        ``(K, rows)``: K (0 = no ladder, not even the full mask and all single ablations)
        and bool[m], the rows that ablate at most K players.
    """
    m, n = masks.shape
    ablated = (~masks).sum(axis=1)
    order = 0
    if (ablated == 0).any():
        for k in range(1, MAX_LADDER_ORDER + 1):
            if k > n or len(np.unique(masks[ablated == k], axis=0)) != math.comb(n, k):
                break
            order = k
    return order, (ablated <= order) if order else np.zeros(m, dtype=bool)


def ladder_inversion(masks: np.ndarray, order: int) -> list[tuple[Subset, list[tuple[int, int]]]]:
    """The Möbius inversion over the ladder rows: ``r(S) = sum_{A ⊆ S} (-1)^{|S|-|A|} v(all but A)``.

    Args:
        masks: bool[m, n] holding every mask that ablates at most ``order`` players (rows may
            repeat; the first row ablating a set is used).

    Returns:
        Per removal term S of order <= ``order`` (by order, then lexicographic), its
        ``(row, sign)`` pairs, so ``r(S) = sum(sign * values[row])``.

    Raises:
        EngineError: a mask of the ladder is missing.
    """
    n = masks.shape[1]
    first: dict[Subset, int] = {}
    for index in np.flatnonzero((~masks).sum(axis=1) <= order):
        first.setdefault(tuple(np.flatnonzero(~masks[index]).tolist()), int(index))
    out = []
    for k in range(order + 1):
        for subset in combinations(range(n), k):
            missing = [a for j in range(k + 1) for a in combinations(subset, j) if a not in first]
            if missing:
                raise EngineError(f"the removal ladder of order {order} lacks the mask ablating {list(missing[0])}")
            out.append((subset, [(first[a], (-1) ** (k - j)) for j in range(k + 1) for a in combinations(subset, j)]))
    return out


def ladder_removal_terms(masks: np.ndarray, values: np.ndarray, order: int) -> dict[Subset, float]:
    """Exact removal coefficients of order <= ``order`` from the ladder rows of ``masks``."""
    ladder = (~masks).sum(axis=1) <= order
    # Differences of equal values can leave round-off (1e-16) where a term is exactly 0 (a null
    # player); such terms are dropped, so they do not enter the support.
    tol = 1e-12 * float(np.max(np.abs(values[ladder]))) if ladder.any() else 0.0
    terms: dict[Subset, float] = {}
    for subset, pairs in ladder_inversion(masks, order):
        coef = sum(sign * float(values[row]) for row, sign in pairs)
        if abs(coef) > tol or not subset:
            terms[subset] = coef
    return terms


def anchored_search(
    masks: np.ndarray,
    values: np.ndarray,
    order: int,
    ladder_rows: np.ndarray,
    folds: list[np.ndarray],
    extra_pool: list[Subset],
    max_terms: int,
    row_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """The anchored removal candidate: ladder terms exact, higher removal terms by pursuit + CV.

    Args:
        order, ladder_rows: from :func:`detect_ladder` (order >= 1).
        folds: validation folds over the non-ladder rows (row indices into ``masks``).
        extra_pool: candidate removal terms (orders <= K are ignored); for n <= 12 every
            removal term above the ladder is a candidate anyway.
        max_terms: pursuit steps.

    Returns:
        ``{"terms": {subset: removal coefficient}, "cv_mse": float, "k": int, "residual_fit":
        "pursuit" | "lasso", "ladder_order": K, "residual_terms": the residual fit's terms,
        "residual_alpha": its LASSO penalty (None for the pursuit's least squares)}`` where
        ``cv_mse`` is the nested-CV error on the validation rows (the ranking is redone in every fold).
    """
    n = masks.shape[1]
    low = ladder_removal_terms(masks, values, order)
    residual = values - basis_matrix(masks, list(low), "removal") @ np.fromiter(low.values(), float)
    free = np.flatnonzero(~ladder_rows)
    if n <= ALL_TERMS_MAX_PLAYERS:
        pool = [s for k in range(order + 1, n + 1) for s in combinations(range(n), k)]
    else:
        pool = sorted({s for s in extra_pool if len(s) > order}, key=lambda s: (len(s), s))
    position = np.full(len(masks), -1)
    position[free] = np.arange(len(free))
    local_folds = [position[val] for val in folds]
    weights = None if row_weights is None else row_weights[free]
    pursued = _pursued_residual(masks[free], residual[free], pool, local_folds, max_terms, weights)
    shrunk = lasso_search(masks[free], residual[free], "removal", pool, local_folds, fit_intercept=False,
                          row_weights=weights)
    best = pursued if pursued["cv_mse"] <= shrunk["cv_mse"] else shrunk
    terms = dict(low)
    for subset, coef in best["terms"].items():
        terms[subset] = terms.get(subset, 0.0) + coef
    return {"terms": terms, "cv_mse": float(best["cv_mse"]), "k": int(best["k"]),
            "residual_fit": "pursuit" if best is pursued else "lasso", "ladder_order": int(order),
            "residual_terms": [s for s in best["terms"] if s], "residual_alpha": best.get("alpha")}


def _pursued_residual(
    masks: np.ndarray, residual: np.ndarray, pool: list[Subset], folds: list[np.ndarray], max_terms: int,
    row_weights: np.ndarray | None,
) -> dict[str, Any]:
    """Pursuit of the residual over ``pool`` (no constant), size by nested CV, least-squares refit."""
    all_rows = np.arange(len(residual))
    curves = []
    for val in folds:
        train = np.setdiff1d(all_rows, val, assume_unique=True)
        ranking = pursuit_ranking(masks[train], residual[train], "removal", pool, max_terms)[1:]
        weights = np.ones(len(val)) if row_weights is None else row_weights[val]
        baseline = float(np.mean(weights * residual[val] ** 2))
        if ranking:
            errors = cv_prefix_errors(basis_matrix(masks, ranking, "removal"), residual, [val], row_weights)[0]
            curves.append(np.concatenate([[baseline], errors]))
        else:
            curves.append(np.array([baseline]))
    errors = mean_curve(curves)
    k = int(np.argmin(errors))
    ranking = pursuit_ranking(masks, residual, "removal", pool, max_terms)[1:][:k]
    terms: dict[Subset, float] = {}
    if ranking:
        beta = least_squares(basis_matrix(masks, ranking, "removal"), residual)
        terms = dict(zip(ranking, beta.tolist()))
    return {"terms": terms, "cv_mse": float(errors[k]), "k": len(terms)}
