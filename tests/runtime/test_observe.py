"""Watching a Ray run: stage names on the actors, ray.util.metrics read back from the node's
Prometheus export (loopback), the dashboard of the embedded cluster, per-video logs and the full
remote traceback of a failed video. One local cluster and one three-video render for all of it."""
from __future__ import annotations

import io
import re
import socket
import time
import urllib.request

import pytest
import ray

from stt2v_ray.config import RunSettings
from stt2v_ray.pipeline.video import frame_budget, progress_totals
from stt2v_ray.progress import Progress
from stt2v_ray.run import render as render_run
from stt2v_ray.runtime.cluster import announce_dashboard, dashboard_installed, local_init_kwargs
from tests.renders import results
from tests.runtime.test_ray_executor import sets

pytestmark = pytest.mark.ray


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """Started with the embedded executor's own ray.init arguments (dashboard on), plus a metrics export port."""
    metrics_port = _port()
    kwargs = local_init_kwargs(RunSettings(), num_cpus=4, num_gpus=0)
    kwargs["log_to_driver"] = False
    context = ray.init(**kwargs, _metrics_export_port=metrics_port)
    yield context, metrics_port
    ray.shutdown()


@pytest.fixture(scope="module")
def render(cluster, tmp_path_factory):
    import yaml
    from PIL import Image

    folder = tmp_path_factory.mktemp("obs")
    Image.new("RGB", (60, 40), (30, 160, 90)).save(folder / "img.png")
    (folder / "bad.png").write_bytes(b"not an image")
    doc = {"settings": {"preset": "tiny"}, "prompts": [
        {"id": "t2v", "prompt": "a red circle", "num_frames": 13, "seed": 4},
        {"id": "i2v", "prompt": "a field", "image": "img.png", "num_frames": 9, "seed": 9},
        {"id": "bad", "prompt": "x", "image": "bad.png", "num_frames": 5},
    ]}
    (folder / "m.yaml").write_text(yaml.safe_dump(doc))
    out = folder / "out"
    stream = io.StringIO()  # not a TTY: plain progress lines
    summary = render_run(str(folder / "m.yaml"), str(out), sets("executor=ray")[1::2],
                         progress=Progress(total_videos=3, stream=stream))
    return summary.exit_code, out, stream.getvalue()


def test_stage_actors_carry_their_stage(cluster, render):
    from ray.util.state import list_actors

    code, _, _ = render
    assert code == 1  # the bad image
    url = announce_dashboard(cluster[0], io.StringIO())  # this cluster's API server (other clusters may run here)
    actors = [a for a in list_actors(address=url, limit=1000, detail=True) if (a.name or "").startswith("stt2v-")]
    by_class = {a.class_name: a.name for a in actors}
    assert set(by_class) == {"BaseActor", "EnhancerShard", "Interpolator", "Writer"}
    for cls, stage in [("BaseActor", "base-0"), ("EnhancerShard", "enhance-g0s0"), ("Interpolator", "interpolate-0"),
                       ("Writer", "write-0")]:
        assert re.fullmatch(rf"stt2v-[0-9a-f]{{8}}-{stage}", by_class[cls]), by_class


def _scrape(port: int, want) -> dict[str, float]:
    """Sum of each stt2v series over Ray's per-process labels, keyed by name{our tags}; polled until `want` holds."""
    deadline, sums = time.monotonic() + 40, {}
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        sums = {}
        for line in text.splitlines():
            m = re.match(r"(ray_stt2v_\w+)\{(.*)\} ([0-9.eE+-]+)$", line)
            if m:
                tags = ",".join(t for t in m.group(2).split(",") if t.split("=")[0] in ("stage", "pool", "queue"))
                key = f"{m.group(1)}{{{tags}}}"
                sums[key] = sums.get(key, 0.0) + float(m.group(3))
        if want(sums):
            return sums
        time.sleep(1)
    return sums


