"""Corrupt cache and result files are named, moved aside and recomputed, never trusted (issue 17, item 4)."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from headspex.attribution import FAST_FIT, AttributionConfig, AttributionRun, CorruptFileError, attribute_units, plan_units
from headspex.cli import main
from headspex.engine.store import CorruptFileWarning, MaskStore, batch_checksum
from oracles import PlantedGame

UNITS = plan_units({0: [f"L0H{h}" for h in range(6)]}, "layer")
CONFIG = AttributionConfig(budget=40, n_test=10, n_bootstrap=20, estimator_options=FAST_FIT, batch_masks=8)
CACHE = Path("cache") / "layer_00"


def _run(run_dir: Path, game: PlantedGame) -> AttributionRun:
    return attribute_units(UNITS, lambda players, cache: game, CONFIG, run_dir, progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[AttributionRun, int]:
    """An uninterrupted run and the number of masks it evaluated."""
    game = PlantedGame()
    return _run(tmp_path_factory.mktemp("reference") / "run", game), game.masks_seen


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run killed after 3 game calls (3 cache batches of 8 masks, no unit.json)."""
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(run_dir, PlantedGame(fail_after=3))
    assert len(list((run_dir / CACHE).glob("batch_*.npz"))) == 3
    return run_dir


def _rewrite(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Rewrite a well-formed batch file with ``change`` applied to its arrays (checksum kept unless changed)."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    change(arrays)
    path.unlink()
    np.savez(path, **arrays)


def _flip_a_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def _other_columns(arrays: dict[str, np.ndarray]) -> None:
    # What a batch of a run with 3 questions looks like: its own (valid) checksum, another provenance key.
    values = np.concatenate([arrays["question_values"], arrays["question_values"][:, :1]], axis=1)
    arrays["question_values"] = values
    arrays["provenance_key"] = np.array("another-run/layer_00")
    arrays["checksum"] = np.array(batch_checksum(arrays["masks"], values, "another-run/layer_00"))


def _forged_columns(arrays: dict[str, np.ndarray]) -> None:
    # Same key, a self-consistent checksum, but rows of another shape than the store's other files.
    values = arrays["question_values"][:, :1].copy()
    arrays["question_values"] = values
    arrays["checksum"] = np.array(batch_checksum(arrays["masks"], values, str(arrays["provenance_key"])))


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "bit_flipped": _flip_a_byte,
    "altered_values": lambda path: _rewrite(path, lambda a: a.update(question_values=a["question_values"] * 1.1)),
    "no_checksum": lambda path: _rewrite(path, lambda a: (a.pop("checksum"), a.pop("provenance_key"))),
    "other_run_columns": lambda path: _rewrite(path, _other_columns),
    "forged_columns": lambda path: _rewrite(path, _forged_columns),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_cache_batch_is_named_moved_aside_and_recomputed(kind: str, interrupted: Path, tmp_path: Path,
                                                                   reference: tuple[AttributionRun, int]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(interrupted, run_dir)
    corrupt = run_dir / CACHE / "batch_00001.npz"
    CORRUPTIONS[kind](corrupt)
    game = PlantedGame()
    with pytest.warns(CorruptFileWarning, match=f"cache file {corrupt} failed its check"):
        run = _run(run_dir, game)
    assert not corrupt.exists() and (run_dir / CACHE / "batch_00001.npz.corrupt").exists()
    reference_run, reference_masks = reference
    # Exactly the 8 masks of the rejected batch are evaluated again, besides those never cached.
    assert game.masks_seen == reference_masks - 3 * 8 + 8
    ours, theirs = run.units["layer_00"], reference_run.units["layer_00"]
    assert np.array_equal(ours.engine.values, theirs.engine.values)
    assert np.array_equal(ours.banzhaf, theirs.banzhaf)


def test_a_store_never_trusts_a_file_without_its_check(tmp_path: Path) -> None:
    store = MaskStore(tmp_path, 3, provenance_key="k")
    store.add(np.array([[True, False, True]]), np.array([1.5]))
    assert MaskStore(tmp_path, 3, provenance_key="k").get(np.array([True, False, True])) == 1.5
    with pytest.warns(CorruptFileWarning, match="another computation"):
        other = MaskStore(tmp_path, 3, provenance_key="other")
    assert len(other) == 0 and other.rejected[0][0] == tmp_path / "batch_00000.npz"
    # The next batch does not overwrite the moved-aside file's number.
    other.add(np.array([[True, True, True]]), np.array([2.0]))
    assert (tmp_path / "batch_00001.npz").exists() and (tmp_path / "batch_00000.npz.corrupt").exists()


@pytest.mark.parametrize("damage", ["unit_json_truncated", "arrays_bit_flipped", "bootstrap_altered"])
def test_a_corrupt_unit_is_named_and_recomputed_from_the_cache(damage: str, tmp_path: Path,
                                                                reference: tuple[AttributionRun, int]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference[0].directory, run_dir)
    unit_dir = run_dir / "units" / "layer_00"
    target = {"unit_json_truncated": unit_dir / "unit.json", "arrays_bit_flipped": unit_dir / "engine" / "arrays.npz",
              "bootstrap_altered": unit_dir / "bootstrap_questions.npz"}[damage]
    if damage == "unit_json_truncated":
        target.write_text(target.read_text()[:100])
    else:
        _flip_a_byte(target, 0.3)
    with pytest.raises(CorruptFileError, match=str(target)):
        AttributionRun.load(run_dir)  # reading a run (report, structure) stops with the path
    game = PlantedGame()
    with pytest.warns(CorruptFileWarning, match=str(target)):
        run = _run(run_dir, game)
    assert game.masks_seen == 0  # the cache holds every mask: recomputation is free
    assert (unit_dir / "unit.json.corrupt").exists()
    assert np.array_equal(run.units["layer_00"].banzhaf, reference[0].units["layer_00"].banzhaf)
    assert AttributionRun.load(run_dir).complete


def test_a_truncated_run_json_is_moved_aside_and_its_units_kept(tmp_path: Path,
                                                                 reference: tuple[AttributionRun, int]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference[0].directory, run_dir)
    run_json = run_dir / "run.json"
    run_json.write_text(run_json.read_text()[:50])
    game = PlantedGame()
    with pytest.warns(CorruptFileWarning, match=f"{run_json} failed its check"):
        run = _run(run_dir, game)
    assert game.masks_seen == 0 and run.complete and (run_dir / "run.json.corrupt").exists()


def test_report_on_corrupt_files_prints_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 reference: tuple[AttributionRun, int]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference[0].directory, run_dir)
    arrays = run_dir / "units" / "layer_00" / "engine" / "arrays.npz"
    with zipfile.ZipFile(arrays) as archive:
        assert "values.npy" in archive.namelist()
    arrays.write_bytes(arrays.read_bytes()[:-40])
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{arrays} failed its check" in err
    run_json = run_dir / "run.json"
    run_json.write_text("{not json")
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run_json} failed its check" in err and "not readable JSON" in err
