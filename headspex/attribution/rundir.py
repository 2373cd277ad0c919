"""Run directories: one finished unit (``unit.json`` + ``engine/``), a whole run (``run.json``).

Every JSON file carries a ``format`` version and is written atomically (temporary file, then
rename), so a killed run leaves whole files or none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import AttributionConfig, AttributionError
from ..components import Players
from ..engine import EngineResult, Interactions
from ..io import to_jsonable

RUN_FORMAT = "headspex.attribution.Run/1"
UNIT_FORMAT = "headspex.attribution.Unit/1"


def read_versioned_json(path: Path, expected_format: str, what: str) -> dict[str, Any]:
    """Read a headspex JSON file, checking it exists and carries ``expected_format``."""
    if not path.exists():
        raise AttributionError(f"{path.parent} is not a headspex {what} (no {path.name})")
    data = json.loads(path.read_text())
    if data.get("format") != expected_format:
        raise AttributionError(f"{path} is not a headspex {what} (format {data.get('format')!r})")
    return data


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` (made JSON-safe) to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(to_jsonable(data), indent=1))
    os.replace(temporary, path)


@dataclass
class UnitResult:
    """Everything computed for one unit.

    Attributes:
        name, players, player_layers: the unit (players in mask-column order).
        engine: the estimator's :class:`EngineResult` (exhaustive one when ``method="exact"``).
        banzhaf, shapley: float[n] single-head values in metric units (nats for logprob).
        intervals: ``{"questions"|"masks": {"banzhaf": [[lo, hi]]*n, "shapley": ..., "top": [...]}}``.
        top: top interaction terms (order >= 1) as dicts with names, indices, Fourier
            coefficient, Banzhaf interaction index and intervals.
        exact_comparison: distance of ProxySPEX at ``compare_budget`` from the exact answer.
        seconds: wall time of the unit; n_evaluated_masks: masks sent to the game in this process.
        n_questions: questions per mask value.
    """

    name: str
    players: list[str]
    player_layers: list[int]
    engine: EngineResult
    banzhaf: np.ndarray
    shapley: np.ndarray
    intervals: dict[str, Any] = field(default_factory=dict)
    top: list[dict[str, Any]] = field(default_factory=list)
    exact_comparison: dict[str, Any] | None = None
    seconds: float = 0.0
    n_evaluated_masks: int = 0
    n_questions: int = 0
    game: dict[str, Any] | None = None

    @property
    def interactions(self) -> Interactions:
        """The recovered interactions (Fourier basis)."""
        return self.engine.interactions.to_fourier()

    @property
    def faithfulness(self) -> dict[str, float]:
        """Held-out R² per test distribution (``{"exact": 1.0}`` for the exhaustive method)."""
        if self.engine.method == "exhaustive":
            return {"exact": 1.0}
        return dict(self.engine.faithfulness)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (what ``unit.json`` holds)."""
        return {
            "format": UNIT_FORMAT,
            "name": self.name,
            "players": self.players,
            "player_layers": self.player_layers,
            "method": self.engine.method,
            "n_terms": len(self.engine.interactions),
            "n_fit_masks": int(len(self.engine.masks)),
            "n_test_masks": int(len(self.engine.test_masks)),
            "faithfulness": self.faithfulness,
            "banzhaf": self.banzhaf.tolist(),
            "shapley": self.shapley.tolist(),
            "intervals": self.intervals,
            "top": self.top,
            "exact_comparison": self.exact_comparison,
            "energy_by_order": {str(k): v for k, v in self.interactions.energy_by_order().items()},
            "seconds": self.seconds,
            "n_evaluated_masks": self.n_evaluated_masks,
            "n_questions": self.n_questions,
            "game": self.game,
        }

    def save(self, directory: Path) -> None:
        """Write ``engine/`` then ``unit.json`` (last, so its presence means "finished")."""
        directory.mkdir(parents=True, exist_ok=True)
        self.engine.save(directory / "engine")
        write_json_atomic(directory / "unit.json", self.summary())

    @classmethod
    def load(cls, directory: Path) -> UnitResult:
        """Inverse of :meth:`save`."""
        data = read_versioned_json(directory / "unit.json", UNIT_FORMAT, "finished unit")
        return cls(
            name=data["name"],
            players=list(data["players"]),
            player_layers=[int(x) for x in data["player_layers"]],
            engine=EngineResult.load(directory / "engine"),
            banzhaf=np.asarray(data["banzhaf"], dtype=np.float64),
            shapley=np.asarray(data["shapley"], dtype=np.float64),
            intervals=data.get("intervals", {}),
            top=data.get("top", []),
            exact_comparison=data.get("exact_comparison"),
            seconds=float(data.get("seconds", 0.0)),
            n_evaluated_masks=int(data.get("n_evaluated_masks", 0)),
            n_questions=int(data.get("n_questions", 0)),
            game=data.get("game"),
        )



@dataclass
class AttributionRun:
    """A run directory in memory: its metadata and the finished units (in plan order)."""

    directory: Path
    meta: dict[str, Any]
    units: dict[str, UnitResult]

    @property
    def config(self) -> AttributionConfig:
        """The run's :class:`AttributionConfig`."""
        return AttributionConfig(**self.meta["config"])

    @property
    def complete(self) -> bool:
        """True when every planned unit has finished."""
        return all(u["name"] in self.units for u in self.meta["units"])

    @classmethod
    def load(cls, directory: str | Path) -> AttributionRun:
        """Read ``run.json`` and every finished unit of a run directory."""
        directory = Path(directory)
        meta = read_versioned_json(directory / "run.json", RUN_FORMAT, "run directory")
        units = {}
        for unit in meta["units"]:
            unit_dir = directory / "units" / unit["name"]
            if (unit_dir / "unit.json").exists():
                units[unit["name"]] = UnitResult.load(unit_dir)
        return cls(directory, meta, units)

    def head_values(self, which: str = "banzhaf") -> tuple[list[int], int, np.ndarray]:
        """Single-head values laid out as a layer × head grid.

        Args:
            which: ``"banzhaf"`` or ``"shapley"``.

        Returns:
            (layers, n_heads, float[len(layers), n_heads]) with NaN where no unit covered a head.
        """
        entries: dict[tuple[int, int], float] = {}
        for unit in self.units.values():
            values = unit.banzhaf if which == "banzhaf" else unit.shapley
            for name, value in zip(unit.players, values):
                head = Players([name])[0]
                entries[(head.layer, head.head)] = float(value)
        if not entries:
            return [], 0, np.zeros((0, 0))
        layers = sorted({layer for layer, _ in entries})
        n_heads = max(h for _, h in entries) + 1
        grid = np.full((len(layers), n_heads), np.nan)
        for (layer, h), value in entries.items():
            grid[layers.index(layer), h] = value
        return layers, n_heads, grid

