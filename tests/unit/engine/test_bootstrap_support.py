"""Bootstrap refits repeat the fit's own coefficient step, or are refused with the reason.

The bug this guards against: a least-squares refit of the estimate's Fourier terms is not the
estimator of a ridge over more terms than masks (the engine's ``ridge3:removal`` on 9 heads and
80 masks: 130 terms). Its replicates were minimum-norm solutions whose percentiles excluded the
estimate for most terms (median 89 % over 25 SmolLM2 units). Each replicate now refits the
winner's own step (:class:`~headspex.engine.refit.CoefficientModel`: its terms, basis and
penalty held fixed); where even that is not identified, or does not reproduce the estimate,
the bootstrap is refused and the unit says why.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from headspex.attribution import AttributionConfig, Unit
from headspex.attribution.runner import bootstrap_intervals, top_table
from headspex.engine import Interactions, MaskStore, ProxySPEX, bootstrap_coefficients, percentile_interval
from headspex.engine.refit import CoefficientModel
from headspex.errors import EngineError

N_PLAYERS = 5
ALL_TERMS = [s for k in range(N_PLAYERS + 1) for s in itertools.combinations(range(N_PLAYERS), k)]


def distinct_masks(count: int, seed: int, n_players: int = N_PLAYERS) -> np.ndarray:
    """``count`` distinct random masks, bool[count, n_players]."""
    every = np.array(list(itertools.product([False, True], repeat=n_players)))
    return every[np.random.default_rng(seed).permutation(len(every))[:count]]


def parities(masks: np.ndarray, terms: list[tuple[int, ...]]) -> np.ndarray:
    """Fourier columns by hand: prod_{j in S} (+1 kept / -1 ablated), float[m, len(terms)]."""
    z = np.where(masks, 1.0, -1.0)
    return np.column_stack([np.prod(z[:, list(term)], axis=1) for term in terms])


def fitted(model: CoefficientModel | None, masks: np.ndarray, estimate: dict) -> SimpleNamespace:
    """What the bootstrap reads of a fit: its masks, estimate (Fourier), link and coefficient model."""
    return SimpleNamespace(interactions=Interactions(estimate, masks.shape[1]), masks=masks, method="proxyspex",
                           link="identity", coefficient_model=model)


# ----------------------------------------------------------------------------- the refit itself


def test_refits_match_independent_fits_for_every_penalty() -> None:
    rng = np.random.default_rng(0)
    masks = distinct_masks(24, seed=1)
    targets = rng.normal(size=(24, 3))
    terms = [(0,), (1,), (2,), (0, 1), (1, 2, 3)]
    x = parities(masks, terms)
    from sklearn.linear_model import Lasso, Ridge

    least = CoefficientModel("fourier", tuple(terms)).fit(masks, targets).coefficients
    by_hand = np.linalg.lstsq(np.column_stack([np.ones(24), x]), targets, rcond=None)[0]
    np.testing.assert_allclose(least, by_hand, atol=1e-10)

    # Graded ridge: order-k terms penalised alpha * g^(k-1) = a plain ridge on columns scaled by g^(-(k-1)/2).
    scaling = 10.0 ** (-(np.array([len(t) for t in terms]) - 1.0) / 2.0)
    ridge = CoefficientModel("fourier", tuple(terms), "ridge", 3.0, order_growth=10.0).fit(masks, targets).coefficients
    for b in range(3):
        reference = Ridge(alpha=3.0).fit(x * scaling, targets[:, b])
        np.testing.assert_allclose(ridge[1:, b], reference.coef_ * scaling, atol=1e-10)
        np.testing.assert_allclose(ridge[0, b], reference.intercept_, atol=1e-10)

    lasso = CoefficientModel("fourier", tuple(terms), "lasso", 0.05).fit(masks, targets).coefficients
    for b in range(3):
        reference = Lasso(alpha=0.05, tol=1e-12, max_iter=100_000).fit(x, targets[:, b])
        np.testing.assert_allclose(lasso[1:, b], reference.coef_, atol=1e-8)
        np.testing.assert_allclose(lasso[0, b], reference.intercept_, atol=1e-8)


def test_the_ladder_refit_inverts_the_ladder_exactly() -> None:
    # A game whose values near full are known: v = 2 - 1.5 [0 ablated] - [1 and 2 ablated] + noise off
    # the ladder. Its removal terms of order <= 2, by Möbius inversion over the ablated sets done here
    # on the function itself, are the ladder's; the refit must find them from the rows alone.
    n = 5
    ladder = np.array([[i not in removed for i in range(n)] for k in range(3)
                       for removed in itertools.combinations(range(n), k)])
    others = distinct_masks(12, seed=2, n_players=n)
    others = others[(~others).sum(axis=1) > 2]
    masks = np.concatenate([ladder, others])

    def value(mask: np.ndarray) -> float:
        return 2.0 - 1.5 * (not mask[0]) - 1.0 * (not mask[1] and not mask[2])

    values = np.array([value(mask) for mask in masks])
    values[len(ladder):] += np.random.default_rng(3).normal(0, 0.1, len(masks) - len(ladder))
    model = CoefficientModel("removal", ((0, 3, 4),), intercept=False, ladder_order=2)
    coefficients = dict(zip(model.parameters(n), model.fit(masks, values[:, None]).coefficients[:, 0]))
    for subset in model.ladder_terms(n):
        by_hand = sum((-1) ** (len(subset) - j) * value(np.array([i not in removed for i in range(n)]))
                      for j in range(len(subset) + 1) for removed in itertools.combinations(subset, j))
        assert coefficients[subset] == pytest.approx(by_hand, abs=1e-12)
    assert coefficients[()] == pytest.approx(2.0) and coefficients[(0,)] == pytest.approx(-1.5)
    assert coefficients[(1, 2)] == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- refusals


def test_a_least_squares_model_with_more_terms_than_masks_is_refused() -> None:
    masks = distinct_masks(12, seed=0)
    item_values = np.random.default_rng(1).normal(size=(12, 4))
    result = fitted(CoefficientModel("fourier", tuple(ALL_TERMS[1:])), masks, {(): 0.0})
    with pytest.raises(EngineError, match="rank 12"):
        bootstrap_coefficients(result, item_values, n_bootstrap=10, seed=0, over="questions")


def test_a_refit_that_does_not_reproduce_the_estimate_is_refused() -> None:
    masks = distinct_masks(20, seed=0)
    item_values = np.random.default_rng(1).normal(size=(20, 4))
    terms = ALL_TERMS[1:6]
    beta = np.linalg.lstsq(np.column_stack([np.ones(20), parities(masks, terms)]), item_values.mean(axis=1),
                           rcond=None)[0]
    estimate = dict(zip([(), *terms], beta))
    model = CoefficientModel("fourier", tuple(terms))
    replicates = bootstrap_coefficients(fitted(model, masks, estimate), item_values, 10, 0, "questions")[1]
    assert replicates.shape == (6, 10)
    estimate[(2,)] *= 1.5  # e.g. a shrunken coefficient, while the model is least squares
    with pytest.raises(EngineError, match="does not reproduce"):
        bootstrap_coefficients(fitted(model, masks, estimate), item_values, 10, 0, "questions")


def test_a_mask_bootstrap_whose_resamples_lose_rank_is_refused() -> None:
    # 9 terms and the constant, 12 distinct masks: the full design has rank 10, but a resample of
    # 12 masks with replacement holds ~7.6 distinct ones. The question bootstrap keeps every row.
    masks = distinct_masks(12, seed=6)
    terms = ALL_TERMS[1:10]
    assert np.linalg.matrix_rank(np.column_stack([np.ones(12), parities(masks, terms)])) == 10
    item_values = np.random.default_rng(7).normal(size=(12, 4))
    beta = np.linalg.lstsq(np.column_stack([np.ones(12), parities(masks, terms)]), item_values.mean(axis=1),
                           rcond=None)[0]
    result = fitted(CoefficientModel("fourier", tuple(terms)), masks, dict(zip([(), *terms], beta)))
    with pytest.raises(EngineError, match="mask resamples"):
        bootstrap_coefficients(result, item_values, n_bootstrap=20, seed=0, over="masks")
    assert bootstrap_coefficients(result, item_values, n_bootstrap=20, seed=0, over="questions")[1].shape == (10, 20)


# ----------------------------------------------------------------------------- intervals


def test_a_dense_ridge_winner_gets_intervals_around_its_estimate() -> None:
    # The case of the bug: 9 players, 80 masks, the graded order-3 ridge wins with 130 terms. A
    # least-squares refit of its Fourier terms is not identifiable (rank <= 80); the ridge refit is.
    rng = np.random.default_rng(0)
    n, weights = 9, rng.normal(0, 0.3, size=(9, 6))

    def game(masks: np.ndarray) -> np.ndarray:
        x = masks.astype(float)
        pairs = 0.8 * (x[:, :1] * x[:, 1:2]) + 0.8 * (x[:, 2:3] * x[:, 3:4])
        return x @ weights + pairs + rng.normal(0, 0.05, size=(len(masks), 6))

    store = MaskStore(None, n, value_name="question_values")
    result = ProxySPEX(seed=1, sources=("proxy", "ridge")).fit(game, 80, n_players=n, per_item=True, progress=False,
                                                              n_test=0, store=store)
    assert result.diagnostics["winner"] == "ridge3:removal" and len(result.interactions) > 80
    item_values = store.stack(result.masks)
    subsets, replicates = bootstrap_coefficients(result, item_values, n_bootstrap=400, seed=0, over="questions")
    four = result.interactions.to_fourier()
    estimate = np.array([four[s] if s in four.subsets else 0.0 for s in subsets])
    low, high = percentile_interval(replicates.T, 0.95)
    assert np.all(low <= estimate + 1e-12) and np.all(estimate - 1e-12 <= high)
    # A linear step: over question resamples the replicates average to the estimate (the mean of
    # resampled question means is the mean), up to Monte-Carlo error.
    spread = replicates.std(axis=1)
    assert np.all(np.abs(replicates.mean(axis=1) - estimate) <= 4 * spread / np.sqrt(400) + 1e-12)
    # Resampled masks repeat rows: with fewer distinct masks than terms the ridge would shrink each
    # replicate more than the estimate, so the mask bootstrap is refused.
    with pytest.raises(EngineError, match="mask bootstrap needs"):
        bootstrap_coefficients(result, item_values, n_bootstrap=20, seed=0, over="masks")


def test_intervals_of_a_least_squares_model_contain_the_estimate_computed_by_hand() -> None:
    rng = np.random.default_rng(2)
    masks = distinct_masks(24, seed=3)
    z = np.where(masks, 1.0, -1.0)
    item_values = (0.3 + z @ np.array([0.5, -0.2, 0.0, 0.1, 0.4]))[:, None] + rng.normal(0, 0.2, size=(24, 6))
    terms = ALL_TERMS[1: 1 + N_PLAYERS]
    estimate = np.linalg.lstsq(np.column_stack([np.ones(24), z]), item_values.mean(axis=1), rcond=None)[0]
    result = fitted(CoefficientModel("fourier", tuple(terms)), masks, dict(zip([(), *terms], estimate)))
    subsets, replicates = bootstrap_coefficients(result, item_values, n_bootstrap=400, seed=0, over="questions")
    assert subsets == [(), *terms]
    low, high = percentile_interval(replicates.T, 0.95)
    assert np.all(low <= estimate + 1e-12) and np.all(estimate - 1e-12 <= high)
    assert np.all(high - low > 0)


# ----------------------------------------------------------------------------- what attribution records


def test_attribution_records_why_a_unit_has_no_intervals(tmp_path: Path) -> None:
    masks = distinct_masks(12, seed=4)
    coefficients = np.random.default_rng(5).normal(size=len(ALL_TERMS))
    engine = fitted(CoefficientModel("fourier", tuple(ALL_TERMS[1:])), masks,
                    dict(zip(ALL_TERMS, coefficients)))
    unit_dir = tmp_path / "unit"
    unit_dir.mkdir()
    (unit_dir / "bootstrap_questions.npz").write_bytes(b"replicates of an earlier fit")
    intervals = bootstrap_intervals(engine, np.zeros((12, 3)), [ALL_TERMS[7]], AttributionConfig(n_bootstrap=20),
                                    unit_dir)
    assert list(intervals) == ["unavailable"] and list(intervals["unavailable"]) == ["questions", "masks"]
    assert all("rank 12" in reason for reason in intervals["unavailable"].values())
    assert not list(unit_dir.glob("bootstrap_*.npz"))  # stale replicates would be read as this fit's
    unit = Unit("layer_00", [f"L0H{h}" for h in range(N_PLAYERS)])
    row = top_table(unit, [ALL_TERMS[7]], [0.1], intervals)[0]
    assert not any(key.startswith(("interval_", "significant_")) for key in row)


def test_a_fit_without_a_coefficient_model_gets_no_intervals() -> None:
    masks = distinct_masks(12, seed=4)
    engine = fitted(None, masks, {(): 1.0, (0,): 0.5})  # e.g. a result saved before models
    intervals = bootstrap_intervals(engine, np.zeros((12, 3)), [(0,)], AttributionConfig(n_bootstrap=20), None)
    assert list(intervals) == ["unavailable"] and "no coefficient model" in intervals["unavailable"]["questions"]


def test_attribution_keeps_the_question_intervals_when_only_the_mask_bootstrap_is_refused() -> None:
    masks = distinct_masks(12, seed=6)
    terms = ALL_TERMS[1:10]
    item_values = np.random.default_rng(8).normal(size=(12, 4))
    beta = np.linalg.lstsq(np.column_stack([np.ones(12), parities(masks, terms)]), item_values.mean(axis=1),
                           rcond=None)[0]
    engine = fitted(CoefficientModel("fourier", tuple(terms)), masks, dict(zip([(), *terms], beta)))
    intervals = bootstrap_intervals(engine, item_values, [terms[0]], AttributionConfig(n_bootstrap=20), None)
    assert set(intervals) == {"questions", "unavailable"} and list(intervals["unavailable"]) == ["masks"]
    row = top_table(Unit("layer_00", [f"L0H{h}" for h in range(N_PLAYERS)]), [terms[0]], [0.2], intervals)[0]
    assert "interval_questions" in row and "interval_masks" not in row


@pytest.mark.parametrize(("budget", "options", "winner", "penalty"), [
    (80, {"sources": ("proxy", "lasso")}, "lasso:fourier", "lasso"),
    (80, {"sources": ("proxy", "anchored")}, "anchored:removal", "lasso"),  # the residual by a LASSO
    (80, {"sources": ("proxy",)}, "proxy:fourier", "ridge"),
    (80, {"sources": ("proxy",), "refit": "ols"}, "proxy:fourier", "none"),
    (80, {"sources": ("proxy",), "selection": "energy"}, "proxy:fourier", "ridge"),
    (512, {"sources": ("proxy",)}, None, "none"),  # every mask: the exact transform
])
def test_every_kind_of_winner_records_a_model_that_reproduces_it(budget: int, options: dict, winner: str | None,
                                                                  penalty: str) -> None:
    # The bootstrap refuses a model whose refit of the observed values is not the estimate, so a
    # wrong record for any winner kind (e.g. a LASSO's penalty on the wrong scale, the ladder's
    # terms, the support refit's constant) shows up as a refusal here.
    rng = np.random.default_rng(0)
    n, weights = 9, rng.normal(0, 0.3, size=(9, 6))

    def game(masks: np.ndarray) -> np.ndarray:
        x = masks.astype(float)
        backup = 1.0 - (1.0 - x[:, 4:5]) * (1.0 - x[:, 5:6]) * (1.0 - x[:, 6:7])
        return x @ weights + 0.8 * (x[:, :1] * x[:, 1:2]) + backup + rng.normal(0, 0.05, size=(len(masks), 6))

    store = MaskStore(None, n, value_name="question_values")
    result = ProxySPEX(seed=1, **options).fit(game, budget, n_players=n, per_item=True, progress=False, n_test=0,
                                              store=store)
    assert result.diagnostics.get("winner") == winner and result.coefficient_model.penalty == penalty
    subsets, replicates = bootstrap_coefficients(result, store.stack(result.masks), n_bootstrap=50, seed=0,
                                                 over="questions")
    assert replicates.shape == (len(subsets), 50) and set(result.interactions.to_fourier().subsets) <= set(subsets)


def test_intervals_saved_before_coefficient_models_are_not_shown_and_the_unit_is_refitted(tmp_path: Path) -> None:
    # A unit saved by the earlier bootstrap: its ProxySPEX result has no coefficient model, so its
    # intervals came from a least-squares refit of its Fourier terms, which can exclude the estimate.
    from headspex.attribution.rundir import STALE_INTERVALS, UnitResult
    from headspex.attribution.runner import _load_finished_unit

    masks = distinct_masks(24, seed=3)
    values = parities(masks, [(0,), (1, 2)]) @ np.array([0.5, 0.3])
    engine = ProxySPEX(seed=0).fit_samples(masks, values)
    engine.coefficient_model = None
    intervals = {"questions": {"banzhaf": [[0.0, 1.0]] * N_PLAYERS, "shapley": [[0.0, 1.0]] * N_PLAYERS,
                               "top": [[0.2, 0.4]]}}
    top = [{"players": ["a", "b"], "indices": [1, 2], "fourier": 0.3, "interval_questions": [0.2, 0.4],
            "significant_questions": True}]
    unit = UnitResult("layer_00", [f"L0H{h}" for h in range(N_PLAYERS)], [0] * N_PLAYERS, engine,
                      np.zeros(N_PLAYERS), np.zeros(N_PLAYERS), intervals, top, provenance_key="k")
    unit.save(tmp_path / "layer_00")
    loaded = UnitResult.load(tmp_path / "layer_00", "k")
    assert loaded.intervals == {"unavailable": {"questions": STALE_INTERVALS}}
    assert not any(key.startswith(("interval_", "significant_")) for key in loaded.top[0])
    assert _load_finished_unit(tmp_path / "layer_00", "k") is None  # a resumed run refits it

    engine.coefficient_model = CoefficientModel("fourier", ((0,),))  # what this headspex saves
    unit.save(tmp_path / "layer_01")
    assert UnitResult.load(tmp_path / "layer_01", "k").intervals == intervals
    assert _load_finished_unit(tmp_path / "layer_01", "k") is not None
