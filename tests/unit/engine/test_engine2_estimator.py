"""ProxySPEX with the engine II candidate sets: flat games, redundancy near full, bases recorded.

The games are computed directly from the masks (independent of the engine)."""

from __future__ import annotations

import numpy as np
import pytest

from headspex.engine import ProxySPEX, all_masks, sample_masks
from headspex.engine.adaptive import fit_adaptive


def r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    return 1.0 - float(np.sum((truth - predicted) ** 2)) / float(np.sum((truth - truth.mean()) ** 2))


def flat_parity(masks: np.ndarray) -> np.ndarray:
    """Order-2 and -3 parities with no lower-order terms (no marginal signal for a tree)."""
    z = 2.0 * masks - 1.0
    return 1.0 * z[:, 3] * z[:, 40] * z[:, 51] - 0.8 * z[:, 7] * z[:, 60] + 0.9 * z[:, 20] * z[:, 21] * z[:, 63]


def backup_heads(masks: np.ndarray) -> np.ndarray:
    """Heads {0, 1, 2} back each other up (any one suffices); head 5 adds on its own."""
    return 2.0 * masks[:, [0, 1, 2]].any(axis=1) + 0.7 * masks[:, 5] + 0.4 * masks[:, [3, 6]].any(axis=1)


def test_flat_parities_are_decoded_at_n_64():
    n = 64
    result = ProxySPEX(max_order=3, seed=0).fit(flat_parity, 700, n_players=n, n_test=0, progress=False)
    test = sample_masks(n, 500, np.random.default_rng(9))
    assert r2(flat_parity(test), result.interactions(test)) > 0.99
    # The coded design decoded the three parities (noiseless: an exact fit; ties go to the proxy).
    coded = result.diagnostics["searches"]["coded:fourier"]
    assert coded["n_decoded"] == 3 and coded["cv_mse"] < 1e-12


def test_backup_heads_are_exact_near_full_with_a_quarter_of_the_masks():
    n = 8
    result = ProxySPEX(max_order=3, seed=0).fit(backup_heads, 64, n_players=n, n_test=0, progress=False)
    masks = all_masks(n)
    near = (~masks).sum(axis=1) <= 2
    assert r2(backup_heads(masks[near]), result.interactions(masks[near])) > 0.9
    assert r2(backup_heads(masks), result.interactions(masks)) > 0.9
    assert result.diagnostics["basis"] == "removal"
    # Its removal expansion has the OR as one term.
    assert result.interactions.to_removal()[(0, 1, 2)] == pytest.approx(-2.0, abs=0.1)


def test_adaptive_second_round_stays_in_budget_and_records_rounds():
    n = 24
    budget = 300

    def game(masks: np.ndarray) -> np.ndarray:
        return backup_heads(masks[:, :8]) + 0.3 * masks[:, 15]

    result = fit_adaptive(ProxySPEX(max_order=3, seed=0), game, n, budget, fraction=0.25, seed=0)
    rounds = result.diagnostics["adaptive"]
    assert rounds["first_round"] + rounds["second_round"] == len(result.masks) <= budget
    assert rounds["second_round"] > 0
    test = sample_masks(n, 400, np.random.default_rng(3), keep_probability=0.9)
    assert r2(game(test), result.interactions(test)) > 0.9


def test_surrogate_maximiser_accepts_the_removal_basis():
    """Best 2-head removal of a removal-basis surrogate, against brute force over the pairs."""
    from itertools import combinations

    from headspex.engine import Interactions
    from headspex.engine.surrogate import maximise_surrogate

    n = 7
    # Single costs 1, .3, .35, .2, .05, .1, .4; pair (1, 2) and triple (4, 5, 6) cost extra: best pair {4, 5}.
    surrogate = Interactions({(): 3.0, (0,): -1.0, (1,): -0.3, (2,): -0.35, (1, 2): -2.0, (3,): -0.2, (4,): -0.05,
                              (5,): -0.1, (6,): -0.4, (4, 5, 6): -5.0}, n, basis="removal")
    pairs = list(combinations(range(n), 2))
    masks = np.ones((len(pairs), n), dtype=bool)
    for row, pair in enumerate(pairs):
        masks[row, list(pair)] = False
    best_pair = pairs[int(np.argmax(surrogate(masks)))]
    assert best_pair == (4, 5)
    for method in ("enumeration", "milp"):
        result = maximise_surrogate(surrogate, n_keep=n - 2, method=method)
        assert set(range(n)) - set(result.keep) == set(best_pair)


