"""Synthetic value functions with planted interactions (for tests and the benchmark).

Families:

* ``and`` — sum of AND terms (Möbius basis) on random player subsets (non-hierarchical: a
  term's subsets are not planted).
* ``and_hier`` — AND terms whose subsets are planted too (hierarchical support).
* ``parity`` — sum of parities (Fourier basis) on random subsets, no lower-order terms: the
  hard case for tree proxies (no marginal signal).
* ``logsigmoid`` — ``log sigmoid(a + sparse AND sum)``: saturating, like a log-probability.
* ``or`` — redundancy: each group of 2-4 players contributes its weight if *any* member is
  kept (OR), as with redundant heads.
* ``redundancy`` — backup heads: ``n_terms`` OR groups of 2-6 kept players (``max_order``
  caps the size) plus as many single-player additive terms; one removal term per group, so
  ``truth`` is exact in the removal basis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .interactions import Interactions, Subset, check_masks
from ..errors import EngineError


@dataclass
class PlantedGame:
    """A callable ``bool[m, n] -> float[m]`` with known structure.

    Attributes:
        truth: noiseless function as :class:`Interactions` when it is a sparse polynomial
            (``None`` for non-polynomial families).
        truth_basis: basis in which ``truth`` is sparse (support metrics are computed there).
    """

    family: str
    n_players: int
    noise: float
    seed: int
    truth: Interactions | None
    truth_basis: str
    terms: list[tuple[Subset, float]]
    offset: float = 0.0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng([self.seed, 99])
        self.n_calls = 0

    def noiseless(self, masks: np.ndarray) -> np.ndarray:
        """Noiseless value, float64[m]."""
        masks = check_masks(masks, self.n_players)
        x = masks
        if self.family == "redundancy":
            total = np.zeros(len(x))
            for subset, coef in self.terms:
                total += coef * np.any(x[:, list(subset)], axis=1)
            return total
        if self.family in ("and", "and_hier", "parity"):
            assert self.truth is not None
            return self.truth(masks)
        if self.family == "logsigmoid":
            total = np.full(len(x), self.offset)
            for subset, coef in self.terms:
                total += coef * np.all(x[:, list(subset)], axis=1)
            return -np.logaddexp(0.0, -total)
        if self.family == "or":
            total = np.full(len(x), self.offset)
            for subset, coef in self.terms:
                total += coef * np.any(x[:, list(subset)], axis=1)
            return total
        raise EngineError(f"unknown family {self.family!r}")

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        values = self.noiseless(masks)
        self.n_calls += len(values)
        if self.noise > 0:
            values = values + self.noise * self._rng.standard_normal(len(values))
        return values


def _random_subset(rng: np.random.Generator, n: int, order: int) -> Subset:
    return tuple(sorted(rng.choice(n, size=order, replace=False).tolist()))


def _coefficient(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5))


def planted_game(
    family: str, n_players: int, n_terms: int, max_order: int = 3, noise: float = 0.0, seed: int = 0
) -> PlantedGame:
    """Build a planted game (see module docstring for the families).

    Args:
        n_terms: number of planted terms s (for ``and_hier``: number of top terms, each
            planted with all its subsets, so the support is larger).
        max_order: orders of planted terms are drawn uniformly from 1..max_order.
        noise: standard deviation of Gaussian noise added to each evaluation.
    """
    rng = np.random.default_rng(seed)
    terms: dict[Subset, float] = {}
    orders = rng.integers(1, max_order + 1, size=n_terms)
    if family in ("and", "parity", "logsigmoid"):
        for k in orders:
            subset = _random_subset(rng, n_players, int(k))
            while subset in terms:
                subset = _random_subset(rng, n_players, int(k))
            terms[subset] = _coefficient(rng)
    elif family == "and_hier":
        for k in orders:
            subset = _random_subset(rng, n_players, int(k))
            for size in range(1, len(subset) + 1):
                for sub in _subsets_of_size(subset, size):
                    terms.setdefault(sub, _coefficient(rng) / size)
    elif family == "redundancy":
        for _ in range(n_terms):
            size = int(rng.integers(2, max(max_order, 2) + 1))
            terms[_random_subset(rng, n_players, size)] = abs(_coefficient(rng))
        for _ in range(n_terms):
            single = _random_subset(rng, n_players, 1)
            while single in terms:
                single = _random_subset(rng, n_players, 1)
            terms[single] = 0.5 * _coefficient(rng)
    elif family == "or":
        for _ in range(n_terms):
            size = int(rng.integers(2, max(max_order, 2) + 1))
            terms[_random_subset(rng, n_players, size)] = abs(_coefficient(rng))
    else:
        raise EngineError(f"unknown family {family!r}")
    term_list = list(terms.items())
    truth: Interactions | None = None
    basis = "mobius"
    offset = 0.0
    if family in ("and", "and_hier"):
        truth = Interactions(terms, n_players, basis="mobius")
    elif family == "parity":
        truth = Interactions(terms, n_players, basis="fourier")
        basis = "fourier"
    elif family == "redundancy":
        # OR of group G = 1 - [all of G ablated]; a single kept player x_i = 1 - [i ablated].
        removal: dict[Subset, float] = {(): sum(terms.values())}
        for subset, coef in term_list:
            removal[subset] = removal.get(subset, 0.0) - coef
        truth = Interactions(removal, n_players, basis="removal")
        basis = "removal"
    elif family == "logsigmoid":
        # Centre the sum so the sigmoid is in its bend and saturates for large sums.
        offset = -0.5 * sum(c * 0.5 ** len(s) for s, c in term_list)
    return PlantedGame(family, n_players, noise, seed, truth, basis, term_list, offset)


def _subsets_of_size(subset: Subset, size: int) -> list[Subset]:
    from itertools import combinations

    return list(combinations(subset, size))


def support_metrics(recovered: Interactions, truth: Interactions, rel_threshold: float = 0.1) -> dict[str, float]:
    """Precision / recall of the recovered support in ``truth``'s basis.

    A recovered term counts if |coef| >= ``rel_threshold`` x (smallest planted |coef|).
    """
    truth_terms = {s for s in truth.subsets if s}
    threshold = rel_threshold * min(abs(c) for s, c in truth.as_dict().items() if s)
    rec = recovered.to_basis(truth.basis)
    found = {s for s, c in rec.as_dict().items() if s and abs(c) >= threshold}
    hits = len(found & truth_terms)
    return {
        "precision": hits / len(found) if found else 0.0,
        "recall": hits / len(truth_terms) if truth_terms else 1.0,
    }
