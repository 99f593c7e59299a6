"""The procedural toy clips: determinism, grammar round trip, bouncing, true path vs rendered centroid."""
from __future__ import annotations

import itertools

import pytest
import torch

from stt2v_ray.data import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    SHAPES,
    ClipSpec,
    ToyPrompt,
    clip_for_prompt,
    make_clip,
    object_path,
    parse_prompt,
    sample_spec,
)
from stt2v_ray.data.clips import shape_coverage


def _alpha(clip):
    """Coverage recovered exactly from the blend bg * (1 - a) + fg * a."""
    bg = torch.tensor(BACKGROUNDS[clip.spec.prompt.background]).view(1, 3, 1, 1) / 127.5 - 1
    fg = torch.tensor(COLOURS[clip.spec.prompt.colour]).view(1, 3, 1, 1) / 127.5 - 1
    return ((clip.frames - bg) * (fg - bg)).sum(dim=1) / ((fg - bg) ** 2).sum()


def test_same_seed_and_index_give_the_same_clip_in_any_order():
    later = make_clip(3, 5, num_frames=12)
    for i in range(5):
        make_clip(3, i, num_frames=12)
    again = make_clip(3, 5, num_frames=12)
    assert torch.equal(later.frames, again.frames) and torch.equal(later.path, again.path)
    assert later.prompt == again.prompt
    assert not torch.equal(make_clip(3, 6, num_frames=12).frames, later.frames)
    assert not torch.equal(make_clip(4, 5, num_frames=12).frames, later.frames)


def test_frames_follow_the_pipeline_convention_and_any_length():
    clip = make_clip(0, 0, num_frames=200, height=24, width=40)
    assert clip.frames.shape == (200, 3, 24, 40) and clip.frames.dtype == torch.float32
    assert clip.frames.min() >= -1 and clip.frames.max() <= 1
    assert clip.path.shape == (200, 2)
    # A prefix of a longer clip is the shorter clip.
    short = make_clip(0, 0, num_frames=50, height=24, width=40)
    assert torch.equal(short.frames, clip.frames[:50])


def test_every_prompt_of_the_grammar_round_trips():
    for colour, shape, direction, bg, speed in itertools.product(COLOURS, SHAPES, DIRECTIONS, BACKGROUNDS,
                                                                 ("", "slowly", "quickly")):
        p = ToyPrompt(colour, shape, direction, bg, speed)
        assert parse_prompt(p.text) == p
    assert make_clip(0, 1).prompt == make_clip(0, 1).spec.prompt.text


def test_parser_accepts_case_spaces_and_a_full_stop_and_rejects_other_text():
    assert parse_prompt("An  Orange square moving quickly UP on a gray background.") == \
        ToyPrompt("orange", "square", "up", "gray", "quickly")
    assert parse_prompt("a red circle moving right on a black background").text == \
        "a red circle moving right on a black background"
    assert parse_prompt("an orange circle moving left on a white background").text.startswith("an orange")
    for text in ("a field at dawn", "a purple circle moving right on a black background",
                 "a red hexagon moving right on a black background", "a red circle moving right",
                 "a red circle moving sideways on a black background", ""):
        assert parse_prompt(text) is None, text


