"""The ablation hook manager: ablate any set of components, with one mask per batch row.

Where each component is ablated (TransformerLens hook names of the bridge):

* a head ``LlHh`` – its query head's slice of ``blocks.l.attn.hook_z`` (shape
  ``[batch, pos, n_heads, d_head]``), i.e. the head's output *before* ``W_O``. In a
  grouped-query model this is still one query head: its KV head is shared and stays.
  The output bias ``b_O`` (GPT-2 has one; Llama has none) belongs to the layer, not to
  a head, so head ablation never touches it.
* ``Ll.attn`` / ``Ll.mlp`` – the whole sub-layer output ``blocks.l.attn.hook_out`` /
  ``blocks.l.mlp.hook_out`` (``[batch, pos, d_model]``, biases included).
* ``Ll`` (block) – both of the above, so ``resid_post = resid_pre`` under zero ablation.
* a neuron ``LlNi`` – column ``i`` of ``blocks.l.mlp.hook_post`` (``[batch, pos, d_mlp]``,
  the post-activation that ``W_out`` reads; for gated MLPs ``act(gate) * up``).

Modes (what replaces an ablated activation ``x``):

* ``zero`` – 0.
* ``zero_rescaled`` – heads: 0, and the *kept* heads of the same layer are multiplied
  by ``n_heads / n_kept`` (the ProxySPEX paper's head ablation; a row where every head
  of a layer is ablated gets 0). Other components: as ``zero``.
* ``mean`` – the mean of ``x`` over every non-padding token of every reference prompt
  (one vector per unit, independent of position), from :class:`ReferenceActivations`.
* ``resample`` – ``x`` of another prompt from the reference set (one source prompt per
  batch row), aligned from the end of the sequence (prompts are left-padded, so the
  last tokens line up); positions before the source prompt's first token use the mean.

A mask is ``bool[batch, n_players]``; ``mask[b, j] == False`` means row ``b`` runs with
player ``j`` ablated, so one forward evaluates many ablations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .components import ComponentLike, Head, LayerPart, Neuron, Players
from .errors import HeadspexError
from .hooks import hook_name
from .types import AblationMode, choices, parse_enum


class AblationError(HeadspexError):
    """Bad input to the hook manager (mask shape, mode, missing reference data…)."""


def parse_ablation_mode(mode: str | AblationMode) -> AblationMode:
    """``mode`` as an :class:`~headspex.types.AblationMode` (plain strings work); an
    :class:`AblationError` naming the modes otherwise."""
    try:
        return parse_enum(AblationMode, mode)
    except HeadspexError:
        raise AblationError(
            f"Unknown ablation mode '{mode}'; choose one of {', '.join(choices(AblationMode))}."
        ) from None


@dataclass(frozen=True)
class Site:
    """One hook point and the axis of its units (heads, neurons, or one whole output)."""

    hook_name: str
    kind: str  # "z", "post", "attn_out", "mlp_out"
    layer: int

    def n_units(self, cfg: Any) -> int:
        return {"z": int(cfg.n_heads), "post": int(cfg.d_mlp)}.get(self.kind, 1)


def _sites_of(component: Any) -> list[tuple[Site, int]]:
    """The (site, unit) pairs that ablating ``component`` silences."""
    layer = component.layer
    attn_out = Site(hook_name(layer, "attn_out"), "attn_out", layer)
    mlp_out = Site(hook_name(layer, "mlp_out"), "mlp_out", layer)
    if isinstance(component, Head):
        return [(Site(hook_name(layer, "z"), "z", layer), component.head)]
    if isinstance(component, Neuron):
        return [(Site(hook_name(layer, "post"), "post", layer), component.index)]
    if isinstance(component, LayerPart):
        if component.part == "attn":
            return [(attn_out, 0)]
        if component.part == "mlp":
            return [(mlp_out, 0)]
        return [(attn_out, 0), (mlp_out, 0)]
    raise AblationError(f"Not a component: {component!r}")


def sites_for(players: Players) -> dict[Site, tuple[torch.Tensor, torch.Tensor]]:
    """Map each touched site to (player columns long[k], unit indices long[k])."""
    pairs: dict[Site, tuple[list[int], list[int]]] = {}
    for column, component in enumerate(players):
        for site, unit in _sites_of(component):
            cols, units = pairs.setdefault(site, ([], []))
            cols.append(column)
            units.append(unit)
    return {s: (torch.tensor(c, dtype=torch.long), torch.tensor(u, dtype=torch.long)) for s, (c, u) in pairs.items()}


def _unit_view(site: Site, x: torch.Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a ``[batch, units]`` tensor against activation ``x``."""
    if site.kind == "z":  # [b, pos, heads, d_head]
        return (-1, 1, x.shape[2], 1)
    if site.kind == "post":  # [b, pos, d_mlp]
        return (-1, 1, x.shape[2])
    return (-1, 1, 1)  # whole output [b, pos, d_model]: one unit


