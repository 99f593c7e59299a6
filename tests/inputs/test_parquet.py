"""Parquet prompt datasets: streaming, row indices across files, pass-through columns, S3."""
from __future__ import annotations

import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from stt2v_ray.inputs import InputError, InputIssue, VideoRequest, open_input
from stt2v_ray.inputs.parquet import ParquetDataset
from stt2v_ray.storage import filesystem


def rows_table(n: int, start: int = 0, **extra) -> pa.Table:
    return pa.table({"id": [f"v{start + i}" for i in range(n)], "prompt": [f"p{start + i}" for i in range(n)],
                     "num_frames": pa.array([4] * n, pa.int32()), **extra})


def test_single_file_with_nulls_and_defaults(tmp_path):
    table = pa.table({
        "prompt": ["a cat", "a dog", None],
        "negative_prompt": [None, "ugly", None],
        "image": [None, None, "img.png"],
        "num_frames": [8, 16, 4],
        "fps": pa.array([None, 30, None], pa.int16()),
        "seed": [None, 5, 2**63 - 1],
    })
    (tmp_path / "img.png").write_bytes(b"x")
    pq.write_table(table, tmp_path / "d.parquet")
    source = open_input(str(tmp_path / "d.parquet"))
    assert source.kind == "parquet" and source.count() == 3
    assert source.validate([]) == []
    requests = [r for r, _ in source.iter_requests()]
    assert requests[0] == VideoRequest(prompt="a cat", num_frames=8)
    assert (requests[1].negative_prompt, requests[1].fps, requests[1].seed) == ("ugly", 30, 5)
    assert (requests[2].prompt, requests[2].image, requests[2].seed) == ("", str(tmp_path / "img.png"), 2**63 - 1)


def test_extra_columns_pass_through_with_types(tmp_path):
    when = datetime.datetime(2024, 5, 1, 12, 0)
    table = rows_table(2, score=pa.array([1.5, None], pa.float32()), tags=pa.array([["a", "b"], []], pa.list_(pa.string())),
                       meta=pa.array([{"k": 1}, {"k": 2}], pa.struct([("k", pa.int8())])),
                       at=pa.array([when, when], pa.timestamp("ms")))
    pq.write_table(table, tmp_path / "d.parquet")
    source = open_input(str(tmp_path / "d.parquet"))
    assert source.extra_schema() == pa.schema([("score", pa.float32()), ("tags", pa.list_(pa.string())),
                                               ("meta", pa.struct([("k", pa.int8())])), ("at", pa.timestamp("ms"))])
    got = list(source.iter_requests())
    assert [r.id for r, _ in got] == ["v0", "v1"]
    extra0, extra1 = got[0][1], got[1][1]
    assert list(extra0) == ["score", "tags", "meta", "at"]
    assert extra0["score"] == pa.scalar(1.5, pa.float32()) and extra1["score"] == pa.scalar(None, pa.float32())
    assert extra0["tags"].as_py() == ["a", "b"] and extra0["meta"].as_py() == {"k": 1}
    assert extra1["at"].type == pa.timestamp("ms") and extra1["at"].as_py() == when
    # The scalars rebuild the columns with their original types.
    rebuilt = pa.table({name: pa.array([e[name] for _, e in got], type=field.type) for name, field in
                        zip(source.extra_schema().names, source.extra_schema(), strict=False)})
    assert rebuilt.equals(table.select(["score", "tags", "meta", "at"]))


