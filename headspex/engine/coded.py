"""Coded subsampling design with sparse Fourier decoding: recovery without hierarchy.

Tree proxies find a term only through the marginal signal of its players; a parity (or an
order-3 AND whose lower-order Fourier parts cancel) has none. Following the idea of SPEX
(aliasing the Fourier spectrum into a few buckets and reading each lone term's identity off a
code), this module designs the masks so that the spectrum can be *decoded*:

* ``u = 1 - x`` is the ablated indicator, so ``f(x) = sum_k F(k) (-1)^{<k, u>}`` (kept = +1
  Fourier convention). For a random binary ``M`` (n x b) and a *delay* ``d`` the masks
  ``u(l) = M l xor d`` for all ``l in {0,1}^b`` give, after a b-bit Walsh–Hadamard transform,
  the buckets ``U_d(j) = sum_{k : M^T k = j} F(k) (-1)^{<k, d>}`` (2^b aliased sums).
* A bucket holding one term ``k`` (a *singleton*) has ``|U_d(j)| = |U_0(j)|`` for every delay
  and ``sign(U_d(j) / U_0(j)) = (-1)^{<k, d>}``: the signs over ``p`` random delays are the
  syndrome ``D k`` of a random linear code. Low-order ``k`` (|k| <= 3) is decoded by
  meet-in-the-middle over a table of pair syndromes (O(n^2) memory, O(n) per bucket) and
  verified by ``M^T k = j`` (b more parity checks).
* Several independent hashes ``M_1..M_C`` and *peeling* (subtract every decoded term from all
  buckets, then look again) resolve collisions.

The masks are marginally uniform, so every other candidate generator (tree proxy, sparse
regression) uses them as ordinary training rows; the estimator then chooses between candidate
sets by cross-validation. The design never refuses a budget: :func:`plan_coded` returns
``None`` when the budget cannot hold even 16 buckets per hash, and the caller falls back to i.i.d. masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import hadamard

from .interactions import Subset
from ..errors import EngineError

#: Fewest buckets per hash worth decoding (with 8 buckets and ~10 terms almost every bucket collides).
MIN_BUCKET_BITS = 4
#: Largest number of buckets per hash (the b-bit transform is a dense 2^b x 2^b product).
MAX_BUCKET_BITS = 8
#: Extra syndrome bits beyond log2(number of candidate terms), so a wrong decode is unlikely.
SYNDROME_MARGIN_BITS = 6


@dataclass
class CodedPlan:
    """Sizes of a coded design: ``n_hashes`` x ``(n_delays + 1)`` x ``2^bucket_bits`` masks.

    Attributes:
        n_players: n.
        bucket_bits: b (2^b buckets per hash).
        n_delays: p random delays (syndrome bits); the zero delay is added on top.
        n_hashes: C independent hashes.
        max_order: largest order ``t`` decoded (1..3).
    """

    n_players: int
    bucket_bits: int
    n_delays: int
    n_hashes: int
    max_order: int

    @property
    def n_masks(self) -> int:
        """Masks before removing duplicates (the delay rows at l = 0 repeat across hashes)."""
        return self.n_hashes * (self.n_delays + 1) * 2**self.bucket_bits


def syndrome_bits(n_players: int, max_order: int) -> int:
    """Delays needed to tell every term of order <= max_order apart (log2 of their count + margin)."""
    count = sum(math.comb(n_players, k) for k in range(max_order + 1))
    return min(62, int(math.ceil(math.log2(max(count, 2)))) + SYNDROME_MARGIN_BITS)


def plan_coded(n_players: int, budget: int, max_order: int = 3, max_hashes: int = 3) -> CodedPlan | None:
    """Largest coded design that fits ``budget`` masks, or ``None`` if fewer than 16 buckets fit.

    More buckets per hash are preferred to more hashes up to 2^b >= 4 C (p + 1)-ish balance: we
    take the number of hashes C in 1..max_hashes that maximises the buckets each term sees
    (C x 2^b), requiring 2^b >= 16; ties go to more hashes (they resolve collisions by peeling).
    """
    t = max(1, min(int(max_order), 3))
    if n_players < 2:
        return None
    p = syndrome_bits(n_players, t)
    best: CodedPlan | None = None
    for hashes in range(1, max_hashes + 1):
        per_hash = budget // hashes // (p + 1)
        if per_hash < 2**MIN_BUCKET_BITS:
            break
        bits = min(MAX_BUCKET_BITS, int(math.floor(math.log2(per_hash))))
        # Fewer buckets than players' worth of bits would make M^T k = j vacuous; keep b <= n.
        bits = min(bits, n_players)
        plan = CodedPlan(n_players, bits, p, hashes, t)
        if best is None or hashes * 2**bits >= best.n_hashes * 2**best.bucket_bits:
            best = plan
    return best


@dataclass
class CodedDesign:
    """The masks of a coded plan and what the decoder needs to read them.

    Attributes:
        plan: the sizes.
        hash_matrices: bool[C, n, b].
        delays: bool[p + 1, n]; row 0 is the zero delay.
        masks: bool[m, n] distinct masks (True = kept), m <= plan.n_masks.
        layout: int64[C, p + 1, 2^b], the row of ``masks`` holding each (hash, delay, l).
    """

    plan: CodedPlan
    hash_matrices: np.ndarray
    delays: np.ndarray
    masks: np.ndarray
    layout: np.ndarray = field(repr=False)


def coded_design(plan: CodedPlan, rng: np.random.Generator) -> CodedDesign:
    """Draw the hashes and delays of ``plan`` and list its distinct masks."""
    n, b, p, c = plan.n_players, plan.bucket_bits, plan.n_delays, plan.n_hashes
    hashes = rng.random((c, n, b)) < 0.5
    delays = np.concatenate([np.zeros((1, n), bool), rng.random((p, n)) < 0.5])
    l_bits = ((np.arange(2**b)[:, None] >> np.arange(b)[None, :]) & 1).astype(np.int64)  # [2^b, b]
    ablated = np.empty((c, p + 1, 2**b, n), dtype=bool)
    for h in range(c):
        subspace = (l_bits @ hashes[h].T.astype(np.int64)) % 2 == 1  # [2^b, n] = M l
        ablated[h] = subspace[None, :, :] ^ delays[:, None, :]
    flat = ~ablated.reshape(-1, n)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    return CodedDesign(plan, hashes, delays, unique, np.asarray(inverse).reshape(c, p + 1, 2**b))


class _SyndromeDecoder:
    """Finds the player set k (|k| <= t) with D k = s, by table look-ups (meet in the middle)."""

    def __init__(self, delays: np.ndarray, max_order: int) -> None:
        n = delays.shape[1]
        weights = 1 << np.arange(delays.shape[0], dtype=np.int64)
        self.columns = [int(v) for v in (weights @ delays.astype(np.int64))]
        self.max_order = max_order
        self.singles: dict[int, int] = {}
        for i, col in enumerate(self.columns):
            self.singles.setdefault(col, i)
        self.pairs: dict[int, tuple[int, int]] = {}
        if max_order >= 2:
            cols = np.asarray(self.columns, dtype=np.int64)
            for i in range(n - 1):
                keys = (cols[i] ^ cols[i + 1 :]).tolist()
                for offset, key in enumerate(keys):
                    self.pairs.setdefault(key, (i, i + 1 + offset))

    def decode(self, syndrome: int) -> list[Subset]:
        """Every candidate set of the lowest order that explains ``syndrome`` (usually one)."""
        if syndrome == 0:
            return [()]
        if syndrome in self.singles:
            return [(self.singles[syndrome],)]
        if self.max_order >= 2 and syndrome in self.pairs:
            return [self.pairs[syndrome]]
        found: set[Subset] = set()
        if self.max_order >= 3:
            for i, col in enumerate(self.columns):
                pair = self.pairs.get(syndrome ^ col)
                if pair is not None and i not in pair:
                    found.add(tuple(sorted((i, *pair))))
        return sorted(found)


def _buckets(values: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """U[h, d, j] = 2^-b sum_l f(h, d, l) (-1)^{<j, l>} for every hash h and delay d."""
    size = layout.shape[-1]
    return values[layout] @ hadamard(size).astype(np.float64) / size


def decode_coded(design: CodedDesign, values: np.ndarray, rel_tol: float = 0.35, max_passes: int = 8) -> dict[Subset, float]:
    """Fourier terms read off the coded masks' values by singleton detection and peeling.

    Args:
        design: from :func:`coded_design`.
        values: float[m], the value of each row of ``design.masks``.
        rel_tol: a bucket is a singleton when every delay's |U_d| is within this relative
            distance of the delays' median magnitude.
        max_passes: peeling passes over all hashes.

    Returns:
        ``{subset: Fourier coefficient}`` of the decoded terms (kept = +1 convention); the
        constant is included when decoded.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (design.masks.shape[0],):
        raise EngineError(f"decode_coded needs one value per design mask ({design.masks.shape[0]}), got {values.shape}")
    plan = design.plan
    decoder = _SyndromeDecoder(design.delays[1:], plan.max_order)
    buckets = _buckets(values, design.layout)  # [C, p + 1, 2^b]
    bucket_bits = 1 << np.arange(plan.bucket_bits, dtype=np.int64)
    # Buckets below this magnitude count as empty (their sign pattern is noise, not a code word).
    floor = 1e-3 * float(np.std(values)) + 1e-12
    found: dict[Subset, float] = {}
    for _ in range(max_passes):
        new = 0
        for h in range(plan.n_hashes):
            for j in range(2**plan.bucket_bits):
                term = _read_bucket(buckets[h, :, j], decoder, design, h, j, bucket_bits, rel_tol, floor)
                if term is None or term[0] in found:
                    continue
                subset, coef = term
                found[subset] = coef
                new += 1
                _subtract(buckets, design, subset, coef, bucket_bits)
        if new == 0:
            break
    return found


