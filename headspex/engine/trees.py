"""Exact Fourier coefficients of LightGBM tree ensembles on binary inputs.

A regression tree on 0/1 inputs is a sum over leaves of ``leaf_value * prod_{splits on the
path} indicator(x_i = side)``, and ``indicator(x_i = 1) = (1 + z_i) / 2``,
``indicator(x_i = 0) = (1 - z_i) / 2`` with ``z_i = 2 x_i - 1``. Expanding the products gives
the tree's Fourier transform in closed form; summing over trees gives the ensemble's. We do it
recursively: a split node on feature ``i`` with sub-functions ``f0`` (taken when ``x_i = 0``) and
``f1`` (when ``x_i = 1``) is ``(f0 + f1)/2 + z_i (f1 - f0)/2``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .interactions import Subset
from ..errors import EngineError

FourierDict = dict[Subset, float]


def _goes_left(value: float, node: dict[str, Any]) -> bool:
    """Which child LightGBM sends a feature value to (mirrors LightGBM's decision rules)."""
    missing_type = node.get("missing_type", "None")
    if missing_type == "Zero" and value == 0.0:
        return bool(node.get("default_left", True))
    decision = node.get("decision_type", "<=")
    threshold = node["threshold"]
    if decision == "<=":
        return value <= float(threshold)
    if decision == "==":  # categorical split: threshold is "a||b||c"
        categories = {int(c) for c in str(threshold).split("||")}
        return int(value) in categories
    raise EngineError(f"unsupported LightGBM decision_type {decision!r}")


def _add_feature(subset: Subset, feature: int) -> Subset:
    # z_i^2 = 1, so a repeated split on the same feature cancels (symmetric difference).
    if feature in subset:
        return tuple(i for i in subset if i != feature)
    return tuple(sorted(subset + (feature,)))


def tree_to_fourier(node: dict[str, Any], max_order: int | None = None) -> FourierDict:
    """Fourier coefficients of one tree (``dump_model()["tree_info"][t]["tree_structure"]``).

    Args:
        node: a LightGBM tree node dict (a leaf has ``leaf_value``).
        max_order: drop terms above this order on the way up (a split only ever *adds* a
            feature to a term, so dropped terms can never come back down — exact for the
            retained orders when features are not re-split on the same path).

    Returns:
        ``{subset: coefficient}`` in the kept = +1 Fourier convention.
    """
    if "leaf_value" in node:
        return {(): float(node["leaf_value"])}
    feature = int(node["split_feature"])
    left = tree_to_fourier(node["left_child"], max_order)
    right = tree_to_fourier(node["right_child"], max_order)
    f0 = left if _goes_left(0.0, node) else right
    f1 = left if _goes_left(1.0, node) else right
    if f0 is f1:  # split that does not separate 0 from 1
        return f0
    out: FourierDict = defaultdict(float)
    for subset in set(f0) | set(f1):
        a, b = f0.get(subset, 0.0), f1.get(subset, 0.0)
        out[subset] += 0.5 * (a + b)
        grown = _add_feature(subset, feature)
        if max_order is None or len(grown) <= max_order:
            out[grown] += 0.5 * (b - a)
    return out


def lightgbm_to_fourier(model: Any, max_order: int | None = None) -> FourierDict:
    """Fourier coefficients of a fitted LightGBM model on 0/1 features (sum over its trees).

    Args:
        model: ``lightgbm.LGBMRegressor`` / ``lightgbm.Booster`` / the dict of ``dump_model()``.
        max_order: optional truncation order.

    Returns:
        ``{subset: coefficient}``; evaluating it on all masks reproduces ``model.predict``
        exactly when ``max_order`` is None.
    """
    if isinstance(model, dict):
        dump = model
    else:
        booster = getattr(model, "booster_", model)
        dump = booster.dump_model()
    total: FourierDict = defaultdict(float)
    for tree in dump["tree_info"]:
        for subset, coef in tree_to_fourier(tree["tree_structure"], max_order).items():
            total[subset] += coef
    return {s: c for s, c in total.items() if c != 0.0}
