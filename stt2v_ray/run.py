"""A render run: validate the input at the edge, render through an executor, write the tables.

1. Open the input (manifest or Parquet dataset) and resolve the settings: field defaults,
   then the preset's defaults, then the manifest's `settings`, then `--set` overrides.
2. Validate everything (settings and every row) before rendering anything: InputError.
3. Render each video through the executor; a failed video becomes a `failed` row.
4. Write results.parquet, timeline.parquet and run.json (each atomically), even when
   the run is interrupted, so what was rendered is never lost.
"""
from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass

from stt2v_ray.config import RunSettings
from stt2v_ray.inputs.errors import InputError
from stt2v_ray.inputs.images import with_input_roots
from stt2v_ray.inputs.source import InputSource, open_input
from stt2v_ray.presets import PRESETS
from stt2v_ray.progress import Progress
from stt2v_ray.results import ResultsTable, Timeline, package_versions, write_run_json
from stt2v_ray.storage import join_uri, redact, redact_text, redact_uri, storage_options_for


@dataclass
class RunSummary:
    output: str
    total: int
    ok: int
    failed: int
    seconds: float

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 else 1


def preset_base(source: InputSource, overrides: list[str]) -> dict:
    """The named preset's defaults, layered under the manifest's settings and the overrides."""
    preset = PRESETS.get(source.preset_name(overrides))
    return preset.defaults if preset else {}  # an unknown name is reported by validation


def load_and_validate(input_uri: str, overrides: list[str], storage_options: dict | None,
                      source: InputSource | None = None) -> tuple[InputSource, RunSettings]:
    """`source`: an input already opened (prompts/images from the command line); else open `input_uri`."""
    if source is None:
        source = open_input(input_uri, storage_options_for(input_uri, storage_options))
    base = preset_base(source, overrides)
    issues = source.validate(overrides, base=base)
    if issues:
        raise InputError(issues)
    return source, source.settings(overrides, base=base)


def families_of(source: InputSource) -> set[str]:
    """Which base families the videos need: image given -> i2v, else t2v (one streaming pass)."""
    families: set[str] = set()
    for request, _ in source.iter_requests():
        families.add("i2v" if request.image else "t2v")
        if len(families) == 2:
            break
    return families


def preflight_weights(settings: RunSettings, families: set[str] | None = None) -> dict:
    """Resolve every weight the run needs (raises MissingWeightsError listing all missing); say if weights are random."""
    preset = PRESETS[settings.preset]
    if preset.weights == "shipped":  # trained here, inside the package (the toy preset)
        from stt2v_ray.models.toy.toy import shipped_weights

        return {"mode": "shipped", "real_output": True, "resolved": shipped_weights(settings.enhance.enabled)}
    if settings.weights.mode == "random" or not preset.sources:
        if preset.sources:
            print(f"WARNING: weights.mode=random: preset {preset.name!r} runs with RANDOM weights; "
                  "the videos are for profiling only, not real output", file=sys.stderr)
        return {"mode": "random", "real_output": False, "resolved": {}}
    from stt2v_ray.models.blocks.weights import components_for, resolve_weights

    needed = components_for(preset, families or {"t2v", "i2v"}, settings.enhance.enabled,
                            settings.interpolate.factor > 1)
    found = resolve_weights(preset, settings.weights.paths, needed)
    return {"mode": "pretrained", "real_output": True, "resolved": {k: str(v.path) for k, v in found.items()}}


def make_executor(settings: RunSettings):
    """Executors by name; the Ray one is imported only when asked for."""
    if settings.executor == "local":
        from stt2v_ray.pipeline.local import LocalExecutor

        return LocalExecutor(settings)
    if settings.executor == "ray":
        try:
            from stt2v_ray.runtime.executor import RayExecutor
        except ImportError as exc:  # pragma: no cover - ray is a dependency, but be clear if it is missing
            raise RuntimeError(f"executor=ray needs Ray: pip install 'ray[default]' ({exc})") from exc
        return RayExecutor(settings)
    raise ValueError(f"unknown executor {settings.executor!r}")



def render(input_uri: str, output_uri: str, overrides: list[str] | None = None,
           storage_options: dict | None = None, progress: Progress | None = None,
           source: InputSource | None = None) -> RunSummary:
    overrides = list(overrides or [])
    source, settings = load_and_validate(input_uri, overrides, storage_options, source)
    families = families_of(source) if PRESETS[settings.preset].sources else None
    weights_note = preflight_weights(settings, families)  # MissingWeightsError before anything renders
    out_options = storage_options_for(output_uri, storage_options)
    progress = progress or Progress(total_videos=source.count())
    timeline, results = Timeline(), ResultsTable()
    started = time.time()
    ok = failed = 0
    # The workers never see the input: its folder travels as an allowed image prefix (inputs.images).
    executor = make_executor(with_input_roots(settings, source.image_roots()))
    executor.start(out_options)  # raises (nothing written) when the pools cannot be placed
    try:
        for row, extra in executor.run(source.iter_requests(), output_uri, out_options, timeline, progress):
            results.add(row, extra)
            ok += row["status"] == "ok"
            failed += row["status"] != "ok"
    finally:
        executor.close()
        ended = time.time()
        results.write(join_uri(output_uri, "results.parquet"), out_options)
        timeline.write(join_uri(output_uri, "timeline.parquet"), out_options)
        write_run_json(join_uri(output_uri, "run.json"), {
            "input": redact_uri(input_uri),
            "output": redact_uri(output_uri),
            "settings": settings.model_dump(mode="json"),
            "overrides": [redact_text(o) for o in overrides],
            "storage_options": redact(storage_options or {}),
            "versions": package_versions(),
            "started": _iso(started),
            "ended": _iso(ended),
            "seconds": round(ended - started, 3),
            "videos": {"ok": ok, "failed": failed},
            "weights": weights_note,
        }, out_options)
    return RunSummary(output_uri, ok + failed, ok, failed, ended - started)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()
