"""Link functions: fit the interactions of a transformed value, report on the value's own scale.

A log-probability saturates: near the full model the correct answer is nearly certain
(log p ≈ 0) and ablating one or two heads barely moves it, while a few more collapse it. That
curve is dense in every basis (Fourier, Möbius, removal), so a sparse fit of log p misses
exactly the near-full masks pruning decides on. The log-odds ``log p - log(1 - p)`` of the same
answer is often close to additive in the heads (a logistic model's logit), hence sparse: on
the trained induction model (benchmarks/engine_benchmark.py) 37 Fourier terms of the log-odds
give R² 0.97 on masks ablating 1-3 heads, where 64 terms of log p give 0.82.

With ``link="logodds"`` an estimator fits the interactions of ``z = forward(v)`` and its
:class:`~headspex.engine.result.EngineResult` predicts ``v = inverse(z)``
(:meth:`~headspex.engine.result.EngineResult.predict`); held-out R² is computed on ``v``.
The interactions themselves are then those of the log-odds, not of ``v``; consumers that read
them as values of ``v`` call :func:`require_identity_link` and refuse such a result.

``link="auto"`` lets the estimator choose between the two by cross-validation on the value's
own scale (nats), since the candidates' own CV errors are on the fitted scale and cannot compare
links (:meth:`~headspex.engine.estimators.base.Estimator.choose_link`); the result records the
link it chose. It also takes noisy log-probabilities, a few of which reach 0: those are capped
just below 0 first (:func:`noisy_logprob_ceiling`). An explicit ``link="logodds"`` refuses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EngineError

#: The links a fit can use (what :attr:`EngineResult.link` holds).
LINKS: tuple[str, ...] = ("identity", "logodds")
#: Estimators' ``link`` argument also takes ``"auto"``: chosen per fit by cross-validation.
AUTO_LINK = "auto"


def check_link(name: str, allow_auto: bool = False) -> str:
    """``name`` if it is a known link (or ``"auto"`` where ``allow_auto``), else an
    :class:`EngineError` naming the choices."""
    choices = LINKS + ((AUTO_LINK,) if allow_auto else ())
    if name not in choices:
        raise EngineError(f"link must be one of {', '.join(choices)}; got {name!r}")
    return name


#: ``link="auto"`` reads values as noisy log-probabilities when at most this share of them is >= 0.
NOISY_SHARE = 0.05
#: Smallest distance below 0 (nats) of the cap on noisy log-probabilities (a value of exactly 0.0).
CEILING_FLOOR = 1e-6


def noisy_logprob_ceiling(values: np.ndarray) -> float | None:
    """The cap under which ``link="auto"`` takes the log-odds of ``values`` (nats), or ``None``.

    A log-probability is < 0, but an estimated one (sampled, or rounded to 0.0 in float32) can
    reach or pass 0. Its largest value ``v_max >= 0`` then says how far the noise reaches, so
    values above ``-v_max`` are indistinguishable from saturated ones and are capped there
    before the log-odds (measured on noisy log-sigmoid games, benchmarks/results/engine.md).

    Returns:
        ``inf`` when every value is < 0 (no cap); ``-max(v_max, CEILING_FLOOR)`` when at most
        :data:`NOISY_SHARE` of them are >= 0; ``None`` when more are (not log-probabilities).
    """
    values = np.asarray(values, dtype=np.float64)
    nonnegative = values >= 0.0
    if not nonnegative.any():
        return float("inf")
    if nonnegative.mean() > NOISY_SHARE:
        return None
    return -max(float(values.max()), CEILING_FLOOR)


def can_take(name: str, values: np.ndarray) -> bool:
    """Whether ``link_forward(name, values)`` is defined (log-odds: every value < 0)."""
    return check_link(name) == "identity" or bool(np.all(np.asarray(values) < 0.0))


def link_forward(name: str, values: np.ndarray) -> np.ndarray:
    """The fitted scale: ``values`` (identity) or their log-odds, float64[m].

    For ``"logodds"`` every value must be a log-probability strictly below 0 (nats); a value
    ``>= 0`` has no finite log-odds and is refused rather than clipped.
    """
    values = np.asarray(values, dtype=np.float64)
    if check_link(name) == "identity":
        return values
    if not can_take(name, values):
        raise EngineError(
            f"link='logodds' needs values that are log-probabilities < 0 (nats); the largest is "
            f"{float(np.max(values)):.6g}. Use the game's 'logprob' metric of one answer, or link='identity'"
        )
    # log p - log(1 - p), with log(1 - p) = log(-expm1(log p)) accurate for p near 0 and near 1.
    return values - np.log(-np.expm1(values))


def link_inverse(name: str, fitted: np.ndarray) -> np.ndarray:
    """Back to the value's scale: ``fitted`` (identity) or ``log sigmoid(z) = -log(1 + e^-z)``."""
    fitted = np.asarray(fitted, dtype=np.float64)
    if check_link(name) == "identity":
        return fitted
    return -np.logaddexp(0.0, -fitted)


def require_identity_link(result: Any, purpose: str) -> None:
    """Refuse an engine result fitted through a non-identity link where ``purpose`` reads its
    interactions as values of the game itself (an :class:`EngineError`)."""
    link = getattr(result, "link", "identity")
    if link != "identity":
        raise EngineError(
            f"{purpose} reads the interactions as values of the game, but this fit used link={link!r} "
            f"(its interactions are of the {link}); refit with link='identity' for {purpose}"
        )
