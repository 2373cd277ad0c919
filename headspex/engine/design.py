"""Choosing the fit masks for a number of players and a budget (the design rule).

Three kinds of masks, decided by :func:`plan_design`:

* **Removal ladder** (small n, at most ``LADDER_MAX_PLAYERS``, e.g. the heads of one layer):
  the full mask, every single ablation and, when affordable, every pair ablation. They identify
  the removal coefficients of order <= 2 exactly, which is what masks with a few ablated
  players see (the pruning regime). Used while the ladder costs at most ``LADDER_SHARE`` of the
  budget (n = 8: singles from a budget of 18, pairs too from 74). For larger n the ladder would
  take masks from the uniform share that the tree proxy needs (measured: n = 64, 250 masks,
  redundancy family: near-full R² 0.50 -> -0.09 with a singles ladder).
* **Near-full masks**: each player ablated with probability ``q``. The number of players a
  mask ablates scales with n: ``a = q n`` is the smallest count that still ablates every player
  in about ``ABLATIONS_PER_PLAYER`` near-full masks (``a = 20 n / m_near``, so the first-order
  removal effects are estimable), at least 2 (so pairs co-occur) and at most ``MAX_ABLATED_SHARE``
  of the players (the near-full test regime, 10 %). At n = 64 and 150 near-full masks this is
  the old 10 %; at n = 270 and 600 near-full masks it is 9 heads (3.3 %), the regime of
  compressed-sensing head localisation; at n = 1024 and 750 masks 27 (2.7 %).
* **Uniform masks** (each player kept w.p. 1/2), drawn as a coded design (see
  :mod:`headspex.engine.coded`) when the budget holds one, so terms without marginal signal
  can be decoded; the coded masks are marginally uniform, so nothing else changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from .coded import CodedDesign, CodedPlan, coded_design, plan_coded
from .exact import MAX_DENSE_PLAYERS, all_masks
from .sampling import NEAR_FULL_KEEP, sample_masks
from ..errors import EngineError

#: The ladder (full + single + pair ablations) is used while it costs at most this share.
LADDER_SHARE = 0.5
#: No ladder above this many players.
LADDER_MAX_PLAYERS = 16
#: Near-full masks should ablate every player about this many times in all.
ABLATIONS_PER_PLAYER = 20.0
#: Near-full masks never ablate more than this share of the players (the near-full regime).
MAX_ABLATED_SHARE = 1.0 - NEAR_FULL_KEEP
#: Smallest number of players a near-full mask ablates on average (pairs must co-occur).
MIN_ABLATED = 2.0


@dataclass
class DesignPlan:
    """How a budget is split.

    Attributes:
        n_players, budget: the inputs.
        exhaustive: every one of the 2^n masks fits (then nothing else is drawn).
        ladder_order: the ladder holds every ablation of up to this many players (0: none).
        n_near_full: near-full masks; near_full_keep: their keep probability ``1 - q``.
        coded: the coded plan of the uniform share (None: i.i.d. uniform masks).
        n_uniform: uniform masks (coded ones included).
    """

    n_players: int
    budget: int
    exhaustive: bool
    ladder_order: int
    n_near_full: int
    near_full_keep: float
    coded: CodedPlan | None
    n_uniform: int

    def describe(self) -> dict[str, object]:
        """JSON-able summary for result configs."""
        return {
            "exhaustive": self.exhaustive, "ladder_order": self.ladder_order,
            "n_near_full": self.n_near_full, "near_full_ablated_share": round(1.0 - self.near_full_keep, 4),
            "n_uniform": self.n_uniform,
            "coded": None if self.coded is None else {
                "bucket_bits": self.coded.bucket_bits, "delays": self.coded.n_delays,
                "hashes": self.coded.n_hashes, "max_order": self.coded.max_order},
        }


def ladder_size(n_players: int, order: int) -> int:
    """Masks ablating at most ``order`` players: sum_{k <= order} C(n, k)."""
    return sum(math.comb(n_players, k) for k in range(order + 1))


def near_full_keep_probability(n_players: int, n_near_full: int) -> float:
    """Keep probability of the near-full masks (see the module docstring for the rule)."""
    if n_near_full <= 0:
        return NEAR_FULL_KEEP
    ablated = ABLATIONS_PER_PLAYER * n_players / n_near_full
    ablated = min(max(ablated, MIN_ABLATED), MAX_ABLATED_SHARE * n_players)
    return float(min(max(1.0 - ablated / n_players, 0.5), 1.0 - 1.0 / (4.0 * n_players)))


def plan_design(
    n_players: int, budget: int, near_full_fraction: float = 0.15, max_order: int = 3,
    coded: bool = True, ladder: bool = True, near_full_keep: float | None = None,
) -> DesignPlan:
    """Split ``budget`` masks for ``n_players`` (see the module docstring).

    Args:
        near_full_fraction: share of the non-ladder budget drawn near-full.
        max_order: largest order the coded decoder looks for.
        near_full_keep: fix the near-full keep probability instead of the rule.
    """
    if n_players < 1 or budget < 1:
        raise EngineError(f"plan_design needs n_players >= 1 and budget >= 1, got {n_players}, {budget}")
    if n_players <= MAX_DENSE_PLAYERS and 2**n_players <= budget:
        return DesignPlan(n_players, budget, True, n_players, 0, NEAR_FULL_KEEP, None, 0)
    order = 0
    if ladder and n_players <= LADDER_MAX_PLAYERS:
        while order < 2 and ladder_size(n_players, order + 1) <= LADDER_SHARE * budget:
            order += 1
    rest = budget - (ladder_size(n_players, order) if order else 0)
    n_near = int(round(near_full_fraction * rest))
    keep = near_full_keep if near_full_keep is not None else near_full_keep_probability(n_players, n_near)
    n_uniform = rest - n_near
    plan = plan_coded(n_players, n_uniform, max_order) if coded and n_players >= 16 else None
    return DesignPlan(n_players, budget, False, order, n_near, keep, plan, n_uniform)


def ladder_masks(n_players: int, order: int) -> np.ndarray:
    """Every mask ablating at most ``order`` players, bool[ladder_size, n] (full mask first)."""
    rows = []
    for k in range(order + 1):
        for ablated in combinations(range(n_players), k):
            row = np.ones(n_players, dtype=bool)
            row[list(ablated)] = False
            rows.append(row)
    return np.asarray(rows, dtype=bool).reshape(-1, n_players)


def draw_design(plan: DesignPlan, rng: np.random.Generator) -> tuple[np.ndarray, CodedDesign | None]:
    """The distinct fit masks of ``plan`` (bool[m, n], m <= budget) and the coded design used, if any."""
    n = plan.n_players
    if plan.exhaustive:
        return all_masks(n), None
    parts: list[np.ndarray] = []
    if plan.ladder_order:
        parts.append(ladder_masks(n, plan.ladder_order))
    code = coded_design(plan.coded, rng) if plan.coded is not None else None
    if code is not None:
        parts.append(code.masks)

    def taken() -> np.ndarray | None:
        return np.concatenate(parts) if parts else None

    if code is not None and plan.ladder_order:
        # A coded row can coincide with a ladder row (e.g. the full mask); keep each mask once.
        merged = np.unique(np.concatenate(parts), axis=0)
        parts = [merged]
    drawn = sum(len(p) for p in parts)
    n_uniform_iid = max(0, plan.budget - plan.n_near_full - drawn)
    if n_uniform_iid:
        parts.append(sample_masks(n, n_uniform_iid, rng, 0.5, exclude=taken()))
    if plan.n_near_full:
        parts.append(sample_masks(n, plan.n_near_full, rng, plan.near_full_keep, exclude=taken()))
    masks = np.concatenate(parts) if parts else np.zeros((0, n), bool)
    return masks[: plan.budget], code
