"""The shared estimator interface: design, evaluation through a mask store, held-out scoring.

Every estimator is used as::

    result = Estimator(...).fit(game, budget, n_test=200, batch_size=256, progress=True, store=None)
    result = Estimator(...).fit_samples(masks, values, player_names=None)

``game`` is a value function ``bool[b, n] -> float[b]`` (True = player kept); ``n_players``
and ``player_names`` are read from it when it has them (an AblationGame does), and given as
keyword arguments for a bare function. Both return an
:class:`~headspex.engine.result.EngineResult`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exact import MAX_DENSE_PLAYERS, all_masks
from ..candidates import regime_weights
from ..interactions import Interactions, Subset, check_masks
from ..links import AUTO_LINK, LINKS, NOISY_SHARE, check_link, link_forward, link_inverse, noisy_logprob_ceiling
from ..result import EngineResult, r2_score
from ..sampling import NEAR_FULL_KEEP, check_values, evaluate_masks, sample_masks
from ..store import MaskStore, mask_keys
from ...errors import EngineError
from ...types import ValueFunction


#: Folds of the value-scale cross-validation that chooses ``link="auto"``.
LINK_CV_FOLDS = 5


class Estimator:
    """Shared sampling / evaluation / test-set logic. Subclasses implement :meth:`_fit_core`.

    Args:
        max_order: largest interaction order to estimate.
        seed: seed of the mask sampler and of any randomised fitting step.
        near_full_fraction: share of the fit budget drawn "near-full" (each player kept w.p.
            ``near_full_keep``) instead of uniform (kept w.p. 1/2).
        near_full_keep: keep probability of the near-full share.
        link: ``"identity"`` fits the values themselves; ``"logodds"`` fits the log-odds of values
            that are log-probabilities (saturating games; :mod:`headspex.engine.links`), and the
            result's :meth:`~headspex.engine.result.EngineResult.predict` maps back to nats;
            ``"auto"`` chooses between the two per fit (:meth:`choose_link`).
    """

    method = "estimator"
    #: ``fit``'s defaults for ``n_test`` (held-out masks per distribution) and ``batch_size``.
    default_n_test = 200
    default_batch_size = 256

    def __init__(
        self,
        max_order: int = 2,
        seed: int | None = 0,
        near_full_fraction: float = 0.0,
        near_full_keep: float = NEAR_FULL_KEEP,
        link: str = "identity",
    ) -> None:
        if max_order < 1:
            raise EngineError(f"max_order must be >= 1, got {max_order}")
        if not 0.0 <= near_full_fraction < 1.0:
            raise EngineError(f"near_full_fraction must be in [0, 1), got {near_full_fraction}")
        self.max_order = int(max_order)
        self.seed = seed
        self.near_full_fraction = float(near_full_fraction)
        self.near_full_keep = float(near_full_keep)
        self.link = check_link(link, allow_auto=True)

    # ---------------------------------------------------------------- helpers
    def get_config(self) -> dict[str, Any]:
        """Hyper-parameters, JSON-serialisable."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and _is_jsonable(v)}

    def min_samples(self, n_players: int) -> int:
        """Smallest number of fit samples this estimator accepts for ``n_players``."""
        return 2

    def default_budget(self, n_players: int) -> int | None:
        """The budget ``fit`` uses when none is given (None: a budget is required)."""
        return None

    #: A fit must see more masks than players (one unknown per single-player term, plus the
    #: constant): with fewer, the players' effects are not identified and a fit returns a
    #: plausible but arbitrary answer (e.g. all-zero values). False only for estimators built
    #: for fewer samples than unknowns (sparse regression with cross-validated penalty).
    identifies_every_player: bool = True

    def minimum_budget(self, n_players: int) -> int:
        """Smallest fit budget accepted for ``n_players``: :meth:`min_samples`, and n + 1 when
        :attr:`identifies_every_player`. Callers check it before evaluating anything."""
        need = self.min_samples(n_players)
        return max(need, n_players + 1) if self.identifies_every_player else need

    def _check_budget(self, n_players: int, budget: int) -> None:
        need = self.minimum_budget(n_players)
        if budget < need:
            sparse = (" (or fit LassoRegression: a sparse regression that takes fewer masks than players)"
                      if self.identifies_every_player and budget <= n_players else "")
            raise EngineError(
                f"{type(self).__name__}(max_order={self.max_order}) needs at least {need} samples "
                f"for n_players={n_players}, got a budget of {budget}; raise the budget to at least {need}{sparse}"
            )

    def design(self, n_players: int, budget: int, rng: np.random.Generator) -> np.ndarray:
        """The fit masks, bool[m, n] with m <= budget, all distinct.

        When 2^n <= budget every mask is used once (exact, and cheaper than sampling).
        """
        if n_players <= MAX_DENSE_PLAYERS and 2**n_players <= budget:
            return all_masks(n_players)
        n_near = int(round(self.near_full_fraction * budget))
        uniform = sample_masks(n_players, budget - n_near, rng, keep_probability=0.5)
        if n_near == 0:
            return uniform
        near = sample_masks(n_players, n_near, rng, keep_probability=self.near_full_keep, exclude=uniform)
        return np.concatenate([uniform, near])

    def test_design(self, n_players: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
        """Held-out masks ``bool[t, n]`` and their distribution labels ``str[t]``.

        ``n_test`` uniform masks, then ``n_test`` near-full ones. The stream depends only on
        the seed, so estimators with the same seed share test masks.
        """
        test_rng = np.random.default_rng(None if self.seed is None else [int(self.seed), 0x7E57])
        parts, labels = [], []
        for label, keep in (("uniform", 0.5), ("near_full", NEAR_FULL_KEEP)):
            if n_test > 0:
                part = sample_masks(n_players, n_test, test_rng, keep_probability=keep)
                parts.append(part)
                labels += [label] * len(part)
        masks = np.concatenate(parts) if parts else np.zeros((0, n_players), bool)
        return masks, np.asarray(labels, dtype=str)

    # -------------------------------------------------------------------- API
    def fit(
        self,
        game: ValueFunction,
        budget: int | None = None,
        *,
        n_players: int | None = None,
        player_names: Sequence[str] | None = None,
        n_test: int | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        store: MaskStore | None = None,
        per_item: bool = False,
    ) -> EngineResult:
        """Sample masks, evaluate them, estimate interactions, and score them on held-out masks.

        Args:
            game: ``bool[b, n] -> float[b]`` (True = player kept); called in batches of
                ``batch_size`` rows and only on masks ``store`` does not hold.
            budget: number of fit evaluations (distinct masks); the estimator's default if None.
            n_players: n; read from ``game.n_players`` when the game has it.
            player_names: n names; default ``game.player_names`` if any, else ``p0..``.
            n_test: held-out masks *per test distribution* (uniform, and near-full = kept w.p.
                0.9); extra evaluations on top of ``budget`` (0 disables the test set).
            batch_size: rows per call of ``game`` (and per file of an on-disk store).
            progress: show tqdm progress bars.
            store: the :class:`MaskStore` that holds what ``game`` returned per mask (e.g. an
                on-disk one, so a run resumes); a fresh in-memory store when None.
            per_item: ``game`` returns ``float[b, q]``, one value per item (e.g. per question),
                and a mask's value is their mean; the store keeps the per-item rows.

        Returns:
            :class:`EngineResult` with ``faithfulness = {"uniform": R², "near_full": R²}``;
            its ``n_evaluations`` counts the distinct masks this fit needed (found in ``store``
            or not); ``store.n_added`` counts those actually sent to ``game``.
        """
        n_players, player_names = _resolve_players(game, n_players, player_names)
        if budget is None:
            budget = self.default_budget(n_players)
        if budget is None:
            raise EngineError(f"{type(self).__name__}.fit needs a budget (number of fit evaluations)")
        budget = int(budget)
        self._check_budget(n_players, budget)
        n_test = self.default_n_test if n_test is None else n_test
        if n_test < 0:
            raise EngineError(f"n_test must be >= 0, got {n_test}")
        if store is None:
            store = MaskStore(None, n_players)
        elif store.n_players != n_players:
            raise EngineError(f"the store holds masks over {store.n_players} players, the game has {n_players}")
        batch_size = self.default_batch_size if batch_size is None else batch_size
        evaluate = _StoreEvaluator(game, store, batch_size, progress, per_item)
        rng = np.random.default_rng(self.seed)
        masks = self.design(n_players, budget, rng)
        values = evaluate(masks, f"{self.method}: fit masks")
        test_masks, test_labels = self.test_design(n_players, n_test)
        test_values = evaluate(test_masks, f"{self.method}: test masks") if len(test_masks) else np.zeros(0)
        # Distinct masks this fit needed: a test mask equal to a fit mask counts once.
        fit_keys = set(mask_keys(masks))
        n_test_new = len(set(mask_keys(test_masks)) - fit_keys)
        return self._finish(
            masks, values, player_names, test_masks, test_values, test_labels,
            n_fit_evaluations=len(fit_keys), n_test_evaluations=n_test_new, rng=rng,
        )

    def fit_samples(
        self,
        masks: np.ndarray,
        values: np.ndarray,
        player_names: Sequence[str] | None = None,
        test_masks: np.ndarray | None = None,
        test_values: np.ndarray | None = None,
    ) -> EngineResult:
        """Estimate from masks and values already collected (no evaluations are made).

        Args:
            masks: bool[m, n]; values: float[m].
            test_masks, test_values: optional held-out set, reported as ``faithfulness["test"]``.
        """
        masks = check_masks(masks)
        values = check_values(values, masks.shape[0], "values")
        self._check_budget(masks.shape[1], masks.shape[0])
        if test_masks is None:
            tm, tv = np.zeros((0, masks.shape[1]), bool), np.zeros(0)
        else:
            tm = check_masks(test_masks, masks.shape[1])
            if test_values is None:
                raise EngineError("test_masks given without test_values")
            tv = check_values(test_values, tm.shape[0], "test_values")
        return self._finish(
            masks, values, player_names, tm, tv, np.asarray(["test"] * len(tm), dtype=str),
            n_fit_evaluations=0, n_test_evaluations=0, rng=np.random.default_rng(self.seed),
        )

    def _finish(
        self,
        masks: np.ndarray,
        values: np.ndarray,
        player_names: Sequence[str] | None,
        test_masks: np.ndarray,
        test_values: np.ndarray,
        test_labels: np.ndarray,
        n_fit_evaluations: int,
        n_test_evaluations: int,
        rng: np.random.Generator,
    ) -> EngineResult:
        n_players = masks.shape[1]
        if player_names is not None and len(player_names) != n_players:
            raise EngineError(f"player_names has {len(player_names)} entries but n_players={n_players}")
        start = time.perf_counter()
        link, link_cv = self.choose_link(masks, values) if self.link == AUTO_LINK else (self.link, None)
        # "auto" may cap noisy log-probabilities below 0 (link_cv["ceiling"]); the explicit
        # links see the values as given and refuse those they cannot take.
        ceiling = link_cv.get("ceiling") if link_cv and link == "logodds" else None
        fitted = link_forward(link, values if ceiling is None else np.minimum(values, ceiling))
        terms, diagnostics = self._fit_core(masks, fitted, rng)
        # The coefficient step travels on the result, not in the JSON diagnostics.
        diagnostics = dict(diagnostics)
        coefficient_model = diagnostics.pop("coefficient_model", None)
        if link_cv is not None:
            diagnostics = {**diagnostics, "link_cv": link_cv}
        fit_seconds = time.perf_counter() - start
        interactions = Interactions(terms, n_players, basis="fourier", player_names=player_names)
        faith: dict[str, float] = {}
        if len(test_masks):
            predictions = link_inverse(link, interactions(test_masks))
            for label in dict.fromkeys(test_labels.tolist()):
                rows = test_labels == label
                faith[label] = r2_score(test_values[rows], predictions[rows])
        config = self.get_config()
        config.update(n_players=n_players, n_fit_samples=int(masks.shape[0]), n_test_samples=int(len(test_masks)))
        return EngineResult(
            interactions=interactions,
            faithfulness=faith,
            masks=masks,
            values=values,
            test_masks=test_masks,
            test_values=test_values,
            test_labels=test_labels,
            n_evaluations=n_fit_evaluations + n_test_evaluations,
            n_fit_evaluations=n_fit_evaluations,
            n_test_evaluations=n_test_evaluations,
            fit_seconds=fit_seconds,
            method=self.method,
            config=config,
            diagnostics=diagnostics,
            link=link,
            coefficient_model=coefficient_model,
        )

    def _rows_always_trained(self, masks: np.ndarray) -> np.ndarray:
        """bool[m]: rows the link choice never validates on (none here; the removal ladder for
        ProxySPEX, whose anchored candidate needs every row of it)."""
        return np.zeros(len(masks), dtype=bool)

    def link_cv_folds(self, masks: np.ndarray) -> list[np.ndarray]:
        """The validation rows of :meth:`choose_link`'s folds (``LINK_CV_FOLDS`` int64 arrays,
        a function of ``masks`` and the seed only)."""
        free = np.flatnonzero(~self._rows_always_trained(masks))
        rng = np.random.default_rng(None if self.seed is None else [int(self.seed), 0x11A4])
        return np.array_split(rng.permutation(free), LINK_CV_FOLDS)

    def choose_link(self, masks: np.ndarray, values: np.ndarray) -> tuple[str, dict[str, Any]]:
        """The link of ``link="auto"``: the one whose whole fit predicts held-out values best.

        Candidates' own CV errors are on the fitted scale, so they cannot compare links. Here the
        estimator is refitted once per link and fold (:meth:`link_cv_folds`, each fold fit as
        ``fit_samples`` would with the same seed) and scored on the value's own scale, with the
        rows weighted so masks near the full model count as much as uniform ones
        (:func:`~headspex.engine.candidates.regime_weights`). Ties go to the identity. Values
        that are not log-probabilities (more than ``NOISY_SHARE`` of them >= 0), or too few
        masks for the folds, take the identity without a CV. Noisy log-probabilities, a few of
        them >= 0, enter the log-odds fits capped at
        :func:`~headspex.engine.links.noisy_logprob_ceiling` (its targets only: every fit is
        still scored against the values as given).

        Args:
            masks: bool[m, n] fit masks; values: float[m] (nats).

        Returns:
            ``(link, info)``; ``info["cv_mse"]`` maps each link to its weighted CV MSE (nats²);
            ``info["ceiling"]`` is the cap on the log-odds fit's values (nats), where one applies.
        """
        m, n = masks.shape
        cap = noisy_logprob_ceiling(values)
        if cap is None:
            return "identity", {"chosen": "identity",
                                "reason": f"more than {NOISY_SHARE:.0%} of the values are >= 0 (not log-probabilities)"}
        targets = {"identity": values, "logodds": np.minimum(values, cap)}
        folds = self.link_cv_folds(masks)
        need = self.minimum_budget(n)
        if min(len(f) for f in folds) < 2 or m - max(len(f) for f in folds) < need:
            return "identity", {"chosen": "identity",
                                "reason": f"{m} masks are too few to compare links by {LINK_CV_FOLDS}-fold CV"}
        weights = np.ones(m)
        free = np.concatenate(folds)
        weights[free] = regime_weights(masks[free], values[free])
        errors: dict[str, float] = {}
        for link in LINKS:
            fold_errors = []
            for val in folds:
                train = np.setdiff1d(np.arange(m), val, assume_unique=True)
                terms, _ = self._fit_core(masks[train], link_forward(link, targets[link][train]),
                                          np.random.default_rng(self.seed))
                predicted = link_inverse(link, Interactions(terms, n, basis="fourier")(masks[val]))
                fold_errors.append(float(np.mean(weights[val] * (values[val] - predicted) ** 2)))
            errors[link] = float(np.mean(fold_errors))
        chosen = "logodds" if errors["logodds"] < errors["identity"] else "identity"
        info: dict[str, Any] = {"chosen": chosen, "cv_mse": errors, "folds": LINK_CV_FOLDS}
        if np.isfinite(cap):
            info["ceiling"] = cap
        return chosen, info

    def _fit_core(
        self, masks: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Subset, float], dict[str, Any]]:
        """Fourier coefficients ``{subset: coef}`` and diagnostics from fit samples."""
        raise NotImplementedError