def test_unknown_attributes_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown colour 'purple'; known: \['blue', 'cyan', 'green'"):
        ToyPrompt("purple", "circle", "right", "black")
    with pytest.raises(ValueError, match="not a prompt of the toy grammar: 'a field'"):
        clip_for_prompt("a field")
    with pytest.raises(ValueError, match=r"index must be an int >= 0, got -1"):
        sample_spec(0, -1)


def test_the_object_moves_in_the_prompted_direction_first():
    for i in range(20):
        clip = make_clip(7, i, num_frames=4)
        dx, dy = DIRECTIONS[clip.spec.prompt.direction]
        step = clip.path[1] - clip.path[0]
        assert step.tolist() == pytest.approx([1.5 * dx, 1.5 * dy])


def test_bouncing_keeps_the_object_inside():
    for i in range(6):
        clip = make_clip(11, i, num_frames=40, speed=4.0)
        size = clip.spec.size
        up, down = (2 * size / 3, size / 3) if clip.spec.prompt.shape == "triangle" else (size / 2, size / 2)
        x, y = clip.path[:, 0], clip.path[:, 1]
        assert (x - size / 2 >= -0.5 - 1e-9).all() and (x + size / 2 <= 32 - 0.5 + 1e-9).all()
        assert (y - up >= -0.5 - 1e-9).all() and (y + down <= 32 - 0.5 + 1e-9).all()
        # The object is drawn entirely inside: its coverage equals that of the same shape on a larger canvas.
        alpha = _alpha(clip)
        for t in range(0, 40, 3):
            x, y = clip.path[t].tolist()
            whole = shape_coverage(clip.spec.prompt.shape, (x + 8, y + 8), clip.spec.size, 48, 48)
            assert float(alpha[t].sum()) == pytest.approx(float(whole.sum()), abs=1e-3)
        # It does bounce: it moves both ways along its axis over 40 frames at 4 px/frame.
        axis = 0 if DIRECTIONS[clip.spec.prompt.direction][0] else 1
        steps = clip.path[1:, axis] - clip.path[:-1, axis]
        assert (steps > 0).any() and (steps < 0).any()


def test_reflection_of_a_hand_worked_path():
    prompt = ToyPrompt("red", "square", "right", "black")
    spec = ClipSpec(prompt, num_frames=6, height=16, width=16, size=5.0, speed=3.0, start=(9.0, 7.0))
    # Centres may go from 2.0 to 13.0: 9 -> 12 -> 15 folds to 11 -> 18 folds to 8 -> 5 -> 2.
    assert object_path(spec)[:, 0].tolist() == pytest.approx([9, 12, 11, 8, 5, 2])
    assert object_path(spec)[:, 1].tolist() == pytest.approx([7] * 6)


def test_true_path_is_the_centroid_of_the_rendered_object():
    for i in range(8):
        clip = make_clip(2, i, num_frames=16, height=32, width=48)
        alpha = _alpha(clip)
        ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij")
        cx = (alpha * xs).sum(dim=(1, 2)) / alpha.sum(dim=(1, 2))
        cy = (alpha * ys).sum(dim=(1, 2)) / alpha.sum(dim=(1, 2))
        got = torch.stack([cx, cy], dim=1).double()
        # 8x8 supersampling: within 1/16 px per axis.
        assert (got - clip.path).norm(dim=1).max() < 0.09, clip.prompt


def test_shapes_have_their_expected_areas():
    size = 12.0
    area = {s: float(shape_coverage(s, (20.3, 19.7), size, 40, 40).sum()) for s in SHAPES}
    assert area["square"] == pytest.approx(144, abs=0.5)
    assert area["circle"] == pytest.approx(3.14159 * 36, rel=0.02)
    assert area["triangle"] == pytest.approx(72, rel=0.02)


def test_focus_draws_the_weighed_words_that_much_more_often_and_leaves_others_alone():
    n = 600
    plain = [sample_spec(7, i).prompt for i in range(n)]
    focused = [sample_spec(7, i, focus={"gray": 4.0, "yellow": 3.0}).prompt for i in range(n)]
    share = lambda ps, attr, word: sum(getattr(p, attr) == word for p in ps) / n  # noqa: E731
    # gray weighs 4 of 6 (black, white 1 each); yellow 3 of 9 (six other colours 1 each)
    assert abs(share(focused, "background", "gray") - 4 / 6) < 0.06 and abs(share(plain, "background", "gray") - 1 / 3) < 0.06
    assert abs(share(focused, "colour", "yellow") - 3 / 9) < 0.06 and abs(share(plain, "colour", "yellow") - 1 / 7) < 0.06
    assert abs(share(focused, "shape", "triangle") - 1 / 3) < 0.06  # shapes are not weighed: still uniform
    # weights of 1 are the uniform draw itself: the same clips as without focus
    assert [sample_spec(7, i, focus={"gray": 1.0}) for i in range(20)] == [sample_spec(7, i) for i in range(20)]
    assert sample_spec(7, 3, focus={"gray": 4.0}) == sample_spec(7, 3, focus={"gray": 4.0})  # still a pure function


def test_focus_rejects_unknown_words_and_non_positive_weights():
    with pytest.raises(ValueError, match="focus: unknown word 'purple'; known: black, blue, circle"):
        sample_spec(0, 0, focus={"purple": 2.0})
    with pytest.raises(ValueError, match="focus: weight of 'gray' must be > 0, got 0"):
        sample_spec(0, 0, focus={"gray": 0})
