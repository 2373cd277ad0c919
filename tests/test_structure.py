"""Layerwise structure on synthetic functions whose splits are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from headspex.attribution import AttributionConfig, attribute_units, plan_units
from headspex.engine import Exhaustive, Interactions
from headspex.structure import (
    energy_split,
    first_order_r2,
    layer_claim,
    load_structure,
    per_layer_energy,
    run_structure,
    save_structure,
    spearman,
)

# Players 0, 1 in layer 0; players 2, 3 in layer 1.
LAYERS = [0, 0, 1, 1]
A, B, C, D, E = 0.8, -0.5, 0.6, 0.3, 0.2
# f(z) = 1 + A z0 + B z2 + C z0 z1 (within layer 0) + D z1 z3 (across) + E z0 z2 z3 (across)
TERMS = {(): 1.0, (0,): A, (2,): B, (0, 1): C, (1, 3): D, (0, 2, 3): E}


def known_function(masks: np.ndarray) -> np.ndarray:
    z = np.where(masks, 1.0, -1.0)
    return 1.0 + A * z[:, 0] + B * z[:, 2] + C * z[:, 0] * z[:, 1] + D * z[:, 1] * z[:, 3] + E * z[:, 0] * z[:, 2] * z[:, 3]


def test_energy_split_matches_hand_computation() -> None:
    split = energy_split(Interactions(TERMS, 4), LAYERS)
    linear, within, across = A**2 + B**2, C**2, D**2 + E**2
    total = linear + within + across
    assert split["linear"] == pytest.approx(linear)
    assert split["within_layer"] == pytest.approx(within)
    assert split["across_layer"] == pytest.approx(across)
    assert split["linear_share"] == pytest.approx(linear / total)
    assert split["interaction_share"] == pytest.approx((within + across) / total)
    assert split["by_order"] == pytest.approx({1: linear, 2: C**2 + D**2, 3: E**2})
    # The basis must not matter: the Möbius form of the same function gives the same split.
    assert energy_split(Interactions(TERMS, 4).to_mobius(), LAYERS)["within_layer"] == pytest.approx(within)


def test_energy_is_the_variance_under_uniform_masks() -> None:
    from headspex.engine import all_masks

    values = known_function(all_masks(4))
    assert energy_split(Interactions(TERMS, 4), LAYERS)["total"] == pytest.approx(values.var())


def test_per_layer_energy() -> None:
    rows = per_layer_energy(Interactions(TERMS, 4), LAYERS)
    assert rows[0]["linear"] == pytest.approx(A**2)
    assert rows[0]["within_layer"] == pytest.approx(C**2)
    assert rows[0]["across_layer"] == pytest.approx(D**2 + E**2)  # both touch layer 0
    assert rows[1]["linear"] == pytest.approx(B**2)
    assert rows[1]["within_layer"] == 0.0
    assert rows[1]["across_layer"] == pytest.approx(D**2 + E**2)
    assert rows[1]["linear_share"] == pytest.approx(B**2 / (B**2 + D**2 + E**2))


def test_energy_split_rejects_wrong_layer_count() -> None:
    with pytest.raises(ValueError, match="player_layers has 3 entries"):
        energy_split(Interactions(TERMS, 4), [0, 0, 1])


def test_first_order_r2_equals_linear_share_for_exact_fit() -> None:
    result = Exhaustive().fit(known_function, n_players=4, progress=False)
    r2 = first_order_r2(result)["all_masks"]
    split = energy_split(result.interactions, LAYERS)
    assert r2["first_order"] == pytest.approx(split["linear_share"])
    assert r2["full"] == 1.0


def test_first_order_r2_on_held_out_masks() -> None:
    from headspex.engine import LinearBanzhaf

    # A purely additive function: the first-order fit is perfect on held-out masks.
    result = LinearBanzhaf(seed=0).fit(lambda m: 2.0 * m[:, 0] - m[:, 1], 30, n_players=4, n_test=20, progress=False)
    r2 = first_order_r2(result)
    assert set(r2) == {"uniform", "near_full"}
    assert r2["uniform"]["first_order"] == pytest.approx(1.0)


def test_layer_claim_verdicts() -> None:
    rising = [{"layer": i, "interaction_share": 0.05 + 0.09 * i} for i in range(10)]
    assert layer_claim(rising)["verdict"].startswith("supported")
    falling = [{"layer": i, "interaction_share": 0.9 - 0.09 * i} for i in range(10)]
    assert layer_claim(falling)["verdict"].startswith("contradicted")
    assert "cannot be tested" in layer_claim(rising[:2])["verdict"]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 2], [1, 2]))


def test_run_structure_on_a_synthetic_run(tmp_path) -> None:
    class KnownGame:
        def question_values(self, masks: np.ndarray) -> np.ndarray:
            return known_function(masks)[:, None] + np.array([[-0.01, 0.0, 0.01]])

    units = plan_units({0: ["L0H0", "L0H1"], 1: ["L1H0", "L1H1"]}, "all")
    config = AttributionConfig(scope="all", method="exact", n_bootstrap=20)
    run = attribute_units(units, lambda players, cache: KnownGame(), config, tmp_path / "run", progress=False)
    structure = run_structure(run)
    energy = structure["units"][0]["energy"]
    assert energy["linear"] == pytest.approx(A**2 + B**2)
    assert energy["within_layer"] == pytest.approx(C**2)
    assert energy["across_layer"] == pytest.approx(D**2 + E**2)
    assert [row["layer"] for row in structure["per_layer"]] == [0, 1]
    save_structure(structure, tmp_path / "structure.json")
    again = load_structure(tmp_path / "structure.json")
    assert again["units"][0]["energy"]["within_layer"] == pytest.approx(C**2)


def test_share_intervals_from_replicates() -> None:
    from headspex.structure import share_intervals

    subsets = [(), (0,), (0, 1), (1, 3)]
    # Two replicates: all energy linear, then split evenly between the three kinds.
    replicates = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    out = share_intervals(subsets, replicates, LAYERS, confidence=1.0 - 1e-9)
    assert out["linear_share"] == pytest.approx([1 / 3, 1.0])
    assert out["within_layer_share"] == pytest.approx([0.0, 1 / 3], abs=1e-6)
    assert out["across_layer_share"] == pytest.approx([0.0, 1 / 3], abs=1e-6)
