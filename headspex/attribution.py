"""Head attribution end to end: run the interaction engine on ablation games, per scope.

A *unit* is one game: a fixed ordered set of players (heads). Three scopes build units:

``"layer"``
    one unit per layer, players = the heads of that layer (SmolLM2: 9 heads, 512 masks).
``"group"``
    one unit per block of ``group_size`` consecutive layers (the ProxySPEX paper's setting).
``"all"``
    a single unit whose players are every head of the chosen layers.

For each unit :func:`attribute_units` fits an estimator (ProxySPEX, or the exact transform
over all ``2^n`` masks), then computes single-head values (Banzhaf, Shapley), bootstrap
intervals over questions and over masks, and, when asked, how far ProxySPEX at a smaller
budget is from the exact answer. Everything lands in a *run directory*::

    run_dir/
      run.json                      config, model, task, split, unit plan (written first)
      units/<unit>/unit.json        summary of one finished unit (written when it finishes)
      units/<unit>/engine/          EngineResult.save (result.json + arrays.npz)
      units/<unit>/bootstrap_{questions,masks}.npz   bootstrap replicates of the coefficients
      cache/<unit>/batch_*.npz      every evaluated mask with its per-question values
      game_cache/<unit>/            the AblationGame's own logit cache (only with use_game_cache)

A killed run resumes: finished units are loaded from ``unit.json``, and a half-done unit
re-reads its evaluated masks from ``cache/<unit>`` so none is sent to the model again.

Mask convention (as everywhere in headspex): ``bool[m, n]``, True = head kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .components import Players
from .engine import EngineResult, Exhaustive, Interactions, ProxySPEX, all_masks, basis_matrix, r2_score
from .engine.interactions import Subset
from headspex.io import to_jsonable
from headspex.cache import MaskStore
from .errors import HeadspexError

SCOPES: tuple[str, ...] = ("layer", "group", "all")
METHODS: tuple[str, ...] = ("proxyspex", "exact")
RUN_FORMAT = "headspex.attribution.Run/1"
UNIT_FORMAT = "headspex.attribution.Unit/1"
#: ProxySPEX settings for quick, rougher fits (tests, notebooks, ``--fast-fit``): one tree
#: depth, fewer trees, smaller leaves (small budgets), no residual rounds, one thread (LightGBM
#: threads fight each other on small, shared boxes).
FAST_FIT: dict[str, Any] = {
    "residual_rounds": 0, "proxy_max_trees": 150, "proxy_depths": [3], "proxy_min_child_samples": 5, "n_jobs": 1,
}
#: Above this many players an ``exact`` request is refused (2^n model evaluations).
MAX_EXACT_PLAYERS = 14


class AttributionError(HeadspexError):
    """A configuration or run-directory problem, with a message naming it."""


class GameLike(Protocol):
    """What the runner needs from a game (``headspex.game.AblationGame`` satisfies it)."""

    def question_values(self, masks: np.ndarray) -> np.ndarray:
        """bool[m, n] -> float64[m, q]: the metric per mask and question."""
        ...


GameFactory = Callable[[Players, "Path | None"], GameLike]


# ----------------------------------------------------------------------------- configuration


@dataclass
class AttributionConfig:
    """Everything that decides what an attribution run computes (saved in ``run.json``).

    Attributes:
        scope: ``"layer"`` | ``"group"`` | ``"all"`` (module docstring).
        layers: layers whose heads are players (None = every layer of the model).
        group_size: consecutive layers per unit with ``scope="group"``.
        method: ``"proxyspex"`` or ``"exact"`` (all 2^n masks; n <= 14).
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

    scope: str = "layer"
    layers: list[int] | None = None
    group_size: int = 3
    method: str = "proxyspex"
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
        if self.scope not in SCOPES:
            raise AttributionError(f"scope must be one of {SCOPES}; got '{self.scope}'")
        if self.method not in METHODS:
            raise AttributionError(f"method must be one of {METHODS}; got '{self.method}'")
        if self.group_size < 1:
            raise AttributionError(f"group_size must be >= 1; got {self.group_size}")
        if self.method == "proxyspex" and self.budget < 20:
            raise AttributionError(f"ProxySPEX needs a budget of at least 20 masks; got {self.budget}")
        if self.compare_budget and self.method != "exact":
            raise AttributionError("compare_budget needs method='exact' (the comparison is against the exact answer)")
        if not 0.0 < self.confidence < 1.0:
            raise AttributionError(f"confidence must lie in (0, 1); got {self.confidence}")
        if min(self.n_test, self.n_bootstrap, self.top_k, self.compare_budget) < 0:
            raise AttributionError("n_test, n_bootstrap, top_k and compare_budget must be >= 0")
        if self.batch_masks < 1:
            raise AttributionError(f"batch_masks must be >= 1; got {self.batch_masks}")
        return self


