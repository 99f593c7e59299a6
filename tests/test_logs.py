"""Per-video log records: the id on every record, one buffer per video, the file in time order."""
from __future__ import annotations

import threading

from stt2v_ray import logs


def test_records_carry_the_video_id_per_thread_and_are_kept_per_video(tmp_path):
    buffer = logs.install()
    log = logs.logger("test")

    def video(vid: str) -> None:
        with logs.video(vid):
            log.debug("unit of %s", vid)
        log.info("outside any video")  # kept by no video

    threads = [threading.Thread(target=video, args=(f"v{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.info("explicit", extra={"video_id": "v9"})
    for i in range(4):
        lines = buffer.take(f"v{i}")
        assert len(lines) == 1 and f"DEBUG [v{i}] stt2v_ray.test: unit of v{i}" in lines[0]
    assert buffer.take("v0") == []  # taken once
    assert "[v9]" in buffer.take("v9")[0]
    uri = logs.write_video_log(str(tmp_path), "v1", ["2026-01-01T00:00:02.000 b", "2026-01-01T00:00:01.000 a"], None)
    assert uri.endswith("logs/v1.log")
    assert (tmp_path / "logs" / "v1.log").read_text() == "2026-01-01T00:00:01.000 a\n2026-01-01T00:00:02.000 b\n"


def test_error_detail():
    try:
        raise ValueError("boom")
    except ValueError as exc:
        detail = logs.error_detail(exc)
    assert detail.startswith("Traceback (most recent call last)") and "ValueError: boom" in detail
    text = "Traceback (most recent call last):\n  File x\nOSError: disk"
    remote = RuntimeError(f"\x1b[36mray::Writer.write_frames()\x1b[39m\n{text}")  # a Ray task error's own text
    assert logs.error_detail(remote) == f"ray::Writer.write_frames()\n{text}"
