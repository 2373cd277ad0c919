"""Link functions (headspex.engine.links): the log-odds scale for saturating log-probability games."""

from __future__ import annotations

import math

import numpy as np
import pytest

from headspex.attribution import AttributionConfig, AttributionError
from headspex.engine import EngineResult, LassoRegression, ProxySPEX, all_masks, link_forward, link_inverse, r2_score
from headspex.errors import EngineError
from headspex.structure import first_order_r2

N_PLAYERS = 10
#: The planted log-odds: a constant, five single-head effects and one pair (Fourier terms on the
#: ±1 encoding, kept = +1), far enough from 0 that log p saturates near the full model.
PLANTED = {(): 2.0, (0,): 1.1, (2,): 0.9, (4,): 0.8, (6,): 1.0, (8,): 0.7, (2, 6): 0.6}


def planted_logodds(masks: np.ndarray) -> np.ndarray:
    """The planted log-odds of each mask, computed term by term (independent of the engine)."""
    signs = np.where(np.asarray(masks, dtype=bool), 1.0, -1.0)
    return np.array([sum(c * math.prod(row[i] for i in s) for s, c in PLANTED.items()) for row in signs])


def planted_logprob(masks: np.ndarray) -> np.ndarray:
    """log p of the correct answer, p = 1 / (1 + e^-z), by the scalar formula."""
    return np.array([math.log(1.0 / (1.0 + math.exp(-z))) for z in planted_logodds(masks)])


