"""EMA-VFI behind the `Interpolator` interface: strict loading of the official checkpoint, the
interpolator, and the preset builder. The network itself is in `ema_vfi_net.py`.

How the original runs it in StreamingSVD (code/i2v_enhance/i2v_enhance_interface.py, `main`):
frames in [0,1] with channels reversed (RGB -> BGR, the model was trained on cv2 frames), fp32,
`inference(TTA=True, fast_TTA=True)`: the pair and its 180-degree rotation go through as one batch
and the two predictions are averaged. EMA-VFI's demos pad to a multiple of 32 (replicate, centred);
we do the same and crop back.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from stt2v_ray.video.ema_vfi_net import EMA_VFI_OURS, EMA_VFI_TOY, EMAVFI, EMAVFIConfig
from stt2v_ray.video.interpolate import _check_factor

__all__ = [
    "EMA_VFI_OURS", "EMA_VFI_TOY", "EMAVFI", "EMAVFIConfig", "EMAVFIInterpolator", "build_ema_vfi",
    "convert_ema_vfi", "convert_official_state_dict", "load_ema_vfi", "read_state_dict",
]

OFFICIAL_PREFIX = "module."  # saved from a DistributedDataParallel wrapper
# Shifted-window masks the original caches as buffers for the last input size: not weights.
_CACHED_MASK = re.compile(r"^feature_bone\.block[45]\.\d+\.(attn_mask|HW)$")
_PAD = 32  # EMA-VFI's demos pad to this; the network itself needs a multiple of 16


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from `.safetensors` or, for the official pickle files, `torch.load(weights_only=True)`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EMA-VFI weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refused this file, so it is not loaded (stt2v-ray never "
            f"unpickles arbitrary objects). The official EMA-VFI ours.pkl is a plain state dict of tensors and "
            f"loads this way. torch said: {str(e).strip().splitlines()[0]}"
        ) from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (a dict of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: expected a state dict of tensors; these entries are not: {bad[:10]}")
    return obj


def convert_official_state_dict(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Official layout -> ours: strip `module.`, drop the cached window masks. Returns (state, dropped keys).
    Nothing else is renamed: our modules carry the original's names."""
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        name = key[len(OFFICIAL_PREFIX):] if key.startswith(OFFICIAL_PREFIX) else key
        if _CACHED_MASK.match(name):
            dropped.append(key)
            continue
        if name in out:
            raise ValueError(f"EMA-VFI checkpoint has both {name!r} and {OFFICIAL_PREFIX + name!r}")
        out[name] = value
    return out, dropped


