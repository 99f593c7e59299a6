"""Contact sheets: evenly spaced frames, first and last included, streamed, saved atomically."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stt2v_ray.video.contact import ContactSheet, sheet_uri


def frames(n: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.stack([np.full((h, w, 3), i, dtype=np.uint8) for i in range(n)])


def test_picks_16_evenly_spaced_frames_from_pieces():
    sheet = ContactSheet(100)
    assert sheet.indices[0] == 0 and sheet.indices[-1] == 99 and len(sheet.indices) == 16
    video = frames(100)
    for start in range(0, 100, 7):  # pieces of 7, as a stream delivers them
        sheet.add(video[start:start + 7], start)
    image = np.asarray(sheet.image())
    assert image.shape == (2 * (128 + 14), 8 * 128, 3)
    # tile k shows frame indices[k]: its pixels carry the frame number as their value
    for k, index in enumerate(sheet.indices):
        y, x = (k // 8) * 142 + 14 + 64, (k % 8) * 128 + 64
        assert tuple(image[y, x]) == (index, index, index)


def test_short_video_and_missing_frames():
    sheet = ContactSheet(3)
    assert sheet.indices == [0, 1, 2]
    sheet.add(frames(2), 0)
    with pytest.raises(ValueError, match=r"frames \[2\] never arrived"):
        sheet.image()


def test_saved_beside_the_video(tmp_path):
    assert sheet_uri("s3://b/run/videos/a.mp4") == "s3://b/run/videos/a.png"
    sheet = ContactSheet(4)
    sheet.add(frames(4), 0)
    sheet.save(str(tmp_path / "a.png"))
    assert Image.open(tmp_path / "a.png").format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
