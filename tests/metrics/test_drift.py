"""Appearance drift against the anchor frame."""
from __future__ import annotations

import pytest
import torch

from stt2v_ray.data import clip_for_prompt
from stt2v_ray.metrics.drift import appearance_drift, drift_curve


def test_a_static_clip_does_not_drift_and_motion_alone_barely_does():
    still = clip_for_prompt("a red circle moving right on a black background", num_frames=1).frames.expand(20, -1, -1, -1)
    assert appearance_drift(still) == {"drift_last": 0.0, "drift_slope": 0.0}
    moving = clip_for_prompt("a red circle moving right on a black background", num_frames=20).frames
    assert appearance_drift(moving)["drift_last"] < 0.01


def test_a_colour_changing_clip_drifts_steadily():
    clip = clip_for_prompt("a red square moving right on a gray background", num_frames=30).frames
    fade = torch.linspace(0, 1, 30).view(-1, 1, 1, 1)
    changing = clip * (1 - fade) + fade * torch.tensor([0.0, 0.8, -0.8]).view(1, 3, 1, 1)
    drift = appearance_drift(changing)
    assert drift["drift_last"] > 0.5 and drift["drift_slope"] > 1.0
    curve = drift_curve(changing)
    assert curve[0] == 0 and curve[-1] > curve[10]
    # Against a later anchor, only the frames after it count.
    assert appearance_drift(changing, anchor=29) == {"drift_last": 0.0, "drift_slope": pytest.approx(float("nan"), nan_ok=True)}


def test_the_anchor_must_be_a_frame():
    clip = clip_for_prompt("a red square moving right on a gray background", num_frames=3).frames
    with pytest.raises(ValueError, match=r"anchor frame must be in \[0, 3\), got 3"):
        drift_curve(clip, 3)
