"""Pruning: choose heads to remove from discovered interactions, apply the pruning, evaluate it.

Parts, each usable alone:

- :mod:`~headspex.pruning.strategies`: :class:`RemovalStrategy` and its subclasses;
  ``strategy.choose(k_remove)`` returns the sorted player indices to remove. :data:`REGISTRY`
  builds each named strategy from one :class:`StrategyContext`; :data:`STRATEGIES` are its names.
  The interaction-informed strategy maximises the recovered function with
  :func:`headspex.engine.surrogate.maximise_surrogate` (torch-free).
- :mod:`~headspex.pruning.gradients`: the mask-gradient baseline (torch).
- :mod:`~headspex.pruning.spec`: :class:`Pruning`, a JSON-able spec; ``apply`` / ``undo``.
- :mod:`~headspex.pruning.evaluate`: held-out per-question metrics, bootstrap intervals,
  paired differences, verdicts, the disjointness check.
- :mod:`~headspex.pruning.pipeline`: :func:`prune` and :class:`PruneConfig`, the whole
  experiment (attribution → strategies → held-out evaluation → files).

Mask convention everywhere: ``True`` = kept, ``False`` = ablated / pruned.
"""

from __future__ import annotations

from ..engine.surrogate import MobiusPolynomial, SurrogateSolution, SurrogateSolverError, maximise_surrogate, removal_mask
from .errors import PruningError, QuestionOverlapError
from .evaluate import (
    CLOZE_EVAL_METRICS,
    EVAL_METRICS,
    bootstrap_interval,
    check_questions_disjoint,
    evaluate_removals,
    game_metrics_fn,
    logits_metrics_fn,
    per_question_metrics,
    question_ids_of_game,
    verdicts,
)
from .gradients import mask_gradient_importance
from .pipeline import ATTRIBUTION_METRICS, PRESETS, PruneConfig, prune
from .spec import PRUNING_MODES, SPEC_FORMAT, AppliedPruning, Pruning
from .strategies import (
    REGISTRY,
    STRATEGIES,
    BestOfNStrategy,
    GreedyRemovalStrategy,
    RandomStrategy,
    RankingStrategy,
    RemovalStrategy,
    StrategyContext,
    SurrogateStrategy,
    best_removal_by_enumeration,
    build_strategies,
    register_strategy,
)
from .summary import summary_markdown

__all__ = [
    "ATTRIBUTION_METRICS",
    "CLOZE_EVAL_METRICS",
    "EVAL_METRICS",
    "PRESETS",
    "PRUNING_MODES",
    "REGISTRY",
    "SPEC_FORMAT",
    "STRATEGIES",
    "AppliedPruning",
    "BestOfNStrategy",
    "GreedyRemovalStrategy",
    "MobiusPolynomial",
    "PruneConfig",
    "Pruning",
    "PruningError",
    "QuestionOverlapError",
    "RandomStrategy",
    "RankingStrategy",
    "RemovalStrategy",
    "StrategyContext",
    "SurrogateSolution",
    "SurrogateSolverError",
    "SurrogateStrategy",
    "best_removal_by_enumeration",
    "bootstrap_interval",
    "build_strategies",
    "check_questions_disjoint",
    "evaluate_removals",
    "game_metrics_fn",
    "logits_metrics_fn",
    "mask_gradient_importance",
    "maximise_surrogate",
    "per_question_metrics",
    "prune",
    "question_ids_of_game",
    "register_strategy",
    "removal_mask",
    "summary_markdown",
    "verdicts",
]
