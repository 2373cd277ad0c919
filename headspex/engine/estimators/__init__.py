"""Estimators that turn a value function over masks into sparse :class:`Interactions`.

One file per family: :mod:`.base` (the shared interface), :mod:`.proxyspex`, :mod:`.baselines`
(LinearBanzhaf, FaithBanzhaf, LassoRegression), :mod:`.exhaustive`. :data:`ESTIMATORS` names
them; :func:`make_estimator` builds one by name.
"""

from __future__ import annotations

from typing import Any

from .base import Estimator
from .baselines import FaithBanzhaf, LassoRegression, LinearBanzhaf
from .exhaustive import Exhaustive
from .proxyspex import ProxySPEX
from ...errors import EngineError

#: Estimator classes by the name they report as ``EngineResult.method``.
ESTIMATORS: dict[str, type[Estimator]] = {
    cls.method: cls for cls in (ProxySPEX, LassoRegression, LinearBanzhaf, FaithBanzhaf, Exhaustive)
}


def make_estimator(name: str, **kwargs: Any) -> Estimator:
    """The estimator called ``name`` (a key of :data:`ESTIMATORS`), built with ``kwargs``."""
    cls = ESTIMATORS.get(name)
    if cls is None:
        raise EngineError(f"unknown estimator {name!r}; choose one of: {', '.join(ESTIMATORS)}")
    return cls(**kwargs)


__all__ = [
    "ESTIMATORS",
    "Estimator",
    "Exhaustive",
    "FaithBanzhaf",
    "LassoRegression",
    "LinearBanzhaf",
    "ProxySPEX",
    "make_estimator",
]
