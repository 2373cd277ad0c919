"""Render a run directory to Markdown or HTML: configuration, faithfulness, single-head values,
top interactions with bootstrap intervals, exact-vs-ProxySPEX agreement, layerwise structure.

The document is built once as a list of blocks (heading, paragraph, table, figure) and
rendered by a small writer per format, so both formats always hold the same content.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .attribution.rundir import FAITHFULNESS_THRESHOLD, fit_is_trusted, held_out_r2
from .errors import ReportError
from .structure import untrusted_sentence

FORMATS: tuple[str, ...] = ("markdown", "html")


@dataclass
class Block:
    """One piece of the report: ``kind`` in heading / text / table / figure."""

    kind: str
    text: str = ""
    level: int = 2
    header: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _interval(pair: Sequence[float] | None) -> str:
    return "–" if not pair else f"[{_fmt(pair[0])}, {_fmt(pair[1])}]"


def build_blocks(run: Any, structure: dict[str, Any] | None, figures: dict[str, str], figure_prefix: str = "") -> list[Block]:
    """The report's content for an :class:`~headspex.attribution.AttributionRun`."""
    meta, config = run.meta, run.meta.get("config", {})
    task = meta.get("task", {})
    blocks = [Block("heading", "headspex attribution report", level=1)]
    n_questions = next((u.n_questions for u in run.units.values()), None)
    blocks.append(Block("table", header=("setting", "value"), rows=[
        ("model", meta.get("model", "?")),
        ("task", task.get("name", task.get("task", "?")) if isinstance(task, dict) else task),
        ("split / questions per mask", f"{config.get('split')} / {n_questions}"),
        ("ablation mode / metric", f"{config.get('mode')} / {config.get('metric')}"),
        ("scope / layers", f"{config.get('scope')} / {config.get('layers') if config.get('layers') is not None else 'all'}"),
        ("method / masks per unit",
         f"exact: all 2^n masks; ProxySPEX on {config.get('compare_budget')} of them for comparison"
         if config.get("method") == "exact" else
         f"ProxySPEX (max order {config.get('max_order')}): {config.get('budget')} fit + {config.get('n_test')} held-out "
         "per distribution (uniform, near-full)"),
        ("seed / bootstrap replicates", f"{config.get('seed')} / {config.get('n_bootstrap')} ({config.get('confidence')} intervals)"),
        ("units finished", f"{len(run.units)} of {len(meta.get('units', []))}"),
        ("evaluation time (s)", _fmt(sum(u.seconds for u in run.units.values()), 1)),
    ]))
    blocks.append(Block("text", "Values are in metric units (for `logprob`: nats of the correct answer's "
                        "log-probability among the candidates). A Banzhaf value is the mean change of the "
                        "metric when the head is kept rather than ablated, over random states of the other "
                        "players. A Fourier coefficient F(S) of order >= 2 is an interaction; 2^|S| F(S) is its "
                        "Banzhaf interaction index."))
    blocks += _trust_warning(run)
    blocks += _faithfulness_section(run, figures, figure_prefix)
    blocks += _comparison_section(run, figures, figure_prefix)
    blocks += _single_head_section(run, figures, figure_prefix)
    blocks += _top_interaction_section(run, figures, figure_prefix)
    if structure is not None:
        blocks += _structure_section(structure, figures, figure_prefix)
    return blocks


def _untrusted_units(run: Any) -> list[dict[str, Any]]:
    return [{"name": u.name, "held_out_r2": held_out_r2(u.faithfulness)} for u in run.units.values()
            if not fit_is_trusted(u.faithfulness)]


def _trust_warning(run: Any) -> list[Block]:
    """A plain warning when some fit is below the faithfulness threshold (nothing otherwise)."""
    untrusted = _untrusted_units(run)
    if not untrusted:
        return []
    sentence = untrusted_sentence(untrusted)
    return [Block("text", f"**Warning: not to be trusted.** {sentence[0].upper()}{sentence[1:]}. Rankings and "
                  "interactions of those units are shown for diagnosis only.")]


def _faithfulness_section(run: Any, figures: dict[str, str], figure_prefix: str) -> list[Block]:
    """Held-out R² per unit."""
    blocks: list[Block] = []
    blocks.append(Block("heading", "Faithfulness (held-out R²)"))
    rows = []
    for unit in run.units.values():
        faith = unit.faithfulness
        rows.append((unit.name, len(unit.players), unit.engine.method, len(unit.engine.masks), len(unit.engine.interactions),
                     _fmt(faith.get("uniform", faith.get("exact"))), _fmt(faith.get("near_full")),
                     fit_is_trusted(faith), _fmt(unit.seconds, 1)))
    blocks.append(Block("table", header=("unit", "players", "method", "fit masks", "terms", "R² uniform",
                                          "R² near-full", f"trusted (R² >= {FAITHFULNESS_THRESHOLD})", "seconds"),
                        rows=rows))
    if "faithfulness" in figures:
        blocks.append(Block("figure", figure_prefix + figures["faithfulness"], header=("faithfulness per unit",)))
    return blocks


