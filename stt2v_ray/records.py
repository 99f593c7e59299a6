"""Per-video records: the durable state of a batch, from which the tables are assembled.

As each video ends (ok or failed), the driver commits `<output>/records/<id>.json`
atomically, right after the video's MP4: its results row, its timeline units, its
request and settings digests. results.parquet, timeline.parquet and run.json are
assembled from the records in input order, streaming (a bounded batch at a time), at the
end of a run, on SIGINT/SIGTERM and on every rerun. A rerun skips every video whose record
says ok for the same digests and whose MP4 exists.

Digests (SHA-256, hex, of canonical JSON):
- request digest: every field of the request (id, prompt, negative_prompt, image URI as
  resolved, num_frames, fps, seed). The image's bytes are not hashed.
- settings digest: every run setting that decides the output video: preset, device,
  cpu_threads, t2v, i2v, enhance, interpolate, encode, weights, memory. Left out, because
  frames are bitwise equal across them or they do not touch the output: executor, ray.*,
  shutdown.*, and any future setting listed in NOT_OUTPUT.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stt2v_ray.results import EXTRA_PREFIX, RESULT_COLUMNS, RESULT_SCHEMA, TIMELINE_SCHEMA
from stt2v_ray.storage import atomic_output, atomic_write_bytes, filesystem, join_uri

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
NOT_OUTPUT = ("executor", "ray", "shutdown", "retry")  # settings that never change a video's frames or bytes
BATCH = 512  # records read, and table rows written, at a time


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_digest(request) -> str:
    return _digest(request.model_dump(mode="json"))


def settings_digest(settings) -> str:
    dumped = settings.model_dump(mode="json")
    return _digest({k: v for k, v in dumped.items() if k not in NOT_OUTPUT})


def work_uri(output_uri: str, request, settings) -> str:
    """The video's work prefix: `_work/<id>/<key>`, key from both digests (other settings never meet)."""
    key = _digest([request_digest(request), settings_digest(settings)])[:16]
    return join_uri(output_uri, "_work", request.id, key)


def _json_value(value: Any) -> Any:
    """Extra columns arrive as Arrow scalars; a record keeps their Python value (informational)."""
    return value.as_py() if isinstance(value, pa.Scalar) else value


class RecordStore:
    """`<output>/records/<id>.json` for every video that ended, read and written in batches."""

    def __init__(self, output_uri: str, storage_options: dict | None = None):
        self.output_uri, self.storage_options = output_uri, storage_options
        self.fs, self.root = filesystem(join_uri(output_uri, "records"), storage_options)
        self.fs.invalidate_cache()

    def path(self, video_id: str) -> str:
        return posixpath.join(self.root, f"{video_id}.json")

    def any(self) -> bool:
        """Whether the output holds a records folder at all (a fresh output needs no resume pass)."""
        try:
            return self.fs.exists(self.root)
        except OSError:
            return False

    def commit(self, row: dict, extra: dict, units: list[tuple], digests: tuple[str, str]) -> None:
        """Write one video's record atomically (raises on storage errors: the caller decides)."""
        record = {
            "format": RECORD_FORMAT, "id": row["id"], "status": row["status"],
            "request_digest": digests[0], "settings_digest": digests[1],
            "row": row, "extra": {k: _json_value(v) for k, v in (extra or {}).items()},
            "timeline": [list(u) for u in units],
        }
        data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
        atomic_write_bytes(join_uri(self.output_uri, "records", f"{row['id']}.json"), data, self.storage_options)

    def read_many(self, ids: list[str]) -> dict[str, dict]:
        """Records of those ids that have one (concurrent on async filesystems such as s3fs)."""
        if not ids:
            return {}
        paths = [self.path(i) for i in ids]
        try:
            found = self.fs.cat(paths, on_error="omit")
        except FileNotFoundError:
            found = {}
        out = {}
        for path, data in found.items():
            try:
                record = json.loads(data)
            except ValueError:  # cannot happen with atomic writes; treat as missing
                log.warning("unreadable record %s: rendered again", path)
                continue
            out[record["id"]] = record
        return out

    def remove(self, ids: list[str]) -> None:
        """Delete the records of these ids (--overwrite): missing ones are fine."""
        paths = [self.path(i) for i in ids]
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm([p for p in paths if self.fs.exists(p)])

    def remove_work(self, video_id: str) -> None:
        """Drop `_work/<id>/` (best effort: leftovers cost disk, never correctness)."""
        fs, path = filesystem(join_uri(self.output_uri, "_work", video_id), self.storage_options)
        try:
            if fs.exists(path):
                fs.rm(path, recursive=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)


    def sweep_temps(self) -> list[str]:
        """Remove temp files a killed writer left in `videos/` (local outputs write a hidden
        `.<name>.tmp-*` beside the target, then rename; object stores upload whole objects)."""
        fs, path = filesystem(join_uri(self.output_uri, "videos"), self.storage_options)
        removed = []
        with contextlib.suppress(OSError):
            if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) and fs.isdir(path):
                for p in fs.ls(path, detail=False):
                    name = posixpath.basename(p)
                    if name.startswith(".") and ".tmp-" in name:
                        fs.rm(p)
                        removed.append(name)
        return removed

    def tidy(self) -> None:
        """Remove an empty `_work/` folder (local outputs; object stores have no empty folders)."""
        fs, path = filesystem(join_uri(self.output_uri, "_work"), self.storage_options)
        with contextlib.suppress(OSError):
            if fs.isdir(path) and not fs.ls(path, detail=False):
                fs.rmdir(path)


