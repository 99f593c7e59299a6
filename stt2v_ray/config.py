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
    cond_frames: int = Field(8, ge=1, le=255, description="Last frames of the previous chunk the CAM sees (F_cond); each new "
                                                          "chunk adds F - F_cond frames.")
    steps: int = Field(50, ge=1, le=1000, description="Denoising steps per chunk.")
    guidance_scale: float = Field(7.5, ge=0.0, description="Classifier-free guidance (i2v: the scale at the last frame).")
    min_guidance_scale: float = Field(1.0, ge=0.0, description="i2v only: CFG at the first frame, ramped linearly to "
                                                               "guidance_scale.")
    eta: float = Field(1.0, ge=0.0, le=1.0, description="t2v only: DDIM eta (1.0 = the original's stochastic DDIM).")
    guidance_min_timestep: int = Field(
        0, ge=0, le=1000,
        description="t2v only: CFG applies at timesteps >= this; below it, the conditional prediction alone (a guidance "
                    "interval). 0 = every step.",
    )
    height: int = Field(256, ge=8, le=4096, description="Base frame height in pixels.")
    width: int = Field(256, ge=8, le=4096, description="Base frame width in pixels.")
    anchor_frame: int = Field(0, ge=0, description="Frame of chunk 0 used as long-term memory (APM anchor / i2v image "
                                                   "conditioning).")

    @model_validator(mode="after")
    def _check(self) -> BaseModelSettings:
        if self.cond_frames >= self.chunk_frames:
            raise ValueError(f"cond_frames ({self.cond_frames}) must be smaller than chunk_frames ({self.chunk_frames})")
        if self.anchor_frame >= self.chunk_frames:
            raise ValueError(
                f"anchor_frame ({self.anchor_frame}) must be a frame of chunk 0 (< chunk_frames={self.chunk_frames})"
            )
        return self


class I2VGenSettings(Strict):
    """I2VGen-XL enhancer only (streamingsvd, streamingt2v); the defaults are the original StreamingSVD's."""

    fps: int = Field(38, ge=1, le=240, description="fps micro-condition given to the UNet (the original's pipeline default: 38).")
    clip_skip: int = Field(
        1, ge=0, le=8,
        description="Text state: the hidden state this many layers before the last, with the final layer norm "
        "(1 = penultimate, as the original; 0 = last).",
    )
    latents: Literal["sample", "mean"] = Field(
        "sample", description="VAE latents: sample (the original; noise keyed by (seed, frame)) or the distribution's mean."
    )
    key_frames: Literal["batch", "each"] = Field(
        "batch",
        description="Chunk key frames (first frame of each chunk): batch = enhanced together as one K-frame video "
        "conditioned on the input image (the original; enhancement waits for every chunk's first base frame); "
        "each = one 1-frame run per chunk, so enhancement streams behind the base stage.",
    )


class EnhanceSettings(Strict):
    """SDEdit refinement at a higher resolution over overlapping chunks (randomized blending)."""

    enabled: bool = Field(True, description="Run the enhancer at all.")
    chunk_frames: int = Field(24, ge=1, le=1024, description="Frames per enhancer chunk (C).")
    overlap_frames: int = Field(8, ge=0, le=1023, description="Frames shared by neighbouring chunks (O).")
    steps: int = Field(30, ge=1, le=1000, description="Sampler steps of the full schedule; SDEdit runs the last `strength` "
                                                      "fraction of them.")
    strength: float = Field(0.6, gt=0.0, le=1.0, description="SDEdit strength: fraction of the schedule re-noised and denoised "
                                                             "(0.6 = T'=600 of 1000).")
    guidance_scale: float = Field(7.5, ge=0.0, description="Classifier-free guidance of the enhancer.")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta of the enhancer.")
    scale: int = Field(2, ge=1, le=8, description="Output size = base size x scale, unless height and width are set.")
    height: int | None = Field(
        None, ge=8, le=8192,
        description="Output height in pixels (set with width; None: base height x scale). "
        "Base frames are resized to it before SDEdit.",
    )
    width: int | None = Field(
        None, ge=8, le=8192, description="Output width in pixels (set with height; None: base width x scale)."
    )
    prompt: str | None = Field(None, description="Prompt for the enhancer; None uses each video's prompt.")
    negative_prompt: str | None = Field(
        None, description="Negative prompt for the enhancer; None uses each video's negative prompt."
    )
    i2vgen: I2VGenSettings = Field(default_factory=I2VGenSettings, description="Options of the I2VGen-XL enhancer.")
    blend_target: Literal["latents", "x0"] = Field("latents", description="Blend x_{t-1} latents (StreamingSVD) or x0 "
            "predictions (Modelscope).")
    blending: Literal["randomized", "none"] = Field(
        "randomized",
        description="randomized: merge overlapping chunks at every step with a random cut; none: chunks denoised independently, "
                    "merged once at the end by a fixed middle cut (ablation).",
    )
    noise: Literal["shared", "independent"] = Field("shared", description="shared: one SDEdit noise tensor over the whole video; "
            "independent: each chunk draws its own (ablation).")

    @model_validator(mode="after")
    def _check(self) -> EnhanceSettings:
        if self.overlap_frames >= self.chunk_frames:
            raise ValueError(f"overlap_frames ({self.overlap_frames}) must be smaller than chunk_frames ({self.chunk_frames})")
        if 2 * self.overlap_frames > self.chunk_frames:
            # Then three chunks could share a frame and a cut would no longer involve just two chunks.
            raise ValueError(f"overlap_frames ({self.overlap_frames}) must be at most half of chunk_frames ({self.chunk_frames})")
        if (self.height is None) != (self.width is None):
            raise ValueError(f"enhance.height ({self.height}) and enhance.width ({self.width}) must be set together")
        if self.noise == "independent" and self.blending == "randomized":
            raise ValueError(
                "noise=independent only makes sense with blending=none (randomized blending shares one noise tensor)"
            )
        return self

    def output_size(self, base_height: int, base_width: int) -> tuple[int, int]:
        """(height, width) of the enhanced frames."""
        if self.height is not None and self.width is not None:
            return self.height, self.width
        return base_height * self.scale, base_width * self.scale