@dataclass
class Unit:
    """One game of a run: a name (folder name) and its ordered players."""

    name: str
    players: list[str]

    @property
    def layers(self) -> list[int]:
        """Layer of each player, in player order."""
        return Players(self.players).layers


def plan_units(head_names_by_layer: dict[int, list[str]], scope: str, group_size: int = 3) -> list[Unit]:
    """The units of a scope.

    Args:
        head_names_by_layer: ``{layer: [head names in head order]}`` for the chosen layers.
        scope: ``"layer"`` | ``"group"`` | ``"all"``.
        group_size: layers per group (``"group"`` scope); the last group may be shorter.

    Returns:
        Units in layer order; names ``layer_07``, ``layers_06-08``, ``all_heads``.
    """
    layers = sorted(head_names_by_layer)
    if not layers:
        raise AttributionError("no layers chosen")
    if scope == "layer":
        return [Unit(f"layer_{layer:02d}", list(head_names_by_layer[layer])) for layer in layers]
    if scope == "group":
        units = []
        for start in range(0, len(layers), group_size):
            block = layers[start : start + group_size]
            names = [name for layer in block for name in head_names_by_layer[layer]]
            units.append(Unit(f"layers_{block[0]:02d}-{block[-1]:02d}", names))
        return units
    if scope == "all":
        return [Unit("all_heads", [name for layer in layers for name in head_names_by_layer[layer]])]
    raise AttributionError(f"scope must be one of {SCOPES}; got '{scope}'")


# ----------------------------------------------------------------------------- mask cache


class CachedGame:
    """A game's value function ``bool[m, n] -> float[m]`` backed by a :class:`MaskStore`.

    Each mask's per-question values are computed once (across runs when the cache is on
    disk); the value is their mean over questions. ``n_evaluated_masks`` counts masks sent
    to the game by this object.
    """

    def __init__(self, game: GameLike, cache: MaskStore) -> None:
        self.game = game
        self.cache = cache
        self.n_evaluated_masks = 0

    def question_values(self, masks: np.ndarray) -> np.ndarray:
        """bool[m, n] -> float64[m, q], evaluating only masks never seen before."""
        masks = np.asarray(masks, dtype=bool)
        todo = self.cache.missing(masks)
        if len(todo):
            values = np.asarray(self.game.question_values(todo), dtype=np.float64)
            if values.ndim != 2 or values.shape[0] != len(todo):
                raise AttributionError(
                    f"game.question_values returned shape {values.shape} for {len(todo)} masks; expected [m, q]"
                )
            if not np.all(np.isfinite(values)):
                raise AttributionError("game.question_values returned NaN or inf")
            self.cache.add(todo, values)
            self.n_evaluated_masks += len(todo)
        return self.cache.stack(masks) if len(masks) else np.zeros((0, 0))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return self.question_values(masks).mean(axis=1)


# ----------------------------------------------------------------------------- linear maps of the coefficients


def banzhaf_matrix(subsets: Sequence[Subset], n_players: int) -> np.ndarray:
    """float[n, T] mapping Fourier coefficients to Banzhaf values (``B_i = 2 F({i})``)."""
    out = np.zeros((n_players, len(subsets)))
    for t, subset in enumerate(subsets):
        if len(subset) == 1:
            out[subset[0], t] = 2.0
    return out


def shapley_matrix(subsets: Sequence[Subset], n_players: int) -> np.ndarray:
    """float[n, T] mapping Fourier coefficients to Shapley values.

    The parity ``prod_{j in S} z_j`` moves from ``(-1)^{|S|}`` (all ablated) to ``1`` (all kept);
    by symmetry and the null-player axiom each member of S gets ``(1 - (-1)^{|S|}) / |S|`` of
    it: ``2/|S|`` for odd |S|, 0 for even |S|.
    """
    out = np.zeros((n_players, len(subsets)))
    for t, subset in enumerate(subsets):
        if len(subset) % 2 == 1:
            out[list(subset), t] = 2.0 / len(subset)
    return out


