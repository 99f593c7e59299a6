"""The cost model: GPU/CPU seconds of each unit of work, shared by the simulation and the planner.

Pure (no torch, no settings import): shapes come in as plain numbers (`VideoShape`).

Defaults: the published StreamingModelscope timings on one A100-80GB
(/work/shared/reference/streamingt2v-facts.md; 16-frame chunks conditioned on 8, DDIM 50
steps at 256x256; enhancer 720x720, README runs above 80 frames with C=112, O=32, SDEdit
T'=600 of 30 steps = 18 steps):

    frames | preview 256^2 | final 720^2
        24 |      40 s     |   165 s
      1200 |    1710 s     | 10225 s

- Base: slope (1710 - 40) / (1200 - 24) = 1.420 s per frame; 8 new frames per chunk ->
  11.36 s per chunk of 16 frames; over 50 steps -> 0.227 s per chunk-step (16 frames; the
  base VAE decode is inside this figure). Intercept 40 - 24 x 1.420 = 5.9 s; counted in chunks
  ((n - 8) / 8 chunks, chunk 0 gives 16 frames) the per-video fixed cost is 5.9 + 11.36 = 17.3 s
  (text/image encoding, set-up) -> `video_fixed_s`. This reproduces 24, 240 and 1200 frames
  within 2% and 80 frames within 9%.
- Enhancer: final - preview = 125 s (24 frames), 8515 s (1200 frames); slope 7.134 s per
  frame. With C=112, O=32 a chunk adds 80 frames -> 570.7 s per chunk. The 720x720 VAE
  decode is not published: 0.25 s per frame is an ESTIMATE (SD-class VAE, fp16, A100), so
  (570.7 - 80 x 0.25) / (112 frames x 18 steps) = 0.273 s per frame-step, i.e. 6.55 s per
  chunk-step of a 24-frame chunk.
- Not published, ESTIMATES: model load 60 s per actor; interpolation 0.05 s per
  interpolated frame (EMA-VFI-class on one CPU actor at 720p); encoding 0.01 s per frame
  (x264 veryfast, 720p). A measured profile (`from_profile`) replaces every figure it covers.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from stt2v_ray.plan.chunks import base_frames_for_output, base_plan, enhance_plan, split_segments

REF_BASE_FRAMES = 16  # the chunk size the base figure is for; other sizes scale linearly


@dataclass(frozen=True)
class CostModel:
    base_chunk_step_s: float = 0.227  # one denoising step of one 16-frame base chunk
    enhance_frame_step_s: float = 0.273  # one enhancer denoising step of one frame (a chunk-step = C x this)
    decode_frame_s: float = 0.25  # enhancer VAE decode, per frame
    interpolate_frame_s: float = 0.05  # per frame the interpolator makes (between two base frames), CPU actor
    encode_frame_s: float = 0.01  # per encoded frame, CPU actor
    video_fixed_s: float = 17.3  # per video: prompt/image encoding, set-up
    load_s: float = 60.0  # model load, once per actor
    source: str = "published A100-80GB figures (streamingt2v-facts.md) + stated estimates"
    notes: dict = field(default_factory=dict)

    def base_chunk_s(self, chunk_frames: int, steps: int) -> float:
        return self.base_chunk_step_s * steps * chunk_frames / REF_BASE_FRAMES

    def enhance_chunk_step_s(self, chunk_frames: int) -> float:
        return self.enhance_frame_step_s * chunk_frames

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VideoShape:
    """What the cost of one video depends on (from its settings; see pipeline/simulate.py)."""

    base_chunk_frames: int = 16
    base_cond_frames: int = 8
    base_steps: int = 50
    enhance: bool = True
    enhance_chunk_frames: int = 24
    enhance_overlap: int = 8
    enhance_steps: int = 18  # steps actually run (SDEdit: steps x strength)
    interpolate_factor: int = 1


@dataclass(frozen=True)
class VideoCost:
    """Seconds of one video's stages (simulated seconds), and the counts they come from."""

    num_frames: int
    base_chunks: int
    base_s: float  # all base chunks + video_fixed_s, on one GPU
    enhance_chunks: int
    enhance_steps: int
    enhance_chunk_step_s: float
    decode_s: float  # enhancer decode of every frame
    interpolate_s: float
    encode_s: float

    @property
    def enhance_s(self) -> float:
        """Enhancer work on one GPU (all chunk-steps + decode)."""
        return self.enhance_chunks * self.enhance_steps * self.enhance_chunk_step_s + self.decode_s

    @property
    def gpu_s(self) -> float:
        return self.base_s + self.enhance_s

    def enhance_critical_s(self, shards: int) -> float:
        """The enhancement's critical path with S shards: the largest segment's chunk-steps + its decode."""
        if not self.enhance_chunks:
            return 0.0
        segs = split_segments(self.enhance_chunks, shards)
        biggest = max(b - a for a, b in segs)
        per_chunk_decode = self.decode_s / self.enhance_chunks
        return biggest * (self.enhance_steps * self.enhance_chunk_step_s + per_chunk_decode)

    def sequential_s(self) -> float:
        """The original's single-GPU time: every stage one after the other."""
        return self.gpu_s + self.interpolate_s + self.encode_s


