"""Weight resolution: local paths, the HF cache offline, one error listing every missing component."""
from __future__ import annotations

import pytest
import yaml

from stt2v_ray.models.blocks.weights import MissingWeightsError, resolve_weights
from stt2v_ray.presets import get_preset


def test_every_missing_component_is_listed_with_source_and_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(get_preset("streamingsvd"), {"enhancer": str(tmp_path / "nope")})
    assert [s.component for s, _ in err.value.missing] == ["streaming", "enhancer", "text_to_image", "interpolator"]
    text = str(err.value)
    assert "PAIR/StreamingSVD (file model.safetensors)" in text and "weights.paths.streaming" in text
    assert f"{tmp_path / 'nope'!s}' does not exist" in text or "does not exist" in text
    assert "stabilityai/stable-diffusion-xl-base-1.0" in text and "weights.paths.text_to_image" in text
    assert "weights.paths.interpolator" in text and "ours.pkl" in text  # EMA-VFI: no hub copy, a local file


def test_local_file_and_folder_resolve(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    found = resolve_weights(get_preset("streamingsvd"), {"streaming": str(tmp_path), "enhancer": str(tmp_path)},
                            ["streaming", "enhancer"])
    assert found["streaming"].path == f and found["enhancer"].path == tmp_path


def test_render_exits_2_before_rendering_when_weights_are_missing(monkeypatch, tmp_path, capsys):
    from stt2v_ray.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "streamingsvd", "executor": "local"},
                                        "prompts": [{"prompt": "a cat", "num_frames": 4}]}))
    assert main(["render", str(manifest), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "weights missing for 4 component(s)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_only_the_components_the_batch_uses_are_required(monkeypatch, tmp_path, capsys):
    """An i2v-only batch without interpolation needs neither SDXL (t2v first frame) nor EMA-VFI."""
    from stt2v_ray.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    (tmp_path / "img.png").write_bytes(b"")  # existence is all validation checks
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "streamingsvd", "executor": "local",
                                                     "interpolate": {"factor": 1}},
                                        "prompts": [{"image": "img.png", "num_frames": 4}]}))
    assert main(["render", str(manifest), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "weights missing for 2 component(s)" in err
    assert "weights.paths.streaming" in err and "weights.paths.enhancer" in err
    assert "text_to_image" not in err and "interpolator" not in err