def batched(items: Iterable, n: int = BATCH) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def extra_names(extra_schema: pa.Schema) -> list[tuple[str, str, pa.DataType]]:
    """(input name, results column name, type) of the extra columns; clashing names get EXTRA_PREFIX."""
    out, seen = [], set(RESULT_COLUMNS)
    for f in extra_schema:
        name = EXTRA_PREFIX + f.name if f.name in RESULT_COLUMNS else f.name
        if name in seen:
            raise ValueError(f"extra column {f.name!r} clashes with a fixed column and {name!r} is already a column")
        seen.add(name)
        out.append((f.name, name, f.type))
    return out


def _extra_array(values: list, type_: pa.DataType) -> pa.Array:
    # Values are Arrow scalars typed as the input's schema (a null list scalar cannot be
    # converted as a scalar, so go through Python values).
    return pa.array([_json_value(v) for v in values], type=type_)


def assemble(requests: Iterable[tuple], extra_schema: pa.Schema, store: RecordStore, output_uri: str) -> dict[str, int]:
    """Write results.parquet and timeline.parquet from the records of `requests`, in input order.

    Streams: a batch of records is read, written as row groups, dropped. Extra columns come
    from the input itself (typed as its schema). Returns {"ok", "failed", "missing"} over the input.
    """
    extras = extra_names(extra_schema)
    schema = RESULT_SCHEMA
    for _, name, type_ in extras:
        schema = schema.append(pa.field(name, type_))
    counts = {"ok": 0, "failed": 0, "missing": 0}
    opts = store.storage_options
    with atomic_output(join_uri(output_uri, "results.parquet"), opts) as rtmp, \
            atomic_output(join_uri(output_uri, "timeline.parquet"), opts) as ttmp, \
            pq.ParquetWriter(rtmp, schema) as results, pq.ParquetWriter(ttmp, TIMELINE_SCHEMA) as timeline:
        wrote_any = False
        for batch in batched(requests):
            records = store.read_many([r.id for r, _ in batch])
            rows, units, extra_values = [], [], [[] for _ in extras]
            for request, extra in batch:
                record = records.get(request.id)
                if record is None:
                    counts["missing"] += 1
                    continue
                counts["ok" if record["status"] == "ok" else "failed"] += 1
                rows.append({k: record["row"].get(k) for k in RESULT_COLUMNS})
                for column, (src, _, _) in zip(extra_values, extras, strict=True):
                    column.append(extra.get(src))
                for u in record["timeline"]:
                    units.append(dict(zip(TIMELINE_SCHEMA.names, [request.id, *u[1:7]], strict=True)))
            if not rows:
                continue
            table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
            for values, (_, name, type_) in zip(extra_values, extras, strict=True):
                table = table.append_column(pa.field(name, type_), _extra_array(values, type_))
            results.write_table(table)
            timeline.write_table(pa.Table.from_pylist(units, schema=TIMELINE_SCHEMA))
            wrote_any = True
        if not wrote_any:  # an empty file still carries the schema
            results.write_table(schema.empty_table())
    return counts
