"""The estimator interface: registry, fit's call forms, the mask store, percentile intervals."""

from __future__ import annotations

import numpy as np
import pytest

from headspex.engine import (
    ESTIMATORS,
    Exhaustive,
    LinearBanzhaf,
    MaskStore,
    ProxySPEX,
    make_estimator,
    mask_key,
    mask_keys,
    percentile_interval,
)
from headspex.errors import EngineError


def additive(masks: np.ndarray) -> np.ndarray:
    return masks.astype(float) @ np.arange(1.0, masks.shape[1] + 1)


class CountingGame:
    """A game object with n_players / player_names that counts the masks it is asked."""

    def __init__(self, n_players: int) -> None:
        self.n_players = n_players
        self.player_names = [f"h{i}" for i in range(n_players)]
        self.masks_seen: list[bytes] = []

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.masks_seen += [bytes(np.packbits(row)) for row in masks]
        return additive(masks)


def test_registry_names_every_estimator() -> None:
    assert set(ESTIMATORS) == {"proxyspex", "lasso", "linear_banzhaf", "faith_banzhaf", "exhaustive"}
    for name, cls in ESTIMATORS.items():
        estimator = make_estimator(name, seed=3)
        assert type(estimator) is cls and estimator.method == name and estimator.seed == 3
    with pytest.raises(EngineError, match="unknown estimator 'spex'; choose one of: proxyspex"):
        make_estimator("spex")


def test_fit_reads_players_from_the_game() -> None:
    game = CountingGame(4)
    result = Exhaustive().fit(game, progress=False)
    assert result.interactions.player_names == game.player_names
    # Additive: Banzhaf value of player i is its weight i + 1.
    assert np.allclose(result.interactions.banzhaf_values(), [1, 2, 3, 4])
    renamed = Exhaustive().fit(game, player_names=list("abcd"), progress=False)
    assert renamed.interactions.player_names == list("abcd")


def test_fit_needs_players_for_a_bare_function() -> None:
    with pytest.raises(EngineError, match="pass n_players="):
        LinearBanzhaf().fit(additive, 40, progress=False)
    with pytest.raises(EngineError, match="n_players=5 but the game has 4 players"):
        LinearBanzhaf().fit(CountingGame(4), 40, n_players=5, progress=False)


def test_store_is_shared_and_resumes_from_disk(tmp_path) -> None:
    game = CountingGame(7)
    first = ProxySPEX(max_order=2, seed=0, residual_rounds=0).fit(
        game, 60, n_test=20, batch_size=16, progress=False, store=MaskStore(tmp_path, 7))
    assert len(game.masks_seen) == len(set(game.masks_seen)) == first.n_evaluations
    # A new process opens the same folder: nothing is sent to the game again, results are identical.
    again_game = CountingGame(7)
    store = MaskStore(tmp_path, 7)
    again = ProxySPEX(max_order=2, seed=0, residual_rounds=0).fit(
        again_game, 60, n_test=20, batch_size=16, progress=False, store=store)
    assert again_game.masks_seen == [] and store.n_added == 0
    assert np.array_equal(again.values, first.values) and np.array_equal(again.test_values, first.test_values)
    assert again.interactions.as_dict() == first.interactions.as_dict()
    with pytest.raises(EngineError, match="store holds masks over 7 players"):
        LinearBanzhaf().fit(CountingGame(5), 30, store=store, progress=False)
    # The reopened store lists exactly the masks the game was asked for.
    assert sorted(bytes(np.packbits(row)) for row in store.masks()) == sorted(game.masks_seen)


def test_per_item_values_are_averaged() -> None:
    def per_question(masks: np.ndarray) -> np.ndarray:
        return np.stack([additive(masks), 3.0 * additive(masks)], axis=1)  # mean = 2 x additive

    store = MaskStore(None, 3)
    result = Exhaustive().fit(per_question, n_players=3, per_item=True, store=store, progress=False)
    assert np.allclose(result.values, 2.0 * additive(result.masks))
    assert store.stack(result.masks).shape == (8, 2)


def test_mask_key_is_one_encoding() -> None:
    masks = np.random.default_rng(0).random((50, 13)) < 0.5
    keys = mask_keys(masks)
    assert [mask_key(row) for row in masks] == keys
    distinct = {tuple(row) for row in masks.tolist()}
    assert len(set(keys)) == len(distinct)


def test_percentile_interval_against_sorted_replicates() -> None:
    replicates = np.random.default_rng(1).permutation(101).astype(float)  # 0..100 shuffled
    assert percentile_interval(replicates, 0.9).tolist() == pytest.approx([5.0, 95.0])
    grid = np.stack([replicates, 2 * replicates], axis=1)[:, None, :]  # [B, 1, 2]
    interval = percentile_interval(grid, 0.8)
    assert interval.shape == (2, 1, 2)
    assert interval[:, 0, :] == pytest.approx(np.array([[10.0, 20.0], [90.0, 180.0]]))
    with pytest.raises(EngineError, match="confidence"):
        percentile_interval(replicates, 1.5)
