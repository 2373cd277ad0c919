"""What the all-pairs LASSO candidate (``lasso2:fourier``) costs in ProxySPEX's fit time.

The candidate runs wherever rows x (n + C(n, 2)) <= ``headspex.engine.search.ALL_PAIRS_MAX_CELLS``.
This script fits headspex's ProxySPEX on planted games of ``benchmarks/engine_benchmark.py`` with
the candidate on and off (the limit set to 0), and shapiq's ProxySPEX on the same game (a fresh
copy per fit, so the same noise). After one untimed warm-up fit the three are **interleaved**
(on, off, shapiq, on, off, shapiq, ...) so that drift of the shared machine hits all three alike.
It reports, per configuration, the median fit seconds of each, the on/off and on/shapiq ratios,
and held-out R² on uniform masks (identical on and off where the candidate does not win).

Run by hand::

    python benchmarks/engine_pair_lasso_cost.py            # the default configurations, 3 repeats
    python benchmarks/engine_pair_lasso_cost.py --repeats 5 --only logsigmoid:128:2000

Writes ``benchmarks/results/engine_pair_lasso_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_benchmark import run_headspex, run_shapiq  # noqa: E402

import headspex.engine.search as engine_search  # noqa: E402
from headspex.engine import r2_score, sample_masks  # noqa: E402
from headspex.engine.synthetic import planted_game  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: (family, n, budget, max_order, plant_order): the planted rows of engine_benchmark.py where the
#: candidate runs, from the smallest to the largest design.
CONFIGS: list[tuple[str, int, int, int, int]] = [
    ("and", 64, 500, 3, 3),
    ("parity", 64, 1000, 3, 3),
    ("logsigmoid", 64, 1000, 3, 3),
    ("redundancy", 64, 1000, 4, 6),
    ("logsigmoid", 128, 2000, 3, 3),
]
N_TEST = 2000


def _fit_headspex(game: Any, n: int, budget: int, max_order: int, pairs_on: bool,
                  test_masks: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Fit headspex's ProxySPEX with the all-pairs candidate on or off; seconds and uniform R²."""
    saved = engine_search.ALL_PAIRS_MAX_CELLS
    engine_search.ALL_PAIRS_MAX_CELLS = saved if pairs_on else 0.0
    try:
        model, info = run_headspex(game, n, budget, max_order, seed=0)
    finally:
        engine_search.ALL_PAIRS_MAX_CELLS = saved
    return {"seconds": info["fit_seconds"], "winner": info["winner"],
            "r2_uniform": float(r2_score(truth, model(test_masks)))}


def run_config(family: str, n: int, budget: int, max_order: int, plant_order: int,
               repeats: int) -> dict[str, Any]:
    """Interleave ``repeats`` fits of each method on one planted game (seed 1000, noise 0.05)."""
    def fresh_game() -> Any:
        # The game draws its noise from its own generator: a fresh copy per fit gives every
        # method the same noisy values.
        return planted_game(family, n, 10, plant_order, noise=0.05, seed=1000)

    test_masks = sample_masks(n, N_TEST, rng=np.random.default_rng(99))
    truth = fresh_game().noiseless(test_masks)
    _fit_headspex(fresh_game(), n, budget, max_order, True, test_masks, truth)  # warm-up, not timed
    runs: dict[str, list[dict[str, Any]]] = {"pairs_on": [], "pairs_off": [], "shapiq_proxyspex": []}
    for repeat in range(repeats):
        for method in runs:
            game = fresh_game()
            if method == "shapiq_proxyspex":
                model, info = run_shapiq("proxyspex", game, n, budget, max_order, seed=0)
                entry = {"seconds": info["fit_seconds"], "winner": None,
                         "r2_uniform": float(r2_score(truth, model(test_masks)))}
            else:
                entry = _fit_headspex(game, n, budget, max_order, method == "pairs_on", test_masks, truth)
            runs[method].append(entry)
            print(f"{family} n={n} m={budget} repeat {repeat + 1}/{repeats} {method}: "
                  f"{entry['seconds']:.2f} s, R² {entry['r2_uniform']:.4f}, winner {entry['winner']}", flush=True)
    medians = {method: statistics.median(e["seconds"] for e in entries) for method, entries in runs.items()}
    return {"family": family, "n": n, "budget": budget, "max_order": max_order, "plant_order": plant_order,
            "repeats": repeats, "runs": runs, "median_seconds": medians,
            "on_over_off": medians["pairs_on"] / medians["pairs_off"],
            "on_over_shapiq": medians["pairs_on"] / medians["shapiq_proxyspex"],
            "off_over_shapiq": medians["pairs_off"] / medians["shapiq_proxyspex"]}


def write_report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Markdown table of the medians and ratios, one line per configuration."""
    lines = ["# Fit-time cost of the all-pairs LASSO candidate", "",
             f"{meta['machine']}; started {meta['started']}. Fits interleaved (on, off, shapiq) per repeat; "
             "medians over the repeats. R² on 2 000 uniform held-out masks against the noiseless game "
             "(the first repeat).", "",
             "| game | masks | on (s) | off (s) | shapiq ProxySPEX (s) | on / off | on / shapiq | off / shapiq "
             "| R² on | R² off | winner on |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        med, first = row["median_seconds"], {k: v[0] for k, v in row["runs"].items()}
        lines.append(f"| {row['family']} n={row['n']} | {row['budget']} | {med['pairs_on']:.2f} | "
                     f"{med['pairs_off']:.2f} | {med['shapiq_proxyspex']:.2f} | {row['on_over_off']:.2f} | "
                     f"{row['on_over_shapiq']:.2f} | {row['off_over_shapiq']:.2f} | "
                     f"{first['pairs_on']['r2_uniform']:.4f} | {first['pairs_off']['r2_uniform']:.4f} | "
                     f"{first['pairs_on']['winner']} |")
    total_on = sum(r["median_seconds"]["pairs_on"] for r in rows)
    total_off = sum(r["median_seconds"]["pairs_off"] for r in rows)
    lines += ["", f"Summed medians: on {total_on:.1f} s, off {total_off:.1f} s, ratio {total_on / total_off:.2f}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per configuration")
    parser.add_argument("--only", default=None, help="comma-separated family:n:budget filters")
    parser.add_argument("--out", default=str(RESULTS / "engine_pair_lasso_cost"), help="output path without extension")
    args = parser.parse_args()
    configs = CONFIGS
    if args.only:
        wanted = {tuple(part.split(":")) for part in args.only.split(",")}
        configs = [c for c in CONFIGS if (c[0], str(c[1]), str(c[2])) in wanted]
        if not configs:
            parser.error(f"--only {args.only!r} matches none of {[f'{c[0]}:{c[1]}:{c[2]}' for c in CONFIGS]}")
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()}, Python {platform.python_version()}, "
                       f"{__import__('os').cpu_count()} cores",
            "all_pairs_max_cells": engine_search.ALL_PAIRS_MAX_CELLS}
    rows = [run_config(*config, repeats=args.repeats) for config in configs]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    report = write_report(rows, meta)
    out.with_suffix(".md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
