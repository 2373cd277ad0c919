"""Layerwise structure: how much of a behaviour is linear in the heads, and how much comes
from interactions (and, across layers, whether those interactions stay inside one layer).

Two measures per unit, both in the units of the metric:

* **Fourier energy by order.** With masks drawn uniformly (each head kept w.p. 1/2) the
  variance of the value function is ``sum_{S != ()} F(S)^2`` and splits exactly by the order
  ``|S|`` of the terms. The *linear share* is the order-1 energy over the total; the
  *interaction share* is the rest. Terms of order >= 2 are further split into
  *within-layer* (all their players in one layer) and *across-layer*.
* **Held-out R².** A first-order (additive) least-squares fit on the same fit masks is
  scored on the held-out masks next to the full sparse fit; the gap is the part of the
  behaviour a linear attribution cannot explain, measured on data the fits never saw
  (so it is not inflated by overfitting the interaction terms).

A unit whose fit has a held-out R² below ``FAITHFULNESS_THRESHOLD`` (0.5) is marked
``trusted: false``, and then no verdict on the layer claim is issued.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ReportError
from .engine import EngineResult, Interactions, all_masks, basis_matrix, r2_score
from .engine.candidates import least_squares
from .engine.interactions import subsets_up_to_order
from .engine.links import require_identity_link
from .attribution.rundir import FAITHFULNESS_THRESHOLD, fit_is_trusted, held_out_r2

STRUCTURE_FORMAT = "headspex.structure/1"


def energy_split(interactions: Interactions, player_layers: Sequence[int]) -> dict[str, Any]:
    """Split the Fourier energy (variance under uniform masks) of a function.

    Args:
        interactions: any basis (converted to Fourier exactly).
        player_layers: layer of each player, n entries.

    Returns:
        ``total`` (sum of F(S)^2 over S != ()), ``linear``, ``within_layer``, ``across_layer``
        (energies in metric units squared), their ``*_share`` (fractions of ``total``; NaN
        when total is 0), and ``by_order`` ``{order: energy}``.
    """
    if len(player_layers) != interactions.n_players:
        raise ReportError(
            f"player_layers has {len(player_layers)} entries but the interactions have {interactions.n_players} players"
        )
    four = interactions.to_fourier()
    linear = within = across = 0.0
    by_order: dict[int, float] = defaultdict(float)
    for subset, coefficient in zip(four.subsets, four.coefficients):
        if not subset:
            continue
        energy = float(coefficient) ** 2
        by_order[len(subset)] += energy
        if len(subset) == 1:
            linear += energy
        elif len({player_layers[i] for i in subset}) == 1:
            within += energy
        else:
            across += energy
    total = linear + within + across

    def share(x: float) -> float:
        return x / total if total > 0 else float("nan")

    return {
        "total": total,
        "linear": linear,
        "within_layer": within,
        "across_layer": across,
        "linear_share": share(linear),
        "interaction_share": share(within + across),
        "within_layer_share": share(within),
        "across_layer_share": share(across),
        "by_order": dict(sorted(by_order.items())),
    }


def per_layer_energy(interactions: Interactions, player_layers: Sequence[int]) -> dict[int, dict[str, float]]:
    """Energy of the terms that touch each layer.

    For every layer L: ``linear`` = energy of L's single heads, ``within_layer`` = energy of
    interaction terms whose players are all in L, ``across_layer`` = energy of interaction terms
    with a player in L and one elsewhere (counted for every layer they touch), and the shares
    of the three within L's row.
    """
    four = interactions.to_fourier()
    rows: dict[int, dict[str, float]] = {
        layer: {"linear": 0.0, "within_layer": 0.0, "across_layer": 0.0} for layer in sorted(set(player_layers))
    }
    for subset, coefficient in zip(four.subsets, four.coefficients):
        if not subset:
            continue
        energy = float(coefficient) ** 2
        touched = {player_layers[i] for i in subset}
        if len(subset) == 1:
            rows[player_layers[subset[0]]]["linear"] += energy
        elif len(touched) == 1:
            rows[next(iter(touched))]["within_layer"] += energy
        else:
            for layer in touched:
                rows[layer]["across_layer"] += energy
    for row in rows.values():
        total = row["linear"] + row["within_layer"] + row["across_layer"]
        row["total"] = total
        for key in ("linear", "within_layer", "across_layer"):
            row[f"{key}_share"] = row[key] / total if total > 0 else float("nan")
        row["interaction_share"] = (
            (row["within_layer"] + row["across_layer"]) / total if total > 0 else float("nan")
        )
    return rows


def first_order_r2(engine: EngineResult) -> dict[str, dict[str, float]]:
    """Held-out R² of an additive (first-order) fit next to the full sparse fit.

    The first-order fit is least squares on ``engine.masks`` / ``engine.values``. Both are
    scored per held-out distribution (``engine.test_labels``). For the exhaustive method (no
    held-out masks: every mask is a fit mask and the full fit is exact) both are scored on all
    2^n masks, where the first-order R² equals the linear energy share.

    Returns:
        ``{label: {"first_order": R², "full": R², "gap": full - first_order}}``.
    """
    require_identity_link(engine, "the structure report")
    n = engine.masks.shape[1]
    linear_support = subsets_up_to_order(n, 1)
    design = basis_matrix(engine.masks, linear_support, "fourier")
    coefficients = least_squares(design, engine.values)
    out: dict[str, dict[str, float]] = {}
    if engine.method == "exhaustive" or len(engine.test_masks) == 0:
        if engine.method != "exhaustive":
            return out
        masks = all_masks(n)
        predicted = basis_matrix(masks, linear_support, "fourier") @ coefficients
        first = r2_score(engine.interactions(masks), predicted)
        return {"all_masks": {"first_order": first, "full": 1.0, "gap": 1.0 - first}}
    labels = np.asarray(engine.test_labels).astype(str)
    for label in sorted(set(labels.tolist())):
        rows = labels == label
        masks, values = engine.test_masks[rows], engine.test_values[rows]
        first = r2_score(values, basis_matrix(masks, linear_support, "fourier") @ coefficients)
        full = r2_score(values, engine.interactions(masks))
        out[label] = {"first_order": first, "full": full, "gap": full - first}
    return out


def unit_structure(name: str, interactions: Interactions, player_layers: Sequence[int],
                   engine: EngineResult | None = None) -> dict[str, Any]:
    """Structure of one unit: energy split, per-layer energy, and held-out R² comparison."""
    layers = sorted(set(player_layers))
    return {
        "name": name,
        "layers": layers,
        "n_players": interactions.n_players,
        "energy": energy_split(interactions, player_layers),
        "per_layer": {str(k): v for k, v in per_layer_energy(interactions, player_layers).items()},
        "r2": first_order_r2(engine) if engine is not None else {},
    }


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with < 3 finite pairs."""
    pairs = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return float("nan")

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="mergesort")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=float)
        values_arr = np.asarray(values)
        for v in np.unique(values_arr):  # average ranks of ties
            r[values_arr == v] = r[values_arr == v].mean()
        return r

    a, b = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def layer_claim(per_layer: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Test "early layers act almost linearly, later layers are dominated by within-layer
    interactions" on per-layer rows (each with ``layer``, ``interaction_share``,
    ``within_layer_share``).

    Returns:
        Spearman correlation of the interaction share with the layer index, mean shares of the
        first and last third of the layers, and a one-line ``verdict``.
    """
    rows = sorted((r for r in per_layer if math.isfinite(r.get("interaction_share", float("nan")))),
                  key=lambda r: r["layer"])
    if len(rows) < 3:
        return {"verdict": "fewer than 3 layers with a nonzero signal: the claim cannot be tested", "n_layers": len(rows)}
    third = max(1, len(rows) // 3)
    early, late = rows[:third], rows[-third:]
    early_share = float(np.mean([r["interaction_share"] for r in early]))
    late_share = float(np.mean([r["interaction_share"] for r in late]))
    rho = spearman([r["layer"] for r in rows], [r["interaction_share"] for r in rows])
    supported = rho > 0.3 and late_share > 0.5 and early_share < 0.5 * late_share
    if supported:
        verdict = "supported: interaction share rises with depth and dominates the late layers"
    elif rho > 0.3:
        verdict = "partly: interaction share rises with depth, but the contrast is weaker than claimed"
    elif rho < -0.3:
        verdict = "contradicted: interaction share falls with depth"
    else:
        verdict = "not supported: no clear trend of the interaction share with depth"
    return {
        "n_layers": len(rows),
        "spearman_layer_vs_interaction_share": rho,
        "early_layers": [r["layer"] for r in early],
        "late_layers": [r["layer"] for r in late],
        "early_mean_interaction_share": early_share,
        "late_mean_interaction_share": late_share,
        "verdict": verdict,
    }


def share_intervals(subsets: Sequence[tuple[int, ...]], replicates: np.ndarray, player_layers: Sequence[int],
                    confidence: float = 0.95) -> dict[str, list[float]]:
    """Percentile intervals of the linear / within-layer / across-layer shares over bootstrap
    replicates of the Fourier coefficients.

    Args:
        subsets: the T Fourier subsets (support) the replicates refer to.
        replicates: float[T, B] coefficient replicates (``bootstrap_*.npz`` of a unit).
        player_layers: layer of each player.

    Returns:
        ``{"linear_share": [lo, hi], "within_layer_share": [...], "across_layer_share": [...]}``.
    """
    kind = np.array([0 if len(s) == 0 else 1 if len(s) == 1 else
                     2 if len({player_layers[i] for i in s}) == 1 else 3 for s in subsets])
    energy = replicates**2
    parts = {name: energy[kind == k].sum(axis=0) for name, k in (("linear", 1), ("within_layer", 2), ("across_layer", 3))}
    total = parts["linear"] + parts["within_layer"] + parts["across_layer"]
    tail = 50.0 * (1.0 - confidence)
    out = {}
    for name, values in parts.items():
        share = np.divide(values, total, out=np.full_like(values, np.nan), where=total > 0)
        out[f"{name}_share"] = [float(np.nanpercentile(share, tail)), float(np.nanpercentile(share, 100 - tail))]
    return out


def _bootstrap_share_intervals(unit: Any, directory: Path | None, confidence: float) -> dict[str, Any]:
    """Share intervals from a unit's saved bootstrap replicates (questions, then masks)."""
    if directory is None:
        return {}
    out = {}
    for over in ("questions", "masks"):
        path = directory / f"bootstrap_{over}.npz"
        # Only the kinds the unit has intervals of: a refused or stale kind's file is not this fit's.
        if over in unit.intervals and path.exists():
            with np.load(path) as data:
                # The replicates' own subsets: a refit's model can reach terms the estimate has at 0.
                subsets = [tuple(json.loads(text)) for text in data["subsets"].tolist()]
                replicates = data["replicates"]
            if replicates.shape[0] == len(subsets):
                out[over] = share_intervals(subsets, replicates, unit.player_layers, confidence)
    return out


