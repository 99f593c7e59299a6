"""The charts, as plotly figures: a Gantt chart of the timeline and busy workers per pool over time."""
from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

from stt2v_ray.report.load import RunData
from stt2v_ray.report.stats import POOLS, pool_of, utilisation

# Fixed colours per stage, so the same stage looks the same in every report.
STAGE_COLOURS = {"base": "#4C78A8", "enhance": "#F58518", "interpolate": "#54A24B", "encode": "#B279A2",
                 "local": "#72B7B2"}
EXTRA_COLOURS = ("#E45756", "#EECA3B", "#9D755D", "#BAB0AC", "#FF9DA6")
POOL_COLOURS = {"base": "#4C78A8", "enhance": "#F58518", "interpolate": "#54A24B", "write": "#B279A2"}
LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=70, b=40), font=dict(size=12),
              legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))


def _worker_order(workers: set[str]) -> list[str]:
    """Workers grouped by pool in pipeline order, then by name (base-2 before base-10)."""
    def key(w: str):
        pool = pool_of(w)
        rank = POOLS.index(pool) if pool in POOLS else len(POOLS)
        digits = "".join(c if c.isdigit() else " " for c in w).split()
        return (rank, pool, [int(d) for d in digits], w)
    return sorted(workers, key=key)


def stage_colour(stage: str, others: dict[str, str]) -> str:
    if stage in STAGE_COLOURS:
        return STAGE_COLOURS[stage]
    return others.setdefault(stage, EXTRA_COLOURS[len(others) % len(EXTRA_COLOURS)])


def gantt(data: RunData) -> go.Figure:
    """One row per worker, one bar per timeline span (x: seconds from the run's start), coloured by stage."""
    t0, by_stage = data.t0, defaultdict(list)
    for r in data.timeline:
        by_stage[r["stage"]].append(r)
    workers = _worker_order({r["worker"] for r in data.timeline})
    fig, others = go.Figure(), {}
    for stage in sorted(by_stage, key=lambda s: (list(STAGE_COLOURS).index(s) if s in STAGE_COLOURS else 99, s)):
        rows = by_stage[stage]
        fig.add_trace(go.Bar(
            name=stage, orientation="h", y=[r["worker"] for r in rows], base=[r["start"] - t0 for r in rows],
            x=[max(r["end"] - r["start"], 1e-3) for r in rows], marker=dict(color=stage_colour(stage, others), line_width=0),
            text=[r["video_id"] for r in rows], textposition="inside", insidetextanchor="middle",
            customdata=[[r["video_id"], r["unit"], r["end"] - r["start"]] for r in rows],
            hovertemplate="%{customdata[0]}<br>" + stage + " %{customdata[1]}<br>%{base:.2f}s + %{customdata[2]:.2f}s"
                          "<br>%{y}<extra></extra>",
        ))
    title = dict(text="Timeline: one row per worker, bars labelled by video", y=0.98)
    fig.update_layout(**LAYOUT, barmode="overlay", bargap=0.25, title=title,
                      height=max(240, 140 + 34 * len(workers)), uniformtext=dict(minsize=9, mode="hide"))
    fig.update_xaxes(title="seconds since the run started", range=[0, max(data.span_seconds, 1e-3)], showgrid=True)
    fig.update_yaxes(categoryorder="array", categoryarray=workers[::-1], title=None)
    return fig


def utilisation_figure(data: RunData, workers_per_pool: dict[str, int]) -> go.Figure:
    """Busy fraction of each pool over time (binned, a step line); the pool's size is in the legend."""
    edges, series = utilisation(data, workers_per_pool)
    fig = go.Figure()
    for i, (pool, fractions) in enumerate(series.items()):
        colour = POOL_COLOURS.get(pool, EXTRA_COLOURS[i % len(EXTRA_COLOURS)])
        fig.add_trace(go.Scatter(x=edges + [data.span_seconds], y=fractions + fractions[-1:], mode="lines",
                                 line=dict(shape="hv", width=2, color=colour),
                                 name=_pool_label(pool, workers_per_pool.get(pool, 1)),
                                 hovertemplate=pool + ": %{y:.0%} busy from %{x:.1f}s<extra></extra>"))
    fig.update_layout(**LAYOUT, title=dict(text="Utilisation: busy fraction per pool", y=0.97), height=320)
    fig.update_xaxes(title="seconds since the run started", range=[0, max(data.span_seconds, 1e-3)])
    fig.update_yaxes(title="busy", tickformat=".0%", range=[0, 1.05])
    return fig


def _pool_label(pool: str, workers: int) -> str:
    return f"{pool} ({workers} worker{'s' if workers != 1 else ''})"
