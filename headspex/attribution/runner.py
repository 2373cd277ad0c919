"""Fitting units and whole runs: the engine on each unit's game, values, intervals, resume."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import MAX_EXACT_METHOD_PLAYERS, AttributionConfig, AttributionError, Unit, plan_units
from .provenance import task_provenance, weights_fingerprint
from .rundir import (
    STALE_INTERVALS,
    AttributionRun,
    CorruptFileError,
    UnitResult,
    open_run_directory,
    remove_failed_start,
)
from .. import __version__
from ..components import Players
from ..engine import (
    EngineResult,
    Exhaustive,
    Interactions,
    MaskStore,
    ProxySPEX,
    all_masks,
    banzhaf_matrix,
    bootstrap_coefficients,
    percentile_interval,
    r2_score,
    shapley_matrix,
)
from ..engine.interactions import Subset
from ..engine.links import require_identity_link
from ..engine.store import CorruptFileWarning
from ..errors import EngineError, HeadspexError
from ..io import move_aside, to_jsonable
from ..types import Method


class GameLike(Protocol):
    """What the runner needs from a game (``headspex.game.AblationGame`` satisfies it)."""

    def question_values(self, masks: np.ndarray) -> np.ndarray:
        """bool[m, n] -> float64[m, q]: the metric per mask and question."""
        ...


GameFactory = Callable[[Players, "Path | None"], GameLike]


# ----------------------------------------------------------------------------- one unit


def top_terms(interactions: Interactions, k: int) -> list[Subset]:
    """The k Fourier terms of order >= 1 with largest |coefficient|, order >= 2 ones first-class.

    Returns the k largest of order >= 2 plus the k largest overall, deduplicated and sorted by
    |coefficient|, so the interaction table is never crowded out by single heads.
    """
    four = interactions.to_fourier()
    rows = [(s, c) for s, c in zip(four.subsets, four.coefficients) if s]
    rows.sort(key=lambda sc: -abs(sc[1]))
    chosen = [s for s, _ in rows[:k]] + [s for s, _ in rows if len(s) >= 2][:k]
    return sorted(dict.fromkeys(chosen), key=lambda s: -abs(four[s]))


def exact_comparison(exact: Interactions, proxy: EngineResult, top_k: int = 10) -> dict[str, Any]:
    """How far a ProxySPEX fit is from the exact function (on all 2^n masks).

    Returns:
        ``r2_all_masks`` (R² of ProxySPEX's function against the exact one on every mask),
        ``top_overlap`` (shared share of the top-k order>=1 Fourier terms), ``top2_overlap`` (same
        for order >= 2), ``banzhaf_pearson``, ``banzhaf_max_abs_diff``, ``budget``, faithfulness.
    """
    require_identity_link(proxy, "the exact-vs-ProxySPEX comparison")
    masks = all_masks(exact.n_players)
    exact_values, proxy_values = exact(masks), proxy.interactions(masks)
    exact_four, proxy_four = exact.to_fourier(), proxy.interactions.to_fourier()

    def overlap(min_order: int) -> float:
        a = {s for _, s, _ in exact_four.top(top_k, min_order=min_order)}
        b = {s for _, s, _ in proxy_four.top(top_k, min_order=min_order)}
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


def will_compare(unit: Unit, config: AttributionConfig) -> bool:
    """Whether ``method="exact"`` also fits ProxySPEX on ``compare_budget`` of the unit's masks
    (not when the unit has fewer masks in all than a ProxySPEX fit needs)."""
    n = len(unit.players)
    return (config.method == Method.EXACT and config.compare_budget > 0
            and min(config.compare_budget, 2**n) >= config.estimator().minimum_budget(n))


def fit_unit(
    unit: Unit, game: GameLike, config: AttributionConfig, store: MaskStore, progress: bool
) -> tuple[EngineResult, dict[str, Any] | None]:
    """The unit's engine result and, for ``method="exact"`` with a compare budget, the comparison.

    Every mask goes through ``store`` (per-question values): the game sees each mask once.
    """
    n = len(unit.players)
    fit_options = dict(n_players=n, player_names=unit.players, batch_size=config.batch_masks, store=store,
                       per_item=True)

    def proxyspex() -> ProxySPEX:
        return config.estimator()

    if config.method != Method.EXACT:
        engine = proxyspex().fit(game.question_values, config.budget, n_test=config.n_test, progress=progress,
                                 **fit_options)
        return engine, None
    if n > MAX_EXACT_METHOD_PLAYERS:
        raise AttributionError(
            f"method='exact' enumerates 2^{n} masks for unit {unit.name}; use at most "
            f"{MAX_EXACT_METHOD_PLAYERS} players (scope='layer') or method='proxyspex'"
        )
    engine = Exhaustive(seed=config.seed).fit(game.question_values, n_test=0, progress=progress, **fit_options)
    if not will_compare(unit, config):
        return engine, None
    budget = min(config.compare_budget, 2**n)
    # Every ProxySPEX mask is among the 2^n already in the store: the comparison is free.
    if progress:
        print(f"[headspex] {unit.name}: ProxySPEX on {budget} of the exact masks for the comparison", flush=True)
    proxy = proxyspex().fit(game.question_values, budget, n_test=config.n_test, progress=progress, **fit_options)
    return engine, exact_comparison(engine.interactions, proxy, config.top_k)


def bootstrap_intervals(
    engine: EngineResult,
    question_values: np.ndarray,
    top: list[Subset],
    config: AttributionConfig,
    unit_dir: Path | None,
    progress: bool = False,
) -> dict[str, Any]:
    """Percentile intervals of the single-head values and the top terms, per bootstrap kind.

    Each replicate refits the fit's own coefficient step (its winner's terms and penalty held
    fixed: :func:`~headspex.engine.values.bootstrap_coefficients`).

    Args:
        engine: the unit's fit; question_values: float[m, q] of its fit masks.
        top: the top Fourier terms (each among the estimate's subsets).
        unit_dir: where ``bootstrap_<kind>.npz`` (subsets, replicates float[T, B]) is saved (None: not saved).

    Returns:
        ``{"questions"|"masks": {"banzhaf": [[lo, hi]]*n, "shapley": ..., "top": [...]}}``;
        no "masks" kind for an exact fit, no "questions" kind with a single question. A kind
        whose refits would not be the estimator's (a least-squares fit the masks do not
        identify; mask resamples that lose rank; a refit that does not reproduce the estimate)
        is left out, and ``{"unavailable": {kind: reason}}`` says why.
    """
    if not config.n_bootstrap:
        return {}
    n = engine.interactions.n_players
    intervals: dict[str, Any] = {}
    for over in ["questions"] + (["masks"] if engine.method != "exhaustive" else []):
        if over == "questions" and question_values.shape[1] < 2:
            continue
        if progress:  # each kind refits B times: seconds to tens of seconds with many terms
            print(f"[headspex] bootstrap over {over}: {config.n_bootstrap} refits", flush=True)
        try:
            subsets, replicates = bootstrap_coefficients(engine, question_values, config.n_bootstrap, config.seed, over)
        except EngineError as error:
            if unit_dir is not None:  # replicates of an earlier fit of this unit no longer apply
                (unit_dir / f"bootstrap_{over}.npz").unlink(missing_ok=True)
            if progress:
                print(f"[headspex] no bootstrap intervals over {over}: {error}", flush=True)
            intervals.setdefault("unavailable", {})[over] = str(error)
            continue

        def interval(per_replicate_columns: np.ndarray) -> list[list[float]]:
            # [rows, B] -> [[lo, hi]] * rows (percentile_interval wants replicates along axis 0).
            return percentile_interval(per_replicate_columns.T, config.confidence).T.tolist()

        row = {s: t for t, s in enumerate(subsets)}
        intervals[over] = {"banzhaf": interval(banzhaf_matrix(subsets, n) @ replicates),
                           "shapley": interval(shapley_matrix(subsets, n) @ replicates),
                           "top": interval(replicates[[row[s] for s in top]])}
        if unit_dir is not None:
            unit_dir.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(unit_dir / f"bootstrap_{over}.npz", subsets=np.array([str(list(s)) for s in subsets]),
                                replicates=replicates)
    return intervals


def top_table(unit: Unit, top: list[Subset], coefficients: list[float], intervals: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per top term: players, order, Fourier coefficient, Banzhaf interaction, intervals."""
    player_layers = unit.layers
    rows = []
    for rank, (subset, coefficient) in enumerate(zip(top, coefficients)):
        entry: dict[str, Any] = {
            "players": [unit.players[i] for i in subset],
            "indices": list(subset),
            "order": len(subset),
            "fourier": float(coefficient),
            "banzhaf_interaction": float(2.0 ** len(subset) * coefficient),
            "within_layer": len({player_layers[i] for i in subset}) == 1,
        }
        for over, block in intervals.items():
            if over == "unavailable":
                continue
            lo, hi = block["top"][rank]
            entry[f"interval_{over}"] = [lo, hi]
            entry[f"significant_{over}"] = bool(lo > 0 or hi < 0)
        rows.append(entry)
    return rows


