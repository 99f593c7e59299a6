"""The `streamingt2v` preset (the original StreamingModelscope): configs and builders.

Components and where their weights come from (`weights.paths.<component>` overrides each):
- `base`: `damo-vilab/text-to-video-ms-1.7b` (diffusers format): tokenizer, CLIP text encoder,
  VAE, and the stock ModelScope UNet that makes chunk 0 (the original's stage 1).
- `streaming`: `PAIR/StreamingT2V` `streaming_t2v.ckpt`: the streaming UNet (the original's
  `base_model`, a fine-tuned copy of the ModelScope UNet carrying the CAM mergers and APM
  mixers), the CAM copy with its frame encoder, the APM MLP and the OpenCLIP ViT-H-14 image
  encoder. The original loads this file strictly into its Lightning module, so the image
  encoder is in it; `convert_streamingt2v` maps its OpenCLIP layout onto transformers'
  `CLIPVisionModelWithProjection` key by key (the same network as the transformers-format copy
  `laion/CLIP-ViT-H-14-laion2B-s32B-b79K`). A `.ckpt` is converted in memory (read only with
  `torch.load(weights_only=True)`); a `.safetensors` from `stt2v-ray convert` loads directly.
- `enhancer`: I2VGen-XL (`ali-vilab/i2vgen-xl`) in place of MS-Vid2Vid-XL, which has no
  diffusers format (`stt2v_ray.models.svd.i2vgen_enhancer`).

`size="toy"` builds the SAME classes and wiring at toy widths with seeded random weights (the
`streamingt2v-toy` preset; CPU tests). `weights.mode=random` builds full size with random
weights: profiling only, never real output.

Memory-optimised mode (`memory.*`, see `stt2v_ray.models.blocks.memory`), and its expected effect on
a GPU at full size (256x256, 16-frame chunks; sizes from `parameter_counts`: streaming UNet
1.41 B + CAM 0.69 B + ViT-H image tower 0.63 B + first-chunk UNet 1.41 B + text encoder 0.34 B
+ VAE 0.08 B + APM MLP 0.02 B: ~4.6 B parameters, ~18 GB of float32 weights):
- `memory.dtype` float16/bfloat16: every model cast (UNets, CAM, APM, text encoder, VAE);
  inputs cast at each model's boundary and outputs back to float32, so noise, CFG and the DDIM
  update stay float32. Halves weights (~18 -> ~9 GB) and activations; faster on tensor cores.
  float16 is how diffusers ships ModelScope (`variant="fp16"`); CPUs: float32 or bfloat16.
- `memory.cpu_offload`: the text encoder (per video, in `prepare`), the APM image encoder (per
  chunk, for the anchor's tokens), the CAM (per chunk, for its denoising loop), the first-chunk
  UNet (chunk 0 only) and the VAE (per chunk, for decoding) live on the CPU and move to the
  device only for that stage. Keeps ~3.2 B of the ~4.6 B parameters (~12.6 GB fp32 / ~6.3 GB
  half) off the device outside their stage (the streaming UNet, APM MLP and mixers stay); costs
  one host-to-device copy of each per use (the CAM: ~2.8 GB fp32 / ~1.4 GB half per chunk, small
  next to 50 sampler steps).
- `memory.sequential_cfg`: the unconditional and conditional halves run as two batch-1
  forwards: about half the UNet/CAM activation memory, a little slower (less batching). Equal
  to the batched forward up to float rounding (tests: max |diff| of frames below 1e-4 at toy size).
- `memory.vae_decode_chunk`: frames per VAE decode call. ModelScope's VAE is a 2D image VAE that
  decodes frames independently, so unlike SVD's temporal decoder the value changes only memory
  (decoder activations scale with it) and speed, the pixels only up to rounding of batched
  kernels; a chunk always decodes with the same grouping, so frames stay reproducible for a
  given value. (The `tiny` preset decodes one frame at a time.)
- `memory.ff_chunk_size`: feed-forward chunking of the streaming UNet, the CAM and the
  first-chunk UNet (as the original's memopt does for the UNet and CAM).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet3DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

from stt2v_ray.config import RunSettings
from stt2v_ray.models.blocks.apm import APM
from stt2v_ray.models.blocks.cam import CAM
from stt2v_ray.models.blocks.memory import chunk_feed_forwards, torch_dtype
from stt2v_ray.models.blocks.text import build_tiny_tokenizer
from stt2v_ray.models.modelscope.streaming_unet3d import StreamingUNet3D
from stt2v_ray.models.modelscope.t2v import T2VGenerator, wake_zero_init

log = logging.getLogger(__name__)

# damo-vilab/text-to-video-ms-1.7b unet/config.json (diffusers UNet3DConditionModel)
MODELSCOPE_UNET: dict[str, Any] = dict(
    sample_size=32, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
    attention_head_dim=64, norm_num_groups=32, norm_eps=1e-5, act_fn="silu", downsample_padding=1,
    mid_block_scale_factor=1,
)
MODELSCOPE_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=256,
)
# OpenCLIP ViT-H-14 text tower as ModelScope ships it (penultimate layer: 23 of 24 blocks)
MODELSCOPE_TEXT: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
)
# OpenCLIP ViT-H-14 image tower (laion2b_s32b_b79k) in transformers' terms: width 1280, 32 layers,
# 16 heads, patch 14, 224 px, MLP 4 x 1280, exact GELU, embed 1024 (= the laion transformers config)
VIT_H_14: dict[str, Any] = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, patch_size=14,
    image_size=224, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5,
)


@dataclass(frozen=True)
class Spec:
    """Sizes of one build; FULL is the official model, TOY the same wiring at toy widths."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text: dict[str, Any]
    vision: dict[str, Any]
    frame_channels: tuple[int, ...]  # CAM frame encoder widths (official 32/96/256/512)
    head_dim: int  # CAM injector head size (official 64)
    image_tokens: int  # APM tokens (official 16)
    text_tokens: int  # tokenizer length (official 77)
    apm_hidden: int | None = None  # APM MLP hidden width (official 1280 = 1024 + 1024 // 4)


