"""Records, resume, --overwrite, digest clashes and chunk-level resume (in process, local executor)."""
from __future__ import annotations

import pytest

from stt2v_ray.cli import main
from stt2v_ray.models.modelscope.t2v import T2VGenerator
from tests.faults.conftest import VIDEOS, record, results, saved_chunks, sets, video_files, write_manifest


def render(manifest, out, *extra, overwrite=False) -> int:
    args = ["render", str(manifest), "--output", str(out)] + sets("executor=local", *extra)
    return main(args + (["--overwrite"] if overwrite else []))


def test_records_resume_overwrite_and_clashes(tmp_path, reference, capsys):
    manifest = write_manifest(tmp_path / "m.yaml", VIDEOS[:2])
    out = tmp_path / "out"
    assert render(manifest, out) == 0
    for vid in ("a", "b"):
        rec = record(out, vid)
        assert rec["status"] == "ok" and rec["row"]["frames_sha256"] == reference[vid]
        assert rec["row"]["request_digest"] == rec["request_digest"] and len(rec["settings_digest"]) == 64
        assert {u[1] for u in rec["timeline"]} >= {"base", "enhance", "interpolate", "encode"}
    assert not (out / "_work").exists()  # work files go once the record is committed
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()}
    capsys.readouterr()

    # The same command again: nothing renders, every video is reported as skipped, tables whole.
    assert render(manifest, out) == 0
    err = capsys.readouterr().err
    assert "a: skipped" in err and "b: skipped" in err and "t2v, 17 frames" not in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()} == mtimes
    assert {k: r["frames_sha256"] for k, r in results(out).items()} == {"a": reference["a"], "b": reference["b"]}

    # Other settings, or the same id for another request: an error naming the ids, nothing rendered.
    assert render(manifest, out, "enhance.strength=0.75") == 2
    err = capsys.readouterr().err
    assert "'a' (settings differ)" in err and "'b' (settings differ)" in err and "--overwrite" in err
    changed = [dict(VIDEOS[0]), dict(VIDEOS[1], seed=99)]
    assert render(write_manifest(tmp_path / "m2.yaml", changed), out) == 2
    err = capsys.readouterr().err
    assert "'b' (request differ)" in err and "'a'" not in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()} == mtimes

    # --overwrite renders everything again (same frames: same settings).
    assert render(manifest, out, overwrite=True) == 0
    err = capsys.readouterr().err
    assert "skipped" not in err and "a: t2v, 17 frames" in err and "b: t2v, 17 frames" in err
    assert all(p.stat().st_mtime_ns != mtimes[p.name] for p in (out / "videos").iterdir() if p.suffix == ".mp4")
    assert {k: r["frames_sha256"] for k, r in results(out).items()} == {"a": reference["a"], "b": reference["b"]}


def test_chunk_level_resume_is_bitwise_equal(tmp_path, reference, monkeypatch):
    """Chunk 2 of video a fails once (a real exception inside the model call): the rerun reads
    chunks 0-1 back from _work/ and generates only from chunk 2 on; frames equal a clean run's."""
    manifest = write_manifest(tmp_path / "m.yaml", VIDEOS[:1])
    out = tmp_path / "out"
    real = T2VGenerator.generate_chunk
    calls: list[int] = []
    failed: list[int] = []

    def failing_once(self, state, index, cond, anchor):
        calls.append(index)
        if index == 2 and not failed:
            failed.append(index)
            raise RuntimeError("simulated fault in chunk 2")
        return real(self, state, index, cond, anchor)

    monkeypatch.setattr(T2VGenerator, "generate_chunk", failing_once)
    assert render(manifest, out) == 1
    assert record(out, "a")["status"] == "failed" and "simulated fault in chunk 2" in record(out, "a")["row"]["error"]
    assert saved_chunks(out, "a") == ["base-00000.safetensors", "base-00001.safetensors"]  # kept for the rerun
    assert video_files(out) == []

    calls.clear()
    assert render(manifest, out) == 0
    assert calls == [2]  # chunks 0 and 1 were not generated again
    rec = record(out, "a")
    units = [u[3] for u in rec["timeline"] if u[1] == "base" and u[3] != "prepare"]
    assert units == ["chunk 0 (saved)", "chunk 1 (saved)", "chunk 2"]
    assert rec["row"]["frames_sha256"] == reference["a"]
    assert not (out / "_work").exists()


def test_every_base_chunk_saved_skips_base_generation(tmp_path, reference, monkeypatch):
    """Enhancement restarts from the saved base output: with every chunk saved, the base model never runs."""
    manifest = write_manifest(tmp_path / "m.yaml", VIDEOS[:1])
    out = tmp_path / "out"
    from stt2v_ray.video.encode import Mp4Writer

    real_finish = Mp4Writer._finish

    def fail_finish(self):  # ffmpeg fails at the end: the whole base stream was made by then
        real_finish(self)
        raise RuntimeError("simulated encoder fault")

    monkeypatch.setattr(Mp4Writer, "_finish", fail_finish)
    assert render(manifest, out) == 1
    assert "simulated encoder fault" in record(out, "a")["row"]["error"] and video_files(out) == []
    assert len(saved_chunks(out, "a")) == 3  # 17 frames: three base chunks
    monkeypatch.setattr(Mp4Writer, "_finish", real_finish)
    monkeypatch.setattr(T2VGenerator, "generate_chunk", lambda *a: pytest.fail("base generation ran again"))
    monkeypatch.setattr(T2VGenerator, "prepare", lambda *a: pytest.fail("base prepare ran again"))
    assert render(manifest, out) == 0
    assert record(out, "a")["row"]["frames_sha256"] == reference["a"]
