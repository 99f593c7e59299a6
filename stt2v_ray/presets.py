"""Model presets by name: their default settings and where their builders live.

Plain data, no torch import: the CLI validates settings and lists presets without
loading any model. Builders are "module:function" strings imported only when a stage
actually needs that model (a base actor never builds the enhancer, and so on).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WeightSource:
    """One component's weights: where users get them and which setting points at them."""

    component: str  # e.g. "base", "streaming", "enhancer", "interpolator", "image_encoder"
    hub_id: str | None  # e.g. "PAIR/StreamingSVD"
    filename: str | None = None  # a file inside the hub repo; None: the whole (diffusers) repo
    description: str = ""

    @property
    def setting(self) -> str:
        return f"weights.paths.{self.component}"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    defaults: dict[str, Any]
    # family -> "module:function"; the function takes (run_settings, device) and returns a ChunkGenerator.
    generators: dict[str, str]
    # "module:function" taking (run_settings, base_height, base_width, device) -> ChunkEnhancer
    enhancer: str | None = None
    # "module:function" taking (run_settings, device) -> Interpolator; None: optical flow on CPU
    interpolator: str | None = None
    weights: str = "random"
    sources: tuple[WeightSource, ...] = ()
    notes: list[str] = field(default_factory=list)
    # Frames of a video whose request and the manifest's defaults leave num_frames out (the original's --num_frames).
    default_num_frames: int = 16

    def builder(self, what: str) -> Callable[..., Any]:
        path = {"enhancer": self.enhancer, "interpolator": self.interpolator}.get(what) or self.generators.get(what)
        if path is None:
            raise ValueError(f"preset {self.name!r} has no {what} model (it has: {', '.join(self.generators)})")
        module, func = path.split(":")
        return getattr(importlib.import_module(module), func)


TINY = Preset(
    name="tiny",
    description=(
        "The real architectures (diffusers UNet3D + CAM + APM for text-to-video, UNetSpatioTemporal + CAM for "
        "image-to-video, a UNet3D SDEdit enhancer) at toy size with seeded random weights: builds in under a second, "
        "no download. Pictures are noise-like; it exists to run the whole pipeline on a CPU (tests, CI, demo)."
    ),
    defaults={
        "t2v": {"chunk_frames": 16, "cond_frames": 8, "steps": 8, "guidance_scale": 7.5, "eta": 1.0,
                "height": 32, "width": 32, "anchor_frame": 0},
        "i2v": {"chunk_frames": 16, "cond_frames": 6, "steps": 8, "guidance_scale": 3.0, "min_guidance_scale": 1.5,
                "height": 32, "width": 48, "anchor_frame": 6},
        "enhance": {"chunk_frames": 24, "overlap_frames": 8, "steps": 10, "strength": 0.6, "guidance_scale": 7.5,
                    "eta": 0.0, "scale": 2},
        "interpolate": {"factor": 2},
        "encode": {"default_fps": 24, "preset": "veryfast"},
    },
    generators={"t2v": "stt2v_ray.models.toy.tiny:t2v", "i2v": "stt2v_ray.models.toy.tiny:i2v"},
    enhancer="stt2v_ray.models.toy.tiny:enhancer",
)

# The original StreamingSVD's enhancer prompts (code/i2v_enhance/i2v_enhance_interface.py).
SVD_ENHANCE_PROMPT = "High Quality, HQ, detailed."
SVD_ENHANCE_NEGATIVE_PROMPT = (
    "Distorted, blurry, discontinuous, Ugly, blurry, low resolution, motionless, static, disfigured, "
    "disconnected limbs, Ugly faces, incomplete arms"
)
_SVD_BASE = {"chunk_frames": 25, "cond_frames": 7, "steps": 30, "guidance_scale": 3.0, "min_guidance_scale": 1.5,
             "height": 576, "width": 1024, "anchor_frame": 6}
