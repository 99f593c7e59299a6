"""The report page: one self-contained HTML file (plotly inlined, contact sheets as data URIs).

The MP4s stay beside it: each player's src is relative (videos/<name>.mp4), so the page
plays them from a local folder and from S3 through the same prefix. Everything that comes
from the inputs (ids, prompts, errors, settings) is HTML-escaped.
"""
from __future__ import annotations

import base64
import json
import math
import urllib.parse
from html import escape

from stt2v_ray.report.figures import gantt, utilisation_figure
from stt2v_ray.report.load import RunData, status_of, video_name
from stt2v_ray.report.stats import gpu_hours, pool_stats

STAGE_SECONDS = ("base_seconds", "enhance_seconds", "interpolate_seconds", "encode_seconds", "total_seconds")
HIDDEN_METRICS = ("id", "prompt")  # the prompt is shown above the table; the id is the card's title
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
main{max-width:1200px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0 4px} h2{font-size:17px;margin:24px 0 8px} h3{font-size:15px;margin:0}
.sub{color:#666;font-size:13px;margin-bottom:12px}
.simulated{background:#b00020;color:#fff;font-weight:bold;padding:8px 12px;border-radius:4px;margin-bottom:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;min-width:120px}
.card .v{font-size:20px;font-weight:600} .card .k{font-size:12px;color:#666}
.panel{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;margin:10px 0}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
th{color:#555;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.video{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px 14px;margin:12px 0}
.video .head{display:flex;gap:10px;align-items:center;margin-bottom:6px}
.badge{font-size:12px;border-radius:10px;padding:1px 8px;color:#fff}
.ok{background:#2e8540} .failed{background:#c62828} .skipped{background:#888}
.prompt{font-style:italic;color:#444;margin:4px 0 8px}
.body{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.sheet{max-width:min(100%,760px);border:1px solid #eee}
video{width:256px;max-width:100%;background:#000;image-rendering:pixelated}
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;background:#fafafa;border:1px solid #eee;padding:8px}
.error{color:#b71c1c} details summary{cursor:pointer;color:#345}
"""


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _card(value: str, key: str) -> str:
    return f'<div class="card"><div class="v">{escape(value)}</div><div class="k">{escape(key)}</div></div>'


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{escape(_fmt(v))}</td>' if i in numeric else f"<td>{escape(_fmt(v))}</td>"
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def summary(data: RunData) -> str:
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for row in data.results:
        status = status_of(row)
        counts[status if status in counts else "failed"] += 1
    this_run = data.run.get("this_run") if isinstance(data.run.get("this_run"), dict) else {}
    if isinstance(this_run.get("skipped"), int):  # resume: ok in an earlier run, its row is still "ok"
        counts["skipped"] = max(counts["skipped"], this_run["skipped"])
    videos = data.run.get("videos") if isinstance(data.run.get("videos"), dict) else {}
    wall, stats = data.wall_seconds, pool_stats(data)
    reserved, busy = gpu_hours(stats, wall)
    cards = [_card(str(counts["ok"]), "videos ok"), _card(str(counts["failed"]), "failed"),
             _card(str(counts["skipped"]), "skipped"), _card(_duration(wall), "wall time"),
             _card(f"{reserved:.3g}", "GPU-hours reserved"), _card(f"{busy:.3g}", "GPU-hours busy")]
    if videos.get("missing"):
        cards.insert(3, _card(str(videos["missing"]), "not rendered yet"))
    if this_run.get("interrupted"):
        cards.insert(3, _card(str(this_run["interrupted"]), "interrupted by"))
    cards += [_card(f"{p.busy_fraction:.0%}", f"{p.pool} busy ({p.workers} worker{'s' if p.workers != 1 else ''})")
              for p in stats]
    pools = _table(["pool", "workers", "GPUs each", "busy s", "busy fraction"],
                   [[p.pool, p.workers, p.gpus_per_worker, round(p.busy_seconds, 1), f"{p.busy_fraction:.1%}"]
                    for p in stats], numeric={1, 2, 3, 4})
    how = ("GPU-hours reserved = sum over pools of actors x num_gpus (run.json settings) x this run's wall time; busy = "
           "sum over pools of num_gpus x the pool's busy seconds. Busy fraction = a pool's busy seconds (union of its "
           "workers' timeline spans) / (workers x the timeline's window).")
    if data.started is not None and data.t0 < data.started - 1:
        how += (f" The timeline starts {_duration(data.started - data.t0)} before this run: it keeps the spans of "
                "videos rendered by earlier runs (resume).")
    settings = json.dumps({k: data.run.get(k) for k in ("settings", "overrides", "weights", "versions", "storage_options",
                                                         "input", "started", "ended") if k in data.run},
                          indent=2, sort_keys=True, default=str)
    return (f'<div class="cards">{"".join(cards)}</div><div class="panel">{pools}<p class="sub">{escape(how)}</p>'
            f"<details><summary>settings (run.json)</summary><pre>{escape(settings)}</pre></details></div>")


def video_card(row: dict, data: RunData) -> str:
    vid, status = str(row["id"]), status_of(row)
    prompt = row.get("prompt") or (data.metrics.get(vid) or {}).get("prompt")
    parts = [f'<section class="video" id="video-{escape(urllib.parse.quote(vid, safe=""))}" data-video-id="{escape(vid)}">',
             f'<div class="head"><h3>{escape(vid)}</h3><span class="badge {escape(status)}">{escape(status)}</span>'
             f'<span class="sub">{escape(_facts(row))}</span></div>']
    if prompt:
        parts.append(f'<div class="prompt">{escape(str(prompt))}</div>')
    if row.get("error"):
        parts.append(f'<pre class="error">{escape(str(row["error"]))}</pre>')
    if row.get("error_detail"):
        parts.append(f'<details><summary>traceback</summary><pre>{escape(str(row["error_detail"]))}</pre></details>')
    parts.append('<div class="body">')
    sheet = data.sheets.get(vid)
    if sheet:
        uri = "data:image/png;base64," + base64.b64encode(sheet).decode("ascii")
        parts.append(f'<img class="sheet" alt="contact sheet of {escape(vid)}" src="{uri}">')
    if status == "ok" and row.get("video_uri"):
        src = "videos/" + urllib.parse.quote(video_name(row))
        parts.append(f'<video controls loop muted preload="metadata" src="{escape(src)}"></video>')
    parts.append("</div>")
    timing = [[k.removesuffix("_seconds"), row.get(k)] for k in STAGE_SECONDS if row.get(k) is not None]
    if timing:
        parts.append("<details><summary>stage seconds</summary>" + _table(["stage", "seconds"], timing, {1}) + "</details>")
    metrics = data.metrics.get(vid)
    if metrics:
        cols = [k for k, v in metrics.items() if k not in HIDDEN_METRICS and v is not None]
        parts.append('<div class="panel"><b>metrics</b> ' + _table(cols, [[metrics[k] for k in cols]], set(range(len(cols))))
                     + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _facts(row: dict) -> str:
    facts = []
    if row.get("num_frames") is not None:
        facts.append(f"{row['num_frames']} frames")
    if row.get("width") and row.get("height"):
        facts.append(f"{row['width']}x{row['height']}")
    if row.get("fps"):
        facts.append(f"{row['fps']:g} fps")
    if row.get("seed") is not None:
        facts.append(f"seed {row['seed']}")
    if (row.get("attempts") or 0) > 1:
        facts.append(f"{row['attempts']} attempts")
    if row.get("total_seconds") is not None:
        facts.append(f"{row['total_seconds']:.1f} s")
    return " · ".join(facts)


def render_page(data: RunData) -> str:
    """The whole page as one string."""
    stats = pool_stats(data)
    config = {"displaylogo": False, "responsive": True}
    charts = ""
    if data.timeline:
        charts = (gantt(data).to_html(full_html=False, include_plotlyjs=True, div_id="gantt", config=config)
                  + utilisation_figure(data, {p.pool: p.workers for p in stats})
                  .to_html(full_html=False, include_plotlyjs=False, div_id="utilisation", config=config))
    else:
        charts = '<p class="sub">timeline.parquet is missing or empty: no charts.</p>'
    title = f"stt2v-ray report: {data.run.get('output') or data.output}"
    when = " · ".join(escape(str(data.run[k])) for k in ("started",) if data.run.get(k))
    videos = "".join(video_card(row, data) for row in data.results)
    banner = ""
    if data.run.get("simulated"):  # a simulated run must never pass for a render (issue 17 §1)
        scale = (data.run.get("simulation") or {}).get("time_scale")
        banner = (f'<div class="simulated" data-simulated="true">SIMULATED RUN: no real video was made; the models were sleeps '
                  f'from a cost model, durations compressed {escape(str(scale))}x (multiply by it for simulated seconds)</div>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body><main>'
            f'{banner}<h1>{escape(title)}</h1><div class="sub">{when} · input {escape(str(data.run.get("input", "?")))}</div>'
            f'<h2>Summary</h2>{summary(data)}<h2>Timeline</h2><div class="panel">{charts}</div>'
            f'<h2>Videos ({len(data.results)})</h2>{videos}</main></body></html>\n')
