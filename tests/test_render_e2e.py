"""End to end on the tiny preset: manifests and Parquet datasets to MP4s and tables."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from stt2v_ray.cli import main
from stt2v_ray.video.decode import read_video

# Small and fast: 2 base steps, 2 enhancer steps, small chunks so every stage has several units.
FAST = [
    "executor=local",
    "t2v.steps=2", "i2v.steps=2",
    "enhance.steps=4", "enhance.strength=0.5",
    "enhance.chunk_frames=8", "enhance.overlap_frames=3",
    "t2v.chunk_frames=8", "t2v.cond_frames=4",
    "i2v.chunk_frames=8", "i2v.cond_frames=3", "i2v.anchor_frame=2",
    "encode.preset=ultrafast",
]


def sets(*extra: str) -> list[str]:
    out = []
    for s in FAST + list(extra):
        out += ["--set", s]
    return out


def write_manifest(path: Path, prompts: list[dict], settings: dict | None = None, defaults: dict | None = None) -> Path:
    doc = {"settings": settings or {"preset": "tiny"}, "prompts": prompts}
    if defaults:
        doc["defaults"] = defaults
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from PIL import Image

    p = tmp_path / "img.png"
    Image.new("RGB", (60, 40), (200, 30, 30)).save(p)
    return p


def test_manifest_to_local_folder(tmp_path, image):
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"id": "t2v-a", "prompt": "a red circle", "num_frames": 21, "seed": 5},
        {"id": "i2v-b", "prompt": "a field", "image": "img.png", "num_frames": 13, "fps": 12, "seed": 6},
        {"id": "one", "prompt": "a single frame", "num_frames": 1},
    ])
    out = tmp_path / "out"
    assert main(["render", str(manifest), "--output", str(out), "--quiet"] + sets()) == 0

    table = pq.read_table(out / "results.parquet").to_pylist()
    rows = {r["id"]: r for r in table}
    assert [r["id"] for r in table] == ["t2v-a", "i2v-b", "one"]
    for vid, n, fps, (w, h) in [("t2v-a", 21, 24, (64, 64)), ("i2v-b", 13, 12, (96, 64)), ("one", 1, 24, (64, 64))]:
        r = rows[vid]
        assert r["status"] == "ok", r["error"]
        assert (r["num_frames"], r["fps"], r["width"], r["height"]) == (n, fps, w, h)
        frames, got_fps = read_video(str(out / "videos" / f"{vid}.mp4"))
        assert frames.shape == (n, h, w, 3)
        assert got_fps == pytest.approx(fps)
        assert r["video_uri"].endswith(f"videos/{vid}.mp4")
        assert len(r["frames_sha256"]) == 64
        assert r["base_seconds"] > 0 and r["encode_seconds"] > 0 and r["total_seconds"] > 0
    assert rows["t2v-a"]["enhance_seconds"] > 0 and rows["t2v-a"]["interpolate_seconds"] > 0

    timeline = pq.read_table(out / "timeline.parquet").to_pylist()
    stages = {(r["video_id"], r["stage"]) for r in timeline}
    assert {("t2v-a", s) for s in ("base", "enhance", "interpolate", "encode")} <= stages
    assert all(r["end"] >= r["start"] for r in timeline)

    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["t2v"]["steps"] == 2
    assert run["videos"] == {"ok": 3, "failed": 0, "missing": 0}
    assert "torch" in run["versions"]
    # Nothing temporary left behind.
    assert sorted(p.name for p in out.iterdir()) == [
        "logs", "records", "results.parquet", "run.json", "timeline.parquet", "videos"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        "i2v-b.mp4", "i2v-b.png", "one.mp4", "one.png", "t2v-a.mp4", "t2v-a.png"]
    # the contact sheet: 16 evenly spaced frames (first and last included) in a grid of 8 columns
    sheet = Image.open(out / "videos" / "t2v-a.png")
    assert sheet.format == "PNG" and sheet.size[0] == 8 * 128


def test_same_seed_same_frames_different_seed_differs(tmp_path):
    prompts = [
        {"id": "a", "prompt": "a blue square", "num_frames": 11, "seed": 7},
        {"id": "b", "prompt": "a blue square", "num_frames": 11, "seed": 7},
        {"id": "c", "prompt": "a blue square", "num_frames": 11, "seed": 8},
    ]
    manifest = write_manifest(tmp_path / "m.yaml", prompts)
    assert main(["render", str(manifest), "--output", str(tmp_path / "o1"), "--quiet"] + sets()) == 0
    assert main(["render", str(manifest), "--output", str(tmp_path / "o2"), "--quiet"] + sets()) == 0
    r1 = {r["id"]: r["frames_sha256"] for r in pq.read_table(tmp_path / "o1" / "results.parquet").to_pylist()}
    r2 = {r["id"]: r["frames_sha256"] for r in pq.read_table(tmp_path / "o2" / "results.parquet").to_pylist()}
    assert r1 == r2
    assert r1["a"] == r1["b"] != r1["c"]


@pytest.mark.parametrize("option", ["enhance.blend_target=x0", "enhance.blending=none", "enhance.enabled=false",
                                    "interpolate.factor=1", "interpolate.factor=3"])
def test_variants_give_exact_frame_counts(tmp_path, option):
    manifest = write_manifest(tmp_path / "m.yaml", [{"id": "v", "prompt": "x", "num_frames": 17}])
    out = tmp_path / "out"
    assert main(["render", str(manifest), "--output", str(out), "--quiet"] + sets(option)) == 0
    frames, _ = read_video(str(out / "videos" / "v.mp4"))
    assert frames.shape[0] == 17


def test_failed_video_is_recorded_and_others_go_on(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"id": "good", "prompt": "fine", "num_frames": 5},
        {"id": "bad", "prompt": "broken image", "image": "broken.png", "num_frames": 5},
    ])
    out = tmp_path / "out"
    assert main(["render", str(manifest), "--output", str(out), "--quiet"] + sets()) == 1
    rows = {r["id"]: r for r in pq.read_table(out / "results.parquet").to_pylist()}
    assert rows["good"]["status"] == "ok"
    assert rows["bad"]["status"] == "failed"
    assert rows["bad"]["video_uri"] is None
    assert "broken.png" in rows["bad"]["error"] or "image" in rows["bad"]["error"].lower()
    assert not (out / "videos" / "bad.mp4").exists()


def test_invalid_input_exits_2_and_writes_nothing(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "m.yaml", [
        {"id": "ok", "prompt": "fine", "num_frames": 5},
        {"id": "bad id!", "prompt": "x", "num_frames": 0},
    ])
    out = tmp_path / "out"
    assert main(["render", str(manifest), "--output", str(out)] + sets("enhance.nope=1")) == 2
    err = capsys.readouterr().err
    assert "prompts[1]" in err and "num_frames" in err and "id" in err and "enhance.nope" in err
    assert not out.exists()
    assert main(["validate", str(manifest)]) == 2


def test_validate_ok(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "m.yaml", [{"prompt": "fine", "num_frames": 5}])
    assert main(["validate", str(manifest)]) == 0
    assert "ok (1 videos)" in capsys.readouterr().out


def _dataset(path: Path) -> Path:
    table = pa.table({
        "prompt": ["a red circle", "a green triangle"],
        "num_frames": pa.array([9, 6], pa.int32()),
        "seed": pa.array([1, 2], pa.int64()),
        "category": ["shapes", "shapes2"],
        "score": [0.5, None],
    })
    pq.write_table(table, path)
    return path


def test_parquet_to_s3_carries_extra_columns(tmp_path, s3_bucket):
    import s3fs

    data = _dataset(tmp_path / "prompts.parquet")
    fs = s3fs.S3FileSystem()
    fs.put(str(data), f"{s3_bucket}/in/prompts.parquet")
    out = f"s3://{s3_bucket}/runs/r1"
    assert main(["render", f"s3://{s3_bucket}/in/prompts.parquet", "--output", out, "--quiet"] + sets()) == 0

    fs.invalidate_cache()
    with fs.open(f"{s3_bucket}/runs/r1/results.parquet", "rb") as f:
        rows = pq.read_table(f).to_pylist()
    assert [r["category"] for r in rows] == ["shapes", "shapes2"]
    assert [r["score"] for r in rows] == [0.5, None]
    assert all(r["status"] == "ok" for r in rows)
    assert all(r["id"].startswith("v-") for r in rows)  # derived ids
    for r in rows:
        local = tmp_path / f"{r['id']}.mp4"
        fs.get(r["video_uri"], str(local))
        frames, _ = read_video(str(local))
        assert frames.shape[0] == r["num_frames"]
    assert fs.exists(f"{s3_bucket}/runs/r1/timeline.parquet") and fs.exists(f"{s3_bucket}/runs/r1/run.json")


def test_parquet_local_directory(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    _dataset(d / "part-0.parquet")
    out = tmp_path / "out"
    assert main(["render", str(d), "--output", str(out), "--quiet"] + sets("enhance.enabled=false")) == 0
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["num_frames"] for r in rows] == [9, 6]


def test_manifest_to_s3(tmp_path, s3_bucket, image):
    import s3fs

    manifest = write_manifest(tmp_path / "m.yaml", [
        {"id": "s3-t2v", "prompt": "a red circle", "num_frames": 7, "seed": 1},
        {"id": "s3-i2v", "prompt": "a field", "image": "img.png", "num_frames": 6, "seed": 2},
    ])
    out = f"s3://{s3_bucket}/runs/manifest"
    assert main(["render", str(manifest), "--output", out, "--quiet"] + sets()) == 0
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{s3_bucket}/runs/manifest/videos")) == [
        "s3-i2v.mp4", "s3-i2v.png", "s3-t2v.mp4", "s3-t2v.png"]
    with fs.open(f"{s3_bucket}/runs/manifest/results.parquet", "rb") as f:
        rows = pq.read_table(f).to_pylist()
    assert [(r["id"], r["status"], r["video_uri"]) for r in rows] == [
        ("s3-t2v", "ok", f"{out}/videos/s3-t2v.mp4"), ("s3-i2v", "ok", f"{out}/videos/s3-i2v.mp4")]


def test_demo_manifest_is_what_make_demo_promises():
    """`make demo`: the trained toy preset, a handful of toy-grammar prompts of 100+ frames."""
    from stt2v_ray.data.clips import parse_prompt
    from stt2v_ray.inputs.source import open_input

    src = open_input(str(Path(__file__).resolve().parents[1] / "manifests" / "demo.yaml"))
    assert src.validate([]) == []
    requests = [r for r, _ in src.iter_requests()]
    assert len(requests) >= 4
    assert all(r.num_frames >= 100 and parse_prompt(r.prompt) is not None and not r.image for r in requests)
    assert src.settings([]).preset == "toy"


def test_tiny_manifest_covers_both_families():
    from stt2v_ray.inputs.source import open_input

    src = open_input(str(Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml"))
    assert src.validate([]) == []
    requests = [r for r, _ in src.iter_requests()]
    assert any(r.image for r in requests) and any(not r.image for r in requests)
    assert src.settings([]).preset == "tiny"


def test_a_preset_without_the_family_is_an_input_error(tmp_path):
    from stt2v_ray.inputs.source import open_input

    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"settings: {{preset: toy}}\nprompts:\n  - {{prompt: x, num_frames: 8, image: {image}}}\n")
    issues = [str(i) for i in open_input(str(manifest)).validate([], base={})]
    assert issues == [f"{manifest}: prompts[0]: image: preset 'toy' has no image-to-video model (it has: t2v)"]