def _read_bucket(
    bucket: np.ndarray, decoder: _SyndromeDecoder, design: CodedDesign, h: int, j: int,
    bucket_bits: np.ndarray, rel_tol: float, floor: float,
) -> tuple[Subset, float] | None:
    """The (subset, coefficient) a singleton bucket holds, or None (empty, multiton, undecodable)."""
    magnitudes = np.abs(bucket)
    scale = float(np.median(magnitudes))
    if scale <= floor or np.any(np.abs(magnitudes - scale) > rel_tol * scale):
        return None
    signs = (bucket[1:] * bucket[0]) < 0  # (-1)^{<k, d>} relative to the zero delay
    syndrome = int(np.sum(np.int64(1) << np.flatnonzero(signs).astype(np.int64)))
    candidates = decoder.decode(syndrome)
    hashes = design.hash_matrices[h].astype(np.int64)
    for subset in candidates:
        # Verify the bucket: M^T k must equal j (b independent parity checks).
        k_hash = int(((hashes[list(subset)].sum(axis=0) % 2) @ bucket_bits)) if subset else 0
        if k_hash == j:
            parity = design.delays[:, list(subset)].sum(axis=1) % 2 if subset else np.zeros(len(bucket), int)
            return subset, float(np.mean(bucket * (1.0 - 2.0 * parity)))
    return None


def _subtract(buckets: np.ndarray, design: CodedDesign, subset: Subset, coef: float, bucket_bits: np.ndarray) -> None:
    """Remove a decoded term from every hash's bucket (peeling)."""
    parity = design.delays[:, list(subset)].sum(axis=1) % 2 if subset else np.zeros(buckets.shape[1], int)
    signed = coef * (1.0 - 2.0 * parity)
    for h in range(design.plan.n_hashes):
        j = int(((design.hash_matrices[h][list(subset)].astype(np.int64).sum(axis=0) % 2) @ bucket_bits)) if subset else 0
        buckets[h, :, j] -= signed
