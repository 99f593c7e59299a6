"""Run settings from a manifest and --set overrides, layered over a base (preset defaults)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stt2v_ray.config import EnhanceSettings, RunSettings
from stt2v_ray.inputs import InputError, InputIssue, open_input

PROMPTS = "prompts: [{prompt: x, num_frames: 4}]\n"


def manifest(tmp_path, settings: str = "") -> str:
    path = tmp_path / "m.yaml"
    path.write_text(PROMPTS + settings)
    return str(path)


def test_layering_base_manifest_overrides(tmp_path):
    source = open_input(manifest(tmp_path, "settings: {enhance: {steps: 5, strength: 0.5}, encode: {crf: 30}}"))
    base = {"enhance": {"steps": 9, "scale": 4}, "encode": {"crf": 10}, "device": "cpu"}
    got = source.settings(["enhance.strength=0.25", "interpolate.factor=1"], base=base)
    assert isinstance(got, RunSettings)
    assert (got.enhance.steps, got.enhance.strength, got.enhance.scale) == (5, 0.25, 4)
    assert (got.encode.crf, got.device, got.interpolate.factor) == (30, "cpu", 1)
    assert got.enhance.chunk_frames == 24  # untouched field keeps the model default


def test_unknown_settings_key(tmp_path):
    uri = manifest(tmp_path, "settings: {enhance: {stepz: 3}, colour: red}")
    # The messages list the fields of the model the unknown key sits in.
    assert "steps" in EnhanceSettings.model_fields and "enhance" in RunSettings.model_fields
    expected = [
        InputIssue(uri, "settings", "enhance.stepz", "unknown field (expected one of: "
                                                     f"{', '.join(sorted(EnhanceSettings.model_fields))})"),
        InputIssue(uri, "settings", "colour", f"unknown field (expected one of: {', '.join(sorted(RunSettings.model_fields))})"),
    ]
    assert sorted(open_input(uri).validate([]), key=str) == sorted(expected, key=str)
    with pytest.raises(InputError) as caught:
        open_input(uri).settings([])
    assert sorted(caught.value.issues, key=str) == sorted(expected, key=str)


def test_overlap_not_smaller_than_chunk_in_manifest(tmp_path):
    uri = manifest(tmp_path, "settings: {enhance: {chunk_frames: 8, overlap_frames: 8}}")
    assert open_input(uri).validate([]) == [
        InputIssue(uri, "settings", "enhance", "overlap_frames (8) must be smaller than chunk_frames (8)")]


def test_overlap_error_from_override_and_fix_by_override(tmp_path):
    uri = manifest(tmp_path, "settings: {enhance: {chunk_frames: 8}}")
    source = open_input(uri)
    assert source.validate(["enhance.overlap_frames=12"]) == [
        InputIssue(uri, "settings", "enhance", "overlap_frames (12) must be smaller than chunk_frames (8)")]
    assert source.validate(["enhance.overlap_frames=12", "enhance.chunk_frames=32"]) == []
    assert source.settings(["enhance.overlap_frames=12", "enhance.chunk_frames=32"]).enhance.overlap_frames == 12


def test_bad_override_syntax_and_types(tmp_path):
    source = open_input(manifest(tmp_path))
    issues = source.validate(["enhance.steps", "encode.crf=abc"])
    assert issues == [
        InputIssue("--set", "settings", "", "--set 'enhance.steps': expected dotted.key=value"),
        InputIssue(str(tmp_path / "m.yaml"), "settings", "encode.crf", "Input should be a valid integer, unable to parse string "
                "as an integer"),
    ]


def test_settings_not_a_mapping(tmp_path):
    uri = manifest(tmp_path, "settings: [1, 2]")
    assert open_input(uri).validate([]) == [InputIssue(uri, "settings", "", "expected a mapping of run settings; got list")]


def test_parquet_settings_come_from_overrides_only(tmp_path):
    pq.write_table(pa.table({"prompt": ["x"], "num_frames": [4]}), tmp_path / "d.parquet")
    source = open_input(str(tmp_path / "d.parquet"))
    assert source.settings(["encode.default_fps=30"]).encode.default_fps == 30
    assert source.validate(["enhance.overlap_frames=30"]) == [
        InputIssue("--set", "settings", "enhance", "overlap_frames (30) must be smaller than chunk_frames (24)")]
