"""I2VGen-XL (`ali-vilab/i2vgen-xl`) as the SDEdit enhancer of the real presets (ChunkEnhancer contract).

The SDEdit recipe and the per-frame VAE calls are `VideoEnhancer`'s; this class swaps the
UNet for diffusers' `I2VGenXLUNet` and adds its image conditioning: the key frame's VAE latents
followed by the frame-position mask (frame i > 0 carries i / (F - 1), as diffusers'
`I2VGenXLPipeline.prepare_image_latents`) and its CLIP image embedding; the unconditional CFG
half gets zeros for both. Sampler: the repo's scheduler config when pretrained
(`scheduler/scheduler_config.json`: beta schedule and prediction type), DDIM with eta = settings.

Key frames. StreamingSVD conditions each enhancer chunk on its own key frame: the chunk's
first frame, enhanced alone first. `chunk_context` does that (a one-frame SDEdit run with the
video-level conditioning: the job's image for i2v, none for t2v; noise keyed by the chunk's
start frame), and the pipeline hands the result to `predict` for every step of that chunk,
so shards and the in-process wavefront condition each chunk identically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, I2VGenXLUNet
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.config import RunSettings
from stt2v_ray.models.blocks.enhancer import EnhanceState, VideoEnhancer
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.blocks.memory import chunk_feed_forwards, torch_dtype
from stt2v_ray.models.blocks.text import build_tiny_tokenizer
from stt2v_ray.models.svd.i2v import CLIP_MEAN, CLIP_STD, fit_image
from stt2v_ray.plan.samplers import alphas_cumprod
from stt2v_ray.plan.seeds import frame_noise

ENHANCE_FPS = 16  # I2VGen-XL's fps conditioning (diffusers' pipeline default target_fps)


@dataclass
class I2VGenState(EnhanceState):
    key_frame: torch.Tensor | None = None  # (3, H, W) [-1, 1] at the enhancer's size, or None


class I2VGenXLEnhancer(VideoEnhancer):
    def __init__(self, tokenizer, text_encoder, vae, unet: I2VGenXLUNet, image_encoder, run: RunSettings,
                 base_height: int, base_width: int, device="cpu", scheduler: dict | None = None):
        super().__init__(tokenizer, text_encoder, vae, unet, run.enhance, base_height, base_width, device)
        self.image_encoder = image_encoder
        self.sequential_cfg = run.memory.sequential_cfg
        scheduler = scheduler or {}
        self.prediction_type = scheduler.get("prediction_type", "epsilon")
        self.alphas_cumprod = alphas_cumprod(
            beta_schedule=scheduler.get("beta_schedule", "scaled_linear"),
            beta_start=scheduler.get("beta_start", 0.00085), beta_end=scheduler.get("beta_end", 0.012),
        )

    @torch.no_grad()
    def prepare(self, job: GenerationJob) -> I2VGenState:
        base = super().prepare(job)
        key = fit_image(job.image, self.height, self.width) if job.image is not None else None
        return I2VGenState(prompt=base.prompt, embeddings=base.embeddings, key_frame=key)

    @torch.no_grad()
    def chunk_context(self, state: I2VGenState, start: int, low: torch.Tensor, seed: int) -> torch.Tensor:
        """The key frame of the chunk starting at video frame `start`: low[0] enhanced alone -> (3, H, W)."""
        clean = self.encode(low[:1])  # (1, c, h', w')
        shape = tuple(clean.shape[1:])
        x = self.noise_latents(clean, frame_noise(seed, "enhance-keyframe", [start], shape))
        for i in range(len(self.timesteps)):
            x0, eps = self.predict(state, x, i)
            noise = frame_noise(seed, f"enhance-keyframe-step{i}", [start], shape) if self.settings.eta > 0 else None
            x = self.step(x0, eps, i, noise)
        return self.decode(x)[0]

    @torch.no_grad()
    def _image_conditioning(self, key_frame: torch.Tensor | None, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> image latents (2, c, F, h, w) and image embeddings (2, 1, D): [unconditional zeros, key frame]."""
        dtype = self.unet.dtype
        dim = self.image_encoder.config.projection_dim
        shape = (1, self.latent_channels, frames, self.latent_height, self.latent_width)
        if key_frame is None:
            return torch.zeros(
                (2, *shape[1:]), device=self.device, dtype=dtype
            ), torch.zeros(2, 1, dim, device=self.device, dtype=dtype)
        key = key_frame[None].to(self.device, self.vae.dtype)
        z = self.vae.encode(key).latent_dist.mean * self.scaling_factor  # (1, c, h, w)
        mask = [torch.ones_like(z) * ((i + 1) / max(frames - 1, 1)) for i in range(frames - 1)]
        latents = torch.stack([z] + mask, dim=2)  # (1, c, F, h, w)
        size = self.image_encoder.config.image_size
        x = (F.interpolate(key_frame[None].float(), size=(size, size), mode="bicubic", antialias=True) + 1) / 2
        x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        embeds = self.image_encoder(pixel_values=x.to(self.device, self.image_encoder.dtype)).image_embeds[:, None]
        return (
            torch.cat([torch.zeros_like(latents), latents]).to(dtype), torch.cat([torch.zeros_like(embeds), embeds]).to(dtype)
        )

    @torch.no_grad()
    def predict(self, state: I2VGenState, x_t: torch.Tensor, step: int, context: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk x_t (C, c, h', w') -> (x0, eps); CFG halves batched or, with sequential_cfg, one at a time.
        `context`: the chunk's key frame from `chunk_context` (None: the video-level one)."""
        self._check_latents("predict", x_t)
        t = self.timesteps[self._check_step(step)]
        frames = x_t.shape[0]
        sample = x_t.to(self.device, self.unet.dtype).permute(1, 0, 2, 3)[None].expand(2, -1, -1, -1, -1)
        key = context if context is not None else state.key_frame
        image_latents, image_embeds = self._image_conditioning(key, frames)
        args = dict(encoder_hidden_states=state.embeddings, image_latents=image_latents, image_embeddings=image_embeds)
        timestep = torch.tensor([t], device=self.device)
        fps = torch.tensor([ENHANCE_FPS], device=self.device)
        if self.sequential_cfg:
            out = torch.cat([
                self.unet(sample[i : i + 1], timestep, fps=fps, **{k: v[i : i + 1] for k, v in args.items()}).sample
                for i in range(2)
            ]).float()
        else:
            out = self.unet(sample, timestep, fps=fps.expand(2), **args).sample.float()
        guided = out[0] + self.settings.guidance_scale * (out[1] - out[0])
        model_out = guided.permute(1, 0, 2, 3).to(x_t.device)
        from stt2v_ray.plan.samplers import to_x0_eps

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
    dtype, scheduler = torch_dtype(run.memory), None
    if run.weights.mode == "pretrained":
        if not paths or "enhancer" not in paths:
            raise ValueError("enhancer: pretrained weights need the resolved 'enhancer' component (ali-vilab/i2vgen-xl)")
        root = Path(paths["enhancer"])
        tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", torch_dtype=dtype)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(root / "image_encoder", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(root / "vae", torch_dtype=dtype)
        unet = I2VGenXLUNet.from_pretrained(root / "unet", torch_dtype=dtype)
        scheduler = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
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
