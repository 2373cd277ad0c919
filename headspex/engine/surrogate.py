"""Surrogate search: the keep-set of a given size that maximises a recovered function.

The recovered function (engine :class:`~headspex.engine.Interactions`, any basis) is written
exactly in the Möbius basis over keep-masks, ``f(x) = Σ_S a_S Π_{i∈S} x_i``, and maximised
over ``Σ x = n_keep`` by exhaustive enumeration (small), an exact MILP (scipy's HiGHS), or a
greedy + 1-swap local search (fallback, no optimality guarantee).

Torch-free (numpy / scipy only), so it runs without a model. Mask convention: ``True`` =
kept, ``False`` = removed.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EngineError

SEARCH_METHODS = ("auto", "enumeration", "milp", "local_search")


class SurrogateSolverError(EngineError):
    """The surrogate maximiser was asked for something it cannot do."""


def removal_mask(n_players: int, removed: Iterable[int]) -> np.ndarray:
    """Keep-mask of one removal set: ``bool[n_players]``, False at the removed players."""
    mask = np.ones(n_players, dtype=bool)
    mask[list(removed)] = False
    return mask


@dataclass(frozen=True)
class MobiusPolynomial:
    """``f(x) = Σ_S a_S Π_{i∈S} x_i`` over keep-masks ``x ∈ {0,1}^n`` (x_i = 1: player kept).

    Attributes:
        n_players: n.
        constant: ``a_∅``.
        subsets: the non-empty terms, tuples of sorted player indices.
        coefficients: ``float64[T]`` their coefficients (same units as the value function).
    """

    n_players: int
    constant: float
    subsets: tuple[tuple[int, ...], ...]
    coefficients: np.ndarray

    @classmethod
    def from_interactions(cls, interactions: Any, tol: float = 1e-12) -> "MobiusPolynomial":
        """Convert an engine :class:`~headspex.engine.Interactions` (any basis) exactly."""
        mobius = interactions.to_mobius().as_dict()
        return cls.from_dict(mobius, int(interactions.n_players), tol)

    @classmethod
    def from_dict(cls, terms: Mapping[tuple[int, ...], float], n_players: int, tol: float = 1e-12) -> "MobiusPolynomial":
        """From ``{subset: Möbius coefficient}``; terms with ``|a_S| <= tol`` are dropped."""
        constant = float(terms.get((), 0.0))
        kept = [(tuple(sorted(s)), float(c)) for s, c in terms.items() if s and abs(c) > tol]
        for subset, _ in kept:
            if subset[0] < 0 or subset[-1] >= n_players:
                raise SurrogateSolverError(f"Möbius term {subset} names a player outside 0..{n_players - 1}")
        return cls(n_players, constant, tuple(s for s, _ in kept), np.array([c for _, c in kept], dtype=np.float64))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Evaluate on keep-masks ``bool[m, n]`` → ``float64[m]``."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        if not self.subsets:
            return np.full(masks.shape[0], self.constant)
        # A term is on iff none of its players is removed: count removed members per term.
        incidence = np.zeros((len(self.subsets), self.n_players), dtype=np.float32)
        for row, subset in enumerate(self.subsets):
            incidence[row, list(subset)] = 1.0
        removed_members = incidence @ (~masks).T.astype(np.float32)  # [T, m]
        return self.constant + self.coefficients @ (removed_members == 0)


@dataclass(frozen=True)
class SurrogateSolution:
    """The best keep-set found for one size.

    Attributes:
        keep: sorted player indices kept (``n_keep`` of them).
        predicted: surrogate value at ``keep`` (value-function units).
        method: ``"enumeration"``, ``"milp"`` or ``"local_search"``.
        optimal: True when the method proves optimality (enumeration, or milp status 0).
        seconds: wall time of the solve.
        detail: solver message / fallback reason.
    """

    keep: tuple[int, ...]
    predicted: float
    method: str
    optimal: bool
    seconds: float
    detail: str = ""


def _keep_masks_of_size(n_players: int, n_keep: int) -> Iterator[np.ndarray]:
    """All keep-masks with ``n_keep`` True, in chunks of ``bool[<=50_000, n]``."""
    chunk: list[tuple[int, ...]] = []
    for combo in itertools.combinations(range(n_players), n_keep):
        chunk.append(combo)
        if len(chunk) == 50_000:
            yield _combos_to_masks(chunk, n_players)
            chunk = []
    if chunk:
        yield _combos_to_masks(chunk, n_players)


def _combos_to_masks(combos: Sequence[tuple[int, ...]], n_players: int) -> np.ndarray:
    masks = np.zeros((len(combos), n_players), dtype=bool)
    if combos and combos[0]:
        rows = np.repeat(np.arange(len(combos)), len(combos[0]))
        masks[rows, np.asarray(combos).ravel()] = True
    return masks


def _enumerate(poly: MobiusPolynomial, n_keep: int) -> tuple[tuple[int, ...], float]:
    best_value, best_keep = -math.inf, ()
    for masks in _keep_masks_of_size(poly.n_players, n_keep):
        values = poly(masks)
        # First index of the max: ties go to the lexicographically first keep-set (deterministic).
        row = int(np.argmax(values))
        if values[row] > best_value + 1e-12:
            best_value, best_keep = float(values[row]), tuple(np.flatnonzero(masks[row]).tolist())
    return best_keep, best_value


def _local_search(poly: MobiusPolynomial, n_keep: int, start: Sequence[int] | None = None, max_rounds: int = 200) -> tuple[tuple[int, ...], float]:
    """Greedy build-up then best-improvement 1-swap hill climbing (no optimality guarantee)."""
    n = poly.n_players
    if start is None:
        # Greedy removal on the surrogate from the full set: at each step drop the player
        # whose removal leaves the highest predicted value.
        keep = np.ones(n, dtype=bool)
        for _ in range(n - n_keep):
            candidates = np.flatnonzero(keep)
            trial = np.repeat(keep[None], len(candidates), axis=0)
            trial[np.arange(len(candidates)), candidates] = False
            keep = trial[int(np.argmax(poly(trial)))]
    else:
        keep = np.zeros(n, dtype=bool)
        keep[list(start)] = True
    value = float(poly(keep[None])[0])
    for _ in range(max_rounds):
        kept, dropped = np.flatnonzero(keep), np.flatnonzero(~keep)
        if len(kept) == 0 or len(dropped) == 0:
            break
        pairs = [(i, j) for i in kept for j in dropped]
        trial = np.repeat(keep[None], len(pairs), axis=0)
        index = np.arange(len(pairs))
        trial[index, [p[0] for p in pairs]] = False
        trial[index, [p[1] for p in pairs]] = True
        values = poly(trial)
        row = int(np.argmax(values))
        if values[row] <= value + 1e-12:
            break
        keep, value = trial[row], float(values[row])
    return tuple(np.flatnonzero(keep).tolist()), value


def _milp(poly: MobiusPolynomial, n_keep: int, time_limit_s: float) -> tuple[tuple[int, ...] | None, float, int, str]:
    """Solve ``max f(x) s.t. Σx = n_keep`` with scipy's HiGHS MILP.

    Each Möbius product of order ≥ 2 gets a continuous ``y_S ∈ [0, 1]`` with
    ``y_S ≤ x_i`` (i ∈ S) and ``y_S ≥ Σ_{i∈S} x_i − |S| + 1``; for binary ``x`` these force
    ``y_S = Π x_i`` exactly, so ``y`` need not be declared integer.

    Returns:
        (keep or None, surrogate value, scipy status, message).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    n = poly.n_players
    higher = [(s, c) for s, c in zip(poly.subsets, poly.coefficients) if len(s) >= 2]
    n_vars = n + len(higher)
    objective = np.zeros(n_vars)
    for subset, coef in zip(poly.subsets, poly.coefficients):
        if len(subset) == 1:
            objective[subset[0]] -= coef  # milp minimises
    rows, cols, vals, lower, upper = [], [], [], [], []
    row = 0
    # Cardinality: Σ x_i = n_keep.
    rows += [row] * n
    cols += list(range(n))
    vals += [1.0] * n
    lower.append(n_keep)
    upper.append(n_keep)
    row += 1
    for t, (subset, coef) in enumerate(higher):
        y = n + t
        objective[y] = -coef
        for i in subset:  # y_S - x_i <= 0
            rows += [row, row]
            cols += [y, i]
            vals += [1.0, -1.0]
            lower.append(-np.inf)
            upper.append(0.0)
            row += 1
        # y_S - Σ x_i >= 1 - |S|
        rows += [row] * (len(subset) + 1)
        cols += [y, *subset]
        vals += [1.0] + [-1.0] * len(subset)
        lower.append(1.0 - len(subset))
        upper.append(np.inf)
        row += 1
    matrix = coo_matrix((vals, (rows, cols)), shape=(row, n_vars)).tocsr()
    integrality = np.concatenate([np.ones(n), np.zeros(len(higher))])
    result = milp(
        objective,
        constraints=LinearConstraint(matrix, np.array(lower), np.array(upper)),
        integrality=integrality,
        bounds=Bounds(np.zeros(n_vars), np.ones(n_vars)),
        options={"time_limit": float(time_limit_s), "disp": False},
    )
    if result.x is None:
        return None, -math.inf, int(result.status), str(result.message)
    keep_mask = result.x[:n] > 0.5
    if int(keep_mask.sum()) != n_keep:
        return None, -math.inf, int(result.status), f"rounded solution has {int(keep_mask.sum())} kept, not {n_keep}"
    keep = tuple(np.flatnonzero(keep_mask).tolist())
    # Re-score with the polynomial itself (no LP tolerance in the reported value).
    return keep, float(poly(keep_mask[None])[0]), int(result.status), str(result.message)


