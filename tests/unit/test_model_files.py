"""GGUF files that cannot be a model are refused with one error naming the file (issue 17, item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headspex.errors import HeadspexError
from headspex.models.files import check_gguf_file
from headspex.models import ModelLoadError


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole GGUF file written by the gguf package itself: one float32 tensor of 4096 values."""
    gguf = pytest.importorskip("gguf")
    path = tmp_path_factory.mktemp("gguf") / "small.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("weight", np.arange(4096, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_whole_gguf_file_passes(small_gguf: Path) -> None:
    check_gguf_file(small_gguf)
    check_gguf_file(small_gguf, deep=False)


@pytest.mark.parametrize("make, message", [
    (lambda whole: b"", "holds 0 bytes, less than a GGUF header"),
    (lambda whole: np.random.default_rng(0).bytes(5000), "is not a GGUF model: it starts with"),
    (lambda whole: whole[:4] + (7).to_bytes(4, "little") + whole[8:], "has GGUF version 7"),
    (lambda whole: whole[: len(whole) - 1000], "damaged or truncated GGUF file"),  # tensor data cut short
    (lambda whole: whole[:100], "damaged or truncated GGUF file"),  # cut inside the metadata
])
def test_a_broken_gguf_file_is_one_error_naming_it(make, message: str, small_gguf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(make(small_gguf.read_bytes()))
    with pytest.raises(ModelLoadError, match=message) as error:
        check_gguf_file(broken)
    assert str(broken) in str(error.value) and isinstance(error.value, HeadspexError)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read GGUF file .*absent.gguf"):
        check_gguf_file(tmp_path / "absent.gguf")


def test_cli_model_load_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headspex.cli import main

    assert main(["attribute", "--model", str(tmp_path / "absent.gguf"), "--task", "induction", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("headspex attribute: error: GGUF file not found")


def test_load_model_refuses_a_damaged_gguf_file_naming_it(tmp_path: Path) -> None:
    """load_model runs the check before transformers' reader ever sees the file."""
    from headspex.models import ModelLoadError, load_model

    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + bytes(100))  # a header claiming version 0, then nothing
    with pytest.raises(ModelLoadError, match="damaged.gguf"):
        load_model(str(damaged))
