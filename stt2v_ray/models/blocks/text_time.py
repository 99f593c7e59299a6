"""Text in the time embedding: the prompt added to a UNet's timestep embedding input.

diffusers' `TimestepEmbedding` has an optional `cond_proj` (built when a UNet is configured
with `time_cond_proj_dim`, here n_text x D): `linear_1(t_emb + cond_proj(cond))`. The toy preset sets it, so the
prompt reaches every ResNet block through its time projection and not only the cross-attention
of the coarse levels; on the toy clips that is what makes colour and shape learnable in CPU
minutes. UNets without it (tiny and real presets) get None, which diffusers ignores.
"""
from __future__ import annotations

from torch import Tensor, nn


def unet_kwargs(unet: nn.Module, text: Tensor) -> dict:
    """`timestep_cond` for a diffusers UNet call when its time embedding takes text, else nothing."""
    cond = text_time_condition(getattr(unet, "time_embedding", None), text)
    return {} if cond is None else {"timestep_cond": cond}


def text_time_condition(time_embedding: nn.Module | None, text: Tensor) -> Tensor | None:
    """(B, n_text, D) text tokens -> (B, n_text * D) all token states side by side, or None when the
    embedding takes none.

    Not a mean: a mean over the tokens buries the one token that names the colour under the
    tokens the prompts share (measured on the toy model: pooled embeddings of "a red ..." and
    "a blue ..." 0.3 apart, of prompts differing in background or direction 6 apart). With every
    position kept, `cond_proj` is a learned linear read-out of each word's state.
    """
    if getattr(time_embedding, "cond_proj", None) is None:
        return None
    return text.flatten(1)
