"""What a run directory was computed from, and the checksums that let its files be trusted.

A run's *provenance* is everything that decides its numbers: the configuration and unit plan,
the model (its name and a fingerprint of its weights), the task (subject, source, shots,
scoring, the question ids of each split), the players, mode, metric, seed and the headspex
version. ``run.json`` records it; every file the run writes carries its short
*provenance key* and a checksum, so a resumed run never mixes results of two computations
and never trusts a file it cannot verify.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..io import move_aside, to_jsonable  # noqa: F401  (move_aside: re-exported)


def canonical_json(data: Any) -> bytes:
    """The one byte spelling of JSON-able ``data`` that checksums are taken over (sorted keys)."""
    return json.dumps(to_jsonable(data), sort_keys=True, separators=(",", ":")).encode()


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provenance_key(provenance: dict[str, Any]) -> str:
    """Short identity (16 hex digits) of a provenance dict: equal keys = same computation."""
    return sha256_hex(canonical_json(provenance))[:16]


def with_checksum(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` plus a ``checksum`` field: SHA-256 of its canonical JSON without that field."""
    body = {k: v for k, v in to_jsonable(data).items() if k != "checksum"}
    return {**body, "checksum": sha256_hex(canonical_json(body))}


def checksum_problem(data: dict[str, Any]) -> str | None:
    """Why ``data`` (read back from JSON) fails its ``checksum``; None when it holds."""
    if "checksum" not in data:
        return "it carries no checksum (written by an older headspex, or not by headspex)"
    body = {k: v for k, v in data.items() if k != "checksum"}
    if sha256_hex(canonical_json(body)) != data["checksum"]:
        return "its checksum does not match its content (the file was altered or damaged)"
    return None


def weights_fingerprint(model: Any, values_per_tensor: int = 64) -> str:
    """A cheap fingerprint of a model's weights (16 hex digits).

    Hashes every parameter's name, shape and dtype and a sample of its values (its first and
    last ``values_per_tensor`` elements, and a strided sample in between), so two models that
    differ in architecture, size or (almost surely) in trained values get different
    fingerprints, at a cost of a few KB read per tensor.
    """
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            flat = parameter.detach().reshape(-1)
            digest.update(f"{name}:{tuple(parameter.shape)}:{parameter.dtype}".encode())
            if flat.numel() == 0:
                continue
            stride = max(1, flat.numel() // values_per_tensor)
            sample = torch.cat([flat[:values_per_tensor], flat[::stride][:values_per_tensor],
                                flat[-values_per_tensor:]])
            digest.update(sample.to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def task_provenance(task: Any, splits: list[str]) -> dict[str, Any]:
    """The task's description plus, per split, the number and a digest of its question ids."""
    description = to_jsonable(task.describe()) if hasattr(task, "describe") else {"task": type(task).__name__}
    questions = {}
    for split in splits:
        try:
            ids = list(task.prompt_set(split).question_ids)
        except Exception:  # a task without that split: nothing to record
            continue
        questions[split] = {"n": len(ids), "ids_sha256": sha256_hex(canonical_json(ids))[:16]}
    return {**description, "question_ids": questions}


#: Differences a user most needs to see come first in :func:`describe_differences`.
PRIORITY_PATHS = ("model", "weights_fingerprint", "task.task", "task.subject", "task.source", "task.n_shots",
                  "task.scoring", "task.seq_len", "config.", "units", "split", "headspex_version")


def describe_differences(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> str:
    """One line naming how ``new`` differs from ``old`` (the most telling differences first)."""
    lines = provenance_differences(old, new)

    def rank(line: str) -> int:
        return next((i for i, path in enumerate(PRIORITY_PATHS) if line.startswith(path)), len(PRIORITY_PATHS))

    lines.sort(key=rank)
    more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def provenance_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two provenance dicts: ``["task.subject: 'a' -> 'b'", ...]``.

    Nested dicts are compared key by key (dotted paths); other values are compared whole.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                lines.append(f"{path}: (absent) -> {_short(new[key])}")
            elif key not in new:
                lines.append(f"{path}: {_short(old[key])} -> (absent)")
            else:
                lines.extend(provenance_differences(old[key], new[key], path))
        return lines
    if to_jsonable(old) != to_jsonable(new):
        return [f"{prefix}: {_short(old)} -> {_short(new)}"]
    return []


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
