"""Progress lines on stderr: one per video start/end, and a throttled status line per stage."""
from __future__ import annotations

import sys
import time
from collections import defaultdict


class Progress:
    def __init__(self, total_videos: int | None = None, stream=None, interval: float = 2.0, quiet: bool = False):
        self.total = total_videos
        self.stream = stream or sys.stderr
        self.interval = interval
        self.quiet = quiet
        self.index = 0
        self.prefix = ""  # "[SIMULATED] " on simulated runs: every line says so

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(f"{self.prefix}{text}", file=self.stream, flush=True)

    def video(self, video_id: str, description: str, totals: dict[str, int]) -> VideoProgress:
        self.index += 1
        of = f"/{self.total}" if self.total else ""
        self._print(f"[{self.index}{of}] {video_id}: {description}")
        return VideoProgress(self, video_id, totals)

    def skipped(self, video_id: str, detail: str) -> None:
        """A video not rendered in this run (its record says ok for the same digests)."""
        self.index += 1
        of = f"/{self.total}" if self.total else ""
        self._print(f"[{self.index}{of}] {video_id}: skipped - {detail}")

    def note(self, text: str) -> None:
        self._print(text)


class VideoProgress:
    def __init__(self, parent: Progress, video_id: str, totals: dict[str, int]):
        self.parent, self.video_id, self.totals = parent, video_id, totals
        self.done: dict[str, int] = defaultdict(int)
        self.start = self._last = time.monotonic()

    def unit(self, stage: str, unit: str) -> None:
        if unit == "prepare":
            return
        self.done[stage] += 1
        now = time.monotonic()
        if now - self._last >= self.parent.interval:
            self._last = now
            self.parent._print(f"    {self.video_id}: {self.status()}")

    def status(self) -> str:
        parts = []
        for stage, n in self.done.items():
            total = self.totals.get(stage)
            parts.append(f"{stage} {n}/{total}" if total else f"{stage} {n}")
        return " | ".join(parts)

    def finish(self, status: str, detail: str = "") -> None:
        took = time.monotonic() - self.start
        self.parent._print(f"    {self.video_id}: {status} in {took:.1f}s{(' - ' + detail) if detail else ''}")
