import json
import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from stt2v_ray.results import RESULT_COLUMNS, ResultsTable, Timeline, package_versions, write_run_json


def test_timeline_records_spans_and_round_trips(tmp_path):
    timeline = Timeline()
    timeline.record("v1", "base", "worker-0", "chunk 0", 100.0, 102.5)
    with pytest.raises(KeyError):
        with timeline.span("v1", "enhance", "worker-1", "frames 0-15"):
            time.sleep(0.01)
            raise KeyError("failed work still took time")
    rows = timeline.rows()
    assert [(r["stage"], r["unit"]) for r in rows] == [("base", "chunk 0"), ("enhance", "frames 0-15")]
    assert rows[0]["seconds"] == 2.5
    assert rows[1]["seconds"] >= 0.01 and rows[1]["end"] - rows[1]["start"] == pytest.approx(rows[1]["seconds"], abs=1e-6)

    timeline.write(str(tmp_path / "timeline.parquet"))
    table = pq.read_table(tmp_path / "timeline.parquet")
    assert table.column_names == ["video_id", "stage", "worker", "unit", "start", "end", "seconds"]
    assert table.schema.field("start").type == pa.float64()
    assert table.to_pylist() == rows
    assert os.listdir(tmp_path) == ["timeline.parquet"]


def test_timeline_is_thread_safe_and_survives_a_wall_clock_that_steps_back(monkeypatch):
    timeline = Timeline()

    def work(worker: int) -> None:
        for i in range(200):
            timeline.record("v", "base", f"w{worker}", f"chunk {i}", 1.0, 2.0)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(timeline.rows()) == 800
    # Wall times that step back (an NTP correction) never raise: the span counts 0 seconds.
    timeline.record("v", "base", "w", "chunk 1", 2.0, 1.0)
    assert timeline.take("v")[-1][4:] == (2.0, 2.0, 0.0)
    assert timeline.take("v") == [] and len(timeline.rows()) == 0
    # Spans measure with a monotonic clock: a wall clock set back an hour mid-span changes nothing.
    wall = iter([1000.0, -2600.0])
    monkeypatch.setattr(time, "time", lambda: next(wall))
    with timeline.span("v", "base", "w", "chunk 2"):
        pass
    (row,) = timeline.take("v")
    assert row[4] == 1000.0 and 0.0 <= row[6] < 1.0 and row[5] == 1000.0 + row[6]


def test_results_table_fixed_columns_then_extras_with_nulls(tmp_path):
    results = ResultsTable()
    results.add(
        dict(id="a", status="ok", video_uri="out/a.mp4", num_frames=17, fps=12.0, width=64, height=48, seed=7,
             frames_sha256="ab" * 32, base_seconds=1.5, total_seconds=2.0),
        extra={"camera": "pan", "score": 0.5},
    )
    results.add(
        dict(id="b", status="failed", seed=8, error="ValueError: boom"),
        extra={"score": 0.25, "tags": ["x", "y"], "id": "row-2", "fps": 30},
    )
    results.add(dict(id="c", status="ok", num_frames=5), extra={})
    results.write(str(tmp_path / "results.parquet"))
    table = pq.read_table(tmp_path / "results.parquet")
    assert table.column_names == [*RESULT_COLUMNS, "camera", "score", "tags", "input_id", "input_fps"]
    assert table.column_names[:15] == [
        "id", "status", "video_uri", "num_frames", "fps", "width", "height", "seed", "frames_sha256", "error",
        "base_seconds", "enhance_seconds", "interpolate_seconds", "encode_seconds", "total_seconds",
    ]
    schema = table.schema
    assert schema.field("num_frames").type == pa.int64()
    assert schema.field("enhance_seconds").type == pa.float64()
    assert schema.field("score").type == pa.float64()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("input_fps").type == pa.int64()
    rows = table.to_pylist()
    assert rows[0]["camera"] == "pan" and rows[1]["camera"] is None and rows[2]["camera"] is None
    assert [r["score"] for r in rows] == [0.5, 0.25, None]
    assert rows[1]["tags"] == ["x", "y"] and rows[1]["input_id"] == "row-2" and rows[1]["id"] == "b"
    assert rows[1]["num_frames"] is None and rows[1]["error"] == "ValueError: boom"
    assert rows[2]["num_frames"] == 5