def test_nested_ranking_keeps_the_cv_honest_on_pure_noise():
    """Values with no signal at all: any CV R² above 0 is optimism. A proxy ranking fitted on all
    rows (validation folds included) finds structure in the noise; ranked inside every fold it
    can not, and neither can the pools of the other candidates, screened inside every fold."""
    rng = np.random.default_rng(5)
    masks = sample_masks(48, 400, rng, 0.5)
    noise = rng.standard_normal(400)

    def cv_r2(nested: bool) -> dict[str, float]:
        est = ProxySPEX(max_order=2, seed=0, nested_ranking=nested, sources=("proxy", "pursuit", "lasso"))
        searches = est.fit_samples(masks, noise).diagnostics["searches"]
        return {name: 1.0 - s["cv_mse"] / float(np.var(noise)) for name, s in searches.items()}

    honest, shared = cv_r2(True), cv_r2(False)
    assert "lasso2:fourier" in honest  # all 1 176 pairs, unscreened: 400 x 1 224 cells fit
    assert max(honest.values()) < 0.02, honest
    assert max(shared[name] for name in shared if name.startswith("proxy:")) > max(
        honest[name] for name in honest if name.startswith("proxy:")), (shared, honest)


def large_backup_groups(masks: np.ndarray) -> np.ndarray:
    """Two ORs of 4 and 5 kept players (backup heads: each a single removal term of order 4 / 5)
    plus a pair OR and two additive players."""
    return (1.2 * masks[:, [1, 8, 15, 22]].any(axis=1) + 1.4 * masks[:, [3, 10, 17, 24, 31]].any(axis=1)
            + 0.9 * masks[:, [40, 44]].any(axis=1) + 0.5 * masks[:, 5] - 0.6 * masks[:, 12])


def test_large_or_groups_are_grown_to_whole_removal_terms():
    n = 48
    result = ProxySPEX(max_order=5, seed=0).fit(large_backup_groups, 500, n_players=n, n_test=0, progress=False)
    rng = np.random.default_rng(11)
    uniform = sample_masks(n, 1000, rng)
    near_full = rng.random((1000, n)) < 0.9
    assert result.diagnostics["winner"] == "grown:removal"
    assert r2(large_backup_groups(uniform), result.interactions(uniform)) > 0.99
    assert r2(large_backup_groups(near_full), result.interactions(near_full)) > 0.99
    removal = result.interactions.to_removal()
    assert removal[(1, 8, 15, 22)] == pytest.approx(-1.2, abs=0.05)
    assert removal[(3, 10, 17, 24, 31)] == pytest.approx(-1.4, abs=0.05)


def test_undecoded_parities_are_pursued_after_the_coded_head():
    # At n = 256 with 1 000 masks the coded design decodes 6 of these 10 flat terms; the other 4
    # sit among hundreds of their subsets in the proxy's ranking, and the pursuit over that
    # ranking on the head's residual puts them first (a support of ~20 terms instead of ~400).
    from headspex.engine.synthetic import planted_game

    game = planted_game("parity", 256, 10, 3, noise=0.05, seed=1000)
    result = ProxySPEX(max_order=3, seed=0).fit(game, 1000, n_players=256, n_test=0, progress=False)
    coded = result.diagnostics["searches"]["coded:fourier"]
    assert result.diagnostics["winner"] == "coded:fourier"
    assert coded["n_decoded"] < 10 and coded["fallback_order"] == "pursuit" and coded["k"] <= 40
    test = sample_masks(256, 1000, np.random.default_rng(12))
    assert r2(game.noiseless(test), result.interactions(test)) > 0.9999


def test_sparsest_candidate_wins_a_tie_in_the_cv():
    """Candidates within the tolerance of the lowest CV error tie and the fewest terms wins;
    outside it the lowest error wins; exact fits (errors at the floor) tie."""
    from headspex.engine.estimators.proxyspex import sparsest_within

    searches = {
        "ridge1:fourier": {"terms": {(): 0.3, **{(i,): 0.1 for i in range(10)}}},  # 10 terms
        "lasso1:fourier": {"terms": {(): 0.3, (0,): 0.1, (1,): 0.2, (2,): 0.0, (3,): 0.1}},  # 3 (one zero)
        "proxy:fourier": {"support": [(), (0,), (1,), (0, 1)]},  # 3
        "pursuit:removal": {"support": [(), (4,)]},  # 1
    }
    errors = {"ridge1:fourier": 1.00, "lasso1:fourier": 1.015, "proxy:fourier": 1.012, "pursuit:removal": 1.03}
    # Within 2 %: ridge (10), lasso (3, error 1.015), proxy (3, error 1.012): proxy by the lower error.
    assert sparsest_within(searches, errors.get, 0.02) == "proxy:fourier"
    assert sparsest_within(searches, errors.get, 0.0) == "ridge1:fourier"
    assert sparsest_within(searches, errors.get, 0.05) == "pursuit:removal"
    # Exact fits: all at the floor tie; the sparsest is taken.
    floor = {name: 1e-12 for name in searches}
    assert sparsest_within(searches, floor.get, 0.0) == "pursuit:removal"
    # A cap: no winner above its error. Under ridge's (the lowest), only ridge remains; under
    # lasso's (1.015), proxy (1.012) and lasso tie, proxy by the lower error; pursuit (1.03) never.
    assert sparsest_within(searches, errors.get, 0.05, cap="ridge1:fourier") == "ridge1:fourier"
    assert sparsest_within(searches, errors.get, 0.05, cap="lasso1:fourier") == "proxy:fourier"
    assert sparsest_within(searches, errors.get, 0.02, cap="pursuit:removal") == "proxy:fourier"


