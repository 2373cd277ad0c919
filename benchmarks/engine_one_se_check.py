"""Targeted check of ProxySPEX(support_rule="one_se") against the saved engine benchmark.

Reruns headspex on every saved configuration with n <= 256 and budget <= 2000 with the
one-standard-error support rule and prints (family, n, budget, min-rule R2 uni/nf, one-SE R2
uni/nf, shapiq ProxySPEX R2 uni/nf), using the saved numbers for the other two.
Results: benchmarks/results/engine_one_se.json and the section at the end of engine.md.
"""
import json, sys, numpy as np, warnings
sys.path.insert(0, "benchmarks")
warnings.simplefilter("ignore")
import engine_benchmark as eb
from headspex.engine import r2_score, sample_masks
rows = json.load(open("benchmarks/results/engine.json"))["rows"]
out = []
for row in rows:
    res = row["results"]; h = res.get("headspex", {}); s = res.get("shapiq_proxyspex", {})
    if "r2_uniform" not in h or "r2_uniform" not in s or row["n"] > 256 or row["budget"] > 2000: continue
    cfg = {k: row[k] for k in ("family","n","s","max_order","noise","seed","budget")}
    game = eb.planted_game(cfg["family"], cfg["n"], cfg["s"], cfg["max_order"], noise=cfg["noise"], seed=1000+cfg["seed"])
    rng = np.random.default_rng([cfg["seed"], cfg["n"], 77])
    tests = {"uniform": sample_masks(cfg["n"], eb.N_TEST, rng, 0.5, distinct=False), "near_full": sample_masks(cfg["n"], eb.N_TEST, rng, 0.9, distinct=False)}
    inter, _ = eb.run_headspex(game, cfg["n"], cfg["budget"], cfg["max_order"], cfg["seed"], support_rule="one_se")
    r = {k: r2_score(game.noiseless(v), inter(v)) for k, v in tests.items()}
    line = (cfg["family"], cfg["n"], cfg["budget"], round(h["r2_uniform"],4), round(h["r2_near_full"],4), round(r["uniform"],4), round(r["near_full"],4), round(s["r2_uniform"],4), round(s["r2_near_full"],4))
    print(line, flush=True); out.append(line)
json.dump(out, open("benchmarks/results/engine_one_se.json", "w"), indent=0)
