"""More model classes on the 270-head regime game: does any of them reach R² 0.8 (issue 12)?

``engine_real_model.py --design regime`` measures the engine on all 270 SmolLM2 heads (zero
ablation, 8 marketing questions) and a *ceiling*: how far richer model classes get from the same
fit masks. This script adds the classes that the game's structure suggests, each fitted on the
same 2 000 regime masks and scored on the same ≤ 5 % test masks (with a 95 % bootstrap interval
over them); each class's one setting is chosen by 5-fold cross-validation on the fit masks only:

- ``first_order_ridge``: the reference (the ceiling's first row);
- ``hub_pairs``: first order plus the pairs of each of the k heads whose ablation most inflates
  the first-order fit's out-of-fold residual (median |residual| of the masks ablating the head
  over that of all masks; a *hub*) with every other head; k in (1, 2, 3, 5);
- ``head_gated_pairs``: first order plus ``(γ·x)(a·x)``, x the ablated indicators and a the
  first-order effects: every head may scale (γ_h) the whole first-order effect of the others,
  270 more parameters; the block's weight in the ridge in (0.3, 1, 3);
- ``per_question_first_order``: each question's own first-order fit, averaged;
- ``first_order_ridge_logodds``: first order on the log-odds of the value read as one
  log-probability (the engine's ``link="logodds"``), back to nats;
- ``letter_logits_log_softmax``: first order on each question's four letter logits (centred),
  then the exact restricted log-softmax of the game's metric; also with the hub pairs;
- ``laplacian_kernel_ridge``: kernel ridge with exp(-gamma |S Δ T|) between ablated sets, every
  order of interaction at once (gamma and the penalty by CV);
- ``shared_letter_bias_split``: the centred letter logits split into the *letter bias* all questions
  share (their mean over questions) and each question's own part; the bias fitted first order or by
  the Laplacian kernel (chosen by CV), the own parts first order, then the exact metric.

A diagnostic (``letter_bias_diagnostic``) then says where the first-order letter fit loses: it puts
the true shared bias, then the true own parts, in place of their fits on the test masks (oracles,
not models) and recomputes the game's metric.

Then issue 12's adaptive design, aimed at the hubs rather than at the heads with large effects
(``HUB_ROUNDS``): the first 1 600 (or 1 000) regime masks, the hubs ranked on them alone, and the
rest of the 2 000-mask budget drawn around the top hub (every mask ablates it) or the top 16 (each
ablated w.p. 0.15), on the regime background; first-order ridge, first order plus the flagged hubs'
pairs, and ProxySPEX are fitted on those 2 000 masks and scored on the same test masks.

It evaluates nothing new when the store of ``engine_real_model.py`` (``--cache-dir``) holds the
regime run's masks (``--design regime --n-test-sparse 1000``) and this script's second rounds;
otherwise it evaluates the missing ones (1 400 masks for the second rounds, about 30 min on 2 CPU
cores; the regime run's 3 200, hours). Results: ``benchmarks/results/<stem>.{json,md}``.

    python benchmarks/engine_real_model_classes.py            # after the regime run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine_real_model import RESULTS, benchmark_masks, build_game, distinct_masks, r2_interval  # noqa: E402

FOLDS = 5
ALPHAS = np.logspace(-3, 3, 25)
#: A fitter: (fit features float[m, n], targets float[m] or [m, t], predict features float[k, n]) -> float[k(, t)].
Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def fit_ridge(train: np.ndarray, targets: np.ndarray) -> "RidgeCV":
    """sklearn's RidgeCV on ``train`` (float[m, p]) -> ``targets`` (float[m] or [m, t]), its penalty
    chosen by generalised CV from :data:`ALPHAS`."""
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=ALPHAS).fit(train, targets)


def ridge(train: np.ndarray, targets: np.ndarray, predict: np.ndarray) -> np.ndarray:
    """:func:`fit_ridge`'s predictions on ``predict``."""
    return fit_ridge(train, targets).predict(predict)


def head_gated(weight: float, rounds: int = 4) -> Fitter:
    """First order plus ``weight * x_h * (a·x)`` for every head h (ridge), a refreshed ``rounds`` times
    from the fit's own first-order block."""
    def fit(train: np.ndarray, targets: np.ndarray, predict: np.ndarray) -> np.ndarray:
        effects = fit_ridge(train, targets).coef_
        for _ in range(rounds):
            gate, gate_new = train @ effects, predict @ effects
            model = fit_ridge(np.hstack([train, weight * train * gate[:, None]]), targets)
            effects = model.coef_[: train.shape[1]]
        return model.predict(np.hstack([predict, weight * predict * gate_new[:, None]]))
    return fit


