"""The one place that spells TransformerLens (``TransformerBridge``) hook names.

Every module that hooks the model asks here instead of formatting the string itself, so a
renamed hook point is a one-line change.
"""

from __future__ import annotations

from typing import Literal

from .errors import HeadspexError

#: Hook points headspex reads or edits, by the short names used in this module.
HookPoint = Literal["z", "post", "attn_out", "mlp_out", "resid_pre", "resid_post"]

_SUFFIX: dict[str, str] = {
    "z": "attn.hook_z",  # [batch, pos, n_heads, d_head]: per-head output before W_O
    "post": "mlp.hook_post",  # [batch, pos, d_mlp]: what W_out reads
    "attn_out": "attn.hook_out",  # [batch, pos, d_model]: the attention sub-layer's output
    "mlp_out": "mlp.hook_out",  # [batch, pos, d_model]: the MLP sub-layer's output
    "resid_pre": "hook_in",  # [batch, pos, d_model]: the block's input
    "resid_post": "hook_out",  # [batch, pos, d_model]: the block's output
}


def hook_name(layer: int, point: HookPoint) -> str:
    """TransformerBridge name of hook ``point`` in block ``layer``, e.g. ``blocks.3.attn.hook_z``."""
    try:
        return f"blocks.{int(layer)}.{_SUFFIX[point]}"
    except KeyError:
        raise HeadspexError(f"unknown hook point {point!r}; known: {', '.join(_SUFFIX)}") from None
