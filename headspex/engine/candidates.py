"""Candidate supports (ordered term lists) for the cross-validated support search, in any basis.

The estimator picks, by K-fold cross-validation over every prefix, one ranking among several
(see :class:`CandidateSet`). This module builds rankings that do not depend on a tree proxy:

* :func:`rank_terms` — any ``{subset: coefficient}`` (e.g. a proxy converted exactly to a
  basis) ordered by its contribution's spread on the fit masks, ``|c| * std(column)``, so a
  removal term that is rarely switched on by the design ranks below one that often is.
* :func:`pursuit_ranking` — order-recursive matching pursuit (forward stepwise least squares)
  over *all* low-order terms of a basis, screened to a pool of at most ``max_pool`` columns:
  every first-order term, pairs among the players that matter most, triples among fewer. It
  needs no marginal signal for the terms inside the pool, and it is what a LASSO baseline
  sees, so the CV can never do worse than a sparse regression over low orders.
* :func:`grown_pursuit_ranking` — the same pursuit, its pool grown upward from the terms it
  chose (every superset by one player), for high-order terms whose subsets carry the signal
  (an OR of many backup heads is one high-order removal term).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from scipy.linalg import LinAlgError, cholesky, solve_triangular

from .interactions import Basis, Subset, _check_basis, basis_matrix
from ..errors import EngineError


def least_squares(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Minimum-norm least squares: float64[T] (or [T, B]) for design float64[m, T], values [m] (or [m, B])."""
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return coef


@dataclass
class CandidateSet:
    """One ranking of terms in one basis, from one source.

    Attributes:
        source: where the ranking came from (``"proxy"``, ``"pursuit"``, ``"coded"``...).
        basis: basis of the terms.
        ranking: subsets in order of entry; ``()`` (the constant) first.
    """

    source: str
    basis: Basis
    ranking: list[Subset]

    @property
    def name(self) -> str:
        """``source:basis``, the key results use to say which candidate set won."""
        return f"{self.source}:{self.basis}"


def column_spread(masks: np.ndarray, subsets: Sequence[Subset], basis: Basis) -> np.ndarray:
    """Standard deviation of each basis column on ``masks`` (float64[T]; 0 for the constant).

    Every column is a function of one boolean per row (Möbius: all of the subset kept; removal:
    all ablated; Fourier: an odd number ablated, column = -1), so the spread follows from that
    boolean's frequency p: sqrt(p (1 - p)) for 0/1 columns, 2 sqrt(p (1 - p)) for ±1 columns.
    Computed on packed booleans, not on the float design matrix (8x less memory traffic).
    """
    basis = _check_basis(basis)
    if not subsets:
        return np.zeros(0)
    masks = np.asarray(masks, dtype=bool)
    variables = masks if basis == "mobius" else ~masks
    frequency = np.zeros(len(subsets))
    by_order: dict[int, list[int]] = {}
    for col, subset in enumerate(subsets):
        by_order.setdefault(len(subset), []).append(col)
    for order, cols in by_order.items():
        if order == 0:
            frequency[cols] = 1.0
            continue
        idx = np.asarray([subsets[c] for c in cols], dtype=np.int64)  # [T_k, order]
        block = variables[:, idx[:, 0]].copy()
        for j in range(1, order):
            if basis == "fourier":
                block ^= variables[:, idx[:, j]]
            else:
                block &= variables[:, idx[:, j]]
        frequency[cols] = block.mean(axis=0)
    spread = np.sqrt(np.clip(frequency * (1.0 - frequency), 0.0, None))
    return 2.0 * spread if basis == "fourier" else spread


def rank_terms(
    terms: dict[Subset, float],
    masks: np.ndarray,
    basis: Basis,
    cap: int,
    max_order: int,
    head: Iterable[Subset] = (),
) -> list[Subset]:
    """``()``, then ``head``, then the other terms of order 1..max_order by ``|c| * spread``.

    Args:
        terms: coefficients in ``basis``.
        masks: bool[m, n], the fit masks (the spread is measured on them).
        cap: length of the returned list (at most).
    """
    basis = _check_basis(basis)
    ordered: list[Subset] = [()]
    seen: set[Subset] = {()}
    for subset in head:
        if subset not in seen:
            seen.add(subset)
            ordered.append(subset)
    rest = [(s, c) for s, c in terms.items() if s and len(s) <= max_order and s not in seen]
    if rest and len(ordered) < cap:
        spread = column_spread(masks, [s for s, _ in rest], basis)
        scores = np.abs([c for _, c in rest]) * spread
        for idx in np.argsort(-scores, kind="stable"):
            if len(ordered) >= cap or scores[idx] <= 0.0:
                break
            ordered.append(rest[idx][0])
    return ordered


def screening_pool(
    n_players: int, player_scores: np.ndarray, max_order: int, max_pool: int = 3000
) -> list[Subset]:
    """Low-order terms worth a column: all singles, pairs and triples among the top players.

    The pairs use the ``k2`` best-scored players with ``C(k2, 2)`` about half of what is left of
    ``max_pool`` after the singles, the triples the ``k3`` best with ``C(k3, 3)`` the other half.
    """
    order = np.argsort(-np.asarray(player_scores), kind="stable")
    pool: list[Subset] = [(i,) for i in range(n_players)]
    left = max(0, max_pool - n_players)
    if max_order >= 2 and left > 0:
        share = left // 2 if max_order >= 3 else left
        k2 = min(n_players, int((1 + math.sqrt(1 + 8 * share)) / 2))
        top2 = sorted(order[:k2].tolist())
        pool += list(combinations(top2, 2))
        left -= math.comb(k2, 2)
    if max_order >= 3 and left > 0:
        k3 = 3
        while k3 < n_players and math.comb(k3 + 1, 3) <= left:
            k3 += 1
        top3 = sorted(order[:k3].tolist())
        pool += list(combinations(top3, 3))
    return pool


