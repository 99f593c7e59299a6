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
    assert units["enhance"] == ["prepare", "chunk 0 step 0", "decode frames 0-5", "chunk 1 step 0", "decode frames 6-13"]
    assert units["encode"] == ["frames 0-5", "frames 6-8"]
    for stage, total in result["stages"].items():
        assert total["units"] == len(units[stage]) > 0
        assert total["peak_mib"] is None  # no allocator peak on CPU
        assert abs(total["seconds"] - sum(u["seconds"] for u in result["units"] if u["stage"] == stage)) < 1e-3
    assert all(u["seconds"] > 0 and u["peak_mib"] is None for u in result["units"])
    assert result["peak_mib"] is None and result["build"]["peak_mib"] is None
    assert result["total_seconds"] >= result["render_seconds"] > 0
    assert "streamingt2v-toy (t2v, 9 frames, weights random, memopt off) on cpu" in run.stderr


def test_memopt_on_streamingt2v_toy_applies_only_ff_chunking():
    run = profile("--preset", "streamingt2v-toy", "--frames", "9", "--device", "cpu", "--memopt", *FAST)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["memopt"] is True
    assert result["memopt_applied"] == {"ff_chunk_size": 2}
    assert set(result["memopt_not_applied"]) == {"dtype", "cpu_offload", "sequential_cfg", "vae_decode_chunk"}
    assert result["settings"]["memory"] == {"dtype": "float32", "cpu_offload": False, "ff_chunk_size": 2,
                                           "vae_decode_chunk": 8, "sequential_cfg": False}
    assert result["frames"] == 9 and result["stages"]["base"]["units"] == 4


def test_memopt_dtype_override_on_streamingt2v_is_the_presets_clear_error():
    # memopt leaves dtype alone for streamingt2v; forcing it through --set reaches the generator's own refusal.
    run = profile("--preset", "streamingt2v-toy", "--frames", "3", "--device", "cpu", "--memopt",
                  "--set", "memory.dtype=bfloat16")
    assert run.returncode == 2
    assert run.stdout == ""
    assert ("error: preset 'streamingt2v-toy': memory.dtype not supported by the text-to-video generator yet "
            "(it runs float32, CFG halves batched)") in run.stderr
    assert "Traceback" not in run.stderr


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
