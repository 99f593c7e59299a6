"""A render run: validate the input at the edge, render through an executor, write the tables.

1. Open the input (manifest or Parquet dataset) and resolve the settings: field defaults,
   then the preset's defaults, then the manifest's `settings`, then `--set` overrides.
2. Validate everything (settings and every row) before rendering anything: InputError.
3. Resume: skip the videos whose record (`<output>/records/<id>.json`) says ok for the same
   request and settings digests and whose MP4 exists; refuse an id recorded with other
   digests (OutputClashError) unless `overwrite`.
4. Render the rest through the executor; as each video ends (ok or failed) commit its record.
   SIGINT/SIGTERM: admit no more videos, give those in flight `shutdown.grace_s`, then stop.
5. Assemble results.parquet, timeline.parquet and run.json from the records (streaming), also
   when the run is interrupted, so what was rendered is never lost.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass, field

from stt2v_ray.config import RunSettings
from stt2v_ray.errors import OutputClashError
from stt2v_ray.inputs.errors import InputError
from stt2v_ray.inputs.images import with_input_roots
from stt2v_ray.inputs.source import InputSource, open_input
from stt2v_ray.presets import PRESETS
from stt2v_ray.progress import Progress
from stt2v_ray.records import RecordStore, assemble, batched, request_digest, settings_digest
from stt2v_ray.results import Timeline, package_versions, write_run_json
from stt2v_ray.shutdown import GraceExpired, GracefulStop
from stt2v_ray.storage import filesystem, join_uri, redact, redact_text, redact_uri, storage_options_for

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    output: str
    total: int  # videos of the input
    ok: int  # recorded ok, across runs
    failed: int
    seconds: float
    missing: int = 0  # not rendered yet (interrupted, or their record could not be written)
    skipped: int = 0  # ok in an earlier run, not rendered again
    rendered: int = 0  # ended in this run
    interrupted: str | None = None  # "SIGINT" / "SIGTERM"
    exit_override: int | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        if self.exit_override is not None:
            return self.exit_override
        return 0 if self.failed == 0 and self.missing == 0 else 1


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
           source: InputSource | None = None, overwrite: bool = False) -> RunSummary:
    overrides = list(overrides or [])
    source, settings = load_and_validate(input_uri, overrides, storage_options, source)
    families = families_of(source) if PRESETS[settings.preset].sources else None
    weights_note = preflight_weights(settings, families)  # MissingWeightsError before anything renders
    out_options = storage_options_for(output_uri, storage_options)
    progress = progress or Progress(total_videos=source.count())
    if settings.simulate.enabled:
        progress.prefix = "[SIMULATED] "
        if progress.bar is not None:  # the terminal bar says so too
            progress.bar.set_description("[SIMULATED] videos")
        progress.note(f"simulated models (time_scale {settings.simulate.time_scale:g}): no real video is made")
    store = RecordStore(output_uri, out_options)
    sdigest = settings_digest(settings)
    if store.any():
        _check_or_clear_records(source, store, sdigest, overwrite, output_uri)  # before anything renders
    store.sweep_temps()  # a killed run's half-written MP4s (hidden temp names) never stay visible
    stop = GracefulStop(settings.shutdown.grace_s, lambda name, grace: progress.note(
        f"{name}: no new videos; {grace:g}s for those in flight, then the tables are written"))
    counts = {"rendered": 0, "skipped": 0, "unrecorded": 0}
    timeline = Timeline()
    started, t0 = time.time(), time.monotonic()
    # The workers never see the input: its folder travels as an allowed image prefix (inputs.images).
    executor = make_executor(with_input_roots(settings, source.image_roots()))
    executor.start(out_options)  # raises (nothing written) when the pools cannot be placed
    stop.install()  # after the executor starts: Ray's own handlers must not replace ours
    videos = executor.run(_admitted(source, store, sdigest, overwrite, stop, progress, counts, output_uri, out_options),
                          output_uri, out_options, timeline, progress, stop=stop.stop)
    try:
        for row, extra in videos:
            with stop.critical():
                _commit(store, row, extra, timeline.take(row["id"]), sdigest, counts)
    except GraceExpired:
        progress.note("grace period over: videos still in flight are abandoned (rendered again by the next run)")
    finally:
        with stop.critical(then_raise=False):
            try:
                executor.close()
            finally:
                videos.close()
                progress.close()  # the terminal's bars (no-op for plain lines)
                tables = assemble(source.iter_requests(), source.extra_schema(), store, output_uri)
                store.tidy()
                ended = time.time()
                write_run_json(join_uri(output_uri, "run.json"), {
                    "input": redact_uri(input_uri),
                    "output": redact_uri(output_uri),
                    "settings": settings.model_dump(mode="json"),
                    "settings_digest": sdigest,
                    "overrides": [redact_text(o) for o in overrides],
                    "overwrite": overwrite,
                    "storage_options": redact(storage_options or {}),
                    "versions": package_versions(),
                    "started": _iso(started),
                    "ended": _iso(ended),
                    "seconds": round(time.monotonic() - t0, 3),
                    "videos": tables,  # over the whole input, across runs
                    "this_run": {**counts, "interrupted": _signame(stop)},
                    "weights": weights_note,
                    "executor": _executor_report(executor),
                    **simulation_report(settings),
                }, out_options)
        stop.uninstall()
    return RunSummary(output_uri, source.count(), tables["ok"], tables["failed"], time.monotonic() - t0,
                      missing=tables["missing"], skipped=counts["skipped"], rendered=counts["rendered"],
                      interrupted=_signame(stop), exit_override=stop.exit_code)


def simulation_report(settings: RunSettings) -> dict:
    """run.json's `simulated` flag, and with it the time scale and the cost model the sleeps came from."""
    if not settings.simulate.enabled:
        return {"simulated": False}
    from stt2v_ray.pipeline.simulate import cost_model

    return {"simulated": True, "simulation": {"time_scale": settings.simulate.time_scale, "profile": settings.simulate.profile,
                                              "cost_model": cost_model(settings).to_dict(),
                                              "note": "durations in the tables are compressed: x time_scale = simulated s"}}


