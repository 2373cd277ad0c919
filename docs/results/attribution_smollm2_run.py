"""The reduced SmolLM2-135M attribution run behind docs/results/attribution_smollm2.md.

Run from the repository root:  python docs/results/attribution_smollm2_run.py [PART ...]
Each part writes a resumable run directory under runs/results/ (rerunning resumes), then its
structure.json, figures and report. Units run late layers first (the cheapest).
"""

from __future__ import annotations

import sys
import time

from headspex.attribution import AttributionConfig, attribute_units, model_game_factory, model_meta, plan_units
from headspex.components import heads
from headspex.models import load_model
from headspex.report import write_report
from headspex.structure import run_structure, save_structure
from headspex.tasks import MMLUTask

QUESTIONS, REFERENCE = 4, 8
PARTS = [
    # (run name, subject, layers, config overrides), in execution order; inside a part the
    # runner does late layers first. Early layers cost the most (a forward through every later
    # block per row), so the early pair is its own part and runs before the mid layers.
    ("marketing_exact", "marketing", [27, 28, 29], dict(method="exact", compare_budget=128, n_test=32)),
    ("marketing_proxyspex_early", "marketing", [8, 14], dict(method="proxyspex", budget=80, n_test=16)),
    ("hsush_proxyspex", "high_school_us_history", [28, 29], dict(method="proxyspex", budget=80, n_test=16)),
    ("marketing_proxyspex_mid", "marketing", [18, 21, 23, 25, 26], dict(method="proxyspex", budget=80, n_test=16)),
    # The remaining 20 layers, same settings: first a spread over depth, then the rest.
    ("marketing_proxyspex_spread", "marketing", [0, 4, 11, 16, 20, 24], dict(method="proxyspex", budget=80, n_test=16)),
    ("marketing_proxyspex_fill", "marketing", [1, 2, 3, 5, 6, 7, 9, 10, 12, 13, 15, 17, 19, 22],
     dict(method="proxyspex", budget=80, n_test=16)),
    # One group of 3 layers (27 heads as players): within- vs across-layer interactions.
    ("marketing_group_27-29", "marketing", [27, 28, 29],
     dict(scope="group", group_size=3, method="proxyspex", budget=200, n_test=25)),
]


def main(wanted: list[str]) -> None:
    start = time.perf_counter()
    model = load_model("smollm2-135m")
    print(f"model loaded in {time.perf_counter() - start:.0f} s", flush=True)
    for name, subject, layers, overrides in PARTS:
        if wanted and name not in wanted:
            continue
        task = MMLUTask(model.tokenizer, subject, source="auto", n_reference=REFERENCE, n_attribution=QUESTIONS)
        overrides = {"scope": "layer", **overrides}
        config = AttributionConfig(layers=layers, n_questions=QUESTIONS, n_bootstrap=200,
                                   mode="mean", metric="logprob", estimator_options={"n_jobs": 1}, **overrides)
        units = plan_units({layer: heads(model, [layer]).names for layer in layers}, config.scope, config.group_size)
        run_dir = f"runs/results/{name}"
        run = attribute_units(units, model_game_factory(model, task, config), config, run_dir,
                              model_meta(model, task, config), progress=False,
                              log=lambda line: print(f"  [{time.perf_counter() - start:5.0f} s] {line}", flush=True))
        structure = run_structure(run)
        save_structure(structure, f"{run_dir}/structure.json")
        write_report(run_dir, structure=structure)
        print(f"{name}: done, {time.perf_counter() - start:.0f} s since start", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
