"""Benchmark of the headspex interaction engine against shapiq's ProxySPEX and SPEX.

Run by hand (needs the ``bench`` extra: ``pip install shapiq``)::

    python benchmarks/engine_benchmark.py --quick        # ~ a few minutes
    python benchmarks/engine_benchmark.py                # prioritised grid, stops starting configs after 25 min

Every method sees the same planted game at the same fit budget. Faithfulness is R² of the
recovered function against the *noiseless* game on held-out masks that no method saw: 1000
uniform masks (each player kept w.p. 1/2) and 1000 near-full masks (kept w.p. 0.9). The
``induction`` family is a small trained model (benchmarks/induction_model.py) with exact values
over all 2^8 head masks: there, held-out means every mask the method did not evaluate. Its value
tables are committed (``benchmarks/data/induction_tables.json``, five models trained with seeds
0-4), because training is chaotic and another CPU trains another model; ``--models`` runs a
configuration on several of them. Results
are appended to ``benchmarks/results/engine.json`` after every configuration (so a partial
run is usable) and summarised in ``benchmarks/results/engine.md``; ``--report-only`` rebuilds
the Markdown from the JSON. Every method evaluates its own copy of the game (a planted game's
noise stream starts afresh for each), so a method's noise does not depend on which methods ran
before it and ``--append --replace --headspex-only`` reproduces a full run's headspex entries.

shapiq details: the recovered function is read from the Möbius coefficients shapiq computes
internally (before its index conversion, so nothing is truncated and k-SII bugs do not
matter). shapiq 1.4.1's ``CoalitionSampler`` overflows for n = 1024 ("Maximum allowed dimension
exceeded"); there its ProxySPEX is run with the sampler replaced by i.i.d. uniform masks (all
the rest — grid search, extraction, 95%-energy truncation, RidgeCV — is shapiq's own code).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # induction_model.py

import numpy as np

from headspex.engine import Interactions, LassoRegression, ProxySPEX, all_masks, r2_score, sample_masks
from headspex.engine.adaptive import fit_adaptive
from headspex.engine.synthetic import planted_game, support_metrics

RESULTS = Path(__file__).resolve().parent / "results"
N_TEST = 1000


# --------------------------------------------------------------------------- methods
class _OnValueScale:
    """A fit through a link, read on the game's scale (``EngineResult.predict``); ``len`` = terms."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return self.result.predict(masks)

    def __len__(self) -> int:
        return len(self.result.interactions)


def run_headspex(game, n: int, budget: int, max_order: int, seed: int, adaptive: float = 0.0,
                 **kwargs: Any) -> tuple[Interactions | _OnValueScale, dict]:
    est = ProxySPEX(max_order=max_order, seed=seed, **kwargs)
    if adaptive > 0:
        res = fit_adaptive(est, game, n, budget, fraction=adaptive, seed=seed)
    else:
        res = est.fit(game, budget, n_players=n, n_test=0, progress=False)
    if res.link != "identity":
        return _OnValueScale(res), {"n_evaluations": int(len(res.masks)), "fit_seconds": res.fit_seconds,
                                    "winner": res.diagnostics.get("winner"), "link": res.link, "fit_masks": res.masks}
    info = {"n_evaluations": int(len(res.masks)), "fit_seconds": res.fit_seconds,
            "n_selected": res.diagnostics.get("n_selected"), "basis": res.diagnostics.get("basis"),
            "winner": res.diagnostics.get("winner", res.diagnostics.get("basis")), "fit_masks": res.masks,
            "link": res.link}
    return res.interactions, info


def run_lasso(game, n: int, budget: int, max_order: int, seed: int) -> tuple[Interactions, dict]:
    res = LassoRegression(max_order=min(max_order, 2), seed=seed).fit(game, budget, n_players=n, n_test=0, progress=False)
    return res.interactions, {"n_evaluations": res.n_evaluations, "fit_seconds": res.fit_seconds,
                              "order_used": res.diagnostics.get("order_used"), "fit_masks": res.masks}


