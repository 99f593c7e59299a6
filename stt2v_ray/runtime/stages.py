"""One video's enhancement and output on its actors: the driver side of the stage protocol.

The driver passes object refs only. Every stream has backpressure: the base and enhancer
generators at most `ray.max_chunks_in_flight` pieces ahead of the driver, the enhancer's inbox
bounded, interpolation and writing at most that many pushes in flight (`Sink`). So the
object store holds a constant number of pieces per video, whatever its length.
"""
from __future__ import annotations

import collections
import threading

import ray

from stt2v_ray.pipeline.shard import neighbour_borders
from stt2v_ray.plan.chunks import split_segments
from stt2v_ray.runtime.faults import StageTimeout


class Sink:
    """Frames in order to the interpolation actor, then the writer; a bounded number in flight."""

    def __init__(self, attempt, interp, writer, vid, max_in_flight, vp):
        self.attempt, self.interp, self.writer, self.vid, self.vp = attempt, interp, writer, vid, vp
        self.max = max(1, max_in_flight)
        self.pending: collections.deque = collections.deque()

    def put(self, frames_ref) -> None:
        self.vp.unit("frames out", f"piece {len(self.pending)}")
        out = self.attempt.track(self.interp.push_frames.remote(self.vid, frames_ref))
        self.pending.append(self.attempt.track(self.writer.write_frames.remote(self.vid, out)))
        while len(self.pending) > self.max:
            self.attempt.get(self.pending.popleft())

    def close(self) -> dict:
        tail = self.attempt.track(self.interp.close_video.remote(self.vid))
        self.pending.append(self.writer.write_frames.remote(self.vid, tail))
        self.attempt.get(list(self.pending))
        return self.attempt.get(self.writer.close_video.remote(self.vid))


def streaming_opts(max_in_flight: int) -> dict:
    """A streaming generator at most `max_in_flight` unconsumed pieces ahead of its consumer."""
    return {"num_returns": "streaming", "_generator_backpressure_num_objects": max(1, max_in_flight)}


def enhance_streaming(attempt, actor, request, base_hw, pieces, sink, release_base, max_in_flight: int) -> None:
    """One shard: the actor runs the wavefront on base pieces as they are fed (bounded inbox)."""
    vid = request.id
    attempt.get(actor.open_stream.remote(request, base_hw, max_in_flight))
    out = attempt.track(actor.enhance_stream.options(**streaming_opts(max_in_flight)).remote(vid))
    errors: list = []

    def feed():
        try:
            for _, _, ref in pieces:
                attempt.get(actor.feed_chunk.remote(vid, ref))  # blocks while the inbox is full
        except Exception as exc:  # surfaces through the enhancer's stream too
            errors.append(exc)
        finally:
            # The end marker, also after an error, so the enhancer's stream ends instead of waiting.
            try:
                ray.get(actor.feed_chunk.remote(vid, None), timeout=attempt.timeout)
            except Exception:  # the actor is gone or wedged: the stream's own wait reports it
                pass
            if not errors:  # after an error the base may still be busy: it is freed after the cancel
                release_base()

    feeder = threading.Thread(target=feed, name=f"feed-{vid}", daemon=True)
    feeder.start()
    for ref in attempt.iterate(out, f"{vid}: enhancer stream"):
        sink.put(ref)
        sink.vp.reach("enhance", attempt.get(actor.enhance_count.remote(vid)))  # chunk x step units so far
    sink.vp.reach("enhance", attempt.get(actor.enhance_count.remote(vid)))
    feeder.join(timeout=attempt.timeout)
    if errors:
        raise errors[0]
    if feeder.is_alive():
        raise StageTimeout(f"{vid}: feeding the enhancer took over {attempt.timeout:g}s")


def enhance_sharded(attempt, actors, request, base_hw, num_chunks: int, pieces, sink, release_base,
                    max_in_flight: int) -> None:
    """S shards, one segment each, started as soon as their own base frames exist.

    Step i of shard j is submitted as soon as its inputs can exist: step 0 once every base piece
    it needs has been fed (the feed refs are its arguments, so Ray runs it after them), step i > 0
    once both neighbours' step i-1 is submitted (their border refs are its arguments). The steps
    thus run as a wavefront over the shards behind the base stage, not after it.
    """
    vid = request.id
    segments = split_segments(num_chunks, len(actors))
    actors = actors[: len(segments)]
    ranges = attempt.get([a.open_segment.remote(request, base_hw, k0, k1)
                          for a, (k0, k1) in zip(actors, segments, strict=True)])
    n_steps = ranges[0][2]
    missing = [f1 - f0 + len(extra) for f0, f1, _, extra in ranges]  # base frames each shard still waits for
    fed: list[list] = [[] for _ in actors]
    steps: list[list] = [[] for _ in actors]  # shard -> (head, tail) border refs of each step submitted

    def advance() -> None:
        moved = True
        while moved:
            moved = False
            for j, actor in enumerate(actors):
                i = len(steps[j])
                if i >= n_steps:
                    continue
                if i == 0:
                    if missing[j] > 0:
                        continue
                    args = (None, None, *fed[j])
                    fed[j] = []  # the step holds them now: the driver's refs stay bounded with the length
                else:
                    if (j > 0 and len(steps[j - 1]) < i) or (j + 1 < len(actors) and len(steps[j + 1]) < i):
                        continue
                    args = neighbour_borders([s[i - 1] if len(s) >= i else (None, None) for s in steps], j)
                step = tuple(attempt.track(actor.enhance_step.remote(vid, i, *args)))
                steps[j].append(step)
                n = segments[j][1] - segments[j][0]  # progress: chunk x step units as each step ends
                step[0].future().add_done_callback(
                    lambda f, n=n, i=i: f.cancelled() or f.exception() or sink.vp.unit("enhance", f"step {i}", n))
                moved = True

    for start, n, ref in pieces:  # each base piece to the shards whose frames it covers (refs only)
        for j, (a, (f0, f1, _, extra)) in enumerate(zip(actors, ranges, strict=True)):
            inside = max(0, min(start + n, f1) - max(start, f0)) + sum(start <= f < start + n for f in extra)
            if inside:
                fed[j].append(attempt.track(a.feed_segment.remote(vid, start, ref)))
                missing[j] -= inside
                if len(fed[j]) > 2 * max_in_flight:  # finished feeds need no ordering: keep the refs bounded
                    fed[j] = _unfinished(attempt, fed[j])
        advance()
    release_base()
    missing = [0] * len(actors)  # whatever is still missing, step 0 itself reports it
    advance()
    # A failing step fails its shard's later steps (EnhanceWorker) and, through the borders, its
    # neighbours': the finish streams raise.
    last = [s[-1] for s in steps]
    outs = [attempt.track(a.enhanced_segment.options(**streaming_opts(max_in_flight)).remote(vid, *neighbour_borders(last, j)))
            for j, a in enumerate(actors)]
    for j, gen in enumerate(outs):  # segments in order; later ones wait (backpressure) while earlier ones drain
        for ref in attempt.iterate(gen, f"{vid}: enhancer shard {j}"):
            sink.put(ref)


def _unfinished(attempt, refs: list) -> list:
    """The refs whose tasks still run; a finished one that failed raises here (its error, at once)."""
    done, pending = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
    attempt.get(done)
    return pending
