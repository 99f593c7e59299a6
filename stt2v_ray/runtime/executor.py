"""The Ray executor: stage actor pools that stream chunks between them.

Per video (one driver thread each, at most `max_videos_in_flight` at once):
1. A base actor (held exclusively) streams its chunks as a Ray streaming generator,
   at most `max_chunks_in_flight` ahead of the consumer; it is released as soon as its
   last chunk is made, so the next video's base generation overlaps this enhancement.
2. An enhancer gang (S actors in one placement group, handed out whole):
   S = 1: the actor runs the wavefront on chunks as they are fed (bounded inbox);
   S > 1: each shard owns a segment; one `step` call per shard per step carries only the
   neighbours' border pieces; `finish` streams the segment's final frames.
3. Interpolation and writing actors (shared; per-video state) get the frames in order;
   the writer pipes them to ffmpeg and places the MP4 atomically.
The driver passes object refs between actors and never fetches frames itself.

Faults (runtime/faults.py): every wait is bounded by retry.stage_timeout_s; a video whose
actor, shard or node died is cancelled (ray.cancel of all its refs), its actors are checked
and go back to their pools, and it is rendered again from chunk 0 (the draws are keyed by
seed and index, so the frames are the same), up to retry.max_attempts times.
"""
from __future__ import annotations

import collections
import itertools
import os
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import ray
from ray.util.placement_group import remove_placement_group

from stt2v_ray import logs
from stt2v_ray.config import RunSettings
from stt2v_ray.errors import ExecutorStartError
from stt2v_ray.pipeline.local import base_row, stage_seconds, video_uri
from stt2v_ray.pipeline.video import frame_budget, progress_totals
from stt2v_ray.plan.chunks import base_plan, split_segments
from stt2v_ray.records import work_uri
from stt2v_ray.runtime.admission import admission_order, auto_shards
from stt2v_ray.runtime.cluster import announce_dashboard, default_num_cpus, local_init_kwargs
from stt2v_ray.runtime.faults import Attempt, retryable
from stt2v_ray.runtime.metrics import RunMetrics
from stt2v_ray.runtime.pools import Pool, make_actor, make_gangs, needed_resources, ping, pool_bundles
from stt2v_ray.runtime.stages import Sink, enhance_sharded, enhance_streaming, streaming_opts
from stt2v_ray.video.encode import remove_stale_parts

log = logs.logger("runtime")