class _IIDUniformSampler:
    """Stand-in for shapiq's CoalitionSampler where it overflows (n = 1024)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.rng = n, np.random.default_rng(seed)
        self.coalitions_matrix: np.ndarray | None = None

    def sample(self, budget: int) -> None:
        self.coalitions_matrix = self.rng.random((budget, self.n)) < 0.5


def run_shapiq(kind: str, game, n: int, budget: int, max_order: int, seed: int) -> tuple[Interactions, dict]:
    from shapiq.approximator.sparse import SPEX, ProxySPEX as ShapiqProxySPEX

    base = ShapiqProxySPEX if kind == "proxyspex" else SPEX
    captured: dict = {}

    class Capturing(base):  # type: ignore[misc, valid-type]
        def _process_moebius(self, moebius_transform):  # noqa: ANN001, ANN202
            captured.update(moebius_transform)
            return super()._process_moebius(moebius_transform)

    calls = [0]
    seen: list[np.ndarray] = []

    def value_fn(coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.asarray(coalitions, dtype=bool)
        calls[0] += len(coalitions)
        seen.append(coalitions.copy())
        return game(coalitions)

    approx = Capturing(n=n, index="FBII", max_order=max_order, random_state=seed)
    patched = False
    if kind == "proxyspex" and n >= 1000:
        approx._uniform_sampler = _IIDUniformSampler(n, seed)
        patched = True
    start = time.perf_counter()
    approx.approximate(budget, value_fn)
    seconds = time.perf_counter() - start
    fit_masks = np.concatenate(seen) if seen else np.zeros((0, n), bool)
    return Interactions(captured, n, basis="mobius"), {"n_evaluations": calls[0], "fit_seconds": seconds,
                                                      "patched_sampler": patched, "fit_masks": fit_masks}


# --------------------------------------------------------------------------- grid
def build_grid(quick: bool) -> list[dict[str, Any]]:
    """Configurations in priority order (the most informative first, so a cut run is useful)."""
    grid: list[dict[str, Any]] = []

    def add(family, n, s, budgets, order=3, noise=0.05, seeds=(0,), methods=None, ablations=False,
            plant_order=None, spex=None, adaptive=False):
        for seed in seeds:
            for budget in budgets:
                grid.append(dict(family=family, n=n, s=s, max_order=order, noise=noise, seed=seed,
                                 budget=budget, methods=methods, ablations=ablations,
                                 plant_order=plant_order or order, spex=spex, adaptive=adaptive))

    if quick:
        add("induction", 8, 0, [64], noise=0.0, adaptive=True)
        add("redundancy", 64, 10, [1000], order=4, plant_order=6)
        add("parity", 512, 10, [2000], spex=False)
        add("and", 64, 10, [500])
        return grid
    # Engine II targets first (issue 12), then the fit-time target, then the old families.
    add("induction", 8, 0, [32, 64, 128], noise=0.0, adaptive=True)  # trained model, exact truth
    add("redundancy", 8, 3, [32, 64], order=4, plant_order=6, adaptive=True)
    add("redundancy", 64, 10, [500, 1000], order=4, plant_order=6, adaptive=True)
    add("parity", 512, 10, [2000], spex=True)  # flat: the SPEX regime
    add("logsigmoid", 128, 10, [500, 2000], spex=True)
    add("and", 1024, 10, [5000], methods=["headspex", "shapiq_proxyspex"])  # the fit-time target
    add("logsigmoid", 512, 10, [2000])
    add("redundancy", 512, 10, [2000], order=4, plant_order=6)
    for fam in ["and", "and_hier", "parity", "logsigmoid", "or"]:
        add(fam, 64, 10, [500])
    for fam in ["and", "and_hier", "parity", "logsigmoid", "or"]:
        add(fam, 64, 10, [1000])
    for fam in ["and", "and_hier", "parity", "logsigmoid", "or"]:
        add(fam, 256, 10, [250, 1000])
    return grid


METHODS = ["headspex", "shapiq_proxyspex", "shapiq_spex", "lasso"]
ABLATIONS = {
    # Each removes one design choice from headspex's ProxySPEX.
    "headspex_energy95": dict(selection="energy", near_full_fraction=0.0),  # reference post-processing
    "headspex_uniform_only": dict(near_full_fraction=0.0),
    "headspex_no_residual": dict(residual_rounds=0),
}
#: Share of the budget the adaptive variant spends in its second round.
ADAPTIVE_FRACTION = 0.25


def induction_table(model: int = 0) -> Any:
    """Benchmark induction model ``model``'s value function over all 2^8 head masks, read from its
    exact values committed in ``benchmarks/data/induction_tables.json`` (trained once; why not at
    run time: see :func:`induction_model.write_tables`)."""
    from induction_model import load_table, table_game

    game = table_game(load_table(model))
    game.noiseless = game  # type: ignore[attr-defined]
    game.truth = None  # type: ignore[attr-defined]
    return game


def best_removal_regret(truth_fn, model_fn, n: int, max_removed: int) -> dict[str, float]:
    """Per size k: true value of the best k-set minus that of the set the model ranks best."""
    from itertools import combinations

    out = {}
    for k in range(1, max_removed + 1):
        sets = list(combinations(range(n), k))
        masks = np.ones((len(sets), n), dtype=bool)
        for row, subset in enumerate(sets):
            masks[row, list(subset)] = False
        truth = truth_fn(masks)
        chosen = int(np.argmax(model_fn(masks)))
        out[f"regret_k{k}"] = float(truth.max() - truth[chosen])
    return out


def _test_sets(cfg: dict[str, Any], game, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([cfg["seed"], n, 77])
    if cfg["family"] == "induction":
        masks = all_masks(n)
        return {"uniform": masks, "near_full": masks[((~masks).sum(axis=1) >= 1) & ((~masks).sum(axis=1) <= 3)],
                "le2_all": masks[(~masks).sum(axis=1) <= 2]}
    return {"uniform": sample_masks(n, N_TEST, rng, 0.5, distinct=False),
            "near_full": sample_masks(n, N_TEST, rng, 0.9, distinct=False)}


def _unseen(masks: np.ndarray, fit_masks: np.ndarray | None) -> np.ndarray:
    """Rows of ``masks`` not among ``fit_masks`` (bool[len(masks)])."""
    if fit_masks is None or not len(fit_masks):
        return np.ones(len(masks), dtype=bool)
    seen = {row.tobytes() for row in np.packbits(fit_masks, axis=1)}
    return np.array([row.tobytes() not in seen for row in np.packbits(masks, axis=1)])


def run_config(cfg: dict[str, Any], headspex_only: bool = False) -> dict[str, Any]:
    """One configuration's row: every method's entry under ``results`` (only headspex's own
    entries, ``headspex*``, with ``headspex_only``)."""
    n, budget = cfg["n"], cfg["budget"]
    if cfg["family"] == "induction":
        game = induction_table(cfg.get("model", 0))
        cfg = {**cfg, "model": cfg.get("model", 0)}
    else:
        game = planted_game(cfg["family"], n, cfg["s"], cfg.get("plant_order", cfg["max_order"]),
                            noise=cfg["noise"], seed=1000 + cfg["seed"])
    tests = _test_sets(cfg, game, n)
    truth_values = {k: game.noiseless(v) for k, v in tests.items()}
    methods = list(cfg["methods"] or METHODS)
    if n > 512 and "lasso" in methods:
        methods.remove("lasso")  # its design gets large; order lowered automatically up to 512
    skip_spex = (n > 256 or budget > 1000) if cfg.get("spex") is None else not cfg["spex"]
    if skip_spex and "shapiq_spex" in methods:
        methods.remove("shapiq_spex")  # 40-150 s per fit here; see "Skipped"
    if cfg.get("adaptive"):
        methods.append("headspex_adaptive")
    if cfg["family"] == "induction":  # its value is one log-probability: the log-odds link applies
        methods += ["headspex_logodds", "headspex_auto"]
    elif cfg["family"] == "logsigmoid":  # noisy log-probabilities: link='auto' caps the few >= 0
        methods.append("headspex_auto")
    if cfg["ablations"]:
        methods += list(ABLATIONS)
    if headspex_only:
        methods = [m for m in methods if m.startswith("headspex")]
    row = {k: v for k, v in cfg.items() if k not in ("methods",)}
    row["results"] = {}
    for method in methods:
        # A fresh copy of the game per method: a planted game's noise stream advances with every
        # evaluation, so with one shared game a method's noise would depend on which methods ran
        # before it (a --headspex-only refit would not reproduce a full run's row).
        row["results"][method] = _run_method(method, cfg, copy.deepcopy(game), tests, truth_values)
    return row


def _run_method(method: str, cfg: dict[str, Any], game, tests, truth_values) -> dict[str, Any]:
    n, budget = cfg["n"], cfg["budget"]
    entry: dict[str, Any] = {}
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "headspex":
                inter, info = run_headspex(game, n, budget, cfg["max_order"], cfg["seed"])
            elif method == "headspex_logodds":  # log-probability games only (the induction model)
                inter, info = run_headspex(game, n, budget, cfg["max_order"], cfg["seed"], link="logodds")
            elif method == "headspex_auto":  # the link chosen by a value-scale CV
                inter, info = run_headspex(game, n, budget, cfg["max_order"], cfg["seed"], link="auto")
            elif method == "headspex_adaptive":
                inter, info = run_headspex(game, n, budget, cfg["max_order"], cfg["seed"], adaptive=ADAPTIVE_FRACTION)
            elif method in ABLATIONS:
                inter, info = run_headspex(game, n, budget, cfg["max_order"], cfg["seed"], **ABLATIONS[method])
            elif method == "lasso":
                inter, info = run_lasso(game, n, budget, cfg["max_order"], cfg["seed"])
            else:
                inter, info = run_shapiq(method.split("_", 1)[1], game, n, budget, cfg["max_order"], cfg["seed"])
        fit_masks = info.pop("fit_masks", None)
        entry.update(info)
        entry["wall_seconds"] = time.perf_counter() - start
        for name, masks in tests.items():
            rows = _unseen(masks, fit_masks) if cfg["family"] == "induction" and name != "le2_all" else slice(None)
            entry[f"r2_{name}"] = r2_score(truth_values[name][rows], inter(masks[rows]))
            if cfg["family"] == "induction" and name != "le2_all":
                entry[f"n_test_{name}"] = int(np.sum(rows))
        entry["n_terms"] = len(inter)
        if game.truth is not None:
            entry.update(support_metrics(inter, game.truth))
        if n <= 64:
            entry.update(best_removal_regret(game.noiseless, inter, n, 3 if n <= 16 else 2))
    except Exception as err:  # noqa: BLE001 - a failing baseline is a result, not a crash
        entry["error"] = f"{type(err).__name__}: {err}"[:300]
        if method.startswith("headspex"):
            traceback.print_exc()
    return entry


# --------------------------------------------------------------------------- report
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def write_report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# headspex engine benchmark", "",
             f"Generated {meta.get('finished', meta.get('started'))}; mode: {meta['mode']}; "
             f"machine: {meta['machine']}; {len(rows)} configurations run "
             f"({meta.get('n_planned', '?')} planned).", "",
             "R² of the recovered function vs the noiseless game on 1000 held-out uniform masks (uni) and "
             "1000 near-full masks (nf, each player kept w.p. 0.9); test masks are separate from the fit "
             "budget. P/R = support precision/recall (Möbius basis for AND families, Fourier for parity; "
             "a term counts if |coef| >= 0.1 x smallest planted |coef|). Time = wall seconds of the whole "
             "fit (games are cheap, so this is the method's own cost). `–` = not applicable / failed "
             "(see notes).", ""]
    lines += _targets(rows)
    lines += ["", "## Design of headspex's ProxySPEX", "",
              "- **Design** (headspex/engine/design.py): uniform masks, drawn as a *coded* design (random hashes x "
              "random delays, headspex/engine/coded.py) when the budget holds >= 16 buckets; a near-full share whose "
              "ablation count scales with n (each player ablated in ~20 near-full masks, 2 to 10 % of the players); "
              "for n <= 16 a removal *ladder* (full, single and pair ablations) while it costs <= half the budget.",
              "- **Proxy**: LightGBM, depth in {3, 5}, trees by early stopping (2 fits), extracted exactly to Fourier.",
              "- **Candidate supports, all scored on the same CV folds, nested** (ladder rows always trained on; "
              "validation errors weighted so uniform and near-full masks count alike when each has >= 30 rows; every "
              "data-dependent ranking and screening is redone inside each fold, from a proxy fitted without that "
              "fold's rows, so no candidate's CV error has seen its validation rows): the proxy ranked in the "
              "Fourier, Möbius and removal bases (+ residual growth, not credited in the CV error); matching pursuit "
              "over screened low-order terms in the Fourier and removal bases, the removal one also grown upward from its "
              "own choices to max_order (`grown:removal`: each chosen term proposes its supersets by one player, "
              "screened by residual gain where rows x columns would pass 8e6); LASSO over the same pool and over the "
              "first-order terms alone; dense ridge over every term of order 1 (and of order <= 2 while rows x terms <= 4e6, "
              "and of order <= 3 in the removal basis with a penalty graded by order, `ridge3:removal`, while they fit and "
              "max_order >= 3); terms decoded from the coded design (no marginal signal needed; its size "
              "from the all-rows curve, its error nested; the proxy's terms after them in proxy order or, where they "
              "are most of the support, in the order a pursuit takes them on the head's residual, whichever CV "
              "prefers); anchored removal (exact ladder terms + higher removal "
              "terms fitted to the rest).",
              "- The lowest CV error wins (anchored removal within 1.5x of it wins: it is exact where <= 2 players are "
              "ablated; candidates within 2 % of the lowest error tie, and the one with the fewest terms wins); its "
              "basis and source are recorded (`winner`). Refit by GCV ridge (proxy / pursuit / coded) "
              "or as fitted (LASSO, ridge, anchored).",
              "- Exact Walsh–Hadamard path whenever 2^n <= budget."]
    if any("headspex_energy95" in r["results"] for r in rows):  # the --quick grid runs the ablations
        lines += ["", "## Ablations of headspex design choices (n = 64, s = 10)", "",
                  "| family | budget | full uni / nf | energy95 (reference selection, uniform design) | "
                  "uniform-only design | no residual rounds |", "|---|---|---|---|---|---|"]
    for r in rows:
        res = r["results"]
        if "headspex_energy95" not in res:
            continue
        cells = []
        for m in ["headspex", "headspex_energy95", "headspex_uniform_only", "headspex_no_residual"]:
            e = res.get(m, {})
            cells.append(f"{_fmt(e.get('r2_uniform'))} / {_fmt(e.get('r2_near_full'))}")
        lines.append(f"| {r['family']} | {r['budget']} | " + " | ".join(cells) + " |")
    abl_rows = [r for r in rows if "headspex_energy95" in r["results"]]
    if abl_rows:
        lines += ["", "Mean over the ablation configurations above (per family, then overall):", "",
                  "| family | configs | full | energy95 | uniform-only | no residual |", "|---|---|---|---|---|---|"]
        names = ["headspex", "headspex_energy95", "headspex_uniform_only", "headspex_no_residual"]
        for fam in sorted({r["family"] for r in abl_rows}) + ["all"]:
            sel = [r for r in abl_rows if fam in ("all", r["family"])]
            cells = []
            for m in names:
                ok = [r["results"][m] for r in sel if "error" not in r["results"].get(m, {"error": 1})]
                cells.append(f"{np.mean([e['r2_uniform'] for e in ok]):.3f} / {np.mean([e['r2_near_full'] for e in ok]):.3f}"
                             if ok else "–")
            lines.append(f"| {fam} | {len(sel)} | " + " | ".join(cells) + " |")
    lines += ["", "## All results", "",
              "| family | n | s | ord | noise | seed | budget | method | R² uni | R² nf | P | R | terms | evals | time s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for m, e in r["results"].items():
            if m in ABLATIONS:
                continue
            if "error" in e:
                lines.append(f"| {r['family']} | {r['n']} | {r['s']} | {r['max_order']} | {r['noise']} | {r['seed']}{_model_cell(r)} | "
                             f"{r['budget']} | {m} | error: {e['error'][:80]} |||||||")
                continue
            lines.append(
                f"| {r['family']} | {r['n']} | {r['s']} | {r['max_order']} | {r['noise']} | {r['seed']}{_model_cell(r)} | {r['budget']} | {m} | "
                f"{_fmt(e.get('r2_uniform'))} | {_fmt(e.get('r2_near_full'))} | {_fmt(e.get('precision'), 2)} | "
                f"{_fmt(e.get('recall'), 2)} | {e.get('n_terms')} | {e.get('n_evaluations')} | {_fmt(e.get('wall_seconds'), 1)} |")
    if meta.get("skipped"):
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in meta["skipped"]]
    return "\n".join(lines) + "\n"


def _config_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a configuration's row (for ``--replace``)."""
    return row["family"], row["n"], row["budget"], row.get("seed", 0), row.get("model", 0)


