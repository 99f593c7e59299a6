"""Driver faults on the tiny preset: a small manifest, its clean reference, and driver subprocesses
killed by pid (their Ray processes by the pids of the driver's session, never by name)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from stt2v_ray.cli import main

REPO = Path(__file__).resolve().parents[2]
# 17 frames: 9 base frames, padded to 13 for the enhancer -> three base chunks per video.
FAST = ["t2v.steps=2", "enhance.steps=4", "enhance.strength=0.5", "enhance.chunk_frames=8", "enhance.overlap_frames=3",
        "t2v.chunk_frames=8", "t2v.cond_frames=4", "encode.preset=ultrafast"]
VIDEOS = [{"id": i, "prompt": p, "num_frames": 17, "seed": s}
          for i, p, s in [("a", "a red circle", 1), ("b", "a blue square", 2), ("c", "a green ball", 3), ("d", "a gray box", 4)]]


def sets(*extra: str) -> list[str]:
    return [a for s in FAST + list(extra) for a in ("--set", s)]


def write_manifest(path: Path, videos=VIDEOS) -> Path:
    path.write_text(yaml.safe_dump({"settings": {"preset": "tiny"}, "prompts": list(videos)}))
    return path


def results(out) -> dict[str, dict]:
    return {r["id"]: r for r in pq.read_table(Path(out) / "results.parquet").to_pylist()}


def record(out, vid: str) -> dict:
    return json.loads((Path(out) / "records" / f"{vid}.json").read_text())


def video_files(out) -> list[str]:
    d = Path(out) / "videos"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def saved_chunks(out, vid: str) -> list[str]:
    return sorted(p.name for p in (Path(out) / "_work" / vid).glob("*/base-*.safetensors"))


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict[str, str]:
    """frames_sha256 of an uninterrupted in-process run of all four videos."""
    d = tmp_path_factory.mktemp("reference")
    manifest = write_manifest(d / "m.yaml")
    assert main(["render", str(manifest), "--output", str(d / "out"), "--quiet"] + sets("executor=local")) == 0
    return {k: r["frames_sha256"] for k, r in results(d / "out").items()}


def start_driver(manifest: Path, out: Path, *extra: str, log: Path) -> subprocess.Popen:
    """`stt2v-ray render` as its own session leader, so its Ray processes can be found by session."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "stt2v_ray.cli", "render", str(manifest), "--output", str(out), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def session_pids(sid: int) -> set[int]:
    """Processes of session `sid` and all their descendants (Ray's workers are not in its process group)."""
    parents: dict[int, int] = {}
    sessions: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        parents[int(entry)], sessions[int(entry)] = int(fields[1]), int(fields[3])
    found = {p for p, s in sessions.items() if s == sid}
    grew = True
    while grew:
        more = {p for p, pp in parents.items() if pp in found and p not in found}
        found |= more
        grew = bool(more)
    found.discard(os.getpid())
    return found


def kill_session(sid: int) -> None:
    for _ in range(3):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def wait_for(predicate, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended (rc {proc.returncode}) before the fault:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
