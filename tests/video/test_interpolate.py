import pytest
import torch

from stt2v_ray.video.interpolate import FlowInterpolator, StreamingInterpolator, interpolate_video


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP's spinning
    # threads make these tests ~5x slower. Results do not depend on the thread count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pattern(h: int, w: int, dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """A smooth textured RGB image in [-1, 1], shifted by (dx, dy) pixels (analytic, so any shift is exact)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    xs, ys = xs - dx, ys - dy
    blob = torch.exp(-((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / (2 * 8.0**2))
    r = 0.5 * torch.sin(xs * 0.35) * torch.cos(ys * 0.27) + 0.4 * blob
    g = 0.6 * torch.cos(xs * 0.21 + ys * 0.13)
    b = 1.6 * torch.exp(-((xs - w / 2 + 5) ** 2 + (ys - h / 2) ** 2) / (2 * 10.0**2)) - 0.8
    return torch.stack([r, g, b])


def video(n: int, h: int = 32, w: int = 48) -> torch.Tensor:
    return torch.stack([pattern(h, w, 1.5 * i, 0.5 * i) for i in range(n)])


def mse_inside(x: torch.Tensor, y: torch.Tensor, border: int = 8) -> float:
    return ((x - y)[..., border:-border, border:-border] ** 2).mean().item()


@pytest.mark.parametrize("shape,shift", [((64, 64), (4.0, 2.0)), ((64, 96), (8.0, 4.0))])
def test_midframe_follows_motion_much_better_than_crossfade(shape, shift):
    h, w = shape
    a, b = pattern(h, w), pattern(h, w, *shift)
    mid = FlowInterpolator().midframes(a, b, 2)
    assert mid.shape == (1, 3, h, w)
    truth = pattern(h, w, shift[0] / 2, shift[1] / 2)
    flow_err, fade_err = mse_inside(mid[0], truth), mse_inside((a + b) / 2, truth)
    assert flow_err * 10 < fade_err, (flow_err, fade_err)


def test_flow_recovers_a_translation():
    a, b = pattern(64, 64), pattern(64, 64, 4.0, -2.0)
    interp = FlowInterpolator()
    gray = torch.stack([a, b]).mean(dim=1, keepdim=True)
    flow = interp.flow(gray, gray.flip(0))  # a(x) ~ b(x + flow) and the reverse
    centre = flow[:, :, 16:48, 16:48].mean(dim=(2, 3))
    torch.testing.assert_close(centre, torch.tensor([[4.0, -2.0], [-4.0, 2.0]]), atol=0.1, rtol=0)


def test_midframes_at_each_fraction_of_a_factor_4():
    a, b = pattern(64, 64), pattern(64, 64, 6.0, 0.0)
    mids = FlowInterpolator().midframes(a, b, 4)
    assert mids.shape == (3, 3, 64, 64)
    for i in range(1, 4):
        truth = pattern(64, 64, 6.0 * i / 4, 0.0)
        fade = (1 - i / 4) * a + (i / 4) * b
        assert mse_inside(mids[i - 1], truth) * 10 < mse_inside(fade, truth)


def test_identical_frames_give_that_frame():
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(3, 24, 40, generator=g) * 2 - 1
    mids = FlowInterpolator().midframes(frame, frame, 3)
    assert mids.shape == (2, 3, 24, 40)
    torch.testing.assert_close(mids, frame.expand(2, -1, -1, -1), atol=1e-4, rtol=0)


def test_factor_one_passes_frames_through():
    frames = video(4)
    assert FlowInterpolator().midframes(frames[0], frames[1], 1).shape == (0, 3, 32, 48)
    torch.testing.assert_close(interpolate_video(frames, 1), frames, rtol=0, atol=0)


@pytest.mark.parametrize("n,factor", [(1, 2), (2, 2), (5, 2), (4, 3)])
def test_output_count_and_originals_at_multiples(n, factor):
    frames = video(n)
    out = interpolate_video(frames, factor)
    assert out.shape == ((n - 1) * factor + 1, 3, 32, 48)
    torch.testing.assert_close(out[::factor], frames, rtol=0, atol=0)


def test_streaming_equals_batch_and_is_deterministic():
    frames = video(5)
    batch = interpolate_video(frames, 3)
    stream = StreamingInterpolator(FlowInterpolator(), 3)
    out, ready_counts = [], []
    for frame in frames:
        ready = stream.push(frame)
        ready_counts.append(len(ready))
        out.extend(ready)
    out.extend(stream.flush())
    assert ready_counts == [1, 3, 3, 3, 3]
    torch.testing.assert_close(torch.stack(out), batch, rtol=0, atol=0)
    # flush resets: a second stream starts over with its first frame alone.
    assert len(stream.push(frames[0])) == 1
    torch.testing.assert_close(interpolate_video(frames, 3), batch, rtol=0, atol=0)


def test_bad_arguments_raise():
    frames = video(2)
    with pytest.raises(ValueError, match=r"interpolation factor must be an integer >= 1, got 0"):
        StreamingInterpolator(FlowInterpolator(), 0)
    with pytest.raises(ValueError, match=r"interpolation factor must be an integer >= 1, got 2.0"):
        FlowInterpolator().midframes(frames[0], frames[1], 2.0)
    stream = StreamingInterpolator(FlowInterpolator(), 2)
    stream.push(frames[0])
    with pytest.raises(ValueError, match=r"frame shape changed from \(3, 32, 48\) to \(3, 16, 48\)"):
        stream.push(frames[1][:, :16])