def marginal_scores(masks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """|correlation| of each player's kept indicator with the values (float64[n]; 0 if constant)."""
    x = masks.astype(np.float64)
    x -= x.mean(axis=0)
    y = values - values.mean()
    norms = np.sqrt((x * x).sum(axis=0) * float(y @ y))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.abs(x.T @ y) / norms
    return np.nan_to_num(out)


def pursuit_ranking(
    masks: np.ndarray,
    values: np.ndarray,
    basis: Basis,
    pool: Sequence[Subset],
    max_terms: int,
    tol: float = 1e-9,
    stop_factor: float = 1.0,
) -> list[Subset]:
    """Order-recursive matching pursuit: greedily add the pool column that most reduces the residual.

    Each step takes the column with the largest ``(a_j^T r)^2 / ||P a_j||^2`` (``P`` projects out
    the columns already chosen and the constant), i.e. the one whose least-squares addition
    reduces the residual sum of squares most.

    Args:
        masks: bool[m, n]; values: float[m].
        pool: candidate subsets (no ``()``; the constant is always in the model).
        max_terms: steps taken (at most).
        stop_factor: stop once the best step reduces the residual sum of squares by less than
            ``stop_factor * ln(P) * sigma^2`` (``sigma^2`` = residual variance so far): a pure-noise
            column reaches ``~2 ln(P) sigma^2`` at best, so later steps only fit noise. The
            support size itself is chosen afterwards by cross-validation.

    Returns:
        ``[()]`` followed by the chosen subsets in order of entry.
    """
    return pursuit_with_residual(masks, values, basis, pool, max_terms, tol, stop_factor)[0]


def pursuit_with_residual(
    masks: np.ndarray, values: np.ndarray, basis: Basis, pool: Sequence[Subset], max_terms: int,
    tol: float = 1e-9, stop_factor: float = 1.0,
) -> tuple[list[Subset], np.ndarray]:
    """:func:`pursuit_ranking` and the least-squares residual of its final support, float64[m]."""
    basis = _check_basis(basis)
    pool = [s for s in pool if s]
    if not pool or max_terms < 1:
        return [()], values - values.mean()
    design = basis_matrix(masks, pool, basis)
    design -= design.mean(axis=0)
    residual = values - values.mean()
    norms2 = (design * design).sum(axis=0)  # squared norm of each column after projecting out Q
    # A column is dead once what is left of it after projecting out the chosen ones is ~0.
    dead_below = 1e-8 * norms2
    alive = norms2 > tol * max(float(norms2.max()), 1e-300)
    correlations = design.T @ residual  # equals (P a_j)^T r because r is orthogonal to Q
    m = len(residual)
    basis_q = np.zeros((m, 0))
    chosen: list[int] = []
    total = float(residual @ residual) or 1.0
    log_pool = math.log(max(len(pool), 2))
    for step_index in range(min(max_terms, len(pool), m - 2)):
        gains = np.where(alive, correlations**2 / np.where(alive, norms2, 1.0), -1.0)
        j = int(np.argmax(gains))
        noise = float(residual @ residual) / (m - step_index - 1)
        if gains[j] <= tol * total or gains[j] < stop_factor * log_pool * noise:
            break
        q = design[:, j] - basis_q @ (basis_q.T @ design[:, j])
        q /= np.linalg.norm(q)
        # q is orthogonal to Q, so (P a)^T q = a^T q: one product with the raw columns per step.
        projections = design.T @ q
        step = float(q @ residual)
        residual = residual - q * step
        correlations = correlations - projections * step
        norms2 = np.maximum(norms2 - projections**2, 0.0)
        alive &= norms2 > dead_below
        alive[j] = False
        basis_q = np.column_stack([basis_q, q])
        chosen.append(j)
    return [()] + [pool[j] for j in chosen], residual


def superset_gains(factors: np.ndarray, columns: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """How much adding each superset column alone would cut a residual's sum of squares.

    The column of ``T | {j}`` is ``column_T * factor_j`` in every basis (each is a product of
    single-player factors), so all gains come from three matrix products:
    ``(c^T r)^2 / ||c - mean(c)||^2`` with ``||c - mean(c)||^2 = sum c^2 - (sum c)^2 / m``.

    Args:
        factors: float64[m, n], the basis's single-player columns (``basis_matrix(masks, [(j,)...])``).
        columns: float64[m, T], the columns of the terms to grow.
        residual: float64[m], centred (orthogonal to the constant).

    Returns:
        float64[n, T]; -1 where the superset column is constant. Entries with ``j`` in the term
        are not supersets (callers drop them).
    """
    m = len(residual)
    sums = factors.T @ columns
    norms = (factors * factors).T @ (columns * columns) - sums**2 / m
    alive = norms > 1e-12 * m
    return np.where(alive, (factors.T @ (columns * residual[:, None])) ** 2 / np.where(alive, norms, 1.0), -1.0)


def grown_pursuit_ranking(
    masks: np.ndarray,
    values: np.ndarray,
    basis: Basis,
    pool: Sequence[Subset],
    max_terms: int,
    max_order: int,
    max_cells: float,
    start: tuple[list[Subset], np.ndarray] | None = None,
) -> list[Subset]:
    """Matching pursuit whose pool grows upward from its own choices.

    After each pursuit, every chosen term ``T`` below ``max_order`` proposes supersets
    ``T | {j}``, and the pursuit reruns over the pool and all supersets proposed so far; at most
    ``max_order - 1`` rounds.
    Where rows x pool columns would exceed ``max_cells``, each term proposes only the players
    ``j`` whose superset column reduces the pursuit's residual most (the same gain the pursuit
    uses, without projecting out the chosen columns), an equal share per term.

    Why: an OR of k kept players (backup heads) is one removal term of order k, but the
    screened pool holds orders <= 3 among the best-scored players, and a member's marginal
    signal is only ``c / 2^(k-1)``; its subsets, once ablated together, carry far more, so the
    pursuit picks them first and the growth reaches the whole group (measured on the redundancy
    family, benchmarks/results/engine.md).

    Args:
        masks: bool[m, n]; values: float[m]; pool: the starting pool (no ``()``).
        max_terms: pursuit steps per round (at most).
        max_order: largest order grown to.
        max_cells: most rows x pool columns (float64 cells) one pursuit may hold.
        start: the first round's ``(ranking, residual)`` when the caller already ran that pursuit
            (:func:`pursuit_with_residual` on the same arguments).

    Returns:
        ``[()]`` followed by the chosen subsets in order of entry (the last round's pursuit).
    """
    basis = _check_basis(basis)
    m, n = masks.shape
    pool = [s for s in pool if s]
    seen = set(pool)
    # Single-player factors of the basis: a superset's column is its subset's column times one.
    factors = basis_matrix(masks, [(j,) for j in range(n)], basis)
    ranking, residual = start if start is not None else pursuit_with_residual(masks, values, basis, pool, max_terms)
    for _ in range(max(0, max_order - 1)):
        growable = [t for t in ranking[1:] if len(t) < max_order]
        room = int(max_cells // max(m, 1)) - len(pool)
        if not growable or room < 1:
            break
        share = max(1, room // len(growable))
        if share < n:
            gains = superset_gains(factors, basis_matrix(masks, growable, basis), residual)
        grown: list[Subset] = []
        for t, term in enumerate(growable):
            if share >= n:
                players: Sequence[int] = range(n)
            else:
                term_gains = gains[:, t].copy()
                term_gains[list(term)] = -np.inf
                players = np.argsort(-term_gains, kind="stable")[:share].tolist()
            for j in players:
                if j not in term:
                    superset = tuple(sorted((*term, int(j))))
                    if superset not in seen:
                        seen.add(superset)
                        grown.append(superset)
        grown = grown[:room]
        if not grown:
            break
        pool = pool + grown
        ranking, residual = pursuit_with_residual(masks, values, basis, pool, max_terms)
    return ranking


def cholesky_factor(design: np.ndarray) -> np.ndarray:
    """Upper-triangular R with R^T R = design^T design (+ a tiny relative jitter for stability)."""
    gram = design.T @ design
    scale = float(np.mean(np.diag(gram))) or 1.0
    jitter = 1e-10 * scale
    for _ in range(8):
        try:
            return cholesky(gram + jitter * np.eye(len(gram)), lower=False, check_finite=False)
        except LinAlgError:
            jitter *= 100.0
    raise EngineError("design matrix is numerically singular")


#: Fewest rows per regime for :func:`regime_weights` to reweight (fewer: its CV would be noise).
MIN_REGIME_ROWS = 30


def regime_weights(masks: np.ndarray, values: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Per-row weights that make a validation MSE the mean of the two regimes' ``1 - R²``.

    Rows ablating at most ``max(2, 20 %)`` of the players are *near-full* (the pruning
    regime), the others *uniform*. Each regime's squared errors are divided by its own value
    variance (floored at ``floor`` x the overall variance) and its row count, so a model that
    is good on uniform masks but wrong where a few players are ablated no longer wins the CV
    just because uniform masks vary more. With fewer than ``MIN_REGIME_ROWS`` rows in a regime
    all weights are 1 (measured: with ~12 near-full rows, n = 8, the reweighted CV picked worse
    models in both regimes).

    Returns:
        float64[m], mean 1.
    """
    m, n = masks.shape
    near = (~masks).sum(axis=1) <= max(2.0, 0.2 * n)
    weights = np.ones(m)
    if near.sum() < MIN_REGIME_ROWS or (~near).sum() < MIN_REGIME_ROWS:
        return weights
    total = float(np.var(values)) or 1.0
    for rows in (near, ~near):
        weights[rows] = 1.0 / (rows.sum() * max(float(np.var(values[rows])), floor * total))
    return weights / weights.mean()


def cv_prefix_errors(
    design: np.ndarray, targets: np.ndarray, folds: Sequence[np.ndarray], row_weights: np.ndarray | None = None
) -> np.ndarray:
    """Validation MSE of the least-squares fit on the first k columns, for every k and fold.

    One Cholesky factor per fold: with ``B_train^T B_train = R^T R`` (R upper triangular),
    the prefix-k solution is ``R_k^{-1} c_k`` with ``c = R^{-T} B_train^T y``, because the
    leading k x k block of R is the factor of the leading block of the Gram matrix. So the
    validation predictions of all prefixes are cumulative sums of
    ``(B_val R^{-1})[:, j] * c[j]`` — all K support sizes for the price of one fit.
    (Gram + Cholesky rather than QR: a BLAS-3 product, ~20x faster here, and the ±1
    Fourier columns are well conditioned.) Rows in no fold are always trained on.
    ``row_weights`` (float[m], e.g. :func:`regime_weights`) weight the validation errors only;
    the fits stay unweighted least squares.

    Returns:
        float64[folds, K]; entry [f, k-1] is fold f's validation MSE with k columns (inf past
        a rank deficiency).
    """
    n_cols = design.shape[1]
    per_fold = []
    all_rows = np.arange(len(targets))
    for val in folds:
        train = np.setdiff1d(all_rows, val, assume_unique=True)
        factor = cholesky_factor(design[train])
        diag = np.abs(np.diag(factor))
        ok = diag > 1e-6 * max(float(diag.max()), 1e-300)
        usable = int(np.argmin(ok)) if not ok.all() else n_cols
        errors = np.full(n_cols, np.inf)
        if usable > 0:
            r_use = factor[:usable, :usable]
            c = solve_triangular(r_use, design[train][:, :usable].T @ targets[train], trans="T", lower=False)
            weights = solve_triangular(r_use, design[val][:, :usable].T, trans="T", lower=False).T
            predictions = np.cumsum(weights * c[None, :], axis=1)
            squared = (targets[val][:, None] - predictions) ** 2
            if row_weights is not None:
                squared *= row_weights[val][:, None]
            errors[:usable] = np.mean(squared, axis=0)
        per_fold.append(errors)
    return np.stack(per_fold)


def stack_curves(curves: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Per-prefix error curves of different lengths as float64[folds, length] (a short curve keeps
    its last value; ``length`` defaults to the longest)."""
    length = length or max(len(c) for c in curves)
    return np.stack([np.concatenate([c[:length], np.full(length - len(c[:length]), c[-1])]) for c in curves])


def nested_prefix_errors(
    masks: np.ndarray,
    targets: np.ndarray,
    fold_rankings: Sequence[Sequence[Subset]],
    folds: Sequence[np.ndarray],
    basis: Basis,
    size: int,
    row_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Nested CV: fold f's validation MSE of every prefix (up to ``size``) of its *own* ranking,
    one built without fold f's rows. Returns float64[folds, size] (see :func:`cv_prefix_errors`).

    The folds' prefixes overlap mostly, so one design matrix of their union serves them all.
    """
    union = list(dict.fromkeys(s for r in fold_rankings for s in r[:size]))
    column = {s: j for j, s in enumerate(union)}
    design = basis_matrix(masks, union, basis)
    return stack_curves(
        [cv_prefix_errors(design[:, [column[s] for s in r[:size]]], targets, [val], row_weights)[0]
         for r, val in zip(fold_rankings, folds)], size)


def mean_curve(curves: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over folds of per-prefix errors of different lengths (see :func:`stack_curves`)."""
    return stack_curves(curves).mean(axis=0)


def nested_pursuit(
    masks: np.ndarray,
    values: np.ndarray,
    basis: Basis,
    pool: Sequence[Subset],
    folds: Sequence[np.ndarray],
    max_terms: int,
    row_weights: np.ndarray | None = None,
    fold_pools: Sequence[Sequence[Subset]] | None = None,
    grow_to: int = 0,
    grow_cells: float = 0.0,
) -> dict[str, object]:
    """Pursuit ranking with an honest support size: the ranking is redone inside every fold.

    A ranking built on all rows has seen the validation rows, so the CV error of its prefixes
    is optimistic; here each fold ranks on its own training rows only, over its own screened
    pool when ``fold_pools`` (one per fold, screened without that fold's rows) are given.
    With ``grow_to`` > 0 the grown candidate (:func:`grown_pursuit_ranking` up to that order
    within ``grow_cells``, every fold's too) is scored as well, starting from the same pursuits.

    Returns:
        ``{"support": [(), ...], "cv_mse": float, "k": int}`` (support from the all-rows ranking),
        and with ``grow_to`` > 0 the grown candidate's own such dict under ``"grown"``.
    """
    def rankings(rows: np.ndarray, rows_pool: Sequence[Subset]) -> list[list[Subset]]:
        start = pursuit_with_residual(masks[rows], values[rows], basis, rows_pool, max_terms)
        if grow_to <= 0:
            return [start[0]]
        return [start[0], grown_pursuit_ranking(masks[rows], values[rows], basis, rows_pool, max_terms, grow_to,
                                                grow_cells, start=start)]

    all_rows = np.arange(len(values))
    curves: list[list[np.ndarray]] = []
    for f, val in enumerate(folds):
        train = np.setdiff1d(all_rows, val, assume_unique=True)
        fold_pool = pool if fold_pools is None else fold_pools[f]
        curves.append([cv_prefix_errors(basis_matrix(masks, ranking, basis), values, [val], row_weights)[0]
                       for ranking in rankings(train, fold_pool)])
    results = []
    for variant, full in enumerate(rankings(all_rows, pool)):
        errors = mean_curve([fold[variant] for fold in curves])
        k = int(np.argmin(errors)) + 1
        results.append({"support": full[:k], "cv_mse": float(errors[k - 1]), "k": min(k, len(full))})
    if grow_to > 0:
        results[0]["grown"] = results[1]
    return results[0]


def lasso_search(
    masks: np.ndarray,
    values: np.ndarray,
    basis: Basis,
    pool: Sequence[Subset],
    folds: Sequence[np.ndarray],
    n_alphas: int = 20,
    fit_intercept: bool = True,
    row_weights: np.ndarray | None = None,
    fold_pools: Sequence[Sequence[Subset]] | None = None,
    tol: float = 1e-3,
) -> dict[str, object]:
    """LASSO over the pool's terms, penalty chosen on ``folds`` (the other candidates' folds).

    The shrunken coefficients are kept as they are (no least-squares refit): at small budgets
    shrinkage is what makes a LASSO generalise, and this candidate is there so the estimator is
    never worse than a LASSO over low orders by more than CV noise.

    Args:
        fit_intercept: with False the model has no constant (the values are a residual that
            must stay exactly 0 where every pool column is 0, e.g. on a removal ladder).
        fold_pools: one pool per fold, screened without that fold's rows: the CV then scores
            the screening too (a pool screened on all rows has seen the validation rows).
        tol: the coordinate descent's tolerance (sklearn's, relative to ``||y||^2``).

    Returns:
        ``{"terms": {subset: coefficient} (constant included if fitted), "cv_mse": float,
        "k": nonzeros, "alpha": the chosen penalty (sklearn's scale, ``||r||^2 / (2 m) + alpha |b|_1``)}``.
    """
    from sklearn.linear_model import lasso_path

    pool = [s for s in pool if s]
    design = basis_matrix(masks, pool, basis)
    centred = design - design.mean(axis=0) if fit_intercept else design
    target = values - values.mean() if fit_intercept else values
    alpha_max = float(np.max(np.abs(centred.T @ target))) / len(values) or 1.0
    # Down to 0.1 % of the largest penalty, as sklearn's LassoCV: with many masks per player the
    # best penalty is near 0 (270 SmolLM2 heads, 4 000 masks: least squares beat a 1 % floor).
    alphas = alpha_max * np.logspace(0, -3, n_alphas)
    all_rows = np.arange(len(values))
    errors = np.zeros(n_alphas)

    def path(columns: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        x_mean, y_mean = columns[rows].mean(axis=0), float(values[rows].mean())
        if not fit_intercept:
            x_mean, y_mean = np.zeros(columns.shape[1]), 0.0
        _, coefs, _ = lasso_path(columns[rows] - x_mean, values[rows] - y_mean, alphas=alphas, max_iter=1000, tol=tol)
        return coefs, x_mean, y_mean  # coefs: [P, n_alphas]

    for f, val in enumerate(folds):
        train = np.setdiff1d(all_rows, val, assume_unique=True)
        columns = design if fold_pools is None else basis_matrix(masks, [s for s in fold_pools[f] if s], basis)
        coefs, x_mean, y_mean = path(columns, train)
        predictions = (columns[val] - x_mean) @ coefs + y_mean
        squared = (values[val][:, None] - predictions) ** 2
        if row_weights is not None:
            squared *= row_weights[val][:, None]
        errors += np.mean(squared, axis=0) / len(folds)
    best = int(np.argmin(errors))
    coefs, x_mean, y_mean = path(design, all_rows)
    beta = coefs[:, best]
    terms: dict[Subset, float] = {(): y_mean - float(x_mean @ beta)} if fit_intercept else {}
    terms.update({pool[j]: float(beta[j]) for j in np.flatnonzero(beta)})
    return {"terms": terms, "cv_mse": float(errors[best]), "k": int(np.count_nonzero(beta)),
            "alpha": float(alphas[best])}


#: Most violators one KKT round of :func:`all_pairs_lasso_path` adds (the largest first): at a
#: small penalty the strong rule can be loose, and the working set should grow no faster than it must.
PAIR_LASSO_ADD = 200
#: :func:`all_pairs_lasso_search` forms the design and runs :func:`lasso_search` while rows x
#: (n + C(n, 2)) stay below this; above it, the working-set path. Measured on planted games: n = 32,
#: 1 000 masks (5e5 cells): 0.07 s formed against 0.13 s; n = 64, 500 masks (1e6 cells): 0.55 s
#: against 0.16 s; n = 64, 1 000 masks: 0.75 s against 0.37 s.
FORMED_PAIRS_MAX_CELLS = 1e6
#: :func:`all_pairs_lasso_search` stops its penalty path once the CV error has risen this many
#: penalties in a row past its lowest.
PAIR_LASSO_RISE_STOP = 3
#: Most centred columns (with their Gram matrix) one :func:`all_pairs_lasso_path` keeps between
#: solves: 2 048 columns hold a 32 MiB Gram matrix and 16 KiB per row of columns, once per CV fold
#: walking the path. Past it the cache keeps only the working set.
PAIR_GRAM_MAX_COLUMNS = 2048


def pair_gradients(factors: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X^T r / m`` for every Fourier column of order 1 and 2, without forming the pair columns.

    A pair column is ``z_i * z_j``, so all pair products at once are ``Z^T diag(r) Z`` (O(m n^2)
    time, O(n^2) memory). Centring the columns changes nothing when ``r`` sums to 0.

    Args:
        factors: float64[m, n], the ±1 single-player Fourier columns.
        residual: float64[m], summing to 0.

    Returns:
        ``(singles float64[n], pairs float64[n, n])``; ``pairs[i, j]`` (i < j) is the pair's.
    """
    m = len(residual)
    return factors.T @ residual / m, factors.T @ (factors * residual[:, None]) / m


def pair_columns(factors: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Columns of features float64[m, F] coded as ``(i, j)`` rows of int[F, 2] (``j = -1``: the single ``i``)."""
    columns = factors[:, features[:, 0]].copy()
    pairs = features[:, 1] >= 0
    columns[:, pairs] *= factors[:, features[pairs, 1]]
    return columns


class _CentredPairColumns:
    """The centred Fourier columns of order 1 and 2 that one LASSO path has used, with their Gram
    matrix and their products with the target, grown as the working set grows.

    A working set's solve needs ``X^T X`` of its p columns (O(m p^2)); successive solves along a
    path share most columns, so each column's products are computed once, when it first joins.
    At most ``PAIR_GRAM_MAX_COLUMNS`` columns are kept (past that, only the current working set).
    """

    def __init__(self, factors: np.ndarray, every: np.ndarray, target: np.ndarray) -> None:
        self.factors, self.every, self.target = factors, every, target
        self.slot = np.full(len(every), -1, dtype=np.int64)  # column index -> its slot
        self.members = np.zeros(0, dtype=np.int64)  # column indices, in slot order
        # Storage with room to grow (doubling), so a join copies only the new columns' products.
        self.rows = np.zeros((0, factors.shape[0]))  # [capacity, m]: slot k's centred column
        self.gram = np.zeros((0, 0))  # [capacity, capacity]
        self.products = np.zeros(0)  # [capacity]: X^T target

    def _reserve(self, size: int) -> None:
        capacity = len(self.products)
        if size <= capacity:
            return
        capacity = min(max(size, 2 * capacity, 64), max(size, PAIR_GRAM_MAX_COLUMNS))
        used = len(self.members)
        rows, gram, products = np.empty((capacity, self.rows.shape[1])), np.empty((capacity, capacity)), \
            np.empty(capacity)
        rows[:used], gram[:used, :used] = self.rows[:used], self.gram[:used, :used]
        products[:used] = self.products[:used]
        self.rows, self.gram, self.products = rows, gram, products

    def _keep_only(self, columns: np.ndarray) -> None:
        slots = self.slot[columns]
        self.slot[self.members] = -1
        k = len(columns)
        self.rows[:k], self.products[:k] = self.rows[slots], self.products[slots]
        self.gram[:k, :k] = self.gram[np.ix_(slots, slots)]
        self.members = columns.copy()
        self.slot[columns] = np.arange(k)

    def add(self, columns: np.ndarray) -> bool:
        """Make sure every column in ``columns`` (indices into ``every``) is kept; False if they do
        not fit the cap together (then nothing kept outside ``columns`` survives)."""
        new = columns[self.slot[columns] < 0]
        if not len(new):
            return True
        if len(self.members) + len(new) > PAIR_GRAM_MAX_COLUMNS:
            self._keep_only(columns[self.slot[columns] >= 0])
            if len(self.members) + len(new) > PAIR_GRAM_MAX_COLUMNS:
                return False
        used, size = len(self.members), len(self.members) + len(new)
        self._reserve(size)
        block = pair_columns(self.factors, self.every[new]).T  # [a, m]
        block -= block.mean(axis=1, keepdims=True)
        self.rows[used:size] = block
        cross = self.rows[:used] @ block.T
        self.gram[:used, used:size], self.gram[used:size, :used] = cross, cross.T
        self.gram[used:size, used:size] = block @ block.T
        self.products[used:size] = block @ self.target
        self.slot[new] = np.arange(used, size)
        self.members = np.concatenate([self.members, new])
        return True

    def solve(self, columns: np.ndarray, alpha: float, coef: np.ndarray, tol: float,
              max_iter: int) -> tuple[np.ndarray, np.ndarray]:
        """sklearn's LASSO at ``alpha`` on the centred ``columns``, warm-started at ``coef``:
        ``(coefficients float64[p], residual float64[m])``. Like sklearn's ``precompute="auto"``,
        the Gram matrix is used while p < m."""
        from sklearn.linear_model import lasso_path

        m = len(self.target)
        if self.add(columns):
            slots = self.slot[columns]
            design = self.rows[slots].T  # [m, p], Fortran order (no copy beyond the gather)
            gram = {"precompute": self.gram[np.ix_(slots, slots)], "Xy": self.products[slots]} if len(columns) < m \
                else {"precompute": False}
            _, path_coefs, _ = lasso_path(design, self.target, alphas=[alpha], coef_init=coef, tol=tol,
                                          max_iter=max_iter, check_input=False, **gram)
        else:  # too many columns to keep: sklearn forms what it needs
            design = pair_columns(self.factors, self.every[columns])
            design -= design.mean(axis=0)
            _, path_coefs, _ = lasso_path(design, self.target, alphas=[alpha], coef_init=coef, tol=tol,
                                          max_iter=max_iter)
        coef = path_coefs[:, 0]
        nonzero = coef != 0.0
        return coef, self.target - design[:, nonzero] @ coef[nonzero]


def all_pairs_lasso_path(
    factors: np.ndarray, values: np.ndarray, alphas: np.ndarray, tol: float = 1e-4, max_iter: int = 3000
) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """LASSO over every Fourier term of order 1 and 2 (an intercept unpenalised), at each penalty.

    The objective is sklearn's, ``||y - c - X b||^2 / (2 m) + alpha ||b||_1``, over all
    ``n + C(n, 2)`` columns, but the ``m x C(n, 2)`` design is never formed: each penalty is
    solved by coordinate descent on a *working set* (the previous penalty's nonzeros plus the
    columns the sequential strong rule keeps, ``|x_j^T r| / m >= 2 alpha - alpha_prev``), then
    every column's optimality condition ``|x_j^T r| / m <= alpha`` is checked at once
    (:func:`pair_gradients`); violators join and it re-solves. So the result is the full LASSO's,
    to the solver's tolerance (tested against sklearn on the formed design), with O(n^2) memory
    per check instead of the formed design's O(m n^2). Each column's Gram entries are computed
    once, when it first joins (:class:`_CentredPairColumns`), not at every re-solve.

    Args:
        factors: float64[m, n], ±1 single-player Fourier columns; values: float64[m].
        alphas: float64[A], decreasing penalties (warm starts follow them).

    Yields:
        Per penalty, in order, ``(intercept, features int[F, 2], coefficients float64[F])``: the
        nonzero terms, a single ``i`` coded ``(i, -1)``, a pair ``(i, j)`` with ``i < j``. A
        generator, so a caller can stop the path once smaller penalties stop helping.
    """
    m, n = factors.shape
    y_mean = float(values.mean())
    target = values - y_mean
    upper = np.triu_indices(n, k=1)
    every = np.concatenate([np.column_stack([np.arange(n), np.full(n, -1)]), np.column_stack(upper)])
    cache = _CentredPairColumns(factors, every, target)
    working = np.zeros(0, dtype=np.int64)  # indices into ``every``
    coef = np.zeros(0)
    residual = target.copy()
    previous = None

    def gradients(r: np.ndarray) -> np.ndarray:
        singles, pairs = pair_gradients(factors, r)
        return np.concatenate([singles, pairs[upper]])

    grad = gradients(residual)
    for alpha in np.asarray(alphas, dtype=np.float64):
        threshold = 2.0 * alpha - (previous if previous is not None else alpha)
        strong = np.flatnonzero(np.abs(grad) >= threshold)
        keep, kept_coef = working[coef != 0.0], coef[coef != 0.0]
        order = np.argsort(-np.abs(grad[strong]), kind="stable")[: max(PAIR_LASSO_ADD, len(keep))]
        working = np.union1d(keep, strong[order])
        coef = np.zeros(len(working))
        coef[np.searchsorted(working, keep)] = kept_coef
        while True:
            if len(working):
                coef, residual = cache.solve(working, alpha, coef, tol, max_iter)
            else:
                residual = target
            grad = gradients(residual)
            outside = np.ones(len(every), dtype=bool)
            outside[working] = False
            # The solver stops at a duality gap of tol ||y||^2, which leaves gradients uncertain to
            # about sqrt(tol) relative: a tighter check re-adds columns the exact solution leaves at 0.
            violators = np.flatnonzero(outside & (np.abs(grad) > alpha * (1.0 + math.sqrt(tol))))
            if not len(violators):
                break
            added = violators[np.argsort(-np.abs(grad[violators]), kind="stable")[:PAIR_LASSO_ADD]]
            merged = np.union1d(working, added)
            grown = np.zeros(len(merged))
            grown[np.searchsorted(merged, working)] = coef
            working, coef = merged, grown
        nonzero = coef != 0.0
        features = every[working[nonzero]]
        beta = coef[nonzero]
        intercept = y_mean - float(pair_columns(factors, features).mean(axis=0) @ beta) if len(beta) else y_mean
        yield intercept, features, beta
        previous = alpha


def all_pairs_lasso_search(
    masks: np.ndarray,
    values: np.ndarray,
    folds: Sequence[np.ndarray],
    n_alphas: int = 20,
    row_weights: np.ndarray | None = None,
    tol: float | None = None,
) -> dict[str, object]:
    """LASSO over *every* Fourier term of order 1 and 2 (no screening), penalty chosen on ``folds``.

    The model class of the ProxySPEX paper's LASSO baseline (all pairs). A design of at most
    ``FORMED_PAIRS_MAX_CELLS`` cells is formed and handed to :func:`lasso_search`; a larger one is
    never formed: :func:`all_pairs_lasso_path` solves it on a working set (O(n^2) memory per
    optimality check), the folds walking the penalty path together until the CV error has risen
    for ``PAIR_LASSO_RISE_STOP`` penalties in a row. Scored like :func:`lasso_search` (same
    penalty grid rule, validation errors weighted by ``row_weights``, shrunken coefficients kept).
    Why: a screened pool can miss the pairs that matter where no player shows them marginally
    (270 SmolLM2 heads, 500 masks drawn like the test masks: the screened pool's LASSO scored
    0.556 on held-out masks, the baseline's all-pairs LASSO 0.638).

    Args:
        masks: bool[m, n]; values: float64[m]; folds: validation row indices.
        n_alphas: penalties, log-spaced from the smallest that zeroes every term down to 0.1 % of it.
        row_weights: float64[m] validation weights (:func:`regime_weights`), or None.
        tol: the coordinate descent's tolerance (sklearn's, relative to ``||y||^2``). None: 1e-3
            on a formed design (as :func:`lasso_search`), 1e-4 on the working set, whose optimality
            check needs the tighter solve (planted n = 270 game, 500 masks: at 1e-3 its loose
            solves admitted twice the terms and took 40 s, against 0.4 s at 1e-4).
            Measured at n = 64 with 1 000 masks, a formed design at 1e-4 took 4.5x as long as at
            1e-3 for the same support and CV error.

    Returns:
        ``{"terms": {subset: coefficient} (constant included), "cv_mse": float, "k": nonzeros,
        "alpha": the chosen penalty}``.
    """
    m, n = masks.shape
    if m * (n + math.comb(n, 2)) <= FORMED_PAIRS_MAX_CELLS:
        # Small enough to form: one sklearn path per fold beats the working set's many small solves.
        return lasso_search(masks, values, "fourier", [(i,) for i in range(n)] + list(combinations(range(n), 2)),
                            folds, n_alphas, row_weights=row_weights, tol=1e-3 if tol is None else tol)
    tol = 1e-4 if tol is None else tol
    factors = 2.0 * np.asarray(masks, dtype=np.float64) - 1.0
    singles, pairs = pair_gradients(factors, values - values.mean())
    alpha_max = max(float(np.max(np.abs(singles))), float(np.max(np.abs(np.triu(pairs, k=1))))) or 1.0
    alphas = alpha_max * np.logspace(0, -3, n_alphas)
    all_rows = np.arange(m)
    trains = [np.setdiff1d(all_rows, val, assume_unique=True) for val in folds]
    paths = [all_pairs_lasso_path(factors[train], values[train], alphas, tol) for train in trains]
    errors: list[float] = []
    # All folds walk the path together; it stops once the CV error has risen for PAIR_LASSO_RISE_STOP
    # penalties in a row past its minimum: below that the LASSO only interpolates (m < C(n, 2)),
    # and those penalties cost the most (the working set nears m columns).
    for _ in alphas:
        error = 0.0
        for val, path in zip(folds, paths):
            intercept, features, beta = next(path)
            squared = (values[val] - intercept - pair_columns(factors[val], features) @ beta) ** 2
            if row_weights is not None:
                squared = squared * row_weights[val]
            error += float(np.mean(squared)) / len(folds)
        errors.append(error)
        if len(errors) - 1 - int(np.argmin(errors)) >= PAIR_LASSO_RISE_STOP:
            break
    best = int(np.argmin(errors))
    *_, (intercept, features, beta) = all_pairs_lasso_path(factors, values, alphas[: best + 1], tol)
    terms: dict[Subset, float] = {(): intercept}
    terms.update({((int(i),) if j < 0 else (int(i), int(j))): float(b) for (i, j), b in zip(features, beta)})
    return {"terms": terms, "cv_mse": float(errors[best]), "k": len(beta), "alpha": float(alphas[best])}


class RidgeSpectrum:
    """One ridge fit's spectrum on training rows: every penalty's coefficients and leave-one-out
    errors from one eigendecomposition (of the p x p Gram matrix when p <= m, else
    of the m x m kernel matrix). With ``centre`` the intercept is unpenalised (columns and
    target centred); without, the model has no intercept (a constant column, if any, is penalised).

    With ``centred = U diag(sqrt(s)) W^T``, the penalty-``alpha`` coefficients are
    ``W diag(sqrt(s) / (s + alpha)) U^T y`` and the hat matrix's diagonal is
    ``1/m + sum_j U_ij^2 s_j / (s_j + alpha)``; ``alpha = inf`` is the constant-only model.

    Args:
        train: float64[m, p] design rows; target: float64[m], or float64[m, B] for B targets
            fitted at once (:meth:`coefficients` only).
        centre: fit an unpenalised intercept.
    """

    def __init__(self, train: np.ndarray, target: np.ndarray, centre: bool = True) -> None:
        self.x_mean = train.mean(axis=0) if centre else np.zeros(train.shape[1])
        self.y_mean = target.mean(axis=0) if centre else np.zeros(target.shape[1:])
        centred = train - self.x_mean
        self.centred_target = target - self.y_mean
        primal = centred.shape[1] <= centred.shape[0]
        eigenvalues, vectors = np.linalg.eigh(centred.T @ centred if primal else centred @ centred.T)
        keep = eigenvalues > 1e-12 * max(float(eigenvalues.max(initial=0.0)), 1e-300)
        self.eigenvalues = eigenvalues[keep]
        root = np.sqrt(self.eigenvalues)
        if primal:  # vectors are the right singular vectors W
            self.right = vectors[:, keep]
            self.left = (centred @ self.right) / root
        else:  # vectors are the left singular vectors U
            self.left = vectors[:, keep]
            self.right = (centred.T @ self.left) / root
        self.projected = self.left.T @ self.centred_target

    def _shrink(self, alpha: float) -> np.ndarray:
        return np.zeros_like(self.eigenvalues) if np.isinf(alpha) else self.eigenvalues / (self.eigenvalues + alpha)

    def coefficients(self, alpha: float) -> tuple[Any, np.ndarray]:
        """``(constant, coefficients)`` at penalty ``alpha``: a float and float64[p] for one
        target, float64[B] and float64[p, B] for B targets (the constant is 0 without ``centre``)."""
        scale = self._shrink(alpha) / np.sqrt(self.eigenvalues)
        beta = self.right @ (scale.reshape(-1, *([1] * (self.projected.ndim - 1))) * self.projected)
        constant = self.y_mean - self.x_mean @ beta
        return (float(constant) if np.ndim(constant) == 0 else constant), beta

    def loo_errors(self, alphas: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(Weighted) mean squared leave-one-out residual of the training rows per penalty, float64[A]
        (one target, fitted with ``centre``: the leverage counts the intercept's 1/m)."""
        m = len(self.centred_target)
        out = np.empty(len(alphas))
        for a, alpha in enumerate(alphas):
            shrink = self._shrink(alpha)
            fitted = self.left @ (shrink * self.projected)
            leverage = 1.0 / m + (self.left**2) @ shrink
            residual = (self.centred_target - fitted) / np.maximum(1.0 - leverage, 1e-12)
            squared = residual**2 if weights is None else weights * residual**2
            out[a] = float(np.mean(squared))
        return out


def ridge_penalties(design: np.ndarray, n_alphas: int = 25) -> np.ndarray:
    """The ridge candidate's penalty grid, float64[n_alphas + 1]: from ~least squares to ~100x the
    mean column energy of the centred ``design`` (log-spaced), then ``inf`` (the constant only)."""
    centred = design - design.mean(axis=0)
    scale = float(np.sum(centred * centred)) / max(design.shape[1], 1) or 1.0
    return np.append(scale * np.logspace(-6, 2, n_alphas), np.inf)


def ridge_search(
    masks: np.ndarray,
    values: np.ndarray,
    basis: Basis,
    terms: Sequence[Subset],
    folds: Sequence[np.ndarray],
    n_alphas: int = 25,
    row_weights: np.ndarray | None = None,
    order_growths: Sequence[float] = (1.0,),
) -> dict[str, object]:
    """Dense ridge regression over every term of ``terms`` (no selection), with an honest CV error.

    The candidate for functions that are *dense* at low order: every player matters a little
    (270 SmolLM2 heads, first order), or every pair does on the log-odds of a saturating head
    set (the trained induction model, order 2). Nothing is ranked or screened from the data; the
    penalty (from :func:`ridge_penalties`, ``inf`` = constant only) is chosen by leave-one-out on
    the training rows of each fold, so the validation rows never choose it (a penalty picked on
    the validation folds themselves made ridge beat the honest candidates on pure noise).

    ``order_growths`` grade the penalty by order: with growth g a term of order k is penalised
    ``alpha * g^(k-1)`` (a ridge on its column scaled by ``g^(-(k-1)/2)``), so higher orders are
    shrunk harder; g is chosen with the penalty, by the same leave-one-out.

    Returns:
        ``{"terms": {subset: coefficient} (the constant included; only it when the infinite
        penalty wins), "cv_mse": float, "k": non-constant terms, "alpha": float | None (None =
        infinite), "fold_alphas": [...]}``.
    """
    terms = [s for s in dict.fromkeys(terms) if s]
    if not terms:
        raise EngineError("ridge_search needs at least one non-constant term")
    orders = np.array([len(t) for t in terms], dtype=np.float64)
    raw = basis_matrix(masks, terms, basis)
    scalings = [float(g) ** (-(orders - 1.0) / 2.0) for g in order_growths]
    designs = [raw * scaling for scaling in scalings]
    alpha_grids = [ridge_penalties(design, n_alphas) for design in designs]

    def best_fit(rows: np.ndarray) -> tuple[int, float, float, np.ndarray]:
        """(growth index, penalty, constant, coefficients of the raw columns), by LOO on ``rows``."""
        weights = None if row_weights is None else row_weights[rows]
        best: tuple[float, int, float, RidgeSpectrum] | None = None
        for g, (design, alphas) in enumerate(zip(designs, alpha_grids)):
            spectrum = RidgeSpectrum(design[rows], values[rows])
            loo = spectrum.loo_errors(alphas, weights)
            i = int(np.argmin(loo))
            if best is None or loo[i] < best[0]:
                best = (float(loo[i]), g, float(alphas[i]), spectrum)
        assert best is not None
        _, g, alpha, spectrum = best
        constant, beta = spectrum.coefficients(alpha)
        return g, alpha, constant, beta * scalings[g]

    all_rows = np.arange(len(values))
    errors, fold_alphas = [], []
    for val in folds:
        train = np.setdiff1d(all_rows, val, assume_unique=True)
        _, alpha, constant, beta = best_fit(train)
        squared = (values[val] - constant - raw[val] @ beta) ** 2
        if row_weights is not None:
            squared = squared * row_weights[val]
        errors.append(float(np.mean(squared)))
        fold_alphas.append(None if np.isinf(alpha) else alpha)
    g, alpha, constant, beta = best_fit(all_rows)
    out: dict[Subset, float] = {(): constant}
    if not np.isinf(alpha):
        out.update({s: float(b) for s, b in zip(terms, beta)})
    return {"terms": out, "cv_mse": float(np.mean(errors)), "k": len(out) - 1,
            "alpha": None if np.isinf(alpha) else alpha, "fold_alphas": fold_alphas,
            "order_growth": float(order_growths[g])}
