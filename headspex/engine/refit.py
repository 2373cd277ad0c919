"""A fit's last step with what the data chose held fixed, for bootstrap refits.

A ProxySPEX fit chooses a candidate, its terms and its penalty from the data, then computes the
coefficients: least squares, a ridge at a penalty (graded by order for ``ridge3``), a LASSO at
a penalty, or the removal ladder's exact terms plus a fit of the residual. A
:class:`CoefficientModel` records that last step (basis, fitted columns, penalty), so that
:meth:`CoefficientModel.fit` applies the *same* estimator to other targets (questions
resampled) or other rows (masks resampled): the bootstrap of the estimator that produced the
estimate, conditional on its selection. A least-squares refit of the estimate's Fourier terms
is that estimator only for a least-squares winner in the Fourier basis; for a ridge over more
terms than masks it returns minimum-norm solutions far from the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, NamedTuple

import numpy as np

from .anchored import detect_ladder, ladder_inversion
from .candidates import RidgeSpectrum, least_squares
from .interactions import Basis, Subset, _check_basis, basis_matrix, convert_terms
from ..errors import EngineError

#: The coefficient steps a model can repeat.
PENALTIES = ("none", "ridge", "lasso")
#: Tolerance of the LASSO refits (sklearn's, relative to ``||y||^2``): tight, so that a refit
#: of the estimate's own targets lands on the penalised optimum the estimate approximates.
REFIT_LASSO_TOL = 1e-10


class Refit(NamedTuple):
    """What :meth:`CoefficientModel.fit` returns.

    Attributes:
        coefficients: float64[P, B], one column per target, rows as :meth:`CoefficientModel.parameters`.
        rank: rank of the fitted columns' design on the rows they were fitted on (the constant
            column included when the model has an intercept).
        n_fitted: columns fitted on those rows (the constant included): the design identifies
            them when ``rank == n_fitted``.
    """

    coefficients: np.ndarray
    rank: int
    n_fitted: int


@dataclass(frozen=True)
class CoefficientModel:
    """The coefficient step of a fit, with its selection and penalty fixed.

    Attributes:
        basis: basis of the fitted columns.
        columns: the fitted terms in ``basis`` (sorted tuples). ``()`` may be one of them when
            ``intercept`` is False (then it is penalised like the others).
        penalty: ``"none"`` (least squares), ``"ridge"`` (``||r||^2 + alpha ||b||^2`` on the
            columns scaled by ``order_growth^(-(order - 1) / 2)``, i.e. a penalty
            ``alpha * order_growth^(order - 1)`` per term) or ``"lasso"``
            (``||r||^2 / (2 rows) + alpha ||b||_1``, sklearn's scale).
        alpha: the penalty (0 for ``"none"``).
        order_growth: the ridge's penalty growth per order (1 = flat).
        intercept: an unpenalised constant is fitted besides the columns.
        ladder_order: K >= 1 for the anchored removal fit: the removal terms of order <= K are
            the exact Möbius inversion of the rows ablating at most K players (the ladder, all
            of which must be among the rows), and ``columns`` are fitted, without intercept, to
            the residual on the other rows. 0: no ladder.
    """

    basis: Basis
    columns: tuple[Subset, ...]
    penalty: str = "none"
    alpha: float = 0.0
    order_growth: float = 1.0
    intercept: bool = True
    ladder_order: int = 0

    def __post_init__(self) -> None:
        _check_basis(self.basis)
        if self.penalty not in PENALTIES:
            raise EngineError(f"penalty must be one of {PENALTIES}, got {self.penalty!r}")
        if self.penalty != "none" and not (np.isfinite(self.alpha) and self.alpha > 0):
            raise EngineError(f"a {self.penalty} model needs a finite penalty alpha > 0, got {self.alpha!r}")
        if self.ladder_order and (self.basis != "removal" or self.intercept):
            raise EngineError("a ladder model fits removal columns without intercept")
        if self.intercept and () in self.columns:
            raise EngineError("the constant is either the intercept or a column, not both")

    # ----------------------------------------------------------------------------- layout
    def ladder_terms(self, n_players: int) -> list[Subset]:
        """The removal terms the ladder fixes: every subset of order <= ``ladder_order``."""
        return [s for k in range(self.ladder_order + 1) for s in combinations(range(n_players), k)] \
            if self.ladder_order else []

    def parameters(self, n_players: int) -> list[Subset]:
        """Rows of :attr:`Refit.coefficients`: the constant (with an intercept), the ladder's
        terms, then :attr:`columns`, all in :attr:`basis`."""
        return ([()] if self.intercept else []) + self.ladder_terms(n_players) + list(self.columns)

    def fourier_map(self, n_players: int) -> tuple[list[Subset], np.ndarray]:
        """The exact linear map from the parameters to Fourier coefficients.

        Returns:
            ``(subsets, matrix)``: the T Fourier subsets the parameters reach (canonical order:
            by order, then lexicographic) and float64[T, P], so ``matrix @ coefficients`` are
            the Fourier coefficients of a refit.
        """
        parameters = self.parameters(n_players)
        images = [convert_terms({p: 1.0}, self.basis, "fourier") for p in parameters]
        subsets = sorted({s for image in images for s in image}, key=lambda s: (len(s), s))
        row = {s: t for t, s in enumerate(subsets)}
        matrix = np.zeros((len(subsets), len(parameters)))
        for j, image in enumerate(images):
            for subset, weight in image.items():
                matrix[row[subset], j] += weight
        return subsets, matrix

    # ----------------------------------------------------------------------------- fitting
    def fit(self, masks: np.ndarray, targets: np.ndarray) -> Refit:
        """The model's coefficients for ``targets`` on ``masks`` (rows may repeat).

        Args:
            masks: bool[m, n]; with a ladder, every mask ablating at most ``ladder_order``
                players must be among them.
            targets: float64[m, B], B targets fitted at once (one per bootstrap replicate).

        Raises:
            EngineError: a ladder model on rows without the whole ladder.
        """
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 2 or targets.shape[0] != masks.shape[0]:
            raise EngineError(f"targets must be float[{masks.shape[0]}, B], got shape {targets.shape}")
        n = masks.shape[1]
        fixed: list[np.ndarray] = []
        rows = np.arange(masks.shape[0])
        if self.ladder_order:
            low = self.ladder_terms(n)
            inversion, ladder_rows = _ladder_inversion(masks, self.ladder_order)
            low_coefficients = inversion @ targets
            targets = targets - basis_matrix(masks, low, "removal") @ low_coefficients
            fixed.append(low_coefficients)
            rows = np.flatnonzero(~ladder_rows)
        design = basis_matrix(masks[rows], list(self.columns), self.basis)
        identified = np.column_stack([np.ones(len(rows)), design]) if self.intercept else design
        rank = int(np.linalg.matrix_rank(identified)) if identified.size else 0
        constant, beta = self._fit_columns(design, targets[rows])
        blocks = ([constant[None, :]] if self.intercept else []) + fixed + [beta]
        return Refit(np.concatenate(blocks, axis=0), rank, identified.shape[1])

    def _fit_columns(self, design: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(constant float64[B], coefficients float64[k, B])`` of the columns (constant 0
        without intercept)."""
        n_targets = targets.shape[1]
        if design.shape[1] == 0:
            constant = targets.mean(axis=0) if self.intercept else np.zeros(n_targets)
            return constant, np.zeros((0, n_targets))
        if self.penalty == "none":
            full = np.column_stack([np.ones(len(design)), design]) if self.intercept else design
            beta = least_squares(full, targets)
            return (beta[0], beta[1:]) if self.intercept else (np.zeros(n_targets), beta)
        if self.penalty == "ridge":
            orders = np.array([max(len(s), 1) for s in self.columns], dtype=np.float64)
            scaling = float(self.order_growth) ** (-(orders - 1.0) / 2.0)
            constant, beta = RidgeSpectrum(design * scaling, targets, centre=self.intercept).coefficients(self.alpha)
            return np.broadcast_to(constant, (n_targets,)).astype(np.float64), beta * scaling[:, None]
        from sklearn.linear_model import Lasso

        lasso = Lasso(alpha=self.alpha, fit_intercept=self.intercept, tol=REFIT_LASSO_TOL, max_iter=100_000)
        lasso.fit(design, targets)
        beta = np.asarray(lasso.coef_, dtype=np.float64).reshape(n_targets, -1).T
        constant = np.asarray(lasso.intercept_, dtype=np.float64).reshape(-1) if self.intercept else np.zeros(n_targets)
        return np.broadcast_to(constant, (n_targets,)).astype(np.float64), beta

    # ----------------------------------------------------------------------------- storage
    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (inverse: :meth:`from_json`)."""
        return {"basis": self.basis, "columns": [list(s) for s in self.columns], "penalty": self.penalty,
                "alpha": float(self.alpha), "order_growth": float(self.order_growth), "intercept": self.intercept,
                "ladder_order": int(self.ladder_order)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CoefficientModel:
        """Inverse of :meth:`to_json`."""
        return cls(basis=data["basis"], columns=tuple(tuple(int(i) for i in s) for s in data["columns"]),
                   penalty=data["penalty"], alpha=float(data["alpha"]), order_growth=float(data["order_growth"]),
                   intercept=bool(data["intercept"]), ladder_order=int(data["ladder_order"]))


def _ladder_inversion(masks: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """float64[T, m] mapping the rows' values to the ladder's removal terms, in the order of
    :meth:`CoefficientModel.ladder_terms` (:func:`~headspex.engine.anchored.ladder_inversion`
    enumerates them alike), and bool[m], the ladder's rows."""
    found_order, _ = detect_ladder(np.unique(masks, axis=0))
    if found_order < order:
        raise EngineError(f"the rows hold the removal ladder to order {found_order}, the model needs order {order}")
    terms = ladder_inversion(masks, order)
    inversion = np.zeros((len(terms), len(masks)))
    for t, (_, pairs) in enumerate(terms):
        for row, sign in pairs:
            inversion[t, row] += sign
    return inversion, (~masks).sum(axis=1) <= order
