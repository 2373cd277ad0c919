"""Verify and refine: the surrogate proposes, real evaluations decide, the surrogate is refitted.

For each removal count k, :class:`VerifyRefineStrategy`

1. asks the current surrogate for its ``pool_size`` best removal sets
   (:func:`~headspex.engine.surrogate.top_surrogate_solutions`: exact enumeration or MILP with
   no-good cuts), and evaluates them on the attribution game;
2. refits the surrogate on every real evaluation so far (the attribution samples plus its own);
3. local search with real evaluations: from the best set evaluated, the 1-swaps (put back one
   removed player, remove one kept one) are ranked by the refitted surrogate and the top
   ``swap_batch`` evaluated; move when one is better, refit, repeat;
4. returns the removal set with the best *real* value among everything evaluated of size k.

Budget-capped: at most ``budget_per_k`` new evaluations per k (masks already evaluated, by
the attribution or an earlier step, are looked up, not re-evaluated, and cost nothing). The
refit carries over to the next k, so the cost of k counts everything spent up to k
(``nested_cost``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..engine.surrogate import removal_mask, top_surrogate_solutions
from ..types import ValueFunction
from .errors import PruningError
from .strategies import RemovalStrategy

#: ``fit(masks bool[m, n], values float[m]) -> Interactions`` (any basis).
SurrogateFitter = Callable[[np.ndarray, np.ndarray], Any]


class VerifyRefineStrategy(RemovalStrategy):
    """Surrogate-proposed pools, verified and improved with real evaluations (see the module).

    Args:
        value_fn: the attribution game ``bool[m, n] -> float[m]``.
        masks, values: evaluations already made (the attribution samples), ``bool[m, n]``, ``float[m]``.
        fit: the surrogate fitter, refitted on all evaluations after each batch.
        budget_per_k: most new evaluations per k (pool included).
        pool_size: surrogate proposals evaluated first; swap_batch: swaps evaluated per round.
        max_enumeration, time_limit_s: passed to the surrogate search.
    """

    name = "verify_refine"
    nested_cost = True

    def __init__(self, value_fn: ValueFunction, masks: np.ndarray, values: np.ndarray, fit: SurrogateFitter, *,
                 budget_per_k: int = 24, pool_size: int = 8, swap_batch: int = 4, max_enumeration: int = 200_000,
                 time_limit_s: float = 60.0, name: str | None = None) -> None:
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        values = np.asarray(values, dtype=np.float64)
        if len(masks) != len(values) or len(masks) == 0:
            raise PruningError(f"verify_refine needs matching, non-empty masks and values; got {len(masks)} and {len(values)}")
        if min(budget_per_k, pool_size, swap_batch) < 1:
            raise PruningError("budget_per_k, pool_size and swap_batch must be >= 1")
        super().__init__(masks.shape[1], name)
        self.value_fn, self.fit = value_fn, fit
        self.budget_per_k, self.pool_size, self.swap_batch = budget_per_k, pool_size, swap_batch
        self.max_enumeration, self.time_limit_s = max_enumeration, time_limit_s
        self.known: dict[bytes, float] = {}
        for mask, value in zip(masks, values):
            self.known[np.packbits(mask).tobytes()] = float(value)
        self.known_masks = [m for m in masks]
        self.surrogate = fit(masks, values)
        self.n_refits = 0
        self.trace: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------------ evaluations
    def _key(self, removed: Iterable[int]) -> bytes:
        return np.packbits(removal_mask(self.n_players, removed)).tobytes()

    def _evaluate(self, removal_sets: list[tuple[int, ...]], spent: int) -> int:
        """Evaluate the unknown sets among ``removal_sets`` (at most the budget left); returns new spent."""
        new, seen = [], set()
        for removed in removal_sets:
            key = self._key(removed)
            if key not in self.known and key not in seen and spent + len(new) < self.budget_per_k:
                new.append(removed)
                seen.add(key)
        if new:
            masks = np.stack([removal_mask(self.n_players, r) for r in new])
            values = np.asarray(self.value_fn(masks), dtype=np.float64)
            for mask, value in zip(masks, values):
                self.known[np.packbits(mask).tobytes()] = float(value)
                self.known_masks.append(mask)
            self._refit()
        return spent + len(new)

    def _refit(self) -> None:
        masks = np.stack(self.known_masks)
        values = np.array([self.known[np.packbits(m).tobytes()] for m in masks])
        self.surrogate = self.fit(masks, values)
        self.n_refits += 1

    def _best_known(self, k: int) -> tuple[tuple[int, ...], float] | None:
        best = None
        for mask in self.known_masks:
            if int((~mask).sum()) == k:
                value = self.known[np.packbits(mask).tobytes()]
                removed = tuple(np.flatnonzero(~mask).tolist())
                if best is None or value > best[1] + 1e-15 or (abs(value - best[1]) <= 1e-15 and removed < best[0]):
                    best = (removed, value)
        return best

    # ------------------------------------------------------------------ the search
    def _swaps(self, removed: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The 1-swaps of ``removed``, unknown ones only, best predicted first."""
        kept = [i for i in range(self.n_players) if i not in removed]
        swaps = [tuple(sorted((set(removed) - {out}) | {into})) for out in removed for into in kept]
        swaps = [s for s in swaps if self._key(s) not in self.known]
        if not swaps:
            return []
        predicted = np.asarray(self.surrogate(np.stack([removal_mask(self.n_players, s) for s in swaps])))
        return [swaps[i] for i in np.argsort(-predicted, kind="stable")]

    def _choose(self, k_remove: int) -> Iterable[int]:
        n_keep = self.n_players - k_remove
        pool = top_surrogate_solutions(self.surrogate, n_keep, self.pool_size, max_enumeration=self.max_enumeration,
                                       time_limit_s=self.time_limit_s)
        proposals = [tuple(i for i in range(self.n_players) if i not in set(s.keep)) for s in pool]
        spent = self._evaluate(proposals, 0)
        best = self._best_known(k_remove)
        if best is None:  # nothing of size k known and no budget: the surrogate's argmax
            return proposals[0]
        moves = 0
        while spent < self.budget_per_k:
            swaps = self._swaps(best[0])
            if not swaps:
                break  # every neighbour is evaluated: a verified local optimum
            spent = self._evaluate(swaps[: self.swap_batch], spent)
            candidate = self._best_known(k_remove)
            if candidate is not None and candidate[1] > best[1] + 1e-15:
                best, moves = candidate, moves + 1
        self.trace[k_remove] = {"spent": spent, "moves": moves, "best_value": best[1],
                                "pool_predicted": [s.predicted for s in pool], "pool_optimal": all(s.optimal for s in pool)}
        return best[0]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "budget_per_k": self.budget_per_k, "pool_size": self.pool_size,
                "swap_batch": self.swap_batch, "n_refits": self.n_refits,
                "trace": {str(k): v for k, v in sorted(self.trace.items())}}