_SVD_SOURCES = (
    WeightSource("streaming", "PAIR/StreamingSVD", "model.safetensors",
                 "SVD-XT UNet + CAM + conditioner (OpenCLIP ViT-H) + VAE, the original's layout (converted on load, or by "
                 "`stt2v-ray convert`)"),
    WeightSource("enhancer", "ali-vilab/i2vgen-xl", None, "I2VGen-XL (diffusers format): SDEdit enhancer"),
    WeightSource("text_to_image", "stabilityai/stable-diffusion-xl-base-1.0", None, "SDXL base (diffusers format): first frame "
            "of text-to-video"),
    WeightSource("interpolator", None, "ours.pkl",
                 "EMA-VFI 'ours' (F=32, depth [2,2,2,4,4]): no hub copy; the authors link it from github.com/MCG-NJU/EMA-VFI. "
                 "Set weights.paths.interpolator to ours.pkl or its converted .safetensors"),
)
STREAMINGSVD = Preset(
    name="streamingsvd",
    description=(
        "StreamingSVD: SVD-XT + CAM (PAIR/StreamingSVD), 1024x576, chunks of 25 conditioned on 7, Euler EDM 30 AYS steps, "
        "CFG 1.5->3.0, anchor frame 6; I2VGen-XL enhancer (C=38, O=12, 30 steps, strength 0.97, guidance 9.0); "
        "text-to-video through an SDXL first frame."
    ),
    defaults={
        "t2v": dict(_SVD_BASE), "i2v": dict(_SVD_BASE),
        "enhance": {"chunk_frames": 38, "overlap_frames": 12, "steps": 30, "strength": 0.97, "guidance_scale": 9.0,
                    "eta": 0.0, "height": 720, "width": 1280, "prompt": SVD_ENHANCE_PROMPT,
                    "negative_prompt": SVD_ENHANCE_NEGATIVE_PROMPT, "blend_target": "latents"},
        "interpolate": {"factor": 2},
        "encode": {"default_fps": 24},
    },
    generators={"t2v": "stt2v_ray.models.svd.streamingsvd:t2v", "i2v": "stt2v_ray.models.svd.streamingsvd:i2v"},
    enhancer="stt2v_ray.models.svd.streamingsvd:enhancer",
    interpolator="stt2v_ray.video.ema_vfi:build_ema_vfi",
    weights="pretrained",
    sources=_SVD_SOURCES,
    default_num_frames=200,  # the original's inference_i2v.py --num_frames default
    notes=[
        "The enhancer resizes the 1024x576 base to 1280x720 (bicubic) before SDEdit, as the original does.",
        "Each enhancer chunk is conditioned on its own key frame (its first frame); the key frames are enhanced first, together, "
        "as one video conditioned on the input image (enhance.i2vgen.key_frames=batch), as StreamingSVD does. docs/presets.md "
        "lists the enhancer's choices against the original's.",
    ],
)
# The same classes and wiring at toy size, seeded random weights: CPU tests of the real preset's code path.
STREAMINGSVD_TOY = Preset(
    name="streamingsvd-toy",
    description="streamingsvd's classes and wiring at toy size with random weights (CPU tests; pictures are noise).",
    defaults={
        "t2v": {**_SVD_BASE, "chunk_frames": 8, "cond_frames": 3, "steps": 2, "height": 32, "width": 48, "anchor_frame": 2},
        "i2v": {**_SVD_BASE, "chunk_frames": 8, "cond_frames": 3, "steps": 2, "height": 32, "width": 48, "anchor_frame": 2},
        "enhance": {"chunk_frames": 8, "overlap_frames": 2, "steps": 4, "strength": 0.97, "guidance_scale": 9.0,
                    "eta": 0.0, "height": 48, "width": 72, "prompt": SVD_ENHANCE_PROMPT,
                    "negative_prompt": SVD_ENHANCE_NEGATIVE_PROMPT},
        "interpolate": {"factor": 2},
        "encode": {"default_fps": 24, "preset": "veryfast"},
        "weights": {"mode": "random"},
    },
    generators={"t2v": "stt2v_ray.models.svd.streamingsvd:toy_t2v", "i2v": "stt2v_ray.models.svd.streamingsvd:toy_i2v"},
    enhancer="stt2v_ray.models.svd.streamingsvd:toy_enhancer",
    interpolator="stt2v_ray.video.ema_vfi:build_ema_vfi_toy",
    weights="random",
    sources=_SVD_SOURCES,
)

_T2V_BASE = {"chunk_frames": 16, "cond_frames": 8, "steps": 50, "guidance_scale": 7.5, "eta": 1.0,
             "height": 256, "width": 256, "anchor_frame": 0}
