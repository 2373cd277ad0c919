"""Clear ValueErrors for misuse."""

from __future__ import annotations

import numpy as np
import pytest

from headspex.engine import (
    Exhaustive,
    FaithBanzhaf,
    Interactions,
    LassoRegression,
    LinearBanzhaf,
    ProxySPEX,
    exact_interactions,
    faithfulness,
)


def good(masks):
    return masks.sum(axis=1).astype(float)


def test_budget_too_small_for_regression():
    with pytest.raises(ValueError, match="needs at least 56 samples"):
        FaithBanzhaf(max_order=2).fit(good, 50, n_players=10, progress=False)
    with pytest.raises(ValueError, match="needs at least 65 samples"):
        LinearBanzhaf().fit(good, 40, n_players=64, progress=False)
    with pytest.raises(ValueError, match="budget"):
        ProxySPEX().fit(good, 5, n_players=64, progress=False)
    with pytest.raises(ValueError, match="needs at least 1024"):
        Exhaustive().fit(good, 100, n_players=10, progress=False)
    with pytest.raises(ValueError, match="budget"):
        ProxySPEX().fit(good, n_players=10, progress=False)


@pytest.mark.parametrize(
    "bad_fn, message",
    [
        (lambda m: np.zeros((len(m), 2)), "shape"),
        (lambda m: np.zeros(len(m) + 1), "shape"),
        (lambda m: np.full(len(m), np.nan), "NaN"),
        (lambda m: np.where(m[:, 0], np.inf, 0.0), "NaN/inf"),
    ],
)
def test_bad_value_function(bad_fn, message):
    with pytest.raises(ValueError, match=message):
        ProxySPEX().fit(bad_fn, 100, n_players=12, progress=False)
    with pytest.raises(ValueError, match=message):
        exact_interactions(bad_fn, 4)


def test_bad_masks_and_values():
    masks = np.random.default_rng(0).random((100, 8)) < 0.5
    with pytest.raises(ValueError, match="boolean"):
        ProxySPEX().fit_samples(masks.astype(int), np.zeros(100))
    with pytest.raises(ValueError, match="2-D"):
        ProxySPEX().fit_samples(masks[0], np.zeros(8))
    with pytest.raises(ValueError, match="shape"):
        ProxySPEX().fit_samples(masks, np.zeros(99))
    with pytest.raises(ValueError, match="NaN"):
        LassoRegression().fit_samples(masks, np.r_[np.zeros(99), np.nan])
    inter = Interactions({(0,): 1.0}, 8)
    with pytest.raises(ValueError, match="columns"):
        inter(masks[:, :5])
    with pytest.raises(ValueError, match="boolean"):
        faithfulness(inter, (masks.astype(float), np.zeros(100)))
    with pytest.raises(ValueError, match="all 2\\^3"):
        exact_interactions(np.zeros(7), 3)


def test_bad_interactions():
    with pytest.raises(ValueError, match="outside"):
        Interactions({(0, 9): 1.0}, 5)
    with pytest.raises(ValueError, match="player_names"):
        Interactions({(0,): 1.0}, 2, player_names=["a"])
    with pytest.raises(ValueError, match="basis"):
        Interactions({(0,): 1.0}, 2, basis="walsh")
