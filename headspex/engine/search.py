"""Candidate supports that do not come from the tree proxy, scored on the proxy's CV folds.

:func:`extra_searches` runs, for one set of fit masks and folds:

* ``pursuit:fourier`` and ``pursuit:removal`` — matching pursuit over every low-order term
  (screened pool, :func:`~headspex.engine.candidates.screening_pool`), support size by nested
  CV; what a sparse-regression (LASSO-like) baseline can reach, so the estimator is never
  worse than it by more than CV noise;
* ``grown:removal`` — the removal pursuit with its pool grown upward from the terms it chose
  (:func:`~headspex.engine.candidates.grown_pursuit_ranking`), up to ``max_order``, where
  rows x 2 n <= ``GROWTH_MAX_CELLS``: an OR of k backup heads is one removal term of order k
  whose members show almost no marginal signal;
* ``lasso:fourier`` — LASSO over the same pool, penalty chosen on the same folds (while
  rows x pool <= ``LASSO_MAX_CELLS``);
* ``lasso2:fourier`` — LASSO over *every* term of order 1 and 2, unscreened
  (:func:`~headspex.engine.candidates.all_pairs_lasso_search`), where the LASSO baseline would
  fit all pairs too (rows x terms <= ``ALL_PAIRS_MAX_CELLS``): the baseline's own model class, so
  a pair the screened pool misses cannot put the estimator below it by more than CV noise;
* ``lasso1:fourier`` — LASSO over the first-order terms only, when the pool holds more: with
  hundreds of players the pairs of the pool cost more variance than they explain (measured on
  270 SmolLM2 heads, :mod:`benchmarks.engine_real_model`), and this is the model a LASSO
  baseline falls back to at large n, so the CV always has it;
* ``ridge1:fourier`` and ``ridge2:fourier`` — dense ridge over *every* term of order 1 (and of
  order <= 2 where they fit), penalty by leave-one-out inside each fold: the model for functions that
  are dense at low order (many heads each matter a little; every pair of a saturating head set
  on the log-odds), where any sparse support leaves variance behind (rows x terms <=
  ``RIDGE_MAX_CELLS``);
* ``ridge3:removal`` — dense ridge over every term of order <= 3 in the removal basis (where
  they fit and ``max_order`` >= 3) with a penalty graded by order (``alpha * g^(k-1)``, g from
  ``RIDGE3_ORDER_GROWTHS`` chosen with alpha by leave-one-out): small games dense at low order
  that are judged near full (the trained induction model);
* ``coded:fourier`` — the terms decoded from a coded design (no marginal signal needed),
  followed by the proxy's Fourier ranking, support size by CV;
* ``anchored:removal`` — when the masks hold a removal ladder: exact low-order removal terms
  plus pursued higher ones (:mod:`headspex.engine.anchored`).

Each entry is ``{"basis", "support" (list of subsets) or "terms" (dict), "cv_mse", "k"}``;
the caller compares ``cv_mse`` with its own searches and refits the winner. The one entry in the
order-2 LASSO baseline's own model class (``lasso2:fourier``, else the first-order LASSO over
every player: the order ``LassoRegression(max_order=2)`` drops to where all pairs do not fit) also
carries ``"baseline_class": True``: the caller's tie rule never trades CV error above it for
sparsity. No candidate fits every triple, so against a ``max_order=3`` baseline on a small game
the flag is the order-2 class, not the baseline's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .anchored import anchored_search
from .candidates import (
    all_pairs_lasso_search,
    cv_prefix_errors,
    lasso_search,
    least_squares,
    marginal_scores,
    nested_prefix_errors,
    nested_pursuit,
    pursuit_ranking,
    ridge_search,
    screening_pool,
)
from .coded import CodedDesign, decode_coded
from .interactions import Subset, basis_matrix, convert_terms, subsets_up_to_order
from .store import mask_keys

#: Screened pool size of the pursuit (columns); bounds its cost at O(m * pool) per step.
PURSUIT_POOL = 1500
#: Most pursuit steps (terms) per ranking.
PURSUIT_MAX_TERMS = 300
#: The grown pursuit's pool stays within rows x columns <= this (a 64 MB float64 design); it runs
#: where that holds at least two players' worth of supersets (2 n columns). Beyond that each term
#: could propose only a few supersets, for a cost that rivals the proxy's (n = 1 024 with 5 000
#: masks: +7 s on an 18 s fit).
GROWTH_MAX_CELLS = 8e6
#: The LASSO candidate runs while rows x pool columns stay below this (its cost grows with both).
LASSO_MAX_CELLS = 4e6
#: The all-pairs LASSO candidate runs while rows x (n + C(n, 2)) stay below this: where the LASSO
#: baseline (:class:`~headspex.engine.estimators.baselines.LassoRegression`) fits all pairs.
ALL_PAIRS_MAX_CELLS = 3e7
#: Penalty growths per order tried by the graded order-3 ridge (``ridge3:removal``; 1 = flat).
RIDGE3_ORDER_GROWTHS = (1.0, 10.0, 100.0, 1000.0)
#: A dense ridge candidate runs while rows x terms stay below this (one eigendecomposition per
#: fold; at n = 1 024 with 5 000 masks the first-order one would cost a third of the fit).
RIDGE_MAX_CELLS = 4e6


def player_scores(masks: np.ndarray, values: np.ndarray, proxy_fourier: dict[Subset, float]) -> np.ndarray:
    """How much each player seems to matter: marginal correlation plus the proxy's |coefficients|."""
    n = masks.shape[1]
    marginal = marginal_scores(masks, values)
    proxy = np.zeros(n)
    for subset, coef in proxy_fourier.items():
        for i in subset:
            proxy[i] += abs(coef)
    return marginal / (marginal.max() or 1.0) + proxy / (proxy.max() or 1.0)


