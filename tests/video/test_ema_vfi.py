"""EMA-VFI: architecture vs the official key layout, strict loading, weights_only refusal, and the
interpolator's contract (toy config, random weights: shapes, determinism, range, not quality)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stt2v_ray.config import RunSettings
from stt2v_ray.video.ema_vfi import (
    EMA_VFI_OURS,
    EMA_VFI_TOY,
    EMAVFI,
    EMAVFIConfig,
    EMAVFIInterpolator,
    build_ema_vfi,
    convert_ema_vfi,
    load_ema_vfi,
    read_state_dict,
)
from stt2v_ray.video.interpolate import StreamingInterpolator, interpolate_video

MIDPOINT_TOY = EMAVFIConfig(F=8, depths=(1, 1, 1, 2, 2), arbitrary_timestep=False)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convs lose more to thread hand-off than they gain (the project runs workers at cpu_threads=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _toy(cfg: EMAVFIConfig = EMA_VFI_TOY, seed: int = 0) -> EMAVFI:
    torch.manual_seed(seed)
    return EMAVFI(cfg).eval()


def _official(model: EMAVFI) -> dict[str, torch.Tensor]:
    """The layout of the official ours.pkl: DDP's `module.` prefix on every key, plus the shifted-window
    masks the original caches as buffers (attn_mask (nW, N, N), HW (1,)) in every odd block of stages 4/5."""
    sd = {"module." + k: v.clone() for k, v in model.state_dict().items()}
    for stage, depth in ((4, model.config.depths[3]), (5, model.config.depths[4])):
        for j in range(1, depth, 2):
            sd[f"module.feature_bone.block{stage}.{j}.attn_mask"] = torch.zeros(25, 49, 49)
            sd[f"module.feature_bone.block{stage}.{j}.HW"] = torch.tensor([1225.0])
    return sd


def _frames(h: int, w: int, n: int = 2, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) * 2 - 1 for _ in range(n)]


# ---------------------------------------------------------------- architecture (meta device)


def test_full_size_parameter_count_and_key_layout():
    # ours.pkl: F=32, W=7, depth [2,2,2,4,4]. 65,662,359 parameters, computed here on the meta device;
    # the same count as the original network built from MCG-NJU/EMA-VFI's code (its state dict loads
    # strictly into ours). ours_small (F=16, depth [2]*5): 14,489,815.
    with torch.device("meta"):
        model = EMAVFI(EMA_VFI_OURS)
        small = EMAVFI(EMAVFIConfig(F=16, depths=(2, 2, 2, 2, 2)))
    assert sum(p.numel() for p in model.parameters()) == 65_662_359
    assert sum(p.numel() for p in small.parameters()) == 14_489_815
    sd = model.state_dict()
    assert len(sd) == 266  # the original's 274 keys minus its 8 cached attn_mask/HW buffers
    # Key names and shapes read off the original code (feature_extractor.py, flow_estimation.py, refine.py).
    expected = {
        "feature_bone.block1.conv.3.weight": (32,),  # PReLU after the second conv of stage 1
        "feature_bone.patch_embed4.layers.6.weight": (32, 32, 3, 3),  # 7 dilated convs, the last on stage 1
        "feature_bone.patch_embed4.proj.weight": (256, 224, 1, 1),
        "feature_bone.block4.0.attn.cor_embed.weight": (64, 2),  # motion dim 8F/4
        "feature_bone.block5.0.attn.kv.weight": (1024, 512),
        "feature_bone.block5.3.mlp.dwconv.dwconv.weight": (2048, 1, 3, 3),
        "feature_bone.patch_embed5.proj.weight": (512, 256, 3, 3),
        "feature_bone.norm5.weight": (512,),
        "block.0.conv.0.0.weight": (128, 134, 3, 3),  # 32F*2/16 + 6
        "block.1.conv.0.0.weight": (128, 81, 3, 3),  # 16F*2/16 + 17
        "block.1.conv.2.1.weight": (5,),
        "unet.down0.conv1.0.weight": (128, 81, 3, 3),
        "unet.up0.0.weight": (2048, 512, 4, 4),
        "unet.conv.weight": (3, 64, 3, 3),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected


def test_config_validation():
    with pytest.raises(ValueError, match="attention-stage depths must divide 32"):
        EMAVFIConfig(depths=(2, 2, 2, 3, 4))
    with pytest.raises(ValueError, match="F a multiple of 4"):
        EMAVFIConfig(F=6)


# ---------------------------------------------------------------- loading


def test_official_layout_loads_strictly_and_converts(tmp_path):
    source = _toy()
    official = _official(source)
    torch.save(official, tmp_path / "ours.pkl")
    loaded = load_ema_vfi(tmp_path / "ours.pkl", EMA_VFI_TOY)
    want = source.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    # convert once to safetensors; the cached masks are the only keys dropped
    dropped = convert_ema_vfi(tmp_path / "ours.pkl", tmp_path / "ema_vfi.safetensors", EMA_VFI_TOY)
    assert dropped == [
        "module.feature_bone.block4.1.attn_mask", "module.feature_bone.block4.1.HW",
        "module.feature_bone.block5.1.attn_mask", "module.feature_bone.block5.1.HW",
    ]
    again = load_ema_vfi(tmp_path / "ema_vfi.safetensors", EMA_VFI_TOY).state_dict()
    assert all(torch.equal(again[k], want[k]) for k in want)


def test_missing_key_is_named(tmp_path):
    sd = _official(_toy())
    del sd["module.feature_bone.block4.0.attn.motion_proj.bias"]
    torch.save(sd, tmp_path / "ours.pkl")
    with pytest.raises(ValueError, match=r"missing keys \(1\): feature_bone\.block4\.0\.attn\.motion_proj\.bias$"):
        load_ema_vfi(tmp_path / "ours.pkl", EMA_VFI_TOY)


def test_unexpected_and_misshapen_keys_are_named(tmp_path):
    sd = _official(_toy())
    sd["module.unet.down4.conv1.0.weight"] = torch.zeros(1)
    sd["module.block.0.conv.2.1.weight"] = torch.zeros(4)
    torch.save(sd, tmp_path / "ours.pkl")
    with pytest.raises(ValueError) as err:
        load_ema_vfi(tmp_path / "ours.pkl", EMA_VFI_TOY)
    msg = str(err.value)
    assert "unexpected keys (1): unet.down4.conv1.0.weight" in msg
    assert "shape mismatches (1): block.0.conv.2.1.weight (4,) != (5,)" in msg
    assert "missing keys" not in msg


def test_full_config_rejects_toy_checkpoint(tmp_path):
    torch.save(_official(_toy()), tmp_path / "ours.pkl")
    with pytest.raises(ValueError, match=r"does not match the network \(F=32, depths=\[2, 2, 2, 4, 4\]"):
        load_ema_vfi(tmp_path / "ours.pkl", EMA_VFI_OURS)


class _Payload:
    """Unpickling this would create a file: weights_only loading must refuse it before that."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "unpickled"
    sd = {"module.unet.conv.bias": torch.zeros(3), "extra": _Payload(marker)}
    torch.save(sd, tmp_path / "ours.pkl")
    with pytest.raises(ValueError, match=r"ours\.pkl: torch\.load\(weights_only=True\) refused this file"):
        read_state_dict(tmp_path / "ours.pkl")
    assert not marker.exists()