class InterpolateSettings(Strict):
    """Frame interpolation after enhancement: raises the frame rate."""

    factor: int = Field(2, ge=1, le=16, description="Frame-rate multiplier (1 = off).")
    method: Literal["flow"] = Field("flow", description="flow: optical flow + warping on CPU.")


class EncodeSettings(Strict):
    """H.264 encoding of the final frames with ffmpeg (libx264, yuv420p)."""

    crf: int = Field(18, ge=0, le=51, description="x264 constant rate factor (lower = better).")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = Field(
        "medium", description="x264 speed preset."
    )
    default_fps: int = Field(24, ge=1, le=240, description="fps of videos whose request sets none.")


class PoolSettings(Strict):
    """One pool of stage actors and what each actor reserves."""

    actors: int = Field(1, ge=1, le=1024, description="Actors in the pool.")
    num_gpus: float = Field(0.0, ge=0.0, le=64.0, description="GPUs each actor reserves.")
    # 0.5: the four default pools fit a 2-CPU head (Ray's logical CPUs are a scheduling budget, not threads).
    num_cpus: float = Field(0.5, ge=0.0, le=256.0, description="CPUs each actor reserves (set it explicitly for GPU actors: Ray "
                                                               "would otherwise reserve one).")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources each actor needs, e.g. "
            "{stt2v_base: 1} to pin the pool to a KubeRay worker group.")


class SchedulerSettings(Strict):
    """The Ray executor's scheduling policy (keys under `ray.`; docs/how-it-works.md, Scheduling)."""

    admission: Literal["fifo", "longest-first"] = Field(
        "fifo", description="Order videos start in: fifo (input order) or longest-first within `admission_window`.")
    admission_window: int = Field(16, ge=1, le=100_000, description="longest-first: requests read ahead of the input "
                                  "stream to pick the longest from (the input stays streamed).")
    base_lookahead: int = Field(1, ge=0, le=1024, description="Videos that may run their base stage while every enhancer "
                                "gang is busy (so a gang that frees finds frames ready); more would idle on base actors.")
    auto_min_chunks: int = Field(2, ge=1, le=1024, description="enhance_shards=auto: fewest enhancer chunks per shard "
                                 "(a short video gets fewer shards).")
    start_timeout_s: float = Field(0.0, ge=0.0, le=86400.0, description="When the cluster lacks the pools' resources at "
                                   "start: 0 refuses at once; > 0 asks the autoscaler for them and waits this long.")


class RaySettings(SchedulerSettings):
    """The Ray executor: stage pools, enhancer shard gangs, bounds on work in flight."""

    address: str | None = Field(None, description="Cluster to join; None: RAY_ADDRESS / the job's cluster, else a new local one.")
    base: PoolSettings = Field(default_factory=PoolSettings, description="Base-generation actors (one video at a time each).")
    enhance: PoolSettings = Field(default_factory=PoolSettings, description="Enhancer actors; `actors` must be a multiple of "
            "enhance_shards (gangs of shards).")
    enhance_shards: int | Literal["auto"] = Field(
        1, description="Enhancer actors that enhance one video together (S, 1-64): the chunk plan is cut into S segments. "
                       "auto: single-actor gangs, S chosen per video from its length and the actors free.")
    interpolate: PoolSettings = Field(default_factory=PoolSettings, description="Interpolation actors.")
    write: PoolSettings = Field(default_factory=PoolSettings, description="Encoding/writing actors.")
    max_videos_in_flight: int = Field(0, ge=0, le=1024, description="Videos admitted at once (0: base actors + enhancer gangs). "
                                                                    "Bounds memory.")
    max_chunks_in_flight: int = Field(4, ge=1, le=1024, description="Base chunks a video may have made but not yet consumed "
                                                                    "(backpressure).")
    dashboard: bool = Field(True, description="The embedded local cluster starts the Ray dashboard on 127.0.0.1 (needs "
                                              "ray[default]) and prints its address; false: no dashboard.")

    @model_validator(mode="after")
    def _check(self) -> RaySettings:
        if self.enhance_shards != "auto" and not 1 <= self.enhance_shards <= 64:
            raise ValueError(f"enhance_shards must be auto or 1..64, got {self.enhance_shards}")
        if self.enhance_shards != "auto" and self.enhance.actors % self.enhance_shards:
            raise ValueError(f"enhance.actors ({self.enhance.actors}) must be a multiple of enhance_shards "
                             f"({self.enhance_shards})")
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
        "pretrained", description="pretrained: load each component's weights; random: full-size random weights (profiling only, "
                                  "never real output)."
    )
    paths: dict[str, str] = Field(
        default_factory=dict,
        description="Per component (`stt2v-ray presets` lists them): a local folder/file or a hub id, e.g. {streaming: "
                    "/models/StreamingSVD/model.safetensors}.",
    )