def coded_rows(design: CodedDesign, masks: np.ndarray) -> np.ndarray | None:
    """Row of ``masks`` holding each coded mask (int64[len(design.masks)]), or None if any is missing."""
    where = {key: i for i, key in enumerate(mask_keys(masks))}
    rows = [where.get(key) for key in mask_keys(design.masks)]
    if any(r is None for r in rows):
        return None
    return np.asarray(rows, dtype=np.int64)


def coded_search(
    masks: np.ndarray, values: np.ndarray, design: CodedDesign, folds: Sequence[np.ndarray],
    fallback_ranking: list[Subset], max_order: int, cap: int, row_weights: np.ndarray | None = None,
    fold_fallback_rankings: Sequence[list[Subset]] | None = None,
) -> dict[str, Any] | None:
    """Decoded terms first (largest |coefficient| first), then ``fallback_ranking``; size by CV.

    Where the fallback supplies most of that support, it is also tried with the terms a pursuit
    takes on the head's residual first, and the lower nested CV error of the two wins.

    With ``fold_fallback_rankings`` (one per fold, built without its rows) the reported CV error
    is nested: each fold scores the decoded head followed by its own fallback, at the size the
    all-rows ranking chose. The head is decoded once from every coded row (the coded design
    needs all of them), so its few terms' order is the one part the folds share.
    """
    rows = coded_rows(design, masks)
    if rows is None:
        return None
    decoded = decode_coded(design, values[rows])
    head = [s for s, _ in sorted(decoded.items(), key=lambda sc: -abs(sc[1])) if s and len(s) <= max_order]

    def with_fallback(fallback: list[Subset], fit_rows: np.ndarray, pursue: bool) -> list[Subset]:
        """Head, then the fallback; with ``pursue``, the fallback's terms that the pursuit takes
        on what the head leaves (on ``fit_rows``) come first: the proxy ranks the undecoded terms
        among hundreds of their subsets (parity, n = 256, 1 000 masks: 419 terms selected in
        proxy order, 21 in pursuit order, for 10 planted)."""
        seen = {(), *head}
        rest = [s for s in fallback if s not in seen]
        if pursue:
            head_design = basis_matrix(masks[fit_rows], [(), *head], "fourier")
            residual = values[fit_rows] - head_design @ least_squares(head_design, values[fit_rows])
            pursued = pursuit_ranking(masks[fit_rows], residual, "fourier", rest[:cap], min(len(rest), cap))[1:]
            chosen = set(pursued)
            rest = pursued + [s for s in rest if s not in chosen]
        return ([(), *head] + rest)[:cap]

    all_rows = np.arange(len(values))
    trains = [np.setdiff1d(all_rows, val, assume_unique=True) for val in folds]
    best: dict[str, Any] | None = None
    for pursue in (False, True):
        ranking = with_fallback(fallback_ranking, all_rows, pursue)
        # The size comes from the all-rows ranking: the decoded head is read from every coded row,
        # and at budgets where decoding just works (parity, n = 256, 1000 masks: 6 of 10 terms
        # decoded) the rest is found only by the all-rows proxy, so a nested curve stops too early
        # (R² 0.81 instead of 1.00). The error the candidate reports is still the nested one, at
        # that size, so it competes honestly with the others.
        errors = cv_prefix_errors(basis_matrix(masks, ranking, "fourier"), values, folds, row_weights).mean(axis=0)
        k = int(np.argmin(errors)) + 1
        if fold_fallback_rankings is not None:
            fold_rankings = [with_fallback(r, t, pursue) for r, t in zip(fold_fallback_rankings, trains)]
            errors = nested_prefix_errors(masks, values, fold_rankings, folds, "fourier", k, row_weights).mean(axis=0)
        found = {"basis": "fourier", "support": ranking[:k], "cv_mse": float(errors[k - 1]), "k": k,
                 "n_decoded": len(head), "fallback_order": "pursuit" if pursue else "proxy"}
        if best is None or found["cv_mse"] < best["cv_mse"]:
            best = found
        if 2 * (k - 1 - len(head)) <= k - 1:
            break  # the head is most of the support: no undecoded remainder for a pursuit to order
    return best


