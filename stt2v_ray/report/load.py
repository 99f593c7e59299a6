"""Read a finished render's output folder: the tables, run.json and the contact sheets."""
from __future__ import annotations

import datetime as dt
import json
import posixpath
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from stt2v_ray.storage import filesystem, join_uri, storage_options_for


@dataclass
class RunData:
    """Everything the report shows, as plain Python values (rows are dicts)."""

    output: str
    results: list[dict]
    timeline: list[dict]
    run: dict
    metrics: dict[str, dict] = field(default_factory=dict)  # by video id
    sheets: dict[str, bytes] = field(default_factory=dict)  # PNG bytes by video id

    @property
    def settings(self) -> dict:
        return self.run.get("settings") or {}

    @property
    def started(self) -> float | None:
        """This run's start (run.json), as epoch seconds."""
        try:
            return dt.datetime.fromisoformat(self.run["started"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def t0(self) -> float:
        """Time origin of the charts: the run's start, or the first span if earlier (a resumed run keeps the
        spans of videos rendered by earlier runs)."""
        first = min((r["start"] for r in self.timeline), default=None)
        candidates = [t for t in (self.started, first) if t is not None]
        return min(candidates) if candidates else 0.0

    @property
    def span_seconds(self) -> float:
        """Length of the charts' window: from t0 to the later of the run's end and the last span's end."""
        last = max((r["end"] for r in self.timeline), default=self.t0)
        return max(last - self.t0, self.wall_seconds if self.started is None else self.started - self.t0 + self.wall_seconds)

    @property
    def wall_seconds(self) -> float:
        """This run's wall time: run.json's seconds, else the span from t0 to the last timeline end."""
        seconds = self.run.get("seconds")
        if isinstance(seconds, (int, float)) and seconds > 0:
            return float(seconds)
        return max((r["end"] for r in self.timeline), default=self.t0) - self.t0


def status_of(row: dict) -> str:
    """ok, failed or skipped: a `skipped` flag wins over the status column."""
    if row.get("skipped") is True:
        return "skipped"
    return str(row.get("status") or "failed")


def video_name(row: dict) -> str:
    """The MP4's file name in videos/: from video_uri when recorded, else <id>.mp4."""
    uri = row.get("video_uri")
    return posixpath.basename(uri) if uri else f"{row['id']}.mp4"


def load_run(output: str, storage_options: dict | None = None) -> RunData:
    """Read OUTPUT; ValueError naming the file when results.parquet or run.json is missing or unreadable."""
    options = storage_options_for(output, storage_options)
    fs, _ = filesystem(output, options)

    def path(*parts: str) -> str:
        return filesystem(join_uri(output, *parts), options)[1]

    def table(name: str, required: bool) -> list[dict] | None:
        p = path(name)
        if not fs.exists(p):
            if required:
                raise ValueError(f"{join_uri(output, name)}: not found (is {output} the output folder of a render?)")
            return None
        try:
            with fs.open(p, "rb") as f:
                return pq.read_table(f).to_pylist()
        except Exception as exc:  # a truncated or foreign file: say which one
            raise ValueError(f"{join_uri(output, name)}: cannot read Parquet: {exc}") from exc

    results = table("results.parquet", True) or []
    timeline = table("timeline.parquet", False) or []
    run: dict = {}
    if fs.exists(path("run.json")):
        try:
            with fs.open(path("run.json"), "r", encoding="utf-8") as f:
                run = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{join_uri(output, 'run.json')}: not valid JSON: {exc}") from exc
    metrics = {r["id"]: r for r in table("metrics.parquet", False) or [] if r.get("id") is not None}
    sheets: dict[str, bytes] = {}
    for row in results:
        sheet = path("videos", posixpath.splitext(video_name(row))[0] + ".png")
        if fs.exists(sheet):
            with fs.open(sheet, "rb") as f:
                sheets[row["id"]] = f.read()
    return RunData(output, results, timeline, run, metrics, sheets)
