"""`stt2v-ray convert`: an original checkpoint -> this project's layout, through its family's key mapping.

The mappings live beside their families (`svd/convert.py`, `modelscope/convert.py`); the safe
reader is `blocks/checkpoint.py`. Output is always safetensors.
"""
from __future__ import annotations

from pathlib import Path

from stt2v_ray.models.blocks.checkpoint import read_checkpoint


def converter(preset: str):
    """The key mapping of a preset's streaming checkpoint: module with convert_state_dict(state) -> (ours, unplaced)."""
    if preset in ("streamingsvd", "streamingsvd-toy"):
        from stt2v_ray.models.svd import convert as convert_svd

        return convert_svd
    if preset in ("streamingt2v", "streamingt2v-toy"):
        from stt2v_ray.models.modelscope import convert as convert_streamingt2v

        return convert_streamingt2v
    raise ValueError(f"no checkpoint converter for preset {preset!r} (available: streamingsvd, streamingt2v)")


def convert_file(preset: str, src: str | Path, dst: str | Path) -> tuple[int, list[str]]:
    """Convert src into dst (safetensors); -> (tensors written, keys that could not be placed)."""
    from safetensors.torch import save_file

    kwargs = {}
    if preset == "streamingsvd-toy":  # the toy preset's sizes (same classes)
        from stt2v_ray.models.svd.configs import TOY_UNET, TOY_VAE

        kwargs = dict(unet_config=TOY_UNET, vae_levels=len(TOY_VAE["block_out_channels"]), vae_layers=TOY_VAE["layers_per_block"])
    ours, unplaced = converter(preset).convert_state_dict(read_checkpoint(src), **kwargs)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({k: v.contiguous() for k, v in ours.items()}, str(tmp), metadata={"format": "pt", "layout": f"stt2v-ray/{preset}"})
    tmp.replace(dst)
    return len(ours), unplaced
