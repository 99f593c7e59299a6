"""Which video starts next, and how many enhancer shards it gets (pure policy: no Ray calls).

Admission: `fifo` starts videos in input order; `longest-first` reads up to
`ray.admission_window` requests ahead of the input stream and starts the longest of them
(ties: input order). Long videos then start early and short ones fill the gaps at the end
of the batch, which shortens the makespan's tail. The input stays streamed: never more than
the window is read ahead.
"""
from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterable, Iterator


def admission_order(requests: Iterable[tuple], policy: str, window: int,
                    stop: threading.Event | None = None) -> Iterator[tuple]:
    """(request, extra) pairs in the order they are admitted; none once `stop` is set."""
    if policy == "fifo":
        yield from requests
        return
    if policy != "longest-first":
        raise ValueError(f"unknown admission policy {policy!r}")
    heap: list = []
    order = itertools.count()
    for item in requests:
        heapq.heappush(heap, (-item[0].num_frames, next(order), item))
        if len(heap) >= window:
            if stop is not None and stop.is_set():  # a driver told to stop admits nothing more
                return
            yield heapq.heappop(heap)[2]
    while heap:
        if stop is not None and stop.is_set():
            return
        yield heapq.heappop(heap)[2]


def auto_shards(num_chunks: int, free: int, waiting: int, min_chunks: int) -> int:
    """Shards for one video under `ray.enhance_shards=auto`.

    The free enhancer actors are shared among the videos waiting for them (`waiting`, this one
    included): a lone video takes them all, a full batch gets one each. A video never gets more
    shards than it has groups of `min_chunks` chunks, since a shard of fewer chunks spends most
    of each step waiting for its neighbours' borders.
    """
    by_length = max(1, num_chunks // max(1, min_chunks))
    share = max(1, free // max(1, waiting))
    return max(1, min(by_length, share, free))
