"""Scheduling policy without a cluster: admission order, auto shards, least-loaded picks, base turns."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from stt2v_ray.runtime import pools
from stt2v_ray.runtime.admission import admission_order, auto_shards
from stt2v_ray.runtime.executor import _prefetch


def reqs(*frames: int) -> list[tuple]:
    return [(SimpleNamespace(id=f"v{i}", num_frames=n), {"row": i}) for i, n in enumerate(frames)]


def ids(items) -> list[str]:
    return [r.id for r, _ in items]


def test_fifo_keeps_input_order():
    assert ids(admission_order(reqs(5, 17, 9), "fifo", 4)) == ["v0", "v1", "v2"]


def test_longest_first_within_the_window():
    items = reqs(5, 17, 9, 13, 3, 11)
    # Window 2: the longer of the two requests read so far each time.
    assert ids(admission_order(items, "longest-first", 2)) == ["v1", "v2", "v3", "v0", "v5", "v4"]
    # A window as large as the input: strictly by length, ties in input order.
    assert ids(admission_order(reqs(5, 9, 9, 2), "longest-first", 10)) == ["v1", "v2", "v0", "v3"]
    # Extras travel with their request.
    assert [e["row"] for _, e in admission_order(items, "longest-first", 100)] == [1, 3, 5, 2, 0, 4]


def test_longest_first_reads_only_the_window_ahead():
    read = []

    def stream():
        for item in reqs(*range(1, 101)):
            read.append(item[0].id)
            yield item

    order = admission_order(stream(), "longest-first", 3)
    assert next(order)[0].id == "v2" and len(read) == 3
    assert next(order)[0].id == "v3" and len(read) == 4


def test_longest_first_stops_admitting_on_stop():
    stop = threading.Event()
    order = admission_order(reqs(1, 2, 3, 4), "longest-first", 10)
    stopped = admission_order(reqs(1, 2, 3, 4), "longest-first", 10, stop)
    assert len(list(order)) == 4
    first = next(stopped)
    stop.set()
    assert first[0].id == "v3" and list(stopped) == []


def test_auto_shards_policy():
    assert auto_shards(num_chunks=40, free=8, waiting=1, min_chunks=2) == 8  # a lone long video takes them all
    assert auto_shards(num_chunks=40, free=8, waiting=8, min_chunks=2) == 1  # a full batch: one each
    assert auto_shards(num_chunks=40, free=8, waiting=3, min_chunks=2) == 2
    assert auto_shards(num_chunks=5, free=8, waiting=1, min_chunks=2) == 2  # a short video: segments of >= 2 chunks
    assert auto_shards(num_chunks=1, free=8, waiting=1, min_chunks=2) == 1


def test_prefetch_takes_just_enough_and_keeps_order():
    pulled = []

    def pieces():
        for k in range(6):
            pulled.append(k)
            yield 4 * k, 4, f"ref{k}"

    out = _prefetch(pieces(), 10, max_pieces=4)
    assert pulled == [0, 1, 2]  # 12 frames >= 10
    assert [r for _, _, r in out] == [f"ref{k}" for k in range(6)]
    pulled.clear()
    out = _prefetch(pieces(), 100, max_pieces=2)  # the bound on pieces held comes first
    assert pulled == [0, 1]
    assert [r for _, _, r in out] == [f"ref{k}" for k in range(6)]


@pytest.fixture
def no_ping(monkeypatch):
    """Pools without a cluster: every item answers its ping."""
    monkeypatch.setattr(pools, "ping", lambda actor, timeout: (None, id(actor)))


def pool_of(n: int, exclusive: bool) -> pools.Pool:
    items = [object() for _ in range(n)]
    return pools.Pool("t", items, [f"a{i}" for i in range(n)], 1.0, lambda e: None, exclusive=exclusive)


def test_shared_pool_picks_least_loaded(no_ping):
    pool = pool_of(2, exclusive=False)
    a, _ = pool.pick()
    b, _ = pool.pick()
    assert a is not b  # the second video goes to the idle actor
    c, _ = pool.pick()
    pool.release(b)  # b's video ended: b now serves none, a serves two
    d, _ = pool.pick()
    assert d is b and c is a


def test_acquire_many_is_all_or_nothing(no_ping):
    pool = pool_of(4, exclusive=True)
    got, _ = pool.acquire_many(lambda free, waiting: 3)
    assert len(got) == 3 and pool.free_count() == 1
    more, _ = pool.acquire_many(lambda free, waiting: 3)  # only one is free: it gets that one
    assert len(more) == 1 and pool.free_count() == 0
    for item in got + more:
        pool.release(item)
    assert pool.free_count() == 4


def test_base_turns_wait_for_a_gang(no_ping):
    """With every gang busy, only `lookahead` videos may take a base; a freed gang lets the next one in."""
    gangs = pool_of(1, exclusive=True)
    held, _ = gangs.acquire()  # the only gang is busy
    gangs.ahead(1)  # one video may run its base stage ahead
    entered = threading.Event()

    def second():
        gangs.ahead(1)
        entered.set()

    t = threading.Thread(target=second, daemon=True)
    t.start()
    assert not entered.wait(1.5)  # blocked: no gang free, one video already ahead
    gangs.release(held)  # the gang frees: a second video may now take a base
    assert entered.wait(5)
    t.join(5)


class _Ref(tuple):
    """A fake object ref: (shard, method, step); its future never completes (no progress callbacks run)."""

    def future(self):
        import concurrent.futures

        return concurrent.futures.Future()


class _Method:
    """One named actor method (as on EnhancerShard), logged under the worker method it runs."""

    def __init__(self, log, name, method, returns=1):
        self.log, self.name, self.method, self.returns = log, name, method, returns

    def options(self, num_returns=1, **_):
        return _Method(self.log, self.name, self.method, num_returns)

    def remote(self, *args):
        method = self.method
        self.log.append((self.name, method, args))
        ref = _Ref((self.name, method, args[1] if method == "step" else None))
        return [ref] * self.returns if self.returns == 2 else ref


class _Shard:
    def __init__(self, log, name):
        self.open_segment = _Method(log, name, "open_segment")
        self.feed_segment = _Method(log, name, "feed_segment")
        self.enhance_step = _Method(log, name, "step", returns=2)  # @ray.method(num_returns=2) on the actor
        self.enhanced_segment = _Method(log, name, "finish")


class _Attempt:
    timeout = 1.0

    def __init__(self, ranges):
        self.ranges = ranges

    def track(self, ref):
        return ref

    def get(self, refs):
        return self.ranges if isinstance(refs, list) and refs and refs[0][1] == "open_segment" else None

    def iterate(self, gen, what):
        return iter(())


def test_sharded_steps_are_submitted_as_a_wavefront_behind_the_base():
    """Three shards of 2 chunks, 3 steps: step 0 of a shard is submitted once its own base pieces are fed
    (before the later ones exist), step i once both neighbours' step i-1 is."""
    from stt2v_ray.runtime.stages import enhance_sharded

    log: list = []
    shards = [_Shard(log, f"s{j}") for j in range(3)]
    ranges = [(0, 10, 3, []), (10, 20, 3, []), (20, 30, 3, [])]  # frames [f0, f1), steps, extra frames
    fed_log = []

    def pieces():
        for k in range(6):  # 5 frames a piece
            fed_log.append(len(log))
            yield 5 * k, 5, f"base{k}"

    released = []
    enhance_sharded(_Attempt(ranges), shards, SimpleNamespace(id="v"), (8, 8), 6, pieces(), None,
                    lambda: released.append(len(log)), 2)
    steps = [(name, args[1]) for name, method, args in log if method == "step"]
    assert sorted(steps) == sorted((f"s{j}", i) for j in range(3) for i in range(3))
    at = {key: n for n, key in enumerate((name, args[1]) for name, method, args in log if method == "step")}
    # Shard 0 steps while the base still makes shard 2's frames: step 0 before piece 4 was even pulled.
    first_step = next(n for n, (_, m, a) in enumerate(log) if m == "step")
    assert first_step < fed_log[4] and released and first_step < released[0]
    for j in range(3):
        for i in range(1, 3):
            for nb in (j - 1, j + 1):
                if 0 <= nb < 3:
                    assert at[(f"s{nb}", i - 1)] < at[(f"s{j}", i)]
    # Step 0 carries the refs of its shard's feeds, so Ray runs it after them.
    s0 = next(args for name, m, args in log if name == "s0" and m == "step" and args[1] == 0)
    assert len(s0) == 2 + 2 + 2  # vid, step, left, right, two feeds
    # Finish streams after every step, with both neighbours' last borders.
    assert [name for name, m, _ in log if m == "finish"] == ["s0", "s1", "s2"]