def _comparison_section(run: Any, figures: dict[str, str], figure_prefix: str) -> list[Block]:
    """ProxySPEX against exact enumeration (units with a comparison only)."""
    blocks: list[Block] = []
    comparisons = [(u, u.exact_comparison) for u in run.units.values() if u.exact_comparison]
    if comparisons:
        blocks.append(Block("heading", "ProxySPEX vs exact enumeration"))
        blocks.append(Block("text", "ProxySPEX fitted on a subset of the masks, compared with the exact Fourier "
                            "transform over all 2^n masks (R² of the two functions on every mask; overlap of the "
                            "top-k terms; Pearson r of the Banzhaf values)."))
        blocks.append(Block("table", header=("unit", "ProxySPEX masks", "all masks", "R² vs exact", "top-k overlap",
                                              "top-k overlap (order>=2)", "Banzhaf r", "max |ΔBanzhaf|"),
                            rows=[(u.name, c["budget"], c["n_all_masks"], _fmt(c["r2_all_masks"]), _fmt(c["top_overlap"], 2),
                                   _fmt(c["top2_overlap"], 2), _fmt(c["banzhaf_pearson"]), _fmt(c["banzhaf_max_abs_diff"]))
                                  for u, c in comparisons]))
        if "exact_vs_proxy" in figures:
            blocks.append(Block("figure", figure_prefix + figures["exact_vs_proxy"], header=("exact vs ProxySPEX",)))
    return blocks


def _single_head_section(run: Any, figures: dict[str, str], figure_prefix: str) -> list[Block]:
    """The heads with the largest |Banzhaf value|."""
    blocks: list[Block] = []
    blocks.append(Block("heading", "Single-head values"))
    if "head_banzhaf" in figures:
        blocks.append(Block("figure", figure_prefix + figures["head_banzhaf"], header=("layer × head Banzhaf values",)))
    head_rows = []
    for unit in run.units.values():
        boot = unit.intervals.get("questions") or unit.intervals.get("masks") or {}
        for i, name in enumerate(unit.players):
            interval = boot.get("banzhaf", [None] * len(unit.players))[i] if boot else None
            head_rows.append((abs(unit.banzhaf[i]), (name, _fmt(float(unit.banzhaf[i])), _interval(interval),
                                                     _fmt(float(unit.shapley[i])),
                                                     _fmt(held_out_r2(unit.faithfulness)))))
    head_rows.sort(key=lambda r: -r[0])
    blocks.append(Block("text", f"The {min(15, len(head_rows))} heads with the largest |Banzhaf value| "
                        "(interval: bootstrap over questions, or over masks when there is one question; "
                        "'–' where the unit has none: its top interactions say why)."))
    blocks.append(Block("table", header=("head", "Banzhaf", "interval", "Shapley", "unit fit R²"),
                        rows=[r for _, r in head_rows[:15]]))
    return blocks


def _top_interaction_section(run: Any, figures: dict[str, str], figure_prefix: str) -> list[Block]:
    """Per unit, the largest interaction terms."""
    blocks: list[Block] = []
    blocks.append(Block("heading", "Top interactions"))
    blocks.append(Block("text", "Per unit, the largest Fourier terms (single heads included for scale). "
                        "'real' = the bootstrap interval excludes 0 (over questions / over masks)."))
    for unit in run.units.values():
        interactions_only = [t for t in unit.top if t["order"] >= 2][:8]
        if not interactions_only:
            continue
        trust = "" if fit_is_trusted(unit.faithfulness) else " (fit below the faithfulness threshold: not to be trusted)"
        blocks.append(Block("heading", f"{unit.name}, held-out R² {_fmt(held_out_r2(unit.faithfulness))}{trust}",
                            level=3))
        for over, reason in unit.intervals.get("unavailable", {}).items():
            blocks.append(Block("text", f"No bootstrap intervals over {over}: {reason}."))
        blocks.append(Block("table", header=("term", "order", "Fourier", "Banzhaf index", "within layer",
                                              "interval (questions)", "interval (masks)", "real"),
                            rows=[(" × ".join(t["players"]), t["order"], _fmt(t["fourier"]), _fmt(t["banzhaf_interaction"]),
                                   t["within_layer"], _interval(t.get("interval_questions")), _interval(t.get("interval_masks")),
                                   "/".join(_fmt(t[k]) for k in ("significant_questions", "significant_masks") if k in t) or "–")
                                  for t in interactions_only]))
        key = f"top_{unit.name}"
        if key in figures:
            blocks.append(Block("figure", figure_prefix + figures[key], header=(f"top terms of {unit.name}",)))
    return blocks


