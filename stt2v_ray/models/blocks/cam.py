"""Conditional Attention Module (CAM): short-term memory from the previous chunk's last frames.

Three parts, shared by both model families except the last:
- `FrameEncoder`: the conditioning frames in PIXEL space ([-1, 1]) -> features at latent
  resolution, added to the CAM copy's pre-processed input (after conv_in and transformer_in).
- `CAMInjector`: per-pixel temporal cross-attention from the base UNet's skip features
  (queries, F frames) to the CAM features (keys/values, F_cond frames); its zero-initialised
  output projection makes a fresh CAM an exact no-op.
- `CAM`: a ControlNet-style trainable copy of a diffusers `UNet3DConditionModel` encoder
  (conv_in, time embedding, transformer_in, down blocks, mid block) plus the frame encoder and
  one injector per skip connection and one for the mid block (text-to-video family).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import UNet3DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import Tensor, nn

from stt2v_ray.models.blocks.text_time import text_time_condition


class FrameEncoder(nn.Module):
    """Pixel-space conditioning frames ([-1,1]) -> features at latent resolution with the UNet's first width.

    Convs with `channels` widths (original: 32/96/256/512), `num_downsamples` stride-2 convs
    (= log2 of the VAE factor), then a zero-initialised conv to out_channels. Between two widths
    there is a 3x3 conv at the old width and a 3x3 conv to the new one; the first
    `num_downsamples` of those transitions have stride 2 (more downsamples than transitions
    repeat the last width).
    """

    def __init__(self, out_channels: int, channels: Sequence[int] = (32, 96, 256, 512), num_downsamples: int = 3):
        super().__init__()
        if not channels:
            raise ValueError("FrameEncoder: channels must name at least one width")
        if num_downsamples < 0:
            raise ValueError(f"FrameEncoder: num_downsamples must be >= 0, got {num_downsamples}")
        widths = list(channels)
        self.num_downsamples = num_downsamples
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), nn.SiLU()]
        for i in range(max(len(widths) - 1, num_downsamples)):
            c_in, c_out = widths[min(i, len(widths) - 1)], widths[min(i + 1, len(widths) - 1)]
            stride = 2 if i < num_downsamples else 1
            layers += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, frames: Tensor) -> Tensor:
        # (N, 3, H, W) -> (N, out_channels, H / 2**d, W / 2**d)
        factor = 2**self.num_downsamples
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"FrameEncoder: expected frames (N, 3, H, W), got {tuple(frames.shape)}")
        if frames.shape[-2] % factor or frames.shape[-1] % factor:
            raise ValueError(f"FrameEncoder: frame size {tuple(frames.shape[-2:])} must be divisible by {factor}")
        return self.conv_out(self.body(frames))


class CAMInjector(nn.Module):
    """GroupNorm over (C,F,H,W) -> Linear proj_in -> per-pixel temporal multi-head attention
    (queries: the UNet skip features of the chunk's F frames; keys/values: the CAM features of the
    F_cond frames) -> zero-initialised Linear proj_out. Returns the RESIDUAL (caller adds it).

    Only the queries are normalised and projected: the keys/values are the raw CAM features, as
    the official merger does (both branches of Picsart-AI-Research/StreamingT2V: `CrossAttention`
    in `conditioning.py` feeds `encoder_hidden_states` straight to `Attention`). The attention
    has no positional encoding over frames. Parameter names map one-to-one onto the official
    `norm`, `proj_in`, `attention.to_{q,k,v}`, `attention.to_out.0`, `proj_out`.
    """

    def __init__(self, channels: int, head_dim: int = 64, norm_groups: int = 32, frame_positions: int = 0):
        super().__init__()
        if channels % norm_groups:
            raise ValueError(f"CAMInjector: norm_groups ({norm_groups}) must divide channels ({channels})")
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            raise ValueError(f"CAMInjector: {self.heads} heads must divide channels ({channels}); pick another head_dim")
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        # Optional (toy preset; the official layout has none): learned per-frame offsets of the
        # queries (chunk frame j) and the keys (conditioning frame k), so that attention can route
        # by frame position, e.g. chunk frame j to conditioning frame j. Random, not zero: their
        # product must have a gradient; proj_out's zero init keeps a fresh injector a no-op.
        self.frame_positions = frame_positions
        if frame_positions:
            self.query_pos = nn.Parameter(torch.randn(frame_positions, channels) * 0.5)
            self.key_pos = nn.Parameter(torch.randn(frame_positions, channels) * 0.5)

    def _tokens(self, x: Tensor, frames: int) -> Tensor:
        # (B*F, C, H, W) -> normalised over (C, F, H, W) -> (B*H*W, F, C)
        bf, c, h, w = x.shape
        x = x.reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)  # (B, C, F, H, W)
        x = self.norm(x)
        x = x.permute(0, 3, 4, 2, 1).reshape(-1, frames, c)  # (B*H*W, F, C)
        return self.proj_in(x)

    def forward(self, x: Tensor, cond: Tensor, num_frames: int, num_cond_frames: int) -> Tensor:
        # x (B*F, C, H, W), cond (B*Fc, C, H, W) -> residual (B*F, C, H, W)
        bf, c, h, w = x.shape
        if bf % num_frames or cond.shape[0] % num_cond_frames or bf // num_frames != cond.shape[0] // num_cond_frames:
            raise ValueError(
                f"CAMInjector: x {tuple(x.shape)} with {num_frames} frames and cond {tuple(cond.shape)} "
                f"with {num_cond_frames} frames disagree on the batch size"
            )
        if cond.shape[1:] != x.shape[1:]:
            raise ValueError(f"CAMInjector: cond features {tuple(cond.shape[1:])} must match x features {tuple(x.shape[1:])}")
        batch = bf // num_frames
        q_in = self._tokens(x, num_frames)
        # keys/values: raw CAM features (B*Fc, C, H, W) -> (B*H*W, Fc, C), no norm, no proj_in
        kv_in = cond.reshape(batch, num_cond_frames, c, h, w).permute(0, 3, 4, 1, 2).reshape(-1, num_cond_frames, c)

        def heads(t: Tensor) -> Tensor:  # (N, L, C) -> (N, heads, L, C / heads)
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        q, k = q_in, kv_in
        if self.frame_positions:
            if num_frames > self.frame_positions or num_cond_frames > self.frame_positions:
                raise ValueError(f"CAMInjector: {num_frames} frames ({num_cond_frames} conditioning) but only "
                                 f"{self.frame_positions} learned frame positions")
            q, k = q + self.query_pos[:num_frames], k + self.key_pos[:num_cond_frames]
        out = F.scaled_dot_product_attention(heads(self.to_q(q)), heads(self.to_k(k)), heads(self.to_v(kv_in)))
        out = self.proj_out(self.to_out(out.transpose(1, 2).reshape(q_in.shape)))  # (B*H*W, F, C)
        return out.reshape(batch, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)


class CAM(nn.Module):
    """ControlNet-style trainable copy of a `UNet3DConditionModel` encoder, a frame encoder, and injectors.

    Input choice (as the official StreamingModelscope ControlNet does): the copy sees the noisy
    latents of the chunk's FIRST F_cond frames (the frames that overlap the conditioning span),
    with the frame-encoder features of the F_cond conditioning frames added to its
    transformer_in output. Its
    cross-attentions get text tokens only (no APM image tokens) and use the default processor.
    Keys/values of every injector come from the copy's features (F_cond frames); queries are the
    base UNet's skip features (F frames). Injectors: one per skip connection (transformer_in
    output, then every res sample of every down block) and one for the mid block output.
    """

    def __init__(
        self,
        unet: UNet3DConditionModel,
        vae_scale_factor: int = 8,
        frame_channels: Sequence[int] = (32, 96, 256, 512),
        head_dim: int = 64,
        frame_positions: int = 0,
    ):
        super().__init__()
        if vae_scale_factor < 1 or vae_scale_factor & (vae_scale_factor - 1):
            raise ValueError(f"CAM: vae_scale_factor must be a power of two, got {vae_scale_factor}")
        width = unet.config.block_out_channels[0]
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.transformer_in = copy.deepcopy(unet.transformer_in)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        self.mid_block = copy.deepcopy(unet.mid_block)
        for module in self.modules():  # the base UNet may carry APM processors: the copy must not
            if isinstance(module, Attention):
                module.set_processor(AttnProcessor2_0())
        self.frame_encoder = FrameEncoder(width, frame_channels, vae_scale_factor.bit_length() - 1)

        skip_channels = [width]
        for block in self.down_blocks:
            skip_channels += [resnet.out_channels for resnet in block.resnets]
            if block.downsamplers is not None:
                skip_channels += [down.out_channels for down in block.downsamplers]
        groups = unet.config.norm_num_groups
        self.skip_injectors = nn.ModuleList(CAMInjector(c, head_dim, groups, frame_positions) for c in skip_channels)
        self.mid_injector = CAMInjector(unet.config.block_out_channels[-1], head_dim, groups, frame_positions)

    def forward(
        self, latents: Tensor, timestep: Tensor, text: Tensor, frames: Tensor
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        """latents (B, c, Fc, h, w) noisy latents of the first F_cond frames; timestep (B,) or scalar;
        text (B, n_text, D); frames (B*Fc, 3, H, W) pixel conditioning frames in [-1, 1]
        -> (skip features, each (B*Fc, C_i, h_i, w_i); mid features (B*Fc, C_mid, h', w'))."""
        batch, _, num_frames = latents.shape[:3]
        if frames.shape[0] != batch * num_frames:
            raise ValueError(f"CAM: {frames.shape[0]} conditioning frames for {batch} x {num_frames} latent frames")
        # 1. time (as the base UNet does it)
        timesteps = torch.as_tensor(timestep, device=latents.device)
        timesteps = timesteps[None] if timesteps.ndim == 0 else timesteps
        t_emb = self.time_proj(timesteps.expand(batch)).to(dtype=self.conv_in.weight.dtype)
        emb = self.time_embedding(t_emb, text_time_condition(self.time_embedding, text)).repeat_interleave(num_frames, dim=0)
        text = text.repeat_interleave(num_frames, dim=0)

        # 2. pre-process: conv_in, the temporal transformer, then + frame encoder features (the
        #    official ControlNet adds its conditioning embedding after transformer_in)
        sample = latents.permute(0, 2, 1, 3, 4).reshape((batch * num_frames, -1) + latents.shape[3:])
        sample = self.transformer_in(self.conv_in(sample), num_frames=num_frames, return_dict=False)[0]
        sample = sample + self.frame_encoder(frames)

        # 3. down
        skips: tuple[Tensor, ...] = (sample,)
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=text, num_frames=num_frames)
            else:
                sample, res = block(hidden_states=sample, temb=emb, num_frames=num_frames)
            skips += res

        # 4. mid
        mid = self.mid_block(sample, emb, encoder_hidden_states=text, num_frames=num_frames)
        return skips, mid

    def inject(
        self, skips: tuple[Tensor, ...], mid: Tensor, cam_skips: tuple[Tensor, ...], cam_mid: Tensor,
        num_frames: int, num_cond_frames: int,
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        """Base UNet skip/mid features (B*F frames) + CAM residuals from the copy's features (B*Fc frames)."""
        if len(skips) != len(self.skip_injectors) or len(cam_skips) != len(self.skip_injectors):
            raise ValueError(f"CAM: {len(self.skip_injectors)} injectors for {len(skips)} skips and {len(cam_skips)} CAM skips")
        new_skips = tuple(
            skip + injector(skip, cam_skip, num_frames, num_cond_frames)
            for skip, cam_skip, injector in zip(skips, cam_skips, self.skip_injectors, strict=False)
        )
        return new_skips, mid + self.mid_injector(mid, cam_mid, num_frames, num_cond_frames)
