"""MAWE (the code's variant) and the paper's ratio on clips with known motion."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stt2v_ray.metrics.flow import consecutive_flows
from stt2v_ray.metrics.mawe import forward_splat, mawe, mawe_paper


def translation(frames: int = 10) -> torch.Tensor:
    """A smooth texture panned 1 px per frame (content moves left)."""
    g = torch.Generator().manual_seed(0)
    big = torch.rand(1, 3, 8, 16, generator=g) * 2 - 1
    big = F.interpolate(big, size=(48, 96), mode="bicubic", align_corners=False).clamp(-1, 1)[0]
    return torch.stack([big[:, 8:40, 4 + t:36 + t] for t in range(frames)])


def test_forward_splat_moves_pixels_and_masks_what_nothing_reached():
    left = torch.arange(12.0).view(1, 3, 4).expand(3, 3, 4)
    flow = torch.zeros(2, 3, 4)
    flow[0] = 0.6  # rounds to one pixel right
    warped, known = forward_splat(left, flow)
    assert known[:, 0].tolist() == [False] * 3 and known[:, 1:].all()
    assert torch.equal(warped[0, :, 1:], left[0, :, :3]) and (warped[:, :, 0] == 0).all()


def test_pure_translation_has_near_zero_mawe_and_a_broken_frame_raises_it():
    clip = translation()
    flows = consecutive_flows(clip)
    assert flows[:, 0].mean() == pytest.approx(-1.0, abs=0.05)
    good = mawe(clip, flows)
    assert 0 <= good < 0.2
    broken = clip.clone()
    broken[5] = broken[5].flip(-1)  # one frame that no motion explains
    assert mawe(broken) > 20 * good
    assert mawe_paper(broken) > 10 * mawe_paper(clip, flows)


def test_a_still_video_has_no_warp_error_and_zero_motion_gives_nan():
    still = translation(1).expand(6, -1, -1, -1).contiguous()
    assert mawe(still) == 0.0
    zero = torch.zeros(5, 2, 32, 32)
    assert math.isnan(mawe(still, zero)) and math.isnan(mawe_paper(still, zero))


def test_flows_of_the_wrong_shape_are_rejected():
    clip = translation(4)
    with pytest.raises(ValueError, match=r"flows must be \(F-1, 2, H, W\) = \(3, 2, 32, 32\), got \(2, 2, 32, 32\)"):
        mawe(clip, torch.zeros(2, 2, 32, 32))