FULL = Spec(MODELSCOPE_UNET, MODELSCOPE_VAE, MODELSCOPE_TEXT, VIT_H_14, (32, 96, 256, 512), 64, 16, 77, 1280)
TOY = Spec(
    unet=dict(MODELSCOPE_UNET, sample_size=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
              up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=(32, 64), layers_per_block=2,
              cross_attention_dim=32, attention_head_dim=8),
    vae=dict(MODELSCOPE_VAE, block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=64),
    text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32),
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=8,
                image_size=32, projection_dim=32, hidden_act="gelu"),
    frame_channels=(8, 16, 16, 32), head_dim=16, image_tokens=4, text_tokens=32,
)
SIZES = {"full": FULL, "toy": TOY}


def spec_of(size: str) -> Spec:
    if size not in SIZES:
        raise ValueError(f"size must be 'full' or 'toy', got {size!r}")
    return SIZES[size]


def vae_factor(spec: Spec) -> int:
    return 2 ** (len(spec.vae["block_out_channels"]) - 1)


def build_streaming_model(spec: Spec) -> StreamingUNet3D:
    """UNet3D + CAM (ControlNet copy, frame encoder, injectors) + APM at `spec`'s sizes, module init
    (CAM/APM zero-initialised). Works under `torch.device("meta")` for parameter counts."""
    unet = UNet3DConditionModel(**spec.unet)
    cam = CAM(unet, vae_scale_factor=vae_factor(spec), frame_channels=spec.frame_channels, head_dim=spec.head_dim)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**spec.vision))
    apm = APM(
        vision, cross_attention_dim=spec.unet["cross_attention_dim"], num_tokens=spec.image_tokens, hidden_dim=spec.apm_hidden
    )
    apm.install(unet, spec.text_tokens)  # after the CAM copy: the copy keeps the default processors
    return StreamingUNet3D(unet, cam, apm).eval()


def _random_base(spec: Spec) -> tuple[CLIPTokenizer, CLIPTextModel, AutoencoderKL, UNet3DConditionModel]:
    """Tokenizer stand-in (byte-level, real CLIP BPE files come with the base repo), text encoder, VAE, UNet."""
    tokenizer = build_tiny_tokenizer(max_length=spec.text_tokens)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
               max_position_embeddings=spec.text_tokens)
    text = dict(spec.text, vocab_size=max(spec.text.get("vocab_size", 0), len(tokenizer)), **ids)
    return tokenizer, CLIPTextModel(
        CLIPTextConfig(**text)
    ).eval(), AutoencoderKL(**spec.vae).eval(), UNet3DConditionModel(**spec.unet).eval()


def load_streaming_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A `.safetensors` in this project's layout, or the official `.ckpt` converted in memory (unplaced keys: error)."""
    from stt2v_ray.models.blocks.checkpoint import read_checkpoint
    from stt2v_ray.models.modelscope.convert import convert_streamingt2v

    state = read_checkpoint(path)
    if any(k.startswith("base_model.") for k in state):  # the official layout
        state, unplaced = convert_streamingt2v(state)
        if unplaced:
            raise ValueError(f"{path}: {len(unplaced)} key(s) of the checkpoint could not be placed: {unplaced[:10]}")
    return state


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict loading whose error names every missing and unexpected key (first 8 of each)."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: strict loading failed: {len(missing)} missing key(s) {missing[:8]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:8]}"
        )
    model.load_state_dict(state, strict=True)


