"""A game's run settings from its options: memory budget per micro-batch, run dtype."""

from __future__ import annotations

from typing import Any

import torch

from .errors import GameError

CPU_MEMORY_BUDGET_MB = 32.0
ACCELERATOR_MEMORY_BUDGET_MB = 2048.0


def _memory_budget(memory_budget_mb: float | None, model: Any) -> float:
    """The given budget, or the default for the device the model is on."""
    if memory_budget_mb is not None:
        return memory_budget_mb
    on_cpu = next(model.parameters()).device.type == "cpu"
    return CPU_MEMORY_BUDGET_MB if on_cpu else ACCELERATOR_MEMORY_BUDGET_MB


def _model_dtype(model: Any) -> torch.dtype:
    return next(model.parameters()).dtype


def _run_dtype(dtype: str | torch.dtype | None, model: Any) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": None, "fp32": None}
        if dtype.lower() not in names:
            raise GameError(f"Unknown dtype '{dtype}'; use 'bfloat16' or 'float32'.")
        dtype = names[dtype.lower()]
        if dtype is None:
            return None
    if dtype == _model_dtype(model):
        return None
    if dtype != torch.bfloat16:
        raise GameError(f"Only bfloat16 runs are supported, got {dtype}.")
    return dtype
