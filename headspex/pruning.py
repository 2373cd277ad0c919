"""Pruning: choose heads to remove from discovered interactions, apply the pruning, evaluate it.

Three parts, each usable alone:

1. **Strategies** (:class:`RemovalStrategy`): ``strategy.choose(k_remove)`` returns the sorted
   tuple of player indices to remove. Interaction-informed (:class:`SurrogateStrategy`: the
   recovered function, interactions included, is written in the Möbius basis and maximised
   over keep-sets of size ``n - k``), and the baselines under the same interface: LASSO
   surrogate (same maximiser, other interactions), :class:`BestOfNStrategy`,
   :class:`RandomStrategy`, :class:`RankingStrategy` (Banzhaf, Shapley, single-head
   ablation effect, gradient-of-mask importance of Michel et al. 2019) and
   :class:`GreedyRemovalStrategy` (greedy by real evaluation, an expensive upper reference).

2. **Applying** (:class:`Pruning`): a small JSON-able spec (model source, heads, mode,
   reference info, mean vectors for mean mode). ``pruning.apply(model)`` keeps the hook
   manager's :func:`headspex.ablation.ablate` context open until ``handle.undo()``, so a
   pruned model *is* the original with those heads ablated by the one implementation.

3. **Evaluation** (:func:`evaluate_removals`): raw accuracy, calibrated accuracy (per-letter
   bias from the reference split under the same pruning) and mean log-prob of the correct
   letter on held-out questions, with seeded question-bootstrap 95 % intervals and paired
   differences between strategies. :func:`check_questions_disjoint` raises when the
   evaluation questions intersect the attribution questions.

Mask convention everywhere: ``True`` = kept, ``False`` = ablated / pruned.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .ablation import ReferenceActivations, ablate, encode_prompts, left_padded_ids
from .components import Head, Players, parse_component
from .errors import HeadspexError
from .hooks import hook_name

ValueFunction = Callable[[np.ndarray], np.ndarray]  # bool[m, n] -> float[m]
PRUNING_MODES = ("zero", "zero_rescaled", "mean")
SPEC_FORMAT = "headspex.pruning.Pruning/1"


class PruningError(HeadspexError):
    """Bad input to the pruning module (k out of range, unknown mode, mismatched model...)."""


class QuestionOverlapError(PruningError):
    """Evaluation questions were also used to compute the attribution (or its statistics)."""


class SurrogateSolverError(PruningError):
    """The surrogate maximiser was asked for something it cannot do."""


def _check_k(k_remove: int, n_players: int) -> int:
    if not isinstance(k_remove, (int, np.integer)) or not 0 <= int(k_remove) <= n_players:
        raise PruningError(f"k_remove must be an integer in [0, {n_players}] (the number of players); got {k_remove!r}")
    return int(k_remove)


def removal_mask(n_players: int, removed: Iterable[int]) -> np.ndarray:
    """Keep-mask of one removal set: ``bool[n_players]``, False at the removed players."""
    mask = np.ones(n_players, dtype=bool)
    mask[list(removed)] = False
    return mask


# ============================================================================ surrogate maximisation


@dataclass(frozen=True)
class MobiusPolynomial:
    """``f(x) = Σ_S a_S Π_{i∈S} x_i`` over keep-masks ``x ∈ {0,1}^n`` (x_i = 1: player kept).

    Attributes:
        n_players: n.
        constant: ``a_∅``.
        subsets: the non-empty terms, tuples of sorted player indices.
        coefficients: ``float64[T]`` their coefficients (same units as the value function).
    """

    n_players: int
    constant: float
    subsets: tuple[tuple[int, ...], ...]
    coefficients: np.ndarray

    @classmethod
    def from_interactions(cls, interactions: Any, tol: float = 1e-12) -> "MobiusPolynomial":
        """Convert an engine :class:`~headspex.engine.Interactions` (any basis) exactly."""
        mobius = interactions.to_mobius().as_dict()
        return cls.from_dict(mobius, int(interactions.n_players), tol)

    @classmethod
    def from_dict(cls, terms: Mapping[tuple[int, ...], float], n_players: int, tol: float = 1e-12) -> "MobiusPolynomial":
        """From ``{subset: Möbius coefficient}``; terms with ``|a_S| <= tol`` are dropped."""
        constant = float(terms.get((), 0.0))
        kept = [(tuple(sorted(s)), float(c)) for s, c in terms.items() if s and abs(c) > tol]
        for subset, _ in kept:
            if subset[0] < 0 or subset[-1] >= n_players:
                raise SurrogateSolverError(f"Möbius term {subset} names a player outside 0..{n_players - 1}")
        return cls(n_players, constant, tuple(s for s, _ in kept), np.array([c for _, c in kept], dtype=np.float64))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Evaluate on keep-masks ``bool[m, n]`` → ``float64[m]``."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        if not self.subsets:
            return np.full(masks.shape[0], self.constant)
        # A term is on iff none of its players is removed: count removed members per term.
        incidence = np.zeros((len(self.subsets), self.n_players), dtype=np.float32)
        for row, subset in enumerate(self.subsets):
            incidence[row, list(subset)] = 1.0
        removed_members = incidence @ (~masks).T.astype(np.float32)  # [T, m]
        return self.constant + self.coefficients @ (removed_members == 0)


@dataclass(frozen=True)
class SurrogateSolution:
    """The best keep-set found for one size.

    Attributes:
        keep: sorted player indices kept (``n_keep`` of them).
        predicted: surrogate value at ``keep`` (value-function units).
        method: ``"enumeration"``, ``"milp"`` or ``"local_search"``.
        optimal: True when the method proves optimality (enumeration, or milp status 0).
        seconds: wall time of the solve.
        detail: solver message / fallback reason.
    """

    keep: tuple[int, ...]
    predicted: float
    method: str
    optimal: bool
    seconds: float
    detail: str = ""


def _keep_masks_of_size(n_players: int, n_keep: int) -> Iterator[np.ndarray]:
    """All keep-masks with ``n_keep`` True, in chunks of ``bool[<=50_000, n]``."""
    chunk: list[tuple[int, ...]] = []
    for combo in itertools.combinations(range(n_players), n_keep):
        chunk.append(combo)
        if len(chunk) == 50_000:
            yield _combos_to_masks(chunk, n_players)
            chunk = []
    if chunk:
        yield _combos_to_masks(chunk, n_players)


def _combos_to_masks(combos: Sequence[tuple[int, ...]], n_players: int) -> np.ndarray:
    masks = np.zeros((len(combos), n_players), dtype=bool)
    if combos and combos[0]:
        rows = np.repeat(np.arange(len(combos)), len(combos[0]))
        masks[rows, np.asarray(combos).ravel()] = True
    return masks


def _enumerate(poly: MobiusPolynomial, n_keep: int) -> tuple[tuple[int, ...], float]:
    best_value, best_keep = -math.inf, ()
    for masks in _keep_masks_of_size(poly.n_players, n_keep):
        values = poly(masks)
        # First index of the max: ties go to the lexicographically first keep-set (deterministic).
        row = int(np.argmax(values))
        if values[row] > best_value + 1e-12:
            best_value, best_keep = float(values[row]), tuple(np.flatnonzero(masks[row]).tolist())
    return best_keep, best_value


def _local_search(poly: MobiusPolynomial, n_keep: int, start: Sequence[int] | None = None, max_rounds: int = 200) -> tuple[tuple[int, ...], float]:
    """Greedy build-up then best-improvement 1-swap hill climbing (no optimality guarantee)."""
    n = poly.n_players
    if start is None:
        # Greedy removal on the surrogate from the full set: at each step drop the player
        # whose removal leaves the highest predicted value.
        keep = np.ones(n, dtype=bool)
        for _ in range(n - n_keep):
            candidates = np.flatnonzero(keep)
            trial = np.repeat(keep[None], len(candidates), axis=0)
            trial[np.arange(len(candidates)), candidates] = False
            keep = trial[int(np.argmax(poly(trial)))]
    else:
        keep = np.zeros(n, dtype=bool)
        keep[list(start)] = True
    value = float(poly(keep[None])[0])
    for _ in range(max_rounds):
        kept, dropped = np.flatnonzero(keep), np.flatnonzero(~keep)
        if len(kept) == 0 or len(dropped) == 0:
            break
        pairs = [(i, j) for i in kept for j in dropped]
        trial = np.repeat(keep[None], len(pairs), axis=0)
        index = np.arange(len(pairs))
        trial[index, [p[0] for p in pairs]] = False
        trial[index, [p[1] for p in pairs]] = True
        values = poly(trial)
        row = int(np.argmax(values))
        if values[row] <= value + 1e-12:
            break
        keep, value = trial[row], float(values[row])
    return tuple(np.flatnonzero(keep).tolist()), value


def _milp(poly: MobiusPolynomial, n_keep: int, time_limit_s: float) -> tuple[tuple[int, ...] | None, float, int, str]:
    """Solve ``max f(x) s.t. Σx = n_keep`` with scipy's HiGHS MILP.

    Each Möbius product of order ≥ 2 gets a continuous ``y_S ∈ [0, 1]`` with
    ``y_S ≤ x_i`` (i ∈ S) and ``y_S ≥ Σ_{i∈S} x_i − |S| + 1``; for binary ``x`` these force
    ``y_S = Π x_i`` exactly, so ``y`` need not be declared integer.

    Returns:
        (keep or None, surrogate value, scipy status, message).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    n = poly.n_players
    higher = [(s, c) for s, c in zip(poly.subsets, poly.coefficients) if len(s) >= 2]
    n_vars = n + len(higher)
    objective = np.zeros(n_vars)
    for subset, coef in zip(poly.subsets, poly.coefficients):
        if len(subset) == 1:
            objective[subset[0]] -= coef  # milp minimises
    rows, cols, vals, lower, upper = [], [], [], [], []
    row = 0
    # Cardinality: Σ x_i = n_keep.
    rows += [row] * n
    cols += list(range(n))
    vals += [1.0] * n
    lower.append(n_keep)
    upper.append(n_keep)
    row += 1
    for t, (subset, coef) in enumerate(higher):
        y = n + t
        objective[y] = -coef
        for i in subset:  # y_S - x_i <= 0
            rows += [row, row]
            cols += [y, i]
            vals += [1.0, -1.0]
            lower.append(-np.inf)
            upper.append(0.0)
            row += 1
        # y_S - Σ x_i >= 1 - |S|
        rows += [row] * (len(subset) + 1)
        cols += [y, *subset]
        vals += [1.0] + [-1.0] * len(subset)
        lower.append(1.0 - len(subset))
        upper.append(np.inf)
        row += 1
    matrix = coo_matrix((vals, (rows, cols)), shape=(row, n_vars)).tocsr()
    integrality = np.concatenate([np.ones(n), np.zeros(len(higher))])
    result = milp(
        objective,
        constraints=LinearConstraint(matrix, np.array(lower), np.array(upper)),
        integrality=integrality,
        bounds=Bounds(np.zeros(n_vars), np.ones(n_vars)),
        options={"time_limit": float(time_limit_s), "disp": False},
    )
    if result.x is None:
        return None, -math.inf, int(result.status), str(result.message)
    keep_mask = result.x[:n] > 0.5
    if int(keep_mask.sum()) != n_keep:
        return None, -math.inf, int(result.status), f"rounded solution has {int(keep_mask.sum())} kept, not {n_keep}"
    keep = tuple(np.flatnonzero(keep_mask).tolist())
    # Re-score with the polynomial itself (no LP tolerance in the reported value).
    return keep, float(poly(keep_mask[None])[0]), int(result.status), str(result.message)