def _seed(row: dict[str, Any]) -> str:
    """`` seed=k`` for replicate rows and `` model=k`` for the induction family's other trained
    models (seed 0 and model 0 are the grid's own, left unsaid)."""
    seed = f" seed={row['seed']}" if row.get("seed", 0) else ""
    return seed + (f" model={row['model']}" if row.get("model", 0) else "")


def _model_cell(row: dict[str, Any]) -> str:
    """`` (model k)`` after the seed in the results table for the induction family's other models."""
    return f" (model {row['model']})" if row.get("model", 0) else ""


def _r2(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key) if entry and "error" not in entry else None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


#: The log-probability families: a user fitting one passes link='auto' (headspex_auto rows).
LOGPROB_FAMILIES = ("induction", "logsigmoid")


def _headspex_entry(row: dict[str, Any], policy: str) -> dict[str, Any]:
    """headspex's result in ``row`` under ``policy``: ``"default"`` (link='identity') or ``"auto"``
    (link='auto' on the log-probability families, the default elsewhere)."""
    res = row["results"]
    if policy == "auto" and row["family"] in LOGPROB_FAMILIES and "headspex_auto" in res:
        return res["headspex_auto"]
    return res.get("headspex", {})


def _engine2_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 12's targets, each with the figure reached."""
    out = ["## Engine II targets (issue 12)", ""]
    out += _versus_rivals(rows, "default", "")
    out += ["", "With link='auto' on the log-probability families (logsigmoid, induction; "
            "`headspex_auto` rows), the default elsewhere:", ""]
    out += _versus_rivals(rows, "auto", " (link='auto' on log-probabilities)")
    out += [""]
    return out + _engine2_fixed_targets(rows)


