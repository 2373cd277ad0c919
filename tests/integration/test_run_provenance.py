"""Run directories: provenance checked on resume, --out safety, failed starts, budgets (issue 17, items 1-3, 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from headspex.attribution import FAST_FIT, AttributionConfig, AttributionError, attribute_units, plan_units
from headspex.attribution.provenance import weights_fingerprint
from headspex.cli import main
from headspex.engine import LassoRegression, ProxySPEX
from headspex.errors import EngineError
from fixture_paths import MMLU_FIXTURES
from oracles import PlantedGame as CountingGame

CAIS = str(MMLU_FIXTURES / "cais_jsonl")


UNITS = plan_units({0: ["L0H0", "L0H1", "L0H2", "L0H3", "L0H4", "L0H5"]}, "layer")
CONFIG = AttributionConfig(budget=40, n_test=10, n_bootstrap=0, estimator_options=FAST_FIT, batch_masks=8)


def _run(run_dir: Path, meta: dict[str, Any], game: CountingGame | None = None, **config: Any) -> Any:
    game = game or CountingGame()
    settings = {**CONFIG.__dict__, **config}
    return attribute_units(UNITS, lambda players, cache: game, AttributionConfig(**settings), run_dir, meta=meta,
                           progress=False)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("headspex attribute: error: ")]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- item 1: provenance


def test_a_task_switch_mid_run_is_refused_and_names_the_difference(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(run_dir, {"task": {"subject": "marketing"}}, CountingGame(fail_after=2))
    cached = sorted((run_dir / "cache" / "layer_00").glob("batch_*.npz"))
    assert cached  # the interrupted run left values of the marketing task
    other = CountingGame()
    with pytest.raises(AttributionError, match=r"task\.subject: 'marketing' -> 'abstract algebra'"):
        _run(run_dir, {"task": {"subject": "abstract algebra"}}, other)
    assert other.masks_seen == 0 and sorted((run_dir / "cache" / "layer_00").glob("batch_*.npz")) == cached
    # The same task resumes.
    assert _run(run_dir, {"task": {"subject": "marketing"}}).complete


def test_a_finished_run_rerun_with_another_model_or_version_is_refused(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    _run(run_dir, {"model": "tiny-llama", "weights_fingerprint": "aaaa"})
    with pytest.raises(AttributionError, match="weights_fingerprint: 'aaaa' -> 'bbbb'"):
        _run(run_dir, {"model": "tiny-llama", "weights_fingerprint": "bbbb"})
    import headspex.attribution.runner as runner

    monkeypatch.setattr(runner, "__version__", "99.0")
    with pytest.raises(AttributionError, match="headspex_version"):
        _run(run_dir, {"model": "tiny-llama", "weights_fingerprint": "aaaa"})


def test_weights_fingerprint_tells_models_apart() -> None:
    from headspex.models import tiny_model

    first, same, other = (tiny_model("llama", seed=seed, n_layers=1) for seed in (0, 0, 1))
    assert weights_fingerprint(first) == weights_fingerprint(same)
    assert weights_fingerprint(first) != weights_fingerprint(other)
    with __import__("torch").no_grad():
        next(iter(same.parameters())).view(-1)[0] += 1.0  # one changed weight, in the sampled head of a tensor
    assert weights_fingerprint(first) != weights_fingerprint(same)


def test_cli_rerun_of_a_finished_run_with_another_subject_is_refused(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    common = ["attribute", "--model", "tiny-llama", "--source", CAIS, "--questions", "2", "--reference", "1",
              "--method", "exact", "--layers", "1", "--bootstrap", "0", "--no-report", "--quiet", "--out", str(out)]
    assert main([*common, "--subject", "high school us history"]) == 0
    unit_before = (out / "units/layer_01/unit.json").read_bytes()
    assert main([*common, "--subject", "astronomy"]) == 2
    line = _error_line(capsys)
    assert "task.subject: 'high_school_us_history' -> 'astronomy'" in line and "another configuration" in line
    assert (out / "units/layer_01/unit.json").read_bytes() == unit_before
    meta = json.loads((out / "run.json").read_text())
    assert meta["task"]["question_ids"]["attribution"]["n"] == 2 and len(meta["weights_fingerprint"]) == 16
    assert meta["headspex_version"] and len(meta["provenance_key"]) == 16


# ----------------------------------------------------------------------------- item 2: --out safety


def test_out_refuses_a_users_folder_and_leaves_it_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md").write_text("my notes")
    status = main(["attribute", "--model", "tiny-llama", "--task", "induction", "--questions", "2", "--method", "exact",
                   "--layers", "1", "--bootstrap", "0", "--quiet", "--out", str(folder)])
    assert status == 2
    assert "is not empty and is not a headspex run" in _error_line(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["report.md"] and (folder / "report.md").read_text() == "my notes"
    # The API refuses it too; an empty folder is fine.
    with pytest.raises(AttributionError, match="not a headspex run"):
        _run(folder, {})
    assert _run(tmp_path / "empty", {}).complete


# ----------------------------------------------------------------------------- item 6: failed starts


def test_a_bad_option_leaves_nothing_that_blocks_the_corrected_rerun(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    common = ["attribute", "--model", "tiny-llama", "--task", "induction", "--questions", "2", "--layers", "1",
              "--method", "proxyspex", "--budget", "20", "--n-test", "4", "--bootstrap", "0", "--fast-fit",
              "--no-report", "--quiet", "--out", str(out)]
    assert main([*common, "--max-order", "0"]) == 2
    assert "max_order" in _error_line(capsys)
    assert not out.exists()
    assert main([*common, "--max-order", "3"]) == 0


def test_an_error_met_by_the_game_removes_the_new_run_json(tmp_path: Path) -> None:
    class Refusing:
        def question_values(self, masks: np.ndarray) -> np.ndarray:
            raise AttributionError("the game refuses (a bad option it checks itself)")

    run_dir = tmp_path / "run"
    with pytest.raises(AttributionError, match="the game refuses"):
        attribute_units(UNITS, lambda players, cache: Refusing(), CONFIG, run_dir, progress=False)
    assert not run_dir.exists()
    assert _run(run_dir, {}, seed=1).complete  # another configuration in the same folder: not blocked


# ----------------------------------------------------------------------------- item 3: minimum budgets


def test_a_budget_below_the_players_is_refused_before_any_evaluation(tmp_path: Path) -> None:
    units = plan_units({layer: [f"L{layer}H{h}" for h in range(9)] for layer in range(4)}, "all")  # 36 players
    game = CountingGame()
    config = AttributionConfig(scope="all", budget=20, n_test=5, n_bootstrap=0)
    with pytest.raises(AttributionError, match="budget 20 is below the 37 masks ProxySPEX needs .*36 players"):
        attribute_units(units, lambda players, cache: game, config, tmp_path / "run", progress=False)
    assert game.masks_seen == 0 and not (tmp_path / "run").exists()


def test_the_engine_refuses_sub_minimum_budgets_with_the_minimum() -> None:
    calls: list[int] = []

    def game(masks: np.ndarray) -> np.ndarray:
        calls.append(len(masks))
        return masks.sum(axis=1).astype(float)

    estimator = ProxySPEX()
    assert estimator.minimum_budget(36) == 37 and estimator.minimum_budget(4) == estimator.min_samples(4)
    with pytest.raises(EngineError, match="needs at least 37 samples for n_players=36, got a budget of 20; raise the "
                                          "budget to at least 37 \\(or fit LassoRegression"):
        estimator.fit(game, 20, n_players=36, progress=False)
    assert calls == []
    # Sparse regression is meant for fewer samples than unknowns: LASSO keeps its own minimum.
    assert LassoRegression().minimum_budget(36) == LassoRegression().min_samples(36) < 37


def test_cli_refuses_a_sub_minimum_budget_before_loading_the_model(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["attribute", "--model", str(tmp_path / "absent.gguf"), "--method", "proxyspex", "--budget", "5",
                   "--quiet", "--out", str(tmp_path / "run")])
    assert status == 2
    line = _error_line(capsys)
    assert "at least 20" in line and "absent.gguf" not in line  # checked before the (failing) model load
