"""New candidate generators, the coded design, the design rule, ladder anchoring and the second round.

Each test plants a known structure computed directly from the masks (not through the engine)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from headspex.engine import Interactions, all_masks, sample_masks
from headspex.engine.interactions import basis_matrix
from headspex.engine.adaptive import greedy_removal_path, second_round_masks
from headspex.engine.anchored import detect_ladder, ladder_removal_terms
from headspex.engine import candidates
from headspex.engine.candidates import (
    all_pairs_lasso_path,
    all_pairs_lasso_search,
    column_spread,
    cv_prefix_errors,
    grown_pursuit_ranking,
    pursuit_ranking,
    rank_terms,
    ridge_penalties,
    ridge_search,
    screening_pool,
    superset_gains,
)
from headspex.engine.coded import coded_design, decode_coded, plan_coded
from headspex.engine.design import (
    ABLATIONS_PER_PLAYER,
    draw_design,
    ladder_masks,
    near_full_keep_probability,
    plan_design,
)


def parity_values(masks: np.ndarray, terms: dict) -> np.ndarray:
    z = 2.0 * masks - 1.0
    return sum(c * np.prod(z[:, list(s)], axis=1) for s, c in terms.items())


FLAT = {(3, 70, 200): 1.2, (11, 400): -0.9, (5,): 0.7, (100, 101, 450): -1.1, (250, 260): 0.8}


def test_coded_design_decodes_flat_parities_without_marginal_signal():
    n = 512
    plan = plan_coded(n, 1500)
    assert plan is not None and plan.n_masks <= 1500 and plan.bucket_bits >= 4
    design = coded_design(plan, np.random.default_rng(0))
    assert len(np.unique(design.masks, axis=0)) == len(design.masks)
    # Marginally uniform: each player kept about half the time.
    assert abs(design.masks.mean() - 0.5) < 0.02
    decoded = decode_coded(design, parity_values(design.masks, FLAT) + 0.3)
    assert set(FLAT) | {()} == set(decoded)
    for subset, coef in FLAT.items():
        assert decoded[subset] == pytest.approx(coef, abs=1e-9)
    assert decoded[()] == pytest.approx(0.3)


def test_coded_plan_never_refuses_and_declines_tiny_budgets():
    assert plan_coded(512, 100) is None
    assert plan_coded(1, 5000) is None
    small = plan_coded(64, 500)
    assert small is not None and small.n_masks <= 500


def test_pursuit_finds_a_planted_pair_without_marginal_signal():
    rng = np.random.default_rng(1)
    n = 30
    masks = sample_masks(n, 300, rng)
    values = parity_values(masks, {(4, 17): 1.0, (2,): 0.5}) + 0.05 * rng.standard_normal(300)
    pool = screening_pool(n, np.zeros(n), max_order=2, max_pool=10_000)
    assert len(pool) == n + math.comb(n, 2)
    ranking = pursuit_ranking(masks, values, "fourier", pool, max_terms=10)
    assert ranking[0] == () and set(ranking[1:3]) == {(4, 17), (2,)}
    # A strict stopping rule (3 ln P sigma^2, above the ~2 ln P sigma^2 a noise column reaches)
    # ends the ranking once only noise is left.
    strict = pursuit_ranking(masks, values, "fourier", pool, max_terms=10, stop_factor=3.0)
    assert strict == [()] + ranking[1:3]


def backup_group_values(masks: np.ndarray) -> np.ndarray:
    """An OR of 5 kept players (one removal term of order 5) plus two additive players."""
    return 1.5 * masks[:, [2, 9, 13, 21, 30]].any(axis=1) + 0.6 * masks[:, 5] - 0.4 * masks[:, 17]


def test_grown_pursuit_reaches_an_or_of_five_players_that_the_pool_cannot_hold():
    rng = np.random.default_rng(4)
    n = 32
    # Masks ablating 60 % of the players: the group is all ablated in ~8 % of them.
    masks = rng.random((600, n)) < 0.4
    values = backup_group_values(masks) + 0.02 * rng.standard_normal(600)
    pool = screening_pool(n, np.zeros(n), max_order=3, max_pool=2_000)
    assert max(len(s) for s in pool) == 3
    test = rng.random((2_000, n)) < 0.4
    truth = backup_group_values(test)

    def held_out_r2(ranking: list) -> float:
        beta, *_ = np.linalg.lstsq(basis_matrix(masks, ranking, "removal"), values, rcond=None)
        predicted = basis_matrix(test, ranking, "removal") @ beta
        return 1.0 - float(np.sum((truth - predicted) ** 2)) / float(np.sum((truth - truth.mean()) ** 2))

    plain = pursuit_ranking(masks, values, "removal", pool, max_terms=60)
    grown = grown_pursuit_ranking(masks, values, "removal", pool, max_terms=60, max_order=5, max_cells=1e7)
    assert (2, 9, 13, 21, 30) in grown and (2, 9, 13, 21, 30) not in plain
    assert held_out_r2(grown) > 0.999 > 0.99 > held_out_r2(plain)
    # A cell budget too small for whole fans still gets there: the residual screening proposes
    # the group's members first.
    tight = grown_pursuit_ranking(masks, values, "removal", pool, max_terms=60, max_order=5,
                                  max_cells=600 * (len(pool) + 40))
    assert (2, 9, 13, 21, 30) in tight


@pytest.mark.parametrize("basis", ["fourier", "mobius", "removal"])
def test_superset_gains_match_single_column_least_squares(basis):
    rng = np.random.default_rng(5)
    n, m = 7, 90
    masks = rng.random((m, n)) < 0.5
    residual = rng.standard_normal(m)
    residual -= residual.mean()
    terms = [(0,), (1, 4), (2, 3, 6)]
    factors = basis_matrix(masks, [(j,) for j in range(n)], basis)
    gains = superset_gains(factors, basis_matrix(masks, terms, basis), residual)
    for t, term in enumerate(terms):
        for j in set(range(n)) - set(term):
            # Independent: the RSS drop from regressing the residual on [1, superset column].
            design = basis_matrix(masks, [(), tuple(sorted((*term, j)))], basis)
            beta, *_ = np.linalg.lstsq(design, residual, rcond=None)
            drop = float(residual @ residual) - float(np.sum((residual - design @ beta) ** 2))
            assert gains[j, t] == pytest.approx(drop, rel=1e-8, abs=1e-10)


def test_cv_prefix_errors_match_explicit_refits():
    rng = np.random.default_rng(2)
    design = rng.standard_normal((40, 5))
    targets = rng.standard_normal(40)
    folds = [np.arange(0, 10), np.arange(10, 20)]
    errors = cv_prefix_errors(design, targets, folds)
    for f, val in enumerate(folds):
        train = np.setdiff1d(np.arange(40), val)
        for k in range(1, 6):
            beta, *_ = np.linalg.lstsq(design[train][:, :k], targets[train], rcond=None)
            expected = np.mean((targets[val] - design[val][:, :k] @ beta) ** 2)
            assert errors[f, k - 1] == pytest.approx(expected, rel=1e-6)


def test_rank_terms_orders_by_spread_on_the_masks():
    masks = np.ones((100, 4), dtype=bool)
    masks[:50, 0] = False  # player 0 ablated half the time; player 1 twice, players 2,3 never together
    masks[:2, 1] = False
    ranking = rank_terms({(0,): 1.0, (1,): 3.0, (2, 3): 5.0}, masks, "removal", cap=10, max_order=3)
    # std of y_0 is 0.5, of y_1 is 0.14, y_2*y_3 is always 0 (never ranked).
    assert ranking == [(), (0,), (1,)]


def test_design_rule_scales_the_ablation_count_with_n():
    assert 1 - near_full_keep_probability(64, 150) == pytest.approx(0.1)
    keep = near_full_keep_probability(270, 600)
    ablated = (1 - keep) * 270
    assert ablated == pytest.approx(ABLATIONS_PER_PLAYER * 270 / 600)
    assert 1 - near_full_keep_probability(1024, 750) < 0.03
    plan = plan_design(8, 100)
    assert plan.ladder_order == 2 and plan.coded is None
    masks, code = draw_design(plan, np.random.default_rng(0))
    assert len(masks) == 100 and len(np.unique(masks, axis=0)) == 100 and code is None
    assert plan_design(8, 256).exhaustive
    big = plan_design(512, 2000)
    assert big.ladder_order == 0 and big.coded is not None
    masks, code = draw_design(big, np.random.default_rng(0))
    assert len(masks) == 2000 and len(np.unique(masks, axis=0)) == 2000
    assert code is not None and (~masks[-big.n_near_full :]).mean() == pytest.approx(1 - big.near_full_keep, abs=0.01)


def test_ladder_gives_exact_removal_terms():
    n = 6
    masks = ladder_masks(n, 2)
    assert len(masks) == 1 + n + math.comb(n, 2)
    extra = sample_masks(n, 10, np.random.default_rng(0), exclude=masks)
    all_rows = np.concatenate([extra, masks])
    order, rows = detect_ladder(all_rows)
    assert order == 2 and rows.sum() == len(masks)
    # Value: 2 if any of {0, 1} kept, plus 0.5 per kept player 3, minus 1 if 4 and 5 both ablated.
    values = 2.0 * all_rows[:, [0, 1]].any(axis=1) + 0.5 * all_rows[:, 3] - 1.0 * ~all_rows[:, 4] * ~all_rows[:, 5]
    terms = ladder_removal_terms(all_rows, values, 2)
    expected = {(): 2.5, (0, 1): -2.0, (3,): -0.5, (4, 5): -1.0}
    for subset in [s for k in range(3) for s in combinations(range(n), k)]:
        assert terms.get(subset, 0.0) == pytest.approx(expected.get(subset, 0.0), abs=1e-12)
    assert detect_ladder(extra)[0] == 0


def test_second_round_follows_the_fitted_removal_path():
    n = 10
    # Fitted value: removing 7 costs nothing, then 2, everything else costs 1.
    first = Interactions({(): 10.0, **{(i,): -1.0 for i in range(n) if i not in (7, 2)}, (2,): -0.1},
                         n, basis="removal")
    assert greedy_removal_path(first, 2) == [(7,), (2, 7)]
    exclude = all_masks(n)[:50]
    rows = second_round_masks(first, 40, np.random.default_rng(0), exclude)
    assert 0 < len(rows) <= 40 and len(np.unique(rows, axis=0)) == len(rows)
    keys = {r.tobytes() for r in exclude}
    assert not any(r.tobytes() in keys for r in rows)
    path_mask = np.ones(n, bool)
    path_mask[7] = False
    assert any((r == path_mask).all() for r in rows)
    assert (~rows).sum(axis=1).mean() < 0.5 * n  # near-full


def test_second_round_background_ablates_as_many_players_as_the_design_rule() -> None:
    """At large n the background is the design's near-full regime (each player ablated about 20
    times over the round), not a fixed 10 % of the players."""
    n, n_masks = 400, 800
    first = Interactions({(): 5.0, **{(i,): -0.01 * (i % 7 + 1) for i in range(n)}}, n, basis="removal")
    rows = second_round_masks(first, n_masks, np.random.default_rng(0), np.ones((1, n), bool))
    n_path = 3 * int(np.ceil(0.1 * n))  # each greedy-path prefix and two neighbours
    expected = 20.0 * n / (n_masks - n_path) + 2.5  # the rule's background, plus 2 or 3 flagged players
    assert abs((~rows[-600:]).sum(axis=1).mean() - expected) < 1.0


@pytest.mark.parametrize("basis", ["fourier", "mobius", "removal"])
def test_column_spread_equals_the_std_of_the_design_columns(basis: str) -> None:
    rng = np.random.default_rng(3)
    masks = rng.random((200, 10)) < 0.7
    subsets = [(), (3,), (1, 4), (0, 2, 5), (6, 7, 8, 9)]
    expected = basis_matrix(masks, subsets, basis).std(axis=0)
    np.testing.assert_allclose(column_spread(masks, subsets, basis), expected, atol=1e-12)


def _sklearn_ridge(design: np.ndarray, values: np.ndarray, alpha: float | None) -> tuple[float, np.ndarray]:
    """(constant, coefficients) of sklearn's Ridge; the constant-only model when alpha is None (infinite)."""
    from sklearn.linear_model import Ridge

    if alpha is None:
        return float(values.mean()), np.zeros(design.shape[1])
    model = Ridge(alpha=alpha, fit_intercept=True, solver="svd").fit(design, values)
    return float(model.intercept_), model.coef_


