"""Model presets by name: their default settings and where their builders live.

Plain data, no torch import: the CLI validates settings and lists presets without
loading any model. Builders are "module:function" strings imported only when a stage
actually needs that model (a base actor never builds the enhancer, and so on).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


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
    generators={"t2v": "stt2v_ray.models.tiny:t2v", "i2v": "stt2v_ray.models.tiny:i2v"},
    enhancer="stt2v_ray.models.tiny:enhancer",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (TINY,)}


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