def video_cost(num_frames: int, shape: VideoShape, costs: CostModel) -> VideoCost:
    b = base_frames_for_output(num_frames, shape.interpolate_factor)
    eplan = enhance_plan(b, shape.enhance_chunk_frames, shape.enhance_overlap) if shape.enhance else None
    generated = eplan.padded_frames if eplan else b
    chunks = base_plan(generated, shape.base_chunk_frames, shape.base_cond_frames).num_chunks
    base_s = chunks * costs.base_chunk_s(shape.base_chunk_frames, shape.base_steps) + costs.video_fixed_s
    k = len(eplan.chunks) if eplan else 0
    return VideoCost(
        num_frames=num_frames, base_chunks=chunks, base_s=base_s, enhance_chunks=k,
        enhance_steps=shape.enhance_steps if eplan else 0,
        enhance_chunk_step_s=costs.enhance_chunk_step_s(shape.enhance_chunk_frames),
        decode_s=b * costs.decode_frame_s if eplan else 0.0,
        interpolate_s=max(0, b - 1) * (shape.interpolate_factor - 1) * costs.interpolate_frame_s,
        encode_s=num_frames * costs.encode_frame_s,
    )


def from_profile(profile: dict | str | Path, base: CostModel | None = None) -> CostModel:
    """A cost model from benchmarks/gpu_profile.py's JSON: every figure it measured replaces the default."""
    if not isinstance(profile, dict):
        profile = json.loads(Path(profile).read_text())
    base = base or CostModel()
    settings, units = profile.get("settings", {}), profile.get("units", [])
    family = profile.get("family", "t2v")
    fam, enh = settings.get(family, {}), settings.get("enhance", {})

    def mean(stage: str, prefix: str, skip_first: bool = False) -> tuple[float, list[dict]]:
        rows = [u for u in units if u.get("stage") == stage and str(u.get("unit", "")).startswith(prefix)]
        if skip_first and len(rows) > 1:
            rows = rows[1:]  # chunk 0 is made by another model in some presets (and carries warm-up)
        return (sum(r["seconds"] for r in rows) / len(rows) if rows else math.nan), rows

    out: dict = {}
    chunk_s, rows = mean("base", "chunk", skip_first=True)
    if rows and fam.get("steps") and fam.get("chunk_frames"):
        out["base_chunk_step_s"] = chunk_s / fam["steps"] * REF_BASE_FRAMES / fam["chunk_frames"]
    step_s, rows = mean("enhance", "chunk")
    if rows and enh.get("chunk_frames"):
        out["enhance_frame_step_s"] = step_s / enh["chunk_frames"]
    out.update(_per_frame(units, "enhance", "decode frames", "decode_frame_s"))
    out.update(_per_frame(units, "interpolate", "frames", "interpolate_frame_s", factor=profile.get("settings", {})
                          .get("interpolate", {}).get("factor", 1)))
    out.update(_per_frame(units, "encode", "frames", "encode_frame_s"))
    if profile.get("build", {}).get("seconds") is not None:
        out["load_s"] = float(profile["build"]["seconds"])
    device = profile.get("device", {}).get("name", "?")
    return replace(base, **out, source=f"profile: {profile.get('preset')} on {device}",
                   notes={"measured": sorted(out), "defaults": sorted(set(asdict(base)) - set(out) - {"source", "notes"})})


def _per_frame(units: list[dict], stage: str, prefix: str, key: str, factor: int = 1) -> dict:
    """Seconds per frame from spans named '<prefix> a-b' (b - a + 1 frames each; x factor: output frames)."""
    frames = seconds = 0.0
    for u in units:
        if u.get("stage") != stage or not str(u.get("unit", "")).startswith(prefix):
            continue
        try:
            a, b = str(u["unit"]).rsplit(" ", 1)[1].split("-")
        except (ValueError, IndexError):
            continue
        frames += (int(b) - int(a) + 1) * factor
        seconds += u["seconds"]
    return {key: seconds / frames} if frames else {}