def maximise_surrogate(
    surrogate: Any,
    n_keep: int,
    *,
    method: str = "auto",
    max_enumeration: int = 200_000,
    time_limit_s: float = 60.0,
) -> SurrogateSolution:
    """The keep-set of size ``n_keep`` that maximises a recovered function.

    Args:
        surrogate: engine ``Interactions`` (any basis) or a :class:`MobiusPolynomial`.
        n_keep: number of players kept (0..n).
        method: ``"auto"`` (enumerate when ``C(n, n_keep) <= max_enumeration``, else MILP),
            ``"enumeration"``, ``"milp"`` or ``"local_search"``.
        max_enumeration: largest number of keep-sets ``"auto"`` enumerates.
        time_limit_s: MILP time limit (seconds). If HiGHS stops without a proven optimum,
            the better of its incumbent and a greedy + 1-swap local search is returned with
            ``optimal=False``; if it returns no solution, the local search result is returned.

    Returns:
        :class:`SurrogateSolution`.
    """
    poly = surrogate if isinstance(surrogate, MobiusPolynomial) else MobiusPolynomial.from_interactions(surrogate)
    n = poly.n_players
    if not 0 <= n_keep <= n:
        raise SurrogateSolverError(f"n_keep must be in [0, {n}]; got {n_keep}")
    if method not in SEARCH_METHODS:
        raise SurrogateSolverError(f"Unknown method '{method}'; use auto, enumeration, milp or local_search")
    start = time.perf_counter()
    if method == "auto":
        method = "enumeration" if math.comb(n, n_keep) <= max_enumeration else "milp"
    if method == "enumeration":
        keep, value = _enumerate(poly, n_keep)
        return SurrogateSolution(keep, value, "enumeration", True, time.perf_counter() - start, f"{math.comb(n, n_keep)} keep-sets")
    if method == "local_search":
        keep, value = _local_search(poly, n_keep)
        return SurrogateSolution(keep, value, "local_search", False, time.perf_counter() - start, "greedy + 1-swap")
    keep_milp, value_milp, status, message = _milp(poly, n_keep, time_limit_s)
    if keep_milp is not None and status == 0:
        return SurrogateSolution(keep_milp, value_milp, "milp", True, time.perf_counter() - start, message)
    keep_ls, value_ls = _local_search(poly, n_keep, start=keep_milp)
    if keep_milp is None:
        detail = f"milp returned no solution (status {status}: {message}); local search used"
    else:
        detail = f"milp stopped without proof (status {status}: {message}); incumbent polished by local search"
    return SurrogateSolution(keep_ls, value_ls, "local_search", False, time.perf_counter() - start, detail)

