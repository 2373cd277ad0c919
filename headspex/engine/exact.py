"""Exact transforms by enumerating all 2^n masks (ground truth for small n, e.g. 9-head layers).

Enumeration order (used by :func:`all_masks` and every dense array here): row ``r``
(``0 <= r < 2^n``) keeps player ``i`` iff bit ``i`` of ``r`` is set (little-endian), so
row 0 ablates everyone, row ``2^n - 1`` keeps everyone, and the index of a subset ``S``
is ``sum_{i in S} 2^i``. Dense coefficient arrays use the same indexing by subset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .interactions import Basis, Interactions, _check_basis
from .sampling import evaluate_masks, popcount
from ..errors import EngineError

#: Largest n the dense (all 2^n masks) transforms accept: 2^22 rows x n bools is already ~90 MB.
#: (The attribution runner refuses its exact *method* far earlier, see MAX_EXACT_METHOD_PLAYERS.)
MAX_DENSE_PLAYERS = 22


def all_masks(n_players: int) -> np.ndarray:
    """All 2^n masks, bool[2^n, n]; row ``r`` keeps player ``i`` iff bit ``i`` of ``r`` is 1."""
    if n_players < 0 or n_players > MAX_DENSE_PLAYERS:
        raise EngineError(f"all_masks supports 0 <= n_players <= {MAX_DENSE_PLAYERS}, got {n_players}")
    rows = np.arange(2**n_players, dtype=np.int64)
    return ((rows[:, None] >> np.arange(n_players, dtype=np.int64)[None, :]) & 1).astype(bool)


def subset_index(subset: Sequence[int]) -> int:
    """Row / coefficient index of a subset in the enumeration order (``sum 2^i``)."""
    return int(sum(1 << int(i) for i in subset))


def _popcount(values: np.ndarray) -> np.ndarray:
    return popcount(values)


def _butterfly(values: np.ndarray, n_players: int, combine: Callable[[np.ndarray, np.ndarray], tuple]) -> np.ndarray:
    """In-place style radix-2 transform over the n bit axes of a length-2^n array."""
    out = np.array(values, dtype=np.float64, copy=True)
    for i in range(n_players):
        view = out.reshape(-1, 2, 2**i)  # axis 1 = bit i of the index
        low, high = view[:, 0, :].copy(), view[:, 1, :].copy()
        view[:, 0, :], view[:, 1, :] = combine(low, high)
    return out


def fourier_transform_dense(values: np.ndarray, n_players: int) -> np.ndarray:
    """Fourier coefficients (kept = +1 convention) from values over all masks.

    Args:
        values: float[2^n] in :func:`all_masks` order.

    Returns:
        float64[2^n]; entry ``subset_index(S)`` is ``F(S) = 2^-n sum_x f(x) prod_{i in S} z_i``.
    """
    _check_length(values, n_players)
    # Butterfly with (x=0 -> z=-1, x=1 -> z=+1): per bit, F-part = (high + low), z-part = (high - low).
    out = _butterfly(values, n_players, lambda lo, hi: (hi + lo, hi - lo))
    return out / 2.0**n_players


def inverse_fourier_dense(coefficients: np.ndarray, n_players: int) -> np.ndarray:
    """Values over all masks from dense Fourier coefficients (inverse of :func:`fourier_transform_dense`)."""
    _check_length(coefficients, n_players)
    # Per bit: f(x_i=1) = c0 + c1, f(x_i=0) = c0 - c1.
    return _butterfly(coefficients, n_players, lambda c0, c1: (c0 - c1, c0 + c1))


def mobius_transform_dense(values: np.ndarray, n_players: int) -> np.ndarray:
    """Möbius transform ``m(S) = sum_{T ⊆ S} (-1)^{|S|-|T|} v(T)`` of values over all masks."""
    _check_length(values, n_players)
    return _butterfly(values, n_players, lambda lo, hi: (lo, hi - lo))


def inverse_mobius_dense(coefficients: np.ndarray, n_players: int) -> np.ndarray:
    """Zeta transform ``v(S) = sum_{T ⊆ S} m(T)`` (inverse of :func:`mobius_transform_dense`)."""
    _check_length(coefficients, n_players)
    return _butterfly(coefficients, n_players, lambda lo, hi: (lo, hi + lo))


def removal_transform_dense(values: np.ndarray, n_players: int) -> np.ndarray:
    """Removal (co-Möbius) coefficients ``r(S) = sum_{A ⊆ S} (-1)^{|S|-|A|} v(players minus A)``.

    Args:
        values: float[2^n] in :func:`all_masks` order.

    Returns:
        float64[2^n]; entry ``subset_index(S)`` is ``r(S)``, the coefficient of the term that
        switches on when every player of ``S`` is ablated.
    """
    _check_length(values, n_players)
    # The complement of subset index r is 2^n - 1 - r: reversing the array turns "kept sets"
    # into "ablated sets", whose Möbius transform is the removal transform.
    return mobius_transform_dense(np.asarray(values, dtype=np.float64)[::-1], n_players)


def inverse_removal_dense(coefficients: np.ndarray, n_players: int) -> np.ndarray:
    """Values over all masks from dense removal coefficients (inverse of :func:`removal_transform_dense`)."""
    _check_length(coefficients, n_players)
    return inverse_mobius_dense(coefficients, n_players)[::-1].copy()


def transform_dense(values: np.ndarray, n_players: int, basis: Basis) -> np.ndarray:
    """Dense coefficients of ``values`` (float[2^n], :func:`all_masks` order) in ``basis``."""
    forward = {"fourier": fourier_transform_dense, "mobius": mobius_transform_dense, "removal": removal_transform_dense}
    return forward[_check_basis(basis)](values, n_players)


def inverse_transform_dense(coefficients: np.ndarray, n_players: int, basis: Basis) -> np.ndarray:
    """Values over all masks (float64[2^n]) from dense coefficients in ``basis``."""
    inverse = {"fourier": inverse_fourier_dense, "mobius": inverse_mobius_dense, "removal": inverse_removal_dense}
    return inverse[_check_basis(basis)](coefficients, n_players)


def _check_length(values: np.ndarray, n_players: int) -> None:
    if np.shape(values) != (2**n_players,):
        raise EngineError(
            f"expected values over all 2^{n_players} = {2**n_players} masks, got shape {np.shape(values)}"
        )


def dense_to_interactions(
    coefficients: np.ndarray,
    n_players: int,
    basis: Basis,
    player_names: Sequence[str] | None = None,
    tol: float = 0.0,
    max_order: int | None = None,
) -> Interactions:
    """Sparse :class:`Interactions` from a dense coefficient array (entries with |c| <= tol dropped)."""
    idx = np.nonzero(np.abs(coefficients) > tol)[0]
    if max_order is not None:
        idx = idx[_popcount(idx) <= max_order]
    bits = np.arange(n_players)
    terms = [(tuple(bits[((int(r) >> bits) & 1).astype(bool)].tolist()), float(coefficients[r])) for r in idx]
    return Interactions(terms, n_players, basis=basis, player_names=player_names)


def exact_interactions(
    value_fn: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    n_players: int,
    player_names: Sequence[str] | None = None,
    batch_size: int = 4096,
    basis: Basis = "fourier",
    tol: float = 0.0,
    max_order: int | None = None,
    progress: bool = False,
) -> Interactions:
    """Exact interactions of a function by enumerating all 2^n masks.

    Args:
        value_fn: ``masks bool[m, n] -> float[m]``, or an array float[2^n] of values already
            collected in :func:`all_masks` order.
        n_players: n (<= 22; the cost is 2^n evaluations).
        player_names: optional n names.
        batch_size: rows per call of ``value_fn``.
        basis: basis of the returned object (``"fourier"``, ``"mobius"`` or ``"removal"``); all exact.
        tol: drop coefficients with |c| <= tol (0 keeps every nonzero).
        max_order: optionally drop terms above this order (truncation, no longer exact).
        progress: show a tqdm bar while evaluating.

    Returns:
        :class:`Interactions` in ``basis``.
    """
    basis = _check_basis(basis)
    if callable(value_fn):
        values = evaluate_masks(value_fn, all_masks(n_players), batch_size=batch_size, progress=progress)
    else:
        values = np.asarray(value_fn, dtype=np.float64)
        _check_length(values, n_players)
        if not np.all(np.isfinite(values)):
            raise EngineError("values contain NaN or inf")
    dense = transform_dense(values, n_players, basis)
    return dense_to_interactions(dense, n_players, basis, player_names, tol=tol, max_order=max_order)
