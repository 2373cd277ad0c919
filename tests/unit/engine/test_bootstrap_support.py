"""Fixed-support bootstrap: refused where the support is not identifiable from the fit masks.

A ridge over more terms than masks (the engine's ``ridge3:removal`` on 9 heads and 80 masks:
130 terms) has an estimate that a least-squares refit of the same support does not reproduce;
its replicates are minimum-norm solutions, and their percentiles excluded the estimate for
most terms (median 89 % over 25 such SmolLM2 units). The bootstrap must refuse there, and say so.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from headspex.attribution import AttributionConfig, Unit
from headspex.attribution.runner import bootstrap_intervals, top_table
from headspex.engine import Interactions, bootstrap_coefficients, percentile_interval
from headspex.errors import EngineError

N_PLAYERS = 5
ALL_TERMS = [s for k in range(N_PLAYERS + 1) for s in itertools.combinations(range(N_PLAYERS), k)]


def distinct_masks(count: int, seed: int) -> np.ndarray:
    """``count`` distinct random masks of N_PLAYERS players, bool[count, N_PLAYERS]."""
    every = np.array(list(itertools.product([False, True], repeat=N_PLAYERS)))
    return every[np.random.default_rng(seed).permutation(len(every))[:count]]


def test_a_support_with_more_terms_than_masks_is_refused() -> None:
    masks = distinct_masks(12, seed=0)
    item_values = np.random.default_rng(1).normal(size=(12, 4))
    with pytest.raises(EngineError, match="rank 12"):
        bootstrap_coefficients(masks, item_values, ALL_TERMS, n_bootstrap=10, seed=0, over="questions")


def test_a_mask_bootstrap_whose_resamples_lose_rank_is_refused() -> None:
    # 10 terms, 12 distinct masks: the full design has rank 10, but a resample of 12 masks with
    # replacement holds ~7.6 distinct ones, too few for 10 terms. The question bootstrap (every
    # row kept) stays identifiable.
    masks = distinct_masks(12, seed=6)
    support = ALL_TERMS[:10]
    z = np.where(masks, 1.0, -1.0)
    design = np.column_stack([np.prod(z[:, list(term)], axis=1) for term in support])  # parities, by hand
    assert np.linalg.matrix_rank(design) == 10
    item_values = np.random.default_rng(7).normal(size=(12, 4))
    with pytest.raises(EngineError, match="mask resamples"):
        bootstrap_coefficients(masks, item_values, support, n_bootstrap=20, seed=0, over="masks")
    assert bootstrap_coefficients(masks, item_values, support, n_bootstrap=20, seed=0, over="questions").shape == (10, 20)


def test_an_identifiable_support_gives_intervals_around_the_least_squares_estimate() -> None:
    # Planted first-order game, each question its own noise: the question bootstrap's intervals
    # contain the least-squares estimate on the mean over questions (computed here by hand).
    rng = np.random.default_rng(2)
    masks = distinct_masks(24, seed=3)
    z = np.where(masks, 1.0, -1.0)
    item_values = (0.3 + z @ np.array([0.5, -0.2, 0.0, 0.1, 0.4]))[:, None] + rng.normal(0, 0.2, size=(24, 6))
    support = ALL_TERMS[: 1 + N_PLAYERS]  # the constant and the five single players
    design = np.column_stack([np.ones(24), z])
    estimate = np.linalg.lstsq(design, item_values.mean(axis=1), rcond=None)[0]
    replicates = bootstrap_coefficients(masks, item_values, support, n_bootstrap=400, seed=0, over="questions")
    low, high = percentile_interval(replicates.T, 0.95)
    assert np.all(low <= estimate + 1e-12) and np.all(estimate - 1e-12 <= high)
    assert np.all(high - low > 0)


def test_attribution_records_why_a_unit_has_no_intervals(tmp_path: Path) -> None:
    masks = distinct_masks(12, seed=4)
    coefficients = np.random.default_rng(5).normal(size=len(ALL_TERMS))
    engine = SimpleNamespace(interactions=Interactions(dict(zip(ALL_TERMS, coefficients)), N_PLAYERS),
                             masks=masks, method="proxyspex")
    unit_dir = tmp_path / "unit"
    unit_dir.mkdir()
    (unit_dir / "bootstrap_questions.npz").write_bytes(b"replicates of an earlier fit")
    config = AttributionConfig(n_bootstrap=20)
    intervals = bootstrap_intervals(engine, np.zeros((12, 3)), {}, [0], config, unit_dir)
    assert list(intervals) == ["unavailable"] and list(intervals["unavailable"]) == ["questions", "masks"]
    assert all("rank 12" in reason for reason in intervals["unavailable"].values())
    assert not list(unit_dir.glob("bootstrap_*.npz"))  # stale replicates would be read as this fit's
    unit = Unit("layer_00", [f"L0H{h}" for h in range(N_PLAYERS)])
    row = top_table(unit, [ALL_TERMS[7]], [0.1], intervals)[0]
    assert not any(key.startswith(("interval_", "significant_")) for key in row)


def test_attribution_keeps_the_question_intervals_when_only_the_mask_bootstrap_is_refused() -> None:
    masks = distinct_masks(12, seed=6)
    support = ALL_TERMS[:10]
    engine = SimpleNamespace(interactions=Interactions(dict(zip(support, np.linspace(0.1, 1.0, 10))), N_PLAYERS),
                             masks=masks, method="proxyspex")
    item_values = np.random.default_rng(8).normal(size=(12, 4))
    intervals = bootstrap_intervals(engine, item_values, {}, [1], AttributionConfig(n_bootstrap=20), None)
    assert set(intervals) == {"questions", "unavailable"} and list(intervals["unavailable"]) == ["masks"]
    row = top_table(Unit("layer_00", [f"L0H{h}" for h in range(N_PLAYERS)]), [support[1]], [0.2], intervals)[0]
    assert "interval_questions" in row and "interval_masks" not in row