def _brute_force_loo(design: np.ndarray, values: np.ndarray, alpha: float | None) -> float:
    errors = []
    for i in range(len(values)):
        keep = np.arange(len(values)) != i
        constant, coef = _sklearn_ridge(design[keep], values[keep], alpha)
        errors.append((values[i] - constant - design[i] @ coef) ** 2)
    return float(np.mean(errors))


@pytest.mark.parametrize(("n_players", "signal"), [(6, 1.0), (14, 1.0), (6, 0.0), (14, 0.0)])
def test_ridge_search_matches_a_one_by_one_loop(n_players: int, signal: float) -> None:
    """Primal (terms <= rows) and dual (terms > rows) forms, with and without signal: each fold's penalty
    minimises the brute-force leave-one-out error on its training rows, the CV error is that of
    sklearn's Ridge at those penalties, and the final fit is sklearn's at the all-rows choice."""
    rng = np.random.default_rng(5)
    m = 48
    masks = rng.random((m, n_players)) < 0.5
    signs = np.where(masks, 1.0, -1.0)
    values = signal * (0.7 * signs[:, 0] - 0.4 * signs[:, 1] * signs[:, 2]) + 0.3 + 0.3 * rng.normal(size=m)
    terms = [(i,) for i in range(n_players)] + list(combinations(range(n_players), 2))
    folds = np.array_split(rng.permutation(m), 3)
    found = ridge_search(masks, values, "fourier", terms, folds, n_alphas=6)
    design = np.stack([math.prod(signs[:, i] for i in s) * np.ones(m) for s in terms], axis=1)
    loop = []
    for val, alpha in zip(folds, found["fold_alphas"]):
        train = np.setdiff1d(np.arange(m), val)
        grid = [None if np.isinf(a) else float(a) for a in ridge_penalties(design, 6)]
        loo = [_brute_force_loo(design[train], values[train], a) for a in grid]
        assert _brute_force_loo(design[train], values[train], alpha) == pytest.approx(min(loo), rel=1e-6)
        constant, coef = _sklearn_ridge(design[train], values[train], alpha)
        loop.append(np.mean((values[val] - constant - design[val] @ coef) ** 2))
    assert found["cv_mse"] == pytest.approx(float(np.mean(loop)), rel=1e-6)
    constant, coef = _sklearn_ridge(design, values, found["alpha"])
    fitted = found["terms"]
    assert fitted[()] == pytest.approx(constant, abs=1e-8)
    np.testing.assert_allclose([fitted.get(s, 0.0) for s in terms], coef, atol=1e-8)


