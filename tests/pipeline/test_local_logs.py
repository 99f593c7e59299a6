"""The in-process executor also writes <output>/logs/<id>.log and a failed row's full traceback."""
from __future__ import annotations

import yaml
from PIL import Image  # noqa: F401  (the bad image below must fail in PIL, not for a missing import)

from stt2v_ray.cli import main
from tests.renders import results
from tests.runtime.test_ray_executor import sets


def test_local_logs_and_error_detail(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    doc = {"settings": {"preset": "tiny"}, "prompts": [
        {"id": "good", "prompt": "y", "num_frames": 5},
        {"id": "bad", "prompt": "x", "image": "bad.png", "num_frames": 5},
    ]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert main(["render", str(tmp_path / "m.yaml"), "--output", str(out), "--quiet"] + sets("executor=local")) == 1
    rows = results(out)
    assert rows["good"]["error_detail"] is None
    assert "\n" not in rows["bad"]["error"] and "ImageRefused" in rows["bad"]["error"]
    assert rows["bad"]["error_detail"].startswith("Traceback") and "open_image" in rows["bad"]["error_detail"]
    good = (out / "logs" / "good.log").read_text()
    assert "[good] stt2v_ray.pipeline: local: good started" in good and "local: good ok" in good
    assert "[bad]" not in good
    for stage in ("base local: chunk 0 done", "enhance local: ", "interpolate local: frames 0-", "encode local: frames 0-"):
        assert f"[good] stt2v_ray.stage: {stage}" in good, good
    assert "Traceback" in (out / "logs" / "bad.log").read_text()
