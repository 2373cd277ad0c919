"""The removal (co-Möbius) basis against brute-force definitions, independent of the engine code."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from headspex.engine import Interactions, all_masks, basis_matrix, exact_interactions
from headspex.engine.exact import inverse_removal_dense, removal_transform_dense, transform_dense
from headspex.engine.interactions import convert_terms
from headspex.types import Basis


def subsets_of(players):
    for k in range(len(players) + 1):
        yield from combinations(players, k)


def value_of_kept(values: np.ndarray, kept) -> float:
    return float(values[sum(1 << i for i in kept)])


def brute_removal(values: np.ndarray, n: int) -> dict:
    """r(S) = sum_{A ⊆ S} (-1)^{|S|-|A|} v(N minus A), straight from the definition."""
    everyone = set(range(n))
    return {S: sum((-1) ** (len(S) - len(A)) * value_of_kept(values, sorted(everyone - set(A)))
                   for A in subsets_of(S)) for S in subsets_of(range(n))}


def brute_evaluate_removal(terms: dict, mask: np.ndarray) -> float:
    """sum_S r(S) * [every player of S is ablated], one mask at a time."""
    return sum(c for S, c in terms.items() if all(not mask[i] for i in S))


def test_basis_enum_names_removal():
    assert Basis("removal") == "removal"


@pytest.mark.parametrize("n", [1, 3, 6])
def test_removal_transform_matches_definition_and_reconstructs(n):
    rng = np.random.default_rng(n)
    values = rng.normal(size=2**n)
    removal = exact_interactions(values, n, basis="removal")
    brute = brute_removal(values, n)
    for S in subsets_of(range(n)):
        assert removal[S] == pytest.approx(brute[S], abs=1e-10)
    masks = all_masks(n)
    # Evaluating the terms one mask at a time gives the values back.
    for row in rng.choice(2**n, size=min(2**n, 12), replace=False):
        assert brute_evaluate_removal(brute, masks[row]) == pytest.approx(values[row], abs=1e-10)
    np.testing.assert_allclose(removal(masks), values, atol=1e-10)
    np.testing.assert_allclose(inverse_removal_dense(removal_transform_dense(values, n), n), values, atol=1e-10)


@pytest.mark.parametrize("source", ["fourier", "mobius", "removal"])
@pytest.mark.parametrize("target", ["fourier", "mobius", "removal"])
def test_sparse_conversions_agree_with_dense_transforms(source, target):
    n = 5
    rng = np.random.default_rng(7)
    values = rng.normal(size=2**n)
    dense_source = transform_dense(values, n, source)
    terms = {S: float(dense_source[sum(1 << i for i in S)]) for S in subsets_of(range(n))}
    converted = convert_terms(terms, source, target)
    dense_target = transform_dense(values, n, target)
    for S in subsets_of(range(n)):
        assert converted.get(S, 0.0) == pytest.approx(dense_target[sum(1 << i for i in S)], abs=1e-10)


def test_or_of_kept_players_is_one_removal_term():
    """Backup heads: value 1 if any of players {0, 2, 3} is kept; 2^3 - 1 Möbius terms, one removal term."""
    n = 5
    masks = all_masks(n)
    values = masks[:, [0, 2, 3]].any(axis=1).astype(float) + 0.5 * masks[:, 1]
    removal = exact_interactions(values, n, basis="removal", tol=1e-12)
    mobius = exact_interactions(values, n, basis="mobius", tol=1e-12)
    # Brute removal expression: 1 - [0, 2, 3 all ablated] + 0.5 - 0.5 [1 ablated].
    assert removal.as_dict() == pytest.approx({(): 1.5, (1,): -0.5, (0, 2, 3): -1.0})
    assert len([s for s in mobius.subsets if s]) == 7 + 1


def test_interactions_round_trip_all_bases_and_basis_matrix():
    n = 6
    rng = np.random.default_rng(3)
    terms = {(): 0.3, (1,): -1.0, (0, 4): 2.0, (2, 3, 5): 0.7}
    masks = rng.random((50, n)) < 0.6
    for basis in ("fourier", "mobius", "removal"):
        inter = Interactions(terms, n, basis=basis)
        # basis_matrix against a one-by-one product of the basis variables.
        design = basis_matrix(masks, list(terms), basis)
        for r in range(5):
            x = masks[r].astype(float)
            variable = {"fourier": 2 * x - 1, "mobius": x, "removal": 1 - x}[basis]
            expected = [np.prod([variable[i] for i in S]) for S in terms]
            np.testing.assert_allclose(design[r], expected)
        reference = inter(masks)
        for other in ("fourier", "mobius", "removal"):
            np.testing.assert_allclose(inter.to_basis(other)(masks), reference, atol=1e-12)
            back = inter.to_basis(other).to_basis(basis).pruned(1e-12)
            assert back.as_dict() == pytest.approx(terms)
    removal = Interactions(terms, n, basis="removal")
    assert removal.to_removal() is removal
    np.testing.assert_allclose(removal.shapley_values(), removal.to_mobius().shapley_values())
    restored = Interactions.from_json_dict(removal.to_json_dict())
    assert restored.basis == "removal" and restored.as_dict() == pytest.approx(terms)