def refit_coefficients(masks: np.ndarray, values: np.ndarray, subsets: Sequence[Subset]) -> np.ndarray:
    """Least-squares Fourier coefficients on a fixed support, for one or many value columns.

    Args:
        masks: bool[m, n].
        values: float[m] or float[m, B] (one column per bootstrap replicate).
        subsets: the support, T subsets.

    Returns:
        float64[T] or float64[T, B].
    """
    design = basis_matrix(masks, list(subsets), "fourier")
    solution, *_ = np.linalg.lstsq(design, values, rcond=None)
    return solution


# ----------------------------------------------------------------------------- results


def _read_versioned_json(path: Path, expected_format: str, what: str) -> dict[str, Any]:
    """Read a headspex JSON file, checking it exists and carries ``expected_format``."""
    if not path.exists():
        raise AttributionError(f"{path.parent} is not a headspex {what} (no {path.name})")
    data = json.loads(path.read_text())
    if data.get("format") != expected_format:
        raise AttributionError(f"{path} is not a headspex {what} (format {data.get('format')!r})")
    return data


@dataclass
class UnitResult:
    """Everything computed for one unit.

    Attributes:
        name, players, player_layers: the unit (players in mask-column order).
        engine: the estimator's :class:`EngineResult` (exhaustive one when ``method="exact"``).
        banzhaf, shapley: float[n] single-head values in metric units (nats for logprob).
        intervals: ``{"questions"|"masks": {"banzhaf": [[lo, hi]]*n, "shapley": ..., "top": [...]}}``.
        top: top interaction terms (order >= 1) as dicts with names, indices, Fourier
            coefficient, Banzhaf interaction index and intervals.
        exact_comparison: distance of ProxySPEX at ``compare_budget`` from the exact answer.
        seconds: wall time of the unit; n_evaluated_masks: masks sent to the game in this process.
        n_questions: questions per mask value.
    """

    name: str
    players: list[str]
    player_layers: list[int]
    engine: EngineResult
    banzhaf: np.ndarray
    shapley: np.ndarray
    intervals: dict[str, Any] = field(default_factory=dict)
    top: list[dict[str, Any]] = field(default_factory=list)
    exact_comparison: dict[str, Any] | None = None
    seconds: float = 0.0
    n_evaluated_masks: int = 0
    n_questions: int = 0
    game: dict[str, Any] | None = None

    @property
    def interactions(self) -> Interactions:
        """The recovered interactions (Fourier basis)."""
        return self.engine.interactions.to_fourier()

    @property
    def faithfulness(self) -> dict[str, float]:
        """Held-out R² per test distribution (``{"exact": 1.0}`` for the exhaustive method)."""
        if self.engine.method == "exhaustive":
            return {"exact": 1.0}
        return dict(self.engine.faithfulness)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (what ``unit.json`` holds)."""
        return {
            "format": UNIT_FORMAT,
            "name": self.name,
            "players": self.players,
            "player_layers": self.player_layers,
            "method": self.engine.method,
            "n_terms": len(self.engine.interactions),
            "n_fit_masks": int(len(self.engine.masks)),
            "n_test_masks": int(len(self.engine.test_masks)),
            "faithfulness": self.faithfulness,
            "banzhaf": self.banzhaf.tolist(),
            "shapley": self.shapley.tolist(),
            "intervals": self.intervals,
            "top": self.top,
            "exact_comparison": self.exact_comparison,
            "energy_by_order": {str(k): v for k, v in self.interactions.energy_by_order().items()},
            "seconds": self.seconds,
            "n_evaluated_masks": self.n_evaluated_masks,
            "n_questions": self.n_questions,
            "game": self.game,
        }

    def save(self, directory: Path) -> None:
        """Write ``engine/`` then ``unit.json`` (last, so its presence means "finished")."""
        directory.mkdir(parents=True, exist_ok=True)
        self.engine.save(directory / "engine")
        temporary = directory / "unit.json.tmp"
        temporary.write_text(json.dumps(to_jsonable(self.summary()), indent=1))
        os.replace(temporary, directory / "unit.json")

    @classmethod
    def load(cls, directory: Path) -> UnitResult:
        """Inverse of :meth:`save`."""
        data = _read_versioned_json(directory / "unit.json", UNIT_FORMAT, "finished unit")
        return cls(
            name=data["name"],
            players=list(data["players"]),
            player_layers=[int(x) for x in data["player_layers"]],
            engine=EngineResult.load(directory / "engine"),
            banzhaf=np.asarray(data["banzhaf"], dtype=np.float64),
            shapley=np.asarray(data["shapley"], dtype=np.float64),
            intervals=data.get("intervals", {}),
            top=data.get("top", []),
            exact_comparison=data.get("exact_comparison"),
            seconds=float(data.get("seconds", 0.0)),
            n_evaluated_masks=int(data.get("n_evaluated_masks", 0)),
            n_questions=int(data.get("n_questions", 0)),
            game=data.get("game"),
        )


@dataclass
class AttributionRun:
    """A run directory in memory: its metadata and the finished units (in plan order)."""

    directory: Path
    meta: dict[str, Any]
    units: dict[str, UnitResult]

    @property
    def config(self) -> AttributionConfig:
        """The run's :class:`AttributionConfig`."""
        return AttributionConfig(**self.meta["config"])

    @property
    def complete(self) -> bool:
        """True when every planned unit has finished."""
        return all(u["name"] in self.units for u in self.meta["units"])

    @classmethod
    def load(cls, directory: str | Path) -> AttributionRun:
        """Read ``run.json`` and every finished unit of a run directory."""
        directory = Path(directory)
        meta = _read_versioned_json(directory / "run.json", RUN_FORMAT, "run directory")
        units = {}
        for unit in meta["units"]:
            unit_dir = directory / "units" / unit["name"]
            if (unit_dir / "unit.json").exists():
                units[unit["name"]] = UnitResult.load(unit_dir)
        return cls(directory, meta, units)

    def head_values(self, which: str = "banzhaf") -> tuple[list[int], int, np.ndarray]:
        """Single-head values laid out as a layer × head grid.

        Args:
            which: ``"banzhaf"`` or ``"shapley"``.

        Returns:
            (layers, n_heads, float[len(layers), n_heads]) with NaN where no unit covered a head.
        """
        entries: dict[tuple[int, int], float] = {}
        for unit in self.units.values():
            values = unit.banzhaf if which == "banzhaf" else unit.shapley
            for name, value in zip(unit.players, values):
                head = Players([name])[0]
                entries[(head.layer, head.head)] = float(value)
        if not entries:
            return [], 0, np.zeros((0, 0))
        layers = sorted({layer for layer, _ in entries})
        n_heads = max(h for _, h in entries) + 1
        grid = np.full((len(layers), n_heads), np.nan)
        for (layer, h), value in entries.items():
            grid[layers.index(layer), h] = value
        return layers, n_heads, grid