def extra_searches(
    masks: np.ndarray,
    values: np.ndarray,
    folds: Sequence[np.ndarray],
    proxy_fourier: dict[Subset, float],
    fallback_ranking: list[Subset],
    max_order: int,
    cap: int,
    coded: CodedDesign | None = None,
    ladder: tuple[int, np.ndarray] | None = None,
    pursuit_bases: Sequence[str] = ("fourier", "removal"),
    growth: bool = True,
    row_weights: np.ndarray | None = None,
    lasso: bool = True,
    ridge: bool = True,
    fold_proxy_fourier: Sequence[dict[Subset, float]] | None = None,
    fold_fallback_rankings: Sequence[list[Subset]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the non-proxy candidate searches (see the module docstring).

    Args:
        masks: bool[m, n]; values: float[m].
        folds: validation row indices (ladder rows excluded by the caller).
        proxy_fourier: the tree proxy's Fourier coefficients (player screening, anchored pool).
        fallback_ranking: the proxy's Fourier ranking (appended after the decoded terms).
        max_order: largest order of pursued / decoded terms.
        cap: longest ranking.
        coded: the coded design among ``masks``, if any.
        ladder: ``(K, rows)`` from :func:`~headspex.engine.anchored.detect_ladder` (K >= 1).
        row_weights: validation weights (:func:`~headspex.engine.candidates.regime_weights`).
        pursuit_bases: bases of the pursuit candidates (empty: none); growth: run the grown
            removal pursuit (where its pool has room to grow); lasso, ridge: run the LASSO
            and the dense ridge candidates.
        fold_proxy_fourier: one proxy per fold, fitted without that fold's rows: the pursuit and
            LASSO pools are then screened inside every fold too, so their CV errors are honest.
        fold_fallback_rankings: the same proxies' Fourier rankings, the coded candidate's nested
            fallback.
    """
    m, n = masks.shape
    out: dict[str, dict[str, Any]] = {}
    steps = max(1, min(cap - 1, max(10, m // 3), PURSUIT_MAX_TERMS))
    pool = screening_pool(n, player_scores(masks, values, proxy_fourier), max_order, PURSUIT_POOL)
    fold_pools = None
    if fold_proxy_fourier is not None:
        all_rows = np.arange(m)
        trains = [np.setdiff1d(all_rows, val, assume_unique=True) for val in folds]
        fold_pools = [screening_pool(n, player_scores(masks[t], values[t], c), max_order, PURSUIT_POOL)
                      for t, c in zip(trains, fold_proxy_fourier)]
    grow = growth and max_order >= 2 and GROWTH_MAX_CELLS // m >= 2 * n
    grown = None
    # The grown candidate starts from the removal pursuit's own rankings (each computed once).
    for basis in list(pursuit_bases) + (["removal"] if grow and "removal" not in pursuit_bases else []):
        found = nested_pursuit(masks, values, basis, pool, folds, steps, row_weights, fold_pools,
                               grow_to=max_order if grow and basis == "removal" else 0, grow_cells=GROWTH_MAX_CELLS)
        if "grown" in found:
            grown = found.pop("grown")
        if basis in pursuit_bases:
            out[f"pursuit:{basis}"] = {"basis": basis, **found}
    if grown is not None:
        out["grown:removal"] = {"basis": "removal", **grown}
    if lasso and m * len(pool) <= LASSO_MAX_CELLS:
        out["lasso:fourier"] = {"basis": "fourier", **lasso_search(masks, values, "fourier", pool, folds,
                                                                  row_weights=row_weights, fold_pools=fold_pools)}
    if lasso and max_order >= 2 and m * (n + math.comb(n, 2)) <= ALL_PAIRS_MAX_CELLS:
        out["lasso2:fourier"] = {"basis": "fourier", **all_pairs_lasso_search(masks, values, folds,
                                                                             row_weights=row_weights)}
    singles = [s for s in pool if len(s) == 1]
    if lasso and len(singles) < len(pool):
        out["lasso1:fourier"] = {"basis": "fourier", **lasso_search(masks, values, "fourier", singles, folds,
                                                                   row_weights=row_weights)}
    # The LASSO baseline's own model class: all pairs where they fit, else every first-order term.
    baseline = next((name for name in ("lasso2:fourier", "lasso1:fourier") if name in out), None)
    if baseline is None and "lasso:fourier" in out and len(singles) == len(pool):
        baseline = "lasso:fourier"
    if baseline is not None:
        out[baseline]["baseline_class"] = True
    for order in (1, 2)[: min(max_order, 2)] if ridge else ():
        if m * sum(math.comb(n, k) for k in range(1, order + 1)) <= RIDGE_MAX_CELLS:
            dense = subsets_up_to_order(n, order, min_order=1)
            out[f"ridge{order}:fourier"] = {"basis": "fourier", **ridge_search(masks, values, "fourier", dense, folds,
                                                                                  row_weights=row_weights)}
    if ridge and max_order >= 3 and m * sum(math.comb(n, k) for k in range(1, 4)) <= RIDGE_MAX_CELLS:
        # Graded: higher orders shrunk harder; in the removal basis a mask with few heads ablated
        # switches on few terms, so what is fitted near full is mostly the low orders the data pin down.
        dense = subsets_up_to_order(n, 3, min_order=1)
        out["ridge3:removal"] = {"basis": "removal", **ridge_search(masks, values, "removal", dense, folds,
                                                                     row_weights=row_weights,
                                                                     order_growths=RIDGE3_ORDER_GROWTHS)}
    if coded is not None:
        found_coded = coded_search(masks, values, coded, folds, fallback_ranking, max_order, cap, row_weights,
                                   fold_fallback_rankings)
        if found_coded is not None:
            out["coded:fourier"] = found_coded
    if ladder is not None and ladder[0] >= 1:
        removal_pool = list(convert_terms(proxy_fourier, "fourier", "removal")) + pool
        anchored = anchored_search(masks, values, ladder[0], ladder[1], list(folds), removal_pool,
                                   max(1, min(steps, m // 3)), row_weights)
        out["anchored:removal"] = {"basis": "removal", **anchored}
    return out