def test_graded_ridge_equals_an_explicit_order_weighted_penalty():
    rng = np.random.default_rng(6)
    n, m = 6, 60
    masks = rng.random((m, n)) < 0.6
    terms = [s for k in (1, 2, 3) for s in combinations(range(n), k)]
    x = basis_matrix(masks, terms, "removal")
    values = x @ (rng.normal(0, 1, len(terms)) * (rng.random(len(terms)) < 0.2)) + 0.1 * rng.standard_normal(m)
    folds = [np.arange(0, 30), np.arange(30, 60)]
    found = ridge_search(masks, values, "removal", terms, folds, order_growths=(10.0, 100.0))
    assert found["order_growth"] in (10.0, 100.0) and found["alpha"] is not None
    # Independent: the centred normal equations with penalty alpha * g^(k-1) on each order-k term.
    penalty = found["alpha"] * found["order_growth"] ** (np.array([len(t) for t in terms]) - 1.0)
    centred = x - x.mean(axis=0)
    beta = np.linalg.solve(centred.T @ centred + np.diag(penalty), centred.T @ (values - values.mean()))
    got = np.array([found["terms"][t] for t in terms])
    np.testing.assert_allclose(got, beta, rtol=1e-6, atol=1e-9)
    assert found["terms"][()] == pytest.approx(values.mean() - x.mean(axis=0) @ beta, abs=1e-9)