# ----------------------------------------------------------------------------- bootstrap


def _percentile_interval(replicates: np.ndarray, confidence: float) -> np.ndarray:
    """[..., B] -> [..., 2] percentile interval."""
    tail = 50.0 * (1.0 - confidence)
    return np.stack([np.percentile(replicates, tail, axis=-1), np.percentile(replicates, 100 - tail, axis=-1)], -1)


def bootstrap_coefficients(
    masks: np.ndarray,
    question_values: np.ndarray,
    subsets: Sequence[Subset],
    n_bootstrap: int,
    seed: int,
    over: str,
) -> np.ndarray:
    """Replicates of the Fourier coefficients on a fixed support.

    Args:
        masks: bool[m, n] fit masks; question_values: float[m, q] their per-question metric.
        subsets: the selected support (T subsets); only the coefficients are refitted.
        n_bootstrap: B replicates.
        over: ``"questions"`` (resample the q questions, recompute each mask's mean, refit) or
            ``"masks"`` (resample the m fit masks, refit).

    Returns:
        float64[T, B].
    """
    rng = np.random.default_rng([int(seed), 0xB007])
    m, q = question_values.shape
    if over == "questions":
        # counts[b, j] = how often question j is drawn in replicate b; the mean is a weighted sum.
        counts = np.stack([np.bincount(rng.integers(0, q, q), minlength=q) for _ in range(n_bootstrap)])
        replicate_values = question_values @ (counts.T / q)  # [m, B]
        design = basis_matrix(masks, list(subsets), "fourier")
        solution, *_ = np.linalg.lstsq(design, replicate_values, rcond=None)
        return solution
    if over == "masks":
        values = question_values.mean(axis=1)
        design = basis_matrix(masks, list(subsets), "fourier")
        out = np.empty((len(subsets), n_bootstrap))
        for b in range(n_bootstrap):
            rows = rng.integers(0, m, m)
            out[:, b], *_ = np.linalg.lstsq(design[rows], values[rows], rcond=None)
        return out
    raise AttributionError(f"bootstrap 'over' must be 'questions' or 'masks'; got '{over}'")


