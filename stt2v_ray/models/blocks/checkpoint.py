"""Read original checkpoints safely (the reader behind `stt2v-ray convert` and every pretrained loader).

Pickle-based files (.ckpt, .pkl, .pt, .pth) are read ONLY with `torch.load(weights_only=True)`:
a checkpoint that needs arbitrary Python objects is refused with a clear error, never
unpickled. .safetensors files are read with safetensors. Output is always safetensors.
"""
from __future__ import annotations

from pathlib import Path

import torch

PICKLE_SUFFIXES = {".ckpt", ".pkl", ".pt", ".pth", ".bin"}


class UnsafeCheckpointError(ValueError):
    """torch.load(weights_only=True) refused the file (it holds more than tensors and plain containers)."""


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """-> flat {key: tensor}; a Lightning-style {"state_dict": {...}} is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in PICKLE_SUFFIXES:
        raise ValueError(f"{path}: unknown checkpoint format {path.suffix!r} (expected .safetensors, .ckpt, .pkl, .pt, .pth, "
                         ".bin)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: the file wants objects we will not build
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(
            f"{path}: refused by torch.load(weights_only=True): {first}. This file holds Python objects besides "
            "tensors; stt2v-ray never unpickles those. Re-save only its state dict (tensors) with a trusted copy of "
            "the original code, e.g. torch.save(ckpt['state_dict'], 'clean.ckpt'), or use a .safetensors release."
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj
