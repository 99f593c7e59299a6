"""Decode videos to RGB uint8 arrays with imageio-ffmpeg (works with its static ffmpeg; no ffprobe needed)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import imageio_ffmpeg
import numpy as np

from stt2v_ray.storage import filesystem, is_local, local_path


@contextlib.contextmanager
def _local_copy(uri: str, storage_options: dict | None) -> Iterator[str]:
    """A local path for uri: itself when local, else a temp download removed afterwards."""
    if is_local(uri):
        yield local_path(uri)
        return
    fs, path = filesystem(uri, storage_options)
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(path)[1] or ".mp4")
    os.close(fd)
    try:
        fs.get_file(path, tmp)
        yield tmp
    finally:
        os.remove(tmp)


def read_video(uri: str, storage_options: dict | None = None) -> tuple[np.ndarray, float]:
    """Decode a whole video: (F, H, W, 3) uint8 RGB frames and the stream's fps."""
    with _local_copy(uri, storage_options) as path:
        reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
        meta = next(reader)  # the first item is the stream's metadata
        width, height = meta["size"]
        frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in reader]
    video = np.stack(frames) if frames else np.zeros((0, height, width, 3), dtype=np.uint8)
    return video, float(meta["fps"])


def count_frames(uri: str, storage_options: dict | None = None) -> int:
    """Number of frames, counted by decoding (exact, unlike the container's duration)."""
    with _local_copy(uri, storage_options) as path:
        return imageio_ffmpeg.count_frames_and_secs(path)[0]
