import pytest

from stt2v_ray.plan.chunks import (
    BaseChunk,
    base_frames_for_output,
    base_plan,
    enhance_plan,
    split_segments,
)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_base_frames_for_output_is_the_smallest_cover(factor):
    for num_frames in range(1, 60):
        b = base_frames_for_output(num_frames, factor)
        assert (b - 1) * factor + 1 >= num_frames
        assert b == 1 or (b - 2) * factor + 1 < num_frames


def test_base_frames_for_output_examples_and_errors():
    assert base_frames_for_output(1, 2) == 1
    assert base_frames_for_output(49, 2) == 25
    assert base_frames_for_output(50, 2) == 26
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        base_frames_for_output(0, 2)
    with pytest.raises(ValueError, match="factor must be >= 1, got 0"):
        base_frames_for_output(5, 0)


def test_base_plan_modelscope_numbers():
    plan = base_plan(80, 16, 8)
    # 16 + 8 * (K - 1) >= 80 -> K = 9
    assert plan.num_chunks == 9
    assert plan.generated_frames == 80
    assert plan.chunk(0) == BaseChunk(index=0, keep_from=0, video_start=0, num_kept=16)
    assert plan.chunk(1) == BaseChunk(index=1, keep_from=8, video_start=16, num_kept=8)
    assert plan.chunk(8) == BaseChunk(index=8, keep_from=8, video_start=72, num_kept=8)


@pytest.mark.parametrize("chunk,cond", [(16, 8), (25, 7), (4, 0), (3, 2)])
@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 15, 16, 17, 24, 25, 26, 43, 44, 79])
def test_base_plan_kept_frames_tile_the_video(total, chunk, cond):
    plan = base_plan(total, chunk, cond)
    covered = []
    for c in plan.chunks:
        assert c.keep_from + c.num_kept == chunk
        covered.extend(range(c.video_start, c.video_start + c.num_kept))
    assert covered == list(range(plan.generated_frames))
    assert plan.generated_frames >= total
    # Fewest chunks: one fewer would not reach total.
    assert plan.num_chunks == 1 or plan.generated_frames - (chunk - cond) < total
    if total <= chunk:
        assert plan.num_chunks == 1


def test_base_plan_errors():
    with pytest.raises(ValueError, match="total_frames must be >= 1, got 0"):
        base_plan(0, 16, 8)
    with pytest.raises(ValueError, match=r"cond_frames must be in \[0, chunk_frames=16\), got 16"):
        base_plan(20, 16, 16)
    with pytest.raises(ValueError, match=r"chunk index must be in \[0, 2\), got 2"):
        base_plan(20, 16, 8).chunk(2)


def test_enhance_plan_pads_to_cover():
    plan = enhance_plan(100, 38, 12)
    # stride 26: K = ceil(62 / 26) + 1 = 4; padded = 38 + 3 * 26 = 116
    assert plan.chunks == ((0, 38), (26, 64), (52, 90), (78, 116))
    assert plan.padded_frames == 116
    assert plan.num_frames == 100
    assert plan.boundaries == ((26, 38), (52, 64), (78, 90))
    assert plan.chunks_of_frame(0) == (0,)
    assert plan.chunks_of_frame(30) == (0, 1)
    assert plan.chunks_of_frame(115) == (3,)


@pytest.mark.parametrize("chunk,overlap", [(24, 8), (38, 12), (8, 0), (8, 4)])
@pytest.mark.parametrize("num_frames", [1, 7, 8, 9, 12, 13, 23, 24, 25, 38, 39, 40, 41, 64, 65, 89])
def test_enhance_plan_invariants(num_frames, chunk, overlap):
    plan = enhance_plan(num_frames, chunk, overlap)
    assert plan.chunks[0][0] == 0
    assert plan.chunks[-1][1] == plan.padded_frames >= num_frames
    if num_frames <= chunk:
        assert plan.chunks == ((0, num_frames),)
        assert plan.boundaries == ()
        return
    assert all(e - s == chunk for s, e in plan.chunks)
    assert all(e - s == overlap for s, e in plan.boundaries)
    assert len(plan.boundaries) == plan.num_chunks - 1
    # Fewest chunks, and every frame lies in one or two chunks.
    assert plan.chunks[-2][1] < num_frames
    assert all(1 <= len(plan.chunks_of_frame(f)) <= 2 for f in range(plan.padded_frames))


def test_enhance_plan_errors():
    with pytest.raises(ValueError, match=r"overlap_frames must be in \[0, chunk_frames // 2 = 8\]"):
        enhance_plan(40, 16, 9)
    with pytest.raises(ValueError, match="overlap_frames must be in"):
        enhance_plan(40, 16, -1)
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        enhance_plan(0, 16, 4)
    with pytest.raises(ValueError, match=r"frame must be in \[0, 40\), got 40"):
        enhance_plan(40, 16, 4).chunks_of_frame(40)


def test_split_segments():
    assert split_segments(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_segments(9, 3) == [(0, 3), (3, 6), (6, 9)]
    assert split_segments(2, 5) == [(0, 1), (1, 2)]
    assert split_segments(1, 1) == [(0, 1)]
    for n in range(1, 30):
        for shards in range(1, 12):
            segs = split_segments(n, shards)
            sizes = [e - s for s, e in segs]
            assert len(segs) == min(n, shards)
            assert segs[0][0] == 0 and segs[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
            assert sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="shards must be >= 1, got 0"):
        split_segments(3, 0)
    with pytest.raises(ValueError, match="num_chunks must be >= 1, got 0"):
        split_segments(0, 2)