class MemorySettings(Strict):
    """Memory/speed trade-offs of the real presets (what the original's --use_memopt does)."""

    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Compute dtype of the models (fp16/bf16 "
            "halve the memory; CPU supports float32 and bfloat16).")
    cpu_offload: bool = Field(False, description="Keep models on the CPU and move each to the GPU only while it runs (VAE, "
                                                 "encoders, CAM).")
    ff_chunk_size: int = Field(0, ge=0, le=4096, description="Feed-forward chunking of the UNets' transformer blocks (0: off; "
                                                             "the original uses 2 for the UNet/CAM, 4 for the enhancer).")
    vae_decode_chunk: int = Field(8, ge=1, le=1024, description="Frames the base VAE decodes at once (the original lowers 8 -> 4 "
                                                                "in memopt).")
    sequential_cfg: bool = Field(False, description="Run the conditional and unconditional CFG halves one after the other "
                                                    "instead of as one batch (less memory, slower).")


class InputSettings(Strict):
    """What input files may make the run read. Set by the user (--set, --allow-image-uri), never by a manifest."""

    allow_image_uris: list[str] = Field(
        default_factory=list,
        description="URI prefixes images may come from besides the input's own folder/prefix, "
                    "e.g. [https://cdn.example.com/img/, /data/images/]. Link-local and metadata addresses stay refused.",
    )
    max_image_bytes: int = Field(64 * 2**20, ge=1, le=2**40,
                                 description="Largest image file read, in bytes (checked before reading).")
    max_image_pixels: int = Field(64_000_000, ge=1, le=2**40,
                                  description="Largest image decoded, width x height (read from the header before decoding).")


class ShutdownSettings(Strict):
    """What the driver does on SIGINT/SIGTERM (see docs/faults.md)."""

    grace_s: float = Field(
        30.0, ge=0.0, le=86400.0,
        description="Seconds the videos in flight get to finish after SIGINT/SIGTERM (no new ones start); "
                    "then they are abandoned, the tables written, exit 130/143.")


class SimulateSettings(Strict):
    """Simulation: the model computation inside each stage becomes a sleep from the cost model (docs/scale.md)."""

    enabled: bool = Field(False, description="Replace only the models' computation by sleeps from the cost model (tiny real "
                                             "tensors, real executor, pools, blending, writer); outputs say real_output=false.")
    profile: str | None = Field(None, description="JSON of benchmarks/gpu_profile.py whose measured seconds replace the "
                                                  "published-A100 defaults of the cost model (stt2v_ray/plan/costs.py).")
    time_scale: float = Field(1000.0, ge=1.0, le=1e6, description="Time compression: one simulated second sleeps "
                                                                  "1/time_scale s; reports multiply back.")


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
        "ray", description="ray: stage actors on a Ray cluster (joins RAY_ADDRESS / the job's cluster, else starts a local one); "
                           "local: everything in this process."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu.")
    cpu_threads: int = Field(
        1, ge=1, le=256,
        description="torch intra-op threads of every worker. CPU kernels reduce in a thread-dependent order, so frames are "
                    "bitwise reproducible across executors, shards and retries for one value; parallelism comes from actors.",
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
    inputs: InputSettings = Field(default_factory=InputSettings, description="Image URI policy and image size caps.")
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    simulate: SimulateSettings = Field(default_factory=SimulateSettings, description="Simulated models (scale benchmarks).")


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
    try:
        value: Any = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:  # e.g. '[a?b]': an error to report, not a traceback
        raise ValueError(f"--set {text!r}: the value is not valid YAML ({getattr(error, 'problem', None) or error})") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def setting_keys(model: type[BaseModel] = RunSettings, prefix: str = "") -> list[tuple[str, str]]:
    """Every dotted key with its description, for --help (docs/settings.md has more: stt2v_ray.settings_doc)."""
    rows: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += setting_keys(ann, f"{prefix}{name}.")
        else:
            rows.append((f"{prefix}{name}", field.description or ""))
    return rows