def hub_ranking(train: np.ndarray, targets: np.ndarray, min_ablations: int = 10) -> np.ndarray:
    """Heads ordered by how much their ablation inflates the first-order fit's out-of-fold
    residual (median |residual| of the masks ablating the head / median of all masks), int[n]."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    folds = KFold(FOLDS, shuffle=True, random_state=0)
    residual = cross_val_predict(RidgeCV(alphas=ALPHAS), train, targets, cv=folds) - targets
    typical = np.median(np.abs(residual))
    inflation = np.array([np.median(np.abs(residual[column > 0])) / typical if column.sum() >= min_ablations else 0.0
                          for column in train.T])
    return np.argsort(-inflation, kind="stable")


def with_hub_pairs(features: np.ndarray, hubs: np.ndarray) -> np.ndarray:
    """``features`` (ablated indicators, float[m, n]) plus each hub's product with every head."""
    return np.hstack([features] + [features * features[:, [h]] for h in hubs])


def hub_pairs(k: int) -> Fitter:
    """First order plus the pairs of the k top hubs (ranked on the fit's own rows) with every head."""
    def fit(train: np.ndarray, targets: np.ndarray, predict: np.ndarray) -> np.ndarray:
        hubs = hub_ranking(train, targets)[:k]
        return ridge(with_hub_pairs(train, hubs), targets, with_hub_pairs(predict, hubs))
    return fit


def hub_round_masks(n: int, count: int, hubs: np.ndarray, hub_rate: float, background_rate: float,
                    rng: np.random.Generator, exclude: np.ndarray) -> np.ndarray:
    """A second round aimed at the hubs: each head ablated w.p. ``background_rate`` (the regime's
    rate), then each hub also w.p. ``hub_rate`` (1.0: every mask ablates it); distinct, none equal
    to a row of ``exclude`` and none the full model, bool[count, n]."""
    def draw(k: int) -> np.ndarray:
        masks = np.empty((k, n), dtype=bool)
        for row in masks:
            row[:] = rng.random(n) >= background_rate
            row[hubs] &= rng.random(len(hubs)) >= hub_rate
        return masks

    return distinct_masks(draw, count, np.concatenate([exclude, np.ones((1, n), dtype=bool)]))


class HubRound(NamedTuple):
    """A second round: ``first_round`` regime masks, then the rest of the budget around the top
    ``n_hubs`` hubs, each ablated w.p. ``hub_rate``."""

    name: str
    first_round: int
    n_hubs: int
    hub_rate: float


#: The second rounds measured (``run``).
HUB_ROUNDS = (HubRound("one_hub_every_mask", 1600, 1, 1.0), HubRound("sixteen_hubs_at_0.15", 1000, 16, 0.15))


def hub_round(masks: np.ndarray, values: np.ndarray, test_masks: np.ndarray, budget: int, design: HubRound,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The hubs ranked on the first ``design.first_round`` regime masks alone (:func:`hub_ranking`
    on their ``values``; the top ``design.n_hubs``, int[n_hubs]) and the ``budget - first_round``
    second-round masks drawn around them by :func:`hub_round_masks` (bool[budget - first_round, n])."""
    first = design.first_round
    hubs = hub_ranking((~masks[:first]).astype(float), values[:first])[: design.n_hubs]
    rng = np.random.default_rng([seed, 0xADA, HUB_ROUNDS.index(design)])
    background = float((~masks).mean())
    extra = hub_round_masks(masks.shape[1], budget - first, hubs, design.hub_rate, background, rng,
                            exclude=np.concatenate([masks, test_masks]))
    return hubs, extra


def kernel_ridge(gamma: float, alpha: float) -> Fitter:
    """sklearn's kernel ridge with a Laplacian kernel exp(-gamma * |S Δ T|) on the ablated sets (the
    targets centred on the training mean): every order of interaction at once, shrunk smoothly."""
    def fit(train: np.ndarray, targets: np.ndarray, predict: np.ndarray) -> np.ndarray:
        from sklearn.kernel_ridge import KernelRidge

        centre = targets.mean(axis=0)
        return KernelRidge(alpha=alpha, kernel="laplacian", gamma=gamma).fit(train, targets - centre).predict(
            predict) + centre
    return fit


def cv_error(fitter: Fitter, features: np.ndarray, targets: np.ndarray, values: np.ndarray) -> float:
    """Summed squared out-of-fold error (nats²) of ``fitter`` trained on ``targets`` and scored on the
    game's ``values`` (float[m]; the targets themselves for a fit of the values), 5 folds, the same
    for every fitter."""
    from sklearn.model_selection import KFold

    error = 0.0
    for train, test in KFold(FOLDS, shuffle=True, random_state=0).split(features):
        error += float(np.sum((fitter(features[train], targets[train], features[test]) - values[test]) ** 2))
    return error


def choose(options: dict[str, Fitter], features: np.ndarray, targets: np.ndarray,
           values: np.ndarray) -> tuple[str, dict[str, float]]:
    """The option with the lowest :func:`cv_error` on the fit rows, and every option's error."""
    errors = {name: cv_error(fitter, features, targets, values) for name, fitter in options.items()}
    return min(errors, key=errors.get), errors


