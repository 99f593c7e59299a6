"""The report of a real tiny render (render --report), and the page in headless Chromium."""
from __future__ import annotations

import re
from html import escape as html_escape

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from stt2v_ray.cli import main
from tests.report.helpers import chromium, chromium_binary, console_messages

BROKEN = "broken.png"
FAST = ["preset=tiny", "executor=local", "enhance.enabled=false", "t2v.steps=2", "i2v.steps=2", "t2v.chunk_frames=8",
        "t2v.cond_frames=4", "encode.preset=ultrafast"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report_render")
    (folder / BROKEN).write_bytes(b"not a png")
    manifest = folder / "m.yaml"
    manifest.write_text(yaml.safe_dump({"settings": {"preset": "tiny"}, "prompts": [
        {"id": "good", "prompt": "a red circle", "num_frames": 9, "seed": 1},
        {"id": "also-good", "prompt": "a blue square", "num_frames": 5, "seed": 2},
        {"id": "bad", "prompt": "broken image", "image": BROKEN, "num_frames": 5},
    ]}))
    out = folder / "out"
    args = ["render", str(manifest), "--output", str(out), "--quiet", "--report"]
    for s in FAST:
        args += ["--set", s]
    assert main(args) == 1  # one video failed; the report is still written
    return out


def test_render_report_has_every_video(rendered):
    html = (rendered / "report.html").read_text(encoding="utf-8")
    assert re.findall(r'data-video-id="([^"]*)"', html) == ["good", "also-good", "bad"]
    assert re.findall(r'<video[^>]*src="([^"]*)"', html) == ["videos/good.mp4", "videos/also-good.mp4"]
    assert all((rendered / src).is_file() for src in ["videos/good.mp4", "videos/also-good.mp4"])
    sheets = re.findall(r'<img class="sheet" alt="contact sheet of ([^"]*)" src="data:image/png;base64,', html)
    assert sheets == ["good", "also-good"]
    bad = html[html.index('data-video-id="bad"'):]
    error = re.search(r'<pre class="error">(.*?)</pre>', bad).group(1)
    # the real error ("cannot identify image file <_io.BytesIO ...>") is shown, escaped, never as markup
    recorded = {r["id"]: r for r in pq.read_table(rendered / "results.parquet").to_pylist()}["bad"]["error"]
    assert "<" in recorded and error == html_escape(recorded) and recorded not in html
    assert 'id="gantt"' in html and 'id="utilisation"' in html


def test_page_in_headless_chromium(rendered, tmp_path):
    binary = chromium_binary()
    url = (rendered / "report.html").as_uri()
    proc = chromium(binary, url, tmp_path / "profile", "--dump-dom", "--virtual-time-budget=5000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    # plotly ran: both charts were drawn as SVG, with one bar group per stage in the Gantt chart
    assert dom.count('class="main-svg"') >= 4, dom[:500]
    assert re.search(r'id="gantt"[^>]*class="[^"]*js-plotly-plot', dom) or 'class="plotly-graph-div js-plotly-plot"' in dom
    assert dom.count('class="trace bars"') >= 2  # base and encode (enhancement off; interpolation on)
    assert re.findall(r'data-video-id="([^"]*)"', dom) == ["good", "also-good", "bad"]
    assert console_messages(proc.stderr) == []
    shot = tmp_path / "report.png"
    proc = chromium(binary, url, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2000",
                    "--virtual-time-budget=5000")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50  # drawn, not a blank page


def test_console_check_catches_errors(tmp_path):
    """The console check itself: a page that throws is caught (so an empty list above means no errors)."""
    binary = chromium_binary()
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom'); missing();</script></body></html>")
    proc = chromium(binary, page.as_uri(), tmp_path / "profile", "--dump-dom")
    messages = console_messages(proc.stderr)
    assert len(messages) == 2 and "boom" in messages[0] and "missing is not defined" in messages[1]