def test_non_tensor_entries_and_missing_file(tmp_path):
    torch.save({"module.unet.conv.bias": torch.zeros(3), "epoch": 3}, tmp_path / "x.pkl")
    with pytest.raises(ValueError, match=r"these entries are not: \['epoch'\]"):
        read_state_dict(tmp_path / "x.pkl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pkl")


# ---------------------------------------------------------------- interpolator (toy, random weights)


@pytest.fixture(scope="module")
def toy_interp() -> EMAVFIInterpolator:
    return EMAVFIInterpolator(_toy(), "cpu")


def test_factor_one_gives_no_frames(toy_interp):
    a, b = _frames(20, 44)
    assert toy_interp.midframes(a, b, 1).shape == (0, 3, 20, 44)


@pytest.mark.parametrize("factor", [2, 3])
def test_midframes_shapes_range_determinism(toy_interp, factor):
    a, b = _frames(20, 44)  # neither side a multiple of 32: padded to 32x64 and cropped back
    out = toy_interp.midframes(a, b, factor)
    assert out.shape == (factor - 1, 3, 20, 44) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, toy_interp.midframes(a, b, factor))
    assert torch.equal(out, EMAVFIInterpolator(_toy(), "cpu").midframes(a, b, factor))  # same seed, same frames


def test_arbitrary_timestep_frames_differ_and_reverse(toy_interp):
    a, b = _frames(20, 44)
    out = toy_interp.midframes(a, b, 3)  # t = 1/3, 2/3 from one backbone pass
    assert not torch.equal(out[0], out[1])
    mid = toy_interp.midframes(a, b, 2)[0]
    assert not torch.equal(mid, out[0]) and not torch.equal(mid, out[1])


