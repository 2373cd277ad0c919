"""Interaction engine: value function over binary masks -> sparse interactions.

No torch, no model: numpy / scipy / scikit-learn / lightgbm only. Mask convention: True =
player kept, False = ablated. See :mod:`headspex.engine.interactions` for the bases.
"""

from .estimators import (
    ESTIMATORS,
    Estimator,
    Exhaustive,
    FaithBanzhaf,
    LassoRegression,
    LinearBanzhaf,
    ProxySPEX,
    make_estimator,
)
from .exact import (
    all_masks,
    exact_interactions,
    fourier_transform_dense,
    inverse_fourier_dense,
    inverse_mobius_dense,
    inverse_removal_dense,
    mobius_transform_dense,
    removal_transform_dense,
    subset_index,
)
from .interactions import (
    BASES,
    Interactions,
    basis_matrix,
    convert_terms,
    fourier_to_mobius_dict,
    mobius_to_fourier_dict,
)
from .links import LINKS, link_forward, link_inverse, require_identity_link
from .refit import CoefficientModel
from .result import EngineResult, faithfulness, r2_score
from .sampling import NEAR_FULL_KEEP, evaluate_masks, sample_masks
from .store import MaskStore, MaskStoreError, mask_key, mask_keys
from .trees import lightgbm_to_fourier
from .values import banzhaf_matrix, bootstrap_coefficients, percentile_interval, shapley_matrix

__all__ = [
    "BASES",
    "LINKS",
    "link_forward",
    "link_inverse",
    "require_identity_link",
    "convert_terms",
    "inverse_removal_dense",
    "removal_transform_dense",
    "ESTIMATORS",
    "NEAR_FULL_KEEP",
    "MaskStore",
    "MaskStoreError",
    "banzhaf_matrix",
    "bootstrap_coefficients",
    "CoefficientModel",
    "make_estimator",
    "mask_key",
    "mask_keys",
    "percentile_interval",
    "shapley_matrix",
    "EngineResult",
    "Estimator",
    "Exhaustive",
    "FaithBanzhaf",
    "Interactions",
    "LassoRegression",
    "LinearBanzhaf",
    "ProxySPEX",
    "all_masks",
    "basis_matrix",
    "evaluate_masks",
    "exact_interactions",
    "faithfulness",
    "fourier_to_mobius_dict",
    "fourier_transform_dense",
    "inverse_fourier_dense",
    "inverse_mobius_dense",
    "lightgbm_to_fourier",
    "mobius_to_fourier_dict",
    "mobius_transform_dense",
    "r2_score",
    "sample_masks",
    "subset_index",
]