class RayExecutor:
    name = "ray"

    def __init__(self, settings: RunSettings, place_timeout: float = 120.0):
        self.settings = settings
        self.place_timeout = place_timeout
        self._owns_ray = False
        self._actors: list = []
        self._gangs: list = []
        self._started = False
        self.events: list[dict] = []  # retries and pool shrinks, in order (for run.json)
        self.pids: dict[str, int] = {}  # actor name -> pid at start (tests kill them by pid)
        self._events_lock = threading.Lock()
        self._actor_logs: dict[str, list[str]] = {}  # video id -> the actors' log lines, until its log is written

    def _event(self, event: dict) -> None:
        with self._events_lock:
            self.events.append(event)

    def pool_report(self) -> dict:
        """Each pool's size, healthy actors and dropped ones; the retries made (for run.json)."""
        pools = [p for p in (getattr(self, n, None) for n in ("base_pool", "gang_pool", "interp_pool", "write_pool")) if p]
        with self._events_lock:
            retries = sum(e["event"] == "retry" for e in self.events)
        return {"pools": {p.stage: p.report() for p in pools}, "retries": retries}

    # ------------------------------------------------------------------ lifecycle
    def start(self, storage_options) -> None:
        """Join or start Ray, check the pools fit, create every actor and gang."""
        try:
            self._start(storage_options)
        except Exception:
            self.close()
            raise

    def _start(self, storage_options) -> None:
        s = self.settings.ray
        if not ray.is_initialized():
            address = s.address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=True)
            else:
                # The embedded default: a local cluster of its own (address="local": never attach to a
                # cluster someone else started here), sized for the pools.
                import torch

                need = needed_resources(self.settings)
                announce_dashboard(ray.init(**local_init_kwargs(
                    self.settings, default_num_cpus(need.get("CPU", 0)), torch.cuda.device_count())))
                self._owns_ray = True
        self._check_resources()
        # Nodes an autoscaler adds still have to start the actors: wait as long for them.
        self.place_timeout = max(self.place_timeout, s.start_timeout_s)
        so, tag = storage_options, uuid.uuid4().hex[:8]  # tag: this run's actor names (stt2v-<tag>-base-0)
        self.metrics = RunMetrics()
        self._logs = logs.install(stderr_level=40)  # the driver's lines per video; its terminal is for progress
        names = {"base": [f"base-{i}" for i in range(s.base.actors)],
                 "interpolate": [f"interpolate-{i}" for i in range(s.interpolate.actors)],
                 "write": [f"write-{i}" for i in range(s.write.actors)]}
        self.bases = [make_actor("base", self.settings, n, so, s.base, tag=tag) for n in names["base"]]
        self.interps = [make_actor("interpolate", self.settings, n, so, s.interpolate, tag=tag) for n in names["interpolate"]]
        self.writers = [make_actor("write", self.settings, n, so, s.write, tag=tag) for n in names["write"]]
        self._actors += self.bases + self.interps + self.writers
        all_names = names["base"] + names["interpolate"] + names["write"]
        if self.settings.enhance.enabled:
            self._gangs = make_gangs(self.settings, so, self.place_timeout, tag)
            self._actors += [a for g in self._gangs for a in g.actors]
            all_names += [f"{g.name}s{j}" for g in self._gangs for j in range(len(g.actors))]
        # All constructed (models load lazily, once); bounded like every other wait.
        self.pids = dict(zip(all_names, ray.get([a.pid.remote() for a in self._actors], timeout=self.place_timeout),
                             strict=True))
        t, ev = self.settings.retry.ping_timeout_s, self._event
        self.base_pool = Pool("base", self.bases, names["base"], t, ev)
        self.gang_pool = Pool("enhance", self._gangs, [g.name for g in self._gangs], t, ev)
        self.interp_pool = Pool("interpolate", self.interps, names["interpolate"], t, ev, exclusive=False)
        self.write_pool = Pool("write", self.writers, names["write"], t, ev, exclusive=False)
        self.base_pool.on_wait = lambda d: self.metrics.queue("base_wait", d)
        self.gang_pool.on_wait = lambda d: self.metrics.queue("enhance_wait", d)
        self._started = True

    def _check_resources(self) -> None:
        """Refuse when the pools cannot fit; with ray.start_timeout_s > 0, first ask the autoscaler for
        them (one bundle per actor) and wait that long for the nodes to join."""
        need, wait_s = needed_resources(self.settings), self.settings.ray.start_timeout_s

        def short() -> list[tuple[str, float, float]]:
            have = ray.cluster_resources()
            return [(k, v, have.get(k, 0)) for k, v in need.items() if have.get(k, 0) + 1e-9 < v]

        missing = short()
        if missing and wait_s > 0:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=pool_bundles(self.settings))  # persists until close() clears it
            self._requested = True
            print(f"waiting up to {wait_s:g}s for the cluster to scale up: " + ", ".join(
                f"{k} {have:g}/{v:g}" for k, v, have in missing), file=sys.stderr, flush=True)
            deadline = time.monotonic() + wait_s
            while missing and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                missing = short()
        if missing:
            key, amount, have = missing[0]
            waited = f" after waiting {wait_s:g}s (ray.start_timeout_s)" if wait_s > 0 else ""
            raise ExecutorStartError(
                f"the ray pools need {amount:g} {key} in total but the cluster has {have:g}{waited}. "
                "Lower ray.*.actors / num_gpus / num_cpus, add nodes (check `ray status`), or on an autoscaling "
                "cluster set ray.start_timeout_s."
            )

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        for actor in self._actors:  # wait until each is really gone, so its resources are free again
            try:
                ray.get(actor.pid.remote(), timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
        for gang in self._gangs:
            remove_placement_group(gang.pg)
        self._actors, self._gangs = [], []
        if getattr(self, "_requested", False):  # let the autoscaler scale down again
            from ray.autoscaler.sdk import request_resources

            _quiet(lambda: request_resources(bundles=[]))
            self._requested = False
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    # ------------------------------------------------------------------ run
    def run(self, requests, output_uri, storage_options, timeline, progress, stop: threading.Event | None = None):
        """Results as videos end (completion order: a long video never holds back the next admission)."""
        if not self._started:
            self.start(storage_options)
        s = self.settings.ray
        self._output, self._out_options = output_uri, storage_options
        limit = s.max_videos_in_flight or (s.base.actors + max(1, len(self._gangs)))
        pending: set = set()
        counter = iter(range(1 << 62))
        requests = admission_order(requests, s.admission, s.admission_window, stop)
        # Not a `with`: on an interrupt the driver closes the actors first, which ends the
        # in-flight threads; waiting for them here would wait for whole videos.
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="video")
        try:
            while True:
                # A slot first, then the next request: a driver told to stop admits nothing more.
                while len(pending) >= limit:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:  # as each video ends, so its record is committed at once
                        yield future.result()
                request = next(requests, None)
                if request is None:
                    break
                pending.add(pool.submit(self._video, next(counter), *request, output_uri, timeline, progress))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            pool.shutdown(wait=not pending, cancel_futures=True)

    def _video(self, index, request, extra, output_uri, timeline, progress):
        """_render_video with the video's metrics, its id on every log record and <output>/logs/<id>.log."""
        self.metrics.video_started()
        row = None
        try:
            with logs.video(request.id):
                row, extra = self._render_video(index, request, extra, output_uri, timeline, progress)
        finally:
            self.metrics.video_ended(row is not None and row["status"] == "ok")
            self._write_log(request.id, output_uri)
        return row, extra

    def _write_log(self, vid: str, output_uri: str) -> None:
        lines = self._logs.take(vid) + self._actor_logs.pop(vid, [])
        try:
            logs.write_video_log(output_uri, vid, lines, self._out_options)
        except Exception as exc:  # a log that cannot be written never fails the video
            print(f"WARNING: {vid}: could not write its log: {exc}", file=sys.stderr, flush=True)

    def _render_video(self, index, request, extra, output_uri, timeline, progress):
        """Render one video; an attempt lost to a dead actor, shard or node is made again from scratch."""
        log.info("ray: %s started (%s, %d frames, seed %d)", request.id, "i2v" if request.image else "t2v",
                 request.num_frames, request.seed)
        row = base_row(request, self.settings)
        vp = progress.video(request.id, f"{'i2v' if request.image else 't2v'}, {request.num_frames} frames, "
                                        f"seed {request.seed} (ray)", progress_totals(request, self.settings))
        start = time.monotonic()
        uri = video_uri(output_uri, request.id)
        seconds: dict[str, float] = collections.defaultdict(float)
        r = self.settings.retry
        for number in range(1, r.max_attempts + 1):
            attempt, row["attempts"], error, lost = Attempt(number, r.stage_timeout_s), number, None, []
            try:
                row.update(self._render(index, request, uri, attempt, vp))
            except Exception as exc:  # a failed video never stops the batch
                error, retry = f"{type(exc).__name__}: {_short(exc)}", retryable(exc)
                row["error_detail"] = logs.error_detail(exc)
                log.warning("ray: %s attempt %d failed: %s", request.id, number, error)
                log.debug("ray: %s attempt %d: %s", request.id, number, row["error_detail"])  # into logs/<id>.log only
            finally:
                lost = self._end_attempt(attempt, request.id, error is not None, timeline, seconds)
            if error is None:
                row.update(status="ok", video_uri=uri, error=None, error_detail=None)
                log.info("ray: %s ok (%s)", request.id, uri)
                vp.finish("ok", uri)
                break
            if lost:  # an actor of this attempt died or restarted: whatever it raised, the cause is the loss
                error, retry = f"{error} (lost: {', '.join(lost)})", True
            row["error"] = error
            if not retry or number == r.max_attempts:
                remove_stale_parts(uri)  # what a killed writer left beside the target
                vp.finish("FAILED", error)
                break
            self._event({"event": "retry", "video": request.id, "attempt": number + 1, "error": error,
                         "lost": lost, "time": time.time()})
            vp.parent._print(f"    {request.id}: attempt {number} failed ({error}); retrying ({number + 1}/{r.max_attempts})")
        row.update(stage_seconds(seconds))
        row["total_seconds"] = round(time.monotonic() - start, 4)
        return row, extra

    def _end_attempt(self, attempt: Attempt, vid: str, failed: bool, timeline, seconds) -> list[str]:
        """Cancel a failed attempt's work, then free its actors; collect timelines -> names of actors lost."""
        t = self.settings.retry.stage_timeout_s
        lost: list[str] = []
        actors = [(a, pid) for a, pid in attempt.actors if all(a is not b for b in attempt.early)]
        if failed:
            attempt.cancel()  # base generator, enhancer steps/streams, pending pushes and writes
            for actor, _ in actors:  # wakes the video's tasks that wait inside an actor (steps, streams)
                _quiet(lambda a=actor: ray.get(a.discard.remote(vid), timeout=t))
            if not attempt.settle():
                print(f"WARNING: {vid}: some cancelled work still ran after {t:g}s", file=sys.stderr, flush=True)
            for actor, pid in actors:  # the pids they had when handed out: a new pid is a restart
                _, now = ping(actor, self.settings.retry.ping_timeout_s)
                if now != pid:
                    lost.append(self._name(actor))
        attempt.release()  # only now: base and gang go back to their pools
        for actor, _ in {id(a): (a, p) for a, p in attempt.actors}.values():
            for rec in _quiet(lambda a=actor: ray.get(a.drain.remote(vid), timeout=t)) or []:
                timeline.record(*rec)
                seconds[rec[1]] += rec[6] if len(rec) > 6 else rec[5] - rec[4]
            lines = _quiet(lambda a=actor: ray.get(a.drain_logs.remote(vid), timeout=t)) or []
            self._actor_logs.setdefault(vid, []).extend(lines)
        return lost

    def _name(self, actor) -> str:
        for name, a in zip(self.pids, self._actors, strict=True):
            if a is actor:
                return name
        return "?"

    def _render(self, index, request, uri, attempt: Attempt, vp) -> dict:
        settings, s = self.settings, self.settings.ray
        vid = request.id
        budget = frame_budget(request.num_frames, settings)
        # The least-loaded CPU actors (shared), held until the attempt ends.
        (interp, ipids), (writer, wpids) = self.interp_pool.pick(), self.write_pool.pick()
        attempt.hold("interp", self.interp_pool, interp)
        attempt.hold("write", self.write_pool, writer)
        attempt.use([interp, writer], ipids + wpids)
        enhance = budget.enhance is not None
        turn = _Turn(self.gang_pool if enhance else None, s.base_lookahead)  # a base only when a gang can follow
        try:
            base, bpids = self.base_pool.acquire()
            attempt.hold("base", self.base_pool, base)
            attempt.use([base], bpids)
            base_hw = attempt.get(base.base_size.remote(request))
            chunks = attempt.track(base.base_chunks.options(**streaming_opts(s.max_chunks_in_flight)).remote(
                request, work_uri(self._output, request, settings)))
            family = getattr(settings, "i2v" if request.image else "t2v")
            plan = base_plan(budget.generated_frames, family.chunk_frames, family.cond_frames)
            pieces = _positioned(_counted(attempt.iterate(chunks, f"{vid}: base chunks"), vp, "base", "chunk"),
                                 plan, budget.generated_frames)
            out_hw, gang = base_hw, None
            if enhance:
                # The gang no earlier than its first chunk can start: when the base frames of enhancer
                # chunk 0 (S = 1) or of segment 0 (S > 1) exist, or max_chunks_in_flight base pieces wait
                # for it (then backpressure pauses the base); the base runs on meanwhile.
                pieces = _prefetch(pieces, self._first_frames(budget.enhance), s.max_chunks_in_flight)
                gang = self._take_gang(attempt, budget.enhance.num_chunks)
                turn.done()
                out_hw = attempt.get(gang[0].output_size.remote(base_hw))
        finally:
            turn.done()
        fps = request.fps or settings.encode.default_fps
        attempt.get([interp.open_video.remote(vid),
                     writer.open_video.remote(vid, uri, out_hw[1], out_hw[0], fps, request.num_frames)])
        sink = Sink(attempt, interp, writer, vid, s.max_chunks_in_flight, vp)

        def release_base():
            attempt.release("base", early=True)

        if gang is None:
            for _, _, ref in pieces:
                sink.put(ref)
            release_base()
        elif len(gang) == 1:
            enhance_streaming(attempt, gang[0], request, base_hw, pieces, sink, release_base, s.max_chunks_in_flight)
        else:
            enhance_sharded(attempt, gang, request, base_hw, budget.enhance.num_chunks, pieces, sink, release_base,
                            s.max_chunks_in_flight)
        return sink.close()

    def _first_frames(self, plan) -> int:
        """Base frames the first enhancer shard needs before it can start."""
        shards = self.settings.ray.enhance_shards
        # One shard (or auto, whose count is not known yet): the wavefront starts with chunk 0.
        _, k1 = (0, 1) if shards in (1, "auto") else split_segments(plan.num_chunks, shards)[0]
        return plan.chunks[k1 - 1][1]

    def _take_gang(self, attempt, num_chunks: int) -> list:
        """The video's enhancer actors: a whole gang, or (auto) as many single-actor gangs as auto_shards picks."""
        s = self.settings.ray
        if s.enhance_shards != "auto":
            gang, pids = self.gang_pool.acquire()
            attempt.hold("gang", self.gang_pool, gang)
            attempt.use(gang.actors, pids)
            return list(gang.actors)
        gangs, pids = self.gang_pool.acquire_many(
            lambda free, waiting: auto_shards(num_chunks, free, waiting, s.auto_min_chunks))
        for k, g in enumerate(gangs):
            attempt.hold(f"gang{k}", self.gang_pool, g)
        actors = [a for g in gangs for a in g.actors]
        attempt.use(actors, pids)
        return actors


