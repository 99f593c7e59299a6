"""The `tiny` preset's builders: (run settings, device) -> model, seeded random weights."""
from __future__ import annotations

from stt2v_ray.config import RunSettings


def t2v(run: RunSettings, device="cpu"):
    from stt2v_ray.models.modelscope.t2v import build_tiny_t2v

    return build_tiny_t2v(run.t2v, device=device)


def i2v(run: RunSettings, device="cpu"):
    from stt2v_ray.models.svd.i2v import build_tiny_i2v

    return build_tiny_i2v(run.i2v, device=device)


def enhancer(run: RunSettings, base_height: int, base_width: int, device="cpu"):
    from stt2v_ray.models.blocks.enhancer import build_tiny_enhancer

    return build_tiny_enhancer(run.enhance, base_height, base_width, device=device)
