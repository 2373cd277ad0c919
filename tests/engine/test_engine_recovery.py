"""Planted sparse functions are recovered (support and coefficients) at stated budgets."""

from __future__ import annotations

import numpy as np
import pytest

from headspex.engine import (
    EngineResult,
    Exhaustive,
    FaithBanzhaf,
    LassoRegression,
    LinearBanzhaf,
    ProxySPEX,
    exact_interactions,
    faithfulness,
    sample_masks,
)


def and_game(terms: dict, n: int, noise: float = 0.0, seed: int = 0):
    """Sum of AND terms, computed directly from the masks (independent of the engine)."""
    rng = np.random.default_rng(seed)

    def value_fn(masks: np.ndarray) -> np.ndarray:
        out = np.zeros(len(masks))
        for subset, coef in terms.items():
            out += coef * masks[:, list(subset)].all(axis=1)
        return out + noise * rng.standard_normal(len(masks))

    return value_fn


def parity_game(terms: dict, n: int):
    def value_fn(masks):
        z = 2.0 * masks - 1.0
        return sum(c * np.prod(z[:, list(s)], axis=1) for s, c in terms.items()) + 0.0 * masks[:, 0]

    return value_fn


NON_HIER = {(): 0.3, (3,): 1.0, (10, 20): -1.2, (5, 40, 63): 1.5, (7,): -0.8, (30, 31, 50): -1.0,
            (12, 44): 0.9, (1, 2, 60): 1.1, (25,): 0.6, (33, 55): -0.7, (8, 9, 18): 0.8}
HIER = {(0,): 1.0, (1,): -0.5, (0, 1): 0.8, (2,): 0.7, (0, 2): -0.6, (1, 2): 0.5, (0, 1, 2): 1.2,
        (20,): 0.9, (21,): 0.6, (20, 21): -1.0, (40,): -0.8}


@pytest.mark.parametrize("terms, budget", [(NON_HIER, 600), (HIER, 600)])
def test_proxyspex_recovers_planted_and_terms(terms, budget):
    n = 64
    game = and_game(terms, n, noise=0.05, seed=1)
    res = ProxySPEX(max_order=3, seed=0).fit(game, budget, n_players=n, n_test=300, progress=False)
    assert res.n_fit_evaluations == budget
    assert res.n_evaluations == res.n_fit_evaluations + res.n_test_evaluations
    assert 0 < res.n_test_evaluations <= 600
    assert res.faithfulness["uniform"] > 0.98 and res.faithfulness["near_full"] > 0.97
    mob = res.interactions.to_mobius()
    # Every planted term recovered within 0.15; no spurious term above 0.15.
    for subset, coef in terms.items():
        assert mob[subset] == pytest.approx(coef, abs=0.15), subset
    spurious = [s for s, c in mob.as_dict().items() if s not in terms and abs(c) > 0.15]
    assert not spurious


def test_proxyspex_noiseless_hierarchical_exact_coefficients():
    n = 32
    terms = {(0,): 1.0, (0, 1): -0.5, (0, 1, 2): 2.0, (5,): 0.3, (5, 6): 0.7}
    res = ProxySPEX(max_order=3, seed=3).fit(and_game(terms, n), 400, n_players=n, n_test=100, progress=False)
    mob = res.interactions.to_mobius()
    for subset, coef in terms.items():
        assert mob[subset] == pytest.approx(coef, abs=1e-6)
    assert res.faithfulness["uniform"] > 0.999999


def test_lasso_and_faith_banzhaf_recover_parities():
    n = 12
    terms = {(): 0.2, (1,): 1.0, (2, 7): -0.8, (3, 4): 0.5}
    game = parity_game(terms, n)
    lasso = LassoRegression(max_order=2, seed=0).fit(game, 300, n_players=n, n_test=100, progress=False)
    fb = FaithBanzhaf(max_order=2, seed=0).fit(game, 300, n_players=n, n_test=100, progress=False)
    for res in (lasso, fb):
        for subset, coef in terms.items():
            assert res.interactions[subset] == pytest.approx(coef, abs=0.05)
        assert res.faithfulness["uniform"] > 0.99


