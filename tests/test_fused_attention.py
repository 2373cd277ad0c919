"""Fused (SDPA) attention inside games: same values as the bridge's eager path, safe fallbacks."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

import headspex.game.fused_attention as fused_module
from headspex.ablation import ablate, encode_prompts
from headspex.components import heads
from headspex.game.fused_attention import fusable_layers, use_fused_attention
from headspex.game import AblationGame

from oracles import naive_candidate_logits
from test_game import mmlu_fixture_task


def _logits(model: Any, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(ids, attention_mask=attention)


def test_which_layers_fuse(tiny_llama: Any, tiny_gpt2: Any) -> None:
    assert fusable_layers(tiny_llama, range(3)) == [0, 1, 2]
    # GPT-2's bridge splits a joint QKV projection; it keeps the bridge's path.
    assert fusable_layers(tiny_gpt2, range(3)) == []
    game = AblationGame(tiny_llama, mmlu_fixture_task(tiny_llama), heads(tiny_llama, [1]), progress=False)
    assert game.fused_layers == [1, 2]  # only the blocks the game computes
    assert AblationGame(tiny_llama, mmlu_fixture_task(tiny_llama), heads(tiny_llama, [1]), progress=False,
                        fused_attention=False).fused_layers == []


def test_fused_forward_matches_bridge_under_per_row_ablation(tiny_llama: Any) -> None:
    """Whole-model logits with head and neuron ablation, one mask per row, padded batch."""
    ids, attention = encode_prompts(tiny_llama, ["The cat sat on the mat today", "A dog", "x y z w"])
    players = ["L0H1", "L1H0", "L1H3", "L2N5", "L2.attn"]
    masks = np.array([[1, 0, 1, 0, 1], [0, 1, 1, 1, 0], [1, 1, 0, 1, 1]], dtype=bool)
    with ablate(tiny_llama, players=players, mask=masks, mode="zero"):
        expected = _logits(tiny_llama, ids, attention)
        with use_fused_attention(tiny_llama, range(3)) as fused:
            got = _logits(tiny_llama, ids, attention)
    assert fused == [0, 1, 2]
    real = attention.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5), (got[real] - expected[real]).abs().max()
    # the ablation really acted: without it the logits differ
    assert not torch.allclose(_logits(tiny_llama, ids, attention)[real], expected[real], atol=1e-3)


def test_hooked_pattern_keeps_the_bridge_path_and_everything_is_restored(tiny_llama: Any) -> None:
    ids, attention = encode_prompts(tiny_llama, ["one two three four"])
    fired: list[str] = []

    def record(x: torch.Tensor, hook: Any) -> torch.Tensor:
        fired.append(hook.name)
        return x

    hf_config = tiny_llama.blocks[1].attn.original_component.config
    before = hf_config._attn_implementation
    with tiny_llama.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", record)]):
        with use_fused_attention(tiny_llama, range(3)) as fused:
            assert hf_config._attn_implementation == "sdpa"
            _logits(tiny_llama, ids, attention)
    assert fused == [0, 2]  # layer 1 has a pattern hook, which only the bridge's path fires
    assert fired == ["blocks.1.attn.hook_pattern"]
    assert hf_config._attn_implementation == before
    assert all("forward" not in tiny_llama.blocks[layer].attn.__dict__ for layer in range(3))


def test_game_falls_back_when_fused_path_disagrees(tiny_llama: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    original = fused_module._fused_forward

    def broken(attention_bridge: Any) -> Any:
        forward = original(attention_bridge)
        return lambda *args, **kwargs: (2.0 * forward(*args, **kwargs)[0], None)

    monkeypatch.setattr(fused_module, "_fused_forward", broken)
    game = AblationGame(tiny_llama, mmlu_fixture_task(tiny_llama), heads(tiny_llama, [1]), progress=False)
    masks = np.random.default_rng(3).random((4, 4)) < 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = game.candidate_logits(masks)
    assert any("Fused attention changes candidate logits" in str(w.message) for w in caught)
    assert game.fused_layers == []
    assert np.allclose(got, naive_candidate_logits(game, masks), atol=1e-5)
