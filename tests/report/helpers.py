"""A small synthetic output folder, and headless Chromium for page tests."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stt2v_ray.results import RESULT_SCHEMA, TIMELINE_SCHEMA

T0 = 1_700_000_000.0
FAILED_ERROR = 'decode failed: <script>alert("x")</script> & more'


def ray_settings(base_gpus: float = 1.0) -> dict:
    pool = {"actors": 1, "num_cpus": 0.0, "num_gpus": 0.0, "resources": {}}
    return {"executor": "ray", "device": "cuda",
            "ray": {"base": dict(pool, actors=2, num_gpus=base_gpus), "enhance": dict(pool, num_gpus=1.0),
                    "interpolate": dict(pool), "write": dict(pool), "enhance_shards": 1}}


def result_row(vid: str, status: str, **extra) -> dict:
    row = {name: None for name in RESULT_SCHEMA.names}
    row.update(id=vid, status=status, **extra)
    return row


def synthetic_output(folder: Path, metrics: bool = False) -> Path:
    """Three videos (ok, failed, skipped) over 10 s of a Ray run with 2 base GPUs and 1 enhancer GPU."""
    (folder / "videos").mkdir(parents=True)
    rows = [result_row("a", "ok", video_uri=str(folder / "videos" / "a.mp4"), num_frames=8, fps=24.0, width=64,
                       height=64, seed=1, total_seconds=9.0),
            result_row("b", "failed", error=FAILED_ERROR, seed=2),
            result_row("c", "skipped", seed=3)]
    table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA).append_column(
        "prompt", pa.array(["a <b>red</b> circle", "x", "y"]))
    pq.write_table(table, folder / "results.parquet")
    spans = [("a", "base", "base-0", "chunk 0", 0, 4), ("a", "base", "base-0", "chunk 1", 3, 5),
             ("b", "base", "base-1", "chunk 0", 2, 4), ("a", "enhance", "enhance-g0s0", "chunk 0 step 0", 5, 8),
             ("a", "encode", "write-0", "finalize", 8, 9)]
    timeline = [dict(video_id=v, stage=s, worker=w, unit=u, start=T0 + a, end=T0 + b, seconds=float(b - a))
                for v, s, w, u, a, b in spans]
    pq.write_table(pa.Table.from_pylist(timeline, schema=TIMELINE_SCHEMA), folder / "timeline.parquet")
    run = {"input": "m.yaml", "output": str(folder), "seconds": 10.0, "settings": ray_settings(),
           "started": "2023-11-14T22:13:20+00:00", "videos": {"ok": 1, "failed": 1}}
    (folder / "run.json").write_text(json.dumps(run))
    Image.new("RGB", (16, 8), (200, 30, 30)).save(folder / "videos" / "a.png")
    if metrics:
        pq.write_table(pa.Table.from_pylist([{"id": "a", "prompt": "a red circle", "mawe": 0.125, "scene_cuts": 0}]),
                       folder / "metrics.parquet")
    return folder


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars"]
CONSOLE_LINE = re.compile(r":CONSOLE[:(]")


def chromium_binary() -> str:
    """/usr/bin/chromium; installed from Debian when missing (as root); skip only if that fails."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is missing and apt-get is not available to install it")
    install = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"
    proc = subprocess.run(["sh", "-c", install], capture_output=True, text=True, timeout=900)
    found = shutil.which("chromium")
    if proc.returncode or not found:
        pytest.skip(f"could not install chromium (no network or not root?): {proc.stderr.strip()[-300:]}")
    return found


def chromium(binary: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """One headless Chromium run; console messages go to stderr (INFO:CONSOLE lines)."""
    args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def console_messages(stderr: str) -> list[str]:
    """Chromium logs every console message (log, warn, error, uncaught exceptions) as one CONSOLE line."""
    return [line for line in stderr.splitlines() if CONSOLE_LINE.search(line)]
