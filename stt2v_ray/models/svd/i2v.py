"""Image-to-video base family (StreamingSVD-style): SVD conditioning + CAM, Euler-EDM sampling.

Per chunk:
1. Image conditioning: chunk 0 uses the job's image (resized and centre-cropped to the
   generator's size); later chunks use the `anchor` frame the pipeline passes (StreamingSVD
   fixes the SVD image conditioning to a frame of chunk 0: its long-term memory, no APM).
   The image gives a CLIP image embedding (1 token) and the VAE latents of the image plus
   `noise_aug_strength` Gaussian noise, concatenated on channels to every frame, as SVD does
   (unscaled latents, as diffusers' and Stability's SVD code). The unconditional CFG half gets
   zeros for both, as diffusers' SVD pipeline.
2. Short-term memory (chunks > 0): the CAM sees the noisy latents of the chunk's first F_cond
   frames and the previous chunk's last F_cond decoded frames (pixel space). Both CFG halves
   get the CAM: guidance is over the image conditioning only.
3. Euler EDM with Align-Your-Steps sigmas, `s_churn=0`, v-prediction preconditioning (the
   UNet's timestep input is c_noise), per-frame CFG ramp linspace(min_guidance_scale,
   guidance_scale, F) applied to the denoised estimates, ONE UNet forward per step with the CFG
   halves batched. x_T = noise * sqrt(1 + sigma_0^2), as Stability's EDM sampler
   (`prepare_sampling_loop`) and diffusers' EulerDiscreteScheduler with SVD's config do.
4. Decode the whole chunk at once with the temporal VAE decoder (its temporal layers mix
   frames, so per-frame decoding would change the output; the chunk's make-up is fixed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from torch import Tensor, nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.config import BaseModelSettings
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.svd.streaming_unet_stc import StreamingUNetSTC
from stt2v_ray.plan import samplers, seeds

# OpenAI CLIP image normalisation (what SVD's CLIPImageProcessor applies)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def fit_image(image: Tensor, height: int, width: int) -> Tensor:
    """(3, h, w) -> (3, height, width): scale to cover the target, then centre-crop."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"i2v: expected an image (3, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if (h, w) == (height, width):
        return image.float()
    scale = max(height / h, width / w)
    new_h, new_w = max(height, math.ceil(h * scale)), max(width, math.ceil(w * scale))
    resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return resized[:, top : top + height, left : left + width].clamp(-1, 1)


@dataclass
class I2VState:
    job: GenerationJob
    image: Tensor  # (3, H, W) [-1, 1]: the job's image at the generator's size


class I2VGenerator:
    """ChunkGenerator of the image-to-video family (see the module docstring for the recipe)."""

    def __init__(
        self,
        unet: StreamingUNetSTC,
        vae: AutoencoderKLTemporalDecoder,
        image_encoder: CLIPVisionModelWithProjection,
        settings: BaseModelSettings,
        device: str | torch.device = "cpu",
        fps: int = 7,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
    ):
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.device = torch.device(device)
        self.chunk_frames, self.cond_frames = settings.chunk_frames, settings.cond_frames
        self.height, self.width = settings.height, settings.width
        self.steps = settings.steps
        self.guidance_scale, self.min_guidance_scale = settings.guidance_scale, settings.min_guidance_scale
        self.noise_aug_strength = noise_aug_strength
        self.sigmas = [float(s) for s in samplers.ays_sigmas(self.steps)]  # (steps + 1,), ends with 0
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if self.height % self.vae_factor or self.width % self.vae_factor:
            raise ValueError(
                f"i2v: height ({self.height}) and width ({self.width}) must be divisible by the VAE factor {self.vae_factor}"
            )
        self.latent_channels = unet.unet.config.out_channels
        self.latent_height, self.latent_width = self.height // self.vae_factor, self.width // self.vae_factor
        # SVD is conditioned on fps - 1 (see diffusers' pipeline_stable_video_diffusion)
        self.added_time_ids = torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]], dtype=torch.float32)

    def prepare(self, job: GenerationJob) -> I2VState:
        if job.image is None:
            raise ValueError(f"i2v: job {job.id!r} has no image; image-to-video needs a conditioning image")
        return I2VState(job=job, image=fit_image(job.image, self.height, self.width))

    # ------------------------------------------------------------ conditioning

    def _check_frames(self, name: str, frames: Tensor, shape: tuple[int, ...]) -> None:
        if tuple(frames.shape) != shape:
            raise ValueError(f"i2v: {name} must have shape {shape}, got {tuple(frames.shape)}")

    def _image_embedding(self, image: Tensor) -> Tensor:
        # (3, H, W) [-1, 1] -> (1, 1, D): SVD squashes any aspect ratio to the encoder's square size
        size = self.image_encoder.config.image_size
        x = F.interpolate(image[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        x = (x + 1) / 2
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return self.image_encoder(pixel_values=(x - mean) / std).image_embeds[:, None]

    def _image_latents(self, image: Tensor, seed: int, index: int) -> Tensor:
        # (3, H, W) + keyed noise augmentation -> (1, c, h, w) latents (mode of the posterior, unscaled)
        noise = seeds.randn(image.shape, seed, "i2v-aug", index).to(self.device)
        return self.vae.encode((image + self.noise_aug_strength * noise)[None]).latent_dist.mode()

    # ------------------------------------------------------------ one chunk

    @torch.no_grad()
    def generate_chunk(self, state: I2VState, index: int, cond: Tensor | None, anchor: Tensor | None) -> Tensor:
        """-> (F, 3, H, W) float32 CPU in [-1, 1]. Chunk 0 ignores `anchor` (it uses the job's image)."""
        num_frames, size = self.chunk_frames, (self.height, self.width)
        if index < 0:
            raise ValueError(f"i2v: chunk index must be >= 0, got {index}")
        if index == 0:
            if cond is not None:
                raise ValueError("i2v: chunk 0 takes no conditioning frames (cond must be None)")
            image = state.image
        else:
            if cond is None or anchor is None:
                raise ValueError(f"i2v: chunk {index} needs the previous chunk's last frames (cond) and an anchor frame")
            self._check_frames("cond", cond, (self.cond_frames, 3, *size))
            self._check_frames("anchor", anchor, (3, *size))
            image = anchor
        image = image.to(self.device, torch.float32)
        seed = state.job.seed

        # 1. conditioning, unconditional half first: (2, 1, D), (2, F, c, h, w), (2, 3)
        embeds = self._image_embedding(image)
        embeds = torch.cat([torch.zeros_like(embeds), embeds])
        latents_img = self._image_latents(image, seed, index)
        latents_img = torch.cat([torch.zeros_like(latents_img), latents_img])[:, None].expand(-1, num_frames, -1, -1, -1)
        added_time_ids = self.added_time_ids.to(self.device).repeat(2, 1)
        cam_cond = None
        if cond is not None:
            cam_cond = cond.to(self.device, torch.float32)[None].expand(2, -1, -1, -1, -1)  # (2, F_cond, 3, H, W)

        # 2. schedule and per-frame guidance (F, 1, 1, 1)
        sigmas = self.sigmas
        scale = torch.linspace(self.min_guidance_scale, self.guidance_scale, num_frames, device=self.device)
        scale = scale.view(num_frames, 1, 1, 1)

        # 3. Euler EDM: x = x_0 + sigma * noise, (F, c, h, w)
        shape = (num_frames, self.latent_channels, self.latent_height, self.latent_width)
        x = seeds.randn(shape, seed, "i2v-init", index).to(self.device) * math.sqrt(1.0 + sigmas[0] ** 2)
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=False):
            _, _, c_in, c_noise = samplers.edm_precondition(sigma)
            model_in = torch.cat([(x * c_in)[None].expand(2, -1, -1, -1, -1), latents_img], dim=2)
            timestep = torch.tensor(c_noise, dtype=torch.float32, device=self.device)
            out = self.unet(model_in, timestep, embeds, added_time_ids, cam_cond)  # (2, F, c, h, w)
            uncond, cond_out = samplers.edm_denoised(x, out[0], sigma), samplers.edm_denoised(x, out[1], sigma)
            denoised = uncond + scale * (cond_out - uncond)
            x = samplers.euler_step(x, denoised, sigma, sigma_next)

        # 4. decode the chunk in one temporal pass
        frames = self.vae.decode(x / self.vae.config.scaling_factor, num_frames=num_frames).sample
        return frames.clamp(-1, 1).float().cpu()


# ---------------------------------------------------------------- tiny preset


def build_tiny_i2v(settings: BaseModelSettings, device: str | torch.device = "cpu", seed: int = 0) -> I2VGenerator:
    """Real diffusers/transformers classes at toy size (VAE factor 4), seeded, in eval mode.

    The CAM's zero-initialised output layers (frame encoder conv_out, injector proj_out) are
    re-initialised with N(0, 0.02) so the streaming path changes the output in tests and demos.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            in_channels=8,  # noisy latents + image latents
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            cross_attention_dim=32,
            num_attention_heads=(2, 4),
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=3 * 8,  # fps, motion bucket, noise augmentation
            num_frames=settings.chunk_frames,
        )
        streaming = StreamingUNetSTC(unet, frame_encoder_channels=(16, 32), num_downsamples=2, head_dim=16)
        cam_outputs: list[nn.Module] = [streaming.frame_encoder.conv_out, streaming.mid_injector.proj_out]
        cam_outputs += [inj.proj_out for inj in streaming.injectors]
        for layer in cam_outputs:
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.normal_(layer.bias, std=0.02)
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=(32, 32, 32),  # two downsamplings: factor 4
            down_block_types=("DownEncoderBlock2D",) * 3,
            layers_per_block=1,
            latent_channels=4,
        )
        image_encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=37,
                projection_dim=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
            )
        )
    modules = [streaming.eval().to(device), vae.eval().to(device), image_encoder.eval().to(device)]
    return I2VGenerator(*modules, settings=settings, device=device)
