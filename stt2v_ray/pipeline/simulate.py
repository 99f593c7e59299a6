"""Simulated models: the same interfaces as the real generator, enhancer and interpolator, whose
computation is a sleep from the cost model (stt2v_ray/plan/costs.py), compressed by
`simulate.time_scale`, returning small real tensors of the right frame counts.

Only the model computation is replaced. Chunk plans, streaming, the Ray executor, pools,
gangs, border exchange, randomized blending (it only selects frames), interpolation
bookkeeping, the writer (real ffmpeg, on tiny frames, plus the simulated encoding time) and
the records all run as in a render. Frames are a function of (seed, video frame index), so
they are deterministic, but they are not pictures: every output says real_output=false.
"""
from __future__ import annotations

import functools
import time

import torch

from stt2v_ray.config import RunSettings
from stt2v_ray.plan.costs import CostModel, VideoShape, from_profile
from stt2v_ray.plan.samplers import ddim_timesteps, sdedit_timesteps

SIZE = 16  # frames are SIZE x SIZE: the smallest x264 handles comfortably
PREFIX = "[SIMULATED]"


@functools.lru_cache(maxsize=8)
def _profile_costs(path: str) -> CostModel:
    return from_profile(path)


def cost_model(settings: RunSettings) -> CostModel:
    p = settings.simulate.profile
    return _profile_costs(p) if p else CostModel()


def enhance_steps(settings: RunSettings) -> int:
    """Steps the enhancer runs: the SDEdit tail of the schedule (as the real enhancers)."""
    return len(sdedit_timesteps(ddim_timesteps(settings.enhance.steps), settings.enhance.strength))


def video_shape(settings: RunSettings, family: str = "t2v") -> VideoShape:
    fam = getattr(settings, family)
    e = settings.enhance
    return VideoShape(base_chunk_frames=fam.chunk_frames, base_cond_frames=fam.cond_frames, base_steps=fam.steps,
                      enhance=e.enabled, enhance_chunk_frames=e.chunk_frames, enhance_overlap=e.overlap_frames,
                      enhance_steps=enhance_steps(settings), interpolate_factor=settings.interpolate.factor)


class _Sleeper:
    def __init__(self, settings: RunSettings):
        self.costs = cost_model(settings)
        self.scale = settings.simulate.time_scale

    def sleep(self, simulated_s: float) -> None:
        if simulated_s > 0:
            time.sleep(simulated_s / self.scale)


def _frames(seed: int, start: int, n: int) -> torch.Tensor:
    """(n, 3, SIZE, SIZE) in [-1, 1], a function of (seed, frame index) only."""
    idx = torch.arange(start, start + n, dtype=torch.float32)
    v = torch.sin(idx * 0.37 + (seed % 997) * 0.11).view(n, 1, 1, 1)
    return v.expand(n, 3, SIZE, SIZE).clone()


class SimGenerator(_Sleeper):
    """A ChunkGenerator whose chunk costs chunk_frames x steps on the cost model."""

    height = width = SIZE

    def __init__(self, settings: RunSettings, family: str):
        super().__init__(settings)
        fam = getattr(settings, family)
        self.chunk_frames, self.cond_frames, self.steps = fam.chunk_frames, fam.cond_frames, fam.steps
        self.sleep(self.costs.load_s)

    def prepare(self, job):
        self.sleep(self.costs.video_fixed_s)
        return {"seed": job.seed}

    def generate_chunk(self, state, k: int, cond, anchor) -> torch.Tensor:
        self.sleep(self.costs.base_chunk_s(self.chunk_frames, self.steps))
        start = k * (self.chunk_frames - self.cond_frames)  # chunk k covers video frames [start, start + F)
        return _frames(state["seed"], start, self.chunk_frames)


class SimEnhancer(_Sleeper):
    """A ChunkEnhancer: 'latents' are the frames themselves; predict sleeps one chunk-step."""

    def __init__(self, settings: RunSettings, base_height: int, base_width: int):
        super().__init__(settings)
        self.height, self.width = base_height, base_width
        self.timesteps = sdedit_timesteps(ddim_timesteps(settings.enhance.steps), settings.enhance.strength)
        self.sleep(self.costs.load_s)

    def prepare(self, job):
        return None

    def encode(self, frames: torch.Tensor, start: int = 0, seed: int | None = None) -> torch.Tensor:
        return frames.clone()

    def noise_latents(self, clean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return clean  # the shared SDEdit noise is still drawn (frame_noise), as in a render

    def predict(self, state, x_t: torch.Tensor, step: int, context=None):
        self.sleep(self.costs.enhance_frame_step_s * x_t.shape[0])
        return x_t, torch.zeros_like(x_t)

    def step(self, x0: torch.Tensor, eps: torch.Tensor, step: int, noise) -> torch.Tensor:
        return x0

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.sleep(self.costs.decode_frame_s * latents.shape[0])
        return latents.clamp(-1, 1)


class SimInterpolator(_Sleeper):
    """Midpoint blend; sleeps per interpolated frame."""

    def midframes(self, a: torch.Tensor, b: torch.Tensor, factor: int) -> torch.Tensor:
        self.sleep(self.costs.interpolate_frame_s * (factor - 1))
        w = torch.arange(1, factor, dtype=a.dtype).view(-1, 1, 1, 1) / factor
        return a[None] * (1 - w) + b[None] * w


class SimEncodeCost(_Sleeper):
    """The encoding time of the simulated resolution; the tiny frames still go through real ffmpeg."""

    def __call__(self, frames: int) -> None:
        self.sleep(self.costs.encode_frame_s * frames)


# Builders for the `sim` preset (presets.py): (run settings, device) -> model, as every preset's.
def t2v(run: RunSettings, device="cpu") -> SimGenerator:
    return SimGenerator(run, "t2v")


def i2v(run: RunSettings, device="cpu") -> SimGenerator:
    return SimGenerator(run, "i2v")


def enhancer(run: RunSettings, base_height: int, base_width: int, device="cpu") -> SimEnhancer:
    return SimEnhancer(run, base_height, base_width)


def interpolator(run: RunSettings, device="cpu") -> SimInterpolator:
    return SimInterpolator(run)
