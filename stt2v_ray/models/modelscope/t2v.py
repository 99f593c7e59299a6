"""Text-to-video base family (Modelscope-style StreamingT2V): chunk 0 from the base UNet, later
chunks from the streaming UNet (CAM on the previous chunk's last frames, APM on the anchor frame).

Sampler: DDIM for every chunk (the original streams with DDIM; its chunk 0 used
DPMSolverMultistep) with scaled_linear betas (0.00085 -> 0.012), "leading" spacing with
steps_offset 1 and epsilon prediction, as Modelscope's scheduler config.
Plain 2-way CFG as in the original code (the unconditional half: negative prompt + zero-image
tokens); both halves run in ONE forward pass, and the VAE decodes one frame at a time, so a
chunk's frames do not depend on which executor or shard computes it.

Memory options (all off by default; `stt2v_ray.models.modelscope.streamingt2v` maps `memory.*` onto them):
- the models' dtype is whatever the caller cast them to: inputs are cast to it at each model's
  boundary and outputs back to float32, so the sampler math (noise, CFG, DDIM) stays float32;
- `offload`: the text encoder, the VAE, the APM image encoder, the CAM and a separate first-chunk
  UNet live on the CPU and move to the device only for the stage that uses them;
- `sequential_cfg`: the unconditional and conditional halves run as two forwards of batch 1;
- `decode_chunk`: frames per VAE decode call (the 2D VAE decodes frames independently).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNet3DConditionModel
from torch import Tensor
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.config import BaseModelSettings
from stt2v_ray.models.blocks.apm import APM
from stt2v_ray.models.blocks.cam import CAM
from stt2v_ray.models.blocks.job import GenerationJob
from stt2v_ray.models.blocks.memory import on_device, to_device_except
from stt2v_ray.models.blocks.pixel_vae import vae_scale_factor
from stt2v_ray.models.blocks.text import build_tiny_text_encoder, build_tiny_tokenizer, encode_text
from stt2v_ray.models.blocks.text_time import unet_kwargs
from stt2v_ray.models.modelscope.streaming_unet3d import StreamingUNet3D
from stt2v_ray.plan import samplers, seeds

NUM_TRAIN_TIMESTEPS = 1000
STEPS_OFFSET = 1


@dataclass
class T2VState:
    """Per-video conditioning, computed once by `prepare`."""

    seed: int
    text: Tensor  # (2, n_text, D): [negative prompt, prompt]


class T2VGenerator:
    """`ChunkGenerator` of the text-to-video family (see docs/architecture.md)."""

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        vae: AutoencoderKL,
        model: StreamingUNet3D,
        settings: BaseModelSettings,
        device: str | torch.device = "cpu",
        first_chunk_unet: UNet3DConditionModel | None = None,
        *,
        offload: bool = False,
        sequential_cfg: bool = False,
        decode_chunk: int = 1,
        prediction_type: str = "epsilon",
        beta_schedule: str = "scaled_linear",
    ):
        self.tokenizer, self.text_encoder, self.vae, self.model = tokenizer, text_encoder, vae, model
        # The official streaming checkpoint carries its own fine-tuned copy of the base UNet
        # (`base_model.*`); chunk 0 comes from the stock ModelScope UNet. None: model.unet.
        self.first_chunk_unet = first_chunk_unet if first_chunk_unet is not None else model.unet
        self.settings = settings
        self.device = torch.device(device)
        self.chunk_frames, self.cond_frames = settings.chunk_frames, settings.cond_frames
        self.height, self.width = settings.height, settings.width
        self.vae_scale_factor = vae_scale_factor(vae)
        if self.height % self.vae_scale_factor or self.width % self.vae_scale_factor:
            raise ValueError(
                f"T2VGenerator: height x width {self.height}x{self.width} must be divisible by the VAE factor "
                f"{self.vae_scale_factor}"
            )
        # Modelscope's schedule by default; the toy preset is trained with v-prediction on the cosine one
        self.prediction_type = prediction_type
        self.alphas_cumprod = samplers.alphas_cumprod(NUM_TRAIN_TIMESTEPS, beta_schedule, 0.00085, 0.012)
        self.timesteps = samplers.ddim_timesteps(settings.steps, NUM_TRAIN_TIMESTEPS, "leading", STEPS_OFFSET)
        if decode_chunk < 1:
            raise ValueError(f"T2VGenerator: decode_chunk must be >= 1, got {decode_chunk}")
        self.offload, self.sequential_cfg, self.decode_chunk = offload, sequential_cfg, decode_chunk
        self.use_apm = True  # False: streaming chunks without the anchor's image tokens (the CAM-only ablation)
        if offload:  # this generator places its models: offloaded ones on the CPU, the rest on the device
            keep = self.offloaded_modules()
            for module in keep:
                module.to("cpu")
            to_device_except(self.model, self.device, keep)
            if self.first_chunk_unet is not self.model.unet:
                self.first_chunk_unet.to("cpu")

    def offloaded_modules(self) -> list[torch.nn.Module]:
        """What `offload` keeps on the CPU between uses (the first-chunk UNet only if it is separate)."""
        modules = [self.text_encoder, self.vae, self.model.apm.image_encoder, self.model.cam]
        return modules + ([self.first_chunk_unet] if self.first_chunk_unet is not self.model.unet else [])

    @torch.no_grad()
    def prepare(self, job: GenerationJob) -> T2VState:
        with on_device(self.device, self.offload, self.text_encoder):
            text = encode_text(self.tokenizer, self.text_encoder, [job.negative_prompt, job.prompt])
        return T2VState(seed=job.seed, text=text.float().to(self.device))

    def _check(self, index: int, cond: Tensor | None, anchor: Tensor | None) -> None:
        if index < 0:
            raise ValueError(f"generate_chunk: index must be >= 0, got {index}")
        if index == 0:
            if cond is not None or anchor is not None:
                raise ValueError("generate_chunk: chunk 0 takes no cond frames and no anchor (pass None)")
            return
        want_cond = (self.cond_frames, 3, self.height, self.width)
        if cond is None or tuple(cond.shape) != want_cond:
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"generate_chunk: chunk {index} needs cond frames of shape {want_cond}, got {got}")
        if anchor is None or tuple(anchor.shape) != want_cond[1:]:
            got = None if anchor is None else tuple(anchor.shape)
            raise ValueError(f"generate_chunk: chunk {index} needs an anchor frame of shape {want_cond[1:]}, got {got}")

    @torch.no_grad()
    def generate_chunk(self, state: T2VState, index: int, cond: Tensor | None, anchor: Tensor | None) -> Tensor:
        """-> (F, 3, H, W) float32 CPU in [-1, 1]; for index > 0 the first F_cond frames regenerate cond."""
        # 1. Check inputs
        self._check(index, cond, anchor)
        s, dev = self.settings, self.device
        latent_shape = (self.chunk_frames, self.model.unet.config.in_channels,
                        self.height // self.vae_scale_factor, self.width // self.vae_scale_factor)

        # 2. Conditioning of the streaming chunks: CAM frames for both CFG halves, APM tokens
        #    of [zero image, anchor] (unconditional half first, as the text)
        #    (inputs in the models' dtype; the sampler below stays float32)
        unet = self.first_chunk_unet if index == 0 else self.model
        dtype = next(unet.parameters()).dtype
        text = state.text.to(dtype)
        cond_frames = image_tokens = None
        if index > 0:
            cond_frames = cond.to(dev, dtype)[None].expand(2, -1, -1, -1, -1)  # (2, Fc, 3, H, W)
        if index > 0 and self.use_apm:
            anchor = anchor.to(dev, torch.float32)
            with on_device(dev, self.offload, self.model.apm.image_encoder):
                # float32 pixels: the resize has no CPU half kernels; CLIP casts them at its patch embedding
                image_tokens = self.model.apm(torch.stack([torch.zeros_like(anchor), anchor])).to(dtype)  # (2, n_img, D)

        # 3. Initial noise, keyed by chunk
        x = seeds.randn(latent_shape, state.seed, "t2v-init", index).to(dev)  # (F, c, h, w)

        # 4. Denoising loop: one forward per step, CFG halves batched (or one after the other)
        loop_modules = [self.model.cam] if index > 0 else [m for m in self.offloaded_modules() if m is self.first_chunk_unet]
        with on_device(dev, self.offload, *loop_modules):
            for step, t in enumerate(self.timesteps):
                sample = x.permute(1, 0, 2, 3)[None].expand(2, -1, -1, -1, -1).to(dtype)  # (2, c, F, h, w)
                timestep = torch.tensor(t, device=dev)
                out = self._predict(index, sample, timestep, text, cond_frames, image_tokens).float()
                out = out.permute(0, 2, 1, 3, 4)  # (2, F, c, h, w)
                scale = s.guidance_scale if t >= s.guidance_min_timestep else 1.0  # guidance interval
                eps = out[0] + scale * (out[1] - out[0])
                a_t = samplers.alpha_bar_at(self.alphas_cumprod, t)
                a_prev = samplers.alpha_bar_at(self.alphas_cumprod, samplers.prev_timestep(t, s.steps, NUM_TRAIN_TIMESTEPS))
                x0, eps = samplers.to_x0_eps(x, eps, a_t, self.prediction_type)
                noise = None
                if samplers.ddim_sigma(a_t, a_prev, s.eta) > 0.0:
                    noise = seeds.randn(latent_shape, state.seed, "t2v-step", index, step).to(dev)
                x = samplers.ddim_step(x0, eps, a_t, a_prev, s.eta, noise)

        # 5. Decode `decode_chunk` frames per call (default one at a time)
        scale, k = self.vae.config.scaling_factor, self.decode_chunk
        with on_device(dev, self.offload, self.vae):
            vae_dtype = self.vae.dtype
            frames = [self.vae.decode((x[i : i + k] / scale).to(vae_dtype)).sample.float() for i in range(0, x.shape[0], k)]
        return torch.cat(frames).clamp(-1.0, 1.0).float().cpu()

    def _predict(self, index: int, sample: Tensor, timestep: Tensor, text: Tensor, cond_frames: Tensor | None,
                 image_tokens: Tensor | None) -> Tensor:
        """Noise prediction for both CFG halves (2, c, F, h, w): one batch-2 forward, or two batch-1 ones."""
        def forward(half: slice) -> Tensor:
            if index == 0:
                return self.first_chunk_unet(sample[half], timestep, encoder_hidden_states=text[half],
                                             **unet_kwargs(self.first_chunk_unet, text[half])).sample
            tokens = image_tokens[half] if image_tokens is not None else None  # None: APM off (ablation)
            return self.model(sample[half], timestep, text[half], cond_frames[half], tokens)

        if not self.sequential_cfg:
            return forward(slice(None))
        return torch.cat([forward(slice(0, 1)), forward(slice(1, 2))])


# ---------------------------------------------------------------- tiny preset


def build_tiny_streaming_unet3d(seed: int = 0, num_text_tokens: int = 32, vae_scale_factor: int = 4) -> StreamingUNet3D:
    """Toy UNet3DConditionModel + CAM + APM with the modules' own init: CAM and APM are exact no-ops."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet3DConditionModel(
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            cross_attention_dim=32,
            attention_head_dim=8,
        )
        cam = CAM(unet, vae_scale_factor=vae_scale_factor, frame_channels=(8, 16, 32), head_dim=16)
        vision = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, projection_dim=32,
            )
        )
        apm = APM(vision, cross_attention_dim=32, num_tokens=4)
        apm.install(unet, num_text_tokens)  # after the CAM copy: its attentions keep the default processor
    return StreamingUNet3D(unet, cam, apm).eval()