def test_linear_banzhaf_matches_exact_banzhaf_values():
    n = 10
    terms = {(0,): 1.0, (1, 2): 1.0, (3, 4, 5): -2.0}
    game = and_game(terms, n)
    exact = exact_interactions(game, n)
    # With budget >= 2^n every mask is used once, and least squares on uniform masks is exact.
    res = LinearBanzhaf(seed=0).fit(game, 1024, n_players=n, n_test=0, progress=False)
    assert res.n_evaluations == 1024
    assert np.allclose(res.interactions.banzhaf_values(), exact.banzhaf_values(), atol=1e-9)
    # From 1000 of the 1024 masks (distinct, uniform) the estimate is close.
    res = LinearBanzhaf(seed=0).fit(game, 1000, n_players=n, n_test=0, progress=False)
    assert res.n_evaluations == 1000
    assert np.allclose(res.interactions.banzhaf_values(), exact.banzhaf_values(), atol=0.05)


def test_exhaustive_is_exact_and_counts_evaluations(tmp_path):
    n = 9
    terms = {(0, 8): 1.5, (2,): -1.0, (3, 4, 5): 0.5}
    calls = []

    def game(masks):
        calls.append(len(masks))
        return and_game(terms, n)(masks)

    res = Exhaustive().fit(game, n_players=n, n_test=0, batch_size=100, progress=False)
    assert sum(calls) == 512 and max(calls) <= 100
    assert res.n_evaluations == 512
    mob = res.interactions.to_mobius().pruned(1e-12)
    assert set(mob.as_dict()) - {()} == set(terms)
    res.save(tmp_path / "res")
    loaded = EngineResult.load(tmp_path / "res")
    assert loaded.interactions.as_dict() == res.interactions.as_dict()
    assert np.array_equal(loaded.masks, res.masks) and loaded.method == "exhaustive"


def test_no_mask_evaluated_twice_and_batches():
    n = 8  # 256 masks: budget 200 forces many would-be duplicates among fit + test draws
    seen: list[bytes] = []
    sizes: list[int] = []

    def game(masks):
        sizes.append(len(masks))
        seen.extend(row.tobytes() for row in np.packbits(masks, axis=1))
        return masks[:, 0] * 1.0 + masks[:, 1] * masks[:, 2]

    res = ProxySPEX(max_order=2, seed=0).fit(game, 200, n_players=n, n_test=100, batch_size=64, progress=False)
    assert max(sizes) <= 64
    assert res.n_evaluations == sum(sizes)
    assert res.masks.shape == (200, n)
    assert len(np.unique(np.packbits(res.masks, axis=1), axis=0)) == 200
    assert len(seen) == len(set(seen))  # no mask sent to the value function twice (fit + test)


def test_fit_samples_and_faithfulness_function():
    n = 20
    terms = {(1,): 1.0, (2, 3): -1.0}
    game = and_game(terms, n)
    masks = sample_masks(n, 300, 0)
    test = sample_masks(n, 200, 1)
    res = ProxySPEX(max_order=2, seed=0).fit_samples(masks, game(masks), test_masks=test, test_values=game(test))
    assert res.n_evaluations == 0 and res.faithfulness["test"] > 0.9999
    assert faithfulness(res.interactions, game, n_masks=500, keep_probability=0.9) > 0.9999
    assert faithfulness(res.interactions, (test, game(test))) == pytest.approx(res.faithfulness["test"])


def test_near_full_sampling_share():
    n = 100
    est = ProxySPEX(seed=0, near_full_fraction=0.3)
    masks = est.design(n, 1000, np.random.default_rng(0))
    kept = masks.mean(axis=1)
    assert abs((kept > 0.75).mean() - 0.3) < 0.02


def test_proxyspex_recovers_hierarchical_parities():
    # Fourier-sparse and hierarchical (every term's subsets present): the tree proxy sees them.
    n = 40
    terms = {(): 0.5, (0,): 1.0, (1,): 0.8, (0, 1): 0.9, (2,): -0.7, (0, 2): 0.6, (0, 1, 2): 0.5, (10,): 0.4}
    game = parity_game(terms, n)
    res = ProxySPEX(max_order=3, seed=0).fit(game, 500, n_players=n, n_test=200, progress=False)
    four = res.interactions.to_fourier()
    for subset, coef in terms.items():
        assert four[subset] == pytest.approx(coef, abs=0.05), subset
    assert min(res.faithfulness.values()) > 0.99


