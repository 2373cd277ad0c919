"""Baselines: a marginal linear model, Faith-Banzhaf regression, and LASSO on Fourier terms."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Estimator
from ..candidates import least_squares
from ..interactions import Subset, basis_matrix, n_terms_up_to_order, subsets_up_to_order
from ..sampling import NEAR_FULL_KEEP
from ..search import ALL_PAIRS_MAX_CELLS


class LinearBanzhaf(Estimator):
    """Marginal linear model (LIME-like): least squares on first-order Fourier terms.

    Under uniform masks the slope of player i is F({i}) = Banzhaf value / 2.
    """

    method = "linear_banzhaf"

    def __init__(self, seed: int | None = 0, near_full_fraction: float = 0.0, near_full_keep: float = NEAR_FULL_KEEP) -> None:
        super().__init__(1, seed, near_full_fraction, near_full_keep)

    def min_samples(self, n_players: int) -> int:
        return n_players + 1  # unknowns: constant + one slope per player

    def _fit_core(
        self, masks: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Subset, float], dict[str, Any]]:
        subsets = subsets_up_to_order(masks.shape[1], 1)
        beta = least_squares(basis_matrix(masks, subsets, "fourier"), values)
        return dict(zip(subsets, beta.tolist())), {}


class FaithBanzhaf(Estimator):
    """Faith-Banzhaf-style regression: least squares on *all* Fourier terms up to ``max_order``.

    Under uniform masks the least-squares solution is the Fourier truncation (the Faith-Banzhaf
    interaction index of order ``max_order``). Needs at least as many samples as unknowns.
    """

    method = "faith_banzhaf"

    def __init__(self, max_order: int = 2, seed: int | None = 0, near_full_fraction: float = 0.0,
                 near_full_keep: float = NEAR_FULL_KEEP) -> None:
        super().__init__(max_order, seed, near_full_fraction, near_full_keep)

    def min_samples(self, n_players: int) -> int:
        return n_terms_up_to_order(n_players, self.max_order)

    def _fit_core(
        self, masks: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Subset, float], dict[str, Any]]:
        subsets = subsets_up_to_order(masks.shape[1], self.max_order)
        beta = least_squares(basis_matrix(masks, subsets, "fourier"), values)
        return dict(zip(subsets, beta.tolist())), {"n_unknowns": len(subsets)}


class LassoRegression(Estimator):
    """LASSO on all Fourier terms up to ``max_order`` (the ProxySPEX paper's main baseline).

    The penalty is chosen by ``cv``-fold cross-validation (sklearn ``LassoCV``). When the design
    would exceed ``max_design_floats`` entries, the order is lowered (down to first order for
    large n) and the order used is reported in the diagnostics.
    """

    method = "lasso"
    # Sparse recovery: LassoCV is meant to work with fewer samples than unknowns.
    identifies_every_player = False

    def __init__(self, max_order: int = 2, seed: int | None = 0, cv: int = 3, n_alphas: int = 30,
                 max_design_floats: float = ALL_PAIRS_MAX_CELLS, near_full_fraction: float = 0.0,
                 near_full_keep: float = NEAR_FULL_KEEP, link: str = "identity") -> None:
        super().__init__(max_order, seed, near_full_fraction, near_full_keep, link)
        self.cv = int(cv)
        self.n_alphas = int(n_alphas)
        self.max_design_floats = float(max_design_floats)

    def min_samples(self, n_players: int) -> int:
        return 3 * self.cv

    def _fit_core(
        self, masks: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Subset, float], dict[str, Any]]:
        from sklearn.linear_model import LassoCV

        m, n = masks.shape
        order = self.max_order
        while order > 1 and m * (n_terms_up_to_order(n, order) - 1) > self.max_design_floats:
            order -= 1
        subsets = subsets_up_to_order(n, order, min_order=1)
        design = basis_matrix(masks, subsets, "fourier")
        lasso = LassoCV(alphas=self.n_alphas, cv=self.cv, max_iter=3000, random_state=self.seed, n_jobs=1)
        lasso.fit(design, values)
        terms = {s: c for s, c in zip(subsets, lasso.coef_.tolist()) if c != 0.0}
        terms[()] = float(lasso.intercept_)
        return terms, {"order_used": order, "alpha": float(lasso.alpha_)}