def test_metrics_exported(cluster, render):
    _, port = cluster

    def complete(m):
        return m.get("ray_stt2v_videos_done_total{}") == 2 and m.get('ray_stt2v_frames_total{stage="write"}') == 22

    m = _scrape(port, complete)
    assert m.get("ray_stt2v_videos_done_total{}") == 2, m
    assert m.get("ray_stt2v_videos_failed_total{}") == 1, m
    assert m.get("ray_stt2v_videos_in_flight{}") == 0, m
    assert m['ray_stt2v_frames_total{stage="write"}'] == 13 + 9  # exactly the frames of the two videos
    base = sum(frame_budget(n, RunSettings()).base_frames for n in (13, 9))  # before 2x interpolation
    assert m['ray_stt2v_frames_total{stage="enhance"}'] == base
    assert m['ray_stt2v_frames_total{stage="base"}'] >= base
    for pool in ("base", "enhance", "write"):
        assert m[f'ray_stt2v_busy_seconds_total{{pool="{pool}"}}'] > 0
    assert 'ray_stt2v_queue_depth{queue="enhance_inbox"}' in m


def test_progress_counts_enhancement_under_ray(render):
    _, _, text = render
    settings = RunSettings.model_validate({"preset": "tiny", "enhance": {"steps": 4, "strength": 0.5, "chunk_frames": 8,
                                           "overlap_frames": 3}, "t2v": {"steps": 2, "chunk_frames": 8, "cond_frames": 4}})
    totals = progress_totals(type("R", (), {"image": None, "num_frames": 13})(), settings)
    assert totals["enhance"] > 0
    end = next(line for line in text.splitlines() if "t2v: ok in" in line)
    assert f"base {totals['base']}/{totals['base']}" in end and f"enhance {totals['enhance']}/{totals['enhance']}" in end, text
    assert "ETA" in text
    assert "i2v: ok in" in text and "bad: FAILED" in text and "overall: videos 3/3 done" in text


def test_logs_and_error_detail(render):
    _, out, _ = render
    rows = results(out)
    assert rows["t2v"]["error_detail"] is None
    bad = rows["bad"]
    assert bad["status"] == "failed" and "\n" not in bad["error"]
    assert "Traceback" in bad["error_detail"] and "ImageRefused" in bad["error_detail"]
    for vid in ("t2v", "i2v", "bad"):
        text = (out / "logs" / f"{vid}.log").read_text()
        lines = text.splitlines()
        assert all(f"[{vid}]" in line for line in lines if re.match(r"\d{4}-\d\d-\d\dT", line)), text
        assert f"ray: {vid} started" in text
    for vid in ("t2v", "i2v"):
        text = (out / "logs" / f"{vid}.log").read_text()
        for stage in ("base base-0: chunks done", "enhance enhance-g0s0: stream done", "write write-0: closed",
                      "stt2v_ray.stage: enhance enhance-g0s0: ", "stt2v_ray.stage: encode write-0: frames 0-"):
            assert stage in text, text
    assert "Traceback" in (out / "logs" / "bad.log").read_text()


def test_dashboard_setting_both_ways(cluster):
    context, _ = cluster
    off = local_init_kwargs(RunSettings.model_validate({"ray": {"dashboard": False}}), 2, 0)
    assert off["include_dashboard"] is False and "dashboard_host" not in off
    on = local_init_kwargs(RunSettings(), 2, 0)
    assert dashboard_installed()  # ray[default] is a dependency
    assert on["include_dashboard"] is True and on["dashboard_host"] == "127.0.0.1"
    # the fixture's real start with these arguments: the address is printed and the dashboard answers on loopback
    err = io.StringIO()
    url = announce_dashboard(context, err)
    assert url and url.startswith("http://127.0.0.1:") and f"Ray dashboard: {url}" in err.getvalue()
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

    request = urllib.request.Request(f"{url}/api/version", headers=get_auth_headers_if_auth_enabled({}))
    with urllib.request.urlopen(request, timeout=10) as response:  # Ray 2.60's token auth: the token from ~/.ray
        assert response.status == 200 and b"ray_version" in response.read()
