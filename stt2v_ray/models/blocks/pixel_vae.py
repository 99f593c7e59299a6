"""A parameter-free "autoencoder" for the toy preset: pixel (un)shuffle.

The toy models are trained here on a 2-core CPU, where a learned VAE would cost training
minutes and blur the small frames. Packing each f x f pixel patch into channels (the
prototype's 32x32 -> 16x16 trick, see ../shared/reference/toy-training.md) gives the
UNet a small spatial grid at no cost, and decoding is exact. The class offers the part of
diffusers' `AutoencoderKL` interface the generators use (`config.latent_channels`,
`config.scaling_factor`, `encode(x).latent_dist.mean`, `decode(z).sample`, `dtype`), so
`T2VGenerator` and `VideoEnhancer` run it on the same code path as a real VAE.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor


@dataclass
class PixelLatents:
    """Deterministic stand-in for a latent distribution: mean = mode = sample."""

    mean: Tensor

    def mode(self) -> Tensor:
        return self.mean

    def sample(self, generator=None) -> Tensor:
        return self.mean


@dataclass
class PixelEncoderOutput:
    latent_dist: PixelLatents


class PixelShuffleVAE(ModelMixin, ConfigMixin):
    """(N, 3, H, W) in [-1, 1] <-> (N, 3 f^2, H/f, W/f), exactly invertible."""

    @register_to_config
    def __init__(self, factor: int = 4, in_channels: int = 3, scaling_factor: float = 1.0):
        super().__init__()
        if factor < 1 or factor & (factor - 1):
            raise ValueError(f"PixelShuffleVAE: factor must be a power of two, got {factor}")
        self.register_to_config(latent_channels=in_channels * factor * factor)
        # a buffer gives the model a device and dtype, as ModelMixin expects
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    @property
    def dtype(self) -> torch.dtype:  # no parameters: the buffer says what the model was cast to
        return self.anchor.dtype

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def scale_factor(self) -> int:
        return int(self.config.factor)

    def encode(self, x: Tensor, return_dict: bool = True):
        f = self.scale_factor
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"PixelShuffleVAE.encode: expected (N, {self.config.in_channels}, H, W) with H, W "
                             f"divisible by {f}, got {tuple(x.shape)}")
        latents = PixelLatents(F.pixel_unshuffle(x, f))
        return PixelEncoderOutput(latents) if return_dict else (latents,)

    def decode(self, z: Tensor, return_dict: bool = True):
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"PixelShuffleVAE.decode: expected (N, {self.config.latent_channels}, h, w), got {tuple(z.shape)}")
        sample = F.pixel_shuffle(z, self.scale_factor)
        return DecoderOutput(sample=sample) if return_dict else (sample,)


def vae_scale_factor(vae) -> int:
    """Spatial factor between frames and latents: a pixel VAE says it; a diffusers VAE halves
    the size once per down block but the last."""
    if isinstance(vae, PixelShuffleVAE):
        return vae.scale_factor
    return 2 ** (len(vae.config.block_out_channels) - 1)
