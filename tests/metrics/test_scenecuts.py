"""SCuts: the AdaptiveDetector reimplementation on clips with known cuts."""
from __future__ import annotations

import numpy as np
import torch

from stt2v_ray.data import clip_for_prompt
from stt2v_ray.metrics.scenecuts import detect_scene_cuts, hsv_u8, scene_cuts


def test_hsv_matches_opencv_conventions():
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [128, 64, 64]], np.uint8)
    assert hsv_u8(rgb).tolist() == [[0, 255, 255], [60, 255, 255], [120, 255, 255], [0, 0, 255], [0, 0, 0],
                                    [0, 128, 128]]


def test_a_hard_cut_is_exactly_one_scene_cut_and_a_smooth_clip_has_none():
    a = clip_for_prompt("a red circle moving right on a black background", num_frames=40).frames
    b = clip_for_prompt("a blue square moving up on a white background", num_frames=40).frames
    assert scene_cuts(a) == 0
    cut = torch.cat([a[:20], b[20:]])
    found = detect_scene_cuts(cut)
    assert found.cuts == (20,)
    assert found.count == 1 and scene_cuts(cut) == 1


def test_cuts_closer_than_min_scene_len_are_merged_and_early_cuts_wait():
    a = clip_for_prompt("a red circle moving right on a black background", num_frames=60).frames
    b = clip_for_prompt("a blue square moving up on a white background", num_frames=60).frames
    # Cuts at 20 and 30: the second is within 15 frames of the first.
    assert detect_scene_cuts(torch.cat([a[:20], b[20:30], a[30:]])).cuts == (20,)
    # A cut at frame 5 is before min_scene_len frames of the first scene have been read.
    assert detect_scene_cuts(torch.cat([a[:5], b[5:]])).cuts == ()
