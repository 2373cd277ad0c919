"""Figures of attribution runs and pruning evaluations (matplotlib, Agg backend: files only).

Every function takes plain data (or an :class:`~headspex.attribution.AttributionRun`), draws
one figure, writes it to ``path`` when given, and returns the ``Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files (CLI, CI, notebooks re-enable inline)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    plt.close(fig)  # keep long runs from accumulating open figures
    return fig


def head_heatmap(
    layers: Sequence[int],
    grid: np.ndarray,
    title: str = "Single-head Banzhaf values",
    units_label: str = "value",
    path: str | Path | None = None,
) -> Figure:
    """Layer × head heatmap of single-head values.

    Args:
        layers: layer index of each grid row.
        grid: float[len(layers), n_heads] (NaN = not attributed); diverging colours
            centred at 0 (red = keeping the head raises the metric).
        units_label: colour-bar label (e.g. "Δ log-prob (nats)").
    """
    grid = np.asarray(grid, dtype=float)
    finite = grid[np.isfinite(grid)]
    bound = float(np.max(np.abs(finite))) if finite.size else 1.0
    bound = bound or 1.0
    height = 1.5 + 0.28 * max(len(layers), 1)
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * max(grid.shape[1], 1), min(height, 14)))
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_yticks(range(len(layers)), [f"L{layer}" for layer in layers])
    ax.set_xticks(range(grid.shape[1]), [f"H{h}" for h in range(grid.shape[1])])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=units_label)
    return _finish(fig, path)


def structure_profile(per_layer: Sequence[dict[str, Any]], path: str | Path | None = None,
                      title: str = "Linear vs interaction share of the Fourier energy per layer") -> Figure:
    """Stacked bars per layer: linear, within-layer and across-layer shares of the energy.

    Rows are :func:`headspex.structure.run_structure`'s ``per_layer`` entries; when several
    units cover a layer the first is drawn. Held-out R² of the first-order and full fits are
    overlaid as markers when present.
    """
    by_layer: dict[int, dict[str, Any]] = {}
    for row in per_layer:
        by_layer.setdefault(int(row["layer"]), row)
    layers = sorted(by_layer)
    rows = [by_layer[layer] for layer in layers]

    def column(key: str) -> np.ndarray:
        return np.array([row.get(key, float("nan")) for row in rows], dtype=float)

    linear, within, across = column("linear_share"), column("within_layer_share"), column("across_layer_share")
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.32 * len(layers) + 2.5), 3.6))
    ax.bar(x, np.nan_to_num(linear), color="#4c72b0", label="linear (order 1)")
    ax.bar(x, np.nan_to_num(within), bottom=np.nan_to_num(linear), color="#dd8452", label="within-layer interactions")
    ax.bar(x, np.nan_to_num(across), bottom=np.nan_to_num(linear + within), color="#55a868",
           label="across-layer interactions")
    first, full = column("r2_first_order"), column("r2_full")
    if np.any(np.isfinite(first)):
        ax.plot(x, first, "kv", markersize=4, label="held-out R², first-order fit")
        ax.plot(x, full, "k^", markersize=4, fillstyle="none", label="held-out R², full fit")
    ax.set_xticks(x, [str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("share of variance (uniform masks)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left", framealpha=0.85)
    return _finish(fig, path)


def top_interactions(top: Sequence[dict[str, Any]], path: str | Path | None = None, title: str = "Top terms",
                     interval_key: str | None = None, k: int = 12) -> Figure:
    """Horizontal bars of the largest Fourier terms with their bootstrap intervals.

    Args:
        top: the ``top`` entries of a unit (``players``, ``fourier``, ``interval_*``).
        interval_key: ``"interval_questions"`` / ``"interval_masks"`` (default: the first present).
        k: at most this many bars.
    """
    rows = list(top)[:k]
    if interval_key is None:
        interval_key = next((key for key in ("interval_questions", "interval_masks") if rows and key in rows[0]), None)
    labels = [" × ".join(row["players"]) for row in rows]
    values = np.array([row["fourier"] for row in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.32 * max(len(rows), 1)))
    y = np.arange(len(rows))[::-1]
    colours = ["#dd8452" if row["order"] >= 2 else "#4c72b0" for row in rows]
    if interval_key is not None and rows:
        intervals = np.array([row[interval_key] for row in rows], dtype=float)
        errors = np.abs(np.stack([values - intervals[:, 0], intervals[:, 1] - values]))
        ax.barh(y, values, color=colours, xerr=errors, capsize=3)
    else:
        ax.barh(y, values, color=colours)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("Fourier coefficient (metric units)" + (f"; bars: {interval_key.split('_')[1]} bootstrap" if interval_key else ""))
    ax.set_title(title + "  (blue: single head, orange: interaction)", fontsize=9)
    return _finish(fig, path)


def exact_vs_proxy(rows: Sequence[dict[str, Any]], path: str | Path | None = None) -> Figure:
    """Per layer: R² of ProxySPEX against the exact function and top-term overlap.

    Args:
        rows: dicts with ``layer`` and an ``exact_comparison`` dict (``r2_all_masks``,
            ``top_overlap``, ``banzhaf_pearson``, ``budget``).
    """
    rows = sorted(rows, key=lambda r: r["layer"])
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(rows) + 2.5), 3.2))
    width = 0.27
    for offset, key, label in ((-width, "r2_all_masks", "R² vs exact (all masks)"),
                               (0.0, "top_overlap", "top-k overlap"),
                               (width, "banzhaf_pearson", "Banzhaf Pearson r")):
        values = [r["exact_comparison"].get(key) for r in rows]
        values = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
        ax.bar(x + offset, values, width, label=label)
    ax.set_xticks(x, [f"L{r['layer']}\n({r['exact_comparison']['budget']} masks)" for r in rows], fontsize=8)
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
    ax.set_title("ProxySPEX at a smaller budget vs exact enumeration", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _finish(fig, path)


def faithfulness_profile(rows: Sequence[dict[str, Any]], path: str | Path | None = None) -> Figure:
    """Held-out faithfulness (R²) per unit; rows have ``label`` and a ``faithfulness`` dict."""
    labels = [row["label"] for row in rows]
    keys = sorted({key for row in rows for key in row["faithfulness"]})
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * len(rows) + 2.5), 3.2))
    for key, marker in zip(keys, "os^v"):
        values = [row["faithfulness"].get(key) for row in rows]
        ax.plot(x, [v if v is not None else float("nan") for v in values], marker=marker, linestyle="-", label=key)
    ax.set_xticks(x, labels, rotation=90 if len(rows) > 8 else 0, fontsize=7)
    ax.set_ylabel("held-out R²")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
    ax.set_title("Faithfulness of the recovered interactions", fontsize=9)
    ax.legend(fontsize=7)
    return _finish(fig, path)


def run_figures(run: Any, structure: dict[str, Any] | None, directory: str | Path) -> dict[str, str]:
    """Draw every figure of a run into ``directory``.

    Returns:
        ``{figure name: file name}`` (relative to ``directory``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metric = run.meta.get("config", {}).get("metric", "metric")
    written: dict[str, str] = {}
    layers, _, grid = run.head_values("banzhaf")
    if len(layers):
        head_heatmap(layers, grid, units_label=f"Banzhaf value (Δ {metric})", path=directory / "head_banzhaf.png")
        written["head_banzhaf"] = "head_banzhaf.png"
    if structure is not None and structure.get("per_layer"):
        structure_profile(structure["per_layer"], path=directory / "structure_profile.png")
        written["structure_profile"] = "structure_profile.png"
    faith_rows = [{"label": unit.name.replace("layer_", "L"), "faithfulness": unit.faithfulness}
                  for unit in run.units.values() if unit.engine.method != "exhaustive"]
    if faith_rows:
        faithfulness_profile(faith_rows, path=directory / "faithfulness.png")
        written["faithfulness"] = "faithfulness.png"
    comparisons = [{"layer": unit.player_layers[0], "exact_comparison": unit.exact_comparison}
                   for unit in run.units.values() if unit.exact_comparison]
    if comparisons:
        exact_vs_proxy(comparisons, path=directory / "exact_vs_proxy.png")
        written["exact_vs_proxy"] = "exact_vs_proxy.png"
    for unit in run.units.values():
        if unit.top:
            name = f"top_{unit.name}.png"
            top_interactions(unit.top, path=directory / name, title=f"Top terms, {unit.name}")
            written[f"top_{unit.name}"] = name
    return written


def plot_curves(evaluation: Mapping[str, Any], path: str | Path, title: str = "", n_candidates: int | None = 4) -> Figure:
    """Held-out accuracy, calibrated accuracy (where measured) and log-prob vs pruned heads (PNG).

    ``n_candidates`` (4 for MMLU) draws the uniform-guess level: accuracy 1/c, log-prob −log c.
    """
    from .pruning.evaluate import EVAL_METRICS

    metrics = list(evaluation.get("metrics", EVAL_METRICS))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.7 * len(metrics), 5))
    strategies = list(dict.fromkeys(r["strategy"] for r in evaluation["rows"]))
    cmap = plt.get_cmap("tab10")
    for ax, metric in zip(axes, metrics):
        base = evaluation["unpruned"][metric]
        ax.axhspan(base["lo"], base["hi"], color="0.85", label="unpruned 95% CI")
        ax.axhline(base["mean"], color="0.4", lw=1)
        if n_candidates:
            chance = -math.log(n_candidates) if metric == "logprob" else 1.0 / n_candidates
            ax.axhline(chance, color="k", ls=":", lw=1, label=f"uniform guess over {n_candidates}")
        for s_index, strategy in enumerate(strategies):
            rows = sorted((r for r in evaluation["rows"] if r["strategy"] == strategy), key=lambda r: r["k"])
            ks = np.array([r["k"] for r in rows], dtype=float)
            offset = 1.0 + 0.03 * (s_index - len(strategies) / 2)  # spread overlapping error bars
            mean = np.array([r[metric]["mean"] for r in rows])
            err = np.array([[r[metric]["mean"] - r[metric]["lo"] for r in rows], [r[metric]["hi"] - r[metric]["mean"] for r in rows]])
            style = dict(lw=2.5, marker="o") if s_index == 0 else dict(lw=1.2, marker=".")
            ax.errorbar(ks * offset, mean, yerr=err, label=strategy, color=cmap(s_index % 10), capsize=2, **style)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("pruned heads k")
        ax.set_ylabel({"accuracy": "accuracy", "calibrated_accuracy": "calibrated accuracy",
                       "logprob": "mean log p(correct answer) [nats]"}[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
