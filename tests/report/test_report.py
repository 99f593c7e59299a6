"""The report on a synthetic output folder: numbers, escaping, self-containment, the CLI, S3."""
from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import pytest
import s3fs

from stt2v_ray.cli import main
from stt2v_ray.report import load_run, render_page, write_report
from stt2v_ray.report.stats import gpu_hours, merged, pool_stats, utilisation
from tests.report.helpers import FAILED_ERROR, T0, synthetic_output


class Refs(HTMLParser):
    """Every src/href of the page's tags (script bodies are not tags: the inlined plotly.js is skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.refs += [(tag, v) for k, v in attrs if k in ("src", "href") and v]


def test_pool_numbers_and_gpu_hours(tmp_path):
    data = load_run(str(synthetic_output(tmp_path / "out")))
    stats = {p.pool: p for p in pool_stats(data)}
    assert list(stats) == ["base", "enhance", "interpolate", "write"]
    # base-0 spans 0-4 and 3-5 overlap: busy 5 s, not 6; base-1 is busy 2 s; 2 workers x 10 s wall
    assert stats["base"].busy_seconds == pytest.approx(7.0)
    assert stats["base"].busy_fraction == pytest.approx(0.35)
    assert (stats["enhance"].busy_fraction, stats["write"].busy_fraction) == pytest.approx((0.3, 0.1))
    assert stats["interpolate"].workers == 1 and stats["interpolate"].busy_seconds == 0
    reserved, busy = gpu_hours(list(stats.values()), data.wall_seconds)
    assert reserved == pytest.approx((2 * 1 + 1 * 1) * 10 / 3600)
    assert busy == pytest.approx((7 + 3) / 3600)


def test_merged_and_binned_utilisation(tmp_path):
    assert merged([(3, 5), (0, 4), (6, 7), (7, 8)]) == [(0, 5), (6, 8)]
    data = load_run(str(synthetic_output(tmp_path / "out")))
    edges, series = utilisation(data, {"base": 2, "enhance": 1, "write": 1}, bins=10)
    assert edges == pytest.approx([float(i) for i in range(10)])
    # second by second: base-0 busy 0-5, base-1 busy 2-4, out of 2 workers
    assert series["base"] == pytest.approx([0.5, 0.5, 1, 1, 0.5, 0, 0, 0, 0, 0])
    assert series["enhance"] == pytest.approx([0, 0, 0, 0, 0, 1, 1, 1, 0, 0])


def test_page_is_self_contained_and_escaped(tmp_path):
    out = synthetic_output(tmp_path / "out", metrics=True)
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert re.findall(r'data-video-id="([^"]*)"', html) == ["a", "b", "c"]
    assert 'class="badge skipped"' in html and 'class="badge failed"' in html
    # inputs are escaped: the error and the prompt appear as text, never as markup
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in html
    assert FAILED_ERROR not in html and "<b>red</b>" not in html and "a &lt;b&gt;red&lt;/b&gt; circle" in html
    # plotly inlined, no script or stylesheet from the network; contact sheet as a data URI; relative player src
    refs = Refs()
    refs.feed(html)
    assert [r for r in refs.refs if not r[1].startswith(("data:", "videos/"))] == []  # nothing from the network
    assert "Plotly.newPlot" in html and "plotly.js v" in html and len(html) > 3_000_000  # plotly.js inlined
    sheet = base64.b64encode((out / "videos" / "a.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{sheet}"' in html
    assert re.findall(r'<video[^>]*src="([^"]*)"', html) == ["videos/a.mp4"]  # failed/skipped: no player
    assert "<b>metrics</b>" in html and ">0.125<" in html  # metrics.parquet's row for a
    assert ">35%<" in html and "base busy (2 workers)" in html  # busy fraction card
    assert not list(out.glob(".report.html.tmp-*"))  # atomic write left no temp file


def test_page_without_timeline_or_metrics(tmp_path):
    out = synthetic_output(tmp_path / "out")
    (out / "timeline.parquet").unlink()
    html = render_page(load_run(str(out)))
    assert "timeline.parquet is missing or empty" in html and "Plotly.newPlot" not in html
    assert "<b>metrics</b>" not in html and html.count('data-video-id="') == 3


def test_no_render_there_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "results.parquet: not found" in capsys.readouterr().err
    (tmp_path / "results.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="results.parquet: cannot read Parquet"):
        load_run(str(tmp_path))


def test_report_on_s3(tmp_path, s3_bucket):
    out = synthetic_output(tmp_path / "out")
    fs = s3fs.S3FileSystem()
    fs.put(str(out) + "/", f"{s3_bucket}/run/", recursive=True)
    uri = write_report(f"s3://{s3_bucket}/run")
    assert uri == f"s3://{s3_bucket}/run/report.html"
    html = fs.cat(f"{s3_bucket}/run/report.html").decode()
    assert html.count('data-video-id="') == 3 and "data:image/png;base64," in html
    assert 'src="videos/a.mp4"' in html  # relative: plays through the same S3 prefix


def test_resumed_run_counts_skipped_and_keeps_earlier_spans(tmp_path):
    """After a resume (records branch): run.json says what this run skipped; earlier runs' spans come before it."""
    out = synthetic_output(tmp_path / "out")
    run = json.loads((out / "run.json").read_text())
    run.update(started="2023-11-14T22:13:25+00:00", seconds=5.0,  # this run began 5 s after the first span
               videos={"ok": 1, "failed": 1, "missing": 1}, this_run={"skipped": 2, "rendered": 1, "interrupted": None})
    (out / "run.json").write_text(json.dumps(run))
    data = load_run(str(out))
    assert (data.t0, data.wall_seconds, data.span_seconds) == (T0, 5.0, 10.0)
    html = render_page(data)
    assert '<div class="v">2</div><div class="k">skipped</div>' in html
    assert '<div class="v">1</div><div class="k">not rendered yet</div>' in html
    assert "The timeline starts 5.0 s before this run" in html
    reserved, _ = gpu_hours(pool_stats(data), data.wall_seconds)
    assert reserved == pytest.approx(3 * 5 / 3600)  # this run's wall time, not the window's


def test_simulated_run_says_so_on_the_page(tmp_path):
    out = synthetic_output(tmp_path / "out")
    assert 'data-simulated="true"' not in render_page(load_run(str(out)))
    run = json.loads((out / "run.json").read_text())
    run.update(simulated=True, simulation={"time_scale": 600})
    (out / "run.json").write_text(json.dumps(run))
    html = render_page(load_run(str(out)))
    assert 'data-simulated="true"' in html and "SIMULATED RUN: no real video was made" in html and "600x" in html
