"""Progress on stderr: an overall bar (videos done of the total, rate, ETA) and one per video
(base chunks, enhancer chunk x step units, frames out, ETA).

On a terminal (stderr is a TTY) the bars are tqdm's, redrawn in place. Anywhere else (`ray job
logs -f`, CI) they are plain lines at a bounded rate: per video at most one every `interval`
seconds, plus one as each stage ends, plus its start and end lines; an overall line per video end.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from typing import Literal

from tqdm import tqdm

Mode = Literal["tty", "plain"]
# Units a stage's total counts (pipeline.video.progress_totals): the enhancer's total is chunk x step,
# so its key-frame and decode units are shown by no count.
COUNTED = {"enhance": "step"}


def _eta(elapsed: float, done: float, total: float | None) -> str:
    if not total or done <= 0:
        return "?"
    left = elapsed * (total - done) / done
    return time.strftime("%H:%M:%S", time.gmtime(max(0.0, left))) if left < 86400 else f"{left / 3600:.0f}h"


class Progress:
    def __init__(self, total_videos: int | None = None, stream=None, interval: float = 2.0, quiet: bool = False,
                 mode: Mode | None = None):
        self.total = total_videos
        self.stream = stream or sys.stderr
        self.interval = interval
        self.quiet = quiet
        self.mode: Mode = mode or ("tty" if getattr(self.stream, "isatty", lambda: False)() else "plain")
        self.index = 0  # videos begun (rendered or skipped)
        self.prefix = ""  # "[SIMULATED] " on simulated runs: every line says so
        self.ended = 0  # videos finished (ok, failed or skipped)
        self.start = time.monotonic()
        self.lock = threading.RLock()
        self._slots: list[bool] = []  # tqdm positions of the video bars (True: taken)
        self.bar = None
        if self.mode == "tty" and not quiet:
            self.bar = tqdm(total=total_videos, desc="videos", unit="video", file=self.stream, position=0,
                            dynamic_ncols=True, leave=True)

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            if self.bar is not None:
                tqdm.write(f"{self.prefix}{text}", file=self.stream)  # above the bars, which are redrawn below it
            else:
                print(f"{self.prefix}{text}", file=self.stream, flush=True)

    def video(self, video_id: str, description: str, totals: dict[str, int]) -> VideoProgress:
        with self.lock:
            self.index += 1
            of = f"/{self.total}" if self.total else ""
            self._print(f"[{self.index}{of}] {video_id}: {description}")
            return VideoProgress(self, video_id, totals)

    def skipped(self, video_id: str, detail: str) -> None:
        """A video not rendered in this run (its record says ok for the same digests)."""
        with self.lock:
            self.index += 1
            of = f"/{self.total}" if self.total else ""
            self._print(f"[{self.index}{of}] {video_id}: skipped - {detail}")
            self._ended()

    def note(self, text: str) -> None:
        self._print(text)

    def overall(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.ended / elapsed * 60 if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        return f"videos {self.ended}{of} done | {rate:.2f} videos/min | ETA {_eta(elapsed, self.ended, self.total)}"

    def _ended(self) -> None:
        self.ended += 1
        if self.bar is not None:
            self.bar.update(1)
        else:
            self._print(f"  overall: {self.overall()}")

    def _slot(self) -> int:
        for i, taken in enumerate(self._slots):
            if not taken:
                self._slots[i] = True
                return i + 1
        self._slots.append(True)
        return len(self._slots)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class VideoProgress:
    def __init__(self, parent: Progress, video_id: str, totals: dict[str, int]):
        self.parent, self.video_id, self.totals = parent, video_id, totals
        self.done: dict[str, int] = defaultdict(int)
        self.start = self._last = time.monotonic()
        self.bar = None
        if parent.bar is not None:
            self.position = parent._slot()
            self.bar = tqdm(total=sum(totals.values()) or None, desc=video_id, unit="unit", file=parent.stream,
                            position=self.position, leave=False, dynamic_ncols=True)

    def unit(self, stage: str, unit: str, count: int = 1) -> None:
        """`count` units of `stage` done (unit names the last one, e.g. "chunk 3")."""
        if unit == "prepare" or count <= 0 or COUNTED.get(stage, "") not in unit:
            return
        with self.parent.lock:
            self.done[stage] += count
            self._show(stage, count)

    def reach(self, stage: str, n: int) -> None:
        """`stage` has done `n` units in all (for counts read from a remote worker)."""
        with self.parent.lock:
            delta = n - self.done[stage]
        if delta > 0:
            self.unit(stage, f"{n} {COUNTED.get(stage, '')}", delta)

    def _show(self, stage: str, count: int) -> None:
        if self.parent.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self.status(), refresh=False)
            self.bar.update(count if stage in self.totals else 0)
            return
        now = time.monotonic()
        stage_end = stage in self.totals and self.done[stage] == self.totals[stage]
        if stage_end or now - self._last >= self.parent.interval:
            self._last = now
            self.parent._print(f"    {self.video_id}: {self.status()} | ETA {self.eta()}")

    def eta(self) -> str:
        total = sum(self.totals.values())
        done = sum(min(self.done[s], n) for s, n in self.totals.items())
        return _eta(time.monotonic() - self.start, done, total)

    def status(self) -> str:
        parts = []
        for stage, n in list(self.done.items()):
            total = self.totals.get(stage)
            parts.append(f"{stage} {n}/{total}" if total else f"{stage} {n}")
        return " | ".join(parts)

    def finish(self, status: str, detail: str = "") -> None:
        took = time.monotonic() - self.start
        with self.parent.lock:
            if self.bar is not None:
                self.bar.close()
                self.parent._slots[self.position - 1] = False
                self.bar = None
            final = f" [{self.status()}]" if self.done else ""
            self.parent._print(f"    {self.video_id}: {status} in {took:.1f}s{final}{(' - ' + detail) if detail else ''}")
            self.parent._ended()
