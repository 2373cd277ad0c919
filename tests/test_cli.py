"""The headspex command: argument parsing, defaults, and end-to-end runs on a tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from headspex.cli import CLIError, build_parser, main, parse_layers


def test_parse_layers() -> None:
    assert parse_layers("27-29", 30) == [27, 28, 29]
    assert parse_layers("0,5, 10", 30) == [0, 5, 10]
    assert parse_layers("last3", 30) == [27, 28, 29]
    assert parse_layers("all", 30) is None
    with pytest.raises(CLIError, match="outside the model's layers 0..29"):
        parse_layers("28-31", 30)
    with pytest.raises(CLIError, match="cannot read --layers"):
        parse_layers("x-y", 30)


def test_attribute_defaults_are_the_readme_command() -> None:
    args = build_parser().parse_args(["attribute"])
    assert args.model == "smollm2-135m" and args.task == "mmlu"
    assert args.method == "exact" and args.layers == "last2" and args.questions == 6
    assert not args.no_report  # structure + report are written by default


def test_prune_is_registered_when_available() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert {"attribute", "structure", "report"} <= set(choices)
    if importlib.util.find_spec("headspex.cli_prune") is not None:
        assert "prune" in choices


def test_attribute_structure_report_on_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # Default layers ("last2") are the tiny model's two layers.
    status = main(["attribute", "--model", "tiny-llama", "--task", "induction", "--questions", "4",
                   "--method", "exact", "--bootstrap", "20", "--out", str(out), "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "model=tiny-llama" in printed and "layers=[0, 1]" in printed and "report:" in printed
    for name in ("run.json", "structure.json", "report.md", "units/layer_00/unit.json", "units/layer_01/unit.json",
                 "units/layer_00/engine/arrays.npz", "figures/head_banzhaf.png", "figures/structure_profile.png"):
        assert (out / name).exists(), name
    meta = json.loads((out / "run.json").read_text())
    assert meta["model"] == "tiny-llama" and meta["task"]["task"] == "induction"
    assert meta["config"]["method"] == "exact"
    report = (out / "report.md").read_text()
    assert "## Layerwise structure" in report and "figures/head_banzhaf.png" in report

    assert main(["report", str(out), "--format", "html"]) == 0
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    (out / "structure.json").unlink()
    assert main(["structure", str(out)]) == 0
    assert (out / "structure.json").exists()


def test_all_heads_scope_with_proxyspex(tmp_path: Path) -> None:
    out = tmp_path / "run"
    status = main(["attribute", "--model", "tiny-llama", "--task", "induction", "--layers", "all", "--scope", "all",
                   "--method", "proxyspex", "--budget", "40", "--n-test", "10", "--questions", "4", "--bootstrap", "20",
                   "--fast-fit", "--out", str(out), "--quiet"])
    assert status == 0
    unit = json.loads((out / "units/all_heads/unit.json").read_text())
    assert len(unit["players"]) == 8 and set(unit["faithfulness"]) == {"uniform", "near_full"}
    assert "masks" in unit["intervals"] and (out / "report.md").exists()


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run.json" in capsys.readouterr().err


def test_attribute_with_cloze_scoring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = Path(__file__).parent / "fixtures" / "mmlu" / "cais_jsonl"
    out = tmp_path / "run"
    common = ["attribute", "--model", "tiny-llama", "--subject", "high school us history", "--source", str(fixtures),
              "--questions", "3", "--reference", "3", "--scoring", "cloze", "--method", "exact", "--bootstrap", "0",
              "--no-report", "--quiet"]
    assert main([*common, "--out", str(out)]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["task"]["scoring"] == "cloze" and meta["task"]["name"].endswith("/cloze")
    assert main([*common, "--metric", "calibrated_accuracy", "--out", str(tmp_path / "bad")]) == 2
    assert "does not apply to cloze" in capsys.readouterr().err