_T2V_SOURCES = (
    WeightSource("base", "damo-vilab/text-to-video-ms-1.7b", None,
                 "ModelScope T2V (diffusers format): tokenizer, text encoder, VAE, and the UNet of chunk 0"),
    WeightSource("streaming", "PAIR/StreamingT2V", "streaming_t2v.ckpt",
                 "streaming UNet + CAM + APM (incl. its OpenCLIP ViT-H-14 image encoder), the original's Lightning layout "
                 "(read with torch.load(weights_only=True), converted on load, or by `stt2v-ray convert`)"),
    WeightSource("enhancer", "ali-vilab/i2vgen-xl", None,
                 "I2VGen-XL (diffusers format): SDEdit enhancer in place of MS-Vid2Vid-XL, which has no diffusers format"),
)
STREAMINGT2V = Preset(
    name="streamingt2v",
    description=(
        "StreamingT2V (StreamingModelscope): ModelScope T2V 1.7B makes chunk 0; the streaming UNet with CAM + APM "
        "(PAIR/StreamingT2V) makes chunks of 16 conditioned on the last 8, 256x256, DDIM 50 steps eta 1.0, CFG 7.5, APM "
        "anchor frame 0; I2VGen-XL enhancer at 768x768 (C=24, O=8, SDEdit 0.6, CFG 7.5, x0 blending); 8 fps, no interpolation."
    ),
    defaults={
        "t2v": dict(_T2V_BASE),
        "enhance": {"chunk_frames": 24, "overlap_frames": 8, "steps": 30, "strength": 0.6, "guidance_scale": 7.5,
                    "eta": 0.0, "scale": 3, "blend_target": "x0"},
        "interpolate": {"factor": 1},
        "encode": {"default_fps": 8},
    },
    generators={"t2v": "stt2v_ray.models.modelscope.streamingt2v:t2v"},
    enhancer="stt2v_ray.models.modelscope.streamingt2v:enhancer",
    weights="pretrained",
    sources=_T2V_SOURCES,
    default_num_frames=24,  # the original's t2v_enhanced/inference.py --num_frames default
    notes=[
        "Enhancer: I2VGen-XL replaces the original's MS-Vid2Vid-XL (damo/Video-to-Video), which has no diffusers format.",
        "Enhanced size 768x768 (scale 3 of 256): the original pads to 1280x720 and keeps a 720x720 picture; the enhancer "
        "scale is an integer here, 3 is the nearest.",
        "Chunk 0 is sampled with DDIM (the original's stage 1 used DPMSolverMultistep); text-to-video only (no image input).",
    ],
)
STREAMINGT2V_TOY = Preset(
    name="streamingt2v-toy",
    description="streamingt2v's classes and wiring at toy size with random weights (CPU tests; pictures are noise).",
    defaults={
        "t2v": {**_T2V_BASE, "chunk_frames": 8, "cond_frames": 4, "steps": 2, "height": 64, "width": 64},
        "enhance": {"chunk_frames": 8, "overlap_frames": 2, "steps": 4, "strength": 0.6, "guidance_scale": 7.5,
                    "eta": 0.0, "scale": 1, "blend_target": "x0"},
        "interpolate": {"factor": 1},
        "encode": {"default_fps": 8, "preset": "veryfast"},
        "weights": {"mode": "random"},
    },
    generators={"t2v": "stt2v_ray.models.modelscope.streamingt2v:toy_t2v"},
    enhancer="stt2v_ray.models.modelscope.streamingt2v:toy_enhancer",
    weights="random",
    sources=_T2V_SOURCES,
)

