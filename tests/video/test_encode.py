import hashlib
import os
import subprocess

import numpy as np
import pytest
import s3fs

from stt2v_ray.video.decode import count_frames, read_video
from stt2v_ray.video.encode import Mp4Writer, ffmpeg_exe


def gradient_frames(n: int, height: int, width: int) -> np.ndarray:
    """Smooth, moving RGB frames (H.264-friendly, so a decode is close to the input)."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = [
        np.stack([(xs * 3 + 8 * i) % 256, ys * 4 % 256, np.full_like(xs, 10 * i)], axis=-1)
        for i in range(n)
    ]
    return np.stack(frames).astype(np.uint8)


def test_ffmpeg_exe_runs():
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True)
    assert "libx264" in out.stdout


def test_round_trip_counts_size_fps_and_hash(tmp_path):
    frames = gradient_frames(17, 48, 64)
    target = tmp_path / "sub" / "out.mp4"
    with Mp4Writer(str(target), width=64, height=48, fps=12, crf=0, preset="ultrafast") as writer:
        writer.write(frames[0])  # one frame, then a batch
        writer.write(frames[1:])
        assert not target.exists()  # only placed on a clean exit
    assert writer.frames_written == 17
    assert writer.sha256 == hashlib.sha256(frames.tobytes()).hexdigest()
    decoded, fps = read_video(str(target))
    assert decoded.shape == (17, 48, 64, 3) and decoded.dtype == np.uint8
    assert fps == 12.0
    assert count_frames(str(target)) == 17
    # yuv420p subsamples chroma, so even crf 0 is not bit-exact in RGB.
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 3
    assert sorted(os.listdir(target.parent)) == ["out.mp4"]  # no temp files left


def test_odd_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="positive even width and height for yuv420p, got width=63 height=48"):
        Mp4Writer(str(tmp_path / "x.mp4"), width=63, height=48, fps=8)


def test_wrong_frame_shape_is_rejected_and_leaves_no_file(tmp_path):
    target = tmp_path / "x.mp4"
    message = r"expects uint8 frames of shape \(48, 64, 3\) or \(n, 48, 64, 3\), got uint8 \(48, 62, 3\)"
    with pytest.raises(ValueError, match=message):
        with Mp4Writer(str(target), width=64, height=48, fps=8) as writer:
            writer.write(np.zeros((48, 62, 3), dtype=np.uint8))
    assert os.listdir(tmp_path) == []


def test_failure_mid_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.mp4"
    frames = gradient_frames(4, 48, 64)
    with pytest.raises(KeyError, match="boom"):
        with Mp4Writer(str(target), width=64, height=48, fps=8) as writer:
            writer.write(frames)
            raise KeyError("boom")
    assert writer._proc is None
    assert os.listdir(tmp_path) == []


def test_ffmpeg_failure_raises_with_its_stderr(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match=r"ffmpeg (failed|exited) \(code \d+\).*invalid preset 'nope'"):
        with Mp4Writer(str(target), width=64, height=48, fps=8, preset="nope") as writer:
            # Enough data that ffmpeg dies while we still write (the broken-pipe path).
            for frame in gradient_frames(64, 48, 64):
                writer.write(np.repeat(frame[None], 8, axis=0))
    assert os.listdir(tmp_path) == []


def test_closing_without_frames_raises(tmp_path):
    with pytest.raises(RuntimeError, match="no frames were written"):
        with Mp4Writer(str(tmp_path / "x.mp4"), width=16, height=16, fps=8):
            pass
    assert os.listdir(tmp_path) == []


def test_long_stream_does_not_deadlock(tmp_path):
    # ~60 MB of raw video through the pipe, far beyond any pipe buffer.
    frame = gradient_frames(1, 256, 256)[0]
    with Mp4Writer(str(tmp_path / "long.mp4"), width=256, height=256, fps=24, preset="ultrafast") as writer:
        for _ in range(300):
            writer.write(frame)
    assert count_frames(str(tmp_path / "long.mp4")) == 300


def test_write_to_s3_and_read_back(s3_server, s3_bucket):
    options = {"endpoint_url": s3_server.endpoint_url}
    uri = f"s3://{s3_bucket}/videos/a.mp4"
    frames = gradient_frames(9, 32, 48)
    with Mp4Writer(uri, width=48, height=32, fps=8, crf=0, storage_options=options) as writer:
        writer.write(frames)
    fs = s3fs.S3FileSystem(**options)
    assert fs.ls(f"{s3_bucket}/videos") == [f"{s3_bucket}/videos/a.mp4"]
    decoded, fps = read_video(uri, storage_options=options)
    assert decoded.shape == (9, 32, 48, 3) and fps == 8.0
    assert count_frames(uri, storage_options=options) == 9


def _fake_ffmpeg(tmp_path, monkeypatch):
    """An 'ffmpeg' that never reads its stdin (it sleeps), put where Mp4Writer looks for the binary."""
    fake = tmp_path / "ffmpeg-stuck"
    fake.write_text("#!/bin/sh\nexec sleep 1000\n")
    fake.chmod(0o755)
    monkeypatch.setattr("stt2v_ray.video.encode.ffmpeg_exe", lambda: str(fake))


def test_ffmpeg_that_stops_reading_is_killed(tmp_path, monkeypatch):
    _fake_ffmpeg(tmp_path, monkeypatch)
    target = tmp_path / "v" / "out.mp4"
    frames = gradient_frames(20, 64, 64)  # 245 KB: more than a pipe holds, so the write blocks
    writer = Mp4Writer(str(target), width=64, height=64, fps=8, preset="ultrafast", timeout=1.0)
    with pytest.raises(RuntimeError, match=r"ffmpeg stopped reading its input for 1s .*killed \(code -9\)"):
        with writer:
            proc = writer._proc
            writer.write(frames)
    assert proc.returncode == -9  # SIGKILLed, not left sleeping
    assert not target.exists() and os.listdir(target.parent) == []  # no partial file, no temp file


def test_ffmpeg_that_does_not_finish_is_killed(tmp_path, monkeypatch):
    _fake_ffmpeg(tmp_path, monkeypatch)
    target = tmp_path / "out.mp4"
    writer = Mp4Writer(str(target), width=8, height=8, fps=8, preset="ultrafast", timeout=1.0)
    with pytest.raises(RuntimeError, match=r"ffmpeg did not finish for 1s .*killed \(code -9\)"):
        with writer:
            proc = writer._proc
            writer.write(gradient_frames(1, 8, 8))  # 192 bytes: buffered, the close is where it hangs
    assert proc.returncode == -9
    assert sorted(os.listdir(tmp_path)) == ["ffmpeg-stuck"]


def test_stale_parts_of_a_killed_writer_are_removed(tmp_path):
    from stt2v_ray.video.encode import remove_stale_parts

    (tmp_path / ".a.mp4.tmp-x1.mp4").write_bytes(b"half")
    (tmp_path / ".a.png.tmp-x2.png").write_bytes(b"half")
    (tmp_path / ".ab.mp4.tmp-x3.mp4").write_bytes(b"another video's")
    removed = remove_stale_parts(str(tmp_path / "a.mp4"))
    assert len(removed) == 2 and sorted(os.listdir(tmp_path)) == [".ab.mp4.tmp-x3.mp4"]