class _StoreEvaluator:
    """Values of masks through a store: only masks it lacks are sent to the game, batch by batch.

    Each finished batch is added to the store at once (an on-disk store appends one file),
    so an interrupted fit keeps every batch it completed.
    """

    def __init__(self, game: ValueFunction, store: MaskStore, batch_size: int, progress: bool, per_item: bool) -> None:
        self.game, self.store, self.batch_size, self.progress = game, store, batch_size, progress
        self.per_item = per_item

    def __call__(self, masks: np.ndarray, description: str) -> np.ndarray:
        """float64[m]: the stored rows of ``masks``, averaged over items when per-item."""
        masks = check_masks(masks, self.store.n_players)
        evaluate_masks(self.game, self.store.missing(masks), self.batch_size, self.progress, description,
                       per_item=self.per_item, on_batch=self.store.add)
        rows = self.store.stack(masks)
        if rows.ndim != (2 if self.per_item else 1):
            raise EngineError(f"the store holds rows of shape {rows.shape[1:]}, but per_item={self.per_item}")
        return rows.mean(axis=1) if self.per_item else rows


def _resolve_players(
    game: ValueFunction, n_players: int | None, player_names: Sequence[str] | None
) -> tuple[int, Sequence[str] | None]:
    """``(n_players, player_names)`` of a ``fit`` call: given ones, else the game's, checked."""
    game_players = getattr(game, "n_players", None)
    if n_players is None:
        n_players = game_players
    elif game_players is not None and int(game_players) != int(n_players):
        raise EngineError(f"n_players={n_players} but the game has {game_players} players")
    if n_players is None:
        raise EngineError("the game has no n_players attribute; pass n_players= (and player_names=) to fit")
    if int(n_players) < 1:
        raise EngineError(f"n_players must be >= 1, got {n_players}")
    if player_names is None:
        player_names = getattr(game, "player_names", None)
    return int(n_players), player_names


def _is_jsonable(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_jsonable(v) for k, v in value.items())
    return False

