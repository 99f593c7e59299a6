"""The prompt in the time embedding (toy preset): a zero-initialised no-op that, once
trained, makes the prompt reach every block; chunk 0 (the diffusers UNet) and the streaming
UNet compute the same function with it."""
from __future__ import annotations

import torch

from stt2v_ray.models.blocks.text_time import text_time_condition, unet_kwargs
from stt2v_ray.models.modelscope.t2v import build_tiny_streaming_unet3d
from stt2v_ray.models.toy import toy


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 48, 4, 8, 8, generator=g)
    text = torch.randn(2, toy.MAX_TOKENS, toy.WIDTH, generator=g)
    return sample, torch.tensor(500), text


def test_zero_init_projection_changes_nothing():
    unet = toy.build_unet(48).eval()
    sample, t, text = inputs()
    with torch.no_grad():
        plain = unet(sample, t, encoder_hidden_states=text).sample
        with_text = unet(sample, t, encoder_hidden_states=text, **unet_kwargs(unet, text)).sample
    assert torch.equal(plain, with_text)
    assert torch.equal(unet.time_embedding.cond_proj.weight, torch.zeros(unet.time_embedding.cond_proj.weight.shape))


def test_trained_projection_carries_every_word():
    unet = toy.build_unet(48).eval()
    with torch.no_grad():
        unet.time_embedding.cond_proj.weight.normal_(0, 0.5)
    sample, t, text = inputs()
    other = text.clone()
    other[:, 2] = 0.0  # another word at one position (as a colour word is)
    assert torch.equal(text_time_condition(unet.time_embedding, text), text.flatten(1))
    with torch.no_grad():
        a = unet(sample, t, encoder_hidden_states=text, **unet_kwargs(unet, text)).sample
        plain = unet(sample, t, encoder_hidden_states=text).sample
        b = unet(sample, t, encoder_hidden_states=other, **unet_kwargs(unet, other)).sample
    assert not torch.allclose(a, plain) and not torch.allclose(a, b)


def test_streaming_unet_without_cam_equals_the_diffusers_forward_with_text_in_time():
    _, _, model = toy.t2v_modules()
    with torch.no_grad():
        model.unet.time_embedding.cond_proj.weight.normal_(0, 0.5)
    sample, t, text = inputs(1)
    with torch.no_grad():
        ours = model(sample, t, text)
        theirs = model.unet(sample, t, encoder_hidden_states=text, **unet_kwargs(model.unet, text)).sample
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_cam_copy_takes_the_text_too():
    _, _, model = toy.t2v_modules()
    toy.recopy_cam(model)
    assert model.cam.time_embedding.cond_proj is not None  # copied with the UNet's time embedding
    with torch.no_grad():
        model.cam.time_embedding.cond_proj.weight.normal_(0, 0.5)
    sample, t, text = inputs(2)
    frames = torch.rand(2 * 4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        skips_a, mid_a = model.cam(sample, t, text, frames)
        skips_b, mid_b = model.cam(sample, t, torch.zeros_like(text), frames)
    assert not torch.allclose(mid_a, mid_b)


def test_unets_without_the_projection_get_no_extra_argument():
    model = build_tiny_streaming_unet3d()
    text = torch.zeros(1, 4, 32)
    assert unet_kwargs(model.unet, text) == {} and text_time_condition(model.unet.time_embedding, text) is None
    assert unet_kwargs(torch.nn.Linear(2, 2), text) == {}  # no time embedding at all
