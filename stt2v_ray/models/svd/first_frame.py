"""Text-to-video for image-to-video presets: a text-to-image model makes the first frame.

StreamingSVD is image-to-video only; its authors never released text-to-video (users ask
for it). `FirstFrameT2V` wraps an i2v ChunkGenerator: `prepare` renders the prompt with SDXL
base (`stabilityai/stable-diffusion-xl-base-1.0`, diffusers format) at the generator's size,
seeded by (seed, "t2i"), then hands the image to the i2v path. Everything after the first
frame is the i2v family's recipe.
"""
from __future__ import annotations

import dataclasses

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from stt2v_ray.config import RunSettings
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.blocks.memory import torch_dtype
from stt2v_ray.models.blocks.text import build_tiny_tokenizer
from stt2v_ray.plan import seeds

T2I_STEPS = 30  # SDXL base's usual Euler step count
T2I_GUIDANCE = 5.0


class FirstFrameT2V:
    """ChunkGenerator for text-to-video: SDXL first frame + an i2v generator."""

    def __init__(self, i2v, pipeline: StableDiffusionXLPipeline, steps: int = T2I_STEPS, guidance_scale: float = T2I_GUIDANCE):
        self.i2v, self.pipeline, self.steps, self.guidance_scale = i2v, pipeline, steps, guidance_scale
        self.chunk_frames, self.cond_frames = i2v.chunk_frames, i2v.cond_frames
        self.height, self.width = i2v.height, i2v.width

    @torch.no_grad()
    def first_frame(self, job: GenerationJob) -> torch.Tensor:
        """(3, H, W) in [-1, 1]: the prompt rendered at the generator's size."""
        device = self.pipeline.unet.device
        gen = torch.Generator(device="cpu").manual_seed(seeds.derive_seed(job.seed, "t2i"))
        latents_shape = (1, self.pipeline.unet.config.in_channels, self.height // self.pipeline.vae_scale_factor,
                         self.width // self.pipeline.vae_scale_factor)
        latents = torch.randn(latents_shape, generator=gen).to(device, self.pipeline.unet.dtype)  # CPU draw: same on any device
        image = self.pipeline(
            prompt=job.prompt, negative_prompt=job.negative_prompt or None, height=self.height, width=self.width,
            num_inference_steps=self.steps, guidance_scale=self.guidance_scale, latents=latents, output_type="pt",
        ).images[0]
        return (image.float().cpu() * 2 - 1).clamp(-1, 1)

    def prepare(self, job: GenerationJob):
        if job.image is not None:
            raise ValueError(f"t2v: job {job.id!r} has an image; image-to-video requests go to the i2v generator")
        return self.i2v.prepare(dataclasses.replace(job, image=self.first_frame(job)))

    def generate_chunk(self, state, index: int, cond, anchor):
        return self.i2v.generate_chunk(state, index, cond, anchor)


def build_text_to_image(
    run: RunSettings, device="cpu", size: str = "full", paths: dict | None = None
) -> StableDiffusionXLPipeline:
    """SDXL base: from its diffusers folder (pretrained), or the same classes at full/toy size with random weights."""
    dtype = torch_dtype(run.memory)
    if run.weights.mode == "pretrained":
        if not paths or "text_to_image" not in paths:
            raise ValueError("text-to-image: pretrained weights need the resolved 'text_to_image' component")
        pipe = StableDiffusionXLPipeline.from_pretrained(str(paths["text_to_image"]), torch_dtype=dtype)
    else:
        pipe = _random_sdxl(size)
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    if run.memory.cpu_offload and torch.device(device).type == "cuda":
        pipe.enable_model_cpu_offload(device=device)  # needs accelerate; only on GPU
    else:
        pipe.to(device)
    return pipe


def _random_sdxl(size: str) -> StableDiffusionXLPipeline:
    """SDXL base's architecture (full: its published configs) or a toy of the same classes; seeded."""
    full = size == "full"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if full:
            unet = UNet2DConditionModel(
                sample_size=128, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(320, 640, 1280),
                attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816,
            )
            vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                                sample_size=1024, scaling_factor=0.13025)
            te1 = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                 hidden_act="quick_gelu", projection_dim=768)
            te2 = CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                                 hidden_act="gelu", projection_dim=1280)
            tokenizer = build_tiny_tokenizer(77)  # random weights: the vocabulary does not matter
        else:
            unet = UNet2DConditionModel(
                sample_size=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(32, 64), layers_per_block=1,
                attention_head_dim=(2, 4), transformer_layers_per_block=(1, 1), cross_attention_dim=64, norm_num_groups=16,
                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=6 * 8 + 32,
            )
            vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                                block_out_channels=(16, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8)
            te1 = CLIPTextConfig(
                hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, projection_dim=32
            )
            te2 = te1
            tokenizer = build_tiny_tokenizer(16)
        ids = dict(vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
                   bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        text_encoder = CLIPTextModel(CLIPTextConfig(**{**te1.to_dict(), **ids}))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**{**te2.to_dict(), **ids}))
    with torch.device("cpu"):  # the scheduler's tables must be real even when the models are built on meta
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           timestep_spacing="leading", steps_offset=1)
    return StableDiffusionXLPipeline(vae=vae.eval(), text_encoder=text_encoder.eval(), text_encoder_2=text_encoder_2.eval(),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet.eval(), scheduler=scheduler)