def build_t2v(
    run: RunSettings, device="cpu", size: str = "full", paths: dict[str, Path] | None = None, seed: int = 0
) -> T2VGenerator:
    """The text-to-video ChunkGenerator: random (toy, or weights.mode=random) or the official weights."""
    spec = spec_of(size)
    if size == "toy" or run.weights.mode == "random":
        if size == "full":
            log.warning("weights.mode=random: the streamingt2v models have RANDOM weights (profiling only); the frames are "
                        "noise, not real output")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tokenizer, text_encoder, vae, first_unet = _random_base(spec)
            model = build_streaming_model(spec)
        wake_zero_init(model, seed)  # a zero-init CAM/APM would compute nothing the base UNet does not
    else:
        if not paths or "base" not in paths or "streaming" not in paths:
            raise ValueError("streamingt2v: pretrained weights need the resolved 'base' and 'streaming' components")
        base = Path(paths["base"])
        tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", local_files_only=True).eval()
        vae = AutoencoderKL.from_pretrained(base / "vae", local_files_only=True).eval()
        first_unet = UNet3DConditionModel.from_pretrained(base / "unet", local_files_only=True).eval()
        if tokenizer.model_max_length != spec.text_tokens:
            raise ValueError(f"{base}: tokenizer length {tokenizer.model_max_length}, the APM mixers expect {spec.text_tokens}")
        model = build_streaming_model(spec)
        load_strict(model, load_streaming_state(paths["streaming"]), source=str(paths["streaming"]))
    return with_memory_settings(run, tokenizer, text_encoder, vae, model, first_unet, device)


def with_memory_settings(
    run: RunSettings, tokenizer, text_encoder, vae, model: StreamingUNet3D, first_unet, device
) -> T2VGenerator:
    """The generator with run.memory applied to CPU-resident float32 models (see the module docstring)."""
    mem, device = run.memory, torch.device(device)
    if mem.ff_chunk_size:
        chunk_feed_forwards(model, mem.ff_chunk_size)
        chunk_feed_forwards(first_unet, mem.ff_chunk_size)
    dtype = torch_dtype(mem)
    if dtype != torch.float32:  # cast on the CPU: with offload the device never holds what stays off it
        for module in (text_encoder, vae, model, first_unet):
            module.to(dtype)
    if not mem.cpu_offload:  # with offload the generator places them
        for module in (text_encoder, vae, model, first_unet):
            module.to(device)
    return T2VGenerator(tokenizer, text_encoder, vae, model, run.t2v, device, first_chunk_unet=first_unet,
                        offload=mem.cpu_offload, sequential_cfg=mem.sequential_cfg, decode_chunk=mem.vae_decode_chunk)


def resolved_paths(run: RunSettings, components: list[str]) -> dict[str, Path] | None:
    if run.weights.mode == "random":
        return None
    from stt2v_ray.models.blocks.weights import resolve_weights
    from stt2v_ray.presets import get_preset

    return {k: v.path for k, v in resolve_weights(get_preset(run.preset), run.weights.paths, components).items()}


def parameter_counts() -> dict[str, dict[str, int]]:
    """Full-size parameter counts per component, built on the meta device (no memory, no download)."""
    def n(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        model = build_streaming_model(FULL)
        _, text_encoder, vae, first_unet = _random_base(FULL)
    apm_mixers = sum(n(p) for p in APM.processors(model.unet).values())
    return {
        "base": {"unet (ModelScope)": n(first_unet), "text_encoder": n(text_encoder), "vae": n(vae)},
        "streaming": {"unet (fine-tuned copy)": n(model.unet) - apm_mixers, "apm mixers": apm_mixers, "cam": n(model.cam),
                      "apm mlp": n(model.apm.mlp), "image_encoder (ViT-H-14)": n(model.apm.image_encoder)},
    }


# ---------------------------------------------------------------- preset entry points


def t2v(run: RunSettings, device="cpu", size: str = "full"):
    return build_t2v(run, device, size, resolved_paths(run, ["base", "streaming"]) if size == "full" else None)


def enhancer(run: RunSettings, base_height: int, base_width: int, device="cpu", size: str = "full"):
    from stt2v_ray.models.svd.i2vgen_enhancer import build_i2vgen_enhancer

    paths = resolved_paths(run, ["enhancer"]) if size == "full" else None
    return build_i2vgen_enhancer(run, base_height, base_width, device, size, paths)


def toy_t2v(run, device="cpu"):
    return t2v(run, device, size="toy")


def toy_enhancer(run, base_height, base_width, device="cpu"):
    return enhancer(run, base_height, base_width, device, size="toy")
