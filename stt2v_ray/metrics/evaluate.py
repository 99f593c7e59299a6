"""Metrics of every video of a finished run: `<output>/metrics.parquet` and a printable table.

1. Read `<output>/run.json` (settings, input) and `<output>/results.parquet` (videos).
2. Re-open the run's input for each video's prompt and family (results.parquet has no
   prompt column); if the input is gone, prompts are unknown and t2v is assumed.
3. Per ok video: decode, then MAWE, scene cuts, seam statistics at the base chunk borders
   (from the run's settings), appearance drift against the anchor frame and, when the
   prompt parses in the toy grammar, object-jump statistics, teleports (every transition)
   and prompt adherence.
4. Write metrics.parquet atomically and return it.
"""
from __future__ import annotations

import json
import math
import posixpath
import time

import pyarrow as pa
import pyarrow.parquet as pq
from torch import Tensor

from stt2v_ray.data.clips import ToyPrompt, parse_prompt
from stt2v_ray.metrics.adherence import ADHERENCE_COLUMNS, prompt_adherence
from stt2v_ray.metrics.drift import DRIFT_COLUMNS, appearance_drift
from stt2v_ray.metrics.flow import consecutive_flows
from stt2v_ray.metrics.mawe import mawe, mawe_paper
from stt2v_ray.metrics.scenecuts import scene_cuts
from stt2v_ray.metrics.seams import SEAM_COLUMNS, seam_stats, seam_transitions
from stt2v_ray.metrics.teleport import TELEPORT_COLUMNS, teleport_stats
from stt2v_ray.metrics.track import track_object
from stt2v_ray.storage import atomic_output, filesystem, join_uri, storage_options_for

METRICS_SCHEMA = pa.schema(
    [("id", pa.string()), ("prompt", pa.string()), ("family", pa.string()), ("num_frames", pa.int64()),
     ("width", pa.int64()), ("height", pa.int64()), ("toy_prompt", pa.bool_()),
     ("mawe", pa.float64()), ("mawe_paper", pa.float64()), ("scene_cuts", pa.int64())]
    + [(c, pa.float64()) for c in SEAM_COLUMNS + DRIFT_COLUMNS]
    + [(c, pa.string() if c == "direction" else pa.float64()) for c in ADHERENCE_COLUMNS]
    + [(c, pa.float64()) for c in TELEPORT_COLUMNS]
    + [("seconds", pa.float64())]
)
METRICS_COLUMNS = tuple(METRICS_SCHEMA.names)
# What the printed table shows (the parquet file has everything).
SUMMARY_COLUMNS = ("id", "num_frames", "mawe", "scene_cuts", "seam_flow_std", "inside_flow_std", "seam_jump_mean",
                   "inside_step_mean", "teleport_ratio", "drift_last", "colour_match", "shape_match",
                   "direction_match")


def evaluate_video(frames: Tensor, prompt: str | None, factor: int, chunk_frames: int, cond_frames: int,
                   anchor_frame: int = 0, seams: list[int] | None = None) -> dict:
    """Every metric of one video (F,3,H,W) in [-1, 1] made with the given base chunking.

    seams: the transitions to treat as seams (default: the base chunk borders)."""
    n = frames.shape[0]
    toy: ToyPrompt | None = parse_prompt(prompt) if prompt else None
    flows = consecutive_flows(frames)
    if seams is None:
        seams = seam_transitions(n, factor, chunk_frames, cond_frames)
    track = track_object(frames) if toy is not None else None
    row = {"toy_prompt": toy is not None, "mawe": mawe(frames, flows), "mawe_paper": mawe_paper(frames, flows),
           "scene_cuts": scene_cuts(frames)}
    row.update(seam_stats(frames, seams, flows, track.centres if track is not None else None))
    row.update(appearance_drift(frames, min(anchor_frame * factor, n - 1)))
    if toy is not None:
        row.update(prompt_adherence(frames, toy, track))
        row.update(teleport_stats(track))
    return row


def _prompts(run: dict, storage_options: dict | None) -> dict[str, tuple[str, str]]:
    """id -> (prompt, family) from the run's input; {} when it cannot be read any more."""
    from stt2v_ray.inputs.source import open_input  # inputs are only needed here

    try:
        source = open_input(run["input"], storage_options)
        return {r.id: (r.prompt, "i2v" if r.image else "t2v") for r, _ in source.iter_requests()}
    except Exception:  # noqa: BLE001 - a moved or deleted input only costs the prompt columns
        return {}


def _frames(uri: str, storage_options: dict | None) -> Tensor:
    from stt2v_ray.video.decode import read_video
    from stt2v_ray.video.frames import from_uint8

    video, _ = read_video(uri, storage_options)
    return from_uint8(video)


def evaluate_run(output_uri: str, storage_options: dict | None = None) -> pa.Table:
    """Metrics of every ok video of the run in `output_uri`; writes `<output>/metrics.parquet`."""
    options = storage_options_for(output_uri, storage_options)
    fs, run_path = filesystem(join_uri(output_uri, "run.json"), options)
    _, results_path = filesystem(join_uri(output_uri, "results.parquet"), options)
    for path, what in ((run_path, "run.json"), (results_path, "results.parquet")):
        if not fs.exists(path):
            raise ValueError(f"{output_uri}: no {what}; evaluate needs the output folder of a finished render")
    with fs.open(run_path, "r") as f:
        run = json.load(f)
    with fs.open(results_path, "rb") as f:
        results = pq.read_table(f).to_pylist()
    settings = run["settings"]
    factor = int(settings["interpolate"]["factor"])
    prompts = _prompts(run, storage_options)
    rows = []
    for result in results:
        if result["status"] != "ok":
            continue
        started = time.time()
        prompt, family = prompts.get(result["id"], (None, "t2v"))
        # the video under the folder being evaluated (video_uri holds the path as the render was
        # given it, relative to that run's working directory, and the folder may have moved since)
        uri = join_uri(output_uri, "videos", posixpath.basename(result["video_uri"]))
        frames = _frames(uri, options)
        fam = settings[family]
        row = {c: None for c in METRICS_COLUMNS}
        row.update(id=result["id"], prompt=prompt, family=family, num_frames=frames.shape[0],
                   width=frames.shape[-1], height=frames.shape[-2])
        row.update(evaluate_video(frames, prompt, factor, fam["chunk_frames"], fam["cond_frames"],
                                  fam["anchor_frame"]))
        row["seconds"] = time.time() - started
        rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    table = pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)
    with atomic_output(join_uri(output_uri, "metrics.parquet"), options) as tmp:
        pq.write_table(table, tmp)
    return table


def format_table(table: pa.Table, columns: tuple[str, ...] = SUMMARY_COLUMNS) -> str:
    """A fixed-width text table of `columns` (NaN/None as '-', floats to 3 significant digits)."""
    columns = tuple(c for c in columns if c in table.column_names)
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    body = [[cell(v) for v in row.values()] for row in table.select(list(columns)).to_pylist()]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) for r in body]
    return "\n".join(lines)
