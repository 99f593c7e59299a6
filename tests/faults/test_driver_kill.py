"""The driver killed for real: SIGKILL (Ray executor, the default) then the same command again;
SIGTERM and SIGINT (exit 143 / 130, tables written with the finished videos)."""
from __future__ import annotations

import json
import signal

import pytest

from tests.faults.conftest import (
    kill_session,
    record,
    results,
    saved_chunks,
    sets,
    start_driver,
    video_files,
    wait_for,
    write_manifest,
)


def _no_partial(out, ids) -> None:
    names = video_files(out)
    assert all(n in {f"{i}.mp4" for i in ids} | {f"{i}.png" for i in ids} for n in names), names


def test_sigkill_driver_then_same_command_resumes(tmp_path, reference):
    manifest = write_manifest(tmp_path / "m.yaml")
    out, log = tmp_path / "out", tmp_path / "run1.log"
    args = ["--quiet"] + sets("executor=ray")
    proc = start_driver(manifest, out, *args, log=log)
    recs = out / "records"

    def mid_batch() -> bool:  # one video recorded, another part-way through its base chunks
        done = {p.stem for p in recs.glob("*.json")} if recs.exists() else set()
        partial = [v for v in "abcd" if v not in done and saved_chunks(out, v)]
        return bool(done) and bool(partial) or len(done) >= 2

    try:
        wait_for(mid_batch, proc, 240, log)
        proc.kill()  # SIGKILL, by pid
        proc.wait()
    finally:
        kill_session(proc.pid)  # its local Ray cluster: the pids of its session, never by name
    done = {p.stem for p in recs.glob("*.json")}
    partial = {v for v in "abcd" if v not in done and saved_chunks(out, v)}
    assert 1 <= len(done) < 4 and not (out / "results.parquet").exists()  # records appear during the run

    log2 = tmp_path / "run2.log"
    proc = start_driver(manifest, out, *sets("executor=ray"), log=log2)
    try:
        assert proc.wait(timeout=400) == 0, log2.read_text()[-3000:]
    finally:
        kill_session(proc.pid)
    text = log2.read_text()
    for vid in done:
        assert f"{vid}: skipped" in text
    rows = results(out)
    assert sorted(rows) == ["a", "b", "c", "d"] and all(r["status"] == "ok" for r in rows.values())
    assert {k: r["frames_sha256"] for k, r in rows.items()} == reference
    for vid in partial:  # continued from its saved chunks under the Ray executor too
        assert any(u[3].endswith("(saved)") for u in record(out, vid)["timeline"]), vid
    assert not (out / "_work").exists()
    _no_partial(out, "abcd")


def _interrupt(tmp_path, sig, grace: str):
    manifest = write_manifest(tmp_path / "m.yaml")
    out, log = tmp_path / "out", tmp_path / "run.log"
    proc = start_driver(manifest, out, *sets("executor=local", f"shutdown.grace_s={grace}"), log=log)
    try:
        # a recorded and b in flight (its first base chunk saved): a signal between two videos
        # would find nothing in flight, and the cases below expect b to be
        wait_for(lambda: (out / "records" / "a.json").exists() and bool(saved_chunks(out, "b")), proc, 240, log)
        proc.send_signal(sig)
        rc = proc.wait(timeout=240)
    finally:
        kill_session(proc.pid)
    return out, rc, log.read_text()


def test_sigterm_lets_videos_in_flight_finish_and_writes_the_tables(tmp_path, reference):
    out, rc, text = _interrupt(tmp_path, signal.SIGTERM, "120")
    assert rc == 143, text[-3000:]
    assert "SIGTERM: no new videos" in text
    rows = results(out)
    assert sorted(rows) == ["a", "b"]  # b was in flight and finished in the grace period; c, d never started
    assert all(r["status"] == "ok" and r["frames_sha256"] == reference[k] for k, r in rows.items())
    run = json.loads((out / "run.json").read_text())
    assert run["videos"] == {"ok": 2, "failed": 0, "missing": 2} and run["this_run"]["interrupted"] == "SIGTERM"
    _no_partial(out, "ab")


@pytest.mark.slow  # the same shutdown path as SIGTERM's case (which `make test` runs), with no grace: nightly
def test_sigint_after_the_grace_period_abandons_videos_in_flight(tmp_path, reference):
    out, rc, text = _interrupt(tmp_path, signal.SIGINT, "0")
    assert rc == 130, text[-3000:]
    rows = results(out)
    assert sorted(rows) == ["a"] and rows["a"]["frames_sha256"] == reference["a"]
    assert not (out / "records" / "b.json").exists()  # abandoned: no record, rendered by the next run
    _no_partial(out, "a")
    assert not any(n.startswith(".") for n in video_files(out))  # the abandoned writer left no temp file