def _structure_section(structure: dict[str, Any], figures: dict[str, str], figure_prefix: str) -> list[Block]:
    """Layerwise linear / within-layer / across-layer split and the layer claim."""
    blocks: list[Block] = []
    blocks.append(Block("heading", "Layerwise structure"))
    blocks.append(Block("text", "Share of the variance over uniform masks (Fourier energy) carried by single heads "
                        "(linear), by interactions inside one layer and by interactions across layers; held-out R² "
                        "of an additive fit next to the full sparse fit."))
    rows = [(r["layer"], r["unit"], _fmt(r["linear_share"]), _fmt(r["within_layer_share"]), _fmt(r["across_layer_share"]),
             _interval(r.get("interaction_share_interval_questions")),
             _fmt(r.get("r2_first_order")), _fmt(r.get("r2_full")), _fmt(r["total_energy"], 3))
            for r in structure["per_layer"]]
    blocks.append(Block("table", header=("layer", "unit", "linear", "within-layer", "across-layer",
                                          "interaction share interval (questions)", "R² first-order",
                                          "R² full", "variance"), rows=rows))
    claim = structure.get("claim", {})
    blocks.append(Block("text", "Claim \"early layers act almost linearly, late layers are dominated by "
                        f"interactions\": **{claim.get('verdict', 'not tested')}** (Spearman ρ of layer vs interaction "
                        f"share = {_fmt(claim.get('spearman_layer_vs_interaction_share'))}; mean interaction share "
                        f"early {_fmt(claim.get('early_mean_interaction_share'))}, late "
                        f"{_fmt(claim.get('late_mean_interaction_share'))})."))
    if "structure_profile" in figures:
        blocks.append(Block("figure", figure_prefix + figures["structure_profile"], header=("structure profile",)))
    return blocks


def to_markdown(blocks: Sequence[Block]) -> str:
    """Markdown rendering of the blocks."""
    out: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            out.append("#" * block.level + " " + block.text)
        elif block.kind == "text":
            out.append(block.text)
        elif block.kind == "table":
            out.append("| " + " | ".join(str(h).replace("|", "\\|") for h in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            for row in block.rows:
                out.append("| " + " | ".join(_fmt(c) if not isinstance(c, str) else c.replace("|", "\\|") for c in row) + " |")
        elif block.kind == "figure":
            out.append(f"![{block.header[0] if block.header else ''}]({block.text})")
        out.append("")
    return "\n".join(out)


def to_html(blocks: Sequence[Block]) -> str:
    """Standalone HTML rendering of the blocks (images referenced by relative path)."""
    body: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif block.kind == "text":
            text = html.escape(block.text)
            # The only inline markup the blocks use: **bold** and `code`.
            while "**" in text:
                text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
            while text.count("`") >= 2:
                text = text.replace("`", "<code>", 1).replace("`", "</code>", 1)
            body.append(f"<p>{text}</p>")
        elif block.kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c if isinstance(c, str) else _fmt(c))}</td>" for c in row)
                           + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif block.kind == "figure":
            alt = html.escape(block.header[0] if block.header else "")
            body.append(f'<figure><img src="{html.escape(block.text)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;}table{border-collapse:collapse;margin:1em 0;}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;}img{max-width:100%;}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>headspex report</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def write_report(run_dir: str | Path, fmt: str = "markdown", output: str | Path | None = None,
                 structure: dict[str, Any] | None = None) -> Path:
    """Render a run directory: compute structure (if not given), draw figures, write the report.

    Args:
        run_dir: a run directory written by :func:`headspex.attribution.attribute`.
        fmt: ``"markdown"`` or ``"html"``.
        output: report path (default ``run_dir/report.md`` or ``report.html``).
        structure: a precomputed :func:`headspex.structure.run_structure` result; when None it is
            read from ``run_dir/structure.json`` or computed (and saved there).

    Returns:
        The report path. Figures go to ``run_dir/figures/``.
    """
    from .attribution import AttributionRun
    from .plots import run_figures
    from .structure import load_structure, run_structure, save_structure

    if fmt not in FORMATS:
        raise ReportError(f"report format must be one of {FORMATS}; got '{fmt}'")
    run_dir = Path(run_dir)
    run = AttributionRun.load(run_dir)
    if not run.units:
        raise ReportError(f"{run_dir} has no finished unit yet: nothing to report")
    if structure is None:
        structure_path = run_dir / "structure.json"
        if structure_path.exists():
            structure = load_structure(structure_path)
        else:
            structure = run_structure(run)
            save_structure(structure, structure_path)
    figures = run_figures(run, structure, run_dir / "figures")
    output = Path(output) if output is not None else run_dir / ("report.md" if fmt == "markdown" else "report.html")
    # Figures are linked relative to the report so the folder can be moved or committed as is.
    prefix = Path("figures")
    try:
        prefix = (run_dir / "figures").resolve().relative_to(output.parent.resolve())
    except ValueError:
        import os

        prefix = Path(os.path.relpath((run_dir / "figures").resolve(), output.parent.resolve()))
    blocks = build_blocks(run, structure, figures, figure_prefix=f"{prefix.as_posix()}/")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(to_markdown(blocks) if fmt == "markdown" else to_html(blocks))
    return output
