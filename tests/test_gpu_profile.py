"""benchmarks/gpu_profile.py as users run it: a subprocess on CPU with the toy presets (no GPU here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_profile.py"
# streamingt2v-toy defaults: t2v.steps=2, enhance.steps=4 (strength 0.6 -> 2 SDEdit steps). Faster:
FAST = ["--set", "t2v.steps=1", "--set", "enhance.steps=2"]  # 1 base step, int(2 * 0.6) = 1 SDEdit step


def profile(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_streamingt2v_toy_profile_on_cpu(tmp_path):
    out = tmp_path / "profile.json"
    run = profile("--preset", "streamingt2v-toy", "--frames", "9", "--device", "cpu", *FAST, "--json", str(out))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert json.loads(out.read_text()) == result
    assert {"device", "versions", "preset", "family", "frames", "weights", "real_output", "memopt", "settings", "video",
            "build", "stages", "units", "render_seconds", "total_seconds", "peak_mib", "frames_sha256"} <= set(result)
    assert result["device"]["type"] == "cpu" and result["device"]["name"]
    assert result["versions"]["torch"] and result["versions"]["diffusers"]
    assert (result["preset"], result["family"], result["frames"]) == ("streamingt2v-toy", "t2v", 9)
    assert (result["weights"], result["real_output"], result["memopt"]) == ("random", False, False)
    assert result["settings"]["t2v"]["steps"] == 1 and result["settings"]["enhance"]["steps"] == 2
    assert result["settings"]["memory"]["ff_chunk_size"] == 0
    assert len(result["frames_sha256"]) == 64

    # 9 frames, factor 1: the enhancer tiles 9 frames as [0, 8) + [6, 14), so the base stage makes 14 frames:
    # chunk 0 (8 frames) + chunks 1, 2 (4 new frames each) = 16 >= 14.
    units = {s: [u["unit"] for u in result["units"] if u["stage"] == s] for s in result["stages"]}
    assert set(result["stages"]) == {"base", "enhance", "encode"}  # interpolate.factor is 1 in this preset
    assert units["base"] == ["prepare", "chunk 0", "chunk 1", "chunk 2"]
    # key frames: the I2VGen-XL enhancer enhances every chunk's first frame as one batch first (issue 21)
    assert units["enhance"] == ["prepare", "key frames of 2 chunks", "chunk 0 step 0", "decode frames 0-5",
                                "chunk 1 step 0", "decode frames 6-13"]
    assert units["encode"] == ["frames 0-5", "frames 6-8"]
    for stage, total in result["stages"].items():
        assert total["units"] == len(units[stage]) > 0
        assert total["peak_mib"] is None  # no allocator peak on CPU
        assert abs(total["seconds"] - sum(u["seconds"] for u in result["units"] if u["stage"] == stage)) < 1e-3
    assert all(u["seconds"] > 0 and u["peak_mib"] is None for u in result["units"])
    assert result["peak_mib"] is None and result["build"]["peak_mib"] is None
    assert result["total_seconds"] >= result["render_seconds"] > 0
    assert "streamingt2v-toy (t2v, 9 frames, weights random, memopt off) on cpu" in run.stderr


def test_memopt_on_streamingt2v_toy_runs_with_every_memory_setting():
    run = profile("--preset", "streamingt2v-toy", "--frames", "9", "--device", "cpu", "--memopt", *FAST)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    memopt = {"dtype": "bfloat16", "cpu_offload": True, "ff_chunk_size": 2, "vae_decode_chunk": 4, "sequential_cfg": True}
    assert result["memopt"] is True
    assert result["memopt_applied"] == memopt and result["memopt_not_applied"] == {}  # bfloat16: CPU has no fast fp16
    assert result["settings"]["memory"] == memopt
    assert result["frames"] == 9
    assert [result["stages"][s]["units"] for s in ("base", "enhance", "encode")] == [4, 6, 2]
    assert all(u["seconds"] > 0 and u["peak_mib"] is None for u in result["units"])


def test_memopt_on_tiny_changes_nothing_and_says_so():
    run = profile("--preset", "tiny", "--frames", "3", "--device", "cpu", "--memopt",
                  "--set", "t2v.steps=1", "--set", "enhance.enabled=false", "--family", "t2v")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["memopt_applied"] == {}
    assert set(result["memopt_not_applied"]) == {"dtype", "cpu_offload", "ff_chunk_size", "vae_decode_chunk", "sequential_cfg"}
    assert result["settings"]["memory"]["dtype"] == "float32"
    assert set(result["stages"]) == {"base", "interpolate", "encode"} and result["frames"] == 3


def test_pretrained_without_weights_exits_2_naming_the_missing_component(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    run = profile("--preset", "streamingsvd", "--weights", "pretrained", "--frames", "9", env=env)
    assert run.returncode == 2
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert "error: preset 'streamingsvd': weights missing for" in run.stderr
    assert ("  - streaming: PAIR/StreamingSVD/model.safetensors not in the Hugging Face cache (HF_HUB_OFFLINE is set): "
            "LocalEntryNotFoundError; get it from PAIR/StreamingSVD (file model.safetensors); "
            "point weights.paths.streaming at a local copy or hub id") in run.stderr
    assert "  - enhancer: ali-vilab/i2vgen-xl not in the Hugging Face cache" in run.stderr


def test_profiling_clock_peaks_with_nested_spans(monkeypatch):
    """The CUDA bookkeeping (no GPU here): an allocator whose peak is set by hand stands in for torch.cuda."""
    import importlib.util

    import torch

    from stt2v_ray.pipeline.video import StageClock

    spec = importlib.util.spec_from_file_location("gpu_profile", SCRIPT)
    gp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gp)
    allocator = {"peak": 0, "syncs": 0}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: allocator.__setitem__("syncs", allocator["syncs"] + 1))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: allocator["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: allocator.__setitem__("peak", 0))
    clock = gp.ProfilingClock(StageClock("v", "w"), torch.device("cuda"))
    mib = 2**20
    with clock("enhance", "outer"):
        allocator["peak"] = 300 * mib  # before the inner span resets the counter
        with clock("enhance", "inner"):
            allocator["peak"] = 100 * mib
        allocator["peak"] = 50 * mib
    with clock("encode", "after"):
        allocator["peak"] = 20 * mib
    rows = {r["unit"]: r for r in clock.rows}
    assert (rows["outer"]["peak_mib"], rows["inner"]["peak_mib"], rows["after"]["peak_mib"]) == (300.0, 100.0, 20.0)
    assert clock.overall_peak == 300 * mib
    assert allocator["syncs"] == 6  # one before each clock read: 3 spans x (start, end)
    assert gp.stage_totals(clock.rows, cuda=True)["enhance"] == {
        "seconds": round(rows["outer"]["seconds"] + rows["inner"]["seconds"], 4), "peak_mib": 300.0, "units": 2}
    assert clock.inner.seconds["enhance"] > 0 and clock.inner.seconds["encode"] > 0  # the wrapped StageClock still records