class _Turn:
    """A video's turn between Pool.ahead() and Pool.taken() (see Pool.ahead: why no deadlock); ends once."""

    def __init__(self, gang_pool, lookahead: int):
        self.pool = gang_pool
        if gang_pool is not None:
            gang_pool.ahead(lookahead)

    def done(self) -> None:
        if self.pool is not None:
            self.pool, pool = None, self.pool
            pool.taken()


def _positioned(refs, plan, total: int):
    """Base piece refs -> (first video frame, frames, ref)."""
    start = 0
    for k, ref in enumerate(refs):
        n = min(plan.chunk(k).num_kept, total - start)
        yield start, n, ref
        start += n


def _prefetch(pieces, frames: int, max_pieces: int):
    """Take pieces until they cover `frames` base frames, or `max_pieces` are held (the object
    store's bound: a long video's first segment would otherwise wait there whole for its gang),
    or the stream ends -> all pieces again, in order."""
    head, covered = collections.deque(), 0
    for piece in pieces:
        head.append(piece)
        covered += piece[1]
        if covered >= frames or len(head) >= max_pieces:
            break

    def drain():  # popped, not iterated: a list would keep every piece's ref alive until the video ends
        while head:
            yield head.popleft()

    return itertools.chain(drain(), pieces)


def _counted(refs, vp, stage: str, unit: str):
    """Pass refs through, counting them as progress units as they arrive."""
    for k, ref in enumerate(refs):
        vp.unit(stage, f"{unit} {k}")
        yield ref


def _short(exc: Exception) -> str:
    """A task error's original exception, not Ray's multi-line wrapper."""
    text = str(exc)
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None:
            return f"{type(cause).__name__}: {cause}"
        text = text.strip().splitlines()[-1] if text.strip() else text
    return text


def _quiet(fn):
    try:
        return fn()
    except Exception:
        return None