def run_structure(run: Any) -> dict[str, Any]:
    """Structure of every finished unit of an :class:`~headspex.attribution.AttributionRun`.

    Returns:
        ``units`` (one :func:`unit_structure` each), ``per_layer`` rows (layer, unit, shares,
        first-order and full held-out R²; from per-layer units when the run has them, else
        from the per-layer energy of the group / all-heads units) and ``claim``
        (:func:`layer_claim`).
    """
    units = []
    per_layer = []
    for unit in run.units.values():
        structure = unit_structure(unit.name, unit.interactions, unit.player_layers, unit.engine)
        unit_dir = Path(run.directory) / "units" / unit.name if getattr(run, "directory", None) else None
        confidence = float(run.meta.get("config", {}).get("confidence", 0.95)) if hasattr(run, "meta") else 0.95
        structure["share_intervals"] = _bootstrap_share_intervals(unit, unit_dir, confidence)
        structure["held_out_r2"] = held_out_r2(unit.faithfulness)
        structure["trusted"] = fit_is_trusted(unit.faithfulness)
        units.append(structure)
        r2 = structure["r2"]
        key = "uniform" if "uniform" in r2 else ("all_masks" if "all_masks" in r2 else None)
        for layer_text, row in structure["per_layer"].items():
            entry = {
                "layer": int(layer_text),
                "unit": unit.name,
                "linear_share": row["linear_share"],
                "interaction_share": row["interaction_share"],
                "within_layer_share": row["within_layer_share"],
                "across_layer_share": row["across_layer_share"],
                "total_energy": row["total"],
                "trusted": structure["trusted"],
            }
            if len(structure["layers"]) == 1 and key is not None:
                entry["r2_first_order"] = r2[key]["first_order"]
                entry["r2_full"] = r2[key]["full"]
            if len(structure["layers"]) == 1 and "questions" in structure["share_intervals"]:
                entry["interaction_share_interval_questions"] = [
                    1.0 - x for x in reversed(structure["share_intervals"]["questions"]["linear_share"])]
            per_layer.append(entry)
    per_layer.sort(key=lambda r: r["layer"])
    untrusted = [u for u in units if not u["trusted"]]
    claim = layer_claim(per_layer)
    if untrusted:
        # A verdict drawn from fits that do not reproduce unseen masks would be a plausible wrong answer.
        claim = {"verdict": "not issued: " + untrusted_sentence(untrusted), "n_layers": claim.get("n_layers")}
    faithfulness = {"threshold": FAITHFULNESS_THRESHOLD, "untrusted_units": [u["name"] for u in untrusted],
                    "held_out_r2": {u["name"]: u["held_out_r2"] for u in units}}
    return {"format": STRUCTURE_FORMAT, "units": units, "per_layer": per_layer, "claim": claim,
            "faithfulness": faithfulness}


def untrusted_sentence(units: Sequence[dict[str, Any]]) -> str:
    """One sentence naming units whose fit is below the faithfulness threshold (dicts with name, held_out_r2)."""
    listed = ", ".join(f"{u['name']} (R² {u['held_out_r2']:.2f})" for u in units[:5])
    more = f" and {len(units) - 5} more" if len(units) > 5 else ""
    return (f"the fits of {listed}{more} have held-out R² below {FAITHFULNESS_THRESHOLD} and do not reproduce the "
            "behaviour on masks they never saw, so their values, rankings, interactions and structure are not to be "
            "trusted; raise the budget or use fewer players per unit")


def save_structure(structure: dict[str, Any], path: str | Path) -> None:
    """Write a structure dict as JSON (NaN written as null)."""
    Path(path).write_text(json.dumps(_finite(structure), indent=1))


def load_structure(path: str | Path) -> dict[str, Any]:
    """Read what :func:`save_structure` wrote (null read back as NaN for the share fields)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != STRUCTURE_FORMAT:
        raise ReportError(f"{path} is not a headspex structure file (format {data.get('format')!r})")
    for row in data.get("per_layer", []):
        for key, value in list(row.items()):
            if value is None:
                row[key] = float("nan")
    return data


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
