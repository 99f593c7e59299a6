"""I2VGen-XL (`ali-vilab/i2vgen-xl`) as the SDEdit enhancer of the real presets (ChunkEnhancer contract).

The SDEdit recipe and the per-frame VAE calls are `VideoEnhancer`'s; this class swaps the UNet
for diffusers' `I2VGenXLUNet` and conditions it as the original StreamingSVD's modified
`I2VGenXLPipeline` does (`code/i2v_enhance/`), each choice a setting under `enhance.i2vgen`:
- image conditioning: the VAE latents of the conditioning image, followed by the frame-position
  mask (frame i > 0 carries i / (F - 1)), given to BOTH CFG halves; its CLIP image embedding to
  the conditional half, zeros to the unconditional one;
- CLIP image input: the centre square of the image, bilinear (antialiased) to the encoder's size;
- text: `clip_skip` (1: the penultimate hidden state through the final layer norm);
- fps micro-condition `fps` (38); prompts: `enhance.prompt` / `enhance.negative_prompt`;
- VAE latents sampled (`latents`), each draw with a generator keyed by (seed, purpose, frame);
- base frames resized (bicubic, as PIL's default) to `enhance.height` x `enhance.width`;
- sampler: the component's own `DDIMScheduler` (`scheduler/scheduler_config.json`, loaded as
  diffusers' `from_pretrained` does): its timesteps (spacing, `steps_offset`), its alphas
  (zero-SNR rescale), its prediction type and its final alpha; the update is
  `stt2v_ray.plan.samplers.ddim_step` with those numbers.

Key frames. Each enhancer chunk is conditioned on its own key frame: the chunk's first frame,
enhanced first. `key_frames=batch` (the original) enhances the K key frames together as one
K-frame video conditioned on the job's image (`chunk_contexts`, called by the pipeline once
every chunk's first base frame is there); `each` enhances each alone (`chunk_context`), which
lets enhancement stream behind the base stage. Both are keyed by the chunks' start frames, so
shards and the in-process wavefront compute the same contexts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLUNet
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.config import RunSettings
from stt2v_ray.models.blocks.enhancer import EnhanceState, VideoEnhancer
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.blocks.memory import chunk_feed_forwards, torch_dtype
from stt2v_ray.models.blocks.text import build_tiny_tokenizer
from stt2v_ray.models.svd.i2v import CLIP_MEAN, CLIP_STD, fit_image
from stt2v_ray.plan.samplers import sdedit_timesteps, to_x0_eps
from stt2v_ray.plan.seeds import frame_noise

# Random-weight builds only (profiling, toy tests): no repository to read, so the fields of
# ali-vilab/i2vgen-xl's scheduler/scheduler_config.json as the issue and the original's
# timesteps (29 steps from t=925) state them; pretrained weights always load the repo's file.
RANDOM_WEIGHTS_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
    set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading", rescale_betas_zero_snr=True, prediction_type="epsilon",
)


def load_scheduler(root: str | Path) -> DDIMScheduler:
    """The component's DDIM scheduler from `<root>/scheduler/scheduler_config.json`, as diffusers' pipelines load it."""
    return DDIMScheduler.from_pretrained(root, subfolder="scheduler")


def clip_pixels(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) in [-1, 1] -> (1, 3, size, size) CLIP input: the centre square, bilinear (antialiased), normalised.

    The original centre-crops a square (`_center_crop_wide` to width x width) and resizes it with
    PIL's bilinear filter to the feature extractor's 224; it goes through 8-bit PIL images, we stay in float."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[None, :, top : top + side, left : left + side].float()
    x = F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = ((x + 1) / 2).clamp(0, 1)
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


@dataclass
class ImageCondition:
    """An image the UNet is conditioned on: its VAE latents and its CLIP image embedding."""

    latents: torch.Tensor  # (c, h', w') scaled VAE latents
    embeds: torch.Tensor  # (1, D) CLIP image embedding
    frame: torch.Tensor  # (3, H, W) [-1, 1] the image itself at the enhancer's size


@dataclass
class I2VGenState(EnhanceState):
    condition: ImageCondition | None = None  # the job's image; None for text-to-video (zeros)


class I2VGenXLEnhancer(VideoEnhancer):
    resize_mode = "bicubic"  # the original resizes the base frames with PIL's default filter
    unet_needs_multiple = False  # I2VGenXLUNet forwards skip sizes: 720x1280 (90x160 latents) runs, as in the original

    def __init__(self, tokenizer, text_encoder, vae, unet: I2VGenXLUNet, image_encoder, run: RunSettings,
                 base_height: int, base_width: int, device="cpu", scheduler: DDIMScheduler | None = None):
        super().__init__(tokenizer, text_encoder, vae, unet, run.enhance, base_height, base_width, device)
        self.image_encoder = image_encoder
        self.sequential_cfg = run.memory.sequential_cfg
        opts = run.enhance.i2vgen
        self.fps, self.clip_skip = opts.fps, opts.clip_skip
        self.sample_latents = opts.latents == "sample"
        self.batch_contexts = opts.key_frames == "batch"  # the pipeline then calls chunk_contexts
        scheduler = scheduler if scheduler is not None else DDIMScheduler.from_config(RANDOM_WEIGHTS_SCHEDULER)
        if not isinstance(scheduler, DDIMScheduler):
            raise ValueError(f"enhancer: the I2VGen-XL sampler must be a DDIMScheduler, got {type(scheduler).__name__}")
        scheduler.set_timesteps(run.enhance.steps)
        self.prediction_type = scheduler.config.prediction_type
        self.alphas_cumprod = scheduler.alphas_cumprod.clone()
        self.final_alpha_cumprod = float(scheduler.final_alpha_cumprod)
        # diffusers' DDIM steps from t to t - T // steps (its `step`), whatever the spacing's offset
        self.step_ratio = scheduler.config.num_train_timesteps // run.enhance.steps
        self.timesteps = sdedit_timesteps([int(t) for t in scheduler.timesteps], run.enhance.strength)

    def alpha_bar_prev(self, step: int) -> float:
        prev = self.timesteps[step] - self.step_ratio
        return float(self.alphas_cumprod[prev]) if prev >= 0 else self.final_alpha_cumprod

    # ------------------------------------------------------------------ conditioning

    @torch.no_grad()
    def condition(self, image: torch.Tensor, seed: int, *key: str | int) -> ImageCondition:
        """(3, H, W) image at the enhancer's size -> its latents (keyed sample) and CLIP embedding."""
        x = clip_pixels(image, self.image_encoder.config.image_size)
        embeds = self.image_encoder(pixel_values=x.to(self.device, self.image_encoder.dtype)).image_embeds
        latents = self.vae_latents(image[None].to(self.device, torch.float32), seed, "enhance-image-latents", *key)
        return ImageCondition(latents=latents[0].float(), embeds=embeds.float(), frame=image.float().cpu())

    @torch.no_grad()
    def prepare(self, job: GenerationJob) -> I2VGenState:
        base = super().prepare(job)
        cond = None
        if job.image is not None:
            cond = self.condition(fit_image(job.image, self.height, self.width), job.seed, "video")
        return I2VGenState(prompt=base.prompt, embeddings=base.embeddings, condition=cond)

    @torch.no_grad()
    def chunk_contexts(self, state: I2VGenState, starts: list[int], firsts: torch.Tensor, seed: int) -> list[ImageCondition]:
        """The key frames of the chunks starting at `starts` (their first base frames `firsts`, (K, 3, h, w)),
        enhanced together as one K-frame video conditioned on the job's image -> one condition per chunk."""
        if firsts.shape[0] != len(starts):
            raise ValueError(f"chunk_contexts: {firsts.shape[0]} first frames for {len(starts)} chunk starts")
        pairs = zip(starts, firsts, strict=True)
        clean = torch.cat([self.encode(f[None], s, seed, "enhance-keyframe-latents") for s, f in pairs])
        shape = tuple(clean.shape[1:])
        x = self.noise_latents(clean, frame_noise(seed, "enhance-keyframe", starts, shape))
        for i in range(len(self.timesteps)):
            x0, eps = self.predict(state, x, i)
            noise = frame_noise(seed, f"enhance-keyframe-step{i}", starts, shape) if self.settings.eta > 0 else None
            x = self.step(x0, eps, i, noise)
        return [self.condition(frame, seed, s) for s, frame in zip(starts, self.decode(x), strict=True)]

    @torch.no_grad()
    def chunk_context(self, state: I2VGenState, start: int, low: torch.Tensor, seed: int) -> ImageCondition:
        """key_frames=each: the key frame of the chunk starting at video frame `start`, low[0] enhanced alone."""
        return self.chunk_contexts(state, [start], low[:1], seed)[0]

    def _unet_conditioning(self, cond: ImageCondition | None, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> image latents (2, c, F, h, w) for [unconditional, conditional] (the same image in both, as the
        original) and image embeddings (2, 1, D) (zeros, then the image's)."""
        dtype = self.unet.dtype
        if cond is None:
            dim = self.image_encoder.config.projection_dim
            shape = (2, self.latent_channels, frames, self.latent_height, self.latent_width)
            return torch.zeros(shape, device=self.device, dtype=dtype), torch.zeros(2, 1, dim, device=self.device, dtype=dtype)
        z = cond.latents.to(self.device)
        masks = [torch.full_like(z, (i + 1) / max(frames - 1, 1)) for i in range(frames - 1)]
        latents = torch.stack([z] + masks, dim=1)[None]  # (1, c, F, h, w)
        embeds = cond.embeds.to(self.device)[None]  # (1, 1, D)
        return torch.cat([latents, latents]).to(dtype), torch.cat([torch.zeros_like(embeds), embeds]).to(dtype)

    @torch.no_grad()
    def predict(self, state: I2VGenState, x_t: torch.Tensor, step: int, context: ImageCondition | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk x_t (C, c, h', w') -> (x0, eps); CFG halves batched or, with sequential_cfg, one at a time.
        `context`: the chunk's key frame from `chunk_context(s)` (None: the job's image)."""
        self._check_latents("predict", x_t)
        t = self.timesteps[self._check_step(step)]
        frames = x_t.shape[0]
        sample = x_t.to(self.device, self.unet.dtype).permute(1, 0, 2, 3)[None].expand(2, -1, -1, -1, -1)
        image_latents, image_embeds = self._unet_conditioning(context if context is not None else state.condition, frames)
        args = dict(encoder_hidden_states=state.embeddings, image_latents=image_latents, image_embeddings=image_embeds)
        timestep = torch.tensor([t], device=self.device)
        fps = torch.tensor([self.fps], device=self.device)
        if self.sequential_cfg:
            out = torch.cat([
                self.unet(sample[i : i + 1], timestep, fps=fps, **{k: v[i : i + 1] for k, v in args.items()}).sample
                for i in range(2)
            ]).float()
        else:
            out = self.unet(sample, timestep, fps=fps.expand(2), **args).sample.float()
        guided = out[0] + self.settings.guidance_scale * (out[1] - out[0])
        model_out = guided.permute(1, 0, 2, 3).to(x_t.device)
        return to_x0_eps(x_t.float(), model_out, self.alpha_bar(step), self.prediction_type)


# ---------------------------------------------------------------- builders

I2VGEN_XL_UNET = dict(  # ali-vilab/i2vgen-xl unet/config.json
    in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3, block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2, norm_num_groups=32, cross_attention_dim=1024, attention_head_dim=64, num_attention_heads=None,
)
TOY_UNET = dict(in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=(8, 16), layers_per_block=1,
                norm_num_groups=4, cross_attention_dim=32, attention_head_dim=4, num_attention_heads=None)


def build_models(size: str = "full", seed: int = 0):
    """tokenizer, text encoder (OpenCLIP-H text tower), VAE, I2VGenXLUNet, CLIP ViT-H image encoder; random, seeded."""
    full = size == "full"
    tokenizer: CLIPTokenizer = build_tiny_tokenizer(77 if full else 16)  # random weights: vocabulary irrelevant
    ids = dict(vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if full:
            text = CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                                  hidden_act="gelu", projection_dim=1024, **ids)
            vision = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32,
                                      num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu")
            vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4)
        else:
            text = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, **ids)
            vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2,
                                      num_attention_heads=4, image_size=32, patch_size=8)
            vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                                block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8)
        unet = I2VGenXLUNet(**(I2VGEN_XL_UNET if full else TOY_UNET))
        text_encoder, image_encoder = CLIPTextModel(text), CLIPVisionModelWithProjection(vision)
    return tokenizer, text_encoder.eval(), vae.eval(), unet.eval(), image_encoder.eval()


def build_i2vgen_enhancer(run: RunSettings, base_height: int, base_width: int, device="cpu", size: str = "full",
                          paths: dict | None = None) -> I2VGenXLEnhancer:
    dtype, scheduler = torch_dtype(run.memory), None  # None: RANDOM_WEIGHTS_SCHEDULER
    if run.weights.mode == "pretrained":
        if not paths or "enhancer" not in paths:
            raise ValueError("enhancer: pretrained weights need the resolved 'enhancer' component (ali-vilab/i2vgen-xl)")
        root = Path(paths["enhancer"])
        tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", torch_dtype=dtype)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(root / "image_encoder", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(root / "vae", torch_dtype=dtype)
        unet = I2VGenXLUNet.from_pretrained(root / "unet", torch_dtype=dtype)
        scheduler = load_scheduler(root)
    else:
        tokenizer, text_encoder, vae, unet, image_encoder = build_models(size)
        if dtype != torch.float32:
            for m in (text_encoder, vae, unet, image_encoder):
                m.to(dtype)
    if run.memory.ff_chunk_size:
        chunk_feed_forwards(unet, run.memory.ff_chunk_size)
    for m in (text_encoder, vae, unet, image_encoder):
        m.to(device).eval()
    return I2VGenXLEnhancer(tokenizer, text_encoder, vae, unet, image_encoder, run, base_height, base_width, device, scheduler)
