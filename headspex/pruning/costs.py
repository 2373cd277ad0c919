"""Evaluation counting: what each strategy spends on the attribution game.

One unit of cost is one keep-mask whose value a strategy asked the attribution game for (one
row of ``value_fn(masks)``); on a model that is one ablated forward pass over the attribution
questions. :class:`CountingValueFunction` wraps the game and counts rows; the strategies read
it (see :meth:`~headspex.pruning.strategies.RemovalStrategy.cost`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import ValueFunction


class CountingValueFunction:
    """``bool[m, n] -> float[m]`` that forwards to ``value_fn`` and counts what it was asked.

    Attributes:
        rows: masks received so far (the cost unit); calls: ``__call__`` invocations.
    """

    def __init__(self, value_fn: ValueFunction) -> None:
        self.value_fn = value_fn
        self.rows = 0
        self.calls = 0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        self.rows += int(masks.shape[0])
        self.calls += 1
        return np.asarray(self.value_fn(masks), dtype=np.float64)

    def __getattr__(self, name: str) -> Any:  # the game's other attributes (n_questions, …) stay reachable
        value_fn = self.__dict__.get("value_fn")
        if value_fn is None:  # not initialised yet (copy / pickle): no recursion
            raise AttributeError(name)
        return getattr(value_fn, name)


#: Why each attribution value function is offered (recorded next to results).
VALUE_FUNCTION_NOTES: dict[str, str] = {
    "logprob": "mean log-probability of the correct answer: smooth in the ablation, so a surrogate "
               "fitted to few masks sees small effects; not what a user reads, but it tracks accuracy",
    "margin": "correct-answer logit minus the best wrong one: smooth like log-prob and ignores "
              "probability mass moved between wrong answers",
    "accuracy": "the paper's value (share of attribution questions answered correctly): what the user "
                "wants, but a step function of the ablation, so with few questions most masks tie",
}
