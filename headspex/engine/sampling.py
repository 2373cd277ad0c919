"""Mask sampling and batched, validated, de-duplicated calls to a value function."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .interactions import check_masks
from .store import mask_keys
from ..errors import EngineError
from ..types import ValueFunction

#: Keep probability of the "near-full" distribution (each player kept w.p. 0.9), the regime
#: where pruning operates (a few players ablated).
NEAR_FULL_KEEP = 0.9


def sample_masks(
    n_players: int,
    n_masks: int,
    rng: np.random.Generator | int | None = None,
    keep_probability: float = 0.5,
    distinct: bool = True,
    exclude: np.ndarray | None = None,
    max_rounds: int = 50,
) -> np.ndarray:
    """Random masks with each player kept independently with ``keep_probability``.

    Args:
        n_players: n.
        n_masks: number of rows m wanted.
        rng: numpy Generator or seed.
        keep_probability: P(player kept); 0.5 = uniform over all masks, 0.9 = "near-full".
        distinct: return pairwise-distinct rows (and rows not in ``exclude``), so an expensive
            value function is never asked the same mask twice. If the mask space is too small
            (or too concentrated) to supply that many distinct rows, fewer rows are returned.
        exclude: bool[k, n] masks that must not be returned (e.g. already evaluated).
        max_rounds: redraw rounds used to fill up duplicates before giving up.

    Returns:
        bool[m', n] with m' <= n_masks (m' == n_masks unless the space ran out).
    """
    if not 0.0 < keep_probability < 1.0:
        raise EngineError(f"keep_probability must be in (0, 1), got {keep_probability}")
    if n_masks < 0:
        raise EngineError(f"n_masks must be >= 0, got {n_masks}")
    rng = np.random.default_rng(rng)
    if not distinct:
        return rng.random((n_masks, n_players)) < keep_probability
    if n_players <= 20 if keep_probability == 0.5 else n_players <= 16:
        # Small space: draw without replacement over the allowed masks, with each mask's
        # probability under the i.i.d. design (exactly uniform when keep_probability = 1/2).
        allowed = np.ones(2**n_players, dtype=bool)
        weights = 1 << np.arange(n_players, dtype=np.int64)
        if exclude is not None and len(exclude):
            allowed[check_masks(exclude, n_players).astype(np.int64) @ weights] = False
        candidates = np.flatnonzero(allowed)
        probabilities = None
        if keep_probability != 0.5:
            kept = popcount(candidates).astype(np.float64)
            log_p = kept * np.log(keep_probability) + (n_players - kept) * np.log1p(-keep_probability)
            probabilities = np.exp(log_p - log_p.max())
            probabilities /= probabilities.sum()
        size = min(n_masks, len(candidates))
        chosen = rng.choice(candidates, size=size, replace=False, p=probabilities)
        return ((chosen[:, None] >> np.arange(n_players)[None, :]) & 1).astype(bool)
    seen: set[bytes] = set()
    if exclude is not None and len(exclude):
        seen.update(mask_keys(check_masks(exclude, n_players)))
    rows: list[np.ndarray] = []
    for _ in range(max_rounds):
        missing = n_masks - len(rows)
        if missing <= 0:
            break
        # Oversample a little so one round usually suffices.
        draw = rng.random((int(missing * 1.2) + 8, n_players)) < keep_probability
        for row, key in zip(draw, mask_keys(draw)):
            if key not in seen:
                seen.add(key)
                rows.append(row)
                if len(rows) == n_masks:
                    break
    if not rows:
        return np.zeros((0, n_players), dtype=bool)
    return np.asarray(rows, dtype=bool)


def popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each non-negative integer (int64[...]); numpy >= 1.24 compatible."""
    values = np.asarray(values).astype(np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values).astype(np.int64)
    counts = np.zeros(values.shape, dtype=np.int64)
    while np.any(values):
        counts += (values & np.uint64(1)).astype(np.int64)
        values = values >> np.uint64(1)
    return counts


def check_values(values: np.ndarray, n_masks: int, what: str = "value function", per_item: bool = False) -> np.ndarray:
    """Validate values for ``n_masks`` masks: float, shape (m,), finite.

    With ``per_item`` a matrix ``[m, q]`` (one value per mask and item, e.g. per question)
    is accepted too.
    """
    arr = np.asarray(values)
    if arr.shape != (n_masks,) and not (per_item and arr.ndim == 2 and arr.shape[0] == n_masks):
        expected = f"({n_masks},) or ({n_masks}, q)" if per_item else f"({n_masks},), one float per mask"
        raise EngineError(f"{what} returned shape {arr.shape} for {n_masks} masks; expected {expected}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise EngineError(f"{what} returned non-numeric values (dtype {arr.dtype})") from err
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise EngineError(
            f"{what} returned {int(bad.sum())} NaN/inf value(s) (first at row {first}: {arr[first]})"
        )
    return arr


def evaluate_masks(
    value_fn: ValueFunction,
    masks: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
    description: str = "evaluating masks",
    per_item: bool = False,
    on_batch: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Call ``value_fn`` on ``masks`` in batches of ``batch_size`` rows, validating every batch.

    Args:
        value_fn: ``bool[b, n] -> float[b]`` (or ``float[b, q]`` with ``per_item``).
        masks: bool[m, n].
        per_item: accept one value per mask and item (``float[b, q]``, e.g. per question).
        on_batch: called with each batch and its validated values (e.g. ``MaskStore.add``,
            so an interrupted evaluation keeps the finished batches).

    Returns:
        float64[m] (float64[m, q] with ``per_item``).

    Raises:
        EngineError: on a wrong output shape or NaN/inf values.
    """
    masks = check_masks(masks)
    if batch_size < 1:
        raise EngineError(f"batch_size must be >= 1, got {batch_size}")
    m = masks.shape[0]
    parts: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=m, desc=description, unit="mask")
    try:
        for start in range(0, m, batch_size):
            batch = masks[start : start + batch_size]
            parts.append(check_values(value_fn(batch.copy()), len(batch), per_item=per_item))
            if on_batch is not None:
                on_batch(batch, parts[-1])
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate(parts) if parts else np.zeros(0)
