"""The top-level API, the error root, the enums and the hook-name helper."""

from __future__ import annotations

import subprocess
import sys

import pytest

import headspex as hs
from headspex.errors import EngineError, HeadspexError
from headspex.hooks import hook_name
from headspex.types import AblationMode, Metric, Scope, choices, parse_enum


def test_every_public_name_resolves() -> None:
    for name in hs.__all__:
        assert getattr(hs, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(hs, "nope")


def _imports_torch(statement: str) -> bool:
    code = f"{statement}\nimport sys\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip() == "True"


def test_importing_the_package_and_the_engine_pulls_no_torch() -> None:
    assert not _imports_torch("import headspex")
    assert not _imports_torch("import headspex.engine; import headspex.engine.surrogate")
    assert _imports_torch("import headspex as hs; hs.AblationGame")  # the lazy export does load it


def test_every_headspex_error_class_derives_from_the_root() -> None:
    import headspex.errors
    from headspex.ablation import AblationError
    from headspex.attribution import AttributionError
    from headspex.cli.common import CLIError
    from headspex.components import ComponentError
    from headspex.engine.store import MaskStoreError
    from headspex.game import GameError
    from headspex.models import ModelLoadError
    from headspex.pruning import PruningError
    from headspex.tasks import TaskError

    for error in (AblationError, AttributionError, CLIError, ComponentError, MaskStoreError, GameError,
                  ModelLoadError, PruningError, TaskError, EngineError, headspex.errors.ReportError):
        assert issubclass(error, HeadspexError) and issubclass(error, ValueError), error


def test_enums_accept_plain_strings_and_refuse_unknown_ones_in_one_line() -> None:
    assert parse_enum(AblationMode, "mean") is AblationMode.MEAN
    assert AblationMode.MEAN == "mean" and str(Metric.LOGPROB) == "logprob"
    assert choices(Scope) == ["layer", "group", "all"]
    with pytest.raises(HeadspexError, match=r"unknown AblationMode 'meen'; choose one of: zero, zero_rescaled, mean, resample"):
        parse_enum(AblationMode, "meen")


def test_hook_names_are_spelled_in_one_place() -> None:
    assert hook_name(3, "z") == "blocks.3.attn.hook_z"
    assert hook_name(0, "post") == "blocks.0.mlp.hook_post"
    assert hook_name(7, "attn_out") == "blocks.7.attn.hook_out"
    with pytest.raises(HeadspexError, match="unknown hook point"):
        hook_name(1, "q")  # type: ignore[arg-type]