def maximise_surrogate(
    surrogate: Any,
    n_keep: int,
    *,
    method: str = "auto",
    max_enumeration: int = 200_000,
    time_limit_s: float = 60.0,
) -> SurrogateSolution:
    """The keep-set of size ``n_keep`` that maximises a recovered function.

    Args:
        surrogate: engine ``Interactions`` (any basis) or a :class:`MobiusPolynomial`.
        n_keep: number of players kept (0..n).
        method: ``"auto"`` (enumerate when ``C(n, n_keep) <= max_enumeration``, else MILP),
            ``"enumeration"``, ``"milp"`` or ``"local_search"``.
        max_enumeration: largest number of keep-sets ``"auto"`` enumerates.
        time_limit_s: MILP time limit (seconds). If HiGHS stops without a proven optimum,
            the better of its incumbent and a greedy + 1-swap local search is returned with
            ``optimal=False``; if it returns no solution, the local search result is returned.

    Returns:
        :class:`SurrogateSolution`.
    """
    poly = surrogate if isinstance(surrogate, MobiusPolynomial) else MobiusPolynomial.from_interactions(surrogate)
    n = poly.n_players
    if not 0 <= n_keep <= n:
        raise SurrogateSolverError(f"n_keep must be in [0, {n}]; got {n_keep}")
    if method not in ("auto", "enumeration", "milp", "local_search"):
        raise SurrogateSolverError(f"Unknown method '{method}'; use auto, enumeration, milp or local_search")
    start = time.perf_counter()
    if method == "auto":
        method = "enumeration" if math.comb(n, n_keep) <= max_enumeration else "milp"
    if method == "enumeration":
        keep, value = _enumerate(poly, n_keep)
        return SurrogateSolution(keep, value, "enumeration", True, time.perf_counter() - start, f"{math.comb(n, n_keep)} keep-sets")
    if method == "local_search":
        keep, value = _local_search(poly, n_keep)
        return SurrogateSolution(keep, value, "local_search", False, time.perf_counter() - start, "greedy + 1-swap")
    keep_milp, value_milp, status, message = _milp(poly, n_keep, time_limit_s)
    if keep_milp is not None and status == 0:
        return SurrogateSolution(keep_milp, value_milp, "milp", True, time.perf_counter() - start, message)
    keep_ls, value_ls = _local_search(poly, n_keep, start=keep_milp)
    if keep_milp is None:
        detail = f"milp returned no solution (status {status}: {message}); local search used"
    else:
        detail = f"milp stopped without proof (status {status}: {message}); incumbent polished by local search"
    return SurrogateSolution(keep_ls, value_ls, "local_search", False, time.perf_counter() - start, detail)


