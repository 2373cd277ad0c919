"""Named model components: heads, layer parts and MLP neurons, and ordered player sets.

Text forms (parsed by :func:`parse_component`, produced by ``str(component)``):

========  =====================================================
``L3H5``   attention head 5 (a query head) of layer 3
``L3.attn`` the whole attention output of layer 3
``L3.mlp``  the whole MLP output of layer 3
``L3``      the whole block 3 (its attention and MLP contributions)
``L3N512``  neuron 512 of layer 3's MLP, at the post-activation
========  =====================================================

Layers and indices are zero-based, as in TransformerLens hook names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, overload
from .errors import HeadspexError

LayerPartKind = Literal["attn", "mlp", "block"]
_KIND_ORDER = {"head": 0, "attn": 1, "mlp": 2, "neuron": 3, "block": 4}


class ComponentError(HeadspexError):
    """A component name or address that does not exist in the model."""


@dataclass(frozen=True, order=False)
class Head:
    """Query head ``head`` of layer ``layer``, ablated on its output before W_O (hook_z)."""

    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.layer, _KIND_ORDER["head"], self.head)


@dataclass(frozen=True, order=False)
class LayerPart:
    """A whole sub-layer output: ``attn``, ``mlp``, or the whole ``block`` (both)."""

    layer: int
    part: LayerPartKind

    def __str__(self) -> str:
        return f"L{self.layer}" if self.part == "block" else f"L{self.layer}.{self.part}"

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.layer, _KIND_ORDER[self.part], 0)


@dataclass(frozen=True, order=False)
class Neuron:
    """MLP neuron ``index`` of layer ``layer`` at the post-activation (the input of W_out)."""

    layer: int
    index: int

    def __str__(self) -> str:
        return f"L{self.layer}N{self.index}"

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.layer, _KIND_ORDER["neuron"], self.index)


Component = Union[Head, LayerPart, Neuron]
ComponentLike = Union[Component, str]

_PATTERN = re.compile(
    r"^L(?P<layer>\d+)(?:(?:H(?P<head>\d+))|(?:N(?P<neuron>\d+))|(?:\.(?P<part>attn|mlp)))?$",
    re.IGNORECASE,
)


def parse_component(text: ComponentLike) -> Component:
    """Parse ``"L3H5"``, ``"L3.attn"``, ``"L3.mlp"``, ``"L3"`` or ``"L3N512"``.

    Components are passed through unchanged. Case and surrounding spaces are ignored
    (``"l3h5"`` works). Does not check the model; see :func:`validate_components`.
    """
    if isinstance(text, (Head, LayerPart, Neuron)):
        return text
    if not isinstance(text, str):
        raise ComponentError(f"Expected a component name such as 'L3H5', got {type(text).__name__}: {text!r}")
    cleaned = text.strip()
    match = _PATTERN.match(cleaned)
    if match is None:
        raise ComponentError(
            f"Cannot parse component '{text}'. Use L<layer>H<head> (head), L<layer>.attn, "
            "L<layer>.mlp, L<layer> (block) or L<layer>N<neuron>, e.g. 'L3H5'."
        )
    layer = int(match["layer"])
    if match["head"] is not None:
        return Head(layer, int(match["head"]))
    if match["neuron"] is not None:
        return Neuron(layer, int(match["neuron"]))
    if match["part"] is not None:
        return LayerPart(layer, match["part"].lower())  # type: ignore[arg-type]
    return LayerPart(layer, "block")


@dataclass(frozen=True)
class ModelShape:
    """The sizes that component addresses are validated against."""

    n_layers: int
    n_heads: int
    d_mlp: int

    @classmethod
    def of(cls, model: Any) -> "ModelShape":
        """Read the shape of a TransformerLens model (anything with ``.cfg``) or pass one through."""
        if isinstance(model, ModelShape):
            return model
        cfg = model.cfg
        return cls(n_layers=int(cfg.n_layers), n_heads=int(cfg.n_heads), d_mlp=int(cfg.d_mlp))


def validate_component(component: Component, shape: ModelShape) -> None:
    """Raise :class:`ComponentError` naming the problem if ``component`` is not in the model."""
    if not 0 <= component.layer < shape.n_layers:
        raise ComponentError(
            f"Unknown component '{component}': layer {component.layer} does not exist in a "
            f"{shape.n_layers}-layer model (layers 0..{shape.n_layers - 1})."
        )
    if isinstance(component, Head) and not 0 <= component.head < shape.n_heads:
        raise ComponentError(
            f"Unknown head '{component}': layer {component.layer} has {shape.n_heads} query heads "
            f"(H0..H{shape.n_heads - 1})."
        )
    if isinstance(component, Neuron) and not 0 <= component.index < shape.d_mlp:
        raise ComponentError(
            f"Unknown neuron '{component}': the MLP of layer {component.layer} has {shape.d_mlp} "
            f"neurons (N0..N{shape.d_mlp - 1})."
        )


class Players(Sequence[Component]):
    """An ordered, duplicate-free set of components: the players of an ablation game.

    Player ``j`` is ``players[j]``; a mask column ``j`` refers to it. The order is the
    order given (no sorting), so results line up with the caller's list.
    """

    def __init__(self, components: Iterable[ComponentLike], model: Any | None = None) -> None:
        parsed = tuple(parse_component(c) for c in components)
        seen: set[Component] = set()
        for component in parsed:
            if component in seen:
                raise ComponentError(f"Component '{component}' is listed twice among the players.")
            seen.add(component)
        if model is not None:
            shape = ModelShape.of(model)
            for component in parsed:
                validate_component(component, shape)
        self._components = parsed
        self._index = {c: j for j, c in enumerate(parsed)}

    @overload
    def __getitem__(self, index: int) -> Component: ...
    @overload
    def __getitem__(self, index: slice) -> "Players": ...
    def __getitem__(self, index: int | slice) -> Component | "Players":
        if isinstance(index, slice):
            return Players(self._components[index])
        return self._components[index]

    def __len__(self) -> int:
        return len(self._components)

    def __iter__(self) -> Iterator[Component]:
        return iter(self._components)

    def __contains__(self, item: object) -> bool:
        try:
            return parse_component(item) in self._index  # type: ignore[arg-type]
        except ComponentError:
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Players) and other._components == self._components

    def __hash__(self) -> int:
        return hash(self._components)

    def __repr__(self) -> str:
        shown = ", ".join(self.names[:6]) + (", …" if len(self) > 6 else "")
        return f"Players({len(self)}: {shown})"

    def index(self, component: ComponentLike, *args: Any) -> int:  # type: ignore[override]
        """Column of ``component`` in a mask."""
        parsed = parse_component(component)
        if parsed not in self._index:
            raise ComponentError(f"'{parsed}' is not one of the players ({self!r}).")
        return self._index[parsed]

    @property
    def names(self) -> list[str]:
        """Text form of each player, in order."""
        return [str(c) for c in self._components]

    @property
    def layers(self) -> list[int]:
        """Layer of each player, in order."""
        return [c.layer for c in self._components]

    @property
    def first_layer(self) -> int:
        """The earliest layer any player sits in (ablation cannot change what comes before)."""
        if not self._components:
            raise ComponentError("An empty player set has no first layer.")
        return min(self.layers)

    def validate(self, model: Any) -> "Players":
        """Check every player against ``model``; returns ``self`` for chaining."""
        shape = ModelShape.of(model)
        for component in self._components:
            validate_component(component, shape)
        return self

    def to_json(self) -> list[str]:
        return self.names

    @classmethod
    def from_json(cls, names: Sequence[str]) -> "Players":
        return cls(names)


def _layer_list(model: Any, layers: int | Iterable[int] | None) -> list[int]:
    shape = ModelShape.of(model)
    if layers is None:
        return list(range(shape.n_layers))
    chosen = [layers] if isinstance(layers, int) else list(layers)
    for layer in chosen:
        if not 0 <= layer < shape.n_layers:
            raise ComponentError(
                f"Layer {layer} does not exist in a {shape.n_layers}-layer model "
                f"(layers 0..{shape.n_layers - 1})."
            )
    return chosen


def heads(model: Any, layers: int | Iterable[int] | None = None) -> Players:
    """All query heads of the given layers (all layers by default), layer-major.

    ``heads(model, layers=[20])`` on SmolLM2 gives the 9 players ``L20H0`` … ``L20H8``.
    """
    shape = ModelShape.of(model)
    return Players([Head(layer, h) for layer in _layer_list(model, layers) for h in range(shape.n_heads)], model)


def layer_parts(
    model: Any, layers: int | Iterable[int] | None = None, parts: Sequence[LayerPartKind] = ("attn", "mlp")
) -> Players:
    """Whole attention / MLP / block outputs of the given layers as players."""
    return Players([LayerPart(layer, p) for layer in _layer_list(model, layers) for p in parts], model)


def neurons(model: Any, layer: int, indices: Iterable[int] | None = None) -> Players:
    """MLP neurons of one layer (all ``d_mlp`` of them by default) as players."""
    shape = ModelShape.of(model)
    chosen = range(shape.d_mlp) if indices is None else indices
    return Players([Neuron(layer, int(i)) for i in chosen], model)
