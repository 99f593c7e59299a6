"""Run settings: one typed pydantic model, validated once at the edge.

Layering, lowest first: the field defaults below, the preset's defaults
(`stt2v_ray.presets`), the manifest's `settings` mapping, then `--set key=value`.
Every model forbids unknown keys, so a typo is an error, not a silent default.
"""
from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BaseModelSettings(Strict):
    """One base family (text-to-video or image-to-video): first chunk and streaming chunks."""

    chunk_frames: int = Field(16, ge=2, le=256, description="Frames one chunk generates (F).")
    cond_frames: int = Field(8, ge=1, le=255, description="Last frames of the previous chunk the CAM sees (F_cond); each new chunk adds F - F_cond frames.")
    steps: int = Field(50, ge=1, le=1000, description="Denoising steps per chunk.")
    guidance_scale: float = Field(7.5, ge=0.0, description="Classifier-free guidance (i2v: the scale at the last frame).")
    min_guidance_scale: float = Field(1.0, ge=0.0, description="i2v only: CFG at the first frame, ramped linearly to guidance_scale.")
    eta: float = Field(1.0, ge=0.0, le=1.0, description="t2v only: DDIM eta (1.0 = the original's stochastic DDIM).")
    guidance_min_timestep: int = Field(
        0, ge=0, le=1000,
        description="t2v only: CFG applies at timesteps >= this; below it, the conditional prediction alone (a guidance interval). 0 = every step.",
    )
    height: int = Field(256, ge=8, le=4096, description="Base frame height in pixels.")
    width: int = Field(256, ge=8, le=4096, description="Base frame width in pixels.")
    anchor_frame: int = Field(0, ge=0, description="Frame of chunk 0 used as long-term memory (APM anchor / i2v image conditioning).")

    @model_validator(mode="after")
    def _check(self) -> "BaseModelSettings":
        if self.cond_frames >= self.chunk_frames:
            raise ValueError(f"cond_frames ({self.cond_frames}) must be smaller than chunk_frames ({self.chunk_frames})")
        if self.anchor_frame >= self.chunk_frames:
            raise ValueError(f"anchor_frame ({self.anchor_frame}) must be a frame of chunk 0 (< chunk_frames={self.chunk_frames})")
        return self


class EnhanceSettings(Strict):
    """SDEdit refinement at a higher resolution over overlapping chunks (randomized blending)."""

    enabled: bool = Field(True, description="Run the enhancer at all.")
    chunk_frames: int = Field(24, ge=1, le=1024, description="Frames per enhancer chunk (C).")
    overlap_frames: int = Field(8, ge=0, le=1023, description="Frames shared by neighbouring chunks (O).")
    steps: int = Field(30, ge=1, le=1000, description="Sampler steps of the full schedule; SDEdit runs the last `strength` fraction of them.")
    strength: float = Field(0.6, gt=0.0, le=1.0, description="SDEdit strength: fraction of the schedule re-noised and denoised (0.6 = T'=600 of 1000).")
    guidance_scale: float = Field(7.5, ge=0.0, description="Classifier-free guidance of the enhancer.")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta of the enhancer.")
    scale: int = Field(2, ge=1, le=8, description="Output size = base size x scale.")
    prompt: str | None = Field(None, description="Prompt for the enhancer; None uses each video's prompt.")
    blend_target: Literal["latents", "x0"] = Field("latents", description="Blend x_{t-1} latents (StreamingSVD) or x0 predictions (Modelscope).")
    blending: Literal["randomized", "none"] = Field(
        "randomized",
        description="randomized: merge overlapping chunks at every step with a random cut; none: chunks denoised independently, merged once at the end by a fixed middle cut (ablation).",
    )
    noise: Literal["shared", "independent"] = Field("shared", description="shared: one SDEdit noise tensor over the whole video; independent: each chunk draws its own (ablation).")

    @model_validator(mode="after")
    def _check(self) -> "EnhanceSettings":
        if self.overlap_frames >= self.chunk_frames:
            raise ValueError(f"overlap_frames ({self.overlap_frames}) must be smaller than chunk_frames ({self.chunk_frames})")
        if 2 * self.overlap_frames > self.chunk_frames:
            # Then three chunks could share a frame and a cut would no longer involve just two chunks.
            raise ValueError(f"overlap_frames ({self.overlap_frames}) must be at most half of chunk_frames ({self.chunk_frames})")
        if self.noise == "independent" and self.blending == "randomized":
            raise ValueError("noise=independent only makes sense with blending=none (randomized blending shares one noise tensor)")
        return self


class InterpolateSettings(Strict):
    factor: int = Field(2, ge=1, le=16, description="Frame-rate multiplier (1 = off).")
    method: Literal["flow"] = Field("flow", description="flow: optical flow + warping on CPU.")


class EncodeSettings(Strict):
    crf: int = Field(18, ge=0, le=51, description="x264 constant rate factor (lower = better).")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = Field(
        "medium", description="x264 speed preset."
    )
    default_fps: int = Field(24, ge=1, le=240, description="fps of videos whose request sets none.")


class PoolSettings(Strict):
    """One pool of stage actors and what each actor reserves."""

    actors: int = Field(1, ge=1, le=1024, description="Actors in the pool.")
    num_gpus: float = Field(0.0, ge=0.0, le=64.0, description="GPUs each actor reserves.")
    num_cpus: float = Field(1.0, ge=0.0, le=256.0, description="CPUs each actor reserves (set it explicitly for GPU actors: Ray would otherwise reserve one).")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources each actor needs, e.g. {stt2v_base: 1} to pin the pool to a KubeRay worker group.")


