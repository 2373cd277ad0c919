"""A small trained model with backup heads: a 2-layer attention-only induction transformer.

Trained in well under a minute on one CPU core: sequences of random tokens repeated once; the
loss is on the repeated half, which a previous-token head (layer 0) plus an induction head
(layer 1) solve. During training every head is ablated independently with probability
``head_dropout``, which makes the model grow *backup heads* (several heads that each suffice),
the redundancy the removal basis is for. The players are the model's heads; a mask zeroes the
output of the ablated heads (per batch row); the value of a mask is the mean log-probability
of the correct token on the repeated half of a fixed evaluation batch. Exact values over all
2^n masks are the ground truth of the benchmark.

Used by ``benchmarks/engine_benchmark.py`` (family ``induction``); needs torch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _build(n_layers: int, n_heads: int, d_head: int, vocab: int, seq_len: int, seed: int):  # noqa: ANN202
    import torch
    from torch import nn

    torch.manual_seed(seed)
    d_model = n_heads * d_head

    class AttnOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, d_model)
            self.pos = nn.Parameter(0.1 * torch.randn(seq_len, d_model))
            self.qkv = nn.ModuleList([nn.Linear(d_model, 3 * d_model, bias=False) for _ in range(n_layers)])
            self.out = nn.ModuleList([nn.Linear(d_model, d_model, bias=False) for _ in range(n_layers)])
            self.unembed = nn.Linear(d_model, vocab)
            self.register_buffer("causal", torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool)))

        def forward(self, tokens: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
            """tokens int[b, t]; head_mask float[b, n_layers * n_heads] (1 = kept) -> logits."""
            b, t = tokens.shape
            x = self.embed(tokens) + self.pos[:t]
            for layer in range(n_layers):
                q, k, v = self.qkv[layer](x).view(b, t, 3, n_heads, d_head).unbind(2)
                scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / d_head**0.5
                scores = scores.masked_fill(~self.causal[:t, :t], float("-inf"))
                z = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)
                gate = head_mask[:, layer * n_heads : (layer + 1) * n_heads]
                z = z * gate[:, None, :, None]
                x = x + self.out[layer](z.reshape(b, t, d_model))
            return self.unembed(x)

    return AttnOnly()


class InductionGame:
    """Value function over head masks of a freshly trained induction model.

    Attributes:
        n_players: number of heads (``n_layers * n_heads``); player ``l * n_heads + h`` is head
            ``h`` of layer ``l``.
        player_names: ``L{l}H{h}``.
        train_seconds: wall time of training.
    """

    def __init__(self, n_layers: int = 2, n_heads: int = 4, d_head: int = 16, vocab: int = 24,
                 half: int = 10, steps: int = 1200, batch: int = 64, head_dropout: float = 0.3,
                 n_eval: int = 256, seed: int = 0) -> None:
        import torch

        torch.set_num_threads(1)
        self.n_layers, self.n_heads, self.half, self.vocab = n_layers, n_heads, half, vocab
        self.n_players = n_layers * n_heads
        self.player_names = [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]
        self.model = _build(n_layers, n_heads, d_head, vocab, 2 * half, seed)
        gen = torch.Generator().manual_seed(seed + 1)
        start = time.perf_counter()
        optimiser = torch.optim.Adam(self.model.parameters(), lr=3e-3)
        for _ in range(steps):
            tokens = self._sequences(batch, gen)
            head_mask = (torch.rand(batch, self.n_players, generator=gen) >= head_dropout).float()
            loss = -self._log_probs(tokens, head_mask).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        self.train_seconds = time.perf_counter() - start
        self.eval_tokens = self._sequences(n_eval, torch.Generator().manual_seed(seed + 2))
        self.model.eval()

    def _sequences(self, count: int, gen) -> "torch.Tensor":  # noqa: ANN001, F821
        import torch

        first = torch.randint(0, self.vocab, (count, self.half), generator=gen)
        return torch.cat([first, first], dim=1)

    def _log_probs(self, tokens, head_mask):  # noqa: ANN001, ANN202
        """Log-probability of each correct token on the repeated half, float[b, half - 1]."""
        logits = self.model(tokens, head_mask)
        log_probs = logits[:, self.half : -1].log_softmax(-1)
        targets = tokens[:, self.half + 1 :]
        return log_probs.gather(-1, targets[..., None])[..., 0]

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Mean log-probability of the correct token (repeated half, fixed eval batch), float64[m]."""
        import torch

        masks = np.asarray(masks, dtype=bool)
        out = np.empty(len(masks))
        n_eval = len(self.eval_tokens)
        with torch.no_grad():
            for i, mask in enumerate(masks):
                head_mask = torch.as_tensor(mask, dtype=torch.float32)[None, :].expand(n_eval, -1)
                out[i] = float(self._log_probs(self.eval_tokens, head_mask).mean())
        return out


