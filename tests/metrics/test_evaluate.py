"""`stt2v-ray render --evaluate` and `stt2v-ray evaluate` on a real tiny render."""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from stt2v_ray.cli import main
from stt2v_ray.metrics.evaluate import METRICS_COLUMNS, format_table

FAST = ["executor=local", "t2v.steps=2", "enhance.steps=4", "enhance.strength=0.5", "enhance.chunk_frames=8",
        "enhance.overlap_frames=3", "t2v.chunk_frames=8", "t2v.cond_frames=4", "encode.preset=ultrafast"]


def test_render_evaluate_then_evaluate_write_one_row_per_ok_video(tmp_path: Path, capsys):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "tiny"}, "prompts": [
        {"id": "toy", "prompt": "a red circle moving right on a black background", "num_frames": 21, "seed": 1},
        {"id": "other", "prompt": "a field at dawn", "num_frames": 13, "seed": 2},
    ]}))
    out = tmp_path / "out"
    args = ["render", str(manifest), "--output", str(out), "--quiet", "--evaluate"]
    assert main(args + [a for s in FAST for a in ("--set", s)]) == 0
    printed = capsys.readouterr().out
    assert "2 videos evaluated -> " in printed and printed.count("\ntoy ") == 1

    table = pq.read_table(out / "metrics.parquet")
    assert tuple(table.column_names) == METRICS_COLUMNS
    rows = {r["id"]: r for r in table.to_pylist()}
    ok = [r["id"] for r in pq.read_table(out / "results.parquet").to_pylist() if r["status"] == "ok"]
    assert sorted(rows) == sorted(ok) == ["other", "toy"]
    toy, other = rows["toy"], rows["other"]
    assert (toy["num_frames"], toy["width"], toy["height"], toy["family"]) == (21, 64, 64, "t2v")
    assert toy["toy_prompt"] is True and other["toy_prompt"] is False
    assert toy["prompt"] == "a red circle moving right on a black background"
    # Interpolation x2 of 11 base frames in chunks of 8 + 4: one seam (7|8) -> transitions 14, 15.
    assert toy["seam_flow_mean"] is not None and toy["inside_flow_mean"] is not None
    assert toy["mawe"] > 0 and toy["scene_cuts"] >= 0 and toy["drift_last"] >= 0
    for column in ("colour_match", "shape_match", "background_match", "direction_match", "object_found"):
        assert 0 <= toy[column] <= 1
    assert toy["teleport_ratio"] >= 1 and toy["teleports"] >= 0 and other["teleport_ratio"] is None
    # 13 frames = 7 base frames: one chunk, no seam; no toy prompt: no adherence.
    assert other["seam_flow_mean"] is None and other["colour_match"] is None and other["seam_jump_mean"] is None
    assert other["inside_flow_mean"] is not None and not math.isnan(other["mawe"])

    # Evaluating again gives the same numbers (the seconds aside).
    assert main(["evaluate", str(out)]) == 0
    again = pq.read_table(out / "metrics.parquet").drop(["seconds"])
    assert again.equals(table.drop(["seconds"]))
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["id", "num_frames", "mawe", "scene_cuts", "seam_flow_std",
                                            "inside_flow_std", "seam_jump_mean", "inside_step_mean", "teleport_ratio",
                                            "drift_last", "colour_match", "shape_match", "direction_match"]
    assert format_table(table).splitlines()[2].split()[:2] == ["other", "13"]


def test_evaluate_needs_a_finished_render(tmp_path: Path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}: no run.json; evaluate needs the output folder of a finished render\n"
