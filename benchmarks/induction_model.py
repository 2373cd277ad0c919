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

import time

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


if __name__ == "__main__":
    import sys

    sys.path.insert(0, ".")
    from headspex.engine import all_masks, exact_interactions

    game = InductionGame()
    values = game(all_masks(game.n_players))
    print(f"trained in {game.train_seconds:.1f} s; full {values[-1]:.3f}, none {values[0]:.3f}, "
          f"uniform chance {-np.log(game.vocab):.3f}")
    for basis in ("removal", "mobius", "fourier"):
        inter = exact_interactions(values, game.n_players, basis=basis)
        print(basis, [(s, round(c, 3)) for _, s, c in inter.top(8, basis=basis, min_order=1)])