def test_logodds_round_trip_matches_the_scalar_formula() -> None:
    values = np.array([-1e-12, -1e-6, -0.003, -0.5, -1.0, -7.0, -40.0])
    expected = np.array([math.log(math.exp(v) / (1.0 - math.exp(v))) if v < -1e-3 else v - math.log(-math.expm1(v))
                         for v in values])
    np.testing.assert_allclose(link_forward("logodds", values), expected, rtol=1e-9)
    np.testing.assert_allclose(link_inverse("logodds", link_forward("logodds", values)), values, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(link_forward("identity", values), values)


@pytest.mark.parametrize("bad", [0.0, 0.2])
def test_logodds_refuses_values_that_are_not_log_probabilities(bad: float) -> None:
    masks = all_masks(5)
    values = np.full(len(masks), -1.0)
    values[3] = bad
    with pytest.raises(EngineError, match="log-probabilities < 0"):
        ProxySPEX(link="logodds").fit_samples(masks, values)
    with pytest.raises(EngineError, match="link must be one of"):
        ProxySPEX(link="logit")


def test_logodds_fit_recovers_the_planted_logodds_and_predicts_log_probabilities() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((160, N_PLAYERS)) < 0.5
    near_full = rng.random((80, N_PLAYERS)) < 0.9
    fit_masks = np.unique(np.concatenate([masks, near_full]), axis=0)
    result = ProxySPEX(max_order=2, seed=0, link="logodds").fit_samples(fit_masks, planted_logprob(fit_masks))
    fitted = result.interactions.as_dict()
    for subset, coef in PLANTED.items():
        assert fitted.get(subset, 0.0) == pytest.approx(coef, abs=1e-6)
    assert sum(abs(c) for s, c in fitted.items() if s not in PLANTED) < 1e-5
    every = all_masks(N_PLAYERS)
    np.testing.assert_allclose(result.predict(every), planted_logprob(every), atol=1e-6)
    # The identity link on the same masks cannot be exact at order 2: log p of a sum is dense.
    plain = ProxySPEX(max_order=2, seed=0).fit_samples(fit_masks, planted_logprob(fit_masks))
    assert np.max(np.abs(plain.predict(every) - planted_logprob(every))) > 1e-3


def test_held_out_r2_and_saved_result_are_on_the_value_scale(tmp_path) -> None:
    rng = np.random.default_rng(1)
    fit_masks = np.unique(rng.random((200, N_PLAYERS)) < 0.6, axis=0)
    test_masks = rng.random((60, N_PLAYERS)) < 0.8
    truth = planted_logprob(test_masks)
    result = LassoRegression(max_order=1, link="logodds").fit_samples(
        fit_masks, planted_logprob(fit_masks), test_masks=test_masks, test_values=truth)
    by_formula = -np.log1p(np.exp(-result.interactions(test_masks)))
    assert result.faithfulness["test"] == pytest.approx(r2_score(truth, by_formula), abs=1e-12)
    result.save(tmp_path / "fit")
    loaded = EngineResult.load(tmp_path / "fit")
    assert loaded.link == "logodds"
    np.testing.assert_allclose(loaded.predict(test_masks), by_formula, atol=1e-12)


def test_consumers_that_read_values_refuse_a_logodds_fit() -> None:
    rng = np.random.default_rng(2)
    fit_masks = np.unique(rng.random((120, N_PLAYERS)) < 0.5, axis=0)
    test_masks = rng.random((30, N_PLAYERS)) < 0.5
    result = LassoRegression(max_order=1, link="logodds").fit_samples(
        fit_masks, planted_logprob(fit_masks), test_masks=test_masks, test_values=planted_logprob(test_masks))
    with pytest.raises(EngineError, match="link='identity'"):
        first_order_r2(result)
    for link in ("logodds", "auto"):
        with pytest.raises(AttributionError, match="link='identity'"):
            AttributionConfig(budget=40, estimator_options={"link": link}).estimator()


def _one_by_one_link_errors(masks: np.ndarray, values: np.ndarray, folds: list[np.ndarray],
                            max_order: int, logodds_cap: float = 0.0) -> dict[str, float]:
    """Value-scale CV error of each explicit link, fold by fold through the public API (uniform
    fit masks, so every row weighs 1); the log-odds fits train on the values capped at
    ``logodds_cap`` when that is < 0, and every fit is scored against the values as given."""
    errors = {}
    for link in ("identity", "logodds"):
        per_fold = []
        for val in folds:
            train = np.setdiff1d(np.arange(len(masks)), val)
            targets = np.minimum(values[train], logodds_cap) if link == "logodds" and logodds_cap < 0 else values[train]
            fit = ProxySPEX(max_order=max_order, seed=0, link=link).fit_samples(masks[train], targets)
            per_fold.append(float(np.mean((values[val] - fit.predict(masks[val])) ** 2)))
        errors[link] = float(np.mean(per_fold))
    return errors


@pytest.mark.parametrize("saturating", [True, False])
def test_auto_link_picks_the_link_a_one_by_one_cv_prefers(saturating: bool) -> None:
    """link='auto' on a saturating game (log p of a sparse log-odds) and on one additive in nats.

    The CV errors must equal an independent fold-by-fold loop of explicit-link fits, the choice
    must be the link that is right on all 2^10 masks (planted truth), and the fit must be the
    explicit fit with that link."""
    rng = np.random.default_rng(3)
    masks = np.unique(rng.random((240, N_PLAYERS)) < 0.5, axis=0)
    if saturating:
        truth, max_order, right = planted_logprob, 2, "logodds"
    else:  # additive in nats, between -1.2 and -0.1: its log-odds are not additive
        def truth(m: np.ndarray) -> np.ndarray:
            return -1.2 + np.asarray(m, dtype=float)[:, :5] @ np.array([0.3, 0.25, 0.2, 0.15, 0.2])

        max_order, right = 1, "identity"
    values = truth(masks)
    auto = ProxySPEX(max_order=max_order, seed=0, link="auto")
    result = auto.fit_samples(masks, values)
    expected = _one_by_one_link_errors(masks, values, auto.link_cv_folds(masks), max_order)
    for link, error in expected.items():
        assert result.diagnostics["link_cv"]["cv_mse"][link] == pytest.approx(error, rel=1e-9, abs=1e-15)
    assert result.link == right == min(expected, key=expected.get)
    every = all_masks(N_PLAYERS)
    explicit = ProxySPEX(max_order=max_order, seed=0, link=right).fit_samples(masks, values)
    np.testing.assert_allclose(result.predict(every), explicit.predict(every), atol=1e-12)
    np.testing.assert_allclose(result.predict(every), truth(every), atol=1e-5)
    assert result.config["link"] == "auto"


def test_auto_link_keeps_the_identity_without_log_probabilities_or_enough_masks() -> None:
    rng = np.random.default_rng(4)
    masks = np.unique(rng.random((100, N_PLAYERS)) < 0.5, axis=0)
    values = planted_logprob(masks)
    values[: len(values) // 10] = 0.05  # 10 % >= 0: not log-probabilities, noisy or not
    result = LassoRegression(max_order=1, link="auto").fit_samples(masks, values)
    assert result.link == "identity" and "not log-probabilities" in result.diagnostics["link_cv"]["reason"]
    identity = LassoRegression(max_order=1).fit_samples(masks, values)
    np.testing.assert_array_equal(result.predict(masks), identity.predict(masks))
    few = ProxySPEX(max_order=1, link="auto").fit_samples(masks[:22], planted_logprob(masks[:22]))  # folds train on < 20
    assert few.link == "identity" and "too few" in few.diagnostics["link_cv"]["reason"]


def test_auto_link_never_validates_on_the_removal_ladder() -> None:
    """ProxySPEX's anchored candidate needs every ladder row (full, single and pair ablations) in
    each fit, so the link choice's folds hold only the other rows, each once."""
    from headspex.engine.design import ladder_masks

    rng = np.random.default_rng(5)
    ladder = ladder_masks(N_PLAYERS, 2)
    others = np.unique(rng.random((90, N_PLAYERS)) < 0.5, axis=0)
    others = others[(~others).sum(axis=1) > 2]
    masks = np.concatenate([ladder, others])
    folds = ProxySPEX(link="auto").link_cv_folds(masks)
    validated = np.sort(np.concatenate(folds))
    np.testing.assert_array_equal(validated, np.arange(len(ladder), len(masks)))
    assert len(folds) == 5 and min(len(f) for f in folds) >= len(others) // 5


def test_noisy_logprob_ceiling_caps_only_a_few_values_at_or_above_zero() -> None:
    from headspex.engine.links import CEILING_FLOOR, NOISY_SHARE, noisy_logprob_ceiling

    below = -np.linspace(0.01, 3.0, 100)
    assert noisy_logprob_ceiling(below) == float("inf")
    some = below.copy()
    some[:3] = [0.04, 0.0, 0.01]
    assert noisy_logprob_ceiling(some) == -0.04
    rounded = below.copy()
    rounded[0] = 0.0  # a float32 log-softmax that rounded to 0
    assert noisy_logprob_ceiling(rounded) == -CEILING_FLOOR
    many = below.copy()
    many[: int(NOISY_SHARE * 100) + 1] = 0.01
    assert noisy_logprob_ceiling(many) is None


def test_auto_link_fits_noisy_log_probabilities_on_capped_log_odds() -> None:
    """Noisy log p of a saturating game: a few values pass 0, so an explicit log-odds fit refuses
    them; link='auto' caps them at minus the largest value (the noise's reach), chooses by the
    same fold-by-fold CV as explicit fits of the capped values, and the fit is the explicit
    log-odds fit of the capped values, close to the noiseless truth on all 2^10 masks."""
    rng = np.random.default_rng(6)
    masks = np.unique(rng.random((300, N_PLAYERS)) < 0.5, axis=0)
    values = planted_logprob(masks) + 0.004 * rng.standard_normal(len(masks))
    assert 0 < np.mean(values >= 0) <= 0.05
    cap = -float(values.max())
    with pytest.raises(EngineError, match="log-probabilities < 0"):
        ProxySPEX(max_order=2, seed=0, link="logodds").fit_samples(masks, values)
    auto = ProxySPEX(max_order=2, seed=0, link="auto")
    result = auto.fit_samples(masks, values)
    expected = _one_by_one_link_errors(masks, values, auto.link_cv_folds(masks), 2, logodds_cap=cap)
    for link, error in expected.items():
        assert result.diagnostics["link_cv"]["cv_mse"][link] == pytest.approx(error, rel=1e-9, abs=1e-15)
    assert result.diagnostics["link_cv"]["ceiling"] == cap
    assert result.link == "logodds" == min(expected, key=expected.get)
    every = all_masks(N_PLAYERS)
    explicit = ProxySPEX(max_order=2, seed=0, link="logodds").fit_samples(masks, np.minimum(values, cap))
    np.testing.assert_allclose(result.predict(every), explicit.predict(every), atol=1e-12)
    identity = ProxySPEX(max_order=2, seed=0).fit_samples(masks, values)
    truth = planted_logprob(every)
    assert r2_score(truth, result.predict(every)) > max(0.95, r2_score(truth, identity.predict(every)))
