"""Sparse interaction representations of a set function over binary masks.

Conventions used throughout :mod:`headspex.engine`:

* A *mask* is a boolean row of length ``n_players``; ``True`` = player kept,
  ``False`` = player ablated (the SPEX / ProxySPEX / shapiq convention).
* **Möbius basis** (AND terms): ``f(x) = sum_S m(S) * prod_{i in S} x_i`` with
  ``x_i in {0, 1}``. ``m`` is the Möbius transform (Harsanyi dividends) of the game
  ``v(T) = f(mask keeping exactly T)``.
* **Fourier basis** (parities): ``f(x) = sum_S F(S) * prod_{i in S} z_i`` with
  ``z_i = 2 x_i - 1 in {-1, +1}`` (kept = +1). ``F(S) = E_x[f(x) prod z_i]`` under
  uniform masks, so ``sum_{S != {}} F(S)^2`` is the variance of ``f`` under uniform masks.
* **Removal basis** (co-Möbius, redundancy): ``f(x) = sum_S r(S) * prod_{i in S} y_i`` with
  ``y_i = 1 - x_i`` (1 = ablated): a term switches on when *all* players of ``S`` are
  ablated. An OR of kept players ``G`` (backup heads: any one suffices) is
  ``1 - prod_{i in G} y_i``, one removal term, where it needs ``2^|G| - 1`` Möbius terms.
  ``r`` is the Möbius transform of ``A -> v(players minus A)`` (the game of ablated sets).

Exact conversions (expand ``z = 2x - 1``, ``x = (1 + z) / 2``, ``x = 1 - y``, ``z = 1 - 2y``)::

    m(T) = 2^|T| * sum_{S ⊇ T} (-1)^{|S|-|T|} F(S)
    F(S) = sum_{T ⊇ S} 2^{-|T|} m(T)
    r(T) = (-1)^|T| * sum_{S ⊇ T} m(S)          m(T) = (-1)^|T| * sum_{S ⊇ T} r(S)
    r(T) = (-2)^|T| * sum_{S ⊇ T} F(S)          F(S) = (-1)^|S| * sum_{T ⊇ S} 2^{-|T|} r(T)
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ..errors import EngineError

Basis = Literal["fourier", "mobius", "removal"]
#: Every basis, in the order estimators try them.
BASES: tuple[Basis, ...] = ("fourier", "mobius", "removal")
Subset = tuple[int, ...]

#: Upper bound on the number of floats materialised at once when building basis matrices
#: (rows x terms); keeps evaluation of 1e5 masks x thousands of terms within ~100 MB.
_MAX_BLOCK_FLOATS = 4_000_000


def _check_basis(basis: str) -> Basis:
    b = basis.lower()
    if b in ("fourier", "parity"):
        return "fourier"
    if b in ("mobius", "moebius", "möbius", "and"):
        return "mobius"
    if b in ("removal", "co-mobius", "comobius", "co-möbius", "or"):
        return "removal"
    raise EngineError(f"unknown basis {basis!r}; expected 'fourier', 'mobius' or 'removal'")


def check_masks(masks: Any, n_players: int | None = None) -> np.ndarray:
    """Validate a mask matrix and return it as ``bool[m, n]``.

    Raises:
        ValueError: if ``masks`` is not a 2-D boolean array, or has the wrong number of columns.
    """
    arr = np.asarray(masks)
    if arr.dtype != np.bool_:
        raise EngineError(
            f"masks must be a boolean array (True = player kept), got dtype {arr.dtype}; "
            "convert with masks.astype(bool) if it holds 0/1 values"
        )
    if arr.ndim != 2:
        raise EngineError(f"masks must be 2-D [n_masks, n_players], got shape {arr.shape}")
    if n_players is not None and arr.shape[1] != n_players:
        raise EngineError(
            f"masks have {arr.shape[1]} columns but the game has n_players={n_players}"
        )
    return arr


def basis_matrix(masks: np.ndarray, subsets: Sequence[Subset], basis: Basis = "fourier") -> np.ndarray:
    """Design matrix of basis functions evaluated on masks.

    Args:
        masks: bool[m, n], True = player kept.
        subsets: T player subsets (sorted int tuples; ``()`` is the constant term).
        basis: ``"fourier"`` (products of ±1 variables), ``"mobius"`` (products of kept
            indicators ``x``) or ``"removal"`` (products of ablated indicators ``y = 1 - x``).

    Returns:
        float64[m, T]; column t is ``prod_{i in subsets[t]} z_i`` (or ``x_i``, or ``y_i``).
    """
    basis = _check_basis(basis)
    masks = np.asarray(masks, dtype=bool)
    m = masks.shape[0]
    variables = masks.astype(np.float64)
    if basis == "fourier":
        variables = 2.0 * variables - 1.0
    elif basis == "removal":
        variables = 1.0 - variables
    out = np.ones((m, len(subsets)), dtype=np.float64)
    # Group the terms by order so each order is a handful of vectorised gathers.
    by_order: dict[int, list[int]] = defaultdict(list)
    for col, subset in enumerate(subsets):
        by_order[len(subset)].append(col)
    for order, cols in by_order.items():
        if order == 0:
            continue
        cols_arr = np.asarray(cols)
        idx = np.asarray([subsets[c] for c in cols], dtype=np.int64)  # [T_k, order]
        block = variables[:, idx[:, 0]]
        for j in range(1, order):
            block *= variables[:, idx[:, j]]
        out[:, cols_arr] = block
    return out


def _all_subsets(subset: Subset) -> Iterable[Subset]:
    for k in range(len(subset) + 1):
        yield from combinations(subset, k)


def fourier_to_mobius_dict(fourier: dict[Subset, float]) -> dict[Subset, float]:
    """Exact sparse Fourier -> Möbius conversion: ``m(T) = 2^|T| sum_{S ⊇ T} (-1)^{|S|-|T|} F(S)``."""
    out: dict[Subset, float] = defaultdict(float)
    for subset, coef in fourier.items():
        s = len(subset)
        for sub in _all_subsets(subset):
            t = len(sub)
            out[sub] += coef * (2.0**t) * (-1.0) ** (s - t)
    return dict(out)


def mobius_to_fourier_dict(mobius: dict[Subset, float]) -> dict[Subset, float]:
    """Exact sparse Möbius -> Fourier conversion: ``F(S) = sum_{T ⊇ S} 2^{-|T|} m(T)``."""
    out: dict[Subset, float] = defaultdict(float)
    for subset, coef in mobius.items():
        weight = coef * 2.0 ** (-len(subset))
        for sub in _all_subsets(subset):
            out[sub] += weight
    return dict(out)


def _superset_sums(terms: dict[Subset, float], weight: Callable[[int, int], float]) -> dict[Subset, float]:
    """``out(T) = sum_{S ⊇ T} weight(|S|, |T|) * terms(S)`` over the subsets T of each stored S."""
    out: dict[Subset, float] = defaultdict(float)
    for subset, coef in terms.items():
        s = len(subset)
        for sub in _all_subsets(subset):
            out[sub] += coef * weight(s, len(sub))
    return dict(out)


def mobius_to_removal_dict(mobius: dict[Subset, float]) -> dict[Subset, float]:
    """Exact sparse Möbius -> removal conversion: ``r(T) = (-1)^|T| sum_{S ⊇ T} m(S)``."""
    return _superset_sums(mobius, lambda s, t: (-1.0) ** t)


def removal_to_mobius_dict(removal: dict[Subset, float]) -> dict[Subset, float]:
    """Exact sparse removal -> Möbius conversion: ``m(T) = (-1)^|T| sum_{S ⊇ T} r(S)``."""
    return _superset_sums(removal, lambda s, t: (-1.0) ** t)


def fourier_to_removal_dict(fourier: dict[Subset, float]) -> dict[Subset, float]:
    """Exact sparse Fourier -> removal conversion: ``r(T) = (-2)^|T| sum_{S ⊇ T} F(S)``."""
    return _superset_sums(fourier, lambda s, t: (-2.0) ** t)


def removal_to_fourier_dict(removal: dict[Subset, float]) -> dict[Subset, float]:
    """Exact sparse removal -> Fourier conversion: ``F(S) = (-1)^|S| sum_{T ⊇ S} 2^{-|T|} r(T)``."""
    return _superset_sums(removal, lambda s, t: (-1.0) ** t * 2.0 ** (-s))


_CONVERSIONS: dict[tuple[str, str], Callable[[dict[Subset, float]], dict[Subset, float]]] = {}


def convert_terms(terms: dict[Subset, float], source: Basis, target: Basis) -> dict[Subset, float]:
    """Exact conversion of sparse terms ``{subset: coef}`` between any two bases.

    Cost: each term of order k expands into its 2^k subsets, so it is meant for low-order
    sparse expansions (a dense order-20 term would expand to a million).
    """
    source, target = _check_basis(source), _check_basis(target)
    if source == target:
        return dict(terms)
    if not _CONVERSIONS:
        _CONVERSIONS.update({
            ("fourier", "mobius"): fourier_to_mobius_dict, ("mobius", "fourier"): mobius_to_fourier_dict,
            ("mobius", "removal"): mobius_to_removal_dict, ("removal", "mobius"): removal_to_mobius_dict,
            ("fourier", "removal"): fourier_to_removal_dict, ("removal", "fourier"): removal_to_fourier_dict,
        })
    return _CONVERSIONS[(source, target)](terms)


class Interactions:
    """A sparse set of interaction terms explaining a function of binary masks.

    Attributes:
        subsets: list of sorted player-index tuples (``()`` = constant term).
        coefficients: float64[T], one coefficient per subset, in ``basis``.
        basis: ``"fourier"``, ``"mobius"`` or ``"removal"`` (see the module docstring).
        n_players: number of players ``n``.
        player_names: list of ``n`` names (default ``"p0" .. "p{n-1}"``).

    Calling the object on ``bool[m, n]`` masks returns the represented function, float64[m].
    """

    def __init__(
        self,
        terms: dict[Subset, float] | Iterable[tuple[Sequence[int], float]],
        n_players: int,
        basis: Basis = "fourier",
        player_names: Sequence[str] | None = None,
        drop_zeros: bool = True,
    ) -> None:
        self.basis: Basis = _check_basis(basis)
        self.n_players = int(n_players)
        if player_names is None:
            player_names = [f"p{i}" for i in range(self.n_players)]
        if len(player_names) != self.n_players:
            raise EngineError(
                f"player_names has {len(player_names)} entries but n_players={self.n_players}"
            )
        self.player_names: list[str] = [str(p) for p in player_names]
        items = terms.items() if isinstance(terms, dict) else terms
        merged: dict[Subset, float] = defaultdict(float)
        for subset, coef in items:
            key = tuple(sorted(int(i) for i in subset))
            if len(set(key)) != len(key):
                raise EngineError(f"subset {subset} repeats a player")
            if key and (key[0] < 0 or key[-1] >= self.n_players):
                raise EngineError(f"subset {subset} has a player outside 0..{self.n_players - 1}")
            merged[key] += float(coef)
        # Canonical order: by order, then lexicographic; makes JSON and comparisons stable.
        keys = sorted(merged, key=lambda k: (len(k), k))
        if drop_zeros:
            keys = [k for k in keys if merged[k] != 0.0 or k == ()]
        self.subsets: list[Subset] = keys
        self.coefficients = np.array([merged[k] for k in keys], dtype=np.float64)
        self._lookup: dict[Subset, int] | None = None

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.subsets)

    def __repr__(self) -> str:
        return (
            f"Interactions(n_players={self.n_players}, basis={self.basis!r}, "
            f"n_terms={len(self)}, max_order={self.max_order})"
        )

    @property
    def max_order(self) -> int:
        """Largest order among the stored terms (0 if only a constant)."""
        return max((len(s) for s in self.subsets), default=0)

    def as_dict(self) -> dict[Subset, float]:
        """``{subset: coefficient}`` in this object's basis."""
        return dict(zip(self.subsets, self.coefficients.tolist()))

    def __getitem__(self, subset: Sequence[int]) -> float:
        """Coefficient of ``subset`` in this object's basis (0.0 if absent)."""
        if self._lookup is None:
            self._lookup = {s: i for i, s in enumerate(self.subsets)}
        idx = self._lookup.get(tuple(sorted(int(i) for i in subset)))
        return 0.0 if idx is None else float(self.coefficients[idx])

    def _new(self, terms: dict[Subset, float], basis: Basis) -> Interactions:
        return Interactions(terms, self.n_players, basis=basis, player_names=self.player_names)

    # ------------------------------------------------------------ conversions
    def to_fourier(self) -> Interactions:
        """Exact conversion to the Fourier (parity, ±1) basis."""
        return self.to_basis("fourier")

    def to_mobius(self) -> Interactions:
        """Exact conversion to the Möbius (AND of kept players, 0/1) basis."""
        return self.to_basis("mobius")

    def to_removal(self) -> Interactions:
        """Exact conversion to the removal (co-Möbius: AND of ablated players) basis."""
        return self.to_basis("removal")

    def to_basis(self, basis: Basis) -> Interactions:
        """Exact conversion to ``basis`` (``self`` when it is already in it)."""
        basis = _check_basis(basis)
        if basis == self.basis:
            return self
        return self._new(convert_terms(self.as_dict(), self.basis, basis), basis)

    def pruned(self, tol: float = 1e-12) -> Interactions:
        """Copy without terms whose |coefficient| <= tol (the constant is always kept)."""
        terms = {s: c for s, c in self.as_dict().items() if abs(c) > tol or s == ()}
        return self._new(terms, self.basis)

    def restricted(self, max_order: int) -> Interactions:
        """Copy keeping only terms of order <= max_order (in this basis)."""
        return self._new({s: c for s, c in self.as_dict().items() if len(s) <= max_order}, self.basis)

    # -------------------------------------------------------------- evaluation
    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Evaluate the represented function.

        Args:
            masks: bool[m, n_players], True = kept.

        Returns:
            float64[m].
        """
        masks = check_masks(masks, self.n_players)
        m = masks.shape[0]
        out = np.empty(m, dtype=np.float64)
        n_terms = max(len(self.subsets), 1)
        rows_per_block = max(1, _MAX_BLOCK_FLOATS // n_terms)
        for start in range(0, m, rows_per_block):
            block = masks[start : start + rows_per_block]
            out[start : start + rows_per_block] = (
                basis_matrix(block, self.subsets, self.basis) @ self.coefficients
            )
        return out

    # ----------------------------------------------------------------- indices
    def banzhaf_values(self) -> np.ndarray:
        """Banzhaf value of each player, float64[n]: ``sum_{T∋i} m(T) / 2^{|T|-1}`` (= 2 F({i}))."""
        return np.array([self.banzhaf_interaction((i,)) for i in range(self.n_players)])

    def shapley_values(self) -> np.ndarray:
        """Shapley value of each player, float64[n]: ``sum_{T∋i} m(T) / |T|``."""
        mob = self.to_mobius()
        out = np.zeros(self.n_players)
        for subset, coef in zip(mob.subsets, mob.coefficients):
            if subset:
                out[list(subset)] += coef / len(subset)
        return out

    def banzhaf_interaction(self, subset: Sequence[int]) -> float:
        """Banzhaf interaction index of ``subset``: ``sum_{T ⊇ S} m(T) / 2^{|T|-|S|}``.

        Equals ``2^{|S|} F(S)`` in the Fourier basis, so it is exact and cheap.
        """
        key = tuple(sorted(int(i) for i in subset))
        return float(2.0 ** len(key) * self.to_fourier()[key])

    def shapley_interaction(self, subset: Sequence[int]) -> float:
        """Shapley interaction index (Grabisch SII) of ``subset``: ``sum_{T ⊇ S} m(T) / (|T|-|S|+1)``."""
        key = set(int(i) for i in subset)
        mob = self.to_mobius()
        total = 0.0
        for s, coef in zip(mob.subsets, mob.coefficients):
            if key.issubset(s):
                total += coef / (len(s) - len(key) + 1)
        return float(total)

    # --------------------------------------------------------------- summaries
    def top(
        self, k: int = 10, basis: Basis = "fourier", min_order: int = 1, max_order: int | None = None
    ) -> list[tuple[tuple[str, ...], Subset, float]]:
        """The ``k`` terms with largest |coefficient| in ``basis``.

        Returns:
            list of ``(player names, player indices, coefficient)``, largest first.
        """
        inter = self.to_basis(basis)
        rows = [
            (s, c)
            for s, c in zip(inter.subsets, inter.coefficients.tolist())
            if len(s) >= min_order and (max_order is None or len(s) <= max_order)
        ]
        rows.sort(key=lambda sc: -abs(sc[1]))
        return [(tuple(self.player_names[i] for i in s), s, c) for s, c in rows[:k]]

    def energy_by_order(self, include_constant: bool = False) -> dict[int, float]:
        """Sum of squared Fourier coefficients per order (variance under uniform masks per order).

        Args:
            include_constant: also report order 0 (the squared mean).
        """
        four = self.to_fourier()
        energy: dict[int, float] = defaultdict(float)
        for s, c in zip(four.subsets, four.coefficients):
            if s or include_constant:
                energy[len(s)] += float(c) ** 2
        return dict(sorted(energy.items()))

    def order_summary(self) -> dict[int, dict[str, float]]:
        """Per order: number of Fourier/Möbius terms, Fourier energy and its share of the variance."""
        four, mob = self.to_fourier(), self.to_mobius()
        energy = self.energy_by_order()
        total = sum(energy.values()) or 1.0
        orders = sorted({len(s) for s in four.subsets} | {len(s) for s in mob.subsets})
        return {
            k: {
                "n_fourier_terms": float(sum(1 for s in four.subsets if len(s) == k)),
                "n_mobius_terms": float(sum(1 for s in mob.subsets if len(s) == k)),
                "energy": energy.get(k, 0.0) if k else float(four[()] ** 2),
                "energy_share": energy.get(k, 0.0) / total if k else 0.0,
            }
            for k in orders
        }

    # ------------------------------------------------------------------ export
    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": "headspex.engine.Interactions/1",
            "basis": self.basis,
            "n_players": self.n_players,
            "player_names": self.player_names,
            "terms": [[list(s), c] for s, c in zip(self.subsets, self.coefficients.tolist())],
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Interactions:
        return cls(
            [(tuple(s), c) for s, c in data["terms"]],
            n_players=data["n_players"],
            basis=data["basis"],
            player_names=data["player_names"],
            drop_zeros=False,
        )

    def save_json(self, path: str | Path) -> None:
        """Write the terms, basis and player names as JSON (floats round-trip exactly)."""
        Path(path).write_text(json.dumps(self.to_json_dict()))

    @classmethod
    def load_json(cls, path: str | Path) -> Interactions:
        """Inverse of :meth:`save_json`."""
        return cls.from_json_dict(json.loads(Path(path).read_text()))

    def to_shapiq(self, index: str = "Moebius", max_order: int | None = None) -> Any:
        """Export as ``shapiq.InteractionValues`` (requires ``pip install shapiq``).

        Args:
            index: ``"Moebius"`` (exact, no conversion) or any index shapiq's
                ``MoebiusConverter`` supports (``"FBII"``, ``"FSII"``, ``"STII"``, ``"SV"``, ``"BV"``...).
                Note shapiq 1.4.1's k-SII conversion is known to be unreliable.
            max_order: order passed to shapiq (default: this object's Möbius max order).
        """
        try:
            from shapiq import InteractionValues
            from shapiq.game_theory.moebius_converter import MoebiusConverter
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("to_shapiq needs shapiq: pip install shapiq") from err
        mob = self.to_mobius()
        order = mob.max_order if max_order is None else max_order
        moebius_values = InteractionValues(
            values=mob.coefficients.copy(),
            index="Moebius",
            max_order=max(order, 1),
            min_order=0,
            n_players=self.n_players,
            interaction_lookup={s: i for i, s in enumerate(mob.subsets)},
            estimated=True,
            baseline_value=float(mob[()]),
        )
        if index.lower() in ("moebius", "mobius"):
            return moebius_values
        return MoebiusConverter(moebius_coefficients=moebius_values)(index=index, order=max(order, 1))


def downward_closure(subsets: Iterable[Subset], max_order: int | None = None) -> set[Subset]:
    """All subsets of the given subsets (including ``()``), optionally capped at ``max_order``."""
    closed: set[Subset] = set()
    for s in subsets:
        s = tuple(sorted(s))
        if max_order is not None and len(s) > max_order:
            continue
        if s in closed:
            continue
        closed.update(_all_subsets(s))
    return closed


def n_terms_up_to_order(n_players: int, max_order: int) -> int:
    """Number of subsets of size 0..max_order of n_players players."""
    return sum(math.comb(n_players, k) for k in range(max_order + 1))


def subsets_up_to_order(n_players: int, max_order: int, min_order: int = 0) -> list[Subset]:
    """All subsets of ``range(n_players)`` with min_order <= size <= max_order, by order then lexicographic."""
    out: list[Subset] = []
    for k in range(min_order, max_order + 1):
        out.extend(combinations(range(n_players), k))
    return out