def letter_metric(correct_index: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The game's exact metric on letter logits: float[k, q, c] -> the restricted log-softmax of each
    question's correct letter, averaged over questions, float[k] in nats."""
    import torch

    from headspex.tasks.base import question_values

    def metric(logits: np.ndarray) -> np.ndarray:
        return question_values(torch.from_numpy(np.ascontiguousarray(logits)),
                               torch.from_numpy(correct_index)).double().numpy().mean(1)
    return metric


def letter_logits_model(n_hubs: int, correct_index: np.ndarray) -> Fitter:
    """Ridge on each question's centred letter logits (targets float[m, q, c]), with the pairs of the
    ``n_hubs`` top hubs (ranked on the rows' game values), then the game's exact metric (restricted
    log-softmax of the correct letter) averaged over questions: predictions float[k] in nats."""
    metric = letter_metric(correct_index)

    def fit(train: np.ndarray, logits: np.ndarray, predict: np.ndarray) -> np.ndarray:
        hubs = hub_ranking(train, metric(logits))[:n_hubs]
        centred = (logits - logits.mean(axis=-1, keepdims=True)).reshape(len(train), -1)
        predicted = ridge(with_hub_pairs(train, hubs), centred, with_hub_pairs(predict, hubs))
        return metric(predicted.reshape(len(predict), *logits.shape[1:]))
    return fit


def shared_letter_bias(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Letter logits float[m, q, c], centred per question, split into the *letter bias* every question
    shares (their mean over questions, float[m, c]) and each question's own part (float[m, q, c])."""
    centred = logits - logits.mean(axis=-1, keepdims=True)
    bias = centred.mean(axis=1)
    return bias, centred - bias[:, None]


def letter_bias_model(bias_fitter: Fitter, correct_index: np.ndarray) -> Fitter:
    """The shared letter bias (:func:`shared_letter_bias`) fitted by ``bias_fitter`` and each question's
    own part by first-order ridge, added back, then the game's exact metric: float[k] in nats."""
    metric = letter_metric(correct_index)

    def fit(train: np.ndarray, logits: np.ndarray, predict: np.ndarray) -> np.ndarray:
        bias, own = shared_letter_bias(logits)
        own_predicted = ridge(train, own.reshape(len(train), -1), predict).reshape(len(predict), *own.shape[1:])
        return metric(bias_fitter(train, bias, predict)[:, None] + own_predicted)
    return fit


def pooled_r2(truth: np.ndarray, prediction: np.ndarray) -> float:
    """R² of a multi-output prediction, float[k, t]: 1 - SSE / the outputs' summed variance."""
    return float(1 - np.sum((truth - prediction) ** 2) / np.sum((truth - truth.mean(axis=0)) ** 2))


def letter_bias_diagnostic(x: np.ndarray, logits: np.ndarray, x_test: np.ndarray, test_logits: np.ndarray,
                           test_values: np.ndarray, correct_index: np.ndarray) -> dict[str, float]:
    """Where the first-order letter-logit fit loses: the shared letter bias or each question's own part.

    Both parts are fitted first order on the fit masks (x, float[m, n]; logits float[m, q, c]); on the
    test masks each is then replaced by its true value in turn (an oracle, not a model) and the game's
    metric recomputed. Returns the bias's share of the centred logits' variance over the test masks,
    the pooled R² of each part's fit, and the value R² with both parts fitted, with the true bias and
    with the true own parts."""
    metric = letter_metric(correct_index)
    bias, own = shared_letter_bias(logits)
    test_bias, test_own = shared_letter_bias(test_logits)
    bias_fit = ridge(x, bias, x_test)
    own_fit = ridge(x, own.reshape(len(x), -1), x_test).reshape(test_own.shape)
    # Own parts sum to zero over questions, so the centred logits' variance splits exactly into these two.
    bias_variance = np.sum((test_bias - test_bias.mean(0)) ** 2) * test_logits.shape[1]
    own_variance = np.sum((test_own - test_own.mean(0)) ** 2)

    def r2(prediction: np.ndarray) -> float:
        return pooled_r2(test_values[:, None], prediction[:, None])

    return {"bias_share_of_variance": float(bias_variance / (bias_variance + own_variance)),
            "bias_r2": pooled_r2(test_bias, bias_fit),
            "own_r2": pooled_r2(test_own.reshape(len(x_test), -1), own_fit.reshape(len(x_test), -1)),
            "value_r2_both_fitted": r2(metric(bias_fit[:, None] + own_fit)),
            "value_r2_true_bias": r2(metric(test_bias[:, None] + own_fit)),
            "value_r2_true_own": r2(metric(bias_fit[:, None] + test_own))}


def interval_cell(r2: tuple[float, float, float]) -> str:
    """An R² and its 95 % interval, (point, low, high), as one table cell."""
    return f"{r2[0]:.3f} [{r2[1]:.3f}, {r2[2]:.3f}]"


def run(args: argparse.Namespace) -> None:
    from headspex.engine import ProxySPEX
    from headspex.engine.links import link_forward, link_inverse

    game = build_game(args.subject, args.n_questions, args.seed, args.cache_dir or None)
    n = len(game.players)
    args.design = "regime"
    masks, tests = benchmark_masks(n, args, np.random.default_rng(args.seed), estimator=None)
    test_masks = tests["sparse_le5pct"]
    start = time.perf_counter()
    values, test_values = game(masks), game(test_masks)
    per_question = game.question_values(masks)
    logits = game.candidate_logits(masks).astype(float)
    test_logits = game.candidate_logits(test_masks).astype(float)
    game_seconds = time.perf_counter() - start
    correct = game.correct_index.cpu().numpy()  # long[q]
    x, x_test = (~masks).astype(float), (~test_masks).astype(float)

    rows: list[dict] = []

    def score(name: str, prediction: np.ndarray, setting: str = "", errors: dict[str, float] | None = None) -> None:
        point, low, high = r2_interval(test_values, prediction, args.seed)
        rows.append({"model": name, "setting": setting, "r2_sparse_le5pct": point, "ci95": [low, high],
                     "cv_errors": errors or {}})
        print(rows[-1], flush=True)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score("first_order_ridge", ridge(x, values, x_test))
        for name, options in (("hub_pairs", {f"k={k}": hub_pairs(k) for k in (1, 2, 3, 5)}),
                              ("head_gated_pairs", {f"weight={w}": head_gated(w) for w in (0.3, 1.0, 3.0)})):
            chosen, errors = choose(options, x, values, values)
            score(name, options[chosen](x, values, x_test), chosen, errors)
        score("per_question_first_order", ridge(x, per_question, x_test).mean(axis=1))
        score("first_order_ridge_logodds", link_inverse("logodds", ridge(x, link_forward("logodds", values), x_test)))
        letters = {"first order" if k == 0 else f"hub pairs k={k}": letter_logits_model(k, correct)
                   for k in (0, 1, 2, 3)}
        chosen, errors = choose(letters, x, logits, values)
        score("letter_logits_log_softmax", letters[chosen](x, logits, x_test), chosen, errors)
        kernels = {f"gamma={g}, alpha={a}": kernel_ridge(g, a)
                   for g in (0.01, 0.03, 0.1) for a in (0.003, 0.01, 0.03, 0.1, 0.3)}
        chosen, errors = choose(kernels, x, values, values)
        score("laplacian_kernel_ridge", kernels[chosen](x, values, x_test), chosen, errors)
        bias_options = {"first order": letter_bias_model(ridge, correct)}
        bias_options.update({f"Laplacian kernel {name}": letter_bias_model(kernels[name], correct)
                             for name in kernels if "alpha=0.3" not in name})
        chosen, errors = choose(bias_options, x, logits, values)
        score("shared_letter_bias_split", bias_options[chosen](x, logits, x_test), chosen, errors)
        bias_split = letter_bias_diagnostic(x, logits, x_test, test_logits, test_values, correct)
    print(bias_split, flush=True)
    rounds = []
    for design in HUB_ROUNDS if args.hub_rounds else ():  # issue 12's adaptive design, aimed at the hubs
        flagged, extra = hub_round(masks, values, test_masks, args.budget, design, args.seed)
        fit_masks = np.concatenate([masks[: design.first_round], extra])
        fit_values = np.concatenate([values[: design.first_round], game(extra)])
        x_fit = (~fit_masks).astype(float)
        entry = {"design": design.name, "first_round": design.first_round, "second_round": len(extra),
                 "hubs": [game.player_names[h] for h in flagged]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entry["first_order_ridge"] = r2_interval(test_values, ridge(x_fit, fit_values, x_test), args.seed)
            entry["hub_pairs"] = r2_interval(test_values, ridge(with_hub_pairs(x_fit, flagged), fit_values,
                                                                with_hub_pairs(x_test, flagged)), args.seed)
            engine = ProxySPEX(max_order=2, seed=args.seed).fit_samples(fit_masks, fit_values)
        entry["proxyspex"] = r2_interval(test_values, engine.interactions(test_masks), args.seed)
        entry["proxyspex_winner"] = engine.diagnostics.get("winner")
        rounds.append(entry)
        print(entry, flush=True)
    hubs = hub_ranking(x, values)[:5]
    out = {"subject": args.subject, "n_questions": args.n_questions, "players": n, "fit_masks": len(masks),
           "test_masks": len(test_masks), "game_seconds": game_seconds, "fit_seconds": time.perf_counter() - start,
           "top_hubs": [game.player_names[h] for h in hubs], "rows": rows, "letter_bias_split": bias_split,
           "hub_rounds": rounds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_stem}.json").write_text(json.dumps(out, indent=1))
    lines = ["# More model classes on all 270 SmolLM2 heads (regime masks, zero ablation)", "",
             f"{args.subject}, {args.n_questions} questions; {len(masks)} regime fit masks; R² on {len(test_masks)} "
             "held-out masks ablating ≤ 5 % of the heads, 95 % bootstrap interval over those masks. Each class's "
             "setting is chosen by 5-fold CV on the fit masks (module docstring of "
             "`benchmarks/engine_real_model_classes.py`).", "",
             "| model | setting (CV) | R² ≤5 % ablated | 95 % interval |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['setting'] or '–'} | {r['r2_sparse_le5pct']:.3f} | "
              f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] |" for r in rows]
    lines += ["", f"Top hubs (first-order residual inflation on the fit masks): {', '.join(out['top_hubs'])}.", "",
              "## Where the error lies: the letter bias every question shares", "",
              "Each question's letter logits, centred, split into their mean over the questions (the shared letter "
              "bias, 4 numbers per mask) and each question's own part; both fitted first order on the fit masks, "
              "then on the test masks one part at a time replaced by its true value (an oracle, not a model) "
              "(`letter_bias_diagnostic`).", "",
              "| quantity | value |", "|---|---|",
              f"| shared bias's share of the centred logits' variance | {bias_split['bias_share_of_variance']:.3f} |",
              f"| R² of the shared bias, first order | {bias_split['bias_r2']:.3f} |",
              f"| R² of the questions' own parts, first order | {bias_split['own_r2']:.3f} |",
              f"| value R², both parts fitted | {bias_split['value_r2_both_fitted']:.3f} |",
              f"| value R², true shared bias + fitted own parts | {bias_split['value_r2_true_bias']:.3f} |",
              f"| value R², fitted shared bias + true own parts | {bias_split['value_r2_true_own']:.3f} |", ""]
    if rounds:
        lines += ["## A second round aimed at the hubs (same budget, same test masks)", "",
                  "The first regime fit masks, the hubs ranked on them alone, then the rest of the budget drawn "
                  "around those hubs (`HUB_ROUNDS`): the regime background plus each flagged hub ablated at the "
                  "given rate.", "",
                  "| design | first round | second round | hubs flagged | first-order ridge | + hub pairs | "
                  "ProxySPEX (winner) |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['design']} | {r['first_round']} | {r['second_round']} | {', '.join(r['hubs'])} | "
                  f"{interval_cell(r['first_order_ridge'])} | {interval_cell(r['hub_pairs'])} | "
                  f"{interval_cell(r['proxyspex'])} ({r['proxyspex_winner']}) |" for r in rounds]
        lines.append("")
    (RESULTS / f"{args.results_stem}.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subject", default="marketing")
    parser.add_argument("--n-questions", type=int, default=8)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-test-sparse", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default="runs/engine_real_model")
    parser.add_argument("--results-stem", default="engine_real_model_classes")
    parser.add_argument("--hub-rounds", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the second rounds aimed at the hubs (HUB_ROUNDS; 1 400 more masks to evaluate "
                             "where the store lacks them)")
    args = parser.parse_args()
    if args.n_test_sparse < args.n_test:
        parser.error("--n-test-sparse must be at least --n-test (it adds test masks to those)")
    import torch

    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
