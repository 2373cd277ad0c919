"""ProxySPEX: a LightGBM proxy, its exact read-out in three bases, candidate supports from other sources
(matching pursuit, LASSO, coded decoding, the removal ladder), a CV-chosen winner, a refit."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import Estimator
from ..anchored import detect_ladder
from ..candidates import cv_prefix_errors, least_squares, nested_prefix_errors, rank_terms, regime_weights
from ..coded import CodedDesign
from ..design import draw_design, plan_design
from ..exact import MAX_DENSE_PLAYERS, dense_to_interactions, fourier_transform_dense
from ..interactions import (
    BASES,
    Basis,
    Subset,
    _all_subsets,
    _check_basis,
    basis_matrix,
    convert_terms,
    fourier_to_mobius_dict,
)
from ..sampling import NEAR_FULL_KEEP
from ..refit import CoefficientModel
from ..search import extra_searches
from ..trees import lightgbm_to_fourier
from ...errors import EngineError

#: Candidate sources: the tree proxy (in each basis of ``bases``) and the others of
#: :func:`~headspex.engine.search.extra_searches`.
SOURCES = ("proxy", "pursuit", "growth", "lasso", "ridge", "coded", "anchored")
#: The anchored removal candidate wins when its CV error is within this factor of the best:
#: it is exact where at most 2 players are ablated, which a CV over mostly larger ablations does
#: not reward. Measured on the trained induction model (with the proxy's CV shared and nested
#: alike: the winners there did not change).
ANCHOR_TOLERANCE = 1.5
#: Candidates whose CV error is within this share of the lowest tie; the fewest terms wins
#: (parsimony, as in the one-standard-error rule). 270 SmolLM2 heads, regime masks: first-order
#: ridge beat the first-order LASSO by 1.2 % in the CV at 1 000 masks and lost by 0.020 R² on
#: held-out masks (paired bootstrap [-0.039, -0.003]).
CANDIDATE_TOLERANCE = 0.02
#: First prefix length the CV scores; doubled while the best size sits in its last fifth.
SELECT_HEAD = 256


class ProxySPEX(Estimator):
    """ProxySPEX with support selection that keeps the proxy's fidelity.

    Pipeline (benchmarks/results/engine.md has the ablations that justify each step):

    1. **Design** (:func:`~headspex.engine.design.plan_design`, unless ``design_rule=False``):
       ``near_full_fraction`` of the budget near-full (how many players a mask ablates scales
       with n), the uniform rest drawn as a coded design when the budget holds one, and for
       n <= 16 a removal ladder (full, single, pair ablations); all distinct.
    2. **Proxy**: LightGBM regressor; depth picked from ``proxy_depths`` and number of trees by
       early stopping on a 20% validation split (2 fits instead of a 40-fit grid search).
    3. **Exact extraction** of the proxy's Fourier coefficients up to ``max_order``.
    4. **Ranking in three bases**: Fourier candidates by |coefficient|, each preceded by all its
       subsets (downward closure: an order-3 AND term is one block of 8 Fourier terms, so
       nothing of it is dropped); Möbius candidates (the same proxy, converted exactly) by the
       standard deviation of their AND term — an order-3 AND is a single Möbius term; removal
       candidates by ``|c| * std`` of their term on the fit masks — an OR of kept players
       (backup heads) is a single removal term.
    5. **Support size by K-fold cross-validation** of the least-squares refit over *all*
       prefixes of a ranking at once (one Cholesky factor per fold; every prefix solution comes
       from the leading block of the triangular factor). With ``nested_ranking`` (default) the
       ranking is redone inside every fold from a proxy fitted on that fold's training rows
       only, so the CV error is honest: a ranking from a proxy that saw the validation rows
       makes every prefix look better than it generalises (measured on 270 SmolLM2 heads: CV
       R² 0.78 for a support that reached 0.68 on held-out masks). ``support_rule="min"`` takes
       the CV minimum; ``"one_se"`` the smallest support within one standard error of it
       (better near-full R² at small budgets, see engine.md's follow-up; not the default).
    6. **Residual growth**: a proxy fitted to the residual proposes missing terms; they are
       spliced in after the selected support and step 5 is repeated (on the all-rows ranking)
       while CV error drops. The candidate's error stays the nested one of step 5: the growth's
       own CV gain is optimistic (its residual proxy saw every row) and is not credited.
    7. **Other candidate sets** (``sources``, :mod:`headspex.engine.search`) on the same folds:
       matching pursuit and LASSO over screened low-order terms (no tree needed), LASSO over every
       term of order <= 2 unscreened where the LASSO baseline fits them all (its own model class,
       so never worse than it by more than CV noise), the removal pursuit grown upward from its
       own choices up to ``max_order`` (ORs of many backup heads),
       dense ridge over every term of order 1 (and 2 where they fit: functions dense at low order;
       and order <= 3 in the removal basis, penalty graded by order, where they fit), terms
       decoded from the coded design (no marginal signal needed), and the anchored removal fit
       when the ladder is there. Validation errors weigh uniform and near-full masks alike
       (``balance``); ladder rows are never validated.
    8. The lowest CV error wins (anchored within ``anchor_tolerance`` of it); candidates within
       ``candidate_tolerance`` of it tie, and the one with the fewest terms (in its own basis)
       wins the tie: CV errors that close are noise, and the sparser fit generalises as well or
       better (the one-standard-error rule's reasoning, applied across candidates). With
       ``baseline_guard`` (default) a candidate ties only if its CV error is also no higher than
       that of the candidate in the LASSO baseline's own model class (``baseline_class`` in
       :mod:`~headspex.engine.search`): sparsity is never bought with CV error above the
       baseline's (270 SmolLM2 heads, 500 matched masks: a LASSO over the screened pool, 0.4 %
       above the all-pairs LASSO in the CV, won the tie and scored 0.081 R² below the baseline
       on held-out masks). **Refit** of its
       selected coefficients on all samples by ridge with a GCV-chosen penalty (grid starting at
       ~0, i.e. least squares); LASSO, ridge and anchored winners keep their own coefficients.
       ``diagnostics["winner"]`` names the source and basis, ``diagnostics["basis"]`` the basis.

    ``link="logodds"`` runs all of it on the log-odds of log-probability values (saturating
    games, :mod:`headspex.engine.links`); the result's ``predict`` maps back to nats.
    ``link="auto"`` chooses the link by a value-scale CV of the whole fit (10 more fits: 2 links x 5 folds).

    ``selection="energy"`` reproduces the reference post-processing (keep the coefficients
    covering ``energy_threshold`` of the energy, RidgeCV refit) for ablations.
    """

    method = "proxyspex"

    def __init__(
        self,
        max_order: int = 3,
        seed: int | None = 0,
        near_full_fraction: float = 0.15,
        near_full_keep: float = NEAR_FULL_KEEP,
        selection: str = "cv",
        cv_folds: int = 4,
        max_candidates: int = 1500,
        residual_rounds: int = 2,
        proxy_depths: Sequence[int] = (3, 5),
        proxy_learning_rate: float = 0.1,
        proxy_max_trees: int = 1000,
        proxy_min_child_samples: int = 10,
        energy_threshold: float = 0.95,
        n_jobs: int = 1,
        blas_threads: int = 1,
        refit: str = "ridge",
        bases: Sequence[str] = BASES,
        support_rule: str = "min",
        sources: Sequence[str] = SOURCES,
        design_rule: bool = True,
        balance: bool = True,
        anchor_tolerance: float = ANCHOR_TOLERANCE,
        candidate_tolerance: float = CANDIDATE_TOLERANCE,
        baseline_guard: bool = True,
        nested_ranking: bool = True,
        link: str = "identity",
    ) -> None:
        super().__init__(max_order, seed, near_full_fraction, near_full_keep, link)
        if support_rule not in ("min", "one_se"):
            raise EngineError(f"support_rule must be 'min' or 'one_se', got {support_rule!r}")
        self.support_rule = support_rule
        if selection not in ("cv", "energy"):
            raise EngineError(f"selection must be 'cv' or 'energy', got {selection!r}")
        if cv_folds < 2:
            raise EngineError(f"cv_folds must be >= 2, got {cv_folds}")
        self.selection = selection
        self.cv_folds = int(cv_folds)
        self.max_candidates = int(max_candidates)
        self.residual_rounds = int(residual_rounds)
        self.proxy_depths = [int(d) for d in proxy_depths]
        self.proxy_learning_rate = float(proxy_learning_rate)
        self.proxy_max_trees = int(proxy_max_trees)
        self.proxy_min_child_samples = int(proxy_min_child_samples)
        self.energy_threshold = float(energy_threshold)
        self.n_jobs = int(n_jobs)
        self.blas_threads = int(blas_threads)
        if refit not in ("ols", "ridge"):
            raise EngineError(f"refit must be 'ols' or 'ridge', got {refit!r}")
        self.refit = refit
        self.bases = [_check_basis(b) for b in bases]
        if not self.bases:
            raise EngineError("bases must name at least one of 'fourier', 'mobius', 'removal'")
        unknown = sorted(set(sources) - set(SOURCES))
        if unknown or "proxy" not in sources:
            raise EngineError(f"sources must include 'proxy' and come from {SOURCES}, got {tuple(sources)}")
        self.sources = list(sources)
        self.design_rule = bool(design_rule)
        self.balance = bool(balance)
        self.anchor_tolerance = float(anchor_tolerance)
        if not 0.0 <= candidate_tolerance < 1.0:
            raise EngineError(f"candidate_tolerance must be in [0, 1), got {candidate_tolerance!r}")
        self.candidate_tolerance = float(candidate_tolerance)
        self.baseline_guard = bool(baseline_guard)
        self.nested_ranking = bool(nested_ranking)
        self._coded: CodedDesign | None = None
        self._row_weights: np.ndarray | None = None
        self._fit_masks: np.ndarray | None = None

    def min_samples(self, n_players: int) -> int:
        # Early stopping needs a validation split and the CV needs a few rows per fold.
        return max(20, 4 * self.cv_folds)

    def design(self, n_players: int, budget: int, rng: np.random.Generator) -> np.ndarray:
        """The fit masks of :func:`~headspex.engine.design.plan_design` (``design_rule=True``)."""
        self._coded = None
        if not self.design_rule:
            return super().design(n_players, budget, rng)
        plan = plan_design(n_players, budget, self.near_full_fraction, self.max_order,
                           coded="coded" in self.sources, ladder="anchored" in self.sources)
        masks, self._coded = draw_design(plan, rng)
        return masks

    def _rows_always_trained(self, masks: np.ndarray) -> np.ndarray:
        """The removal ladder's rows: the anchored candidate needs all of them in every fit."""
        if "anchored" not in self.sources:
            return super()._rows_always_trained(masks)
        return detect_ladder(masks)[1]

    # ----------------------------------------------------------------- proxy
    def _lgbm(self, depth: int, n_trees: int, seed: int) -> Any:
        import lightgbm as lgb

        return lgb.LGBMRegressor(
            max_depth=depth,
            num_leaves=2**depth,
            learning_rate=self.proxy_learning_rate,
            n_estimators=n_trees,
            min_child_samples=self.proxy_min_child_samples,
            max_bin=2,
            random_state=seed,
            n_jobs=self.n_jobs,
            verbose=-1,
        )

    def _fit_proxy(
        self, features: np.ndarray, targets: np.ndarray, rng: np.random.Generator, depth: int | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """LightGBM proxy: depth from ``proxy_depths`` (unless given) and trees by early stopping."""
        import lightgbm as lgb

        m = len(targets)
        order = rng.permutation(m)
        n_val = max(4, m // 5)
        val, train = order[:n_val], order[n_val:]
        seed = int(rng.integers(2**31 - 1))
        best: tuple[float, Any] | None = None
        for d in [depth] if depth is not None else self.proxy_depths:
            model = self._lgbm(d, self.proxy_max_trees, seed)
            model.fit(
                features[train], targets[train],
                eval_X=(features[val],), eval_y=(targets[val],),
                callbacks=[lgb.early_stopping(30, verbose=False)],
            )
            score = float(model.best_score_["valid_0"]["l2"])
            if best is None or score < best[0]:
                best = (score, model)
        assert best is not None
        val_mse, model = best
        # No refit on all rows: the proxy only *ranks* candidate terms; the coefficients are
        # re-estimated by least squares on every sample afterwards.
        var = float(np.var(targets[val])) or 1.0
        info = {"depth": int(model.max_depth), "n_trees": int(model.best_iteration_ or model.n_estimators),
                "val_r2": 1.0 - val_mse / var}
        return model, info

    # ------------------------------------------------------------- selection
    def _ranked_candidates(self, coefficients: dict[Subset, float], cap: int, head: Sequence[Subset] = ()) -> list[Subset]:
        """Downward-closed ranking: ``head`` first, then candidates by |coef|, each after its subsets."""
        ordered: list[Subset] = [()]
        seen: set[Subset] = {()}

        def push(subset: Subset) -> None:
            for sub in sorted(_all_subsets(subset), key=len):
                if sub not in seen:
                    seen.add(sub)
                    ordered.append(sub)

        for subset in head:
            push(subset)
        for subset, _ in sorted(coefficients.items(), key=lambda sc: -abs(sc[1])):
            if len(ordered) >= cap:
                break
            if subset and len(subset) <= self.max_order:
                push(subset)
        return ordered[: max(cap, len(head) + 1)]

    def _cv_prefix_errors(self, design: np.ndarray, targets: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
        """Validation error of every prefix of ``design``'s columns per fold (float64[folds, K]).

        See :func:`~headspex.engine.candidates.cv_prefix_errors`; validation errors are weighted by
        the fit's regime weights when ``balance`` is on.
        """
        return cv_prefix_errors(design, targets, folds, self._row_weights)

    def _select(
        self, masks: np.ndarray, targets: np.ndarray, ranking: list[Subset], folds: list[np.ndarray],
        basis: Basis = "fourier", fold_rankings: list[list[Subset]] | None = None,
    ) -> tuple[int, float, np.ndarray]:
        """Support size k of ``ranking`` by CV: ``(k, CV MSE at k, CV MSE of every scored prefix)``.

        With ``fold_rankings`` (one per fold, each built without that fold's rows) fold f scores
        the prefixes of its own ranking (nested CV); otherwise every fold scores ``ranking``.
        """
        per_fold = fold_rankings if fold_rankings is not None else [ranking] * len(folds)
        longest = max(len(r) for r in per_fold)
        # Score a growing head of the ranking: a prefix's CV error does not depend on the
        # columns after it, so doubling the head while the best size sits in its last fifth
        # finds the same minimum as scoring all columns whenever the curve has one minimum.
        size = min(longest, SELECT_HEAD)
        while True:
            if fold_rankings is None:
                fold_errors = self._cv_prefix_errors(basis_matrix(masks, ranking[:size], basis), targets, folds)
            else:
                fold_errors = nested_prefix_errors(masks, targets, per_fold, folds, basis, size, self._row_weights)
            errors = fold_errors.mean(axis=0)
            k = min(int(np.argmin(errors)) + 1, len(ranking))
            if size >= longest or k < 0.8 * size:
                break
            size = min(longest, 2 * size)
        if self.support_rule == "one_se" and np.isfinite(errors[k - 1]):
            # The smallest support whose CV error is within one standard error of the best:
            # at small budgets the minimum is flat and noisy, and the larger supports it picks
            # extrapolate badly to masks unlike the training ones (near-full).
            spread = fold_errors[:, k - 1].std(ddof=1) / np.sqrt(len(folds))
            k = int(np.argmax(errors <= errors[k - 1] + spread)) + 1
        return k, float(errors[k - 1]), errors

    def _fit_core(
        self, masks: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Subset, float], dict[str, Any]]:
        from threadpoolctl import threadpool_limits

        # Single-threaded BLAS: the matrices are mid-sized and multi-threaded OpenBLAS spins
        # badly on a shared 2-core machine (measured 10-40x slowdowns of Cholesky under load).
        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            return self._fit_core_impl(masks, values, rng)

    def _fit_core_impl(
        self, masks: np.ndarray, values: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Subset, float], dict[str, Any]]:
        m, n = masks.shape
        if n <= MAX_DENSE_PLAYERS and m == 2**n:
            index = masks.astype(np.int64) @ (1 << np.arange(n, dtype=np.int64))
            if len(np.unique(index)) == m:
                # Every mask observed (small n, e.g. a 9-head layer): the exact transform truncated
                # at max_order is the best order-limited fit; no proxy needed.
                dense_values = np.empty(m)
                dense_values[index] = values
                exact = dense_to_interactions(fourier_transform_dense(dense_values, n), n, "fourier",
                                              max_order=self.max_order)
                # On all 2^n masks the truncated transform is least squares on its terms (orthogonal columns).
                model = CoefficientModel("fourier", tuple(s for s in exact.subsets if s))
                return exact.as_dict(), {"exact": True, "n_selected": len(exact), "coefficient_model": model}
        features = masks.astype(np.float32)
        proxy, proxy_info = self._fit_proxy(features, values, rng)
        coefficients = lightgbm_to_fourier(proxy, self.max_order)
        diagnostics: dict[str, Any] = {"proxy": proxy_info, "n_proxy_terms": len(coefficients)}
        if self.selection == "energy":
            terms, model = self._energy_selection(masks, values, coefficients)
            return terms, {**diagnostics, "basis": "fourier", "winner": "proxy:fourier", "coefficient_model": model}
        self._fit_masks = masks
        ladder = detect_ladder(masks) if "anchored" in self.sources else (0, np.zeros(m, dtype=bool))
        free = np.flatnonzero(~ladder[1])  # ladder rows are always trained on, never validated
        folds = np.array_split(rng.permutation(free), self.cv_folds)
        self._row_weights = None
        if self.balance:
            self._row_weights = np.ones(m)
            self._row_weights[free] = regime_weights(masks[free], values[free])
        min_train = m - max(len(f) for f in folds)
        cap = max(2, min(self.max_candidates, int(0.7 * min_train)))
        # Search the support in each basis: AND-like (synergy) effects are sparse in the Möbius
        # basis, OR-like (redundancy, backup heads) in the removal basis, parities in Fourier.
        fold_coefficients = (self._fold_proxies(features, values, folds, proxy_info["depth"], rng)
                             if self.nested_ranking else None)
        # Each fold's own ranking per basis (the Fourier ones also serve the coded candidate).
        fold_rankings: dict[str, list[list[Subset]]] = {} if fold_coefficients is None else {
            basis: [self._rank(basis, c, cap) for c in fold_coefficients] for basis in {*self.bases, "fourier"}}
        searches: dict[str, dict[str, Any]] = {}
        for basis in self.bases:
            found = self._search(basis, masks, values, features, coefficients, proxy_info["depth"], folds, cap, rng,
                                 fold_rankings.get(basis))
            searches[f"proxy:{basis}"] = {"basis": basis, **found}
        others = extra_searches(
            masks, values, folds, coefficients, self._ranked_candidates(coefficients, cap), self.max_order, cap,
            coded=self._coded if "coded" in self.sources else None,
            ladder=ladder if ladder[0] else None, row_weights=self._row_weights,
            pursuit_bases=[b for b in ("fourier", "removal") if "pursuit" in self.sources],
            growth="growth" in self.sources,
            lasso="lasso" in self.sources, ridge="ridge" in self.sources, fold_proxy_fourier=fold_coefficients,
            fold_fallback_rankings=fold_rankings.get("fourier"),
        )
        searches.update(others)
        self._row_weights = None
        # Errors within round-off of 0 tie (an exact fit); ties go to the sparsest, then to the first search.
        floor = 1e-12 * (float(np.var(values)) or 1.0)

        def error(name: str) -> float:
            return max(float(searches[name]["cv_mse"]), floor)

        lowest = min(searches, key=error)
        if ("anchored:removal" in searches and error(lowest) > floor
                and error("anchored:removal") < self.anchor_tolerance * error(lowest)):
            winner = "anchored:removal"
        else:
            guard = next((name for name, found in searches.items() if found.get("baseline_class")), None)
            winner = sparsest_within(searches, error, self.candidate_tolerance,
                                     cap=guard if self.baseline_guard else None)
        best = searches[winner]
        basis = best["basis"]
        if "terms" in best:  # LASSO / ridge / anchored: coefficients as fitted
            terms, alpha = dict(best["terms"]), 0.0
        else:
            beta, alpha = self._refit(basis_matrix(masks, best["support"], basis), values)
            terms = dict(zip(best["support"], beta.tolist()))
        diagnostics.update(
            basis=basis, winner=winner, lowest_cv=lowest, refit_alpha=alpha, n_selected=len(terms),
            cv_mse=best["cv_mse"], cv_r2=1.0 - best["cv_mse"] / (float(np.var(values)) or 1.0),
            ladder_order=int(ladder[0]),
            searches={name: {**{k: v for k, v in r.items() if k not in ("support", "terms", "residual_terms")},
                             "n_terms": selected_terms(r)} for name, r in searches.items()},
            coefficient_model=winner_model(best, alpha),
        )
        return convert_terms(terms, basis, "fourier"), diagnostics

    def _fold_proxies(
        self, features: np.ndarray, values: np.ndarray, folds: list[np.ndarray], depth: int,
        rng: np.random.Generator,
    ) -> list[dict[Subset, float]]:
        """Fourier coefficients of one proxy per fold, each fitted without that fold's rows
        (same depth as the all-rows proxy, trees by early stopping): the nested CV's rankings."""
        all_rows = np.arange(len(values))
        out = []
        for val in folds:
            train = np.setdiff1d(all_rows, val, assume_unique=True)
            proxy, _ = self._fit_proxy(features[train], values[train], rng, depth=depth)
            out.append(lightgbm_to_fourier(proxy, self.max_order))
        return out

    def _rank(
        self, basis: Basis, fourier_coefficients: dict[Subset, float], cap: int, head: Sequence[Subset] = ()
    ) -> list[Subset]:
        """Candidate ordering in ``basis``; ``()`` first, then ``head``, then by importance."""
        if basis == "fourier":
            return self._ranked_candidates(fourier_coefficients, cap, head)
        if basis == "removal":
            removal = convert_terms(fourier_coefficients, "fourier", "removal")
            return rank_terms(removal, self._fit_masks, "removal", cap, self.max_order, head)
        mobius = fourier_to_mobius_dict(fourier_coefficients)
        # Importance of an AND term = its standard deviation under uniform masks.
        scored = sorted(
            ((s, abs(c) * math.sqrt(0.5 ** len(s) * (1 - 0.5 ** len(s)))) for s, c in mobius.items()
             if s and len(s) <= self.max_order),
            key=lambda sc: -sc[1],
        )
        ordered = [()] + [s for s in head if s]
        seen = set(ordered)
        for subset, _ in scored:
            if len(ordered) >= cap:
                break
            if subset not in seen:
                seen.add(subset)
                ordered.append(subset)
        return ordered

    def _search(
        self,
        basis: Basis,
        masks: np.ndarray,
        values: np.ndarray,
        features: np.ndarray,
        coefficients: dict[Subset, float],
        depth: int,
        folds: list[np.ndarray],
        cap: int,
        rng: np.random.Generator,
        fold_rankings: list[list[Subset]] | None = None,
    ) -> dict[str, Any]:
        """Rank candidates, pick the support size by CV (nested when ``fold_rankings``, one per
        fold from a proxy fitted without its rows, are given), then grow it from residual proxies."""
        ranking = self._rank(basis, coefficients, cap)
        k, nested_mse, _ = self._select(masks, values, ranking, folds, basis, fold_rankings)
        # Growth rounds compare prefixes of all-rows rankings (one residual proxy, fitted on all
        # rows, so their CV gain is optimistic: measured on 270 SmolLM2 heads at 500 masks, it
        # lifted a nested CV R² of 0.07 to 0.59 for a fit that reached 0.47 on held-out masks).
        # With nested ranking the reported error is the nested one of the ranking before growth.
        cv_mse = nested_mse if fold_rankings is None else float(self._cv_prefix_errors(
            basis_matrix(masks, ranking[:k], basis), values, folds).mean(axis=0)[k - 1])
        rounds = []
        for _ in range(self.residual_rounds):
            support = ranking[:k]
            design = basis_matrix(masks, support, basis)
            residual = values - design @ least_squares(design, values)
            residual_proxy, info = self._fit_proxy(features, residual, rng, depth=depth)
            proposals = lightgbm_to_fourier(residual_proxy, self.max_order)
            proposals.pop((), None)
            if not proposals:
                break
            # Support first, then the residual's proposals, then the unused original candidates
            # in their original order.
            proposal_ranking = self._rank(basis, proposals, cap, head=support)
            in_new = set(proposal_ranking)
            new_ranking = (proposal_ranking + [s for s in ranking[k:] if s not in in_new])[:cap]
            new_k, new_mse, _ = self._select(masks, values, new_ranking, folds, basis)
            rounds.append({"residual_val_r2": info["val_r2"], "k": new_k, "cv_mse": new_mse})
            if new_mse < cv_mse * (1.0 - 1e-3):
                ranking, k, cv_mse = new_ranking, new_k, new_mse
            else:
                break
        return {"support": ranking[:k], "cv_mse": nested_mse if fold_rankings is not None else cv_mse,
                "n_candidates": len(ranking), "k": k, "residual_rounds": rounds, "nested": fold_rankings is not None}

    def _refit(self, design: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
        """Final coefficients on the selected support: least squares, or ridge with GCV-chosen penalty.

        Column 0 is the constant (not penalised). With ``refit="ridge"`` the penalty grid starts at
        ~0 (= least squares), so shrinkage is used only where generalised cross-validation prefers it
        (many selected terms relative to samples).
        """
        if self.refit == "ols" or design.shape[1] < 2:
            return least_squares(design, values), 0.0
        from sklearn.linear_model import RidgeCV

        features = design[:, 1:]
        scale = float(len(values))
        ridge = RidgeCV(alphas=scale * np.logspace(-8, 1, 28), fit_intercept=True).fit(features, values)
        # With fit_intercept the intercept absorbs the column means; fold them back into the constant.
        constant = float(ridge.intercept_)
        return np.concatenate([[constant], ridge.coef_]), float(ridge.alpha_)

    def _energy_selection(
        self, masks: np.ndarray, values: np.ndarray, coefficients: dict[Subset, float]
    ) -> tuple[dict[Subset, float], CoefficientModel]:
        """Reference post-processing: top coefficients covering ``energy_threshold`` of the energy, RidgeCV
        (no intercept: the constant column is penalised too); the terms and their coefficient model."""
        from sklearn.linear_model import RidgeCV

        items = [(s, c) for s, c in coefficients.items() if s]
        if not items:
            return {(): float(np.mean(values))}, CoefficientModel("fourier", ())
        energy = np.array([c * c for _, c in items])
        order = np.argsort(-energy)
        cumulative = np.cumsum(energy[order]) / energy.sum()
        n_keep = int(np.searchsorted(cumulative, self.energy_threshold) + 1)
        support = [()] + [items[i][0] for i in order[:n_keep]]
        design = basis_matrix(masks, support, "fourier")
        ridge = RidgeCV(alphas=np.logspace(-6, 6, 50), fit_intercept=False).fit(design, values)
        model = CoefficientModel("fourier", tuple(support), "ridge", float(ridge.alpha_), intercept=False)
        return dict(zip(support, ridge.coef_.tolist())), model


def winner_model(best: dict[str, Any], refit_alpha: float) -> CoefficientModel | None:
    """The :class:`~headspex.engine.refit.CoefficientModel` of a winning candidate: how its
    coefficients follow from the values once its terms and penalty are fixed.

    Args:
        best: the winner's search result (``support``, refitted by :meth:`ProxySPEX._refit` with
            penalty ``refit_alpha``; or ``terms`` as fitted by the ridge, LASSO or anchored search).

    Returns:
        The model, or None for a search result of no known kind (its bootstrap is then refused).
    """
    basis = best["basis"]
    if "support" in best:
        support = list(best["support"])
        if refit_alpha > 0.0 and len(support) >= 2 and support[0] == ():
            # _refit: RidgeCV on the columns after the constant, with an unpenalised intercept.
            return CoefficientModel(basis, tuple(support[1:]), "ridge", refit_alpha)
        return CoefficientModel(basis, tuple(support), intercept=False)  # least squares, constant among the columns
    if "ladder_order" in best:  # anchored: the ladder exact, the residual by least squares or a LASSO
        alpha = best.get("residual_alpha")
        return CoefficientModel("removal", tuple(best["residual_terms"]), "none" if alpha is None else "lasso",
                                0.0 if alpha is None else float(alpha), intercept=False,
                                ladder_order=int(best["ladder_order"]))
    columns = tuple(s for s in best["terms"] if s)
    if "order_growth" in best:  # ridge_search; alpha None = the infinite penalty, the constant only
        if best.get("alpha") is None:
            return CoefficientModel(basis, ())
        return CoefficientModel(basis, columns, "ridge", float(best["alpha"]), float(best["order_growth"]))
    if "alpha" in best:  # lasso_search / all_pairs_lasso_search, shrunken coefficients kept
        if not columns:
            return CoefficientModel(basis, ())
        return CoefficientModel(basis, columns, "lasso", float(best["alpha"]))
    return None


def selected_terms(found: dict[str, Any]) -> int:
    """Non-constant terms a candidate selected, in its own basis (its ``support`` or ``terms``)."""
    chosen = found["terms"] if "terms" in found else dict.fromkeys(found["support"], 1.0)
    return sum(1 for subset, coefficient in chosen.items() if subset and coefficient != 0.0)


def sparsest_within(
    searches: dict[str, dict[str, Any]], error: Callable[[str], float], tolerance: float, cap: str | None = None
) -> str:
    """The candidate with the fewest terms among those whose CV error is within ``tolerance``
    (a share) of the lowest, and no higher than ``cap``'s; ties in size go to the lower error,
    then to the first listed.

    Args:
        searches: candidate name -> its search result (``support`` or ``terms``).
        error: name -> CV error (floored at round-off, so exact fits tie).
        tolerance: e.g. 0.02 for 2 %; 0 keeps the lowest error.
        cap: a candidate whose CV error no winner may exceed (the LASSO baseline's model class),
            or None.
    """
    names = list(searches)
    lowest = min(error(name) for name in names)
    bound = (1.0 + tolerance) * lowest if cap is None else min((1.0 + tolerance) * lowest, error(cap))
    tied = [name for name in names if error(name) <= bound]
    return min(tied, key=lambda name: (selected_terms(searches[name]), error(name), names.index(name)))
