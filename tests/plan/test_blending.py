import pytest
import torch

from stt2v_ray.plan.blending import blend_video, draw_cut, merge_overlap, middle_cut, owned_range
from stt2v_ray.plan.chunks import enhance_plan


def _index_chunks(plan, frame_shape=(2, 3)):
    # Chunk k is filled with the value k, so the merged video says where each frame came from.
    return [torch.full((e - s, *frame_shape), float(k)) for k, (s, e) in enumerate(plan.chunks)]


def _video_chunks(plan, video):
    return [video[s:e].clone() for s, e in plan.chunks]


def test_zero_overlap_is_concatenation():
    plan = enhance_plan(20, 8, 0)
    outs = [torch.randn(e - s, 3) for s, e in plan.chunks]
    merged = blend_video(outs, plan, [0] * len(plan.boundaries))
    assert torch.equal(merged, torch.cat(outs))
    assert draw_cut(1, 0, 0, 0) == 0


def test_each_frame_comes_from_a_chunk_holding_it():
    plan = enhance_plan(60, 16, 6)
    outs = _index_chunks(plan)
    for step in range(5):
        cuts = [draw_cut(3, step, b, plan.overlap) for b in range(len(plan.boundaries))]
        merged = blend_video(outs, plan, cuts)
        assert merged.shape == (plan.padded_frames, 2, 3)
        for f in range(plan.padded_frames):
            source = int(merged[f, 0, 0])
            assert source in plan.chunks_of_frame(f)
            assert torch.equal(merged[f], torch.full((2, 3), float(source)))
        # Inside boundary b the previous chunk supplies exactly the first cuts[b] frames.
        for b, (s, e) in enumerate(plan.boundaries):
            sources = merged[s:e, 0, 0].tolist()
            assert sources == [float(b)] * cuts[b] + [float(b + 1)] * (e - s - cuts[b])


def test_identical_chunks_merge_to_the_video():
    plan = enhance_plan(50, 12, 4)
    video = torch.randn(plan.padded_frames, 2, 2)
    cuts = [draw_cut(0, 1, b, plan.overlap) for b in range(len(plan.boundaries))]
    assert torch.equal(blend_video(_video_chunks(plan, video), plan, cuts), video)


def test_draw_cut_is_keyed_and_covers_the_range():
    overlap = 8
    assert draw_cut(11, 4, 2, overlap) == draw_cut(11, 4, 2, overlap)
    draws = [draw_cut(seed, step, b, overlap) for seed in range(3) for step in range(20) for b in range(10)]
    assert set(draws) == set(range(overlap))
    # The key matters: the draws over steps are not all equal for one boundary.
    assert len({draw_cut(0, step, 0, overlap) for step in range(30)}) > 1
    assert draw_cut(0, 0, 0, 1) == 0
    with pytest.raises(ValueError, match="overlap must be >= 0, got -1"):
        draw_cut(0, 0, 0, -1)
    with pytest.raises(ValueError, match="step and boundary must be >= 0, got step=-1, boundary=0"):
        draw_cut(0, -1, 0, 4)


def test_middle_cut():
    assert [middle_cut(o) for o in (0, 1, 8, 12)] == [0, 0, 4, 6]


def test_merge_overlap_selects_frames():
    prev = torch.zeros(6, 2)
    nxt = torch.ones(6, 2)
    merged = merge_overlap(prev, nxt, 2)
    assert merged[:, 0].tolist() == [0, 0, 1, 1, 1, 1]
    assert torch.equal(merge_overlap(prev, nxt, 0), nxt)
    assert torch.equal(merge_overlap(prev, nxt, 6), prev)
    with pytest.raises(ValueError, match=r"overlap shapes differ: prev \(6, 2\) vs next \(5, 2\)"):
        merge_overlap(prev, nxt[:5], 1)
    with pytest.raises(ValueError, match=r"cut must be in \[0, 6\], got 7"):
        merge_overlap(prev, nxt, 7)


def test_blend_video_matches_owned_ranges_and_merge_overlap():
    plan = enhance_plan(70, 20, 7)
    outs = [torch.randn(e - s, 4) for s, e in plan.chunks]
    cuts = [draw_cut(9, 2, b, plan.overlap) for b in range(len(plan.boundaries))]
    merged = blend_video(outs, plan, cuts)
    ranges = [owned_range(plan, k, cuts) for k in range(plan.num_chunks)]
    # Owned ranges tile [0, padded_frames) in order.
    assert ranges[0][0] == 0 and ranges[-1][1] == plan.padded_frames
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    for k, ((s, e), (cs, _)) in enumerate(zip(ranges, plan.chunks, strict=False)):
        assert torch.equal(merged[s:e], outs[k][s - cs : e - cs])
    for b, (s, e) in enumerate(plan.boundaries):
        prev_tail = outs[b][s - plan.chunks[b][0] :]
        next_head = outs[b + 1][: e - s]
        assert torch.equal(merged[s:e], merge_overlap(prev_tail, next_head, cuts[b]))


def test_single_chunk_plan():
    plan = enhance_plan(5, 16, 4)
    out = torch.randn(5, 3)
    assert torch.equal(blend_video([out], plan, []), out)
    assert owned_range(plan, 0, []) == (0, 5)


def test_blend_video_validates():
    plan = enhance_plan(28, 12, 4)
    assert plan.chunks == ((0, 12), (8, 20), (16, 28))
    outs = [torch.zeros(e - s, 2) for s, e in plan.chunks]
    with pytest.raises(ValueError, match="expected 3 chunk outputs, got 1"):
        blend_video(outs[:1], plan, [0] * len(plan.boundaries))
    with pytest.raises(ValueError, match=r"expected 2 cuts \(one per boundary\), got 1"):
        blend_video(outs, plan, [0])
    with pytest.raises(ValueError, match=r"cut of boundary 1 must be in \[0, 4\], got 5"):
        blend_video(outs, plan, [0, 5])
    bad = [outs[0], torch.zeros(11, 2), outs[2]]
    with pytest.raises(ValueError, match=r"chunk 1 output has shape \(11, 2\), expected \(12, \*\(2,\)\)"):
        blend_video(bad, plan, [0, 0])
    with pytest.raises(ValueError, match=r"chunk index must be in \[0, 3\), got 3"):
        owned_range(plan, 3, [0, 0])
