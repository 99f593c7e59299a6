"""Read original checkpoints safely and convert them to this project's layout (`stt2v-ray convert`).

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
        raise ValueError(f"{path}: unknown checkpoint format {path.suffix!r} (expected .safetensors, .ckpt, .pkl, .pt, .pth, .bin)")
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


def converter(preset: str):
    """The key mapping of a preset's streaming checkpoint: module with convert_state_dict(state) -> (ours, unplaced)."""
    if preset in ("streamingsvd", "streamingsvd-toy"):
        from stt2v_ray.models import convert_svd

        return convert_svd
    if preset in ("streamingt2v", "streamingt2v-toy"):
        from stt2v_ray.models import convert_streamingt2v

        return convert_streamingt2v
    raise ValueError(f"no checkpoint converter for preset {preset!r} (available: streamingsvd, streamingt2v)")


def convert_file(preset: str, src: str | Path, dst: str | Path) -> tuple[int, list[str]]:
    """Convert src into dst (safetensors); -> (tensors written, keys that could not be placed)."""
    from safetensors.torch import save_file

    kwargs = {}
    if preset == "streamingsvd-toy":  # the toy preset's sizes (same classes)
        from stt2v_ray.models.streamingsvd import TOY_UNET, TOY_VAE

        kwargs = dict(unet_config=TOY_UNET, vae_levels=len(TOY_VAE["block_out_channels"]), vae_layers=TOY_VAE["layers_per_block"])
    ours, unplaced = converter(preset).convert_state_dict(read_checkpoint(src), **kwargs)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({k: v.contiguous() for k, v in ours.items()}, str(tmp), metadata={"format": "pt", "layout": f"stt2v-ray/{preset}"})
    tmp.replace(dst)
    return len(ours), unplaced