def test_the_fit_applies_the_baseline_guard_to_the_candidates_it_searched(monkeypatch: pytest.MonkeyPatch):
    """The searches run as usual, then their CV errors are set so that the all-pairs LASSO (the
    baseline class) is lowest and the sparser first-order LASSO is 1 % above it: the tie rule alone
    takes the first-order one, the guarded fit the all-pairs one."""
    from headspex.engine.estimators import proxyspex

    real_searches = proxyspex.extra_searches

    def planted_errors(*args, **kwargs):
        found = real_searches(*args, **kwargs)
        for name, entry in found.items():
            # Far below the proxy's own searches (real errors, about 0.3 here), so those never tie.
            entry["cv_mse"] = {"lasso2:fourier": 1e-3, "lasso1:fourier": 1.01e-3}.get(name, 10.0)
        return found

    monkeypatch.setattr(proxyspex, "extra_searches", planted_errors)
    rng = np.random.default_rng(2)
    n, m = 60, 300
    masks = sample_masks(n, m, rng, 0.5)
    values = masks @ (rng.standard_normal(n) * 0.3) + 0.5 * rng.standard_normal(m)
    winners = {}
    for guard in (False, True):
        result = ProxySPEX(max_order=2, seed=0, baseline_guard=guard).fit_samples(masks, values)
        searches = result.diagnostics["searches"]
        assert searches["lasso1:fourier"]["n_terms"] < searches["lasso2:fourier"]["n_terms"]
        assert min(s["cv_mse"] for name, s in searches.items() if name.startswith("proxy:")) > 0.1
        winners[guard] = result.diagnostics["winner"]
    assert winners == {False: "lasso1:fourier", True: "lasso2:fourier"}


def test_winner_follows_the_parsimony_rule_on_a_noisy_first_order_game():
    """A noisy first-order game (8 large effects and 52 small ones among 60 players): the proxy
    read-out has the lowest CV error and the first-order LASSO is within 2 % of it with far
    fewer terms. The winner is the sparsest candidate within 2 % of the lowest error and, with
    the baseline guard, at most the LASSO baseline class's error (checked against the recorded
    errors and term counts); with no tolerance the lowest error wins."""
    rng = np.random.default_rng(2)
    n, m = 60, 300
    masks = sample_masks(n, m, rng, 0.5)
    effects = rng.standard_normal(n) * 0.1
    effects[rng.choice(n, 8, replace=False)] += rng.choice([-1.0, 1.0], 8) * rng.uniform(0.3, 1.0, 8)
    values = masks @ effects + rng.standard_normal(m)
    for tolerance, guard in ((0.02, False), (0.02, True), (0.0, True)):
        found = ProxySPEX(max_order=2, seed=0, candidate_tolerance=tolerance,
                          baseline_guard=guard).fit_samples(masks, values).diagnostics
        searches = found["searches"]
        # 300 x (60 + 1770) cells: the all-pairs LASSO runs and is the baseline's class.
        assert [name for name, s in searches.items() if s.get("baseline_class")] == ["lasso2:fourier"]
        floor = 1e-12 * float(np.var(values))
        errors = {name: max(s["cv_mse"], floor) for name, s in searches.items()}
        lowest = min(errors.values())
        bound = (1.0 + tolerance) * lowest
        if guard:
            bound = min(bound, errors["lasso2:fourier"])
            assert errors[found["winner"]] <= errors["lasso2:fourier"]
        tied = [name for name in searches if errors[name] <= bound]
        expected = min(tied, key=lambda name: (searches[name]["n_terms"], errors[name]))
        assert found["winner"] == expected, (tolerance, found["winner"], errors)
        assert found["lowest_cv"] == min(errors, key=errors.get)
        if tolerance == 0.0:
            assert found["winner"] == found["lowest_cv"]
        else:  # the rule has a choice to make here, and makes it
            assert found["winner"] != found["lowest_cv"]
            assert searches[found["winner"]]["n_terms"] < searches[found["lowest_cv"]]["n_terms"]