def _check_keys(model: EMAVFI, state: dict[str, Tensor], source: str) -> None:
    """Strict: every parameter present with its shape, no other key. Names every offending key."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in sorted(
        set(state) & set(expected)
    ) if tuple(state[k].shape) != expected[k]]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
        if keys:
            more = f" (+{len(keys) - 10} more)" if len(keys) > 10 else ""
            problems.append(f"{label} ({len(keys)}): {', '.join(keys[:10])}{more}")
    if problems:
        cfg = model.config
        raise ValueError(
            f"EMA-VFI checkpoint {source} does not match the network (F={cfg.F}, depths={list(cfg.depths)}; "
            f"keys shown without the {OFFICIAL_PREFIX!r} prefix): " + "; ".join(problems)
        )


def load_ema_vfi(path: str | Path, config: EMAVFIConfig = EMA_VFI_OURS) -> EMAVFI:
    """Official `ours.pkl` (or our converted `.safetensors`) -> EMAVFI in eval mode, fp32, on the CPU."""
    state, _ = convert_official_state_dict(read_state_dict(path))
    with torch.device("meta"):  # no random init of 65M parameters only to overwrite them
        model = EMAVFI(config)
    _check_keys(model, state, str(path))
    model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def convert_ema_vfi(src: str | Path, dst: str | Path, config: EMAVFIConfig = EMA_VFI_OURS) -> list[str]:
    """Official checkpoint -> safetensors in our layout, checked strictly. Returns the keys dropped."""
    from safetensors.torch import save_file

    state, dropped = convert_official_state_dict(read_state_dict(src))
    with torch.device("meta"):
        model = EMAVFI(config)
    _check_keys(model, state, str(src))
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(dst))
    return dropped


class EMAVFIInterpolator:
    """`Interpolator` on EMA-VFI. factor 2: one midpoint. Larger factors: one backbone pass and a
    flow/refine pass per t for the arbitrary-timestep (`_t`) checkpoints; repeated bisection for the
    midpoint-only `ours.pkl` (so only powers of 2)."""

    def __init__(self, model: EMAVFI, device: str | torch.device = "cpu", tta: bool = True):
        self.device = torch.device(device)
        self.model = model.to(self.device, torch.float32).eval()
        self.tta = tta

    def _to_model(self, frame: Tensor, pad: list[int]) -> Tensor:
        """(3,H,W) RGB in [-1,1] -> (1,3,H',W') BGR in [0,1], replicate-padded to a multiple of 32."""
        x = ((frame.to(self.device, torch.float32) + 1) / 2).flip(0).unsqueeze(0)
        return F.pad(x, pad, mode="replicate")

    def _predict(self, x0: Tensor, x1: Tensor, times: list[float]) -> list[Tensor]:
        if self.tta:  # the pair and its 180-degree rotation in one batch
            x0, x1 = torch.cat([x0, x0.flip(2, 3)]), torch.cat([x1, x1.flip(2, 3)])
        af, mf = self.model.features(x0, x1)
        out = []
        for t in times:
            flow, mask = self.model.flow(x0, x1, af, mf, t)
            pred = self.model.refine(x0, x1, af, flow, mask)
            out.append((pred[:1] + pred[1:].flip(2, 3)) / 2 if self.tta else pred)
        return out

    def _bisect(self, x0: Tensor, x1: Tensor, levels: int) -> list[Tensor]:
        if levels == 0:
            return []
        mid = self._predict(x0, x1, [0.5])[0]
        return self._bisect(x0, mid, levels - 1) + [mid] + self._bisect(mid, x1, levels - 1)

    @torch.inference_mode()
    def midframes(self, a: Tensor, b: Tensor, factor: int) -> Tensor:
        _check_factor(factor)
        if a.ndim != 3 or a.shape[0] != 3 or a.shape != b.shape:
            raise ValueError(f"midframes expects two (3,H,W) frames of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        if factor == 1:
            return a.new_zeros((0, *a.shape))
        power_of_two = factor & (factor - 1) == 0
        if not self.model.config.arbitrary_timestep and not power_of_two:
            raise ValueError(
                f"interpolation factor {factor}: this EMA-VFI checkpoint (ours.pkl) is trained for the midpoint "
                f"only, so it supports factors 2, 4, 8, ...; use an arbitrary-timestep (_t) checkpoint for {factor}"
            )
        # 1. To the model's space: BGR [0,1], padded (centred, replicate) to a multiple of 32.
        h, w = a.shape[-2:]
        ph, pw = -h % _PAD, -w % _PAD
        pad = [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]
        x0, x1 = self._to_model(a, pad), self._to_model(b, pad)
        # 2. The frames at t = i/factor.
        if self.model.config.arbitrary_timestep:
            preds = self._predict(x0, x1, [i / factor for i in range(1, factor)])
        else:
            preds = self._bisect(x0, x1, factor.bit_length() - 1)
        # 3. Back: crop, RGB, [-1,1], on the caller's device.
        out = torch.cat(preds)[:, :, pad[2] : pad[2] + h, pad[0] : pad[0] + w].flip(1) * 2 - 1
        return out.to(a.device)


def _weights_path(run_settings) -> Path:
    """Through `models.blocks.weights` (hub id or local path; MissingWeightsError) when the preset declares an
    `interpolator` weight source; otherwise weights.paths.interpolator must be a local file."""
    from stt2v_ray.presets import get_preset

    preset = get_preset(run_settings.preset)
    if any(src.component == "interpolator" for src in preset.sources):
        from stt2v_ray.models.blocks.weights import resolve_weights

        return resolve_weights(preset, run_settings.weights.paths, ["interpolator"])["interpolator"].path
    path = run_settings.weights.paths.get("interpolator")
    if not path:
        raise FileNotFoundError(
            "EMA-VFI weights are not set: point the setting weights.paths.interpolator at ours.pkl "
            "(the EMA-VFI authors' checkpoint folder is linked from github.com/MCG-NJU/EMA-VFI) or at its "
            "converted .safetensors"
        )
    if not Path(path).is_file():
        raise FileNotFoundError(f"EMA-VFI weights file {path} (setting weights.paths.interpolator) does not exist")
    return Path(path)


def build_ema_vfi(run_settings, device: str | torch.device = "cpu") -> EMAVFIInterpolator:
    """Preset builder: `ours.pkl` from weights.paths.interpolator, or full-size random weights
    (`weights.mode: random`, for profiling; never real output)."""
    if run_settings.weights.mode == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = EMAVFI(EMA_VFI_OURS)
    else:
        model = load_ema_vfi(_weights_path(run_settings), EMA_VFI_OURS)
    return EMAVFIInterpolator(model, device)


def build_ema_vfi_toy(run_settings, device: str | torch.device = "cpu") -> EMAVFIInterpolator:
    """The toy config with seeded random weights (the `streamingsvd-toy` preset: CPU tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = EMAVFI(EMA_VFI_TOY)
    return EMAVFIInterpolator(model, device)


def interpolator_parameter_counts() -> dict[str, dict[str, int]]:
    """The full-size EMA-VFI's parameter count, built on the meta device (no memory, no download)."""
    with torch.device("meta"):
        vfi = EMAVFI(EMA_VFI_OURS)
    return {"interpolator": {"EMA-VFI (ours)": sum(p.numel() for p in vfi.parameters())}}