def test_directory_of_files_row_indices_across_files_and_batches(tmp_path):
    data = tmp_path / "data"
    (data / "part=1").mkdir(parents=True)
    pq.write_table(rows_table(5, 0), data / "a.parquet")
    bad = rows_table(5, 5).set_column(2, "num_frames", pa.array([4, 4, 0, 4, 4], pa.int32()))
    pq.write_table(bad, data / "part=1" / "b.parquet", row_group_size=2)
    pq.write_table(rows_table(3, 0).drop_columns(["id"]).set_column(0, "prompt", pa.array(["p0", "", "q"])),
                   data / "c.parquet")
    (data / "_SUCCESS").write_text("")
    (data / ".c.parquet.crc").write_text("")
    source = open_input(str(data))
    assert source.kind == "parquet" and source.count() == 13

    dataset = ParquetDataset(*filesystem(str(data)), str(data), batch_size=2)
    assert [row.index for row in dataset.rows()] == list(range(13))
    assert [row.fields["prompt"] for row in dataset.rows()][:6] == ["p0", "p1", "p2", "p3", "p4", "p0"]

    issues = source.validate([])
    # Files are read in sorted order: a.parquet (rows 0-4), c.parquet (5-7), part=1/b.parquet (8-12).
    assert issues == [
        InputIssue(str(data / "c.parquet"), "row 6", "prompt", "give a non-blank prompt or an image (or both)"),
        InputIssue(str(data / "part=1" / "b.parquet"), "row 10", "num_frames", "Input should be greater than or equal to 1"),
    ]


def test_duplicate_ids_name_both_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(rows_table(3, 0), data / "a.parquet")
    pq.write_table(rows_table(2, 2), data / "b.parquet")
    issues = open_input(str(data)).validate([])
    assert issues == [InputIssue(str(data / "b.parquet"), "row 3", "id",
                                 f"duplicate id 'v2' (also used by {data / 'a.parquet'}: row 2)")]


def test_derived_ids_stable_and_duplicates_detected(tmp_path):
    table = pa.table({"prompt": ["x", "y", "x"], "num_frames": [4, 4, 4]})
    pq.write_table(table, tmp_path / "d.parquet")
    first = [r.id for r, _ in open_input(str(tmp_path / "d.parquet")).iter_requests()]
    second = [r.id for r, _ in open_input(str(tmp_path / "d.parquet")).iter_requests()]
    assert first == second and first[0] == first[2] != first[1]
    # Same content in a manifest gives the same id.
    assert first[0] == VideoRequest(prompt="x", num_frames=4).id == "v-" + first[0][2:]
    issues = open_input(str(tmp_path / "d.parquet")).validate([])
    assert issues == [InputIssue(str(tmp_path / "d.parquet"), "row 2", "id", f"duplicate id {first[0]!r} (also used by row 0)")]


def test_relative_images_resolve_to_dataset_directory(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    pq.write_table(pa.table({"image": ["../imgs/a.png", "missing.png"], "num_frames": [3, 3]}), data / "sub" / "d.parquet")
    # '..' climbs out of the dataset's folder: allowed only under a prefix the user names.
    issues = open_input(str(data)).validate([f"inputs.allow_image_uris=[{tmp_path / 'imgs'}]"])
    assert issues == [InputIssue(str(data / "sub" / "d.parquet"), "row 1", "image", f"image not found: {data / 'missing.png'}")]
    # A single file resolves against its own folder.
    single = open_input(str(data / "sub" / "d.parquet"))
    assert [r.image for r, _ in single.iter_requests()] == [str(data / "imgs" / "a.png"), str(data / "sub" / "missing.png")]


def test_relative_dataset_uri_gives_absolute_images(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"image": ["a.png"], "num_frames": [3]}), tmp_path / "data" / "d.parquet")
    monkeypatch.chdir(tmp_path)
    for uri in ("data", "data/", "data/d.parquet"):
        (request, _), = open_input(uri).iter_requests()
        assert request.image == str(tmp_path / "data" / "a.png")


def test_unknown_columns_are_not_errors_but_bad_types_are(tmp_path):
    table = pa.table({"prompt": ["x", "y"], "num_frames": [4.0, 2.5], "seed": ["1", "2"], "frames": [1, 2]})
    pq.write_table(table, tmp_path / "d.parquet")
    uri = str(tmp_path / "d.parquet")
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "row 0", "seed", "Input should be a valid integer"),
        InputIssue(uri, "row 1", "num_frames", "Input should be a valid integer"),
        InputIssue(uri, "row 1", "seed", "Input should be a valid integer"),
    ]


