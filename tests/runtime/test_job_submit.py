"""`ray job submit` of a render job (jobs/render.py) to a real local Ray cluster started with `ray start`.

The cluster gets free ports, its own temp dir and RAY_AUTH_MODE=disabled (Ray 2.60 turns
token auth on for `ray start` clusters); it is ended by its process group, never with
`ray stop`, which would kill every Ray on the machine.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.renders import two_video_manifest

pytestmark = pytest.mark.ray  # starts a Ray cluster: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    e.pop("RAY_ADDRESS", None)
    return e


@pytest.fixture
def ray_head():
    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's unix socket paths have a length limit
    gcs, dash = free_port(), free_port()
    cmd = [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
           f"--metrics-export-port={free_port()}", f"--temp-dir={temp}", "--num-cpus=4", "--num-gpus=0",
           "--disable-usage-stats"]
    log = open(Path(temp) / "head.log", "wb")
    proc = subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail("ray head did not start:\n" + (Path(temp) / "head.log").read_text()[-3000:])
                time.sleep(1)
        yield address
    finally:
        # `ray start --block` does not end on SIGTERM within 20 s here: a short grace, then SIGKILL.
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(wait)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def ray_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_render_job_submitted_through_the_cli(ray_head, tmp_path):
    out = tmp_path / "out"
    job_id = f"stt2v-test-{uuid.uuid4().hex[:8]}"
    # Two short videos (t2v, i2v) from a manifest outside the uploaded working dir: the job reads it
    # by its absolute path, as a job on a one-machine cluster may.
    manifest = two_video_manifest(tmp_path, t2v_frames=29, i2v_frames=23)
    fast = ["t2v.steps=2", "i2v.steps=2", "enhance.steps=4", "enhance.strength=0.5", "encode.preset=ultrafast",
            "enhance.chunk_frames=8", "enhance.overlap_frames=3", "t2v.chunk_frames=8", "t2v.cond_frames=4",
            "i2v.chunk_frames=8", "i2v.cond_frames=3", "i2v.anchor_frame=2"]
    sets = [a for s in fast for a in ("--set", s)]
    submitted = ray_cli(
        "job", "submit", "--address", ray_head, "--submission-id", job_id, "--no-wait",
        "--working-dir", ".", "--runtime-env-json",
        json.dumps({"excludes": [".git", ".venv", "outputs", "*.egg-info", "__pycache__", ".pytest_cache"]}),
        "--", "python", "jobs/render.py", str(manifest), "--output", str(out), *sets,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    # `ray job status` reports on stderr, in words: "Job '<id>' succeeded" (or failed / was stopped).
    verdict = re.compile(rf"Job '{job_id}' (succeeded|failed|was stopped)")
    deadline, found = time.time() + 480, None
    while time.time() < deadline and found is None:
        checked = ray_cli("job", "status", "--address", ray_head, job_id)
        found = verdict.search(checked.stdout + checked.stderr)
        time.sleep(2)
    logs = ray_cli("job", "logs", "--address", ray_head, job_id).stdout
    assert found is not None and found.group(1) == "succeeded", logs[-4000:]
    assert "2/2 videos ok" in logs

    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [(r["id"], r["status"], r["num_frames"]) for r in rows] == [("t2v", "ok", 29), ("i2v", "ok", 23)]
    names = {"t2v", "i2v"}
    assert {p.name for p in (out / "videos").iterdir()} == {f"{n}.{ext}" for n in names for ext in ("mp4", "png")}
    workers = {r["worker"] for r in pq.read_table(out / "timeline.parquet").to_pylist()}
    assert {"base-0", "enhance-g0s0", "interpolate-0", "write-0"} <= workers  # ran on the cluster's actors
