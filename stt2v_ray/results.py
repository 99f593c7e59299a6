"""Run outputs besides the videos: the per-video results table, the stage timeline, run.json."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import platform
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stt2v_ray.storage import atomic_output

TIMELINE_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("stage", pa.string()),
        ("worker", pa.string()),
        ("unit", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("seconds", pa.float64()),
    ]
)

RESULT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("status", pa.string()),
        ("video_uri", pa.string()),
        ("num_frames", pa.int64()),
        ("fps", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("seed", pa.int64()),
        ("frames_sha256", pa.string()),
        ("error", pa.string()),
        ("base_seconds", pa.float64()),
        ("enhance_seconds", pa.float64()),
        ("interpolate_seconds", pa.float64()),
        ("encode_seconds", pa.float64()),
        ("total_seconds", pa.float64()),
        ("request_digest", pa.string()),  # see stt2v_ray.records: what each digest covers
        ("settings_digest", pa.string()),
        ("attempts", pa.int64()),  # renders of the video in this run (Ray retries one lost to a dead actor or node)
        ("error_detail", pa.string()),  # a failed video's full traceback (the remote one under Ray); `error` stays short
        ("real_output", pa.bool_()),  # false: a simulated run (pipeline/simulate.py), no pictures; weights: run.json
    ]
)
RESULT_COLUMNS = tuple(RESULT_SCHEMA.names)
EXTRA_PREFIX = "input_"  # for extra (input) columns whose names clash with a fixed column


def _write_parquet(table: pa.Table, uri: str, storage_options: dict | None) -> None:
    with atomic_output(uri, storage_options) as tmp:
        pq.write_table(table, str(tmp))


class Timeline:
    """Thread-safe log of (video, stage, worker, unit) time spans, kept per video.

    Start times are wall-clock (to line spans up across machines); durations come from a
    monotonic clock, so a wall clock that steps back never makes a span negative or raises.
    The driver `take`s a video's spans into its record as the video ends, so it never holds
    the whole batch's timeline.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[dict]] = {}
        self._lock = threading.Lock()

    def record(self, video_id: str, stage: str, worker: str, unit: str, start: float, end: float,
               seconds: float | None = None) -> None:
        """unit names the piece of work, e.g. "chunk 3", "segment 1", "frames 0-15"; start/end from time.time(),
        seconds (when given) from a monotonic clock. A span whose wall clock stepped back counts 0 seconds."""
        seconds = max(0.0, end - start) if seconds is None else max(0.0, seconds)
        row = dict(video_id=video_id, stage=stage, worker=worker, unit=unit, start=start, end=start + seconds,
                   seconds=seconds)
        with self._lock:
            self._rows.setdefault(video_id, []).append(row)

    @contextlib.contextmanager
    def span(self, video_id: str, stage: str, worker: str, unit: str) -> Iterator[None]:
        """Record the time the with-block takes (also when it raises: failed work took time too)."""
        start, t0 = time.time(), time.monotonic()
        try:
            yield
        finally:
            self.record(video_id, stage, worker, unit, start, start, time.monotonic() - t0)

    def take(self, video_id: str) -> list[tuple]:
        """Remove and return one video's spans as (video_id, stage, worker, unit, start, end, seconds)."""
        with self._lock:
            rows = self._rows.pop(video_id, [])
        return [tuple(r[k] for k in TIMELINE_SCHEMA.names) for r in rows]

    def rows(self) -> list[dict]:
        with self._lock:
            return [dict(r) for rows in self._rows.values() for r in rows]

    def to_table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows(), schema=TIMELINE_SCHEMA)

    def write(self, uri: str, storage_options: dict | None = None) -> None:
        _write_parquet(self.to_table(), uri, storage_options)


class ResultsTable:
    """One row per video: fixed columns first, then the manifest's extra columns in first-seen order."""

    def __init__(self) -> None:
        self._rows: list[dict] = []
        self._extras: list[dict] = []
        self._extra_names: dict[str, None] = {}  # insertion-ordered set
        self._lock = threading.Lock()

    def add(self, row: dict, extra: dict | None = None) -> None:
        unknown = sorted(set(row) - set(RESULT_COLUMNS))
        if unknown:
            raise ValueError(f"unknown result columns {unknown}; allowed: {list(RESULT_COLUMNS)}")
        if "id" not in row or "status" not in row:
            raise ValueError(f"a result row needs 'id' and 'status', got keys {sorted(row)}")
        if row["status"] not in ("ok", "failed"):
            raise ValueError(f"result status must be 'ok' or 'failed', got {row['status']!r} for id {row['id']!r}")
        renamed: dict[str, Any] = {}
        for name, value in (extra or {}).items():
            key = EXTRA_PREFIX + name if name in RESULT_COLUMNS else name
            if key in renamed:
                raise ValueError(
                    f"extra column {name!r} of id {row['id']!r} clashes with a fixed column and "
                    f"{key!r} is already an extra column"
                )
            renamed[key] = value
        with self._lock:
            self._rows.append(dict(row))
            self._extras.append(renamed)
            for key in renamed:
                self._extra_names.setdefault(key)

    def __len__(self) -> int:
        return len(self._rows)

    def to_table(self) -> pa.Table:
        with self._lock:
            rows, extras, names = list(self._rows), list(self._extras), list(self._extra_names)
        table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
        for name in names:
            values = [e.get(name) for e in extras]
            try:
                column = pa.array(values)  # Arrow infers the type; missing values become nulls
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # Mixed types (e.g. 3 and "x" across rows): keep them all, as text.
                column = pa.array([None if v is None else str(v) for v in values], type=pa.string())
            table = table.append_column(name, column)
        return table

    def write(self, uri: str, storage_options: dict | None = None) -> None:
        _write_parquet(self.to_table(), uri, storage_options)


def write_run_json(uri: str, payload: dict, storage_options: dict | None = None) -> None:
    """Write payload as indented JSON, atomically (values JSON cannot hold are written as str)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    with atomic_output(uri, storage_options) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that decide the output, read from metadata (no heavy imports)."""
    versions: dict[str, str | None] = {}
    for key, dist in [
        ("stt2v_ray", "stt2v-ray"),
        ("torch", "torch"),
        ("diffusers", "diffusers"),
        ("transformers", "transformers"),
        ("ray", "ray"),
        ("pyarrow", "pyarrow"),
    ]:
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = None
    if versions["stt2v_ray"] is None:  # running from a source tree that is not installed
        from stt2v_ray import __version__

        versions["stt2v_ray"] = __version__
    versions["python"] = platform.python_version()
    return versions
