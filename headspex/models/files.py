"""Checks of model files before they are handed to transformers (which fails deep in mmap/struct).

:func:`check_gguf_file` turns an empty, foreign, truncated or damaged ``.gguf`` file into one
:class:`~headspex.models.ModelLoadError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Header of a GGUF file: magic (4 bytes), version (uint32), tensor count (uint64), metadata count (uint64).
GGUF_MAGIC = b"GGUF"
MIN_GGUF_BYTES = 24
#: GGUF versions the ``gguf`` reader (and so transformers) understands.
GGUF_VERSIONS = (2, 3)


def _error(message: str) -> Exception:
    # Imported here: the loaders pull torch, and this module must stay importable cheaply.
    from .loading import ModelLoadError

    return ModelLoadError(message)


def check_gguf_file(path: str | os.PathLike[str], deep: bool = True) -> None:
    """Raise a ``ModelLoadError`` naming ``path`` unless it looks like a whole, readable GGUF file.

    Checks, cheapest first: it exists and is a file; it holds at least the 24-byte header; it
    starts with the magic ``GGUF`` and a supported version. With ``deep`` also: the ``gguf``
    package's reader parses its metadata and tensor table, and every tensor's data lies inside
    the file (a truncated download fails here). The deep check parses all metadata in Python
    (about 6 s for SmolLM2-135M on 2 CPU cores, as transformers' own reader does), so a loader
    may run the cheap check first and the deep one only when loading fails.
    """
    path = Path(path)
    hint = "download it again, or pass another model"
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise _error(f"cannot read GGUF file {path}: {error.strerror or error}") from None
    if size < MIN_GGUF_BYTES:
        raise _error(f"{path} is not a GGUF model: it holds {size} bytes, less than a GGUF header ({hint})")
    if head[:4] != GGUF_MAGIC:
        raise _error(f"{path} is not a GGUF model: it starts with {head[:4]!r}, not {GGUF_MAGIC!r} ({hint})")
    version = int.from_bytes(head[4:8], "little")
    if version not in GGUF_VERSIONS:
        raise _error(f"{path} has GGUF version {version}; supported versions: "
                     f"{', '.join(map(str, GGUF_VERSIONS))}")
    if not deep:
        return
    try:
        from gguf import GGUFReader
    except ImportError:
        raise _error("Loading a GGUF file needs the 'gguf' package: pip install gguf") from None
    try:
        tensors = GGUFReader(path, "r").tensors
    except Exception as error:  # the reader fails in struct/mmap/reshape: any failure means a damaged file
        raise _error(f"{path} is a damaged or truncated GGUF file ({type(error).__name__}: {error}; {hint})") from None
    if not tensors:
        raise _error(f"{path} holds no tensors: it is not a model ({hint})")
    end = max(int(t.data_offset) + int(t.n_bytes) for t in tensors)
    if end > size:
        raise _error(f"{path} is truncated: its tensors end at byte {end} but the file holds {size} bytes ({hint})")