def test_unreadable_and_empty_datasets(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    source = open_input(str(tmp_path / "bad.parquet"))
    (issue,) = source.validate([])
    assert issue.file == str(tmp_path / "bad.parquet") and issue.message.startswith("cannot read as Parquet:")
    with pytest.raises(InputError, match="cannot read as Parquet"):
        list(source.iter_requests())

    (tmp_path / "empty").mkdir()
    assert open_input(str(tmp_path / "empty")).validate([]) == [
        InputIssue(str(tmp_path / "empty"), "", "", "no .parquet or .parq files in this folder")]

    pq.write_table(rows_table(0), tmp_path / "none.parquet")
    assert open_input(str(tmp_path / "none.parquet")).validate([]) == [
        InputIssue(str(tmp_path / "none.parquet"), "", "", "the dataset has no rows")]


def test_conflicting_extra_column_types(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(rows_table(1, 0, score=pa.array([1], pa.int64())), tmp_path / "d" / "a.parquet")
    pq.write_table(rows_table(1, 1, score=pa.array(["x"])), tmp_path / "d" / "b.parquet")
    (issue,) = open_input(str(tmp_path / "d")).validate([])
    assert issue.message.startswith("files disagree on the types of extra columns:")


def test_missing_extra_column_in_one_file_is_null(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(rows_table(1, 0, score=pa.array([7], pa.int16())), tmp_path / "d" / "a.parquet")
    pq.write_table(rows_table(1, 1), tmp_path / "d" / "b.parquet")
    extras = [e for _, e in open_input(str(tmp_path / "d")).iter_requests()]
    assert extras == [{"score": pa.scalar(7, pa.int16())}, {"score": pa.scalar(None, pa.int16())}]


def test_parquet_over_s3(s3_bucket, tmp_path):
    fs = s3fs.S3FileSystem()  # endpoint from AWS_ENDPOINT_URL, credentials from the environment
    with fs.open(f"{s3_bucket}/data/a.parquet", "wb") as f:
        pq.write_table(rows_table(3, 0, score=pa.array([1, 2, 3], pa.int8())), f)
    with fs.open(f"{s3_bucket}/data/b.parquet", "wb") as f:
        pq.write_table(pa.table({"prompt": ["z", "w"], "num_frames": [0, 2], "image": [None, "imgs/i.png"],
                                 "score": pa.array([4, 5], pa.int8())}), f)
    fs.pipe(f"{s3_bucket}/data/imgs/i.png", b"png")
    source = open_input(f"s3://{s3_bucket}/data")
    assert source.kind == "parquet" and source.count() == 5
    assert source.validate([]) == [
        InputIssue(f"s3://{s3_bucket}/data/b.parquet", "row 3", "num_frames", "Input should be greater than or equal to 1")]
    fs.rm(f"{s3_bucket}/data/b.parquet")
    with fs.open(f"{s3_bucket}/data/b.parquet", "wb") as f:
        pq.write_table(
            pa.table({"prompt": ["z"], "num_frames": [1], "image": ["imgs/i.png"], "score": pa.array([4], pa.int8())}), f
        )
    source = open_input(f"s3://{s3_bucket}/data/")
    assert source.validate([]) == []
    got = list(source.iter_requests())
    assert [r.id for r, _ in got][:3] == ["v0", "v1", "v2"]
    assert got[3][0].image == f"s3://{s3_bucket}/data/imgs/i.png"
    assert [e["score"].as_py() for _, e in got] == [1, 2, 3, 4]

    fs.rm(f"{s3_bucket}/data/imgs/i.png")
    assert open_input(f"s3://{s3_bucket}/data").validate([]) == [
        InputIssue(f"s3://{s3_bucket}/data/b.parquet", "row 3", "image", f"image not found: s3://{s3_bucket}/data/imgs/i.png")]