def _all_pairs_problem(seed: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]], np.ndarray]:
    """Masks, values (two singles and two pairs plus noise), every subset of order 1-2, and its formed design."""
    rng = np.random.default_rng(seed)
    masks = rng.random((m, n)) < 0.7
    z = 2.0 * masks - 1.0
    values = z[:, 0] - 0.5 * z[:, 3] * z[:, 7] + 0.3 * z[:, 1] * z[:, 2] + 0.2 * z[:, 5] + 0.2 * rng.standard_normal(m)
    subsets = [(i,) for i in range(n)] + list(combinations(range(n), 2))
    return masks, values, subsets, basis_matrix(masks, subsets, "fourier")


@pytest.mark.parametrize(("added_per_round", "kept_columns"), [
    (candidates.PAIR_LASSO_ADD, candidates.PAIR_GRAM_MAX_COLUMNS), (3, candidates.PAIR_GRAM_MAX_COLUMNS), (3, 40)])
def test_all_pairs_lasso_path_equals_sklearn_on_the_formed_design(monkeypatch: pytest.MonkeyPatch,
                                                                  added_per_round: int, kept_columns: int) -> None:
    """The working-set path never forms the pair columns; sklearn's lasso_path on all of them is the truth.
    With 3 columns added per round the working set starts far too small, so the optimality check must
    find every missing column. With 40 kept columns the column cache must evict, and the larger
    working sets (the last ones exceed the 150 rows, where no Gram matrix is used) skip it."""
    from sklearn.linear_model import lasso_path

    monkeypatch.setattr(candidates, "PAIR_LASSO_ADD", added_per_round)
    monkeypatch.setattr(candidates, "PAIR_GRAM_MAX_COLUMNS", kept_columns)

    masks, values, subsets, design = _all_pairs_problem(0, 24, 150)
    centred, target = design - design.mean(axis=0), values - values.mean()
    alphas = np.max(np.abs(centred.T @ target)) / len(values) * np.logspace(0, -3, 20)
    _, reference, _ = lasso_path(centred, target, alphas=alphas, tol=1e-12, max_iter=100_000)
    path = list(all_pairs_lasso_path(2.0 * masks - 1.0, values, alphas, tol=1e-12, max_iter=100_000))
    assert len(path) == len(alphas)
    index = {s: k for k, s in enumerate(subsets)}
    for (intercept, features, beta), expected in zip(path, reference.T):
        got = np.zeros(len(subsets))
        for (i, j), b in zip(features, beta):
            got[index[(int(i),) if j < 0 else (int(i), int(j))]] = b
        np.testing.assert_allclose(got, expected, atol=1e-7)
        assert intercept == pytest.approx(values.mean() - design.mean(axis=0) @ expected, abs=1e-7)
    assert np.count_nonzero(reference[:, -1]) > 50  # the small penalties reach far into the pairs


