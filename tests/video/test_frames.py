import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stt2v_ray.video.frames import center_crop_resize, from_uint8, load_image, resize_frames, to_uint8


def test_to_uint8_clamps_and_rounds_half_up():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0, -1 + 64.5 / 127.5])
    assert ((x[-1] + 1) * 127.5).item() == 64.5  # an exact half in float32
    frame = x.view(1, 1, 6).expand(3, 1, 6)
    out = to_uint8(frame)
    assert out.dtype == np.uint8 and out.shape == (1, 6, 3)
    # torch.round would give 64 (half to even) for the last value.
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 128, 255, 255, 65])


def test_to_uint8_shapes_and_channel_order():
    frames = torch.zeros(2, 3, 4, 5)
    frames[:, 0] = 1.0  # red
    out = to_uint8(frames)
    assert out.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(out[1, 3, 4], [255, 128, 128])
    assert to_uint8(frames[0]).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"to_uint8 expects \(F,3,H,W\) or \(3,H,W\) frames, got shape \(4, 5\)"):
        to_uint8(torch.zeros(4, 5))


def test_uint8_round_trip_is_exact():
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    frames = from_uint8(images)
    assert frames.dtype == torch.float32 and frames.shape == (1, 3, 16, 16)
    assert frames.min().item() == -1.0 and frames.max().item() == 1.0
    np.testing.assert_array_equal(to_uint8(frames), images)
    np.testing.assert_array_equal(to_uint8(from_uint8(images[0])), images[0])
    with pytest.raises(ValueError, match="from_uint8 expects uint8"):
        from_uint8(images.astype(np.float32))


def test_resize_frames_matches_torch_with_antialias_only_for_downscale():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 16, 24, generator=g) * 2 - 1
    down = resize_frames(frames, 8, 12)
    torch.testing.assert_close(down, F.interpolate(frames, size=(8, 12), mode="bilinear", antialias=True))
    up = resize_frames(frames[0], 32, 48)
    assert up.shape == (3, 32, 48)
    ref = F.interpolate(frames[:1], size=(32, 48), mode="bilinear", antialias=False)[0]
    torch.testing.assert_close(up, ref)
    constant = torch.full((3, 10, 10), 0.25)
    torch.testing.assert_close(resize_frames(constant, 5, 7), torch.full((3, 5, 7), 0.25))


def test_center_crop_resize_crops_the_middle_to_the_target_aspect():
    wide = torch.arange(8.0).view(1, 1, 8).expand(3, 4, 8) / 8  # column index per pixel
    torch.testing.assert_close(center_crop_resize(wide, 4, 4), wide[..., 2:6])
    tall = wide.transpose(1, 2)  # (3, 8, 4)
    torch.testing.assert_close(center_crop_resize(tall, 4, 4), tall[:, 2:6, :])
    assert center_crop_resize(torch.zeros(2, 3, 30, 50), 8, 16).shape == (2, 3, 8, 16)


def test_load_image_converts_to_rgb(tmp_path):
    rgba = np.zeros((6, 10, 4), dtype=np.uint8)
    rgba[..., 0] = np.arange(10, dtype=np.uint8) * 20
    rgba[..., 2] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "img.png")
    expected = from_uint8(np.ascontiguousarray(rgba[..., :3]))
    for uri in (str(tmp_path / "img.png"), f"file://{tmp_path}/img.png"):
        image = load_image(uri)
        assert image.shape == (3, 6, 10) and image.dtype == torch.float32
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