# ----------------------------------------------------------------------------- prompts


def encode_prompts(
    model: Any, prompts: Sequence[str] | dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize prompts as the model's tokenizer does by default (BOS where it adds one), left-padded.

    Returns ``(input_ids long[b, pos], attention_mask long[b, pos])`` on the model's device.
    A dict with ``input_ids`` (and optionally ``attention_mask``) passes through.
    See :func:`headspex.tasks.base.prompt_token_ids`.
    """
    device = next(model.parameters()).device
    if isinstance(prompts, dict):
        ids = prompts["input_ids"]
        attention = prompts.get("attention_mask", torch.ones_like(ids))
        return ids.to(device), attention.to(device)
    if isinstance(prompts, str):
        prompts = [prompts]
    from .tasks.base import prompt_token_ids

    if not prompts:
        empty = torch.zeros(0, 0, dtype=torch.long, device=device)
        return empty, empty.clone()
    encoded = left_padded_ids(prompt_token_ids(model.tokenizer, list(prompts)))
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


def left_padded_ids(sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """Token id lists as left-padded ``input_ids`` / ``attention_mask`` ``long[b, width]``
    (pad id 0, masked out), ready for :func:`encode_prompts` or the model."""
    width = max(len(tokens) for tokens in sequences)
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, tokens in enumerate(sequences):
        ids[row, width - len(tokens) :] = torch.tensor(list(tokens))
        attention[row, width - len(tokens) :] = 1
    return {"input_ids": ids, "attention_mask": attention}


# ----------------------------------------------------------------------------- reference data


@dataclass
class ReferenceActivations:
    """Activations of reference prompts at the ablation sites, for mean and resample modes.

    ``means[hook]`` is the mean over every non-padding token of every reference prompt:
    ``[n_heads, d_head]`` for ``hook_z``, ``[d_mlp]`` for ``hook_post``, ``[d_model]`` for
    sub-layer outputs. ``samples[hook]`` (kept when ``keep_samples``) is
    ``[n_ref, ref_pos, ...]``, left-aligned to the end, with positions before each
    prompt's first token filled with the mean.
    """

    means: dict[str, torch.Tensor]
    samples: dict[str, torch.Tensor] = field(default_factory=dict)
    n_prompts: int = 0
    n_tokens: int = 0

    @classmethod
    @torch.inference_mode()
    def compute(
        cls,
        model: Any,
        prompts: Sequence[str] | dict[str, torch.Tensor],
        players: Players | Iterable[ComponentLike],
        *,
        batch_size: int = 16,
        keep_samples: bool = True,
    ) -> "ReferenceActivations":
        """Run ``model`` on reference prompts and collect statistics at the players' sites."""
        players = players if isinstance(players, Players) else Players(players, model)
        ids, attention = encode_prompts(model, prompts)
        if ids.shape[0] == 0:
            raise AblationError("Mean/resample ablation needs at least one reference prompt.")
        hook_names = sorted({s.hook_name for s in sites_for(players)})
        sums: dict[str, torch.Tensor] = {}
        per_prompt: dict[str, list[torch.Tensor]] = {h: [] for h in hook_names}
        n_tokens = int(attention.sum())
        for start in range(0, ids.shape[0], batch_size):
            batch_ids, batch_mask = ids[start : start + batch_size], attention[start : start + batch_size]
            captured: dict[str, torch.Tensor] = {}

            def capture_as(name: str) -> Callable[[torch.Tensor, Any], None]:
                # Hook points are aliased (hook_z is o.hook_in): key by the name we asked for.
                def capture(x: torch.Tensor, hook: Any) -> None:
                    captured[name] = x.detach().float()

                return capture

            with model.hooks(fwd_hooks=[(h, capture_as(h)) for h in hook_names]):
                model(batch_ids, attention_mask=batch_mask)
            for point in hook_names:
                acts = _canonical(captured, point)
                weights = batch_mask.to(acts.dtype).view(*batch_mask.shape, *([1] * (acts.dim() - 2)))
                sums[point] = sums.get(point, 0) + (acts * weights).sum(dim=(0, 1))
                if keep_samples:
                    per_prompt[point].append(acts.cpu())
        means = {h: (sums[h] / n_tokens) for h in hook_names}
        samples: dict[str, torch.Tensor] = {}
        if keep_samples:
            mask_cpu = attention.cpu().bool()
            for point in hook_names:
                acts = torch.cat(per_prompt[point])
                fill = means[point].cpu().expand_as(acts)
                keep = mask_cpu.view(*mask_cpu.shape, *([1] * (acts.dim() - 2)))
                samples[point] = torch.where(keep, acts, fill)
        return cls(means=means, samples=samples, n_prompts=int(ids.shape[0]), n_tokens=n_tokens)

    def check_covers(self, sites: Iterable[Site], mode: str | AblationMode) -> None:
        missing = [s.hook_name for s in sites if s.hook_name not in self.means]
        if missing:
            raise AblationError(
                f"The reference activations were computed for other components: no data for "
                f"{missing[:5]}. Compute them with the same players you ablate."
            )
        if mode == AblationMode.RESAMPLE:
            missing = [s.hook_name for s in sites if s.hook_name not in self.samples]
            if missing:
                raise AblationError(
                    "Resample ablation needs per-prompt reference activations; compute the "
                    "reference with keep_samples=True."
                )


def _canonical(captured: dict[str, torch.Tensor], hook_name: str) -> torch.Tensor:
    if hook_name not in captured:
        raise AblationError(f"Hook point {hook_name} did not fire; is it a supported architecture?")
    return captured[hook_name]


# ----------------------------------------------------------------------------- the manager


class Ablator:
    """Holds the current per-row mask and applies it inside the model's hooks.

    Use through :func:`ablate`. ``set_mask`` may be called between forwards to evaluate
    different ablations with the same hooks registered (what the AblationGame does).
    """

    def __init__(
        self,
        model: Any,
        players: Players,
        mode: str | AblationMode = AblationMode.ZERO,
        reference: ReferenceActivations | None = None,
        seed: int = 0,
    ) -> None:
        mode = parse_ablation_mode(mode)
        if mode in (AblationMode.MEAN, AblationMode.RESAMPLE) and reference is None:
            raise AblationError(
                f"'{mode}' ablation needs reference activations: pass "
                "reference=ReferenceActivations.compute(model, reference_prompts, players)."
            )
        self.model = model
        self.players = players.validate(model)
        self.mode = mode
        self.reference = reference
        self.sites = sites_for(players)
        if reference is not None and mode in (AblationMode.MEAN, AblationMode.RESAMPLE):
            reference.check_covers(self.sites, mode)
        self._generator = np.random.default_rng(seed)
        self._keep: dict[Site, torch.Tensor] = {}
        self._scale: dict[Site, torch.Tensor] = {}
        self._sources: torch.Tensor | None = None
        self.set_mask(None)

    @property
    def n_players(self) -> int:
        return len(self.players)

    def set_mask(self, mask: torch.Tensor | np.ndarray | None, resample_sources: Sequence[int] | None = None) -> None:
        """Set which players each batch row keeps.

        Args:
            mask: ``bool[batch, n_players]`` (``True`` = kept), or ``bool[n_players]`` for the
                same ablation on every row, or ``None`` to keep everything.
            resample_sources: for ``resample`` mode, the reference prompt index of each row
                (``long[batch]``); drawn from the seed when omitted.
        """
        n = self.n_players
        if mask is None:
            mask_t = torch.ones(1, n, dtype=torch.bool)
        else:
            mask_t = torch.as_tensor(mask)
            if mask_t.dtype != torch.bool:
                raise AblationError(
                    f"A mask must be boolean (True = kept, False = ablated); got dtype {mask_t.dtype}."
                )
            if mask_t.dim() == 1:
                mask_t = mask_t.unsqueeze(0)
            if mask_t.dim() != 2 or mask_t.shape[1] != n:
                raise AblationError(
                    f"Wrong mask shape {tuple(mask_t.shape)}: expected [batch, {n}] for {n} players "
                    f"({', '.join(self.players.names[:4])}{', …' if n > 4 else ''})."
                )
        self.mask = mask_t.cpu()
        device = next(self.model.parameters()).device
        mask_f = self.mask.to(torch.float32)
        for site, (columns, units) in self.sites.items():
            # Count the players silencing each unit: one unit may have several (L3 and L3.attn).
            silenced = torch.zeros(mask_f.shape[0], site.n_units(self.model.cfg))
            silenced.index_add_(1, units, 1.0 - mask_f[:, columns])
            keep = (silenced == 0).to(torch.float32)
            self._keep[site] = keep.to(device)
            if self.mode == AblationMode.ZERO_RESCALED and site.kind == "z":
                n_kept = keep.sum(dim=1, keepdim=True)
                self._scale[site] = (keep.shape[1] / n_kept.clamp(min=1.0)).to(device)
        if self.mode == AblationMode.RESAMPLE:
            rows = self.mask.shape[0]
            assert self.reference is not None
            if resample_sources is None:
                sources = self._generator.integers(0, self.reference.n_prompts, size=rows)
            else:
                sources = np.asarray(resample_sources)
                if sources.shape != (rows,) or sources.min(initial=0) < 0 or sources.max(initial=0) >= self.reference.n_prompts:
                    raise AblationError(
                        f"resample_sources must be {rows} indices in [0, {self.reference.n_prompts})."
                    )
            self._sources = torch.as_tensor(sources, dtype=torch.long)

    def _replacement(self, site: Site, x: torch.Tensor) -> torch.Tensor:
        assert self.reference is not None
        if self.mode == AblationMode.MEAN:
            return self.reference.means[site.hook_name].to(x.device, x.dtype)
        samples = self.reference.samples[site.hook_name]
        sources = self._sources
        assert sources is not None
        if sources.shape[0] != x.shape[0]:
            sources = sources.expand(x.shape[0]) if sources.shape[0] == 1 else sources
        positions = x.shape[1]
        chosen = samples[sources]
        if chosen.shape[1] >= positions:
            chosen = chosen[:, -positions:]
        else:
            pad = self.reference.means[site.hook_name].to(chosen.device, chosen.dtype).expand(
                chosen.shape[0], positions - chosen.shape[1], *chosen.shape[2:]
            )
            chosen = torch.cat([pad, chosen], dim=1)
        return chosen.to(x.device, x.dtype)

    def hook_for(self, site: Site) -> Callable[[torch.Tensor, Any], torch.Tensor]:
        """The TransformerLens hook function that ablates ``site`` with the current mask."""

        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            keep = self._keep[site]
            if keep.shape[0] not in (1, x.shape[0]):
                raise AblationError(
                    f"The mask has {keep.shape[0]} rows but the batch has {x.shape[0]}: give one "
                    "mask row per batch row, or a single row for all."
                )
            keep = keep.to(x.dtype).view(_unit_view(site, x))
            if self.mode in (AblationMode.ZERO, AblationMode.ZERO_RESCALED):
                out = x * keep
                if site in self._scale:
                    out = out * self._scale[site].to(x.dtype).view(-1, 1, 1, 1)
                return out
            replacement = self._replacement(site, x)
            return x * keep + replacement * (1 - keep)

        return hook

    def fwd_hooks(self) -> list[tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]]]:
        return [(site.hook_name, self.hook_for(site)) for site in self.sites]


