"""What an attribution run computes: its configuration and its units (games)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..components import Players
from ..errors import HeadspexError
from ..types import Method, Scope, parse_enum

#: ProxySPEX settings for quick, rougher fits (tests, notebooks, ``--fast-fit``): one tree
#: depth, fewer trees, smaller leaves (small budgets), no residual rounds, one thread (LightGBM
#: threads fight each other on small, shared boxes).
FAST_FIT: dict[str, Any] = {
    "residual_rounds": 0, "proxy_max_trees": 150, "proxy_depths": [3], "proxy_min_child_samples": 5, "n_jobs": 1,
}
#: Above this many players in a unit, ``method="exact"`` is refused (2^n model evaluations per
#: unit). The engine's dense transforms go further (``engine.exact.MAX_DENSE_PLAYERS``), but a
#: model game at 2^15+ masks per unit is not worth running: use ProxySPEX.
MAX_EXACT_METHOD_PLAYERS = 14


class AttributionError(HeadspexError):
    """A configuration or run-directory problem, with a message naming it."""


def parse_choice(enum: type[Scope] | type[Method], value: str, what: str) -> Any:
    """``value`` as a member of ``enum``, or an :class:`AttributionError` naming the choices."""
    try:
        return parse_enum(enum, value, what)
    except HeadspexError as err:
        raise AttributionError(str(err)) from None


@dataclass
class AttributionConfig:
    """Everything that decides what an attribution run computes (saved in ``run.json``).

    Attributes:
        scope: a :class:`~headspex.types.Scope` (or its string): ``"layer"`` | ``"group"`` |
            ``"all"`` (see :mod:`headspex.attribution`).
        layers: layers whose heads are players (None = every layer of the model).
        group_size: consecutive layers per unit with ``scope="group"``.
        method: a :class:`~headspex.types.Method`: ``"proxyspex"`` or ``"exact"`` (all 2^n
            masks; n <= ``MAX_EXACT_METHOD_PLAYERS``).
        budget: ProxySPEX fit masks per unit.
        n_test: held-out masks per test distribution (uniform and near-full); ProxySPEX only.
        max_order: largest interaction order ProxySPEX estimates.
        compare_budget: with ``method="exact"``, also fit ProxySPEX on this many of the exact
            masks and report its distance from the exact answer (0 disables).
        n_bootstrap: bootstrap replicates for the intervals (0 disables).
        confidence: two-sided level of the percentile intervals.
        top_k: interactions reported (and given intervals) per unit.
        seed: seed of mask sampling, estimator and bootstrap.
        mode, metric, split, n_questions: passed to the ablation game.
        batch_masks: masks per call of the game (the resume granularity).
        estimator_options: extra ``ProxySPEX`` keyword arguments (e.g. ``{"residual_rounds": 0,
            "proxy_max_trees": 200}`` for quick fits in tests and notebooks).
    """

    scope: Scope | str = Scope.LAYER
    layers: list[int] | None = None
    group_size: int = 3
    method: Method | str = Method.PROXYSPEX
    budget: int = 300
    n_test: int = 50
    max_order: int = 3
    compare_budget: int = 0
    n_bootstrap: int = 200
    confidence: float = 0.95
    top_k: int = 10
    seed: int = 0
    mode: str = "mean"
    metric: str = "logprob"
    split: str = "attribution"
    n_questions: int | None = None
    batch_masks: int = 32
    estimator_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> AttributionConfig:
        """Raise :class:`AttributionError` on an impossible setting; returns ``self``."""
        parse_choice(Scope, self.scope, "scope")
        parse_choice(Method, self.method, "method")
        if self.group_size < 1:
            raise AttributionError(f"group_size must be >= 1; got {self.group_size}")
        if self.max_order < 1:
            raise AttributionError(f"max_order must be >= 1 (1 = single heads only); got {self.max_order}")
        estimator = self.estimator()  # its own option checks, before anything is written or loaded
        need = estimator.min_samples(1)
        if self.method == Method.PROXYSPEX and self.budget < need:
            raise AttributionError(f"ProxySPEX needs a budget of at least {need} masks (and one more than the "
                                   f"players of a unit); got {self.budget}")
        if self.n_questions is not None and self.n_questions < 1:
            raise AttributionError(f"n_questions must be >= 1 (or None for the whole split); got {self.n_questions}")
        if self.compare_budget and self.method != Method.EXACT:
            raise AttributionError("compare_budget needs method='exact' (the comparison is against the exact answer)")
        if not 0.0 < self.confidence < 1.0:
            raise AttributionError(f"confidence must lie in (0, 1); got {self.confidence}")
        if min(self.n_test, self.n_bootstrap, self.top_k, self.compare_budget) < 0:
            raise AttributionError("n_test, n_bootstrap, top_k and compare_budget must be >= 0")
        if self.batch_masks < 1:
            raise AttributionError(f"batch_masks must be >= 1; got {self.batch_masks}")
        return self

    def estimator(self) -> Any:
        """The ProxySPEX estimator of this configuration (an :class:`AttributionError` for bad options)."""
        from ..engine import ProxySPEX

        if self.estimator_options.get("link", "identity") != "identity":
            # The run's outputs (Shapley values, structure, reports) are read as values of the game.
            raise AttributionError("estimator_options: the attribution pipeline needs link='identity' (it reports "
                                   "interactions of the game's value); fit a link with the engine API instead")
        try:
            return ProxySPEX(max_order=self.max_order, seed=self.seed, **self.estimator_options)
        except TypeError as error:  # an unknown keyword in estimator_options
            raise AttributionError(f"estimator_options: {error}") from None
        except HeadspexError as error:
            raise AttributionError(f"estimator_options: {error}") from None


@dataclass
class Unit:
    """One game of a run: a name (folder name) and its ordered players."""

    name: str
    players: list[str]

    @property
    def layers(self) -> list[int]:
        """Layer of each player, in player order."""
        return Players(self.players).layers


def plan_units(head_names_by_layer: dict[int, list[str]], scope: Scope | str, group_size: int = 3) -> list[Unit]:
    """The units of a scope.

    Args:
        head_names_by_layer: ``{layer: [head names in head order]}`` for the chosen layers.
        scope: ``"layer"`` | ``"group"`` | ``"all"``.
        group_size: layers per group (``"group"`` scope); the last group may be shorter.

    Returns:
        Units in layer order; names ``layer_07``, ``layers_06-08``, ``all_heads``.
    """
    scope = parse_choice(Scope, scope, "scope")
    layers = sorted(head_names_by_layer)
    if not layers:
        raise AttributionError("no layers chosen")
    if scope == Scope.LAYER:
        return [Unit(f"layer_{layer:02d}", list(head_names_by_layer[layer])) for layer in layers]
    if scope == Scope.GROUP:
        units = []
        for start in range(0, len(layers), group_size):
            block = layers[start : start + group_size]
            names = [name for layer in block for name in head_names_by_layer[layer]]
            units.append(Unit(f"layers_{block[0]:02d}-{block[-1]:02d}", names))
        return units
    return [Unit("all_heads", [name for layer in layers for name in head_names_by_layer[layer]])]
