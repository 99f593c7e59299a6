"""Streaming MP4 (H.264) encoder: frames are piped to ffmpeg as they come, never held in memory."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from types import TracebackType

import ffmpeg
import numpy as np

from stt2v_ray.storage import atomic_output, is_local, local_path
from stt2v_ray.video.contact import ContactSheet, sheet_uri

_STDERR_TAIL = 2000  # characters of ffmpeg's log quoted in errors


def ffmpeg_exe() -> str:
    """The system `ffmpeg` if on PATH, else the static binary shipped with imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def remove_stale_parts(uri: str) -> list[str]:
    """Remove the temp files a writer killed mid-video (SIGKILL, node loss) left beside a local
    target (`.<name>.tmp-*`, its contact sheet's too); -> the paths removed. Remote targets
    stage their temp files outside the output, so nothing partial is visible there."""
    if not is_local(uri):
        return []
    removed = []
    for target in (uri, sheet_uri(uri)):
        path = os.path.abspath(local_path(target))
        pattern = os.path.join(glob.escape(os.path.dirname(path)), f".{glob.escape(os.path.basename(path))}.tmp-*")
        for part in glob.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
                removed.append(part)
    return removed


class Mp4Writer:
    """Context manager writing RGB uint8 frames to an H.264 MP4 at `uri` (local path or fsspec URL).

    ffmpeg encodes into a local temp file; only a clean exit with ffmpeg's success moves it
    to `uri` (via storage.atomic_output), so the target never exists half-written. Keeps
    `frames_written` and a SHA-256 of the raw RGB bytes in write order (`sha256`).
    An ffmpeg that stops reading (or does not finish) for `timeout` seconds is killed, and the
    write or close raises.
    """

    def __init__(
        self,
        uri: str,
        width: int,
        height: int,
        fps: float,
        crf: int = 18,
        preset: str = "medium",
        storage_options: dict | None = None,
        contact_sheet: ContactSheet | None = None,
        timeout: float = 600.0,
    ):
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(
                f"Mp4Writer needs a positive even width and height for yuv420p, got width={width} height={height}"
            )
        if fps <= 0:
            raise ValueError(f"Mp4Writer needs fps > 0, got {fps}")
        self.uri = uri
        self.width, self.height, self.fps = width, height, fps
        self.crf, self.preset = crf, preset
        self.storage_options = storage_options
        self.contact_sheet = contact_sheet  # saved beside the MP4 (<name>.png) when it succeeds
        self.timeout = timeout
        self._timed_out = False
        self.frames_written = 0
        self._hash = hashlib.sha256()
        self._stack: contextlib.ExitStack | None = None
        self._proc: subprocess.Popen | None = None
        self._stderr = None

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def __enter__(self) -> Mp4Writer:
        if self._stack is not None:
            raise RuntimeError(f"Mp4Writer({self.uri}) is already open")
        stack = contextlib.ExitStack()
        remove_stale_parts(self.uri)  # a killed earlier attempt's temp files
        try:
            local = stack.enter_context(atomic_output(self.uri, self.storage_options))
            # ffmpeg's log goes to a file, not a pipe: a pipe nobody reads fills and blocks ffmpeg.
            self._stderr = stack.enter_context(tempfile.TemporaryFile(prefix="ffmpeg-", suffix=".log"))
            stream = ffmpeg.input(
                "pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{self.width}x{self.height}", framerate=self.fps
            ).output(
                str(local),
                format="mp4",  # the temp path may lack the .mp4 extension ffmpeg guesses from
                vcodec="libx264",
                pix_fmt="yuv420p",
                crf=self.crf,
                preset=self.preset,
                movflags="+faststart",
            )
            cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *ffmpeg.get_args(stream)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (H,W,3) or a batch (n,H,W,3) of uint8 RGB."""
        if self._proc is None:
            raise RuntimeError(f"Mp4Writer({self.uri}) is not open: use it as a context manager")
        shape = (self.height, self.width, 3)
        if frames.dtype != np.uint8 or frames.shape[-3:] != shape or frames.ndim not in (3, 4):
            raise ValueError(
                f"Mp4Writer expects uint8 frames of shape {shape} or (n, {self.height}, {self.width}, 3), "
                f"got {frames.dtype} {frames.shape}"
            )
        data = np.ascontiguousarray(frames).tobytes()
        try:
            with self._watchdog():
                self._proc.stdin.write(data)
        except (BrokenPipeError, ValueError, OSError):  # ValueError: stdin closed by the watchdog's kill
            self._proc.wait()
            self._raise_if_timed_out("stopped reading its input")
            raise RuntimeError(
                f"ffmpeg exited (code {self._proc.returncode}) while writing {self.uri}: {self._stderr_tail()}"
            ) from None
        self._hash.update(data)
        if self.contact_sheet is not None:
            self.contact_sheet.add(frames if frames.ndim == 4 else frames[None], self.frames_written)
        self.frames_written += 1 if frames.ndim == 3 else frames.shape[0]

    @contextlib.contextmanager
    def _watchdog(self):
        """Kill ffmpeg if the with-block (a write into its pipe, the close) takes over `timeout` s."""
        def kill():
            self._timed_out = True
            with contextlib.suppress(OSError):
                self._proc.kill()

        timer = threading.Timer(self.timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _raise_if_timed_out(self, what: str) -> None:
        if self._timed_out:
            raise RuntimeError(f"ffmpeg {what} for {self.timeout:g}s while writing {self.uri}: killed "
                               f"(code {self._proc.returncode})") from None

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-_STDERR_TAIL:].strip()

    def _finish(self) -> None:
        """Close ffmpeg's input, wait for it, and raise if it failed."""
        if self.frames_written == 0:
            raise RuntimeError(f"Mp4Writer({self.uri}): no frames were written")
        with self._watchdog():
            try:
                self._proc.stdin.close()  # flushes: blocks while ffmpeg does not read
            except (BrokenPipeError, OSError):
                pass  # ffmpeg already exited; its return code tells why
            code = self._proc.wait()
        self._raise_if_timed_out("did not finish")
        if code != 0:
            raise RuntimeError(f"ffmpeg failed (code {self._proc.returncode}) for {self.uri}: {self._stderr_tail()}")

    def _abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()
        self._proc.wait()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        try:
            if exc is None:
                self._finish()
                if self.contact_sheet is not None:  # before the MP4 lands: a failure here discards both
                    self.contact_sheet.save(sheet_uri(self.uri), self.storage_options)
            else:
                self._abort()
        except BaseException:
            self._abort()
            # Leaving the stack with the error makes atomic_output discard the temp file.
            stack.__exit__(*sys.exc_info())
            raise
        finally:
            self._proc = None
        # Success places the file at uri; an exception from the with-block discards it (and propagates).
        stack.__exit__(exc_type, exc, tb)