# ============================================================================ strategies


class RemovalStrategy(ABC):
    """Chooses which players to remove for a given count.

    Attributes:
        name: short label used in tables and plots.
        n_players: n.
    """

    name: str = "strategy"

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

    def __init__(self, value_fn: ValueFunction, n_players: int, name: str | None = None) -> None:
        super().__init__(n_players, name)
        self.value_fn = value_fn
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


# ============================================================================ gradient importance


def mask_gradient_importance(
    model: Any,
    prompt_set: Any,
    players: Players | Sequence[str],
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """Michel et al. (2019) head importance ``E_x |∂L(x)/∂ξ_h|`` at ``ξ = 1``.

    A gate ``ξ_h`` multiplies each head's ``blocks.l.attn.hook_z`` slice; the loss of a
    question is ``−log p(correct letter)`` with the softmax restricted to its candidates
    (nats). For a cloze prompt set it is ``−log softmax(choice scores)[correct]``, a choice's
    score being the mean log-prob of its answer tokens, as the cloze game scores it. Each
    question has its own gate copy (shared by its choices), so the absolute value is taken
    per question before averaging.

    Args:
        model: TransformerBridge.
        prompt_set: a :class:`~headspex.tasks.base.PromptSet` (attribution questions).
        players: heads only.
        batch_size: sequences per forward/backward (questions; cloze: question × choice).

    Returns:
        ``float64[n_players]``: mean absolute gradient (nats per unit gate).
    """
    from tqdm.auto import tqdm

    players = players if isinstance(players, Players) else Players(players, model)
    if not all(isinstance(p, Head) for p in players):
        raise PruningError("mask_gradient_importance gates attention heads only; give Head players")
    layers = sorted({p.layer for p in players})
    n_heads = int(model.cfg.n_heads)
    totals = np.zeros((len(layers), n_heads))
    n_questions = len(prompt_set)
    if n_questions == 0:
        raise PruningError("mask_gradient_importance needs at least one question")
    rows_per_question = int(prompt_set.candidate_token_ids.shape[1]) if prompt_set.is_cloze else 1
    step = max(1, batch_size // rows_per_question)  # batch_size sequences per forward
    for start in tqdm(range(0, n_questions, step), desc="mask gradients", disable=not progress):
        stop = min(start + step, n_questions)
        gates = torch.ones(len(layers), stop - start, n_heads, requires_grad=True)

        def gate_hook(slot: int) -> Callable[[torch.Tensor, Any], torch.Tensor]:
            def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:  # z: [b, pos, heads, d_head]
                row_gates = gates[slot].to(z.device, z.dtype).repeat_interleave(rows_per_question, dim=0)
                return z * row_gates[:, None, :, None]
            return hook

        hooks = [(hook_name(layer, "z"), gate_hook(slot)) for slot, layer in enumerate(layers)]
        correct = prompt_set.correct_index[start:stop]
        with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            if prompt_set.is_cloze:
                scores = _cloze_choice_scores(model, prompt_set, range(start, stop))  # [b, c]
                log_probs = torch.log_softmax(scores, dim=-1)
            else:
                ids, attention = encode_prompts(model, prompt_set.prompts[start:stop])
                logits = model(ids, attention_mask=attention)[:, -1]  # [b, vocab]
                candidates = prompt_set.candidate_token_ids[start:stop].to(logits.device)
                log_probs = torch.log_softmax(logits.float().gather(-1, candidates), dim=-1)
            loss = -log_probs.gather(-1, correct.to(log_probs.device)[:, None]).sum()
            (grad,) = torch.autograd.grad(loss, gates)
        totals += grad.abs().sum(dim=1).detach().cpu().double().numpy()
    per_layer = totals / n_questions
    slot_of = {layer: slot for slot, layer in enumerate(layers)}
    return np.array([per_layer[slot_of[p.layer], p.head] for p in players])


def _cloze_choice_scores(model: Any, prompt_set: Any, questions: Sequence[int]) -> torch.Tensor:
    """Differentiable cloze scores ``float[len(questions), c]``: mean answer-token log-prob.

    Rows are (question, choice) sequences, question-major, left-padded: context + answer.
    """
    sequences, spans = [], []
    for q in questions:
        for continuation in prompt_set.continuation_ids[q]:
            sequences.append(list(prompt_set.input_ids[q]) + list(continuation))
            spans.append(list(continuation))
    ids, attention = encode_prompts(model, left_padded_ids(sequences))
    width = ids.shape[1]
    log_probs = torch.log_softmax(model(ids, attention_mask=attention).float(), dim=-1)
    scores = []
    for row, continuation in enumerate(spans):
        # The answer fills the last len(answer) positions; position p is predicted at p - 1.
        positions = torch.arange(width - len(continuation) - 1, width - 1, device=log_probs.device)
        targets = torch.tensor(continuation, device=log_probs.device)
        scores.append(log_probs[row, positions, targets].mean())
    return torch.stack(scores).view(len(questions), -1)


# ============================================================================ applying a pruning


@dataclass
class Pruning:
    """A set of heads permanently ablated: a small, re-appliable spec.

    Attributes:
        heads: component names, e.g. ``("L27H3", "L28H0")``.
        mode: ``"zero"``, ``"zero_rescaled"`` (kept heads of each pruned layer × |H_l| / |kept|)
            or ``"mean"``.
        model_source: ``model.headspex_source`` of the model it was chosen on (checked on apply).
        means: for mean mode, ``{head name: float[d_head]}`` the replacement vector (the head's
            mean ``hook_z`` over every token of the reference prompts).
        reference: provenance of the means / calibration (task description, split, question ids).
        info: free JSON-able notes (strategy, k, players...).
    """

    heads: tuple[str, ...]
    mode: str = "zero"
    model_source: str | None = None
    means: dict[str, list[float]] | None = None
    reference: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parsed = [parse_component(h) for h in self.heads]
        if not all(isinstance(p, Head) for p in parsed):
            raise PruningError(f"A Pruning removes attention heads only; got {[str(p) for p in parsed if not isinstance(p, Head)]}")
        self.heads = tuple(str(p) for p in sorted(parsed, key=lambda p: p.sort_key))
        if self.mode not in PRUNING_MODES:
            raise PruningError(f"Unknown pruning mode '{self.mode}'; choose one of {PRUNING_MODES} "
                               "(resample is random per forward, so it is not a fixed pruning)")
        if self.mode == "mean":
            missing = [h for h in self.heads if not self.means or h not in self.means]
            if missing:
                raise PruningError(f"Mean-mode pruning needs a mean vector for every head; missing {missing[:5]}. "
                                   "Build it with Pruning.from_removal(..., reference=ReferenceActivations...)")

    @classmethod
    def from_removal(
        cls,
        players: Players | Sequence[str],
        removed: Iterable[int],
        *,
        mode: str = "zero",
        model: Any | None = None,
        reference: ReferenceActivations | None = None,
        reference_info: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ) -> "Pruning":
        """Spec removing ``players[i]`` for each ``i`` in ``removed``.

        For mean mode, ``reference`` must cover the players' sites (e.g.
        ``ReferenceActivations.compute(model, reference_prompts, players)``).
        """
        names = list(players.names) if isinstance(players, Players) else [str(p) for p in players]
        heads = [names[i] for i in removed]
        means = None
        if mode == "mean":
            if reference is None:
                raise PruningError("Mean-mode pruning needs reference activations (ReferenceActivations.compute)")
            means = {}
            for name in heads:
                head = parse_component(name)
                hook = hook_name(head.layer, "z")
                if hook not in reference.means:
                    raise PruningError(f"The reference activations have no data for {hook} (head {name})")
                means[name] = reference.means[hook][head.head].detach().cpu().double().tolist()
        source = getattr(model, "headspex_source", None) if model is not None else None
        return cls(tuple(heads), mode, source, means, reference_info, dict(info or {}))

    # -- serialisation
    def to_json_dict(self) -> dict[str, Any]:
        """JSON-able dict (format tag included)."""
        return {"format": SPEC_FORMAT, "heads": list(self.heads), "mode": self.mode, "model_source": self.model_source,
                "means": self.means, "reference": self.reference, "info": self.info}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "Pruning":
        """Inverse of :meth:`to_json_dict`."""
        if data.get("format") != SPEC_FORMAT:
            raise PruningError(f"Not a pruning spec (format {data.get('format')!r}, expected {SPEC_FORMAT!r})")
        return cls(tuple(data["heads"]), data["mode"], data.get("model_source"), data.get("means"),
                   data.get("reference"), dict(data.get("info") or {}))

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON."""
        Path(path).write_text(json.dumps(self.to_json_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Pruning":
        """Read a spec written by :meth:`save`."""
        return cls.from_json_dict(json.loads(Path(path).read_text()))

    # -- application
    def _reference_activations(self, model: Any) -> ReferenceActivations | None:
        if self.mode != "mean":
            return None
        assert self.means is not None
        n_heads, d_head = int(model.cfg.n_heads), int(model.cfg.d_head)
        device = next(model.parameters()).device
        means: dict[str, torch.Tensor] = {}
        for name in self.heads:
            head = parse_component(name)
            hook = hook_name(head.layer, "z")
            # Unpruned heads' rows stay zero: they are never read (their keep factor is 1).
            table = means.setdefault(hook, torch.zeros(n_heads, d_head, device=device))
            vector = torch.tensor(self.means[name], dtype=torch.float32, device=device)
            if vector.shape != (d_head,):
                raise PruningError(f"Mean vector of {name} has shape {tuple(vector.shape)}; the model's d_head is {d_head}")
            table[head.head] = vector
        return ReferenceActivations(means=means, n_prompts=int((self.reference or {}).get("n_prompts", 0)))

    def apply(self, model: Any, *, check_source: bool = True) -> "AppliedPruning":
        """Ablate the heads on every later forward of ``model`` until ``handle.undo()``.

        Raises PruningError when ``check_source`` and the spec names another model.
        """
        source = getattr(model, "headspex_source", None)
        if check_source and self.model_source and source and source != self.model_source:
            raise PruningError(f"This pruning was made for model '{self.model_source}', not '{source}' "
                               "(pass check_source=False to apply it anyway)")
        return AppliedPruning(model, self)

    @contextmanager
    def applied(self, model: Any, *, check_source: bool = True) -> Iterator["AppliedPruning"]:
        """Context manager: the pruning is active inside the ``with`` block only."""
        handle = self.apply(model, check_source=check_source)
        try:
            yield handle
        finally:
            handle.undo()


class AppliedPruning:
    """Handle of an active pruning: the hook manager's ``ablate`` context, kept open.

    Other hooks (an AblationGame, caching) can be added and removed while it is active;
    TransformerLens only removes the hooks each context added.
    """

    def __init__(self, model: Any, pruning: Pruning) -> None:
        self.model = model
        self.pruning = pruning
        self._stack = ExitStack()
        self.ablator = self._stack.enter_context(
            ablate(model, list(pruning.heads), mode=pruning.mode, reference=pruning._reference_activations(model))
        )
        self.active = True

    def undo(self) -> None:
        """Remove the pruning's hooks (idempotent)."""
        if self.active:
            self._stack.close()
            self.active = False

    def __enter__(self) -> "AppliedPruning":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.undo()


# ============================================================================ evaluation


def question_ids_of_game(game: Any) -> list[str]:
    """Question ids a game scores (``game.question_ids`` or its task split, first ``n_questions``)."""
    ids = getattr(game, "question_ids", None)
    if ids is None:
        prompt_set = game.task.prompt_set(game.split)
        ids = list(prompt_set.question_ids)[: game.n_questions]
    return [str(i) for i in ids]


def check_questions_disjoint(attribution_ids: Iterable[str], evaluation_ids: Iterable[str], what: str = "evaluation") -> None:
    """Raise :class:`QuestionOverlapError` if any evaluation question was used for attribution."""
    overlap = sorted(set(map(str, attribution_ids)) & set(map(str, evaluation_ids)))
    if overlap:
        raise QuestionOverlapError(
            f"{len(overlap)} {what} question(s) were also used to compute the attribution "
            f"(e.g. {overlap[:3]}); held-out evaluation must use other questions"
        )


def bootstrap_interval(per_question: np.ndarray, indices: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``per_question float[q]`` over resamples ``indices long[B, q]``."""
    means = per_question[indices].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


EVAL_METRICS = ("accuracy", "calibrated_accuracy", "logprob")
CLOZE_EVAL_METRICS = ("accuracy", "logprob")  # calibration removes a letter bias; cloze has none


def per_question_metrics(eval_logits: torch.Tensor, correct_index: torch.Tensor, reference_logits: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-question held-out metrics of one ablation.

    Args:
        eval_logits: ``float[q, c]`` candidate logits on the evaluation questions.
        correct_index: ``long[q]``.
        reference_logits: ``float[r, c]`` candidate logits on the reference questions under the
            same ablation (the calibration bias is their mean restricted log-prob).

    Returns:
        ``{"accuracy": 0/1[q], "calibrated_accuracy": 0/1[q], "logprob": nats[q]}``.
    """
    from .tasks.base import calibration_bias, question_values

    bias = calibration_bias(reference_logits)
    return {
        "accuracy": question_values(eval_logits, correct_index, "accuracy").double().numpy(),
        "calibrated_accuracy": question_values(eval_logits, correct_index, "calibrated_accuracy", bias).double().numpy(),
        "logprob": question_values(eval_logits, correct_index, "logprob").double().numpy(),
    }


def game_metrics_fn(game: Any) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per-question held-out metrics from an AblationGame built with
    ``metric="calibrated_accuracy"`` (so each mask also runs the reference questions and gets
    its own per-letter bias). Candidate logits are cached, so the three metrics cost one run.
    A cloze game (any metric) gives accuracy and log-prob only: there is no letter bias."""
    if getattr(game, "cloze", False):
        return lambda masks: {m: game.question_values(masks, m) for m in CLOZE_EVAL_METRICS}
    if getattr(game, "metric", None) != "calibrated_accuracy":
        raise PruningError("Build the evaluation game with metric='calibrated_accuracy' so every mask "
                           "gets its own calibration bias from the reference split")
    return lambda masks: {m: game.question_values(masks, m) for m in EVAL_METRICS}


def logits_metrics_fn(
    eval_logits_fn: Callable[[np.ndarray], Any],
    reference_logits_fn: Callable[[np.ndarray], Any],
    correct_index: torch.Tensor,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per-question metrics from candidate-logit functions ``bool[m, n] -> float[m, q|r, c]``
    on the evaluation and reference questions (see :func:`per_question_metrics`)."""

    def metrics(masks: np.ndarray) -> dict[str, np.ndarray]:
        eval_logits = torch.as_tensor(eval_logits_fn(masks))
        ref_logits = torch.as_tensor(reference_logits_fn(masks))
        rows = [per_question_metrics(eval_logits[m], correct_index, ref_logits[m]) for m in range(len(masks))]
        return {name: np.stack([r[name] for r in rows]) for name in EVAL_METRICS}

    return metrics


def evaluate_removals(
    removals: Mapping[str, Mapping[int, Sequence[int]]],
    n_players: int,
    metrics_fn: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    paired_against: str | None = None,
) -> dict[str, Any]:
    """Held-out metrics of every (strategy, k) removal set, with bootstrap intervals.

    Args:
        removals: ``{strategy: {k: removed player indices}}``.
        n_players: n.
        metrics_fn: keep-masks ``bool[m, n]`` → ``{metric: float[m, q]}`` per-question values on
            the held-out questions: accuracy and logprob, and calibrated_accuracy where it
            applies (see :func:`game_metrics_fn` for an AblationGame, :func:`logits_metrics_fn`
            for raw candidate logits).
        n_bootstrap: resamples of the questions (same resamples for every row, so intervals of
            differences are paired).
        seed: bootstrap seed.
        paired_against: strategy whose differences to every other strategy (same k) get
            paired intervals (e.g. the interaction-informed one).

    Returns:
        JSON-able dict: ``unpruned`` and ``rows`` (strategy, k, removed, metric → mean/lo/hi),
        ``paired`` differences, and ``per_question`` arrays.
    """
    masks, keys = [removal_mask(n_players, [])], [("unpruned", 0)]
    mask_index: dict[tuple[int, ...], int] = {(): 0}
    row_of: dict[tuple[str, int], int] = {("unpruned", 0): 0}
    for strategy, by_k in removals.items():
        for k, removed in by_k.items():
            key = tuple(sorted(int(i) for i in removed))
            if key not in mask_index:  # identical sets are evaluated once
                mask_index[key] = len(masks)
                masks.append(removal_mask(n_players, key))
            row_of[(strategy, int(k))] = mask_index[key]
            keys.append((strategy, int(k)))
    values = metrics_fn(np.stack(masks))
    missing = [m for m in CLOZE_EVAL_METRICS if m not in values]
    if missing:
        raise PruningError(f"metrics_fn must return at least {CLOZE_EVAL_METRICS}; missing {missing}")
    metric_names = [m for m in EVAL_METRICS if m in values]
    per_mask = [{m: np.asarray(values[m][row], dtype=np.float64) for m in metric_names} for row in range(len(masks))]
    n_q = int(per_mask[0]["logprob"].shape[0])
    indices = np.random.default_rng(seed).integers(0, n_q, size=(n_bootstrap, n_q))

    def summary(values: np.ndarray) -> dict[str, float]:
        lo, hi = bootstrap_interval(values, indices)
        return {"mean": float(values.mean()), "lo": lo, "hi": hi}

    rows = []
    for strategy, k in keys[1:]:
        metrics = per_mask[row_of[(strategy, k)]]
        removed = sorted(int(i) for i in removals[strategy][k])
        rows.append({"strategy": strategy, "k": k, "removed": removed,
                     **{m: summary(metrics[m]) for m in metric_names},
                     "delta_vs_unpruned": {m: summary(metrics[m] - per_mask[0][m]) for m in metric_names}})
    paired = []
    if paired_against is not None and paired_against in removals:
        for strategy, by_k in removals.items():
            if strategy == paired_against:
                continue
            for k in by_k:
                if int(k) in removals[paired_against]:
                    ours, theirs = per_mask[row_of[(paired_against, int(k))]], per_mask[row_of[(strategy, int(k))]]
                    paired.append({"strategy": strategy, "k": int(k),
                                   **{m: summary(ours[m] - theirs[m]) for m in metric_names}})
    return {
        "n_questions": n_q,
        "metrics": metric_names,
        "n_bootstrap": n_bootstrap,
        "bootstrap_seed": seed,
        "interval": "95% percentile bootstrap over questions",
        "unpruned": {m: summary(per_mask[0][m]) for m in metric_names},
        "rows": rows,
        "paired_against": paired_against,
        "paired": paired,
        "per_question": {f"{s}|{k}": {m: per_mask[row_of[(s, k)]][m].tolist() for m in metric_names} for s, k in keys},
    }


def verdicts(evaluation: Mapping[str, Any], metric: str = "logprob") -> dict[str, dict[str, int]]:
    """Count wins / ties / losses of ``paired_against`` vs each strategy: a win or loss needs the
    paired 95 % interval of the difference to exclude 0; everything else is a tie."""
    out: dict[str, dict[str, int]] = {}
    for row in evaluation.get("paired", []):
        tally = out.setdefault(row["strategy"], {"wins": 0, "ties": 0, "losses": 0})
        lo, hi = row[metric]["lo"], row[metric]["hi"]
        tally["wins" if lo > 0 else "losses" if hi < 0 else "ties"] += 1
    return out


def plot_curves(evaluation: Mapping[str, Any], path: str | Path, title: str = "", n_candidates: int | None = 4) -> None:
    """Held-out accuracy, calibrated accuracy (where measured) and log-prob vs pruned heads (PNG).

    ``n_candidates`` (4 for MMLU) draws the uniform-guess level: accuracy 1/c, log-prob −log c.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(evaluation.get("metrics", EVAL_METRICS))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.7 * len(metrics), 5))
    strategies = list(dict.fromkeys(r["strategy"] for r in evaluation["rows"]))
    cmap = plt.get_cmap("tab10")
    for ax, metric in zip(axes, metrics):
        base = evaluation["unpruned"][metric]
        ax.axhspan(base["lo"], base["hi"], color="0.85", label="unpruned 95% CI")
        ax.axhline(base["mean"], color="0.4", lw=1)
        if n_candidates:
            chance = -math.log(n_candidates) if metric == "logprob" else 1.0 / n_candidates
            ax.axhline(chance, color="k", ls=":", lw=1, label=f"uniform guess over {n_candidates}")
        for s_index, strategy in enumerate(strategies):
            rows = sorted((r for r in evaluation["rows"] if r["strategy"] == strategy), key=lambda r: r["k"])
            ks = np.array([r["k"] for r in rows], dtype=float)
            offset = 1.0 + 0.03 * (s_index - len(strategies) / 2)  # spread overlapping error bars
            mean = np.array([r[metric]["mean"] for r in rows])
            err = np.array([[r[metric]["mean"] - r[metric]["lo"] for r in rows], [r[metric]["hi"] - r[metric]["mean"] for r in rows]])
            style = dict(lw=2.5, marker="o") if s_index == 0 else dict(lw=1.2, marker=".")
            ax.errorbar(ks * offset, mean, yerr=err, label=strategy, color=cmap(s_index % 10), capsize=2, **style)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("pruned heads k")
        ax.set_ylabel({"accuracy": "accuracy", "calibrated_accuracy": "calibrated accuracy",
                       "logprob": "mean log p(correct answer) [nats]"}[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
