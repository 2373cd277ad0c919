"""Collect the run directories of attribution_smollm2_run.py into docs/results/.

Writes docs/results/attribution_smollm2_tables.md (tables), structure_smollm2.json (per-layer
structure of every run plus the claim test on marketing) and attribution_smollm2_*.png figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from headspex.attribution import AttributionRun
from headspex.plots import exact_vs_proxy, faithfulness_profile, head_heatmap, structure_profile, top_interactions
from headspex.structure import layer_claim, run_structure, save_structure

RESULTS = Path("docs/results")
MARKETING = ("marketing_exact", "marketing_proxyspex_early", "marketing_proxyspex_mid",
             "marketing_proxyspex_spread", "marketing_proxyspex_fill")
GROUP = "marketing_group_27-29"
RUNS = {name: Path("runs/results") / name for name in MARKETING + ("hsush_proxyspex", GROUP)}


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def main() -> None:
    runs = {name: AttributionRun.load(path) for name, path in RUNS.items() if (path / "run.json").exists()}
    structures = {name: run_structure(run) for name, run in runs.items()}
    lines = ["# SmolLM2-135M head attribution: tables (generated)", ""]
    for name, run in runs.items():
        config = run.meta["config"]
        lines += [f"## {name}: {run.meta['task'].get('name')} ({len(run.units)}/{len(run.meta['units'])} layers done)", "",
                  f"method={config['method']}, budget={config['budget']}, n_test={config['n_test']} per distribution, "
                  f"questions={config['n_questions']}, mode={config['mode']}, metric={config['metric']}, "
                  f"bootstrap={config['n_bootstrap']}", "",
                  "| layer | fit masks | terms | R² uniform | R² near-full | linear share | within-layer | "
                  "interaction share interval (questions) | R² first-order | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        rows = {r["unit"]: r for r in structures[name]["per_layer"]}
        for unit in run.units.values():
            faith, row = unit.faithfulness, rows[unit.name]
            interval = row.get("interaction_share_interval_questions")
            lines.append(f"| {unit.player_layers[0]} | {len(unit.engine.masks)} | {len(unit.engine.interactions)} | "
                         f"{fmt(faith.get('uniform', faith.get('exact')))} | {fmt(faith.get('near_full'))} | "
                         f"{fmt(row['linear_share'])} | {fmt(row['within_layer_share'])} | "
                         f"{'–' if not interval else f'[{fmt(interval[0])}, {fmt(interval[1])}]'} | "
                         f"{fmt(row.get('r2_first_order'))} | {unit.seconds:.0f} |")
        comparisons = [(u, u.exact_comparison) for u in run.units.values() if u.exact_comparison]
        if comparisons:
            lines += ["", "Exact (512 masks) vs ProxySPEX fitted on 128 of them:", "",
                      "| layer | R² vs exact, all 512 masks | top-10 overlap | top-10 overlap (order ≥ 2) | Banzhaf Pearson r | max abs Banzhaf diff (nats) | ProxySPEX terms |",
                      "|---|---|---|---|---|---|---|"]
            for unit, c in comparisons:
                lines.append(f"| {unit.player_layers[0]} | {fmt(c['r2_all_masks'], 4)} | {fmt(c['top_overlap'], 2)} | "
                             f"{fmt(c['top2_overlap'], 2)} | {fmt(c['banzhaf_pearson'], 4)} | "
                             f"{c['banzhaf_max_abs_diff']:.2g} | {c['proxy_n_terms']} |")
        lines += ["", "Top interactions (order ≥ 2) per layer, Fourier coefficient in nats, 95% bootstrap interval over questions:", ""]
        for unit in run.units.values():
            terms = [t for t in unit.top if t["order"] >= 2][:3]
            text = "; ".join(f"{'×'.join(t['players'])} {t['fourier']:+.4f}"
                             + (f" [{t['interval_questions'][0]:+.4f}, {t['interval_questions'][1]:+.4f}]"
                                if "interval_questions" in t else "")
                             for t in terms)
            reason = unit.intervals.get("unavailable", {}).get("questions")
            why = f" (no interval: {reason.split(';')[0]})" if reason else ""
            lines.append(f"- L{unit.player_layers[0]}: {text}{why}")
        lines.append("")
    if GROUP in runs:
        for unit in runs[GROUP].units.values():
            energy = next(u for u in structures[GROUP]["units"] if u["name"] == unit.name)["energy"]
            intervals = next(u for u in structures[GROUP]["units"] if u["name"] == unit.name)["share_intervals"]
            lines += [f"### {unit.name}: all {len(unit.players)} heads of layers 27-29 as players", "",
                      f"faithfulness {unit.faithfulness}; energy shares: linear {fmt(energy['linear_share'])}, "
                      f"within-layer {fmt(energy['within_layer_share'])}, across-layer {fmt(energy['across_layer_share'])}; "
                      + (f"95% intervals over questions: {json.dumps(intervals['questions'])}" if "questions" in intervals
                         else "no intervals over questions ("
                         + unit.intervals.get("unavailable", {}).get("questions", "none computed").split(";")[0] + ")"), ""]
    # Marketing: both runs together for the structure profile and the claim.
    marketing_rows = [r for name in MARKETING if name in structures
                      for r in structures[name]["per_layer"]]
    claim = layer_claim(marketing_rows)
    lines += ["## Claim test on marketing (all layers run)", "", "```", json.dumps(claim, indent=1), "```", ""]
    (RESULTS / "attribution_smollm2_tables.md").write_text("\n".join(lines))
    save_structure({"format": "headspex.structure/1", "runs": structures, "marketing_claim": claim,
                    "per_layer": sorted(marketing_rows, key=lambda r: r["layer"])}, RESULTS / "structure_smollm2.json")
    if marketing_rows:
        structure_profile(marketing_rows, path=RESULTS / "structure_smollm2_marketing_profile.png",
                          title="SmolLM2-135M, marketing: energy share per layer")
    units = [u for name in MARKETING if name in runs for u in runs[name].units.values()]
    if units:
        layers = sorted({u.player_layers[0] for u in units})
        grid = np.full((len(layers), 9), np.nan)
        for u in units:
            grid[layers.index(u.player_layers[0])] = u.banzhaf
        head_heatmap(layers, grid, title="SmolLM2-135M marketing: single-head Banzhaf values",
                     units_label="Δ log-prob of correct letter (nats)", path=RESULTS / "attribution_smollm2_heads.png")
        faithfulness_profile([{"label": f"L{u.player_layers[0]}", "faithfulness": u.faithfulness if u.engine.method != "exhaustive"
                               else {"uniform": u.exact_comparison["proxy_faithfulness"]["uniform"]}}
                              for u in sorted(units, key=lambda u: u.player_layers[0])],
                             path=RESULTS / "attribution_smollm2_faithfulness.png")
    if "marketing_exact" in runs:
        rows = [{"layer": u.player_layers[0], "exact_comparison": u.exact_comparison}
                for u in runs["marketing_exact"].units.values() if u.exact_comparison]
        if rows:
            exact_vs_proxy(rows, path=RESULTS / "attribution_smollm2_exact_vs_proxy.png")
        last = runs["marketing_exact"].units.get("layer_29")
        if last is not None:
            top_interactions(last.top, path=RESULTS / "attribution_smollm2_top_L29.png", title="Layer 29, marketing (exact)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