def test_tta_makes_prediction_rotation_equivariant(toy_interp):
    # fast TTA averages the pair with its 180-degree rotation, so rotating the inputs rotates the output
    # (padding here is even on every side, so padding commutes with the rotation).
    a, b = _frames(20, 44)
    out = toy_interp.midframes(a, b, 2)
    rot = toy_interp.midframes(a.flip(1, 2), b.flip(1, 2), 2)
    torch.testing.assert_close(rot, out.flip(2, 3), atol=1e-5, rtol=0)
    plain = EMAVFIInterpolator(_toy(), "cpu", tta=False)
    assert not torch.allclose(plain.midframes(a.flip(1, 2), b.flip(1, 2), 2), plain.midframes(a, b, 2).flip(2, 3), atol=1e-3)


def test_midpoint_model_bisects_powers_of_two_only():
    interp = EMAVFIInterpolator(_toy(MIDPOINT_TOY), "cpu")
    a, b = _frames(24, 40)
    four = interp.midframes(a, b, 4)
    assert four.shape == (3, 3, 24, 40)
    torch.testing.assert_close(four[1], interp.midframes(a, b, 2)[0], atol=0, rtol=0)  # t=1/2 is the same pass
    with pytest.raises(ValueError, match="trained for the midpoint only, so it supports factors 2, 4, 8"):
        interp.midframes(a, b, 3)


def test_bad_inputs(toy_interp):
    a, b = _frames(20, 44)
    with pytest.raises(ValueError, match=r"two \(3,H,W\) frames of one shape"):
        toy_interp.midframes(a, b[:, :10], 2)
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        toy_interp.midframes(a, b, 0)


def test_streaming_interpolator_with_ema_vfi(toy_interp):
    frames = _frames(20, 44, n=4)
    stream = StreamingInterpolator(toy_interp, 2)
    out = [f for frame in frames for f in stream.push(frame)] + stream.flush()
    assert len(out) == 7  # (N-1)*factor + 1
    assert all(torch.equal(out[2 * i], frames[i]) for i in range(4))
    batch = interpolate_video(torch.stack(frames), 2, toy_interp)
    assert torch.equal(torch.stack(out), batch)


# ---------------------------------------------------------------- preset builder


def test_builder_names_the_setting_when_weights_are_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights.paths.interpolator"):
        build_ema_vfi(RunSettings(), "cpu")
    run = RunSettings(weights={"paths": {"interpolator": str(tmp_path / "ours.pkl")}})
    with pytest.raises(FileNotFoundError, match=r"ours\.pkl \(setting weights\.paths\.interpolator\) does not exist"):
        build_ema_vfi(run, "cpu")
