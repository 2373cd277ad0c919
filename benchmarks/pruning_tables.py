"""Markdown tables of one pruning result at equal cost: metrics, evaluations spent, pairwise verdicts.

    python benchmarks/pruning_tables.py docs/results/pruning_marketing_equalcost60.json
    python benchmarks/pruning_tables.py RUN.json OTHER_SEED.json ...   # replication table

Reads the ``evaluation.json`` that :func:`headspex.pruning.prune` writes (``rows`` with
``evaluations``, ``paired_all``) and prints: per strategy and k the held-out log-prob and
accuracy with 95 % bootstrap intervals, the change against the unpruned model, and the
attribution-game evaluations spent; then, for the interaction-informed strategies, wins / ties
/ losses against every other strategy (a win or loss needs the paired interval to exclude 0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _cell(c: dict[str, float], digits: int = 3) -> str:
    return f"{c['mean']:+.{digits}f} [{c['lo']:+.{digits}f}, {c['hi']:+.{digits}f}]"


def metric_table(result: dict[str, Any]) -> list[str]:
    """One row per (strategy, k): evaluations, log-prob, Δ log-prob, accuracy, Δ accuracy."""
    lines = ["| strategy | k | evaluations | log p | Δ log p vs unpruned | accuracy | Δ accuracy vs unpruned |",
             "|---|---|---|---|---|---|---|"]
    for row in sorted(result["rows"], key=lambda r: (r["k"], r["strategy"])):
        d = row["delta_vs_unpruned"]
        lines.append(f"| {row['strategy']} | {row['k']} | {row.get('evaluations', '?')} | {_cell(row['logprob'])} | "
                     f"{_cell(d['logprob'])} | {_cell(row['accuracy'])} | {_cell(d['accuracy'])} |")
    return lines


def verdict_table(result: dict[str, Any], ours: str, metric: str) -> list[str]:
    """``ours`` vs every other strategy: wins / ties / losses over k on ``metric``, with the ks."""
    tallies: dict[str, dict[str, list[int]]] = {}
    for p in result["paired_all"]:
        if p["b"] == "unpruned" or ours not in (p["a"], p["b"]):
            continue
        other, sign = (p["b"], 1.0) if p["a"] == ours else (p["a"], -1.0)
        lo, hi = sorted((sign * p[metric]["lo"], sign * p[metric]["hi"]))
        verdict = "W" if lo > 0 else "L" if hi < 0 else "T"
        tallies.setdefault(other, {"W": [], "T": [], "L": []})[verdict].append(p["k"])
    lines = [f"| {ours} vs | wins (k) | ties | losses (k) |", "|---|---|---|---|"]
    for other, t in sorted(tallies.items()):
        lines.append(f"| {other} | {len(t['W'])} {sorted(t['W']) or ''} | {len(t['T'])} | {len(t['L'])} {sorted(t['L']) or ''} |")
    return lines


def _evaluations(result: dict[str, Any]) -> dict[tuple[str, int], int]:
    return {(r["strategy"], int(r["k"])): int(r.get("evaluations", 0)) for r in result["rows"]}


def equal_cost_table(result: dict[str, Any], ours: str, metric: str) -> list[str]:
    """``ours`` vs every other strategy on ``metric``, each paired verdict split by who paid more.

    A win or loss needs the paired 95 % interval to exclude 0. "win, cheaper or equal" means
    ``ours`` spent at most the other's evaluations at that k; "win, paid more" that it spent more
    (so at equal cost it might not win); likewise "loss, paid more or equal" is a plain loss and
    "loss, cheaper" a loss that a smaller budget might excuse.
    """
    spent = _evaluations(result)
    cells: dict[str, dict[str, list[str]]] = {}
    for p in result["paired_all"]:
        if p["b"] == "unpruned" or ours not in (p["a"], p["b"]):
            continue
        other, sign = (p["b"], 1.0) if p["a"] == ours else (p["a"], -1.0)
        k = int(p["k"])
        lo, hi = sorted((sign * p[metric]["lo"], sign * p[metric]["hi"]))
        mine, theirs = spent.get((ours, k), 0), spent.get((other, k), 0)
        cheaper = mine <= theirs
        kind = ("win_cheaper" if cheaper else "win_dearer") if lo > 0 else \
               ("loss_cheaper" if mine < theirs else "loss_dearer") if hi < 0 else "tie"
        cells.setdefault(other, {key: [] for key in ("win_cheaper", "win_dearer", "tie", "loss_dearer", "loss_cheaper")})
        cells[other][kind].append(f"{k} ({mine} vs {theirs})")
    lines = [f"| {ours} vs | win, cheaper or equal: k (evals ours vs theirs) | win, paid more | ties | "
             "loss, paid more or equal | loss, cheaper |", "|---|---|---|---|---|---|"]
    for other, c in sorted(cells.items()):
        lines.append(f"| {other} | {', '.join(c['win_cheaper']) or '–'} | {', '.join(c['win_dearer']) or '–'} | "
                     f"{len(c['tie'])} | {', '.join(c['loss_dearer']) or '–'} | {', '.join(c['loss_cheaper']) or '–'} |")
    return lines


def replication_table(results: list[dict[str, Any]], labels: list[str], metric: str) -> list[str]:
    """Δ ``metric`` vs unpruned of every (strategy, k) in each run side by side; ``*`` marks an
    interval that excludes 0, and the last column says whether the runs agree on a significant rise."""
    by_run = [{(r["strategy"], int(r["k"])): r["delta_vs_unpruned"][metric] for r in result["rows"]} for result in results]
    keys = sorted(set().union(*by_run), key=lambda key: (key[1], key[0]))
    lines = ["| strategy | k | " + " | ".join(f"Δ {metric} ({label})" for label in labels) + " | rise in every run |",
             "|---|---|" + "---|" * len(labels) + "---|"]
    for key in keys:
        cells, rises = [], []
        for run in by_run:
            if key not in run:
                cells.append("–")
                rises.append(False)
                continue
            c = run[key]
            cells.append(_cell(c) + (" *" if c["lo"] > 0 or c["hi"] < 0 else ""))
            rises.append(c["lo"] > 0)
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {'yes' if all(rises) else ''} |")
    return lines


def main(path: str, *others: str) -> None:
    if others:  # replication: the same protocol on other split seeds or subjects
        paths = [path, *others]
        results = [json.loads(Path(p).read_text()) for p in paths]
        labels = [Path(p).stem.removeprefix("pruning_") for p in paths]
        for metric in ("accuracy", "logprob"):
            print(f"**Δ {metric} vs unpruned, per run** (* = 95 % interval excludes 0)\n")
            print("\n".join(replication_table(results, labels, metric)) + "\n")
        return
    result = json.loads(Path(path).read_text())
    u = result["unpruned"]
    print(f"Unpruned: log p {u['logprob']['mean']:.3f} [{u['logprob']['lo']:.3f}, {u['logprob']['hi']:.3f}], "
          f"accuracy {u['accuracy']['mean']:.3f} [{u['accuracy']['lo']:.3f}, {u['accuracy']['hi']:.3f}]; "
          f"{result['n_questions']} held-out questions; value function {result.get('value_function', {}).get('metric')}\n")
    print("\n".join(metric_table(result)) + "\n")
    for ours in ("verify_refine", "proxyspex"):
        for metric in ("logprob", "accuracy"):
            print(f"**{ours}, {metric}**\n")
            print("\n".join(verdict_table(result, ours, metric)) + "\n")
            print(f"**{ours}, {metric}, by cost** (evaluations of the attribution game at that k)\n")
            print("\n".join(equal_cost_table(result, ours, metric)) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
