"""Saving results in open formats: JSON-safe conversion shared by the run writers."""

from __future__ import annotations

import importlib.metadata
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-string keys into plain JSON values.

    Non-finite floats become ``null`` (strict JSON has no NaN); unknown objects (paths,
    dtypes) become their string form.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def packaged_data_file(distribution: str, suffix: str) -> Path | None:
    """Path of a data file shipped inside an installed wheel, found without importing it.

    Returns the first installed file of ``distribution`` whose path ends with ``suffix``,
    or ``None`` if it ships none. Raises ``importlib.metadata.PackageNotFoundError`` when
    the distribution is not installed (callers turn that into an install hint).
    """
    for file in importlib.metadata.files(distribution) or []:
        if str(file).replace("\\", "/").endswith(suffix):
            path = Path(file.locate())
            if path.exists():
                return path
    return None


def move_aside(path: Path) -> Path:
    """Rename a file or folder that failed its check to ``<name>.corrupt`` (``.corrupt2``... if taken).

    Returns the new path. Keeping it (rather than deleting it) lets the user inspect it.
    """
    target = path.with_name(path.name + ".corrupt")
    number = 2
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt{number}")
        number += 1
    os.replace(path, target)
    return target


def require_packaged_file(distribution: str, suffix: str, error: type[Exception], install_hint: str) -> Path:
    """:func:`packaged_data_file`, or ``error`` with one line: ``install_hint`` when the
    distribution is not installed, a reinstall hint when it ships no such file."""
    try:
        path = packaged_data_file(distribution, suffix)
    except importlib.metadata.PackageNotFoundError as err:
        raise error(install_hint) from err
    if path is None:
        raise error(f"'{distribution}' is installed but ships no {suffix} file; reinstall it")
    return path