# ----------------------------------------------------------------------------- one unit


def _top_terms(interactions: Interactions, k: int) -> list[Subset]:
    """The k Fourier terms of order >= 1 with largest |coefficient|, order >= 2 ones first-class.

    Returns the k largest of order >= 2 plus the k largest overall, deduplicated and sorted by
    |coefficient|, so the interaction table is never crowded out by single heads.
    """
    four = interactions.to_fourier()
    rows = [(s, c) for s, c in zip(four.subsets, four.coefficients) if s]
    rows.sort(key=lambda sc: -abs(sc[1]))
    chosen = [s for s, _ in rows[:k]] + [s for s, _ in rows if len(s) >= 2][:k]
    seen: set[Subset] = set()
    ordered = []
    for s in chosen:
        if s not in seen:
            seen.add(s)
            ordered.append(s)
    return sorted(ordered, key=lambda s: -abs(four[s]))


def exact_comparison(
    exact: Interactions, proxy: EngineResult, top_k: int = 10
) -> dict[str, Any]:
    """How far a ProxySPEX fit is from the exact function (on all 2^n masks).

    Returns:
        ``r2_all_masks`` (R² of ProxySPEX's function against the exact one on every mask),
        ``top_overlap`` (shared share of the top-k order>=1 Fourier terms), ``top2_overlap`` (same
        for order >= 2), ``banzhaf_pearson``, ``banzhaf_max_abs_diff``, ``budget``, faithfulness.
    """
    n = exact.n_players
    masks = all_masks(n)
    exact_values, proxy_values = exact(masks), proxy.interactions(masks)
    exact_four, proxy_four = exact.to_fourier(), proxy.interactions.to_fourier()

    def top_set(inter: Interactions, min_order: int) -> set[Subset]:
        return {s for _, s, _ in inter.top(top_k, min_order=min_order)}

    def overlap(min_order: int) -> float:
        a, b = top_set(exact_four, min_order), top_set(proxy_four, min_order)
        return len(a & b) / max(len(a), 1)

    exact_banzhaf, proxy_banzhaf = exact_four.banzhaf_values(), proxy_four.banzhaf_values()
    pearson = float(np.corrcoef(exact_banzhaf, proxy_banzhaf)[0, 1]) if np.std(proxy_banzhaf) > 0 else float("nan")
    return {
        "budget": int(len(proxy.masks)),
        "n_all_masks": int(len(masks)),
        "r2_all_masks": r2_score(exact_values, proxy_values),
        "top_overlap": overlap(1),
        "top2_overlap": overlap(2),
        "top_k": top_k,
        "banzhaf_pearson": pearson,
        "banzhaf_max_abs_diff": float(np.max(np.abs(exact_banzhaf - proxy_banzhaf))),
        "proxy_faithfulness": dict(proxy.faithfulness),
        "proxy_n_terms": len(proxy.interactions),
    }


