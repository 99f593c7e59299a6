"""CAM and APM building blocks, and the zero-init identity of the streaming UNet."""
from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from stt2v_ray.models.blocks.apm import APM, APMAttnProcessor
from stt2v_ray.models.blocks.cam import CAMInjector, FrameEncoder
from stt2v_ray.models.modelscope.t2v import build_tiny_streaming_unet3d, wake_zero_init


def seeded(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def fresh():
    return build_tiny_streaming_unet3d(seed=0)


@pytest.fixture(scope="module")
def inputs():
    sample = seeded((2, 4, 8, 8, 8), 1)  # (B, c, F, h, w)
    text = seeded((2, 32, 32), 2)
    cond = seeded((2, 4, 3, 32, 32), 3).clamp(-1, 1)  # (B, Fc, 3, H, W)
    image_tokens = seeded((2, 4, 32), 4)
    return sample, torch.tensor(500), text, cond, image_tokens


# ---------------------------------------------------------------- FrameEncoder


@pytest.mark.parametrize("channels, downsamples, size", [((8, 16, 32), 2, 8), ((8, 16), 3, 4), ((32, 96, 256, 512), 3, 4)])
def test_frame_encoder_shape_and_zero_init(channels, downsamples, size):
    enc = FrameEncoder(24, channels, downsamples)
    out = enc(seeded((3, 3, 32, 32), 0))
    assert out.shape == (3, 24, size, size)
    assert torch.equal(out, torch.zeros_like(out))
    assert sum(isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2) for m in enc.modules()) == downsamples


def test_frame_encoder_rejects_bad_size():
    with pytest.raises(ValueError, match=r"frame size \(30, 32\) must be divisible by 4"):
        FrameEncoder(8, (8, 16), 2)(torch.zeros(1, 3, 30, 32))


# ---------------------------------------------------------------- CAMInjector


def test_cam_injector_zero_init_residual_is_zero():
    inj = CAMInjector(32, head_dim=16, norm_groups=8)
    assert inj.heads == 2
    out = inj(seeded((2 * 6, 32, 4, 4), 0), seeded((2 * 3, 32, 4, 4), 1), 6, 3)
    assert out.shape == (12, 32, 4, 4)
    assert torch.equal(out, torch.zeros_like(out))


def test_cam_injector_attends_per_pixel_over_cond_frames():
    inj = CAMInjector(16, head_dim=8, norm_groups=4)
    with torch.no_grad():
        inj.proj_out.weight.copy_(seeded((16, 16), 9) * 0.5)
    x, cond = seeded((2 * 5, 16, 3, 4), 0), seeded((2 * 2, 16, 3, 4), 1)
    out = inj(x, cond, 5, 2)
    assert out.abs().max() > 0
    # batches are independent: changing batch 1's cond frames leaves batch 0 as it was
    cond2 = cond.clone()
    cond2[2:] += 1.0
    out2 = inj(x, cond2, 5, 2)
    assert torch.equal(out2[:5], out[:5]) and not torch.allclose(out2[5:], out[5:])
    # keys/values are a set of frames (no frame position): swapping the cond frames changes nothing
    torch.testing.assert_close(inj(x, cond[[1, 0, 3, 2]], 5, 2), out)
    # per-pixel attention: mirroring both inputs mirrors the output
    torch.testing.assert_close(inj(x.flip(-1), cond.flip(-1), 5, 2), out.flip(-1))


def test_cam_injector_heads_clamped_and_checks():
    assert CAMInjector(32, head_dim=64, norm_groups=32).heads == 1
    with pytest.raises(ValueError, match=r"norm_groups \(32\) must divide channels \(48\)"):
        CAMInjector(48, norm_groups=32)
    inj = CAMInjector(8, head_dim=8, norm_groups=4)
    with pytest.raises(ValueError, match="disagree on the batch size"):
        inj(torch.zeros(8, 8, 2, 2), torch.zeros(3, 8, 2, 2), 4, 1)


# ---------------------------------------------------------------- APM


def test_apm_tokens_shape(fresh):
    tokens = fresh.apm(seeded((2, 3, 32, 32), 0).clamp(-1, 1))
    assert tokens.shape == (2, 4, 32)
    with pytest.raises(ValueError, match=r"expected images \(N, 3, H, W\), got \(3, 32, 32\)"):
        fresh.apm(torch.zeros(3, 32, 32))


def test_apm_processors_only_in_spatial_cross_attention(fresh):
    names = sorted(APM.processors(fresh.unet))
    assert names == [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor",
        "mid_block.attentions.0.transformer_blocks.0.attn2.processor",
        "up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor",
        "up_blocks.1.attentions.1.transformer_blocks.0.attn2.processor",
    ]
    others = {k: v for k, v in fresh.unet.attn_processors.items() if k not in names}
    assert len(others) == 14 and all(type(p) is AttnProcessor2_0 for p in others.values())
    # the CAM copy keeps the default processor everywhere (text tokens only)
    assert not any(isinstance(m, APMAttnProcessor) for m in fresh.cam.modules())


