"""Run directories: one finished unit (``unit.json`` + ``engine/``), a whole run (``run.json``).

Every JSON file carries a ``format`` version and a checksum and is written atomically
(temporary file, then rename), so a killed run leaves whole files or none. ``unit.json`` also
records the run's provenance key and the SHA-256 of every file of its unit (``engine/``,
bootstrap replicates): a unit is trusted only when all of them check out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import AttributionConfig, AttributionError
from .provenance import checksum_problem, file_sha256, with_checksum
from ..components import Players
from ..engine import EngineResult, Interactions
from ..io import to_jsonable

RUN_FORMAT = "headspex.attribution.Run/1"
UNIT_FORMAT = "headspex.attribution.Unit/1"

#: Held-out R² (uniform masks; 1 for exact enumeration) below which a fit does not reproduce
#: the behaviour on masks it never saw: its values, rankings, interactions and structure are
#: reported as not to be trusted, and no structure verdict is issued. 0.5 = the fit explains
#: at most half of the variance of unseen masks; an R² that cannot be measured counts as below.
FAITHFULNESS_THRESHOLD = 0.5

#: Why a unit saved before fits recorded their coefficient step has no intervals when read back.
STALE_INTERVALS = ("computed by an earlier headspex, which refitted the fit's Fourier terms by least squares "
                   "instead of its own estimator (wrong where the fit is a penalised one); run the attribution "
                   "on this run directory again to refit the unit from its mask cache")


def has_stale_intervals(engine: EngineResult, intervals: dict[str, Any]) -> bool:
    """Whether ``intervals`` came from the bootstrap before :class:`~headspex.engine.refit.CoefficientModel`:
    a ProxySPEX fit saved without its coefficient model, with intervals (or reasons for none) of
    some kind. The exhaustive fit's least-squares refit on all masks was its own estimator, so
    its intervals stand."""
    return bool(intervals) and engine.method != "exhaustive" and engine.coefficient_model is None


def held_out_r2(faithfulness: dict[str, float]) -> float:
    """The R² a fit is judged by: ``uniform`` (held-out uniform masks), else ``exact``, else the
    smallest finite value given; NaN when there is none."""
    for key in ("uniform", "exact"):
        if key in faithfulness and faithfulness[key] is not None:
            return float(faithfulness[key])
    finite = [float(v) for v in faithfulness.values() if v is not None and np.isfinite(v)]
    return min(finite) if finite else float("nan")


def fit_is_trusted(faithfulness: dict[str, float]) -> bool:
    """True when :func:`held_out_r2` is at least :data:`FAITHFULNESS_THRESHOLD` (NaN: False)."""
    r2 = held_out_r2(faithfulness)
    return bool(np.isfinite(r2) and r2 >= FAITHFULNESS_THRESHOLD)


class CorruptFileError(AttributionError):
    """A run-directory file that fails its check (unreadable, truncated, altered, or of another run).

    Attributes:
        path: the file that failed.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} failed its check: {reason}")
        self.path = path


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object read from ``path``, or a :class:`CorruptFileError` naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFileError(path, f"it is not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise CorruptFileError(path, "it does not hold a JSON object")
    return data


def read_versioned_json(path: Path, expected_format: str, what: str, verify: bool = True) -> dict[str, Any]:
    """Read a headspex JSON file, checking it exists, carries ``expected_format`` and its checksum.

    Raises:
        AttributionError: no such file, or another kind of file.
        CorruptFileError: unreadable JSON or a checksum that does not hold (``verify``).
    """
    if not path.exists():
        raise AttributionError(f"{path.parent} is not a headspex {what} (no {path.name})")
    data = read_json_file(path)
    if data.get("format") != expected_format:
        raise AttributionError(f"{path} is not a headspex {what} (format {data.get('format')!r})")
    problem = checksum_problem(data) if verify else None
    if problem is not None:
        raise CorruptFileError(path, problem)
    return data


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` (made JSON-safe, with a ``checksum``) to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(with_checksum(data), indent=1))
    os.replace(temporary, path)


def unit_files(directory: Path) -> dict[str, str]:
    """SHA-256 of every file a unit wrote before ``unit.json`` (paths relative to ``directory``)."""
    paths = sorted((directory / "engine").glob("*")) + sorted(directory.glob("bootstrap_*.npz"))
    return {path.relative_to(directory).as_posix(): file_sha256(path) for path in paths if path.is_file()}


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
    provenance_key: str = ""

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
            # Which basis (fourier: parities, mobius: synergy, removal: redundancy) and candidate
            # source won the engine's CV: itself a finding about the unit.
            "basis": self.engine.diagnostics.get("basis"),
            "winner": self.engine.diagnostics.get("winner"),
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
            "provenance_key": self.provenance_key,
        }

    def save(self, directory: Path) -> None:
        """Write ``engine/`` then ``unit.json`` (last, so its presence means "finished").

        ``unit.json`` records the SHA-256 of every other file of the unit, so it certifies them.
        """
        directory.mkdir(parents=True, exist_ok=True)
        self.engine.save(directory / "engine")
        write_json_atomic(directory / "unit.json", {**self.summary(), "files": unit_files(directory)})

    @classmethod
    def load(cls, directory: Path, provenance_key: str | None = None) -> UnitResult:
        """Inverse of :meth:`save`, trusting nothing unchecked.

        Args:
            directory: the unit's folder.
            provenance_key: the run's key; a unit computed under another one is refused.

        Raises:
            CorruptFileError: ``unit.json`` or one of the files it certifies fails its check.
        """
        path = directory / "unit.json"
        data = read_versioned_json(path, UNIT_FORMAT, "finished unit")
        if provenance_key is not None and data.get("provenance_key") != provenance_key:
            raise CorruptFileError(path, f"it belongs to another run (provenance key "
                                         f"{data.get('provenance_key')!r}, the run's is {provenance_key!r})")
        for name, digest in dict(data.get("files", {})).items():
            file = directory / name
            if not file.is_file() or file_sha256(file) != digest:
                raise CorruptFileError(file, "it is missing or its SHA-256 differs from the one unit.json records")
        try:
            return cls._from_summary(directory, data)
        except (KeyError, TypeError, ValueError, OSError, EOFError) as error:
            raise CorruptFileError(path, f"its content cannot be read back ({type(error).__name__}: {error})") from None

    @classmethod
    def _from_summary(cls, directory: Path, data: dict[str, Any]) -> UnitResult:
        engine = EngineResult.load(directory / "engine")
        intervals, top = data.get("intervals", {}), data.get("top", [])
        if has_stale_intervals(engine, intervals):  # not shown: they can exclude their own estimates
            refused = intervals.get("unavailable", {})
            kinds = [kind for kind in ("questions", "masks") if kind in intervals or kind in refused]
            intervals = {"unavailable": dict.fromkeys(kinds, STALE_INTERVALS)}
            top = [{k: v for k, v in row.items() if not k.startswith(("interval_", "significant_"))} for row in top]
        return cls(
            name=data["name"],
            players=list(data["players"]),
            player_layers=[int(x) for x in data["player_layers"]],
            engine=engine,
            banzhaf=np.asarray(data["banzhaf"], dtype=np.float64),
            shapley=np.asarray(data["shapley"], dtype=np.float64),
            intervals=intervals,
            top=top,
            exact_comparison=data.get("exact_comparison"),
            seconds=float(data.get("seconds", 0.0)),
            n_evaluated_masks=int(data.get("n_evaluated_masks", 0)),
            n_questions=int(data.get("n_questions", 0)),
            game=data.get("game"),
            provenance_key=str(data.get("provenance_key", "")),
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
                units[unit["name"]] = UnitResult.load(unit_dir, meta.get("provenance_key"))
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



# ----------------------------------------------------------------------------- opening a run directory

#: Entries of ``run.json`` that describe the file, not the computation (the rest is provenance).
NON_PROVENANCE_KEYS = ("format", "started", "provenance_key", "checksum")
#: What headspex itself writes into a run directory besides files: a folder holding only these
#: (and moved-aside ``*.corrupt`` files) is a headspex run, even without a readable ``run.json``.
RUN_SUBFOLDERS = ("units", "cache", "game_cache")


def _is_run_leftover(path: Path) -> bool:
    return path.name in RUN_SUBFOLDERS or ".corrupt" in path.name or path.name == "run.json.tmp"


def refuse_foreign_folder(run_dir: Path) -> None:
    """Raise an :class:`AttributionError` when ``run_dir`` is a file, or a non-empty folder that is
    not a headspex run (a user's folder must never be written into). Cheap: callers run it
    before loading a model."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise AttributionError(f"{run_dir} is a file, not a folder; choose another --out")
    if run_dir.is_dir() and not (run_dir / "run.json").exists() and \
            not all(_is_run_leftover(entry) for entry in run_dir.iterdir()):
        raise AttributionError(
            f"{run_dir} is not empty and is not a headspex run (no run.json); choose a new or empty --out folder"
        )


def open_run_directory(run_dir: Path, provenance: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``run.json``'s content for a run of ``provenance`` in ``run_dir``, creating it if needed.

    A folder that exists must be empty or a headspex run of the same provenance: a non-empty
    folder without ``run.json`` (a user's folder) is refused, a run of another provenance is
    refused with one line saying what differs, and a ``run.json`` that fails its check is moved
    aside and rewritten (the units and caches carry the provenance key, so only matching ones
    are reused).

    Returns:
        (run.json content, whether this call created ``run.json``).
    """
    import time
    import warnings

    from ..engine.store import CorruptFileWarning
    from ..io import move_aside
    from .provenance import describe_differences, provenance_key

    run_json = run_dir / "run.json"
    refuse_foreign_folder(run_dir)
    wanted = json.loads(json.dumps(to_jsonable(provenance)))
    if run_json.exists():
        try:
            previous = read_versioned_json(run_json, RUN_FORMAT, "run directory")
        except CorruptFileError as error:
            moved = move_aside(run_json)
            warnings.warn(f"{error}; moved to {moved.name} and rewritten", CorruptFileWarning, stacklevel=2)
        else:
            stored = {k: v for k, v in previous.items() if k not in NON_PROVENANCE_KEYS}
            if stored != wanted:
                raise AttributionError(
                    f"{run_dir} holds a run with another configuration ({describe_differences(stored, wanted)}); "
                    "use a new --out directory (or delete this one) instead of resuming it"
                )
            return previous, False
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"format": RUN_FORMAT, **wanted, "provenance_key": provenance_key(wanted),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json_atomic(run_json, meta)
    return json.loads(run_json.read_text()), True


def remove_failed_start(run_dir: Path, remove_folder: bool) -> None:
    """Undo a start that failed before computing anything: remove ``run.json`` and empty folders.

    Nothing is removed once a unit finished or a cache batch was written (then the run
    resumes); the folder itself goes only with ``remove_folder`` (this start created it) and
    when nothing else is left in it.
    """
    if any(run_dir.glob("units/*/unit.json")) or any(run_dir.glob("cache/*/batch_*.npz")) or \
            any(run_dir.glob("game_cache/**/*.npz")):
        return
    (run_dir / "run.json").unlink(missing_ok=True)
    for folder in sorted((p for p in run_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    if remove_folder and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
