"""Device names, default dtypes and memory budgets (checked on whatever this machine has)."""

from __future__ import annotations

import pytest
import torch

from headspex.devices import DeviceError, check_memory_budget, default_dtype, is_accelerator, resolve_device
from headspex.distributed.spec import ModelSpec


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda:", "tpu", ""])
def test_unknown_device_names(name: str) -> None:
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_gpu_is_refused() -> None:
    with pytest.raises(DeviceError, match="torch sees no GPU.*--device cpu"):
        resolve_device("cuda:0")


def test_dtype_defaults_follow_the_device() -> None:
    assert default_dtype("cpu") == "float32" and not is_accelerator("cpu")
    assert default_dtype("cuda:1") == "bfloat16" and is_accelerator("cuda")
    assert ModelSpec("tiny-llama").resolved_dtype() == "float32"
    assert ModelSpec("tiny-llama", device="cuda").resolved_dtype() == "bfloat16"
    assert ModelSpec("tiny-llama", dtype="float32", device="cuda").resolved_dtype() == "float32"
    # Beside GPU workers the driver's CPU copy holds the workers' bf16 weights (and fingerprint).
    driver = ModelSpec("tiny-llama", device="cuda").driver_copy()
    assert (driver.device, driver.resolved_dtype()) == ("cpu", "bfloat16")
    assert ModelSpec("tiny-llama", device="cpu").driver_copy().resolved_dtype() == "float32"


def test_memory_budget() -> None:
    assert check_memory_budget("cpu", None) is None
    assert check_memory_budget("cpu", 64.0) == 64.0  # the CPU's budget is not checked against free memory
    with pytest.raises(DeviceError, match="positive"):
        check_memory_budget("cpu", 0)


def test_tiny_model_spec_loads_the_conftest_model(tiny_llama: object) -> None:
    loaded = ModelSpec.tiny("llama", n_layers=3).load()
    for mine, theirs in zip(loaded.parameters(), tiny_llama.parameters()):  # type: ignore[attr-defined]
        assert torch.equal(mine, theirs)


def test_run_options_from_the_command_line() -> None:
    import argparse

    from headspex.distributed.options import RunOptions, add_arguments
    from headspex.errors import HeadspexError

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    local = RunOptions.from_args(parser.parse_args([]))
    assert not local.distributed and local.device == "cpu" and local.game_options() == {}
    pool = RunOptions.from_args(parser.parse_args(["--workers", "2", "--memory-budget-mb", "64"]))
    assert pool.distributed and pool.workers == 2 and pool.game_options() == {"memory_budget_mb": 64.0}
    cluster = RunOptions.from_args(parser.parse_args(["--ray-address", "auto"]))
    assert cluster.distributed and cluster.workers == 1
    spec = pool.model_spec("tiny-llama", seed=3)
    assert (spec.source, spec.device, spec.seed, spec.resolved_dtype()) == ("tiny-llama", "cpu", 3, "float32")
    with pytest.raises(HeadspexError, match="--workers must be >= 0"):
        RunOptions.from_args(parser.parse_args(["--workers", "-1"]))
    with pytest.raises(HeadspexError, match="--memory-budget-mb must be positive"):
        RunOptions.from_args(parser.parse_args(["--memory-budget-mb", "0"]))
