"""StreamingSVD's UNet: diffusers' `UNetSpatioTemporalConditionModel` plus a CAM.

The CAM is a ControlNet-style trainable copy of the UNet's encoder (conv_in, time and
added-time embeddings, down blocks, mid block). It runs on the noisy latents of the chunk's
first F_cond frames only (StreamingSVD's CAM sees frames 0..6), with the `FrameEncoder`
features of the previous chunk's last F_cond frames (pixel space) added to its conv_in output.
One `CAMInjector` per skip connection and one for the mid block turn the copy's features into
residuals for the base UNet. `StreamingUNetSTC.forward` mirrors
`UNetSpatioTemporalConditionModel.forward` (diffusers 0.42) step by step, calling the UNet's
own submodules, so without conditioning frames it computes exactly what the UNet computes.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device
from torch import Tensor, nn

from stt2v_ray.models.blocks.cam import CAMInjector, FrameEncoder


def _timesteps(timestep: Tensor | float | int, batch: int, sample: Tensor) -> Tensor:
    # as diffusers: python numbers become a 1-element tensor, then broadcast to the batch
    if not torch.is_tensor(timestep):
        dtype = maybe_adjust_dtype_for_device(torch.float64 if isinstance(timestep, float) else torch.int64, sample.device)
        timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
    elif timestep.ndim == 0:
        timestep = timestep[None].to(sample.device)
    return timestep.expand(batch)


class _EncoderParts(nn.Module):
    """The encoder half of a spatio-temporal UNet: the modules the CAM copies."""

    def __init__(self, unet: UNetSpatioTemporalConditionModel):
        super().__init__()
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.add_time_proj = copy.deepcopy(unet.add_time_proj)
        self.add_embedding = copy.deepcopy(unet.add_embedding)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        self.mid_block = copy.deepcopy(unet.mid_block)


def _embedding(parts: nn.Module, timesteps: Tensor, added_time_ids: Tensor, dtype: torch.dtype) -> Tensor:
    # timesteps (B,), added_time_ids (B, n_ids) -> (B, time_embed_dim)
    batch = timesteps.shape[0]
    emb = parts.time_embedding(parts.time_proj(timesteps).to(dtype=dtype))
    time_embeds = parts.add_time_proj(added_time_ids.flatten()).reshape((batch, -1)).to(emb.dtype)
    return emb + parts.add_embedding(time_embeds)


def _down(parts: nn.Module, x: Tensor, emb: Tensor, ehs: Tensor, indicator: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    # x (B*F, C, h, w) after conv_in -> (bottom features, skip features incl. x)
    res: tuple[Tensor, ...] = (x,)
    for block in parts.down_blocks:
        if getattr(block, "has_cross_attention", False):
            x, skips = block(hidden_states=x, temb=emb, encoder_hidden_states=ehs, image_only_indicator=indicator)
        else:
            x, skips = block(hidden_states=x, temb=emb, image_only_indicator=indicator)
        res += skips
    return x, res


class StreamingUNetSTC(nn.Module):
    """`unet` + CAM. forward(sample (B,F,C_in,h,w), ..., cond (B,F_cond,3,H,W) pixel frames or None)."""

    def __init__(
        self,
        unet: UNetSpatioTemporalConditionModel,
        frame_encoder_channels: Sequence[int] = (32, 96, 256, 512),
        num_downsamples: int = 3,
        head_dim: int = 64,
        norm_groups: int = 32,
        frame_encoder: nn.Module | None = None,
        injector_cls: type[CAMInjector] = CAMInjector,
    ):
        # frame_encoder / injector_cls: the official StreamingSVD layout (stt2v_ray.models.svd.svd_cam)
        super().__init__()
        self.unet = unet
        self.cam = _EncoderParts(unet)
        widths = unet.config.block_out_channels
        self.frame_encoder = frame_encoder or FrameEncoder(widths[0], frame_encoder_channels, num_downsamples)
        # one injector per skip connection, in the order `_down` yields them, then the mid block
        skip_channels = [widths[0]]
        for i, block in enumerate(unet.down_blocks):
            skip_channels += [widths[i]] * len(block.resnets)
            if block.downsamplers is not None:
                skip_channels.append(widths[i])
        self.injectors = nn.ModuleList(injector_cls(c, head_dim, norm_groups) for c in skip_channels)
        self.mid_injector = injector_cls(widths[-1], head_dim, norm_groups)

    def cam_features(
        self, sample: Tensor, timesteps: Tensor, encoder_hidden_states: Tensor, added_time_ids: Tensor, cond: Tensor
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        """The CAM copy on (B, F_cond, C_in, h, w) latents + encoded pixel frames -> (skip features, mid features)."""
        batch, frames = sample.shape[:2]
        if cond.shape[:2] != (batch, frames):
            raise ValueError(f"StreamingUNetSTC: cond {tuple(cond.shape)} must be (B={batch}, F_cond={frames}, 3, H, W)")
        emb = _embedding(self.cam, timesteps, added_time_ids, sample.dtype).repeat_interleave(frames, dim=0)
        ehs = encoder_hidden_states.repeat_interleave(frames, dim=0)
        x = self.cam.conv_in(sample.flatten(0, 1))
        features = self.frame_encoder(cond.flatten(0, 1).to(x.dtype))
        if features.shape != x.shape:
            raise ValueError(
                f"StreamingUNetSTC: frame encoder features {tuple(features.shape)} do not match the latents' "
                f"{tuple(x.shape)}; num_downsamples must equal log2 of the VAE factor"
            )
        indicator = torch.zeros(batch, frames, dtype=x.dtype, device=x.device)
        x, res = _down(self.cam, x + features, emb, ehs, indicator)
        mid = self.cam.mid_block(hidden_states=x, temb=emb, encoder_hidden_states=ehs, image_only_indicator=indicator)
        return res, mid

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        encoder_hidden_states: Tensor,
        added_time_ids: Tensor,
        cond: Tensor | None = None,
    ) -> Tensor:
        """sample (B, F, C_in, h, w) -> (B, F, C_out, h, w); the CAM sees sample[:, :F_cond] and cond."""
        unet = self.unet
        up_factor = 2**unet.num_upsamplers
        forward_upsample_size = any(s % up_factor != 0 for s in sample.shape[-2:])
        upsample_size = None

        # 1. time
        batch, frames = sample.shape[:2]
        timesteps = _timesteps(timestep, batch, sample)
        emb = _embedding(unet, timesteps, added_time_ids, sample.dtype)
        emb = emb.repeat_interleave(frames, dim=0)  # (B*F, D)
        ehs = encoder_hidden_states.repeat_interleave(frames, dim=0)  # (B*F, 1, D_cross)

        # 2. CAM copy on the first F_cond frames
        cam = None
        if cond is not None:
            cond_frames = cond.shape[1]
            if cond_frames > frames:
                raise ValueError(f"StreamingUNetSTC: {cond_frames} conditioning frames exceed the chunk's {frames}")
            cam = self.cam_features(sample[:, :cond_frames], timesteps, encoder_hidden_states, added_time_ids, cond)

        # 3. encoder, with the CAM's residuals on every skip connection and the mid block
        x = unet.conv_in(sample.flatten(0, 1))  # (B*F, C0, h, w)
        indicator = torch.zeros(batch, frames, dtype=x.dtype, device=x.device)
        x, res = _down(unet, x, emb, ehs, indicator)
        x = unet.mid_block(hidden_states=x, temb=emb, encoder_hidden_states=ehs, image_only_indicator=indicator)
        if cam is not None:
            cam_res, cam_mid = cam
            res = tuple(r + inj(r, c, frames, cond_frames) for r, c, inj in zip(res, cam_res, self.injectors, strict=True))
            x = x + self.mid_injector(x, cam_mid, frames, cond_frames)

        # 4. decoder, as diffusers
        for i, block in enumerate(unet.up_blocks):
            skips, res = res[-len(block.resnets) :], res[: -len(block.resnets)]
            if i < len(unet.up_blocks) - 1 and forward_upsample_size:
                upsample_size = res[-1].shape[2:]
            if getattr(block, "has_cross_attention", False):
                x = block(
                    hidden_states=x,
                    temb=emb,
                    res_hidden_states_tuple=skips,
                    encoder_hidden_states=ehs,
                    upsample_size=upsample_size,
                    image_only_indicator=indicator,
                )
            else:
                x = block(
                    hidden_states=x,
                    temb=emb,
                    res_hidden_states_tuple=skips,
                    upsample_size=upsample_size,
                    image_only_indicator=indicator,
                )

        # 5. post-process: (B*F, C_out, h, w) -> (B, F, C_out, h, w)
        x = unet.conv_out(unet.conv_act(unet.conv_norm_out(x)))
        return x.reshape(batch, frames, *x.shape[1:])
