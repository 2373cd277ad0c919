"""Devices as users name them: ``cpu``, ``cuda``, ``cuda:N``; default dtypes and memory budgets.

Accelerators run bfloat16 by default (half the memory traffic, the tensor cores' own
format); CPUs run float32 unless asked, since most CPUs have no fast bf16 path. A memory
budget is the activation memory one micro-batch of the game may use on one device; on a GPU
it is checked against the memory that device has free, so a run is refused up front instead
of failing with an out-of-memory error hours in.
"""

from __future__ import annotations

import re

from .errors import HeadspexError

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|auto)$")


class DeviceError(HeadspexError):
    """A device that does not exist here, or a memory budget it cannot hold."""


def resolve_device(device: str | None = "auto") -> str:
    """A checked torch device string.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or ``"auto"`` / ``None`` (the first GPU
            when torch sees one, else the CPU).

    Returns:
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    """
    text = "auto" if device is None else str(device).strip().lower()
    if not _DEVICE.match(text):
        raise DeviceError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto")
    if text == "cpu":
        return text
    import torch

    available = torch.cuda.is_available()
    if text == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise DeviceError(
            f"device '{text}' asked for, but torch sees no GPU here (torch {torch.__version__}, "
            "a CPU build or no driver); use --device cpu"
        )
    if ":" in text:
        index, count = int(text.split(":")[1]), torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device '{text}' does not exist: torch sees {count} GPU(s), cuda:0..cuda:{count - 1}")
    return text


def is_accelerator(device: str) -> bool:
    """Whether ``device`` names a GPU (anything but ``cpu``)."""
    return str(device).split(":")[0] != "cpu"


def default_dtype(device: str) -> str:
    """``"bfloat16"`` on an accelerator, ``"float32"`` on the CPU."""
    return "bfloat16" if is_accelerator(device) else "float32"


def free_memory_mb(device: str) -> float | None:
    """Free memory of a GPU in MiB (``None`` for the CPU, whose budget is not checked)."""
    if not is_accelerator(device):
        return None
    import torch

    free_bytes, _total = torch.cuda.mem_get_info(torch.device(device))
    return free_bytes / 2**20


def check_memory_budget(device: str, budget_mb: float | None) -> float | None:
    """Refuse a micro-batch budget (MiB) larger than what ``device`` has free; returns it.

    ``None`` (the game's default for the device) passes unchecked. Call after the model is
    loaded on the device, so its weights are no longer counted as free.
    """
    if budget_mb is None:
        return None
    if budget_mb <= 0:
        raise DeviceError(f"memory budget must be positive; got {budget_mb} MiB")
    free = free_memory_mb(device)
    if free is not None and budget_mb > free:
        raise DeviceError(
            f"memory budget {budget_mb:.0f} MiB exceeds the {free:.0f} MiB free on {device} after "
            "loading the model; lower --memory-budget-mb"
        )
    return budget_mb


__all__ = ["DeviceError", "check_memory_budget", "default_dtype", "free_memory_mb", "is_accelerator", "resolve_device"]
