"""Exact interactions from every one of the 2^n masks (fast Walsh-Hadamard transform)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Estimator
from ..exact import MAX_DENSE_PLAYERS, all_masks, dense_to_interactions, fourier_transform_dense
from ..interactions import Subset
from ..refit import CoefficientModel
from ...errors import EngineError


class Exhaustive(Estimator):
    """Exact interactions from all 2^n masks (fast Walsh–Hadamard transform); n <= 22.

    ``budget`` may be omitted; if given it must be >= 2^n. ``max_order`` (default: none)
    truncates the returned terms.
    """

    method = "exhaustive"

    def __init__(self, max_order: int | None = None, seed: int | None = 0, tol: float = 0.0) -> None:
        super().__init__(1, seed, 0.0)
        self.max_order = max_order  # type: ignore[assignment]
        self.tol = float(tol)

    def min_samples(self, n_players: int) -> int:
        if n_players > MAX_DENSE_PLAYERS:
            raise EngineError(f"Exhaustive supports n_players <= {MAX_DENSE_PLAYERS}, got {n_players}")
        return 2**n_players

    default_n_test = 0
    default_batch_size = 4096

    def default_budget(self, n_players: int) -> int:
        """All 2^n masks."""
        return self.min_samples(n_players)

    def design(self, n_players: int, budget: int, rng: np.random.Generator) -> np.ndarray:
        return all_masks(n_players)

    def _fit_core(
        self, masks: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Subset, float], dict[str, Any]]:
        m, n = masks.shape
        index = masks.astype(np.int64) @ (1 << np.arange(n, dtype=np.int64))
        if m != 2**n or len(np.unique(index)) != m:
            raise EngineError(f"Exhaustive needs each of the 2^{n} = {2**n} masks exactly once, got {m} rows")
        dense_values = np.empty(m)
        dense_values[index] = values
        dense = fourier_transform_dense(dense_values, n)
        inter = dense_to_interactions(dense, n, "fourier", tol=self.tol, max_order=self.max_order)
        # On all 2^n masks the transform is least squares on its terms (orthogonal columns).
        return inter.as_dict(), {"coefficient_model": CoefficientModel("fourier", tuple(s for s in inter.subsets if s))}
