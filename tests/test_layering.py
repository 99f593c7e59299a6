"""The import contracts of docs/architecture.md (`[tool.importlinter]` in pyproject.toml) hold, and break when broken.

`make lint` runs the same `lint-imports`; this test keeps the rules in a plain `pytest tests` run too.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # cwd first on the path, so the tree under `root` is analysed, not an installed copy
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_import_contracts():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_an_upward_import_and_ray_outside_runtime_break_them(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "stt2v_ray", tmp_path / "stt2v_ray", ignore=shutil.ignore_patterns("weights", "__pycache__"))
    with open(tmp_path / "stt2v_ray" / "plan" / "chunks.py", "a") as f:
        f.write("\n\ndef _probe():\n    from stt2v_ray.models.blocks import job  # noqa: F401  (an upward import)\n")
    with open(tmp_path / "stt2v_ray" / "video" / "frames.py", "a") as f:
        f.write("\n\ndef _probe():\n    import ray  # noqa: F401\n")
    run = lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout
    assert "only runtime/ imports ray BROKEN" in out and "stt2v_ray.video.frames -> ray" in out
    assert "layers import only downward (cli at the top, plan at the bottom) BROKEN" in out
    assert "stt2v_ray.plan.chunks -> stt2v_ray.models.blocks.job" in out
    assert "no import circle anywhere in the package BROKEN" in out  # models imports plan, and now plan models
    assert "Contracts: 3 kept, 3 broken." in out
