"""Seam statistics: border transitions from the chunk plan, equal values for an even clip, jumps seen."""
from __future__ import annotations

import math

import pytest
import torch

from stt2v_ray.data import clip_for_prompt
from stt2v_ray.metrics.seams import SEAM_COLUMNS, seam_stats, seam_transitions
from stt2v_ray.metrics.track import track_object


def test_seam_transitions_follow_the_base_plan_and_interpolation():
    # Chunks of 8 conditioned on 4: chunk starts at base frames 8, 12, 16, ...
    assert seam_transitions(20, 1, 8, 4) == [7, 11, 15]
    # Factor 2: 17 base frames, base frame i is output frame 2i; the seam 7|8 covers output
    # transitions 14 and 15, the seams 11|12 and 15|16 transitions 22, 23 and 30, 31.
    assert seam_transitions(33, 2, 8, 4) == [14, 15, 22, 23, 30, 31]
    assert seam_transitions(8, 1, 8, 4) == []
    with pytest.raises(ValueError, match="need num_frames >= 1 and factor >= 1, got 0 and 1"):
        seam_transitions(0, 1, 8, 4)


def test_an_evenly_moving_clip_has_equal_statistics_at_seams_and_inside():
    # 4 px per frame to the right, far from the walls for 24 frames. Each pair of frames is the
    # previous pair shifted by 4 px, which the flow's pyramid (32 -> 16 -> 8 rows) maps onto itself.
    clip = clip_for_prompt("a green square moving right on a black background", num_frames=24, height=32,
                           width=192, speed=4.0, start=(40.0, 15.0))
    seams = seam_transitions(24, 1, 8, 4)
    stats = seam_stats(clip.frames, seams, centres=track_object(clip.frames).centres)
    assert set(stats) == set(SEAM_COLUMNS)
    for name in ("flow_mean", "flow_std", "diff_mean"):
        assert stats[f"seam_{name}"] == pytest.approx(stats[f"inside_{name}"], rel=1e-3), name
    assert stats["seam_jump_mean"] == pytest.approx(4.0, abs=1e-3)
    assert stats["inside_step_mean"] == pytest.approx(4.0, abs=1e-3)
    assert stats["jump_ratio"] == pytest.approx(1.0, abs=1e-3)


def test_a_jump_at_a_seam_shows_in_every_seam_statistic():
    clip = clip_for_prompt("a green square moving right on a black background", num_frames=40, height=32,
                           width=64, speed=1.0, start=(8.0, 15.0)).frames
    # Frames 12.. are shifted 6 px further right: a jump across the seam 11 -> 12.
    jumped = torch.cat([clip[:12], torch.roll(clip[12:40], 6, dims=-1)])
    seams = seam_transitions(40, 1, 8, 4)
    assert 11 in seams
    stats = seam_stats(jumped, seams, centres=track_object(jumped).centres)
    assert stats["seam_jump_max"] == pytest.approx(7.0, abs=1e-3)
    assert stats["inside_step_mean"] == pytest.approx(1.0, abs=1e-3)
    # 8 seams (7, 11, ..., 35), one of them a jump of 7 px: (7 + 7 * 1) / 8.
    assert stats["seam_jump_mean"] == pytest.approx(14 / 8, abs=1e-3)
    assert stats["jump_ratio"] == pytest.approx(14 / 8, abs=1e-3)
    assert stats["seam_flow_mean"] > 1.5 * stats["inside_flow_mean"]
    assert stats["seam_diff_mean"] > 1.5 * stats["inside_diff_mean"]


def test_without_a_track_object_statistics_are_nan_and_bad_seams_are_rejected():
    clip = clip_for_prompt("a red circle moving down on a gray background", num_frames=6).frames
    stats = seam_stats(clip, [2])
    assert math.isnan(stats["seam_jump_mean"]) and math.isnan(stats["jump_ratio"])
    with pytest.raises(ValueError, match=r"seam transitions must be in \[0, 5\) for 6 frames, got \[5\]"):
        seam_stats(clip, [5])
