"""The real-model benchmark's diagnostics (benchmarks/engine_real_model.py) against planted games."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
from sklearn.linear_model import RidgeCV

from headspex.engine import r2_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import engine_real_model  # noqa: E402


def test_logits_composed_through_the_metric_recover_a_game_with_linear_logits() -> None:
    """Candidate logits exactly linear in the ablated players; value = mean log-softmax of the
    correct candidate. Only the composed class can explain it."""
    rng = np.random.default_rng(0)
    n, q, c = 30, 3, 4
    weights, bias = rng.normal(0, 1.5, (n, q, c)), rng.normal(0, 1, (q, c))
    correct = np.array([0, 2, 1])

    def logits(masks: np.ndarray) -> np.ndarray:
        return np.einsum("mn,nqc->mqc", (~masks).astype(float), weights) + bias

    def value(masks: np.ndarray) -> np.ndarray:  # by hand, not through the benchmark's helper
        log_softmax = logits(masks) - np.logaddexp.reduce(logits(masks), axis=2, keepdims=True)
        return log_softmax[:, np.arange(q), correct].mean(axis=1)

    game = types.SimpleNamespace(correct_index=correct, metric="logprob")
    value_of = engine_real_model.value_of_logits(game)
    fit, test = rng.random((500, n)) < 0.8, rng.random((300, n)) < 0.8
    assert np.allclose(value_of(logits(test)), value(test), atol=1e-5)
    out = engine_real_model.ceiling(fit, value(fit), test, value(test), None, 0, logits=(logits(fit), value_of))
    assert out["per_question_logits_ridge"] > 0.999
    assert out["first_order_ridge"] < 0.95


def test_exchangeable_question_extrapolation_matches_more_questions() -> None:
    """Questions share one first-order effect, each adds its own and its noise: the predicted R²
    of the mean over 8 and 32 questions is close to a direct fit on 8 and 32 questions."""
    rng = np.random.default_rng(1)
    n, m, t = 25, 3000, 3000
    fit, test = rng.random((m, n)) < 0.8, rng.random((t, n)) < 0.8
    shared = rng.normal(0, 1, n)

    def questions(count: int) -> tuple[np.ndarray, np.ndarray]:
        effects = shared[:, None] + rng.normal(0, 1, (n, count))
        return tuple((~masks) @ effects + rng.normal(0, 2.0, (len(masks), count)) for masks in (fit, test))

    values, test_values = questions(8)
    found = engine_real_model.question_diagnostic(values, fit, test_values, test)
    assert found["prediction_correlation"] > 0.2 and abs(found["residual_correlation"]) < 0.05
    for count in (8, 32):
        more, more_test = (values, test_values) if count == 8 else questions(count)
        direct = r2_score(more_test.mean(axis=1),
                          RidgeCV().fit((~fit).astype(float), more.mean(axis=1)).predict((~test).astype(float)))
        assert abs(found["exchangeable_r2_of_mean"][str(count)] - direct) < 0.03, (count, direct)