def attribute_unit(
    unit: Unit,
    game: GameLike,
    config: AttributionConfig,
    unit_dir: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    provenance_key: str = "",
) -> UnitResult:
    """Fit one unit, compute its values, intervals and exact comparison, and save it.

    Args:
        unit: players of the game (their order = mask columns).
        game: its :class:`GameLike` (``question_values(bool[m, n]) -> float[m, q]``).
        config: the run configuration.
        unit_dir: where to save the result (None = not saved).
        cache_dir: the unit's mask store folder (None = memory only).
        progress: tqdm bars.
        provenance_key: the run's key, recorded in ``unit.json`` and the cache files (a cache
            file of another key is not used).
    """
    start = time.perf_counter()
    n = len(unit.players)
    store = MaskStore(cache_dir, n, value_name="question_values", provenance_key=f"{provenance_key}/{unit.name}")
    engine, comparison = fit_unit(unit, game, config, store, progress)
    interactions = engine.interactions.to_fourier()
    subsets = list(interactions.subsets)
    coefficients = interactions.coefficients
    value_maps = {"banzhaf": banzhaf_matrix(subsets, n), "shapley": shapley_matrix(subsets, n)}
    top = top_terms(interactions, config.top_k)
    top_rows = [subsets.index(s) for s in top]
    question_values = store.stack(engine.masks)
    intervals = bootstrap_intervals(engine, question_values, top, config, unit_dir, progress)
    result = UnitResult(
        name=unit.name,
        players=list(unit.players),
        player_layers=unit.layers,
        engine=engine,
        banzhaf=value_maps["banzhaf"] @ coefficients,
        shapley=value_maps["shapley"] @ coefficients,
        intervals=intervals,
        top=top_table(unit, top, [coefficients[row] for row in top_rows], intervals),
        exact_comparison=comparison,
        seconds=time.perf_counter() - start,
        n_evaluated_masks=store.n_added,
        n_questions=int(question_values.shape[1]),
        game=to_jsonable(game.describe()) if hasattr(game, "describe") else None,
        provenance_key=provenance_key,
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
        run_dir: the run directory (created; an existing one of the same provenance resumes;
            a non-empty folder that is not a headspex run, or a run of another provenance,
            is refused with an :class:`AttributionError` saying what differs).
        meta: extra provenance for ``run.json`` (model, task...): part of what a resumed run
            must match, with the configuration, the unit plan and the headspex version.
        progress: tqdm bars.
        log: called with one line per finished unit (e.g. ``print``).

    Returns:
        The :class:`AttributionRun` with every unit, in plan order.
    """
    config.validate()
    check_budgets(units, config)
    run_dir = Path(run_dir)
    plan = [{"name": u.name, "players": u.players} for u in units]
    provenance = {"config": asdict(config), "units": plan, **(meta or {}), "headspex_version": __version__}
    folder_existed = run_dir.exists()
    meta_all, created = open_run_directory(run_dir, provenance)
    try:
        results = _run_units(units, game_factory, config, run_dir, meta_all["provenance_key"], progress, log)
    except HeadspexError:
        # A bad option met only now (e.g. by the game) must not block the corrected rerun.
        if created:
            remove_failed_start(run_dir, remove_folder=not folder_existed)
        raise
    return AttributionRun(run_dir, meta_all, {u.name: results[u.name] for u in units})


def check_budgets(units: Sequence[Unit], config: AttributionConfig) -> None:
    """Refuse, before anything is evaluated, a budget below what ProxySPEX needs for a unit.

    With ``method="exact"`` the check applies to ``compare_budget`` (when the unit has
    enough masks for a comparison at all).
    """
    estimator = config.estimator()
    for unit in units:
        n = len(unit.players)
        need = estimator.minimum_budget(n)
        if config.method != Method.EXACT and config.budget < need:
            raise AttributionError(
                f"budget {config.budget} is below the {need} masks ProxySPEX needs for unit {unit.name} "
                f"({n} players, max_order {config.max_order}); use a budget of at least {need}"
            )
        if config.method == Method.EXACT and 0 < config.compare_budget < need <= 2**n:
            raise AttributionError(
                f"compare_budget {config.compare_budget} is below the {need} masks ProxySPEX needs for unit "
                f"{unit.name} ({n} players); use at least {need}, or 0 for no comparison"
            )


def _load_finished_unit(unit_dir: Path, key: str) -> UnitResult | None:
    """The unit saved in ``unit_dir`` if it passes its checks; one that fails is moved aside (None)."""
    if not (unit_dir / "unit.json").exists():
        return None
    try:
        unit = UnitResult.load(unit_dir, key)
    except CorruptFileError as error:
        moved = move_aside(unit_dir / "unit.json")
        warnings.warn(f"{error}; {unit_dir / 'unit.json'} moved to {moved.name}, the unit will be recomputed",
                      CorruptFileWarning, stacklevel=3)
        return None
    if STALE_INTERVALS in unit.intervals.get("unavailable", {}).values():
        return None  # refitted from the mask cache, so its intervals come from its own estimator
    return unit


def _run_units(units: Sequence[Unit], game_factory: GameFactory, config: AttributionConfig, run_dir: Path,
               key: str, progress: bool, log: Callable[[str], None] | None) -> dict[str, UnitResult]:
    from tqdm.auto import tqdm

    results: dict[str, UnitResult] = {}
    # Late layers first: the game skips every layer before the first ablated one, so they are
    # the cheapest, and a run stopped early already has results for them.
    execution_order = sorted(units, key=lambda u: -min(u.layers))
    bar = tqdm(execution_order, desc="units", disable=not progress or len(units) < 2)
    for unit in bar:
        bar.set_postfix_str(unit.name)
        unit_dir = run_dir / "units" / unit.name
        finished = _load_finished_unit(unit_dir, key)
        if finished is not None:
            results[unit.name] = finished
            continue
        game = game_factory(Players(unit.players), run_dir / "game_cache" / unit.name)
        results[unit.name] = attribute_unit(unit, game, config, unit_dir, run_dir / "cache" / unit.name, progress,
                                            provenance_key=key)
        if log is not None:
            result = results[unit.name]
            log(f"{unit.name}: faithfulness {result.faithfulness}, {result.seconds:.0f} s, "
                f"{result.n_evaluated_masks} masks evaluated")
    return results


def model_units(model: Any, config: AttributionConfig) -> list[Unit]:
    """The unit plan of ``config`` for a TransformerBridge (heads of ``config.layers``)."""
    from ..components import heads

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
    from ..game import AblationGame

    def make_game(players: Players, cache_dir: Path | None) -> Any:
        return AblationGame(
            model, task, players, mode=config.mode, split=config.split, metric=config.metric,
            n_questions=config.n_questions, cache_dir=cache_dir if use_game_cache else None,
            # The engine's bar already counts masks; one bar per game call would flood the log.
            progress=False, seed=config.seed, **game_options,
        )

    return make_game


def model_meta(model: Any, task: Any, config: AttributionConfig) -> dict[str, Any]:
    """Provenance of a model run for ``run.json``: model (name, shape, weights fingerprint), task
    (description and the question ids of each split), split."""
    reference_split = "reference"
    return {
        "model": str(getattr(model, "headspex_source", type(model).__name__)),
        "model_shape": {"n_layers": int(model.cfg.n_layers), "n_heads": int(model.cfg.n_heads)},
        "weights_fingerprint": weights_fingerprint(model),
        "task": task_provenance(task, sorted({config.split, reference_split})),
        "split": config.split,
    }


def attribute(
    model: Any,
    task: Any,
    config: AttributionConfig,
    run_dir: str | Path,
    progress: bool = True,
    use_game_cache: bool = False,
    game_factory: GameFactory | None = None,
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
        game_factory: ``(players, store_dir) -> game`` to use instead of in-process games, e.g.
            :func:`headspex.distributed.distributed_game_factory` (masks evaluated on Ray workers).
        game_options: extra keyword arguments of ``AblationGame`` (``dtype``, ``memory_budget_mb``...).
    """
    units = model_units(model, config)
    factory = game_factory or model_game_factory(model, task, config, use_game_cache, **game_options)
    return attribute_units(units, factory, config, run_dir, model_meta(model, task, config), progress)


