"""benchmarks/driver_memory.py as users run it, at tiny sizes: the figures' shape, not their values."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "driver_memory.py"


def test_driver_memory_benchmark_reports_each_size_and_phase(tmp_path):
    out = tmp_path / "dm.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--rows", "2000", "200", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    # Smallest first, whatever the order given; each child assembled every row as ok (it checks the counts).
    assert [s["rows"] for s in report["sizes"]] == [200, 2000]
    for size in report["sizes"]:
        assert set(size["rss_mb"]) == {"imports", "validate", "records_write", "assemble"}
        assert all(v > 0 for v in size["rss_mb"].values())
        assert set(size["peak_mb"]) == {"validate", "end"} and set(size["seconds"]) == {"validate", "records_write", "assemble"}
    summary = report["summary"]
    assert summary["rows"] == [200, 2000] and set(summary["phases"]) == {"validate", "records_write", "assemble"}
    for phase in summary["phases"].values():
        assert len(phase["rss_mb"]) == 2 and len(phase["above_imports_mb"]) == 2 and phase["ratio"] > 0
    assert "validate" in done.stdout and "2,000 rows" in done.stdout  # the printed table
