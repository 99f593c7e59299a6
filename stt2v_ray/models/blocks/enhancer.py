"""Video enhancer: SDEdit refinement of low-resolution base frames at a higher resolution.

The original StreamingModelscope enhances with MS-Vid2Vid-XL: the base frames are
upscaled, encoded, re-noised to T'=600 of 1000 and denoised by a v-prediction video UNet
with guidance 7.5. This module implements that recipe with diffusers' `UNet3DConditionModel`
and `AutoencoderKL` under the `ChunkEnhancer` contract (docs/architecture.md), sampling with
DDIM (`stt2v_ray.plan.samplers`) instead of the original's dpmpp_2m_sde, and without its
guide_rescale. The real presets will put I2VGen-XL (the StreamingSVD enhancer) behind the
same interface (issue 4).

The chunk tiling, the randomized blending and the order of steps belong to the enhancement
stage; this class only offers the per-chunk pieces it needs:

    state = enhancer.prepare(job)
    clean = enhancer.encode(base_frames, 0, seed)             # whole video, per frame
    x = enhancer.noise_latents(clean, noise)                  # x_T, one shared noise tensor
    for step in range(len(enhancer.timesteps)):
        x0, eps = enhancer.predict(state, x[chunk], step)     # one chunk per call
        x_prev = enhancer.step(x0, eps, step, step_noise)     # then merge chunks (blending)
    frames = enhancer.decode(x)                               # per frame

Determinism: every method processes exactly the frames it is given in a fixed batch make-up
(one chunk per UNet forward, its two CFG halves batched; one frame per VAE call), so the
results do not depend on how chunks are grouped across shards or executors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet3DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from stt2v_ray.config import EnhanceSettings
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.blocks.pixel_vae import vae_scale_factor
from stt2v_ray.models.blocks.text import build_tiny_text_encoder, build_tiny_tokenizer, encode_text
from stt2v_ray.models.blocks.text_time import unet_kwargs
from stt2v_ray.plan.samplers import add_noise, alphas_cumprod, ddim_step, ddim_timesteps, sdedit_timesteps, to_x0_eps
from stt2v_ray.plan.seeds import generator

# MS-Vid2Vid-XL predicts v (Salimans & Ho) on the "linear_sd" schedule: betas linear in
# sqrt space from 0.00085 to 0.012 over 1000 steps (diffusers' "scaled_linear").
PREDICTION_TYPE = "v_prediction"
BETA_SCHEDULE = "scaled_linear"


@dataclass
class EnhanceState:
    """Per-video conditioning: text embeddings of (negative, prompt), computed once."""

    prompt: str
    embeddings: torch.Tensor  # (2, seq, dim) on the enhancer's device: [negative, prompt]


class VideoEnhancer:
    """SDEdit at `scale` x the base size by a short-video UNet; implements `ChunkEnhancer`."""

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        vae: AutoencoderKL,
        unet: UNet3DConditionModel,
        settings: EnhanceSettings,
        base_height: int,
        base_width: int,
        device: str | torch.device = "cpu",
        prediction_type: str = PREDICTION_TYPE,
        beta_schedule: str = BETA_SCHEDULE,
    ) -> None:
        self.tokenizer, self.text_encoder, self.vae, self.unet = tokenizer, text_encoder, vae, unet
        self.settings = settings
        self.device = torch.device(device)
        self.base_height, self.base_width = base_height, base_width
        self.height, self.width = settings.output_size(base_height, base_width)

        # The VAE halves the size once per down block but the last; the UNet likewise (unless it
        # forwards the skip sizes to its upsamplers, as I2VGenXLUNet does: then the VAE's factor suffices).
        self.vae_factor = vae_scale_factor(vae)
        unet_factor = 2 ** (len(unet.config.block_out_channels) - 1) if self.unet_needs_multiple else 1
        multiple = self.vae_factor * unet_factor
        if self.height % multiple or self.width % multiple:
            size = f"enhance.height/width {self.height}x{self.width}" if settings.height else \
                f"base {base_height}x{base_width} x scale {settings.scale}"
            raise ValueError(
                f"enhancer output size {self.height}x{self.width} ({size}) must be divisible by {multiple} "
                f"(VAE factor {self.vae_factor} x UNet factor {unet_factor})"
            )
        self.latent_channels = int(vae.config.latent_channels)
        self.latent_height, self.latent_width = self.height // self.vae_factor, self.width // self.vae_factor
        if unet.config.in_channels != self.latent_channels or unet.config.out_channels != self.latent_channels:
            raise ValueError(
                f"UNet in/out channels ({unet.config.in_channels}/{unet.config.out_channels}) must equal the VAE's "
                f"latent channels ({self.latent_channels})"
            )
        self.scaling_factor = float(vae.config.scaling_factor)
        self.prediction_type = prediction_type

        self.alphas_cumprod = alphas_cumprod(beta_schedule=beta_schedule)
        self.timesteps: list[int] = [int(t) for t in sdedit_timesteps(ddim_timesteps(settings.steps), settings.strength)]

    # ------------------------------------------------------------------ conditioning

    unet_needs_multiple = True  # output size a multiple of VAE x UNet factors
    clip_skip = 0  # text state: the last hidden state
    resize_mode = "bilinear"  # base frames -> the enhancer's size
    sample_latents = False  # VAE latents: the distribution's mean

    @torch.no_grad()
    def prepare(self, job: GenerationJob) -> EnhanceState:
        prompt = self.settings.prompt if self.settings.prompt is not None else job.prompt
        negative = self.settings.negative_prompt if self.settings.negative_prompt is not None else job.negative_prompt
        embeddings = encode_text(self.tokenizer, self.text_encoder, [negative, prompt], clip_skip=self.clip_skip)
        return EnhanceState(prompt=prompt, embeddings=embeddings.to(self.device, self.unet.dtype))

    # ------------------------------------------------------------------ VAE (one frame per call)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, start: int = 0, seed: int | None = None,
               purpose: str = "enhance-latents") -> torch.Tensor:
        """(n, 3, h, w) base frames in [-1, 1], video frames start.. -> (n, c, h', w') clean latents (float32, CPU).

        Sampling enhancers draw frame f's latent with a generator keyed by (seed, purpose, f),
        so any grouping of frames gives the same latents; without a seed they take the mean."""
        if frames.ndim != 4 or frames.shape[1] != 3 or tuple(frames.shape[2:]) != (self.base_height, self.base_width):
            raise ValueError(
                f"encode expects base frames of shape (n, 3, {self.base_height}, {self.base_width}), got {tuple(frames.shape)}"
            )
        latents = []
        for i, frame in enumerate(frames):
            x = self.resize(frame[None].to(self.device, torch.float32))
            latents.append(self.vae_latents(x, seed, purpose, start + i).float().cpu())
        return torch.cat(latents)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, h, w) -> (n, 3, H, W) at the enhancer's size."""
        if tuple(x.shape[-2:]) == (self.height, self.width):
            return x
        if self.resize_mode == "bilinear":
            return F.interpolate(x, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return F.interpolate(x, size=(self.height, self.width), mode=self.resize_mode, antialias=True).clamp(-1, 1)

    @torch.no_grad()
    def vae_latents(self, x: torch.Tensor, seed: int | None, *key: str | int) -> torch.Tensor:
        """(1, 3, H, W) -> (1, c, h', w') scaled latents: a keyed sample, or the mean (no seed / not sampling)."""
        dist = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        if self.sample_latents and seed is not None:
            z = dist.sample(generator(seed, *key))
        else:
            z = dist.mean
        return z * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(n, c, h', w') latents -> (n, 3, H, W) frames in [-1, 1] (float32, CPU)."""
        self._check_latents("decode", latents)
        frames = []
        for z in latents:
            z = z[None].to(self.device, self.vae.dtype) / self.scaling_factor
            frames.append(self.vae.decode(z).sample.clamp(-1, 1).float().cpu())
        return torch.cat(frames)

    # ------------------------------------------------------------------ SDEdit sampling

    def noise_latents(self, clean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_T at the first SDEdit step: clean latents noised to timesteps[0]."""
        self._check_latents("noise_latents", clean)
        if noise.shape != clean.shape:
            raise ValueError(f"noise_latents: noise shape {tuple(noise.shape)} != latents shape {tuple(clean.shape)}")
        return add_noise(clean, noise, self.alpha_bar(0))

    @torch.no_grad()
    def predict(self, state: EnhanceState, x_t: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk x_t (C, c, h', w') at step index `step` -> (x0, eps), float32 on x_t's device."""
        self._check_latents("predict", x_t)
        t = self.timesteps[self._check_step(step)]
        # (C, c, h, w) -> (1, c, C, h, w), doubled for the CFG halves [negative, prompt].
        sample = x_t.to(self.device, self.unet.dtype).permute(1, 0, 2, 3)[None]
        sample = torch.cat([sample, sample])
        timestep = torch.tensor([t], device=self.device)
        out = self.unet(sample, timestep, encoder_hidden_states=state.embeddings,
                        **unet_kwargs(self.unet, state.embeddings)).sample.float()
        uncond, cond = out[0], out[1]
        guided = uncond + self.settings.guidance_scale * (cond - uncond)
        model_out = guided.permute(1, 0, 2, 3).to(x_t.device)  # (c, C, h, w) -> (C, c, h, w)
        return to_x0_eps(x_t.float(), model_out, self.alpha_bar(step), self.prediction_type)

    def step(self, x0: torch.Tensor, eps: torch.Tensor, step: int, noise: torch.Tensor | None) -> torch.Tensor:
        """DDIM update x_t -> x_{t-1} from (x0, eps); the last step lands on alpha_bar = 1 (clean)."""
        step = self._check_step(step)
        if x0.shape != eps.shape:
            raise ValueError(f"step: x0 shape {tuple(x0.shape)} != eps shape {tuple(eps.shape)}")
        if self.settings.eta > 0:
            if noise is None:
                raise ValueError(f"step: eta={self.settings.eta} > 0 needs a noise tensor, got None")
            if noise.shape != x0.shape:
                raise ValueError(f"step: noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}")
        return ddim_step(x0, eps, self.alpha_bar(step), self.alpha_bar_prev(step), self.settings.eta, noise)

    def alpha_bar(self, step: int) -> float:
        """alpha_bar at the timestep of step index `step`."""
        return float(self.alphas_cumprod[self.timesteps[step]])

    def alpha_bar_prev(self, step: int) -> float:
        """alpha_bar the DDIM step from step index `step` lands on: the next step's, 1 (clean) after the last."""
        return 1.0 if step == len(self.timesteps) - 1 else self.alpha_bar(step + 1)

    # ------------------------------------------------------------------ checks

    def _check_step(self, step: int) -> int:
        if not 0 <= step < len(self.timesteps):
            raise ValueError(f"step index {step} out of range: the enhancer runs {len(self.timesteps)} steps {self.timesteps}")
        return step

    def _check_latents(self, where: str, latents: torch.Tensor) -> None:
        expected = (self.latent_channels, self.latent_height, self.latent_width)
        if latents.ndim != 4 or tuple(latents.shape[1:]) != expected:
            raise ValueError(f"{where} expects latents of shape (n, {', '.join(map(str, expected))}), got {tuple(latents.shape)}")


def build_tiny_enhancer(
    settings: EnhanceSettings, base_height: int, base_width: int, device: str | torch.device = "cpu", seed: int = 0
) -> VideoEnhancer:
    """Real diffusers/transformers classes at toy size with seeded random weights (for tests and the demo).

    VAE factor 4, UNet factor 2: output sizes must be multiples of 8.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = build_tiny_tokenizer()
        text_encoder = build_tiny_text_encoder(tokenizer, hidden=32, seed=seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(8, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
        )
        unet = UNet3DConditionModel(
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            norm_num_groups=32,
            cross_attention_dim=text_encoder.config.hidden_size,
            attention_head_dim=8,
        )
    text_encoder, vae, unet = (m.to(device).eval() for m in (text_encoder, vae, unet))
    return VideoEnhancer(tokenizer, text_encoder, vae, unet, settings, base_height, base_width, device)