def test_results_table_mixed_extra_types_become_text():
    results = ResultsTable()
    results.add(dict(id="a", status="ok"), extra={"level": 3})
    results.add(dict(id="b", status="ok"), extra={"level": "high"})
    column = results.to_table().column("level")
    assert column.type == pa.string() and column.to_pylist() == ["3", "high"]


def test_results_table_rejects_bad_rows():
    results = ResultsTable()
    with pytest.raises(ValueError, match=r"unknown result columns \['frames'\]"):
        results.add(dict(id="a", status="ok", frames=3))
    with pytest.raises(ValueError, match="result status must be 'ok' or 'failed', got 'done' for id 'a'"):
        results.add(dict(id="a", status="done"))
    with pytest.raises(ValueError, match="'input_seed' is already an extra column"):
        results.add(dict(id="a", status="ok"), extra={"input_seed": 1, "seed": 2})
    assert len(results) == 0


def test_empty_results_table_has_the_fixed_schema(tmp_path):
    ResultsTable().write(str(tmp_path / "r.parquet"))
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.num_rows == 0 and table.column_names == list(RESULT_COLUMNS)


def test_write_run_json_and_package_versions(tmp_path):
    versions = package_versions()
    assert set(versions) == {"stt2v_ray", "torch", "diffusers", "transformers", "ray", "pyarrow", "python"}
    assert versions["pyarrow"] == pa.__version__ and versions["stt2v_ray"] == "0.1.0"
    target = tmp_path / "run" / "run.json"
    write_run_json(str(target), {"versions": versions, "path": tmp_path})
    assert json.loads(target.read_text()) == {"versions": versions, "path": str(tmp_path)}
    assert os.listdir(target.parent) == ["run.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    class Unserializable:
        def __str__(self):
            raise RuntimeError("cannot render")

    write_run_json(str(tmp_path / "run.json"), {"attempt": 1})
    with pytest.raises(RuntimeError, match="cannot render"):
        write_run_json(str(tmp_path / "run.json"), {"x": Unserializable()})
    assert os.listdir(tmp_path) == ["run.json"]
    assert json.loads((tmp_path / "run.json").read_text()) == {"attempt": 1}


def test_write_to_s3(s3_server, s3_bucket):
    options = {"endpoint_url": s3_server.endpoint_url}
    results = ResultsTable()
    results.add(dict(id="a", status="ok", num_frames=3), extra={"camera": "pan"})
    timeline = Timeline()
    timeline.record("a", "encode", "w0", "segment 0", 1.0, 1.25)
    results.write(f"s3://{s3_bucket}/run/results.parquet", options)
    timeline.write(f"s3://{s3_bucket}/run/timeline.parquet", options)
    write_run_json(f"s3://{s3_bucket}/run/run.json", {"ok": True}, options)
    fs = s3fs.S3FileSystem(**options)
    assert sorted(fs.ls(f"{s3_bucket}/run")) == [
        f"{s3_bucket}/run/results.parquet", f"{s3_bucket}/run/run.json", f"{s3_bucket}/run/timeline.parquet"
    ]
    with fs.open(f"{s3_bucket}/run/results.parquet", "rb") as f:
        assert pq.read_table(f).to_pylist()[0]["camera"] == "pan"
    with fs.open(f"{s3_bucket}/run/timeline.parquet", "rb") as f:
        assert pq.read_table(f).column("seconds").to_pylist() == [0.25]
    assert json.loads(fs.cat(f"{s3_bucket}/run/run.json")) == {"ok": True}