def test_apm_processor_zero_alpha_is_default_attention(fresh):
    attn = fresh.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    proc = APM.processors(fresh.unet)["down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor"]
    hidden, text, image = seeded((3, 16, 32), 0), seeded((3, 32, 32), 1), seeded((3, 4, 32), 2)
    want = AttnProcessor2_0()(attn, hidden, text)
    assert torch.equal(proc(attn, hidden, torch.cat([text, image], 1)), want)
    assert torch.equal(proc(attn, hidden, text), want)
    with pytest.raises(ValueError, match="expected 32 text tokens or 32 \\+ 4 text \\+ image tokens, got 33"):
        proc(attn, hidden, torch.cat([text, image[:, :1]], 1))


def test_apm_processor_alpha_mixes_image_tokens():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        proc = APMAttnProcessor(6, 2, 8)
        attn = Attention(query_dim=8, cross_attention_dim=8, heads=2, dim_head=4)
    proc.alpha.data.fill_(1.0)
    hidden, tokens = seeded((1, 5, 8), 0), seeded((1, 8, 8), 1)
    plain = AttnProcessor2_0()(attn, hidden, tokens[:, :6])
    mixed_tokens = tokens[:, :6] + torch.nn.functional.silu(torch.tensor(1.0)) * proc.norm(proc.conv(tokens))
    torch.testing.assert_close(proc(attn, hidden, tokens), AttnProcessor2_0()(attn, hidden, mixed_tokens))
    assert not torch.allclose(proc(attn, hidden, tokens), plain)


# ---------------------------------------------------------------- StreamingUNet3D


def test_zero_init_identity(fresh, inputs):
    sample, t, text, cond, image_tokens = inputs
    with torch.no_grad():
        base = fresh.unet(sample, t, encoder_hidden_states=text).sample
        assert torch.equal(fresh(sample, t, text), base)
        assert torch.equal(fresh(sample, t, text, cond, image_tokens), base)


def test_woken_cam_and_apm_change_the_output(inputs):
    sample, t, text, cond, image_tokens = inputs
    model = build_tiny_streaming_unet3d(seed=0)
    wake_zero_init(model, seed=0)
    with torch.no_grad():
        base = model.unet(sample, t, encoder_hidden_states=text).sample
        # without conditioning the streaming forward still equals the base UNet
        assert torch.equal(model(sample, t, text), base)
        with_cam = model(sample, t, text, cond)
        with_apm = model(sample, t, text, None, image_tokens)
        other_cond = model(sample, t, text, -cond)
    assert with_cam.shape == base.shape == (2, 4, 8, 8, 8)
    assert (with_cam - base).abs().max() > 1e-4
    assert (with_apm - base).abs().max() > 1e-4
    assert (with_cam - other_cond).abs().max() > 1e-5


def test_cam_has_one_injector_per_skip(fresh):
    # conv_in/transformer_in + (resnet + downsampler) of block 0 + resnet of block 1
    assert [inj.proj_in.in_features for inj in fresh.cam.skip_injectors] == [32, 32, 32, 64]
    assert fresh.cam.mid_injector.proj_in.in_features == 64
    # the copy starts with the base UNet's weights
    assert torch.equal(fresh.cam.down_blocks[0].resnets[0].conv1.weight, fresh.unet.down_blocks[0].resnets[0].conv1.weight)
    assert fresh.cam.conv_in.weight.data_ptr() != fresh.unet.conv_in.weight.data_ptr()


def test_streaming_unet_rejects_bad_cond(fresh, inputs):
    sample, t, text, cond, _ = inputs
    with pytest.raises(ValueError, match=r"cond_frames \(1, 4, 3, 32, 32\) must be \(B=2, Fc<=8, 3, H, W\)"):
        fresh(sample, t, text, cond[:1])


def test_frame_positions_let_identical_frames_attend_differently():
    from stt2v_ray.models.blocks.cam import CAMInjector

    torch.manual_seed(0)
    plain, placed = CAMInjector(16, head_dim=8, norm_groups=4), CAMInjector(16, head_dim=8, norm_groups=4, frame_positions=6)
    placed.load_state_dict({**placed.state_dict(), **plain.state_dict()})  # same weights but the positions
    x = torch.randn(1, 16, 2, 2).repeat(6, 1, 1, 1)  # 6 identical chunk frames
    cond = torch.randn(3, 16, 2, 2)  # 3 different conditioning frames
    assert torch.equal(placed(x, cond, 6, 3), torch.zeros_like(x))  # zero proj_out: still a no-op
    for injector in (plain, placed):
        torch.nn.init.eye_(injector.proj_out.weight)
    a, b = plain(x, cond, 6, 3), placed(x, cond, 6, 3)
    assert all(torch.allclose(a[0], a[j]) for j in range(6))  # no positions: every frame gets the same mix
    assert not torch.allclose(b[0], b[5])
    with pytest.raises(ValueError, match="7 frames .* but only 6 learned frame positions"):
        placed(torch.randn(7, 16, 2, 2), cond, 7, 3)