def wake_zero_init(model: StreamingUNet3D, seed: int = 0, std: float = 0.1, alpha: float = 1.0) -> None:
    """Give the zero-initialised CAM/APM outputs small seeded random values (alpha for the APM gates).

    Untrained toy weights only: a zero-init CAM/APM is a no-op, so without this the streaming
    path of the tiny preset would compute nothing the base model does not.
    """
    gen = seeds.generator(seed, "t2v-wake-zero-init")
    with torch.no_grad():
        layers = [model.cam.frame_encoder.conv_out, model.cam.mid_injector.proj_out]
        layers += [injector.proj_out for injector in model.cam.skip_injectors]
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * std)
        for processor in APM.processors(model.unet).values():
            processor.alpha.fill_(alpha)


def build_tiny_t2v(settings: BaseModelSettings, device: str | torch.device = "cpu", seed: int = 0) -> T2VGenerator:
    """Seeded toy text-to-video family (real diffusers/transformers classes), CAM/APM woken up."""
    with torch.random.fork_rng(devices=[]):
        tokenizer = build_tiny_tokenizer(max_length=32)
        text_encoder = build_tiny_text_encoder(tokenizer, hidden=32, seed=seed)
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(16, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
        ).eval()
    model = build_tiny_streaming_unet3d(seed, num_text_tokens=tokenizer.model_max_length, vae_scale_factor=4)
    wake_zero_init(model, seed)
    return T2VGenerator(
        tokenizer, text_encoder.to(device), vae.to(device), model.to(device), settings, device
    )
