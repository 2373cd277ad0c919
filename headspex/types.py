"""The vocabulary shared by the API, the CLI and the result files: string enums and aliases.

Every enum is a ``str`` subclass, so a plain string (``mode="mean"``) is accepted wherever
an enum member is, compares equal to it and is written to JSON as the plain string. Use
:func:`parse_enum` to turn user input into a member with a one-line error; the CLI's
``choices`` come from :func:`choices`.
"""

from __future__ import annotations

from enum import Enum
from typing import Callable, TypeVar

import numpy as np
import numpy.typing as npt

from .errors import HeadspexError

#: ``bool[m, n_players]``: one row per ablation, ``True`` = player kept, ``False`` = ablated.
Mask = npt.NDArray[np.bool_]
#: ``float[m]``: one value per mask row (the task value, e.g. mean log-probability in nats).
Values = npt.NDArray[np.float64]
#: A set of players as sorted player indices, ``()`` = the constant term.
Subset = tuple[int, ...]
#: Anything that maps masks ``bool[m, n]`` to values ``float[m]`` (a game, a planted function).
ValueFunction = Callable[[np.ndarray], np.ndarray]


class StrEnum(str, Enum):
    """A string enum whose ``str()`` is its value (``str(AblationMode.MEAN) == "mean"``)."""

    def __str__(self) -> str:
        return str(self.value)


class AblationMode(StrEnum):
    """What replaces an ablated activation (see :mod:`headspex.ablation`)."""

    ZERO = "zero"  #: 0
    ZERO_RESCALED = "zero_rescaled"  #: heads: 0, kept heads of the layer scaled by n_heads / n_kept
    MEAN = "mean"  #: the mean over every token of the reference prompts
    RESAMPLE = "resample"  #: the activation of another reference prompt, aligned from the end


class Metric(StrEnum):
    """The per-question value a game reports (see :func:`headspex.tasks.question_values`)."""

    LOGPROB = "logprob"  #: log-probability of the correct answer among the candidates (nats)
    MARGIN = "margin"  #: correct score minus the best other one (nats)
    ACCURACY = "accuracy"  #: 1 if the correct answer scores highest
    CALIBRATED_ACCURACY = "calibrated_accuracy"  #: accuracy after removing the reference letter bias


class Scope(StrEnum):
    """How the heads of the chosen layers are grouped into attribution units."""

    LAYER = "layer"  #: one unit per layer
    GROUP = "group"  #: consecutive layers in groups
    ALL = "all"  #: every chosen head in one unit


class Method(StrEnum):
    """How a unit's interactions are estimated."""

    PROXYSPEX = "proxyspex"  #: sampled masks, LightGBM proxy, sparse read-out, refit
    EXACT = "exact"  #: every one of the 2^n masks (small n only)


class Scoring(StrEnum):
    """How a multiple-choice answer is scored."""

    LETTER = "letter"  #: the answer letter after "Answer:" (softmax over the four letters)
    CLOZE = "cloze"  #: the log-likelihood of each choice's text as a continuation


class Basis(StrEnum):
    """Interaction bases over {0,1}^n."""

    FOURIER = "fourier"  #: ±1 parities
    MOBIUS = "mobius"  #: what a set adds when all its members are kept
    REMOVAL = "removal"  #: what a set costs when all its members are ablated (co-Möbius)


E = TypeVar("E", bound=StrEnum)


def parse_enum(enum: type[E], value: str | E, what: str | None = None) -> E:
    """``value`` as a member of ``enum``; a one-line :class:`HeadspexError` naming the choices."""
    try:
        return enum(value)
    except ValueError:
        name = what or enum.__name__
        raise HeadspexError(f"unknown {name} {value!r}; choose one of: {', '.join(choices(enum))}") from None


def choices(enum: type[StrEnum]) -> list[str]:
    """The plain-string values of ``enum``, in declaration order (for argparse ``choices``)."""
    return [member.value for member in enum]
