"""Removal strategies: ``strategy.choose(k_remove)`` -> sorted player indices to remove.

Interaction-informed (:class:`SurrogateStrategy`: the recovered function, interactions
included, maximised over keep-sets of size ``n - k`` by :mod:`headspex.engine.surrogate`) and
the baselines under the same interface: the LASSO surrogate (same maximiser, other
interactions), :class:`BestOfNStrategy`, :class:`RandomStrategy`, :class:`RankingStrategy`
(Banzhaf, Shapley, single-head ablation effect, gradient-of-mask importance of Michel et al.
2019) and :class:`GreedyRemovalStrategy` (greedy by real evaluation, an expensive reference).

:data:`REGISTRY` builds each named strategy from one :class:`StrategyContext`
(``build(context) -> RemovalStrategy``); :data:`STRATEGIES` are its names, in the order the
pipeline runs and reports them. Torch-free: only the gradient builder imports torch, lazily.

Mask convention: ``True`` = kept, ``False`` = removed.
"""

from __future__ import annotations

import itertools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.surrogate import MobiusPolynomial, SurrogateSolution, maximise_surrogate, removal_mask
from ..types import ValueFunction
from .errors import PruningError


def _check_k(k_remove: int, n_players: int) -> int:
    if not isinstance(k_remove, (int, np.integer)) or not 0 <= int(k_remove) <= n_players:
        raise PruningError(f"k_remove must be an integer in [0, {n_players}] (the number of players); got {k_remove!r}")
    return int(k_remove)



