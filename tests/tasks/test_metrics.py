"""Value functions against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from headspex.tasks import TaskError, calibration_bias, question_values, task_value
from headspex.types import Metric, choices

# Restricted probabilities 0.5, 0.25, 0.125, 0.125 (logits are their logs).
LOGITS = torch.log(torch.tensor([[4.0, 2.0, 1.0, 1.0], [4.0, 2.0, 1.0, 1.0]]))
CORRECT = torch.tensor([0, 2])


def test_logprob_by_hand() -> None:
    values = question_values(LOGITS, CORRECT, "logprob")
    assert values.tolist() == pytest.approx([math.log(0.5), math.log(0.125)])
    assert task_value(LOGITS, CORRECT).item() == pytest.approx((math.log(0.5) + math.log(0.125)) / 2)


def test_logprob_ignores_a_constant_shift() -> None:
    # The softmax is restricted to the candidates: adding a constant changes nothing.
    assert torch.allclose(question_values(LOGITS + 7.0, CORRECT), question_values(LOGITS, CORRECT))


def test_margin_by_hand() -> None:
    # q0: log 4 - log 2 = log 2; q1: log 1 - log 4 = -log 4.
    assert question_values(LOGITS, CORRECT, "margin").tolist() == pytest.approx([math.log(2), -math.log(4)])


def test_accuracy_by_hand_and_ties_are_wrong() -> None:
    assert question_values(LOGITS, CORRECT, "accuracy").tolist() == [1.0, 0.0]
    tied = torch.zeros(1, 4)
    assert question_values(tied, torch.tensor([0]), "accuracy").tolist() == [0.0]


def test_calibrated_accuracy_recovers_a_letter_biased_model() -> None:
    # Every answer gets +5 on "A" (letter bias) and +1 on the correct letter (the signal).
    correct = torch.tensor([0, 1, 2, 3])
    logits = 5.0 * torch.nn.functional.one_hot(torch.zeros(4, dtype=torch.long), 4).float()
    logits = logits + torch.nn.functional.one_hot(correct, 4).float()
    assert task_value(logits, correct, "accuracy").item() == pytest.approx(0.25)
    # Reference questions (not scored) show the bias alone.
    reference = torch.tensor([[5.0, 0.0, 0.0, 0.0]] * 3)
    bias = calibration_bias(reference)
    assert bias.shape == (4,)
    assert bias.tolist() == pytest.approx(torch.log_softmax(reference[0], -1).tolist())
    assert task_value(logits, correct, "calibrated_accuracy", bias).item() == pytest.approx(1.0)


def test_calibrated_accuracy_needs_a_bias() -> None:
    with pytest.raises(TaskError, match="calibration_bias"):
        question_values(LOGITS, CORRECT, "calibrated_accuracy")


def test_unknown_metric_lists_metrics() -> None:
    with pytest.raises(ValueError, match="logprob"):
        question_values(LOGITS, CORRECT, "f1")


@pytest.mark.parametrize("metric", choices(Metric))
def test_vectorised_over_masks(metric: str) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 4, generator=generator)  # [n_masks, q, 4]
    correct = torch.tensor([0, 1, 2, 3, 0])
    bias = calibration_bias(torch.randn(3, 6, 4, generator=generator))  # one bias per mask: [3, 4]
    batched = question_values(logits, correct, metric, bias)
    assert batched.shape == (3, 5)
    for mask in range(3):
        single = question_values(logits[mask], correct, metric, bias[mask])
        assert torch.allclose(batched[mask], single)
    assert task_value(logits, correct, metric, bias).shape == (3,)
