"""The game's scorers against computations by hand and the plain oracle (tests/oracles.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from headspex.game import (
    GameError,
    cloze_choice_logliks,
    continuation_logliks,
    continuation_logliks_from_hidden,
    right_aligned_targets,
)
from headspex.hooks import hook_name
from headspex.tasks import MMLUTask

from oracles import plain_cloze_logliks

FIXTURES = Path(__file__).parent / "fixtures" / "mmlu" / "cais_jsonl"


@pytest.fixture(scope="module")
def gpt2_and_items() -> tuple[Any, list[Any]]:
    from headspex.models import tiny_model, tiny_tokenizer

    model = tiny_model("gpt2", seed=0)
    task = MMLUTask(tiny_tokenizer(), "high school us history", source=FIXTURES, n_shots=1,
                    n_reference=5, n_attribution=10, order="first")
    return model, task.cloze_items("attribution")[:3]


def test_cloze_logliks_match_a_direct_computation(gpt2_and_items: tuple[Any, list[Any]]) -> None:
    """Moved from tests/tasks/test_mmlu.py: one sequence, no padding, by hand."""
    from headspex.models import tiny_tokenizer

    model, items = gpt2_and_items
    tiny_tok = tiny_tokenizer()
    assert items[0].context.endswith("Question: Which invented river did the fictional Zorbal Company map first?\nAnswer:")
    assert items[0].continuations == (" The Quill", " The Ember", " The Lantern", " The Thistle")
    batched = cloze_choice_logliks(model, items, batch_size=5)
    assert batched.shape == (3, 4)
    context_ids = tiny_tok(items[1].context)["input_ids"]
    whole = tiny_tok(items[1].context + items[1].continuations[2])["input_ids"]
    with torch.inference_mode():
        log_probs = torch.log_softmax(model(torch.tensor([whole])).float(), -1)[0]
    expected = sum(log_probs[p - 1, whole[p]].item() for p in range(len(context_ids), len(whole)))
    assert batched[1, 2].item() == pytest.approx(expected, abs=1e-4)
    mean = cloze_choice_logliks(model, items, batch_size=2, reduction="mean")
    assert mean[1, 2].item() == pytest.approx(expected / (len(whole) - len(context_ids)), abs=1e-4)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cloze_logliks_equal_the_plain_oracle_for_any_batch(gpt2_and_items: tuple[Any, list[Any]],
                                                            reduction: str) -> None:
    model, items = gpt2_and_items
    expected = plain_cloze_logliks(model, items, reduction=reduction)
    for batch_size in (1, 3, 12):
        got = cloze_choice_logliks(model, items, batch_size=batch_size, reduction=reduction).numpy()
        assert np.allclose(got, expected, atol=1e-5), (batch_size, np.abs(got - expected).max())


def test_cloze_logliks_refuse_bad_input(gpt2_and_items: tuple[Any, list[Any]]) -> None:
    model, items = gpt2_and_items
    with pytest.raises(GameError, match="reduction must be 'sum' or 'mean'"):
        cloze_choice_logliks(model, items, reduction="max")  # type: ignore[arg-type]
    uneven = [items[0], type(items[1])(items[1].context, items[1].continuations[:2], 0)]
    with pytest.raises(GameError, match="same number of continuations"):
        cloze_choice_logliks(model, uneven)
    assert cloze_choice_logliks(model, []).shape == (0, 0)


def test_continuation_core_by_hand_and_differentiable() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 7, generator=generator, requires_grad=True)
    targets = torch.tensor([[-1, -1, 2, 5], [1, 0, 6, 3], [-1, 4, -1, -1]])
    total = continuation_logliks(logits, targets, reduction="sum")
    mean = continuation_logliks(logits, targets, reduction="mean")
    for row in range(3):
        picked = [(p, int(t)) for p, t in enumerate(targets[row]) if t >= 0]
        plain = logits.detach()
        by_hand = sum(float(plain[row, p, t] - torch.logsumexp(plain[row, p], -1)) for p, t in picked)
        assert total[row].item() == pytest.approx(by_hand, abs=1e-5)
        assert mean[row].item() == pytest.approx(by_hand / len(picked), abs=1e-5)
    (gradient,) = torch.autograd.grad(total.sum(), logits)
    assert gradient[targets < 0].abs().max() == 0  # positions without a target do not count
    assert gradient[targets >= 0].abs().min() > 0
    with pytest.raises(GameError, match="reduction"):
        continuation_logliks(logits, targets, reduction="median")  # type: ignore[arg-type]


def test_continuation_from_hidden_equals_the_models_own_logits(tiny_llama: Any) -> None:
    """Final hidden states through the game's norm + unembedding, in slices, vs the bridge's forward."""
    ids = torch.tensor([[5, 9, 17, 3, 44, 8], [7, 7, 2, 30, 11, 6]])
    captured: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, hook: Any) -> None:
        captured["resid"] = x.detach()

    with torch.no_grad(), tiny_llama.hooks(fwd_hooks=[(hook_name(tiny_llama.cfg.n_layers - 1, "resid_post"), keep)]):
        log_probs = torch.log_softmax(tiny_llama(ids).float(), -1)
    continuations = [[44, 8], [2, 30, 11, 6]]
    targets = right_aligned_targets(continuations)
    assert targets.tolist() == [[-1, -1, 44, 8], [2, 30, 11, 6]]
    linear = tiny_llama.unembed.original_component
    for rows_per_slice in (None, 1):
        with torch.no_grad():
            got = continuation_logliks_from_hidden(captured["resid"][:, -5:-1], targets, tiny_llama.ln_final,
                                                   linear.weight, linear.bias, "mean", rows_per_slice)
        for row, tokens in enumerate(continuations):
            positions = range(6 - len(tokens) - 1, 5)
            expected = np.mean([log_probs[row, p, t].item() for p, t in zip(positions, tokens)])
            assert got[row].item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(GameError, match="at least one token"):
        right_aligned_targets([[1], []])