def _versus_rivals(rows: list[dict[str, Any]], policy: str, label: str) -> list[str]:
    """The shapiq and LASSO comparisons of headspex under ``policy`` (see :func:`_headspex_entry`)."""
    out: list[str] = []
    wins, losses, small = 0, [], []
    for r in rows:
        res = r["results"]
        h = _headspex_entry(r, policy)
        for key in ("r2_uniform", "r2_near_full"):
            mine = _r2(h, key)
            rivals = {m: _r2(res.get(m, {}), key) for m in ("shapiq_proxyspex", "shapiq_spex")}
            rivals = {m: v for m, v in rivals.items() if v is not None}
            if mine is None or not rivals:
                continue
            best_m = max(rivals, key=rivals.get)
            line = (f"{r['family']} n={r['n']} budget={r['budget']}{_seed(r)} {key[3:]}: headspex {mine:.4f} vs "
                    f"{best_m} {rivals[best_m]:.4f}")
            if mine >= rivals[best_m] - 1e-4:
                wins += 1
            elif r["budget"] >= 500:
                losses.append(line + f" (short by {rivals[best_m] - mine:.4f})")
            else:
                small.append(line + f" (short by {rivals[best_m] - mine:.4f})")
    total = wins + len(losses) + len(small)
    out.append(f"- **R² ≥ best of shapiq ProxySPEX and SPEX**{label} (uniform and near-full; ties within 1e-4 count): "
               f"{wins}/{total} comparisons met." + (" Misses at budget ≥ 500:" if losses else ""))
    out += [f"  - {x}" for x in losses]
    if small:
        out.append("  Misses at budget < 500:")
        out += [f"  - {x}" for x in small]
    lasso_losses = []
    for r in rows:
        h, lasso = _headspex_entry(r, policy), r["results"].get("lasso", {})
        for key in ("r2_uniform", "r2_near_full"):
            if _r2(h, key) is not None and _r2(lasso, key) is not None and _r2(h, key) < _r2(lasso, key) - 1e-4:
                lasso_losses.append(f"{r['family']} n={r['n']} budget={r['budget']}{_seed(r)} {key[3:]}: "
                                    f"{_r2(h, key):.4f} < lasso {_r2(lasso, key):.4f}")
    n_lasso = sum(1 for r in rows if "lasso" in r["results"] and "error" not in r["results"]["lasso"])
    out.append(f"- **Never below the LASSO baseline**{label}: {2 * n_lasso - len(lasso_losses)}/{2 * n_lasso} met"
               + (":" if lasso_losses else "."))
    out += [f"  - {x}" for x in lasso_losses]
    return out