#: The engine benchmark's trained models: training settings (every model) and the seeds of the
#: models whose exact value tables are committed (one model per seed).
BENCHMARK_TRAINING: dict[str, Any] = {"head_dropout": 0.05, "steps": 800}
BENCHMARK_MODEL_SEEDS = (0, 1, 2, 3, 4)
#: Where those tables live (committed: the benchmark's ground truth).
TABLES_PATH = Path(__file__).resolve().parent / "data" / "induction_tables.json"
#: The pruning tests' models (tests/integration/test_pruning_refine.py): more head dropout, so
#: more backup heads; shorter training and evaluation batch. Committed as a test fixture.
TEST_TRAINING: dict[str, Any] = {"head_dropout": 0.3, "steps": 400, "n_eval": 64}
TEST_TABLES_PATH = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "induction_tables.json"


def write_tables(path: Path = TABLES_PATH, seeds: tuple[int, ...] = BENCHMARK_MODEL_SEEDS,
                 training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one model per seed and save its exact values over all 2^n head masks (nats) as JSON.

    Why a committed table and not training at run time: training is chaotic. The same seed on
    two CPUs (different float kernels) gives models whose values differ by up to 0.06 nats, and a
    relative perturbation of 1e-15 of the initial weights in float64 moves them by 0.1 nats, so a
    benchmark's truth, and a test's outcome, would depend on the machine that ran it (measured
    2026-12-08: the pruning test's exact-optimum claim failed on another CPU's model). Row ``i``
    of a table is the mask whose bit ``j`` (``i >> j & 1``) says whether head ``j`` is kept.

    Args:
        training: :class:`InductionGame` keyword arguments (default :data:`BENCHMARK_TRAINING`).
    """
    import platform

    import torch

    from headspex.engine import all_masks

    training = dict(BENCHMARK_TRAINING if training is None else training)
    tables, seconds = {}, {}
    for seed in seeds:
        game = InductionGame(**training, seed=seed)
        tables[str(seed)] = [float(v) for v in game(all_masks(game.n_players))]
        seconds[str(seed)] = round(game.train_seconds, 2)
        print(f"model seed {seed}: trained in {game.train_seconds:.1f} s; full {tables[str(seed)][-1]:.4f}, "
              f"none {tables[str(seed)][0]:.4f}", flush=True)
    data = {"meta": {"training": training, "n_players": game.n_players,
                     "player_names": game.player_names, "torch": torch.__version__,
                     "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch threads 1",
                     "written": time.strftime("%Y-%m-%d %H:%M:%S"), "train_seconds": seconds,
                     "row_order": "row i = mask whose bit j (i >> j & 1) keeps head j"},
            "tables": tables}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def load_table(seed: int, path: Path = TABLES_PATH) -> np.ndarray:
    """The committed exact values of model ``seed`` in ``path``, float64[2^n] (row order: see
    :func:`write_tables`)."""
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `python benchmarks/induction_model.py --write-tables` "
                         "(or --write-test-tables) to train the induction models (about 10 s each)")
    tables = json.loads(path.read_text())["tables"]
    if str(seed) not in tables:
        raise SystemExit(f"no induction model with seed {seed} in {path} (it has {', '.join(tables)}); "
                         "add the seed and rerun with --write-tables / --write-test-tables")
    return np.asarray(tables[str(seed)], dtype=np.float64)


def table_game(values: np.ndarray) -> Any:
    """A value function reading a table of exact values (row order: see :func:`write_tables`):
    ``game(masks bool[m, n] or bool[n]) -> float64[m]``."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values).bit_length() - 1
    if values.ndim != 1 or len(values) != 1 << n:
        raise ValueError(f"a value table needs 2^n entries (one per mask), got shape {values.shape}")
    weights = 1 << np.arange(n, dtype=np.int64)

    def game(masks: np.ndarray) -> np.ndarray:
        return values[np.atleast_2d(np.asarray(masks, dtype=bool)).astype(np.int64) @ weights]

    return game


if __name__ == "__main__":
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-tables", action="store_true",
                        help=f"train the engine benchmark's models (seeds {BENCHMARK_MODEL_SEEDS}) and write {TABLES_PATH}")
    parser.add_argument("--write-test-tables", action="store_true",
                        help=f"train the pruning tests' models (seeds {BENCHMARK_MODEL_SEEDS}) and write {TEST_TABLES_PATH}")
    args = parser.parse_args()
    if args.write_tables:
        write_tables()
    if args.write_test_tables:
        write_tables(TEST_TABLES_PATH, training=TEST_TRAINING)
    if args.write_tables or args.write_test_tables:
        raise SystemExit(0)
    from headspex.engine import all_masks, exact_interactions

    game = InductionGame()
    values = game(all_masks(game.n_players))
    print(f"trained in {game.train_seconds:.1f} s; full {values[-1]:.3f}, none {values[0]:.3f}, "
          f"uniform chance {-np.log(game.vocab):.3f}")
    for basis in ("removal", "mobius", "fourier"):
        inter = exact_interactions(values, game.n_players, basis=basis)
        print(basis, [(s, round(c, 3)) for _, s, c in inter.top(8, basis=basis, min_order=1)])