def _signame(stop: GracefulStop) -> str | None:
    import signal

    return signal.Signals(stop.signum).name if stop.signum is not None else None


def _check_or_clear_records(source: InputSource, store: RecordStore, sdigest: str, overwrite: bool, output_uri: str
                            ) -> None:
    """One streaming pass over the input and its records: clashes are an error; --overwrite drops the records."""
    clashes, total = [], 0
    for batch in batched(source.iter_requests()):
        records = store.read_many([r.id for r, _ in batch])
        if overwrite:
            store.remove(list(records))
            continue
        for request, _ in batch:
            record = records.get(request.id)
            if record and (record["request_digest"], record["settings_digest"]) != (request_digest(request), sdigest):
                total += 1
                if len(clashes) < 20:
                    which = "request" if record["request_digest"] != request_digest(request) else "settings"
                    clashes.append(f"{request.id!r} ({which} differ)")
    if total:
        raise OutputClashError(output_uri, clashes, total)


def _admitted(source, store, sdigest, overwrite, stop, progress, counts, output_uri, out_options):
    """The requests to render: none once `stop` is set; videos recorded ok (same digests, MP4 there) are skipped."""
    for batch in batched(source.iter_requests(), 64):
        records = {} if overwrite else store.read_many([r.id for r, _ in batch])
        for request, extra in batch:
            if stop.stop.is_set():
                return
            record = records.get(request.id)
            if (record is not None and record["status"] == "ok" and record["settings_digest"] == sdigest
                    and record["request_digest"] == request_digest(request) and _exists(record["row"]["video_uri"], out_options)):
                counts["skipped"] += 1
                progress.skipped(request.id, f"ok in an earlier run ({record['row']['video_uri']})")
                continue
            if overwrite:
                store.remove_work(request.id)  # a fresh render: no saved chunks either
            yield request, extra


def _exists(uri: str | None, options: dict | None) -> bool:
    if not uri:
        return False
    try:
        fs, path = filesystem(uri, options)
        return fs.exists(path)
    except OSError:
        return False


def _commit(store: RecordStore, row: dict, extra: dict, units: list, sdigest: str, counts: dict) -> None:
    """The video's record, right after its MP4; a storage error leaves it unrecorded (the next run renders it)."""
    counts["rendered"] += 1
    try:
        store.commit(row, extra, units, (row["request_digest"], sdigest))
    except Exception as exc:  # noqa: BLE001 - one lost record never stops the batch
        counts["unrecorded"] += 1
        print(f"WARNING: could not record {row['id']} ({type(exc).__name__}: {exc}); the next run renders it again",
              file=sys.stderr)
        return
    if row["status"] == "ok":
        store.remove_work(row["id"])  # failed videos keep theirs: a rerun continues from the last saved chunk


def _executor_report(executor) -> dict | None:
    """The Ray executor's pools (sizes, dropped actors) and its retries; None for the local one."""
    report = getattr(executor, "pool_report", None)
    if report is None:
        return None
    try:
        return {**report(), "events": list(getattr(executor, "events", []))[-100:]}
    except Exception as exc:  # noqa: BLE001 - a report never stops the tables from being written
        return {"error": f"{type(exc).__name__}: {exc}"}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()