def _engine2_fixed_targets(rows: list[dict[str, Any]]) -> list[str]:
    """The targets with a fixed bar (redundancy, flat, saturating, trained model)."""
    out: list[str] = []

    def figure(family, n, budget, key="r2_near_full", method="headspex"):
        for r in rows:
            if r["family"] == family and r["n"] == n and r["budget"] == budget:
                return _r2(r["results"].get(method, {}), key)
        return None

    checks = [
        ("Redundancy n=8, near-full R² ≥ 0.9 with ≤ 64 masks (¼ of 2^8)", "redundancy", 8, 64, "r2_near_full", 0.9),
        ("Redundancy n=64, near-full R² ≥ 0.9 with 1000 masks", "redundancy", 64, 1000, "r2_near_full", 0.9),
        ("Flat (parity) n=512, R² ≥ 0.99 with 2000 masks (uniform)", "parity", 512, 2000, "r2_uniform", 0.99),
        ("Flat (parity) n=512, R² ≥ 0.99 with 2000 masks (near-full)", "parity", 512, 2000, "r2_near_full", 0.99),
        ("Saturating (logsigmoid) n=128, R² ≥ 0.95 with 2000 masks (uniform)", "logsigmoid", 128, 2000, "r2_uniform", 0.95),
        ("Saturating (logsigmoid) n=128, R² ≥ 0.95 with 2000 masks (near-full)", "logsigmoid", 128, 2000, "r2_near_full", 0.95),
    ]
    saturating = [(f"{c[0]}, headspex with link='auto'", *c[1:], "headspex_auto") for c in checks if c[1] == "logsigmoid"]
    # The redundancy target's own example is the trained model with 8 heads: held to it too.
    trained = "Trained induction model n=8, near-full (unseen masks, 1-3 heads ablated) R² ≥ 0.9 with 64 masks"
    checks = [(*c, "headspex") for c in checks] + saturating + [
        (f"{trained}, headspex", "induction", 8, 64, "r2_near_full", 0.9, "headspex"),
        (f"{trained}, headspex with link='logodds'", "induction", 8, 64, "r2_near_full", 0.9, "headspex_logodds"),
        (f"{trained}, headspex with link='auto'", "induction", 8, 64, "r2_near_full", 0.9, "headspex_auto"),
    ]
    for label, family, n, budget, key, goal, method in checks:
        value = figure(family, n, budget, key, method)
        verdict = "not run" if value is None else ("met" if value >= goal else "NOT met")
        out.append(f"- **{label}**: {_fmt(value, 4)} — {verdict}")
        same = [r for r in rows if (r["family"], r["n"], r["budget"]) == (family, n, budget)]
        by_model: dict[int, list[float]] = {}
        for r in same:
            value = _r2(r["results"].get(method, {}), key)
            if value is not None:
                by_model.setdefault(r.get("model", 0), []).append(value)
        replicates = [v for values in by_model.values() for v in values]
        if len(replicates) > 1:  # other designs (seeds) and, for the induction family, other trained models
            what = ("designs (seeds)" if len(by_model) == 1
                    else f"(model, design) pairs over {len(by_model)} trained models")
            out.append(f"  - over {len(replicates)} {what}: mean {np.mean(replicates):.4f}, min "
                       f"{min(replicates):.4f}, {sum(v >= goal for v in replicates)} of {len(replicates)} met")
            if len(by_model) > 1:
                out.append("    - per model (its designs' min / mean, met): " + "; ".join(
                    f"model {m}: {min(v):.3f} / {np.mean(v):.3f}, {sum(x >= goal for x in v)} of {len(v)}"
                    for m, v in sorted(by_model.items())))
    out += ["", "### Trained induction model (8 heads, exact values over all 256 masks)", "",
            "uni = R² on every mask the method did not evaluate; nf = on the unseen masks with 1-3 heads ablated; "
            "≤2 = on all 37 masks with ≤ 2 heads ablated (seen or not: where pruning decides); regret k = true "
            "value of the best k-head removal minus that of the removal the fit ranks best (nats).", "",
            "| budget | method | uni | nf | ≤2 | regret k=1 / 2 / 3 | winner |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["family"] != "induction":
            continue
        for m, e in r["results"].items():
            if "error" in e:
                out.append(f"| {r['budget']}{_seed(r)} | {m} | error: {e['error'][:60]} |||||")
                continue
            regrets = " / ".join(_fmt(e.get(f"regret_k{k}"), 3) for k in (1, 2, 3))
            link = f" (link {e['link']})" if m == "headspex_auto" and "link" in e else ""
            out.append(f"| {r['budget']}{_seed(r)} | {m} | {_fmt(e.get('r2_uniform'))} | {_fmt(e.get('r2_near_full'))} | "
                       f"{_fmt(e.get('r2_le2_all'))} | {regrets} | {e.get('winner', '')}{link} |")
    out += ["", "### Which candidate set and basis won (headspex)", "",
            "| family | n | budget | winner | adaptive winner |", "|---|---|---|---|---|"]
    for r in rows:
        h = r["results"].get("headspex", {})
        a = r["results"].get("headspex_adaptive", {})
        out.append(f"| {r['family']} | {r['n']} | {r['budget']} | {h.get('winner', '–')} | {a.get('winner', '–')} |")
    return out


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    out = _engine2_targets(rows) + ["", "## Targets of the first engine issue", ""]
    # 1. R² >= shapiq ProxySPEX everywhere.
    comparisons, losses = 0, []
    for r in rows:
        h, s = r["results"].get("headspex", {}), r["results"].get("shapiq_proxyspex", {})
        if "error" in h or "error" in s or not h or not s:
            continue
        for key in ("r2_uniform", "r2_near_full"):
            comparisons += 1
            if h[key] < s[key]:
                losses.append(f"{r['family']} n={r['n']} s={r['s']} budget={r['budget']}{_seed(r)} {key}: "
                              f"headspex {h[key]:.4f} < shapiq {s[key]:.4f} (by {s[key] - h[key]:.4f})")
    out.append(f"1. **R² ≥ shapiq ProxySPEX at every budget/family (uniform and near-full)**: "
               f"{comparisons - len(losses)}/{comparisons} comparisons met." + ("" if not losses else " Misses:"))
    out += [f"   - {x}" for x in losses]
    # 2. Non-hierarchical AND, n=64, s=10: R² >= 0.99 with <= 500 samples.
    hits = [r for r in rows if r["family"] == "and" and r["n"] == 64 and r["s"] == 10 and r["max_order"] == 3
            and r["budget"] <= 500 and r["noise"] > 0]
    for r in sorted(hits, key=lambda r: (r["seed"], r["budget"])):
        h = r["results"].get("headspex", {})
        sp = r["results"].get("shapiq_spex", {})
        out.append(f"2. **non-hierarchical AND, n=64, s=10, noise 0.05, budget {r['budget']} (seed {r['seed']})**: "
                   f"headspex R² uni {_fmt(h.get('r2_uniform'), 4)} / nf {_fmt(h.get('r2_near_full'), 4)} "
                   f"(target ≥ 0.99); shapiq SPEX {_fmt(sp.get('r2_uniform'), 4)} / {_fmt(sp.get('r2_near_full'), 4)}"
                   + (f" [SPEX: {sp['error'][:60]}]" if 'error' in sp else ""))
    # 3. Fit time at n = 1024, 5000 samples.
    for r in rows:
        if r["n"] == 1024 and r["budget"] == 5000:
            h, s = r["results"].get("headspex", {}), r["results"].get("shapiq_proxyspex", {})
            if "wall_seconds" in h and "wall_seconds" in s:
                out.append(f"3. **fit time n=1024, 5000 samples**: headspex {h['wall_seconds']:.1f} s vs shapiq ProxySPEX "
                           f"{s['wall_seconds']:.1f} s = {h['wall_seconds'] / s['wall_seconds']:.3f}x (target ≤ 0.2x); "
                           f"R² uni {_fmt(h.get('r2_uniform'), 4)} vs {_fmt(s.get('r2_uniform'), 4)}, "
                           f"nf {_fmt(h.get('r2_near_full'), 4)} vs {_fmt(s.get('r2_near_full'), 4)}")
    # Mean R² per family across budgets (headline).
    out += ["", "### Mean R² per family (configurations where all three ran)", "",
            "| family | configs | headspex uni / nf | shapiq ProxySPEX uni / nf | shapiq SPEX uni / nf |", "|---|---|---|---|---|"]
    for fam in sorted({r["family"] for r in rows}):
        sel = [r for r in rows if r["family"] == fam and all(
            m in r["results"] and "error" not in r["results"][m] for m in ("headspex", "shapiq_proxyspex", "shapiq_spex"))]
        if not sel:
            continue
        cells = []
        for m in ("headspex", "shapiq_proxyspex", "shapiq_spex"):
            u = np.mean([r["results"][m]["r2_uniform"] for r in sel])
            nf = np.mean([r["results"][m]["r2_near_full"] for r in sel])
            cells.append(f"{u:.3f} / {nf:.3f}")
        out.append(f"| {fam} | {len(sel)} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small grid (a few minutes)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the Markdown from the JSON")
    parser.add_argument("--out", default=str(RESULTS / "engine"), help="output path without extension")
    parser.add_argument("--max-minutes", type=float, default=25.0, help="stop starting new configurations after this")
    parser.add_argument("--only", default=None,
                        help="comma-separated family:n[:budget] filters, e.g. 'logsigmoid:128,and:1024' (others skipped)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds: run every selected configuration once per seed (replicates)")
    parser.add_argument("--models", default=None,
                        help="comma-separated induction model seeds (benchmarks/data/induction_tables.json): run every "
                             "selected induction configuration once per trained model (other families once)")
    parser.add_argument("--append", action="store_true",
                        help="add the rows to the existing JSON (a second process run after a cut one)")
    parser.add_argument("--replace", action="store_true",
                        help="with --append: a new row takes the place of the saved row of the same family, n, "
                             "budget and seed (rerun configurations after a change without duplicating them)")
    parser.add_argument("--headspex-only", action="store_true",
                        help="with --append --replace: refit only headspex's entries of the selected rows, keep "
                             "the saved rivals' (shapiq, LASSO) and print each changed R² and winner")
    args = parser.parse_args()
    if args.replace and not args.append:
        parser.error("--replace needs --append")
    if args.headspex_only and not args.replace:
        parser.error("--headspex-only needs --append --replace (it completes saved rows)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        data = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(write_report(data["rows"], data["meta"]))
        return
    grid = build_grid(args.quick)
    if args.only:
        wanted = [tuple(part.split(":")) for part in args.only.split(",")]
        grid = [c for c in grid if any(c["family"] == w[0] and str(c["n"]) == w[1] and (len(w) < 3 or str(c["budget"]) == w[2])
                                       for w in wanted)]
    if args.seeds:
        grid = [{**c, "seed": int(seed)} for c in grid for seed in args.seeds.split(",")]
    if args.models:
        grid = [{**c, "model": int(model)} for c in grid
                for model in (args.models.split(",") if c["family"] == "induction" else ["0"])]
    meta = {"mode": "quick" if args.quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()}, {platform.python_version()}, {__import__('os').cpu_count()} cores",
            "n_planned": len(grid), "skipped": [
                "shapiq SPEX at n > 256 and at budgets > 1000 (40-260 s per fit on this shared machine), "
                "except the two configurations the issue names (parity n=512 and logsigmoid n=128 at 2000)",
                "LASSO baseline for n > 512 (its order is lowered automatically above 64 players)",
                "one seed per configuration, and the old families only at n = 64 (500, 1000) and n = 256 "
                "(250, 1000), in that priority: trimmed so the run fits 25 min on 2 shared cores"]}
    rows: list[dict[str, Any]] = []
    if args.append and out.with_suffix(".json").exists():
        previous = json.loads(out.with_suffix(".json").read_text())
        rows = previous["rows"]
        meta["n_planned"] = previous["meta"].get("n_planned", meta["n_planned"])
        suffix = " (before the appended runs)"
        meta["skipped"] = [line + suffix if "not started" in line and not line.endswith(suffix) else line
                           for line in previous["meta"].get("skipped", meta["skipped"])]
        meta["appended"] = previous["meta"].get("appended", []) + [f"{args.only or 'all'} ({meta['started']})"]
    start = time.time()
    for i, cfg in enumerate(grid):
        if (time.time() - start) / 60 > args.max_minutes:
            meta["skipped"].append(f"{len(grid) - i} configurations not started (time limit {args.max_minutes} min)")
            break
        row = run_config(cfg, headspex_only=args.headspex_only)
        same = [j for j, old in enumerate(rows) if args.replace and _config_key(old) == _config_key(row)]
        if same and args.headspex_only:
            saved = rows[same[0]]["results"]
            for method, entry in row["results"].items():
                before = saved.get(method, {})
                moved = [f"{key} {_fmt(before.get(key), 4)} -> {_fmt(entry.get(key), 4)}"
                         for key in ("r2_uniform", "r2_near_full", "winner")
                         if _fmt(before.get(key), 4) != _fmt(entry.get(key), 4)]
                print(f"  {method}: " + ("; ".join(moved) if moved else "unchanged"), flush=True)
            row["results"] = {**saved, **row["results"]}
            rows[same[0]] = row
        elif same:
            rows[same[0]] = row
        else:
            rows.append(row)
        brief = {m: (round(e.get("r2_uniform", float("nan")), 4), round(e.get("r2_near_full", float("nan")), 4),
                     round(e.get("wall_seconds", float("nan")), 1)) if "error" not in e else "ERR"
                 for m, e in row["results"].items()}
        print(f"[{i + 1}/{len(grid)} {(time.time() - start) / 60:.1f} min] {cfg['family']} n={cfg['n']} s={cfg['s']} "
              f"ord={cfg['max_order']} noise={cfg['noise']} budget={cfg['budget']}: {brief}", flush=True)
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
        out.with_suffix(".md").write_text(write_report(rows, meta))
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    out.with_suffix(".md").write_text(write_report(rows, meta))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