def test_pair_column_cache_holds_each_kept_columns_products_through_growth_and_eviction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After every join (some growing the storage, some forcing an eviction, one too large to keep),
    each kept column's centred values, Gram entries and product with the target equal those of the
    formed, centred design."""
    monkeypatch.setattr(candidates, "PAIR_GRAM_MAX_COLUMNS", 90)
    masks, values, subsets, design = _all_pairs_problem(3, 16, 60)
    centred, target = design - design.mean(axis=0), values - values.mean()
    n = masks.shape[1]
    upper = np.triu_indices(n, k=1)
    every = np.concatenate([np.column_stack([np.arange(n), np.full(n, -1)]), np.column_stack(upper)])
    assert [(int(i),) if j < 0 else (int(i), int(j)) for i, j in every] == subsets
    cache = candidates._CentredPairColumns(2.0 * masks - 1.0, every, target)
    rng = np.random.default_rng(4)
    outcomes = []
    for size in [10, 30, 50, 20, 70, 40, 95, 60, 80]:
        wanted = np.sort(rng.choice(len(subsets), size=size, replace=False))
        outcomes.append(cache.add(wanted))
        kept = cache.members
        slots = cache.slot[kept]
        assert len(kept) <= 90 and np.all(slots == np.arange(len(kept)))
        if outcomes[-1]:
            assert set(wanted) <= set(kept)
        np.testing.assert_allclose(cache.rows[slots], centred[:, kept].T, atol=1e-12)
        np.testing.assert_allclose(cache.gram[np.ix_(slots, slots)], centred[:, kept].T @ centred[:, kept], atol=1e-9)
        np.testing.assert_allclose(cache.products[slots], centred[:, kept].T @ target, atol=1e-9)
    assert outcomes.count(False) == 1  # the 95 columns


@pytest.mark.parametrize("formed_max_cells", [0.0, candidates.FORMED_PAIRS_MAX_CELLS])
def test_all_pairs_lasso_search_chooses_the_penalty_of_an_explicit_cv(monkeypatch: pytest.MonkeyPatch,
                                                                     formed_max_cells: float) -> None:
    """Each fold's sklearn lasso_path on the formed design, the penalty with the lowest mean validation
    error, and sklearn's all-rows fit at it: the search must give the same error and coefficients, on
    the working-set path (no design formed) and on the formed one."""
    from sklearn.linear_model import lasso_path

    monkeypatch.setattr(candidates, "FORMED_PAIRS_MAX_CELLS", formed_max_cells)

    masks, values, subsets, design = _all_pairs_problem(1, 20, 160)
    folds = np.array_split(np.random.default_rng(2).permutation(len(values)), 4)
    found = all_pairs_lasso_search(masks, values, folds, n_alphas=12, tol=1e-12)
    centred = design - design.mean(axis=0)
    alphas = np.max(np.abs(centred.T @ (values - values.mean()))) / len(values) * np.logspace(0, -3, 12)
    errors = np.zeros(len(alphas))
    for val in folds:
        train = np.setdiff1d(np.arange(len(values)), val)
        x_mean = design[train].mean(axis=0)
        _, coefs, _ = lasso_path(design[train] - x_mean, values[train] - values[train].mean(), alphas=alphas,
                                 tol=1e-12, max_iter=100_000)
        predictions = (design[val] - x_mean) @ coefs + values[train].mean()
        errors += np.mean((values[val][:, None] - predictions) ** 2, axis=0) / len(folds)
    best = int(np.argmin(errors))
    assert 0 < best < len(alphas) - 1 and found["cv_mse"] == pytest.approx(errors[best], rel=1e-6)
    _, coefs, _ = lasso_path(centred, values - values.mean(), alphas=alphas[: best + 1], tol=1e-12, max_iter=100_000)
    expected = coefs[:, -1]
    np.testing.assert_allclose([found["terms"].get(s, 0.0) for s in subsets], expected, atol=1e-7)
    assert found["terms"][()] == pytest.approx(values.mean() - design.mean(axis=0) @ expected, abs=1e-7)
    assert {(3, 7), (1, 2)} <= set(found["terms"])  # pairs with no marginal signal, found unscreened


@pytest.mark.parametrize("max_order", [1, 2])
def test_the_baseline_class_is_the_lasso_over_the_order_the_lasso_baseline_fits(
        monkeypatch: pytest.MonkeyPatch, max_order: int) -> None:
    """LassoRegression(max_order=2) fits every pair where rows x (n + C(n, 2)) <= ALL_PAIRS_MAX_CELLS
    and every single beyond: the flagged candidate is the all-pairs LASSO, then the first-order
    one; with max_order=1 the pool is the n singles and the pool LASSO is that class."""
    from headspex.engine import search
    from headspex.engine.estimators.baselines import LassoRegression

    rng = np.random.default_rng(5)
    n, m = 12, 120
    masks = sample_masks(n, m, rng, 0.5)
    values = masks @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)
    folds = np.array_split(rng.permutation(m), 4)
    flagged_by_limit = {}
    for limit in (1e9, 1e3):  # all pairs fit; they do not
        monkeypatch.setattr(search, "ALL_PAIRS_MAX_CELLS", limit)
        out = search.extra_searches(masks, values, folds, {}, [()], max_order, cap=50, ridge=False,
                                    pursuit_bases=(), growth=False)
        flagged = [name for name, found in out.items() if found.get("baseline_class")]
        baseline_order = LassoRegression(max_order=max_order, max_design_floats=limit).fit_samples(
            masks, values).diagnostics["order_used"]
        flagged_by_limit[limit] = (flagged, baseline_order)
    if max_order == 2:
        assert flagged_by_limit == {1e9: (["lasso2:fourier"], 2), 1e3: (["lasso1:fourier"], 1)}
    else:
        assert flagged_by_limit == {1e9: (["lasso:fourier"], 1), 1e3: (["lasso:fourier"], 1)}