@contextmanager
def ablate(
    model: Any,
    components: Iterable[ComponentLike] | None = None,
    *,
    players: Players | Iterable[ComponentLike] | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    mode: str | AblationMode = AblationMode.ZERO,
    reference: ReferenceActivations | None = None,
    resample_sources: Sequence[int] | None = None,
    seed: int = 0,
) -> Iterator[Ablator]:
    """Ablate components of ``model`` for the duration of the ``with`` block.

    Either a fixed set (``ablate(model, ["L3H5", "L4.mlp"])``: the same on every batch
    row) or ``players`` with a per-row ``mask`` ``bool[batch, n_players]``
    (``False`` = ablated). The hooks are removed on exit, exceptions included.

    Yields the :class:`Ablator`, whose ``set_mask`` changes the ablation between forwards.
    """
    if components is not None and players is not None:
        raise AblationError("Give either a fixed set of components or players (+ mask), not both.")
    if components is not None:
        if mask is not None:
            raise AblationError("A fixed set of components takes no mask; use players=… with mask=….")
        comps = list(components) if not isinstance(components, str) else [components]
        players_set = Players(comps, model)
        mask = torch.zeros(1, len(players_set), dtype=torch.bool)
    elif players is not None:
        players_set = players if isinstance(players, Players) else Players(players, model)
    else:
        raise AblationError("Nothing to ablate: pass components or players.")
    ablator = Ablator(model, players_set, mode=mode, reference=reference, seed=seed)
    ablator.set_mask(mask, resample_sources=resample_sources)
    if len(players_set) == 0:
        yield ablator
        return
    with model.hooks(fwd_hooks=ablator.fwd_hooks()):
        yield ablator
