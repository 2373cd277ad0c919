"""LightGBM tree -> Fourier extraction reproduces the model's own predictions on all masks."""

from __future__ import annotations

import numpy as np
import pytest

from headspex.engine import Interactions, all_masks, lightgbm_to_fourier

lgb = pytest.importorskip("lightgbm")


@pytest.mark.parametrize("n, depth, seed", [(6, 3, 0), (10, 5, 1), (12, 4, 2)])
def test_tree_extraction_matches_predict(n, depth, seed):
    rng = np.random.default_rng(seed)
    masks = all_masks(n)
    x = masks.astype(float)
    y = x[:, 0] * x[:, 1] - 2 * x[:, 2] + np.sin(3 * x @ rng.normal(size=n)) + 0.1 * rng.normal(size=len(x))
    train = rng.choice(len(x), size=min(len(x), 600), replace=False)
    model = lgb.LGBMRegressor(max_depth=depth, num_leaves=2**depth, n_estimators=60, min_child_samples=3,
                              verbose=-1, random_state=seed, n_jobs=1).fit(x[train], y[train])
    inter = Interactions(lightgbm_to_fourier(model), n, basis="fourier")
    assert np.allclose(inter(masks), model.predict(x), atol=1e-9)
    assert inter.max_order <= depth


def test_truncated_extraction_keeps_low_orders():
    n = 8
    masks = all_masks(n)
    x = masks.astype(float)
    y = x[:, 0] * x[:, 1] * x[:, 2] + x[:, 3]
    model = lgb.LGBMRegressor(max_depth=4, num_leaves=16, n_estimators=50, min_child_samples=2, verbose=-1, n_jobs=1).fit(x, y)
    full = lightgbm_to_fourier(model)
    low = lightgbm_to_fourier(model, max_order=2)
    assert all(len(s) <= 2 for s in low)
    for s, c in low.items():
        assert c == pytest.approx(full[s], abs=1e-12)


def test_extraction_of_early_stopped_model_matches_predict():
    # The estimator uses early-stopped proxies: extraction must use the same trees as predict().
    n = 9
    rng = np.random.default_rng(5)
    masks = all_masks(n)
    x = masks.astype(float)
    y = x[:, 0] * x[:, 3] + 0.5 * x[:, 5] + 0.3 * rng.normal(size=len(x))
    model = lgb.LGBMRegressor(max_depth=3, num_leaves=8, n_estimators=500, learning_rate=0.3, verbose=-1, n_jobs=1)
    model.fit(x[:400], y[:400], eval_X=(x[400:],), eval_y=(y[400:],),
              callbacks=[lgb.early_stopping(5, verbose=False)])
    assert model.best_iteration_ < 500
    inter = Interactions(lightgbm_to_fourier(model), n, basis="fourier")
    assert np.allclose(inter(masks), model.predict(x), atol=1e-9)
