"""Toy prompt adherence from the object track: 1.0 on generated clips with their own prompts, low otherwise."""
from __future__ import annotations

import torch

from stt2v_ray.data import make_clip, parse_prompt
from stt2v_ray.metrics.adherence import prompt_adherence
from stt2v_ray.metrics.track import classify_shape, track_object


def test_generated_clips_adhere_to_their_own_prompts():
    for i in range(12):
        clip = make_clip(5, i, num_frames=16)
        track = track_object(clip.frames)
        assert (track.centres - clip.path).norm(dim=1).max() < 0.25
        result = prompt_adherence(clip.frames, clip.spec.prompt, track)
        assert result == {"object_found": 1.0, "colour_match": 1.0, "shape_match": 1.0,
                          "background_match": 1.0, "direction": clip.spec.prompt.direction,
                          "direction_match": 1.0}, clip.prompt


def test_a_wrong_prompt_scores_low():
    clip = make_clip(5, 0, num_frames=16)
    p = clip.spec.prompt
    wrong_colour = "blue" if p.colour != "blue" else "red"
    wrong_shape = "circle" if p.shape != "circle" else "square"
    wrong_dir = {"right": "left", "left": "right", "up": "down", "down": "up"}[p.direction]
    wrong_bg = "white" if p.background != "white" else "black"
    wrong = parse_prompt(f"a {wrong_colour} {wrong_shape} moving {wrong_dir} on a {wrong_bg} background")
    result = prompt_adherence(clip.frames, wrong)
    assert result["colour_match"] == 0.0 and result["shape_match"] == 0.0
    assert result["background_match"] == 0.0 and result["direction_match"] == 0.0


def test_an_empty_video_has_no_object():
    frames = torch.full((5, 3, 16, 16), -1.0)
    track = track_object(frames)
    assert not track.found.any()
    result = prompt_adherence(frames, parse_prompt("a red circle moving up on a black background"), track)
    assert result["object_found"] == 0.0 and result["colour_match"] == 0.0 and result["direction"] is None
    assert classify_shape(torch.zeros(4, 4, dtype=torch.bool)) is None
