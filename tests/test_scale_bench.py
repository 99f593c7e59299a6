"""benchmarks/scale.py --quick: the simulated batch on the real executor renders every video, and its
figures are consistent (busy fractions in (0, 1], makespan never below the cost model's lower bound)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


# Nightly (make test-all): ~55 s; the simulation is tested in tests/runtime/test_simulate.py.
@pytest.mark.slow
def test_scale_quick_batch(tmp_path):
    out = tmp_path / "scale.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--quick", "--parts", "batch",
                           "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["simulated"] is True
    b = doc["batch"]
    assert "[SIMULATED]" in proc.stderr and "fifo" in proc.stderr and "longest-first" in proc.stderr
    for order in ("fifo", "longest-first"):
        r = b[order]
        assert r["videos"] == 6 and r["failed_or_wrong_count"] == []
        assert all(0 < r["busy"][p] <= 1.0 for p in ("base", "enhance", "gpu"))
        assert r["makespan_s"] >= 0.98 * b["lower_bound_s"]  # nothing beats the bound of the cost model
        assert r["ray_calls_per_video"] > 0
    assert b["layout"]["base"] + b["layout"]["gangs"] * b["layout"]["shards"] <= b["gpus"] == 4
