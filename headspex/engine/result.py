"""Result container and faithfulness (held-out R²)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .interactions import Interactions, check_masks
from .links import check_link, link_inverse
from .refit import CoefficientModel
from .sampling import check_values, evaluate_masks, sample_masks
from ..errors import EngineError
from ..io import to_jsonable


def r2_score(values: np.ndarray, predictions: np.ndarray) -> float:
    """Coefficient of determination ``1 - SSE / SST`` (NaN if fewer than 2 values or SST = 0)."""
    values = np.asarray(values, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    total = float(np.sum((values - values.mean()) ** 2))
    if total == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((values - predictions) ** 2)) / total


def faithfulness(
    interactions: Interactions | Callable[[np.ndarray], np.ndarray],
    data: Callable[[np.ndarray], np.ndarray] | tuple[np.ndarray, np.ndarray],
    n_masks: int = 1000,
    keep_probability: float = 0.5,
    seed: int | None = 0,
    batch_size: int = 256,
) -> float:
    """R² of ``interactions`` against a value function on random masks, or on given (masks, values).

    Args:
        interactions: the explanation (any callable ``bool[m, n] -> float[m]``).
        data: a value function (then ``n_masks`` masks with each player kept w.p.
            ``keep_probability`` are drawn with ``seed`` and evaluated) or a tuple
            ``(masks bool[m, n], values float[m])``.

    Returns:
        R² (1 = perfect; can be negative).
    """
    if isinstance(data, tuple):
        masks, values = data
        masks = check_masks(masks)
        values = check_values(values, masks.shape[0], "values")
    else:
        n_players = getattr(interactions, "n_players", None)
        if n_players is None:
            raise EngineError("pass (masks, values) when interactions has no n_players")
        masks = sample_masks(n_players, n_masks, seed, keep_probability=keep_probability)
        values = evaluate_masks(data, masks, batch_size=batch_size)
    return r2_score(values, interactions(masks))


@dataclass
class EngineResult:
    """What an estimator's ``fit`` returns.

    Attributes:
        interactions: the recovered :class:`Interactions`.
        faithfulness: held-out R² per test distribution, e.g. ``{"uniform": .., "near_full": ..}``
            (empty when no test masks were evaluated).
        masks, values: the fit samples, bool[m, n] and float[m].
        test_masks, test_values: held-out masks/values, bool[t, n] and float[t];
            ``test_labels`` (str[t]) names the distribution of each row.
        n_evaluations: distinct masks the fit needed values for (fit + test; a test mask equal
            to a fit mask counts once), including those a store passed to ``fit`` already held
            (the store's ``n_added`` counts the masks actually sent to the value function).
        n_fit_evaluations, n_test_evaluations: the split of ``n_evaluations``.
        fit_seconds: wall time of the estimation (excluding value-function calls).
        method: estimator name; config: its hyper-parameters; diagnostics: extra information.
        link: the scale the interactions were fitted on (:mod:`headspex.engine.links`):
            ``"identity"`` (the values themselves) or ``"logodds"`` (then ``interactions`` are of
            the log-odds and :meth:`predict` maps them back to the values' scale).
        coefficient_model: the fit's last step with its selection and penalty fixed
            (:class:`~headspex.engine.refit.CoefficientModel`), which bootstrap intervals refit;
            None where the estimator records none.
    """

    interactions: Interactions
    faithfulness: dict[str, float]
    masks: np.ndarray
    values: np.ndarray
    test_masks: np.ndarray
    test_values: np.ndarray
    test_labels: np.ndarray
    n_evaluations: int
    n_fit_evaluations: int
    n_test_evaluations: int
    fit_seconds: float
    method: str
    config: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    link: str = "identity"
    coefficient_model: CoefficientModel | None = None

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """The fitted value of each mask on the values' own scale, float64[m] for bool[m, n]
        (``interactions(masks)`` through the inverse link)."""
        return link_inverse(self.link, self.interactions(masks))

    def __repr__(self) -> str:
        faith = ", ".join(f"{k}={v:.4f}" for k, v in self.faithfulness.items())
        return (
            f"EngineResult(method={self.method!r}, link={self.link!r}, n_terms={len(self.interactions)}, "
            f"n_evaluations={self.n_evaluations}, faithfulness={{{faith}}}, fit_seconds={self.fit_seconds:.2f})"
        )

    def save(self, directory: str | Path) -> None:
        """Write ``result.json`` (scalars, config, interactions) and ``arrays.npz`` (samples)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "headspex.engine.EngineResult/1",
            "interactions": self.interactions.to_json_dict(),
            "faithfulness": self.faithfulness,
            "n_evaluations": self.n_evaluations,
            "n_fit_evaluations": self.n_fit_evaluations,
            "n_test_evaluations": self.n_test_evaluations,
            "fit_seconds": self.fit_seconds,
            "method": self.method,
            "link": self.link,
            "config": self.config,
            "diagnostics": to_jsonable(self.diagnostics),
            "coefficient_model": None if self.coefficient_model is None else self.coefficient_model.to_json(),
        }
        (directory / "result.json").write_text(json.dumps(meta, indent=1))
        np.savez_compressed(
            directory / "arrays.npz",
            masks=self.masks,
            values=self.values,
            test_masks=self.test_masks,
            test_values=self.test_values,
            test_labels=self.test_labels.astype(str),
        )

    @classmethod
    def load(cls, directory: str | Path) -> EngineResult:
        """Inverse of :meth:`save`."""
        directory = Path(directory)
        meta = json.loads((directory / "result.json").read_text())
        arrays = np.load(directory / "arrays.npz")
        return cls(
            interactions=Interactions.from_json_dict(meta["interactions"]),
            faithfulness={k: float(v) for k, v in meta["faithfulness"].items()},
            masks=arrays["masks"].astype(bool),
            values=arrays["values"],
            test_masks=arrays["test_masks"].astype(bool),
            test_values=arrays["test_values"],
            test_labels=arrays["test_labels"],
            n_evaluations=int(meta["n_evaluations"]),
            n_fit_evaluations=int(meta["n_fit_evaluations"]),
            n_test_evaluations=int(meta["n_test_evaluations"]),
            fit_seconds=float(meta["fit_seconds"]),
            method=meta["method"],
            config=meta["config"],
            diagnostics=meta.get("diagnostics", {}),
            link=check_link(meta.get("link", "identity")),
            coefficient_model=None if meta.get("coefficient_model") is None
            else CoefficientModel.from_json(meta["coefficient_model"]),
        )
