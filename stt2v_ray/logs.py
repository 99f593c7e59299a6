"""`logging` with the video id in every record, and each video's lines kept for <output>/logs/<id>.log.

Every process (the driver and each stage actor, on any node) installs one `Buffer` handler on
the `stt2v_ray` logger; it keeps formatted lines per video id. Actors hand theirs to the driver
with the timeline drain (`drain_logs`), and the driver writes one file per video through
storage.py, so the same path works on a local folder and on S3. The id comes from a context
variable set around each stage call (`with video(id):`), so code deep in a worker logs it too.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterator

from stt2v_ray.storage import atomic_write_bytes, join_uri

ROOT = "stt2v_ray"
FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s [%(video_id)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%dT%H:%M:%S"
MAX_LINES = 20_000  # per video and process: a runaway loop must not fill the memory
_VIDEO: contextvars.ContextVar[str | None] = contextvars.ContextVar("stt2v_video_id", default=None)


def logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{name}")


@contextlib.contextmanager
def video(video_id: str) -> Iterator[None]:
    """Records logged inside the block (in this thread or task) carry `video_id`."""
    previous = _VIDEO.get()
    _VIDEO.set(video_id)
    try:
        yield
    finally:
        # set, not reset(token): a generator may be resumed in another context than it started in
        _VIDEO.set(previous)


class _VideoId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "video_id", None):
            record.video_id = _VIDEO.get() or "-"
        return True


class Buffer(logging.Handler):
    """Formatted lines per video id, taken out once per video."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._lines: dict[str, list[str]] = {}
        self._guard = threading.Lock()
        self.setFormatter(logging.Formatter(FORMAT, DATEFMT))

    def emit(self, record: logging.LogRecord) -> None:
        vid = getattr(record, "video_id", "-")
        if vid == "-":
            return
        line = self.format(record)
        with self._guard:
            lines = self._lines.setdefault(vid, [])
            if len(lines) < MAX_LINES:
                lines.append(line)

    def take(self, video_id: str) -> list[str]:
        with self._guard:
            return self._lines.pop(video_id, [])


_installed: Buffer | None = None
_install_lock = threading.Lock()


def install(stderr_level: int = logging.INFO) -> Buffer:
    """Once per process: the id filter, the per-video buffer and a stderr handler at `stderr_level`
    (in an actor, stderr is what `ray job logs` streams; the driver passes ERROR: its terminal is for progress)."""
    global _installed
    with _install_lock:
        if _installed is None:
            root = logging.getLogger(ROOT)
            root.setLevel(logging.DEBUG)
            root.propagate = False
            buffer = Buffer()
            stream = logging.StreamHandler(sys.stderr)
            stream.setLevel(stderr_level)
            stream.setFormatter(logging.Formatter(FORMAT, DATEFMT))
            for handler in (buffer, stream):
                handler.addFilter(_VideoId())
                root.addHandler(handler)
            _installed = buffer
        return _installed


def write_video_log(output_uri: str, video_id: str, lines: list[str], storage_options: dict | None) -> str:
    """<output>/logs/<id>.log: every process's lines for the video, in time order (the lines start with the time)."""
    uri = join_uri(output_uri, "logs", f"{video_id}.log")
    text = "".join(line.rstrip("\n") + "\n" for line in sorted(lines, key=lambda line: line[:23]))
    atomic_write_bytes(uri, text.encode("utf-8"), storage_options)
    return uri


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_detail(exc: BaseException) -> str:
    """A failed row's error_detail: the formatted traceback; for a Ray task error, whose text is the remote
    traceback, that is the driver's frames then the remote ones."""
    text = str(exc)
    if "Traceback (most recent call last)" not in text:  # a Ray task error's text has the remote frames, not this header
        text = "".join(traceback.format_exception(exc))
    return _ANSI.sub("", text)  # Ray colours the task name