class RaySettings(Strict):
    """The Ray executor: stage pools, enhancer shard gangs, bounds on work in flight."""

    address: str | None = Field(None, description="Cluster to join; None: RAY_ADDRESS / the job's cluster, else a new local one.")
    base: PoolSettings = Field(default_factory=PoolSettings, description="Base-generation actors (one video at a time each).")
    enhance: PoolSettings = Field(default_factory=PoolSettings, description="Enhancer actors; `actors` must be a multiple of enhance_shards (gangs of shards).")
    enhance_shards: int = Field(1, ge=1, le=64, description="Enhancer actors that enhance one video together (S): the chunk plan is cut into S segments.")
    interpolate: PoolSettings = Field(default_factory=PoolSettings, description="Interpolation actors.")
    write: PoolSettings = Field(default_factory=PoolSettings, description="Encoding/writing actors.")
    max_videos_in_flight: int = Field(0, ge=0, le=1024, description="Videos admitted at once (0: base actors + enhancer gangs). Bounds memory.")
    max_chunks_in_flight: int = Field(4, ge=1, le=1024, description="Base chunks a video may have made but not yet consumed (backpressure).")

    @model_validator(mode="after")
    def _check(self) -> "RaySettings":
        if self.enhance.actors % self.enhance_shards:
            raise ValueError(f"enhance.actors ({self.enhance.actors}) must be a multiple of enhance_shards ({self.enhance_shards})")
        return self


class RetrySettings(Strict):
    """Ray executor: videos hit by a lost actor, shard or node are rendered again on healthy actors."""

    max_attempts: int = Field(3, ge=1, le=100, description=(
        "Attempts per video when an actor, shard or node dies (errors raised by stage code are not retried)."))
    stage_timeout_s: float = Field(600.0, gt=0, description=(
        "Bound on every wait for one unit of stage work (a chunk, a step, a write, ffmpeg); past it the attempt is retried."))
    ping_timeout_s: float = Field(60.0, gt=0, description=(
        "How long a dead actor may take to restart and answer a ping before its pool drops it."))
    actor_max_restarts: int = Field(3, ge=-1, le=1000, description=(
        "Ray max_restarts of each stage actor (-1: unlimited); a pool drops an actor that stays dead."))


class WeightsSettings(Strict):
    """Where a real preset's weights come from."""

    mode: Literal["pretrained", "random"] = Field(
        "pretrained", description="pretrained: load each component's weights; random: full-size random weights (profiling only, never real output)."
    )
    paths: dict[str, str] = Field(
        default_factory=dict,
        description="Per component (`stt2v-ray presets` lists them): a local folder/file or a hub id, e.g. {streaming: /models/StreamingSVD/model.safetensors}.",
    )


class MemorySettings(Strict):
    """Memory/speed trade-offs of the real presets (what the original's --use_memopt does)."""

    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Compute dtype of the models (fp16/bf16 halve the memory; CPU supports float32 and bfloat16).")
    cpu_offload: bool = Field(False, description="Keep models on the CPU and move each to the GPU only while it runs (VAE, encoders, CAM).")
    ff_chunk_size: int = Field(0, ge=0, le=4096, description="Feed-forward chunking of the UNets' transformer blocks (0: off; the original uses 2 for the UNet/CAM, 4 for the enhancer).")
    vae_decode_chunk: int = Field(8, ge=1, le=1024, description="Frames the base VAE decodes at once (the original lowers 8 -> 4 in memopt).")
    sequential_cfg: bool = Field(False, description="Run the conditional and unconditional CFG halves one after the other instead of as one batch (less memory, slower).")


class RunSettings(Strict):
    preset: str = Field("tiny", description="Model preset by name (`stt2v-ray presets` lists them).")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        from stt2v_ray.presets import PRESETS  # plain data, no torch

        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
        return name

    executor: Literal["local", "ray"] = Field(
        "ray", description="ray: stage actors on a Ray cluster (joins RAY_ADDRESS / the job's cluster, else starts a local one); local: everything in this process."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu.")
    cpu_threads: int = Field(
        1, ge=1, le=256,
        description="torch intra-op threads of every worker. CPU kernels reduce in a thread-dependent order, so frames are bitwise reproducible across executors, shards and retries for one value; parallelism comes from actors.",
    )
    t2v: BaseModelSettings = Field(default_factory=BaseModelSettings, description="Text-to-video base family.")
    i2v: BaseModelSettings = Field(default_factory=BaseModelSettings, description="Image-to-video base family.")
    enhance: EnhanceSettings = Field(default_factory=EnhanceSettings)
    interpolate: InterpolateSettings = Field(default_factory=InterpolateSettings)
    encode: EncodeSettings = Field(default_factory=EncodeSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    weights: WeightsSettings = Field(default_factory=WeightsSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)


# ---------------------------------------------------------------- layering helpers


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'enhance.steps=4' -> {'enhance': {'steps': 4}}; the value is parsed as YAML (numbers, booleans, null)."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected dotted.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ValueError(f"--set {text!r}: empty key segment")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(parts):
        value = {part: value}
    return value


def setting_keys(model: type[BaseModel] = RunSettings, prefix: str = "") -> list[tuple[str, str]]:
    """Every dotted key with its description, for --help and the README."""
    rows: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += setting_keys(ann, f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", field.description or ""))
    return rows
