"""The Markdown tables of one pruning result (``summary.md``)."""

from __future__ import annotations

from typing import Any

from .evaluate import EVAL_METRICS


def _fmt(cell: dict[str, float], digits: int = 3) -> str:
    return f"{cell['mean']:.{digits}f} [{cell['lo']:.{digits}f}, {cell['hi']:.{digits}f}]"


def summary_markdown(result: dict[str, Any]) -> str:
    """Tables of one group's result: metrics per (strategy, k) and paired differences."""
    lines = [f"Held-out questions: {result['n_questions']}; 95% percentile bootstrap over questions "
             f"({result['n_bootstrap']} resamples, seed {result['bootstrap_seed']}).", ""]
    unpruned = result["unpruned"]
    metrics = list(result.get("metrics", EVAL_METRICS))
    lines.append("Unpruned: " + ", ".join(f"{m} {_fmt(unpruned[m])}" for m in metrics))
    lines.append("")
    lines += surrogate_warning(result)
    if "value_function" in result:
        vf = result["value_function"]
        lines += [f"Attribution value function: **{vf['metric']}** ({vf['why']}).", ""]
    if result.get("evaluations_spent"):
        lines += ["**Attribution-game evaluations spent** (masks; attribution fit masks included where a "
                  "strategy reuses them)", "", "| strategy | " + " | ".join(f"k={k}" for k in result["ks"]) + " |",
                  "|---|" + "---|" * len(result["ks"])]
        for strategy, by_k in result["evaluations_spent"].items():
            by_k = {int(k): v for k, v in by_k.items()}
            lines.append(f"| {strategy} | " + " | ".join(str(by_k[k]) if k in by_k else "–" for k in result["ks"]) + " |")
        lines.append("")
    for metric in metrics:
        lines += [f"**{metric}** (held out)", "", "| strategy | " + " | ".join(f"k={k}" for k in result["ks"]) + " |",
                  "|---|" + "---|" * len(result["ks"])]
        strategies = list(dict.fromkeys(r["strategy"] for r in result["rows"]))
        for strategy in strategies:
            cells = {r["k"]: r for r in result["rows"] if r["strategy"] == strategy}
            lines.append(f"| {strategy} | " + " | ".join(_fmt(cells[k][metric]) if k in cells else "–" for k in result["ks"]) + " |")
        lines.append("")
    if result.get("paired"):
        names = {"logprob": "Δ logprob", "accuracy": "Δ accuracy", "calibrated_accuracy": "Δ calibrated acc."}
        shown = [m for m in ("logprob", "accuracy", "calibrated_accuracy") if m in metrics]
        lines += ["**proxyspex − baseline, paired (held-out log-prob, nats; accuracy)**", "",
                  "| baseline | k | " + " | ".join(names[m] for m in shown) + " |", "|---|---|" + "---|" * len(shown)]
        for row in result["paired"]:
            lines.append(f"| {row['strategy']} | {row['k']} | " + " | ".join(_fmt(row[m]) for m in shown) + " |")
        lines.append("")
        lines.append("Wins/ties/losses of proxyspex (a win or loss needs the paired 95% interval to exclude 0):")
        lines.append("")
        for metric, tally in result["verdicts"].items():
            lines.append(f"- {metric}: " + "; ".join(f"vs {s}: {t['wins']}W/{t['ties']}T/{t['losses']}L" for s, t in tally.items()))
        lines.append("")
    lines += ["**Changes against the unpruned model (paired over questions)**", ""]
    for metric in metrics:
        up = [f"{r['strategy']} k={r['k']} (+{r['delta_vs_unpruned'][metric]['mean']:.3f})" for r in result["rows"]
              if r["delta_vs_unpruned"][metric]["lo"] > 0]
        best = max(result["rows"], key=lambda r: r[metric]["mean"])
        lines.append(f"- {metric}: significant rises: {', '.join(up) if up else 'none'}; highest point estimate "
                     f"{best['strategy']} k={best['k']} {_fmt(best[metric])} vs unpruned {_fmt(result['unpruned'][metric])}")
    lines.append("")
    return "\n".join(lines)


def surrogate_warning(result: dict[str, Any]) -> list[str]:
    """Summary lines warning that the attribution fit is below the faithfulness threshold
    (``result["surrogate_trusted"]`` False), or none."""
    if result.get("surrogate_trusted") is not False:
        return []
    r2 = result.get("faithfulness", {}).get("uniform")
    return [f"**Warning: the attribution fit is not to be trusted** (held-out R² {r2} < "
            f"{result.get('faithfulness_threshold')}): the surrogate strategies' choices are no better than "
            "guesses here.", ""]
