"""Transforms and indices against brute-force definitions (enumeration of subsets)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from headspex.engine import Interactions, all_masks, exact_interactions, subset_index


def subsets_of(players):
    for k in range(len(players) + 1):
        yield from combinations(players, k)


def brute_game(values: np.ndarray, n: int):
    """v(T) for T a tuple of kept players, straight from the all-masks array (index = sum 2^i)."""
    return lambda T: values[sum(1 << i for i in T)]


def brute_mobius(values, n):
    v = brute_game(values, n)
    return {S: sum((-1) ** (len(S) - len(T)) * v(T) for T in subsets_of(S)) for S in subsets_of(range(n))}


def brute_fourier(values, n):
    """F(S) = 2^-n sum_x f(x) prod_{i in S} (2 x_i - 1), by enumerating masks one by one."""
    out = {}
    for S in subsets_of(range(n)):
        total = 0.0
        for T in subsets_of(range(n)):
            sign = 1.0
            for i in S:
                sign *= 1.0 if i in T else -1.0
            total += sign * brute_game(values, n)(T)
        out[S] = total / 2**n
    return out


def test_all_masks_order():
    masks = all_masks(3)
    assert masks.shape == (8, 3) and masks.dtype == bool
    assert not masks[0].any() and masks[-1].all()
    assert masks[subset_index((0, 2))].tolist() == [True, False, True]


@pytest.mark.parametrize("n", [1, 3, 5, 7])
def test_exact_transforms_match_definitions(n):
    rng = np.random.default_rng(n)
    values = rng.normal(size=2**n)
    fourier = exact_interactions(values, n, basis="fourier")
    mobius = exact_interactions(values, n, basis="mobius")
    bf, bm = brute_fourier(values, n), brute_mobius(values, n)
    for S in subsets_of(range(n)):
        assert fourier[S] == pytest.approx(bf[S], abs=1e-10)
        assert mobius[S] == pytest.approx(bm[S], abs=1e-10)


@pytest.mark.parametrize("n", [2, 6, 10])
def test_fourier_mobius_round_trip(n):
    rng = np.random.default_rng(10 + n)
    values = rng.normal(size=2**n)
    masks = all_masks(n)
    bm = brute_mobius(values, n) if n <= 6 else None
    # Sparse random function given in the Fourier basis; convert and compare pointwise on all masks.
    fourier = exact_interactions(values, n, basis="fourier")
    mobius = fourier.to_mobius()
    assert np.allclose(mobius(masks), values, atol=1e-9)
    assert np.allclose(fourier(masks), values, atol=1e-9)
    back = mobius.to_fourier()
    for S, c in fourier.as_dict().items():
        assert back[S] == pytest.approx(c, abs=1e-9)
    if bm is not None:
        for S, c in bm.items():
            assert mobius[S] == pytest.approx(c, abs=1e-9)


def test_sparse_conversion_of_single_and_term():
    # AND of 3 players = 1/8 prod(1 + z_i): eight Fourier coefficients of 1/8.
    inter = Interactions({(1, 2, 4): 1.0}, 6, basis="mobius").to_fourier()
    assert len(inter) == 8
    assert all(c == pytest.approx(0.125) for c in inter.coefficients)
    masks = all_masks(6)
    assert np.allclose(inter(masks), masks[:, [1, 2, 4]].all(axis=1))


def brute_banzhaf_interaction(values, n, S):
    v = brute_game(values, n)
    rest = [i for i in range(n) if i not in S]
    total = 0.0
    for T in subsets_of(rest):
        total += sum((-1) ** (len(S) - len(L)) * v(tuple(sorted(T + L))) for L in subsets_of(S))
    return total / 2 ** (n - len(S))


def brute_shapley_interaction(values, n, S):
    v = brute_game(values, n)
    s = len(S)
    rest = [i for i in range(n) if i not in S]
    total = 0.0
    for T in subsets_of(rest):
        t = len(T)
        weight = math.factorial(n - t - s) * math.factorial(t) / math.factorial(n - s + 1)
        total += weight * sum((-1) ** (s - len(L)) * v(tuple(sorted(T + L))) for L in subsets_of(S))
    return total


@pytest.mark.parametrize("n", [4, 6, 8])
def test_indices_match_textbook_formulas(n):
    rng = np.random.default_rng(100 + n)
    values = rng.normal(size=2**n)
    inter = exact_interactions(values, n)
    sv = inter.shapley_values()
    bv = inter.banzhaf_values()
    assert sv.sum() == pytest.approx(values[-1] - values[0])  # efficiency
    for i in range(n):
        assert bv[i] == pytest.approx(brute_banzhaf_interaction(values, n, (i,)), abs=1e-10)
        assert sv[i] == pytest.approx(brute_shapley_interaction(values, n, (i,)), abs=1e-10)
    for S in [(0, 1), (1, 3), (0, 2, 3), tuple(range(4))]:
        assert inter.banzhaf_interaction(S) == pytest.approx(brute_banzhaf_interaction(values, n, S), abs=1e-10)
        assert inter.shapley_interaction(S) == pytest.approx(brute_shapley_interaction(values, n, S), abs=1e-10)
        mob = inter.to_mobius()
        assert mob.banzhaf_interaction(S) == pytest.approx(inter.banzhaf_interaction(S), abs=1e-10)


def test_top_energy_json_and_names(tmp_path):
    names = ["L0H0", "L0H1", "L0H2", "L0H3"]
    inter = Interactions({(): 1.0, (0,): 0.5, (1, 2): -2.0, (0, 1, 3): 0.25}, 4, basis="fourier", player_names=names)
    top = inter.top(2)
    assert top[0] == (("L0H1", "L0H2"), (1, 2), -2.0)
    assert top[1][1] == (0,)
    assert inter.energy_by_order() == {1: 0.25, 2: 4.0, 3: 0.0625}
    assert inter.energy_by_order(include_constant=True)[0] == 1.0
    path = tmp_path / "inter.json"
    inter.save_json(path)
    loaded = Interactions.load_json(path)
    assert loaded.player_names == names and loaded.as_dict() == inter.as_dict()
    mob_top = inter.top(1, basis="mobius", min_order=3)
    assert mob_top[0][1] == (0, 1, 3) and mob_top[0][2] == pytest.approx(0.25 * 8)


def test_vectorised_evaluation_is_fast_and_correct():
    import time

    rng = np.random.default_rng(0)
    n = 200
    terms = {tuple(sorted(rng.choice(n, size=int(rng.integers(1, 4)), replace=False).tolist())): rng.normal() for _ in range(2000)}
    inter = Interactions(terms, n)
    masks = rng.random((100_000, n)) < 0.5
    start = time.perf_counter()
    values = inter(masks)
    assert time.perf_counter() - start < 30.0  # ~4 s on an idle 2-core machine
    z = 2.0 * masks[:50] - 1.0
    brute = [sum(c * np.prod(z[r, list(s)]) for s, c in inter.as_dict().items()) for r in range(50)]
    assert np.allclose(values[:50], brute)


def test_shapiq_export_round_trip():
    shapiq = pytest.importorskip("shapiq")
    inter = Interactions({(): 0.5, (0,): 1.0, (1, 2): -1.0}, 3, basis="mobius")
    iv = inter.to_shapiq("Moebius")
    assert isinstance(iv, shapiq.InteractionValues)
    assert iv[(1, 2)] == pytest.approx(-1.0) and iv[(0,)] == pytest.approx(1.0)
    sv = inter.to_shapiq("SV")
    assert sv[(1,)] == pytest.approx(inter.shapley_values()[1])
