"""The CAM parts in the exact layout of the official StreamingSVD checkpoint (`PAIR/StreamingSVD`).

Read from the original code (branch `main`): `models/control/controlnet.py`
(`ControlNetConditioningEmbedding` with `use_image_encoder_normalization: true`, channels
32/96/256/512) and `models/cam/conditioning.py` (`CrossAttention` inside `ConditionalModel`).
They differ from the generic `stt2v_ray.models.cam` parts in two ways that change the numbers,
so loading the official weights into the generic parts would silently compute something else:
- the frame encoder applies a LayerNorm over channels after every block conv (before SiLU);
- the injector normalises and projects only the QUERY stream (the base UNet's features); the
  keys/values are the CAM features as they are (no GroupNorm, no proj_in).
Parameter names and shapes equal the generic parts' where they exist (the injector's are
identical), so the key mapping stays simple (stt2v_ray.models.convert_svd).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from stt2v_ray.models.cam import CAMInjector


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
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            self.blocks += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride)]
            self.norms += [nn.LayerNorm(c_in), nn.LayerNorm(c_out)]
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, frames: Tensor) -> Tensor:
        # (N, 3, H, W) -> (N, out_channels, H / 2**d, W / 2**d)
        factor = 2**self.num_downsamples
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[-2] % factor or frames.shape[-1] % factor:
            raise ValueError(f"SVDFrameEncoder: expected frames (N, 3, H, W) with H, W divisible by {factor}, got {tuple(frames.shape)}")
        x = F.silu(self.conv_in(frames))
        for conv, norm in zip(self.blocks, self.norms):
            x = F.silu(norm(conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))  # LayerNorm over channels
        return self.conv_out(x)


class SVDCAMInjector(CAMInjector):
    """As `CAMInjector`, but keys/values are the raw CAM features (the official `CrossAttention`)."""

    def forward(self, x: Tensor, cond: Tensor, num_frames: int, num_cond_frames: int) -> Tensor:
        # x (B*F, C, H, W) base features; cond (B*Fc, C, H, W) CAM features -> residual (B*F, C, H, W)
        bf, c, h, w = x.shape
        if bf % num_frames or cond.shape[0] % num_cond_frames or bf // num_frames != cond.shape[0] // num_cond_frames:
            raise ValueError(
                f"SVDCAMInjector: x {tuple(x.shape)} with {num_frames} frames and cond {tuple(cond.shape)} "
                f"with {num_cond_frames} frames disagree on the batch size"
            )
        if cond.shape[1:] != x.shape[1:]:
            raise ValueError(f"SVDCAMInjector: cond features {tuple(cond.shape[1:])} must match x features {tuple(x.shape[1:])}")
        batch = bf // num_frames
        q_in = self._tokens(x, num_frames)  # (B*H*W, F, C), normalised + projected
        kv_in = cond.reshape(batch, num_cond_frames, c, h, w).permute(0, 3, 4, 1, 2).reshape(-1, num_cond_frames, c)

        def heads(t: Tensor) -> Tensor:  # (N, L, C) -> (N, heads, L, C / heads)
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(q_in)), heads(self.to_k(kv_in)), heads(self.to_v(kv_in)))
        out = self.proj_out(self.to_out(out.transpose(1, 2).reshape(q_in.shape)))  # (B*H*W, F, C)
        return out.reshape(batch, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)
