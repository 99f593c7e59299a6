"""Teleports anywhere in a toy clip (issue 20): one jump inside a chunk, which the seam statistics miss."""
from __future__ import annotations

import math

import pytest
import torch

from stt2v_ray.data import clip_for_prompt
from stt2v_ray.metrics.seams import seam_stats, seam_transitions
from stt2v_ray.metrics.teleport import TELEPORT_COLUMNS, object_steps, teleport_stats
from stt2v_ray.metrics.track import track_object

PROMPT = "a green square moving right on a black background"


def clip(num_frames: int = 40):
    # 1 px per frame, from x=8 on a 64 px wide frame: no wall within 40 frames.
    return clip_for_prompt(PROMPT, num_frames=num_frames, height=32, width=64, speed=1.0, start=(8.0, 15.0)).frames


def test_an_evenly_moving_clip_has_no_teleport():
    stats = teleport_stats(track_object(clip()))
    assert set(stats) == set(TELEPORT_COLUMNS)
    assert stats["step_median"] == pytest.approx(1.0, abs=1e-3)
    assert stats["teleport_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert stats["teleports"] == 0


def test_one_teleport_inside_a_chunk_is_found_where_the_seam_statistics_see_nothing():
    frames = clip()
    # Frames 17.. shifted 6 px further right: a jump 16 -> 17 of 7 px, inside a base chunk.
    jumped = torch.cat([frames[:17], torch.roll(frames[17:], 6, dims=-1)])
    seams = seam_transitions(40, 1, 8, 4)
    assert 16 not in seams
    track = track_object(jumped)
    stats = teleport_stats(track)
    assert stats["teleports"] == 1
    assert stats["step_max"] == pytest.approx(7.0, abs=1e-3)
    assert stats["teleport_ratio"] == pytest.approx(7.0, abs=1e-3)
    # The seam statistics compare seams with the mean step inside chunks: the jump only raises the mean.
    assert seam_stats(jumped, seams, centres=track.centres)["jump_ratio"] < 1.0


def test_vanishing_and_reappearing_elsewhere_is_a_teleport_not_a_gap():
    frames = clip()
    blank = frames.clone()
    blank[20:22] = frames[0, :, 0, 0].view(3, 1, 1)  # two frames of background only
    blank[22:] = torch.roll(frames[22:], 12, dims=-1)  # back 12 px further on
    track = track_object(blank)
    assert not track.found[20:22].any() and bool(track.found[22])
    steps = object_steps(track)
    assert steps.numel() == 40 - 2 - 1  # 37 found frames, 36 steps (one of them spans the gap)
    # 19 -> 22: (3 + 12) px over 3 frames = 5 px per frame.
    assert float(steps.max()) == pytest.approx(5.0, abs=1e-3)
    assert teleport_stats(track)["teleports"] == 1


def test_a_still_object_floors_the_median_and_no_object_gives_nan():
    still = clip(1).repeat(12, 1, 1, 1)
    stats = teleport_stats(track_object(still))
    assert stats["step_median"] == pytest.approx(0.0, abs=1e-9)
    assert stats["teleport_ratio"] == pytest.approx(0.0, abs=1e-9) and stats["teleports"] == 0
    empty = torch.full((6, 3, 32, 32), -1.0)
    assert all(math.isnan(v) for v in teleport_stats(track_object(empty)).values())
