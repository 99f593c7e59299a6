"""Models of a preset, built lazily and once per process (a stage only builds what it uses)."""
from __future__ import annotations

import torch

from stt2v_ray.config import RunSettings
from stt2v_ray.pipeline import simulate
from stt2v_ray.presets import get_preset
from stt2v_ray.video.interpolate import FlowInterpolator


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("settings.device is 'cuda' but torch sees no CUDA device (is this a CPU build of torch?)")
    return torch.device(name)


def family_of(request) -> str:
    """Image given -> image-to-video; otherwise text-to-video."""
    return "i2v" if request.image else "t2v"


class Components:
    def __init__(self, settings: RunSettings):
        self.settings = settings
        self.preset = get_preset(settings.preset)
        self.device = resolve_device(settings.device)
        self._generators: dict[str, object] = {}
        self._enhancers: dict[tuple[int, int], object] = {}
        self._interpolator = None

    def generator(self, family: str):
        if family not in self._generators and self.settings.simulate.enabled:
            self._generators[family] = simulate.SimGenerator(self.settings, family)
        if family not in self._generators:
            build = self.preset.builder(family)
            self._generators[family] = build(self.settings, device=self.device)
        return self._generators[family]

    def enhancer(self, base_height: int, base_width: int):
        """One enhancer per base size: its output size is base size x scale."""
        key = (base_height, base_width)
        if key not in self._enhancers and self.settings.simulate.enabled:
            self._enhancers[key] = simulate.SimEnhancer(self.settings, base_height, base_width)
        if key not in self._enhancers:
            build = self.preset.builder("enhancer")
            self._enhancers[key] = build(self.settings, base_height, base_width, device=self.device)
        return self._enhancers[key]

    def interpolator(self):
        if self._interpolator is None:
            if self.settings.simulate.enabled:
                self._interpolator = simulate.SimInterpolator(self.settings)
            elif self.preset.interpolator:
                self._interpolator = self.preset.builder("interpolator")(self.settings, device=self.device)
            else:
                self._interpolator = FlowInterpolator()
        return self._interpolator
