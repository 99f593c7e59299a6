"""The CAM parts in the exact layout of the official StreamingSVD checkpoint (`PAIR/StreamingSVD`).

Read from the original code (branch `main`): `models/control/controlnet.py`
(`ControlNetConditioningEmbedding` with `use_image_encoder_normalization: true`, channels
32/96/256/512) and `models/cam/conditioning.py` (`CrossAttention` inside `ConditionalModel`).
The official frame encoder differs from the generic `stt2v_ray.models.blocks.cam.FrameEncoder`: it
applies a LayerNorm over channels after every block conv (before SiLU), so loading the official
weights into the generic one would silently compute something else. The injector needs no
variant: the generic `CAMInjector` already normalises and projects only the query stream and
takes the CAM features as keys/values, as both official branches do.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class SVDFrameEncoder(nn.Module):
    """Pixel frames ([-1, 1]) -> features at latent resolution: conv_in, (conv, conv stride 2) per
    width transition, each conv followed by LayerNorm(channels) and SiLU, then a zero-initialised conv_out."""

    def __init__(self, out_channels: int, channels: Sequence[int] = (32, 96, 256, 512), downsample: bool = True):
        super().__init__()
        widths = list(channels)
        if len(widths) < 2:
            raise ValueError(f"SVDFrameEncoder: channels needs at least two widths, got {widths}")
        self.num_downsamples = len(widths) - 1 if downsample else 0
        stride = 2 if downsample else 1
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        self.blocks, self.norms = nn.ModuleList(), nn.ModuleList()
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=False):
            self.blocks += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride)]
            self.norms += [nn.LayerNorm(c_in), nn.LayerNorm(c_out)]
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, frames: Tensor) -> Tensor:
        # (N, 3, H, W) -> (N, out_channels, H / 2**d, W / 2**d)
        factor = 2**self.num_downsamples
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[-2] % factor or frames.shape[-1] % factor:
            raise ValueError(f"SVDFrameEncoder: expected frames (N, 3, H, W) with H, W divisible by {factor}, got "
                             f"{tuple(frames.shape)}")
        x = F.silu(self.conv_in(frames))
        for conv, norm in zip(self.blocks, self.norms, strict=False):
            x = F.silu(norm(conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))  # LayerNorm over channels
        return self.conv_out(x)
