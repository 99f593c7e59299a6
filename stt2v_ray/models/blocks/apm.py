"""Appearance Preservation Module (APM): long-term memory from an anchor frame (text-to-video family).

1. A CLIP image encoder embeds the anchor frame (original: OpenCLIP ViT-H-14, 1024-d; here
   transformers' `CLIPVisionModelWithProjection`).
2. An MLP (embed -> hidden -> SiLU -> num_tokens x cross_attention_dim) makes image tokens, appended to
   the text tokens (original: 16 tokens after 77 text tokens = 93).
3. In every SPATIAL cross-attention of the base UNet an `APMAttnProcessor` mixes
   x = x_text + SiLU(alpha) * LayerNorm(Conv1d(n_text + n_img -> n_text, k=3)(tokens)), alpha = 0
   at init, and attends to x with the default processor. The tokens are the conv's channels;
   the conv slides over the feature dimension.

Classifier-free guidance follows the original code's plain 2-way CFG (not the paper's
3-term CFG): the unconditional branch is the negative prompt plus the image tokens of a zero
image (an all-zero anchor in [-1, 1], i.e. mid-grey).
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from diffusers import UNet3DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import Tensor, nn
from transformers import CLIPVisionModelWithProjection

# attn2 of `*.attentions.*` only: not `temp_attentions`, not `transformer_in`.
SPATIAL_CROSS_ATTENTION = re.compile(r"(^|\.)attentions\.\d+\.transformer_blocks\.\d+\.attn2\.processor$")
# OpenAI CLIP preprocessing statistics.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class APMAttnProcessor(nn.Module):
    """Cross-attention processor that folds the image tokens into the text tokens before attending.

    With exactly `num_text_tokens` tokens (no image tokens: chunk 0, the CAM branch) it is the
    default processor unchanged. With `num_text_tokens + num_image_tokens` it mixes them; any
    other count is an error.
    """

    def __init__(self, num_text_tokens: int, num_image_tokens: int, dim: int):
        super().__init__()
        self.num_text_tokens, self.num_image_tokens = num_text_tokens, num_image_tokens
        self.conv = nn.Conv1d(num_text_tokens + num_image_tokens, num_text_tokens, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.alpha = nn.Parameter(torch.zeros(()))
        self.attend = AttnProcessor2_0()

    def forward(
        self,
        attn: Attention,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        *args,
        **kwargs,
    ) -> Tensor:
        if encoder_hidden_states is not None:
            n = encoder_hidden_states.shape[1]
            if n == self.num_text_tokens + self.num_image_tokens:
                text = encoder_hidden_states[:, : self.num_text_tokens]
                mixed = self.norm(self.conv(encoder_hidden_states))  # (B, n_text, D)
                encoder_hidden_states = text + F.silu(self.alpha) * mixed
            elif n != self.num_text_tokens:
                raise ValueError(
                    f"APMAttnProcessor: expected {self.num_text_tokens} text tokens or "
                    f"{self.num_text_tokens} + {self.num_image_tokens} text + image tokens, got {n}"
                )
        return self.attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class APM(nn.Module):
    """Anchor frame -> image tokens; `install` puts an `APMAttnProcessor` in every spatial cross-attention.

    The processors (and their parameters) live inside the UNet's attention modules, so they are
    part of the UNet's state dict; `processors(unet)` lists them.
    """

    def __init__(
        self,
        image_encoder: CLIPVisionModelWithProjection,
        cross_attention_dim: int,
        num_tokens: int = 16,
        hidden_dim: int | None = None,
    ):
        super().__init__()
        embed = image_encoder.config.projection_dim
        hidden = hidden_dim or embed + embed // 4  # original: 1024 -> 1280
        self.image_encoder = image_encoder
        self.num_tokens, self.cross_attention_dim = num_tokens, cross_attention_dim
        # SiLU, as the official `ImgEmbContextResampler.context_embedding` (Linear, SiLU, Linear)
        self.mlp = nn.Sequential(nn.Linear(embed, hidden), nn.SiLU(), nn.Linear(hidden, num_tokens * cross_attention_dim))
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> image tokens (N, num_tokens, cross_attention_dim)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"APM: expected images (N, 3, H, W), got {tuple(images.shape)}")
        size = self.image_encoder.config.image_size
        x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = ((x + 1) / 2 - self.mean) / self.std
        embeds = self.image_encoder(pixel_values=x).image_embeds  # (N, projection_dim)
        return self.mlp(embeds).reshape(images.shape[0], self.num_tokens, self.cross_attention_dim)

    def install(self, unet: UNet3DConditionModel, num_text_tokens: int) -> None:
        """Replace the processor of every spatial cross-attention with a fresh (zero-alpha) APM processor."""
        processors = dict(unet.attn_processors)
        found = 0
        for name in processors:
            if SPATIAL_CROSS_ATTENTION.search(name):
                processors[name] = APMAttnProcessor(num_text_tokens, self.num_tokens, self.cross_attention_dim)
                found += 1
        if not found:
            raise ValueError("APM.install: the UNet has no spatial cross-attention (`*.attentions.*.attn2`)")
        unet.set_attn_processor(processors)

    @staticmethod
    def processors(unet: UNet3DConditionModel) -> dict[str, APMAttnProcessor]:
        return {name: p for name, p in unet.attn_processors.items() if isinstance(p, APMAttnProcessor)}