class RemovalStrategy(ABC):
    """Chooses which players to remove for a given count.

    Attributes:
        name: short label used in tables and plots.
        n_players: n.
        max_k: largest removal count the pipeline asks for (None = every k); an expensive
            strategy sets it to bound its cost.
    """

    name: str = "strategy"
    max_k: int | None = None

    def __init__(self, n_players: int, name: str | None = None) -> None:
        if n_players < 1:
            raise PruningError(f"n_players must be >= 1; got {n_players}")
        self.n_players = int(n_players)
        if name is not None:
            self.name = name

    @abstractmethod
    def _choose(self, k_remove: int) -> Iterable[int]:
        """Player indices to remove (exactly ``k_remove``)."""

    def choose(self, k_remove: int) -> tuple[int, ...]:
        """Sorted tuple of the ``k_remove`` player indices to remove."""
        k = _check_k(k_remove, self.n_players)
        if k == 0:
            return ()
        removed = tuple(sorted(int(i) for i in self._choose(k)))
        if len(set(removed)) != k:
            raise PruningError(f"{self.name} returned {removed} for k_remove={k}")
        return removed

    def runnable_ks(self, ks: Iterable[int]) -> list[int]:
        """The ``ks`` this strategy is run for: those up to :attr:`max_k`."""
        return [int(k) for k in ks if self.max_k is None or int(k) <= self.max_k]

    def choose_all(self, ks: Iterable[int]) -> dict[int, tuple[int, ...]]:
        """``{k: choose(k)}`` for every k."""
        return {int(k): self.choose(int(k)) for k in ks}

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the strategy and how it chose."""
        return {"name": self.name, "class": type(self).__name__}


class SurrogateStrategy(RemovalStrategy):
    """Keep the ``n - k`` players the recovered function predicts best (interactions included).

    Used for the interaction-informed strategy (ProxySPEX interactions) and for the
    paper's LASSO baseline (LASSO interactions, same maximiser).
    """

    def __init__(
        self,
        interactions: Any,
        name: str = "proxyspex",
        *,
        method: str = "auto",
        max_enumeration: int = 200_000,
        time_limit_s: float = 60.0,
    ) -> None:
        super().__init__(int(interactions.n_players), name)
        self.polynomial = MobiusPolynomial.from_interactions(interactions)
        self.method = method
        self.max_enumeration = max_enumeration
        self.time_limit_s = time_limit_s
        self.solutions: dict[int, SurrogateSolution] = {}

    def _choose(self, k_remove: int) -> Iterable[int]:
        solution = maximise_surrogate(
            self.polynomial, self.n_players - k_remove, method=self.method,
            max_enumeration=self.max_enumeration, time_limit_s=self.time_limit_s,
        )
        self.solutions[k_remove] = solution
        kept = set(solution.keep)
        return [i for i in range(self.n_players) if i not in kept]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "n_mobius_terms": len(self.polynomial.subsets),
            "solutions": {
                str(k): {"method": s.method, "optimal": s.optimal, "predicted": s.predicted,
                         "seconds": round(s.seconds, 4), "detail": s.detail}
                for k, s in sorted(self.solutions.items())
            },
        }


class RankingStrategy(RemovalStrategy):
    """Remove the ``k`` players with the lowest importance score (ties: lower index first).

    Args:
        importance: ``float[n]``; higher = more useful to keep (value-function units for
            Banzhaf / Shapley / single-head effects; gradient units for mask gradients).
    """

    def __init__(self, importance: Sequence[float] | np.ndarray, name: str) -> None:
        scores = np.asarray(importance, dtype=np.float64)
        if scores.ndim != 1 or not np.all(np.isfinite(scores)):
            raise PruningError(f"importance must be a finite float[n] vector; got shape {scores.shape}")
        super().__init__(len(scores), name)
        self.importance = scores

    def _choose(self, k_remove: int) -> Iterable[int]:
        return np.argsort(self.importance, kind="stable")[:k_remove].tolist()

    @classmethod
    def banzhaf(cls, interactions: Any, name: str = "banzhaf") -> "RankingStrategy":
        """Rank by the Banzhaf values of a recovered function."""
        return cls(interactions.banzhaf_values(), name)

    @classmethod
    def shapley(cls, interactions: Any, name: str = "shapley") -> "RankingStrategy":
        """Rank by the Shapley values of a recovered function."""
        return cls(interactions.shapley_values(), name)

    @classmethod
    def single_head(cls, value_fn: ValueFunction, n_players: int, name: str = "single_head") -> "RankingStrategy":
        """Rank by ``v(all) − v(all but i)``: what removing player ``i`` alone costs (n + 1 evaluations)."""
        masks = np.ones((n_players + 1, n_players), dtype=bool)
        masks[np.arange(1, n_players + 1), np.arange(n_players)] = False
        values = np.asarray(value_fn(masks), dtype=np.float64)
        return cls(values[0] - values[1:], name)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "importance": self.importance.tolist()}


class RandomStrategy(RemovalStrategy):
    """Uniformly random removal set; seeded per ``(seed, k)`` so each k is reproducible alone."""

    name = "random"

    def __init__(self, n_players: int, seed: int = 0, name: str | None = None) -> None:
        super().__init__(n_players, name)
        self.seed = seed

    def _choose(self, k_remove: int) -> Iterable[int]:
        return np.random.default_rng([self.seed, k_remove]).choice(self.n_players, k_remove, replace=False).tolist()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed}


class BestOfNStrategy(RemovalStrategy):
    """The paper's Best-of-N: of ``n_samples`` random removal sets of size k, the one whose
    real value (on the attribution questions) is highest. Costs ``n_samples`` evaluations per k.
    """

    name = "best_of_n"

    def __init__(self, value_fn: ValueFunction, n_players: int, n_samples: int = 64, seed: int = 0, name: str | None = None) -> None:
        super().__init__(n_players, name)
        if n_samples < 1:
            raise PruningError(f"n_samples must be >= 1; got {n_samples}")
        self.value_fn = value_fn
        self.n_samples = n_samples
        self.seed = seed
        self.best_values: dict[int, float] = {}

    def _choose(self, k_remove: int) -> Iterable[int]:
        rng = np.random.default_rng([self.seed, k_remove, 0xB0])
        n_sets = min(self.n_samples, math.comb(self.n_players, k_remove))
        chosen: set[tuple[int, ...]] = set()
        while len(chosen) < n_sets:  # distinct sets, so N evaluations are N different candidates
            chosen.add(tuple(sorted(rng.choice(self.n_players, k_remove, replace=False).tolist())))
        candidates = sorted(chosen)
        masks = np.stack([removal_mask(self.n_players, c) for c in candidates])
        values = np.asarray(self.value_fn(masks), dtype=np.float64)
        best = int(np.argmax(values))
        self.best_values[k_remove] = float(values[best])
        return candidates[best]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_samples": self.n_samples, "seed": self.seed,
                "best_attribution_values": {str(k): v for k, v in sorted(self.best_values.items())}}


class GreedyRemovalStrategy(RemovalStrategy):
    """Greedy removal by real evaluation: repeatedly drop the player whose removal leaves the
    highest value. Nested sets; ``Σ_{j<k} (n − j)`` evaluations up to k (an expensive reference).
    """

    name = "greedy_eval"

    def __init__(self, value_fn: ValueFunction, n_players: int, name: str | None = None,
                 max_k: int | None = None) -> None:
        super().__init__(n_players, name)
        self.value_fn = value_fn
        self.max_k = max_k
        self.order: list[int] = []
        self.path_values: list[float] = []

    def _choose(self, k_remove: int) -> Iterable[int]:
        while len(self.order) < k_remove:
            keep = removal_mask(self.n_players, self.order)
            candidates = np.flatnonzero(keep)
            trial = np.repeat(keep[None], len(candidates), axis=0)
            trial[np.arange(len(candidates)), candidates] = False
            values = np.asarray(self.value_fn(trial), dtype=np.float64)
            best = int(np.argmax(values))
            self.order.append(int(candidates[best]))
            self.path_values.append(float(values[best]))
        return self.order[:k_remove]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "removal_order": self.order, "attribution_values": self.path_values}


def best_removal_by_enumeration(value_fn: ValueFunction, n_players: int, k_remove: int) -> tuple[tuple[int, ...], float]:
    """Brute force: the removal set of size ``k_remove`` with the highest ``value_fn`` (ties: first)."""
    k = _check_k(k_remove, n_players)
    combos = list(itertools.combinations(range(n_players), k))
    masks = np.stack([removal_mask(n_players, c) for c in combos])
    values = np.asarray(value_fn(masks), dtype=np.float64)
    best = int(np.argmax(values))
    return combos[best], float(values[best])



# ============================================================================ the registry


@dataclass
class StrategyContext:
    """Everything a strategy builder may use (one context per group of players).

    Attributes:
        n_players: n.
        value_fn: the attribution game, ``bool[m, n] -> float[m]`` (real evaluations).
        samples: the attribution's :class:`~headspex.engine.EngineResult` (its interactions,
            fit masks / values and held-out masks / values, reused by the surrogate baselines).
        player_names: names of the n players.
        seed: seed of every random choice.
        best_of_n: random removal sets per k of Best-of-N.
        greedy_max_k: largest k greedy-by-evaluation runs to.
        time_limit_s: MILP time limit per k (surrogate strategies).
        model, prompt_set, players: the model, attribution questions and players of the
            gradient baseline (only it needs them).
        progress: progress bars.
        costs: builders record what they spent here (seconds, faithfulness of a refit).
    """

    n_players: int
    value_fn: ValueFunction
    samples: Any
    player_names: list[str]
    seed: int = 0
    best_of_n: int = 8
    greedy_max_k: int | None = None
    time_limit_s: float = 60.0
    model: Any = None
    prompt_set: Any = None
    players: Any = None
    progress: bool = False
    costs: dict[str, Any] = field(default_factory=dict)


StrategyBuilder = Callable[[StrategyContext], RemovalStrategy]

#: strategy name -> builder, in the order the pipeline runs and reports them.
REGISTRY: dict[str, StrategyBuilder] = {}


def register_strategy(name: str) -> Callable[[StrategyBuilder], StrategyBuilder]:
    """Decorator adding ``build(context) -> RemovalStrategy`` to :data:`REGISTRY` as ``name``."""

    def add(builder: StrategyBuilder) -> StrategyBuilder:
        if name in REGISTRY:
            raise PruningError(f"A strategy named '{name}' is already registered")
        REGISTRY[name] = builder
        return builder

    return add


@register_strategy("proxyspex")
def _build_proxyspex(context: StrategyContext) -> RemovalStrategy:
    return SurrogateStrategy(context.samples.interactions, "proxyspex", time_limit_s=context.time_limit_s)


@register_strategy("lasso")
def _build_lasso(context: StrategyContext) -> RemovalStrategy:
    from ..engine import LassoRegression

    samples = context.samples  # same samples as ProxySPEX, so only the surrogate differs
    lasso = LassoRegression(max_order=2, seed=context.seed).fit_samples(
        samples.masks, samples.values, context.player_names, samples.test_masks, samples.test_values)
    context.costs["lasso_faithfulness"] = lasso.faithfulness
    return SurrogateStrategy(lasso.interactions, "lasso", time_limit_s=context.time_limit_s)


@register_strategy("best_of_n")
def _build_best_of_n(context: StrategyContext) -> RemovalStrategy:
    return BestOfNStrategy(context.value_fn, context.n_players, n_samples=context.best_of_n, seed=context.seed)


@register_strategy("random")
def _build_random(context: StrategyContext) -> RemovalStrategy:
    return RandomStrategy(context.n_players, seed=context.seed)


@register_strategy("banzhaf")
def _build_banzhaf(context: StrategyContext) -> RemovalStrategy:
    from ..engine import LinearBanzhaf

    # First-order regression on the same samples: the marginal view.
    linear = LinearBanzhaf(seed=context.seed).fit_samples(context.samples.masks, context.samples.values,
                                                          context.player_names)
    return RankingStrategy.banzhaf(linear.interactions, "banzhaf")


@register_strategy("shapley")
def _build_shapley(context: StrategyContext) -> RemovalStrategy:
    return RankingStrategy.shapley(context.samples.interactions, "shapley")


@register_strategy("single_head")
def _build_single_head(context: StrategyContext) -> RemovalStrategy:
    return RankingStrategy.single_head(context.value_fn, context.n_players)


@register_strategy("gradient")
def _build_gradient(context: StrategyContext) -> RemovalStrategy:
    from .gradients import mask_gradient_importance

    if context.model is None or context.prompt_set is None or context.players is None:
        raise PruningError("The gradient strategy needs the model, the attribution questions and the players")
    started = time.perf_counter()
    importance = mask_gradient_importance(context.model, context.prompt_set, context.players,
                                          progress=context.progress)
    context.costs["gradient_s"] = time.perf_counter() - started
    return RankingStrategy(importance, "gradient")


@register_strategy("greedy_eval")
def _build_greedy_eval(context: StrategyContext) -> RemovalStrategy:
    return GreedyRemovalStrategy(context.value_fn, context.n_players, max_k=context.greedy_max_k)


#: The names of every registered strategy.
STRATEGIES: tuple[str, ...] = tuple(REGISTRY)


def build_strategies(names: Iterable[str], context: StrategyContext) -> dict[str, RemovalStrategy]:
    """``{name: strategy}`` for each requested name, built in :data:`REGISTRY` order."""
    chosen = set(names)
    unknown = sorted(chosen - set(REGISTRY))
    if unknown:
        raise PruningError(f"Unknown strategies {unknown}; choose from {list(REGISTRY)}")
    return {name: build(context) for name, build in REGISTRY.items() if name in chosen}