@pytest.mark.parametrize("kwargs", [dict(selection="energy"), dict(refit="ols", bases=("fourier",)),
                                    dict(bases=("mobius",), residual_rounds=0)])
def test_proxyspex_variants_run_and_fit(kwargs):
    n = 32
    game = and_game({(1,): 1.0, (2, 3): -1.0, (4, 5, 6): 1.5}, n, noise=0.02)
    res = ProxySPEX(max_order=3, seed=1, **kwargs).fit(game, 400, n_players=n, n_test=200, progress=False)
    assert res.faithfulness["uniform"] > 0.95
    assert res.config["selection"] == kwargs.get("selection", "cv")


def test_proxyspex_uses_exact_transform_when_all_masks_fit_the_budget():
    n = 9  # a 9-head layer: 512 masks
    terms = {(0,): 1.0, (1, 2): -0.5, (3, 4, 5): 2.0, (0, 1, 2, 3): 0.7}
    game = and_game(terms, n)
    res = ProxySPEX(max_order=4, seed=0).fit(game, 600, n_players=n, n_test=0, progress=False)
    assert res.n_evaluations == 512 and res.diagnostics["exact"]
    mob = res.interactions.to_mobius().pruned(1e-12)
    assert set(mob.as_dict()) - {()} == set(terms)
    for subset, coef in terms.items():
        assert mob[subset] == pytest.approx(coef, abs=1e-12)


def test_one_se_rule_keeps_a_smaller_support_and_still_recovers_the_terms() -> None:
    """The one-SE rule never selects more terms than the CV minimum, on the same samples."""
    import numpy as np

    from headspex.engine import Interactions, ProxySPEX, sample_masks

    rng = np.random.default_rng(3)
    n = 20
    truth = Interactions({(): 0.5, (1,): 1.0, (4,): -0.8, (2, 7): 0.9, (3, 5, 9): 0.7}, n, basis="mobius")
    masks = sample_masks(n, 400, rng, 0.5)
    values = truth(masks) + 0.05 * rng.standard_normal(len(masks))
    by_min = ProxySPEX(max_order=3, seed=0).fit_samples(masks, values)
    by_one_se = ProxySPEX(max_order=3, seed=0, support_rule="one_se").fit_samples(masks, values)
    assert len(by_one_se.interactions) <= len(by_min.interactions)
    test = sample_masks(n, 500, rng, 0.5)
    for result in (by_min, by_one_se):
        residual = result.interactions(test) - truth(test)
        assert 1 - residual.var() / truth(test).var() > 0.98


def test_support_rules_pick_the_hand_computed_prefix(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Planted CV curve: min rule -> its argmin; one-SE rule -> smallest k within one SE of it."""
    import numpy as np

    from headspex.engine import ProxySPEX

    # 4 folds x 6 prefix sizes. Mean errors: [1.0, 0.30, 0.22, 0.20, 0.21, 0.25]; the best is
    # k=4 (0.20) with fold spread giving SE = std([0.1, 0.3, 0.1, 0.3], ddof=1)/2 = 0.0577,
    # so the one-SE threshold is 0.2577 and the smallest prefix under it is k=3 (0.22).
    fold_errors = np.array([
        [1.0, 0.30, 0.22, 0.10, 0.21, 0.25],
        [1.0, 0.30, 0.22, 0.30, 0.21, 0.25],
        [1.0, 0.30, 0.22, 0.10, 0.21, 0.25],
        [1.0, 0.30, 0.22, 0.30, 0.21, 0.25],
    ])
    masks = np.ones((8, 3), dtype=bool)
    ranking = [(), (0,), (1,), (2,), (0, 1), (1, 2)]
    for rule, expected_k in (("min", 4), ("one_se", 3)):
        estimator = ProxySPEX(max_order=2, support_rule=rule)
        monkeypatch.setattr(estimator, "_cv_prefix_errors", lambda design, targets, folds: fold_errors)
        k, error, _ = estimator._select(masks, np.zeros(8), ranking, [np.arange(2)] * 4)
        assert k == expected_k, rule
        assert error == fold_errors[:, expected_k - 1].mean()
