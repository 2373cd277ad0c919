"""Attribution runner: planted circuit, values and intervals, run directories, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from headspex.engine.store import MaskStore, MaskStoreError
from headspex.attribution import (
    FAST_FIT,
    AttributionConfig,
    AttributionError,
    AttributionRun,
    Unit,
    attribute,
    attribute_units,
    banzhaf_matrix,
    exact_comparison,
    plan_units,
    shapley_matrix,
)
from headspex.engine import Exhaustive, Interactions, ProxySPEX
from headspex.tasks.base import PromptSet
from oracles import PlantedGame

# ----------------------------------------------------------------------------- synthetic games

NAMES = {0: ["L0H0", "L0H1", "L0H2"], 1: ["L1H0", "L1H1", "L1H2"]}


def and_function(masks: np.ndarray) -> np.ndarray:
    """0.8 keep(0) + 1.0 keep(1) AND keep(4) - 0.3 keep(3): one across-layer AND interaction."""
    m = masks.astype(float)
    return 0.8 * m[:, 0] + 1.0 * m[:, 1] * m[:, 4] - 0.3 * m[:, 3]


class SyntheticGame(PlantedGame):
    """Per-question values: the AND function for every question, plus question-specific noise
    on player 0's effect that averages to zero, so bootstrap over questions has something to
    resample (the mean over questions is exactly the AND function)."""

    def __init__(self, n_players: int, n_questions: int = 8, fail_after: int | None = None) -> None:
        super().__init__(fail_after)
        self.n_players = n_players
        self.noise = np.random.default_rng(1).normal(0.0, 0.3, n_questions)
        self.noise -= self.noise.mean()

    def planted(self, masks: np.ndarray) -> np.ndarray:
        padded = np.zeros((len(masks), max(6, self.n_players)), bool)
        padded[:, : masks.shape[1]] = masks
        base = and_function(padded)
        return base[:, None] + np.outer(padded[:, 0].astype(float), self.noise)


FAST = dict(budget=60, n_test=20, n_bootstrap=60, estimator_options=FAST_FIT, batch_masks=8)


def test_plan_units_scopes() -> None:
    by_layer = {layer: [f"L{layer}H{h}" for h in range(2)] for layer in range(5)}
    assert [u.name for u in plan_units(by_layer, "layer")] == [f"layer_0{i}" for i in range(5)]
    groups = plan_units(by_layer, "group", group_size=3)
    assert [u.name for u in groups] == ["layers_00-02", "layers_03-04"]
    assert len(groups[0].players) == 6 and groups[1].layers == [3, 3, 4, 4]
    (everything,) = plan_units(by_layer, "all")
    assert everything.name == "all_heads" and len(everything.players) == 10
    with pytest.raises(AttributionError, match="scope"):
        plan_units(by_layer, "neurons")


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(AttributionError, match="method"):
        AttributionConfig(method="magic").validate()
    with pytest.raises(AttributionError, match="at least 20"):
        AttributionConfig(budget=5).validate()
    with pytest.raises(AttributionError, match="compare_budget needs method='exact'"):
        AttributionConfig(compare_budget=50).validate()


def test_value_maps_match_engine() -> None:
    rng = np.random.default_rng(0)
    terms = {s: rng.normal() for s in [(), (0,), (1,), (0, 1), (1, 2), (0, 1, 2), (0, 2, 3), (3,)]}
    inter = Interactions(terms, 4)
    subsets = list(inter.subsets)
    assert np.allclose(banzhaf_matrix(subsets, 4) @ inter.coefficients, inter.banzhaf_values())
    assert np.allclose(shapley_matrix(subsets, 4) @ inter.coefficients, inter.shapley_values())


def test_all_heads_scope_finds_the_interaction_with_intervals(tmp_path: Path) -> None:
    units = plan_units(NAMES, "all")
    config = AttributionConfig(scope="all", **FAST)
    run = attribute_units(units, lambda p, c: SyntheticGame(len(p)), config, tmp_path / "run", progress=False)
    unit = run.units["all_heads"]
    interactions_only = [t for t in unit.top if t["order"] >= 2]
    assert interactions_only[0]["players"] == ["L0H1", "L1H1"]
    assert not interactions_only[0]["within_layer"]
    assert interactions_only[0]["significant_masks"] and interactions_only[0]["significant_questions"]
    assert unit.faithfulness["uniform"] > 0.99
    # Banzhaf of an AND term: each member gets half of it.
    assert unit.banzhaf[0] == pytest.approx(0.8, abs=1e-6)
    assert unit.banzhaf[1] == pytest.approx(0.5, abs=1e-6)
    # Player 0's effect varies across questions: its question interval has width and covers 0.8;
    # bootstrap refits only the selected support, so the null player 2 gets a zero-width interval.
    lo, hi = unit.intervals["questions"]["banzhaf"][0]
    assert lo < 0.8 < hi and hi - lo > 0.05
    assert unit.intervals["questions"]["banzhaf"][2] == [0.0, 0.0]


def test_exact_method_and_comparison(tmp_path: Path) -> None:
    config = AttributionConfig(scope="layer", method="exact", compare_budget=40, n_test=10, n_bootstrap=30,
                               estimator_options=FAST_FIT)
    units = [Unit("layer_00", [f"L0H{h}" for h in range(6)])]
    run = attribute_units(units, lambda p, c: SyntheticGame(len(p)), config, tmp_path / "run", progress=False)
    unit = run.units["layer_00"]
    assert len(unit.engine.masks) == 64 and unit.faithfulness == {"exact": 1.0}
    comparison = unit.exact_comparison
    assert comparison["budget"] == 40 and comparison["n_all_masks"] == 64
    assert comparison["r2_all_masks"] > 0.99 and comparison["banzhaf_pearson"] > 0.99
    assert "masks" not in unit.intervals  # no mask sampling in an exact fit


def test_exact_comparison_of_identical_functions() -> None:
    exact = Exhaustive().fit(and_function, n_players=6, progress=False)
    proxy = ProxySPEX(max_order=2, seed=0, **FAST_FIT).fit(and_function, 40, n_players=6, n_test=0, progress=False)
    comparison = exact_comparison(exact.interactions, proxy, top_k=5)  # 5 = every nonzero term (no ties)
    assert comparison["r2_all_masks"] == pytest.approx(1.0)
    assert comparison["top_overlap"] == 1.0


def test_save_load_round_trip(tmp_path: Path) -> None:
    units = plan_units(NAMES, "layer")
    config = AttributionConfig(scope="layer", method="exact", n_bootstrap=20)
    run = attribute_units(units, lambda p, c: SyntheticGame(len(p)), config, tmp_path / "run",
                          meta={"model": "synthetic"}, progress=False)
    loaded = AttributionRun.load(tmp_path / "run")
    assert loaded.complete and list(loaded.units) == ["layer_00", "layer_01"]
    assert loaded.meta["model"] == "synthetic" and loaded.config == config
    for name, unit in run.units.items():
        again = loaded.units[name]
        assert again.players == unit.players and again.player_layers == unit.player_layers
        assert np.array_equal(again.banzhaf, unit.banzhaf) and np.array_equal(again.shapley, unit.shapley)
        assert again.interactions.as_dict() == unit.interactions.as_dict()
        assert np.array_equal(again.engine.masks, unit.engine.masks)
        assert again.intervals == json.loads(json.dumps(unit.intervals))
        assert again.top == unit.top
    layers, n_heads, grid = loaded.head_values("banzhaf")
    assert layers == [0, 1] and n_heads == 3 and grid[0, 0] == pytest.approx(0.8)
    with pytest.raises(AttributionError, match="no run.json"):
        AttributionRun.load(tmp_path / "nowhere")


def test_resume_after_interruption(tmp_path: Path) -> None:
    # 6 heads per layer: 64 possible masks > the budget of 60, so a unit needs many game calls.
    units = plan_units({layer: [f"L{layer}H{h}" for h in range(6)] for layer in (0, 1)}, "layer")
    config = AttributionConfig(scope="layer", **FAST)
    # Reference: an uninterrupted run counts the masks a full run sends to the game.
    full_games: list[SyntheticGame] = []
    attribute_units(units, lambda p, c: full_games.append(SyntheticGame(len(p))) or full_games[-1], config,
                    tmp_path / "reference", progress=False)
    full_masks = sum(g.masks_seen for g in full_games)

    # Killed during the second unit run, after 3 game calls of it.
    games: list[SyntheticGame] = []

    def failing_factory(players: Any, cache: Any) -> SyntheticGame:
        games.append(SyntheticGame(len(players), fail_after=3 if len(games) == 1 else None))
        return games[-1]

    with pytest.raises(KeyboardInterrupt):
        attribute_units(units, failing_factory, config, tmp_path / "run", progress=False)
    # Late layers run first: layer 1 finished, layer 0 was interrupted.
    assert (tmp_path / "run/units/layer_01/unit.json").exists()
    assert not (tmp_path / "run/units/layer_00/unit.json").exists()
    before = sum(g.masks_seen for g in games)
    assert 0 < games[1].masks_seen < full_games[1].masks_seen

    resumed: list[SyntheticGame] = []
    run = attribute_units(units, lambda p, c: resumed.append(SyntheticGame(len(p))) or resumed[-1], config,
                          tmp_path / "run", progress=False)
    assert len(resumed) == 1  # the finished unit is loaded, not recomputed
    assert before + sum(g.masks_seen for g in resumed) == full_masks  # no mask evaluated twice
    assert run.complete
    reference = AttributionRun.load(tmp_path / "reference")
    assert np.allclose(run.units["layer_00"].banzhaf, reference.units["layer_00"].banzhaf)


def test_resume_refuses_another_configuration(tmp_path: Path) -> None:
    units = plan_units({0: NAMES[0]}, "layer")
    attribute_units(units, lambda p, c: SyntheticGame(len(p)), AttributionConfig(method="exact", n_bootstrap=0),
                    tmp_path / "run", progress=False)
    with pytest.raises(AttributionError, match="another configuration"):
        attribute_units(units, lambda p, c: SyntheticGame(len(p)), AttributionConfig(method="exact", seed=1,
                        n_bootstrap=0), tmp_path / "run", progress=False)


def test_mask_store_rejects_other_player_count(tmp_path: Path) -> None:
    cache = MaskStore(tmp_path, 3)
    cache.add(np.ones((2, 3), bool), np.zeros((2, 4)))
    assert len(MaskStore(tmp_path, 3)) == 1
    with pytest.raises(MaskStoreError, match="expected 5"):
        MaskStore(tmp_path, 5)


# ----------------------------------------------------------------------------- planted circuit

HEAD_DIM = 8
HEAD_A = (0, 1)  # writes a feature into residual dimension 2
HEAD_B = (1, 2)  # moves that feature to the answer direction (dimension 3)
ANSWER, OTHERS = 100, [101, 102, 103]


class PlantedTask:
    """Random prompts whose correct candidate is always token ANSWER (at a rotating index)."""

    name = "planted"
    default_metric = "logprob"
    splits = ("reference", "attribution")

    def __init__(self, tokenizer: Any) -> None:
        rng = np.random.default_rng(0)

        def prompts(n: int, offset: int) -> PromptSet:
            ids = [[int(x) for x in rng.integers(110, 300, 6)] for _ in range(n)]
            rows = [OTHERS[: i % 4] + [ANSWER] + OTHERS[i % 4 :] for i in range(n)]
            return PromptSet(prompts=[tokenizer.decode(x) for x in ids], candidate_token_ids=torch.tensor(rows),
                             correct_index=torch.tensor([i % 4 for i in range(n)]),
                             question_ids=[f"q{offset + i}" for i in range(n)], input_ids=ids)

        self.sets = {"reference": prompts(4, 0), "attribution": prompts(6, 100)}

    def prompt_set(self, split: str) -> PromptSet:
        return self.sets[split]

    def describe(self) -> dict:
        return {"task": "planted", "name": self.name}


@pytest.fixture(scope="module")
def planted_model() -> Any:
    """2-layer, 4-head Llama whose answer needs head A (layer 0) AND head B (layer 1).

    Every token embedding has a constant 1 on dimension 1. Queries and keys are zero (uniform
    attention), so head A's value (reading dim 1) is constant and it writes it to dim 2;
    head B's value reads dim 2 and writes it to dim 3; the unembedding of ANSWER reads dim 3.
    Every other head's output matrix and every MLP output are zero.
    """
    from headspex.models import tiny_hf_model, wrap_model

    hf_model, tokenizer = tiny_hf_model("llama", seed=0, n_layers=2, n_heads=4, n_kv_heads=4, d_model=32, d_mlp=64)
    with torch.no_grad():
        embedding = hf_model.model.embed_tokens.weight
        embedding.zero_()
        embedding[:, 1] = 1.0
        embedding[:, 4:] = 0.05 * torch.randn(embedding.shape[0], embedding.shape[1] - 4,
                                              generator=torch.Generator().manual_seed(0))
        for layer in hf_model.model.layers:
            for projection in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                               layer.self_attn.o_proj):
                projection.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        attention_a = hf_model.model.layers[HEAD_A[0]].self_attn
        attention_a.v_proj.weight[HEAD_A[1] * HEAD_DIM, 1] = 1.0
        attention_a.o_proj.weight[2, HEAD_A[1] * HEAD_DIM] = 1.0
        attention_b = hf_model.model.layers[HEAD_B[0]].self_attn
        attention_b.v_proj.weight[HEAD_B[1] * HEAD_DIM, 2] = 1.0
        attention_b.o_proj.weight[3, HEAD_B[1] * HEAD_DIM] = 1.0
        hf_model.lm_head.weight.zero_()
        hf_model.lm_head.weight[ANSWER, 3] = 4.0
    return wrap_model(hf_model, tokenizer, "meta-llama/Llama-3.2-1B")


def test_planted_circuit_needs_both_heads(planted_model: Any) -> None:
    from headspex.components import heads
    from headspex.game import AblationGame

    task = PlantedTask(planted_model.tokenizer)
    game = AblationGame(planted_model, task, heads(planted_model, [0, 1]), mode="zero", progress=False)
    a, b = 0 * 4 + HEAD_A[1], 1 * 4 + HEAD_B[1]
    masks = np.ones((5, 8), bool)
    masks[1, a] = False
    masks[2, b] = False
    masks[3, [a, b]] = False
    masks[4] = False
    masks[4, [a, b]] = True  # only the circuit kept
    values = game(masks)
    chance = -np.log(4.0)
    assert values[0] > -0.05 and values[4] > -0.05
    assert values[1:4] == pytest.approx([chance] * 3, abs=1e-4)


def test_all_heads_scope_recovers_the_planted_pair(planted_model: Any, tmp_path: Path) -> None:
    task = PlantedTask(planted_model.tokenizer)
    config = AttributionConfig(scope="all", layers=[0, 1], mode="zero", budget=80, n_test=20, n_bootstrap=50,
                               estimator_options=FAST_FIT)
    run = attribute(planted_model, task, config, tmp_path / "run", progress=False)
    unit = run.units["all_heads"]
    top_interaction = next(t for t in unit.top if t["order"] >= 2)
    assert top_interaction["players"] == [f"L{HEAD_A[0]}H{HEAD_A[1]}", f"L{HEAD_B[0]}H{HEAD_B[1]}"]
    assert top_interaction["significant_masks"]
    assert unit.faithfulness["uniform"] > 0.95
    # The two circuit heads carry the largest single-head values; the others are null players.
    assert set(np.argsort(-np.abs(unit.banzhaf))[:2]) == {HEAD_A[1], 4 + HEAD_B[1]}
    assert run.meta["task"]["task"] == "planted"


def test_group_scope_covers_every_head(tmp_path: Path) -> None:
    by_layer = {layer: [f"L{layer}H{h}" for h in range(2)] for layer in range(3)}
    units = plan_units(by_layer, "group", group_size=2)
    config = AttributionConfig(scope="group", group_size=2, method="exact", n_bootstrap=10)
    run = attribute_units(units, lambda p, c: SyntheticGame(len(p)), config, tmp_path / "run", progress=False)
    assert list(run.units) == ["layers_00-01", "layers_02-02"]
    layers, n_heads, grid = run.head_values("shapley")
    assert layers == [0, 1, 2] and n_heads == 2 and np.all(np.isfinite(grid))
    # In the first group the AND of players 1 (L0H1) and 4 does not exist (4 players only):
    # player 0 is additive with Banzhaf 0.8.
    assert grid[0, 0] == pytest.approx(0.8)


def test_exact_method_refuses_large_units(tmp_path: Path) -> None:
    from headspex.attribution import MAX_EXACT_METHOD_PLAYERS

    names = [f"L0H{h}" for h in range(MAX_EXACT_METHOD_PLAYERS + 1)]
    game = SyntheticGame(len(names))
    with pytest.raises(AttributionError, match=f"use at most {MAX_EXACT_METHOD_PLAYERS} players"):
        attribute_units([Unit("layer_00", names)], lambda p, c: game, AttributionConfig(method="exact"),
                        tmp_path / "run", progress=False)
    assert game.calls == 0  # refused before any mask is evaluated