TOY = Preset(
    name="toy",
    description=(
        "This project's text-to-video architecture (UNet3D + CAM + APM, 2x UNet3D SDEdit enhancer) at toy size, TRAINED "
        "here on procedural clips by `stt2v-ray train` and shipped in the package (stt2v_ray/weights/toy, float16 "
        "safetensors, report beside them). Prompts of the grammar 'a <colour> <shape> moving <direction> on a "
        "<background> background' render that object moving; 32x32 base, 64x64 enhanced. Text-to-video only."
    ),
    defaults={
        # guidance 3: at 4.5 and above the retrained model tints gray backgrounds and loses the colour
        # (8 prompts, benchmarks/toy_quality.py; see the README's toy section); eta 1 as the original
        "t2v": {"chunk_frames": 16, "cond_frames": 8, "steps": 25, "guidance_scale": 3.0, "eta": 1.0,
                "height": 32, "width": 32, "anchor_frame": 0},
        "enhance": {"chunk_frames": 16, "overlap_frames": 8, "steps": 20, "strength": 0.5, "guidance_scale": 3.0,
                    "eta": 0.0, "scale": 2},
        "interpolate": {"factor": 2},
        "encode": {"default_fps": 24, "preset": "veryfast"},
    },
    generators={"t2v": "stt2v_ray.models.toy.toy:t2v"},
    enhancer="stt2v_ray.models.toy.toy:enhancer",
    weights="shipped",
    default_num_frames=48,  # 2 s at 24 fps: long enough to see the object move
    notes=[
        "Colours: red, green, blue, yellow, magenta, cyan, orange; shapes: circle, square, triangle; directions: left, "
        "right, up, down; backgrounds: black, white, gray. Trained without the speed words (slowly/quickly).",
        "The autoencoder is a parameter-free pixel (un)shuffle (32x32 -> 8x8x48), not a learned VAE: see "
        "stt2v_ray/models/blocks/pixel_vae.py.",
    ],
)

# The shapes of the published A100 timings (StreamingModelscope) with simulated models: scale benchmarks, planning.
SIM = Preset(
    name="sim",
    description=(
        "SIMULATED models (simulate.enabled=true): StreamingModelscope's shapes (chunks of 16 on 8, 50 steps; enhancer C=24, "
        "O=8, 30 steps x 0.6) whose computation is a sleep from the cost model (stt2v_ray/plan/costs.py), compressed by "
        "simulate.time_scale; 16x16 frames. Runs the real executor; outputs say real_output=false. Never a render."
    ),
    defaults={
        "t2v": {**_T2V_BASE},
        "i2v": {**_T2V_BASE},
        "enhance": {"chunk_frames": 24, "overlap_frames": 8, "steps": 30, "strength": 0.6, "eta": 0.0, "scale": 1},
        "interpolate": {"factor": 1},
        "encode": {"default_fps": 8, "preset": "ultrafast"},
        "weights": {"mode": "random"},
        "simulate": {"enabled": True},
    },
    generators={"t2v": "stt2v_ray.pipeline.simulate:t2v", "i2v": "stt2v_ray.pipeline.simulate:i2v"},
    enhancer="stt2v_ray.pipeline.simulate:enhancer",
    interpolator="stt2v_ray.pipeline.simulate:interpolator",
    default_num_frames=240,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (TINY, TOY, STREAMINGSVD, STREAMINGSVD_TOY, STREAMINGT2V, STREAMINGT2V_TOY, SIM)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}") from None


def preset_defaults(settings_mapping: dict[str, Any]) -> dict[str, Any]:
    """The defaults of the preset named in a raw settings mapping (tiny when none is named)."""
    name = settings_mapping.get("preset", "tiny") if isinstance(settings_mapping, dict) else "tiny"
    preset = PRESETS.get(name) if isinstance(name, str) else None
    return dict(preset.defaults) if preset else {}


# What the original's --use_memopt turns on, as `memory.*` settings (stt2v_ray/models/memory.py gives each
# knob's effect; benchmarks/gpu_profile.py --memopt uses the same values). "half": float16 on CUDA, bfloat16
# on CPU (CPUs have no fast float16). Only the streamingsvd/streamingt2v builders read memory settings.
MEMOPT: dict[str, Any] = {"dtype": "half", "cpu_offload": True, "ff_chunk_size": 2, "vae_decode_chunk": 4,
                          "sequential_cfg": True}


def memopt_settings(name: str, cuda: bool) -> dict[str, Any]:
    """The `memory.*` values of --use_memopt for preset `name`; {} when its builders take no memory settings."""
    preset = PRESETS.get(name)
    modules = " ".join(preset.generators.values()) if preset else ""
    if not any(f".{kind}:" in modules for kind in ("streamingsvd", "streamingt2v")):
        return {}
    return {**MEMOPT, "dtype": "float16" if cuda else "bfloat16"}