def attribute_unit(
    unit: Unit,
    game: GameLike,
    config: AttributionConfig,
    unit_dir: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> UnitResult:
    """Fit one unit, compute its values, intervals and exact comparison, and save it.

    Args:
        unit: players of the game (their order = mask columns).
        game: its :class:`GameLike` (``question_values(bool[m, n]) -> float[m, q]``).
        config: the run configuration.
        unit_dir: where to save the result (None = not saved).
        cache_dir: the unit's mask cache folder (None = memory only).
        progress: tqdm bars.
    """
    start = time.perf_counter()
    n = len(unit.players)
    cache = MaskStore(cache_dir, n, value_name="question_values")
    cached_game = CachedGame(game, cache)
    comparison = None
    if config.method == "exact":
        if n > MAX_EXACT_PLAYERS:
            raise AttributionError(
                f"method='exact' enumerates 2^{n} masks for unit {unit.name}; use at most "
                f"{MAX_EXACT_PLAYERS} players (scope='layer') or method='proxyspex'"
            )
        engine = Exhaustive(seed=config.seed).fit(
            cached_game, n, player_names=unit.players, n_test=0, batch_size=config.batch_masks, progress=progress
        )
        budget = min(config.compare_budget, 2**n)
        # ProxySPEX needs >= 20 fit masks (early stopping + CV); below that no comparison is made.
        if budget >= 20:
            # Every ProxySPEX mask is among the 2^n already evaluated: the comparison is free.
            proxy = ProxySPEX(max_order=config.max_order, seed=config.seed, **config.estimator_options).fit(
                cached_game, n, budget, player_names=unit.players, n_test=config.n_test,
                batch_size=config.batch_masks, progress=False,
            )
            comparison = exact_comparison(engine.interactions, proxy, config.top_k)
    else:
        engine = ProxySPEX(max_order=config.max_order, seed=config.seed, **config.estimator_options).fit(
            cached_game, n, config.budget, player_names=unit.players, n_test=config.n_test,
            batch_size=config.batch_masks, progress=progress,
        )
    interactions = engine.interactions.to_fourier()
    subsets = list(interactions.subsets)
    coefficients = interactions.coefficients
    to_banzhaf, to_shapley = banzhaf_matrix(subsets, n), shapley_matrix(subsets, n)
    top = _top_terms(interactions, config.top_k)
    top_rows = [subsets.index(s) for s in top]

    intervals: dict[str, Any] = {}
    question_values = cached_game.question_values(engine.masks)
    if config.n_bootstrap:
        kinds = ["questions"] + (["masks"] if engine.method != "exhaustive" else [])
        for over in kinds:
            if over == "questions" and question_values.shape[1] < 2:
                continue
            replicates = bootstrap_coefficients(engine.masks, question_values, subsets, config.n_bootstrap, config.seed, over)
            intervals[over] = {
                "banzhaf": _percentile_interval(to_banzhaf @ replicates, config.confidence).tolist(),
                "shapley": _percentile_interval(to_shapley @ replicates, config.confidence).tolist(),
                "top": _percentile_interval(replicates[top_rows], config.confidence).tolist(),
            }
            if unit_dir is not None:
                unit_dir.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(unit_dir / f"bootstrap_{over}.npz", subsets=np.array([str(list(s)) for s in subsets]),
                                    replicates=replicates)
    top_rows_out = []
    player_layers = unit.layers
    for rank, (subset, row) in enumerate(zip(top, top_rows)):
        entry = {
            "players": [unit.players[i] for i in subset],
            "indices": list(subset),
            "order": len(subset),
            "fourier": float(coefficients[row]),
            "banzhaf_interaction": float(2.0 ** len(subset) * coefficients[row]),
            "within_layer": len({player_layers[i] for i in subset}) == 1,
        }
        for over, block in intervals.items():
            lo, hi = block["top"][rank]
            entry[f"interval_{over}"] = [lo, hi]
            entry[f"significant_{over}"] = bool(lo > 0 or hi < 0)
        top_rows_out.append(entry)

    result = UnitResult(
        name=unit.name,
        players=list(unit.players),
        player_layers=player_layers,
        engine=engine,
        banzhaf=to_banzhaf @ coefficients,
        shapley=to_shapley @ coefficients,
        intervals=intervals,
        top=top_rows_out,
        exact_comparison=comparison,
        seconds=time.perf_counter() - start,
        n_evaluated_masks=cached_game.n_evaluated_masks,
        n_questions=int(question_values.shape[1]),
        game=to_jsonable(game.describe()) if hasattr(game, "describe") else None,
    )
    if unit_dir is not None:
        result.save(unit_dir)
    return result


# ----------------------------------------------------------------------------- a whole run


def attribute_units(
    units: Sequence[Unit],
    game_factory: GameFactory,
    config: AttributionConfig,
    run_dir: str | Path,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> AttributionRun:
    """Run (or resume) every unit of a plan into a run directory (late layers first).

    Args:
        units: the plan (see :func:`plan_units`).
        game_factory: ``(players, game_cache_dir | None) -> game``; called only for units that
            are not finished yet.
        config: the run configuration.
        run_dir: the run directory (created; an existing one with the same plan resumes).
        meta: extra provenance for ``run.json`` (model, task...).
        progress: tqdm bars.
        log: called with one line per finished unit (e.g. ``print``).

    Returns:
        The :class:`AttributionRun` with every unit, in plan order.
    """
    from tqdm.auto import tqdm

    config.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = [{"name": u.name, "players": u.players} for u in units]
    run_json = run_dir / "run.json"
    if run_json.exists():
        previous = json.loads(run_json.read_text())
        # Compare through JSON so tuples (e.g. in estimator_options) match the lists read back.
        wanted_config = json.loads(json.dumps(to_jsonable(asdict(config))))
        if previous.get("units") != plan or previous.get("config") != wanted_config:
            raise AttributionError(
                f"{run_dir} holds a run with another configuration or unit plan; "
                "use a new --out directory (or delete this one) instead of resuming it"
            )
        meta_all = previous
    else:
        meta_all = {"format": RUN_FORMAT, "config": asdict(config), "units": plan, **(meta or {}),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        run_json.write_text(json.dumps(to_jsonable(meta_all), indent=1))
    results: dict[str, UnitResult] = {}
    # Late layers first: the game skips every layer before the first ablated one, so they are
    # the cheapest, and a run stopped early already has results for them.
    execution_order = sorted(units, key=lambda u: -min(u.layers))
    bar = tqdm(execution_order, desc="units", disable=not progress or len(units) < 2)
    for unit in bar:
        bar.set_postfix_str(unit.name)
        unit_dir = run_dir / "units" / unit.name
        if (unit_dir / "unit.json").exists():
            results[unit.name] = UnitResult.load(unit_dir)
            continue
        game = game_factory(Players(unit.players), run_dir / "game_cache" / unit.name)
        results[unit.name] = attribute_unit(unit, game, config, unit_dir, run_dir / "cache" / unit.name, progress)
        if log is not None:
            result = results[unit.name]
            log(f"{unit.name}: faithfulness {result.faithfulness}, {result.seconds:.0f} s, "
                f"{result.n_evaluated_masks} masks evaluated")
    return AttributionRun(run_dir, meta_all, {u.name: results[u.name] for u in units})


def model_units(model: Any, config: AttributionConfig) -> list[Unit]:
    """The unit plan of ``config`` for a TransformerBridge (heads of ``config.layers``)."""
    from .components import heads

    n_layers = int(model.cfg.n_layers)
    layers = list(range(n_layers)) if config.layers is None else sorted(set(config.layers))
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise AttributionError(f"layer {layer} does not exist in a {n_layers}-layer model (0..{n_layers - 1})")
    by_layer = {layer: heads(model, [layer]).names for layer in layers}
    return plan_units(by_layer, config.scope, config.group_size)


def model_game_factory(model: Any, task: Any, config: AttributionConfig, use_game_cache: bool = False,
                       **game_options: Any) -> GameFactory:
    """``(players, cache_dir) -> AblationGame`` for a model and task, with the config's game settings."""
    from .game import AblationGame

    def make_game(players: Players, cache_dir: Path | None) -> Any:
        return AblationGame(
            model, task, players, mode=config.mode, split=config.split, metric=config.metric,
            n_questions=config.n_questions, cache_dir=cache_dir if use_game_cache else None,
            # The engine's bar already counts masks; one bar per game call would flood the log.
            progress=False, seed=config.seed, **game_options,
        )

    return make_game


def model_meta(model: Any, task: Any, config: AttributionConfig) -> dict[str, Any]:
    """Provenance of a model run for ``run.json``: model, its shape, task description, split."""
    return {
        "model": str(getattr(model, "headspex_source", type(model).__name__)),
        "model_shape": {"n_layers": int(model.cfg.n_layers), "n_heads": int(model.cfg.n_heads)},
        "task": to_jsonable(task.describe()),
        "split": config.split,
    }


def attribute(
    model: Any,
    task: Any,
    config: AttributionConfig,
    run_dir: str | Path,
    progress: bool = True,
    use_game_cache: bool = False,
    **game_options: Any,
) -> AttributionRun:
    """Attribute a task's behaviour to the heads of a model, for every unit of ``config``.

    Args:
        model: a TransformerBridge (``headspex.models.load_model``).
        task: a headspex Task (``MMLUTask``, ``InductionTask``...).
        config: scope, layers, method, budget... (:class:`AttributionConfig`).
        run_dir: output (and resume) directory.
        progress: tqdm bars.
        use_game_cache: also let the AblationGame keep its own on-disk cache of candidate
            logits (lets other metrics be recomputed later; the runner's own mask cache
            already makes runs resumable).
        game_options: extra keyword arguments of ``AblationGame`` (``dtype``, ``memory_budget_mb``...).
    """
    units = model_units(model, config)
    factory = model_game_factory(model, task, config, use_game_cache, **game_options)
    return attribute_units(units, factory, config, run_dir, model_meta(model, task, config), progress)


