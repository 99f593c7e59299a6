"""Actor pools. Base actors and enhancer gangs are held by one video at a time; a gang's
shards are placed together in one placement group, and a gang is handed out whole, so two
videos can never each hold half of the shards they need (no deadlock).

Every actor restarts (Ray `max_restarts`) and is pinged before it is handed out: a
restarting actor is waited for (up to `retry.ping_timeout_s`); one that stays dead is
dropped, the pool shrinks and says so (`on_event`, a stderr line)."""
from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from stt2v_ray.config import PoolSettings, RunSettings
from stt2v_ray.errors import ExecutorStartError
from stt2v_ray.runtime.actors import ACTORS

WORKERS = {
    "base": "stt2v_ray.pipeline.workers.BaseWorker",
    "enhance": "stt2v_ray.pipeline.workers.EnhanceWorker",
    "interpolate": "stt2v_ray.pipeline.workers.InterpolateWorker",
    "write": "stt2v_ray.pipeline.workers.WriteWorker",
}
# The enhancer's feed() blocks on a bounded inbox while its stream() runs; a third thread answers the
# driver's progress count (enhance_count) without waiting for either.
CONCURRENCY = {"base": 1, "enhance": 3, "interpolate": 1, "write": 1}


class PoolExhausted(RuntimeError):
    """No healthy actor is left in a pool: the video cannot run (not retried)."""


def bundle(pool: PoolSettings) -> dict[str, float]:
    b = {"CPU": pool.num_cpus, "GPU": pool.num_gpus, **pool.resources}
    b = {k: v for k, v in b.items() if v > 0}
    return b or {"CPU": 0.001}  # a bundle may not be empty


def needed_resources(settings: RunSettings) -> dict[str, float]:
    s = settings.ray
    pools = [(s.base, s.base.actors), (s.enhance, s.enhance.actors), (s.interpolate, s.interpolate.actors),
             (s.write, s.write.actors)]
    need: dict[str, float] = collections.defaultdict(float)
    for pool, n in pools:
        need["CPU"] += pool.num_cpus * n
        need["GPU"] += pool.num_gpus * n
        for k, v in pool.resources.items():
            need[k] += v * n
    return {k: v for k, v in need.items() if v > 0}


def pool_bundles(settings: RunSettings) -> list[dict[str, float]]:
    """One resource bundle per actor of every pool (what an autoscaler is asked for)."""
    s = settings.ray
    return [bundle(p) for p in (s.base, s.enhance, s.interpolate, s.write) for _ in range(p.actors)]


def make_actor(stage: str, settings: RunSettings, name: str, storage_options, pool: PoolSettings, strategy=None,
               tag: str = ""):
    """One stage actor; with `tag` it is also a named Ray actor `stt2v-<tag>-<name>` (the dashboard's Name column).
    The tag is unique per executor: named actors share a namespace, and a second run on the cluster must not clash."""
    # max_task_retries stays 0: the workers keep per-video state that a restart loses, so a
    # method is never replayed on a fresh actor; the driver retries the whole video instead.
    options = dict(num_cpus=pool.num_cpus, num_gpus=pool.num_gpus, resources=dict(pool.resources) or None,
                   max_concurrency=CONCURRENCY[stage], name=f"stt2v-{tag}-{name}" if tag else None,
                   max_restarts=settings.retry.actor_max_restarts, max_task_retries=0)
    if strategy is not None:
        options["scheduling_strategy"] = strategy
    return ACTORS[stage].options(**options).remote(WORKERS[stage], settings.model_dump_json(), name, storage_options)


def ping(actor, timeout: float) -> tuple[str | None, int | None]:
    """(None, pid) if the actor answers within `timeout` (waiting out a restart), else (why not, None)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return None, ray.get(actor.pid.remote(), timeout=max(left, 0.01))
        except ray.exceptions.ActorUnavailableError as exc:  # restarting: ask again until the deadline
            if left <= 0:
                return f"unavailable for {timeout:g}s: {_first_line(exc)}", None
            time.sleep(min(0.2, max(left, 0.0)))
        except ray.exceptions.GetTimeoutError:
            return f"no answer within {timeout:g}s", None
        except ray.exceptions.RayActorError as exc:  # died for good (restarts used up, or its node is gone)
            return f"dead: {_first_line(exc)}", None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Gang:
    index: int
    actors: list
    pg: object
    name: str = ""


class Pool:
    """Actors (or gangs) of one stage that are pinged before use and dropped when they stay dead.

    exclusive: acquire/release hand an item to one video at a time (base actors, gangs);
    shared: pick() returns the healthy item serving the fewest open videos, for several videos
    at once (interpolation, writing), and release() gives its slot back: one busy CPU actor
    never gets every new video while another idles.
    Waiting for a free item is bounded by the other videos' own bounded waits.
    """

    def __init__(self, stage: str, items: list, names: list[str], ping_timeout: float,
                 on_event: Callable[[dict], None], exclusive: bool = True, drop: Callable | None = None):
        self.stage, self.exclusive = stage, exclusive
        self.items, self.names = list(items), dict(zip(map(id, items), names, strict=True))
        self.size = len(items)
        self.ping_timeout, self.on_event, self._drop = ping_timeout, on_event, drop
        self._free: collections.deque = collections.deque(items)
        self._load: dict[int, int] = {id(i): 0 for i in items}  # shared pools: open videos per item
        self.on_wait: Callable[[int], None] = lambda delta: None  # videos waiting for a free item (a queue-depth gauge)
        self._cond = threading.Condition()
        self._ahead = 0  # videos let through ahead() that have not yet taken an item (see ahead())

    def name(self, item) -> str:
        return self.names.get(id(item), "?")

    def _actors(self, item) -> list:
        return item.actors if isinstance(item, Gang) else [item]

    def _check(self, item) -> list[int] | None:
        """Ping every actor of the item -> their pids; drop the item (and say so) if one stays dead."""
        answers = [ping(a, self.ping_timeout) for a in self._actors(item)]
        reasons = [r for r, _ in answers if r]
        if not reasons:
            return [pid for _, pid in answers]
        with self._cond:
            if item in self.items:
                self.items.remove(item)
            self._cond.notify_all()
        left = len(self.items)
        line = f"{self.stage} pool: dropped {self.name(item)} ({reasons[0]}); {left} of {self.size} left"
        print(f"WARNING: {line}", file=sys.stderr, flush=True)
        self.on_event({"event": "pool_shrunk", "stage": self.stage, "actor": self.name(item), "reason": reasons[0],
                       "left": left, "size": self.size, "time": time.time()})
        if self._drop is not None:
            self._drop(item)
        return None

    def acquire(self) -> tuple[object, list[int]]:
        """(a free, healthy item, its actors' pids); blocks while all are busy; PoolExhausted when none is left."""
        while True:
            with self._cond:
                if not self._free and self.items:
                    self.on_wait(1)
                    try:
                        while not self._free and self.items:
                            self._cond.wait(timeout=1.0)
                    finally:
                        self.on_wait(-1)
                if not self.items:
                    raise PoolExhausted(f"no healthy {self.stage} actor is left (all {self.size} died)")
                item = self._free.popleft()
            pids = self._check(item)
            if pids is not None:
                return item, pids

    def acquire_many(self, count: Callable[[int, int], int]) -> tuple[list, list[int]]:
        """Several free items taken at once (all or none, under the lock: two videos never each hold
        part of what they need). `count(free, waiting)` says how many (waiting: the videos between
        ahead() and taken(), this one included); blocks until one is free."""
        while True:
            with self._cond:
                while not self._free and self.items:
                    self._cond.wait(timeout=1.0)
                if not self.items:
                    raise PoolExhausted(f"no healthy {self.stage} actor is left (all {self.size} died)")
                n = max(1, min(count(len(self._free), max(1, self._ahead)), len(self._free)))
                taken = [self._free.popleft() for _ in range(n)]
            checked = [(item, self._check(item)) for item in taken]
            good = [(item, pids) for item, pids in checked if pids is not None]
            if len(good) == len(taken):
                return [i for i, _ in good], [p for _, pids in good for p in pids]
            for item, _ in good:  # one was dropped: give the others back and ask again
                self.release(item)

    def release(self, item) -> None:
        with self._cond:
            if not self.exclusive:
                self._load[id(item)] = max(0, self._load.get(id(item), 0) - 1)
            elif item in self.items:
                self._free.append(item)
            self._cond.notify_all()

    def free_count(self) -> int:
        with self._cond:
            return len(self._free)

    def ahead(self, lookahead: int) -> None:
        """Wait until a video may take its base actor: while fewer videos are ahead (holding a base or
        waiting for one, no gang yet) than free gangs plus `lookahead`. `taken()` ends its turn.

        Why no deadlock: a video takes base, then gang, never the other way round, and a video
        holding a gang never waits for anything but its own work; this wait holds nothing. Why
        `lookahead` >= 1: the next video's base generation should overlap this video's
        enhancement (its first chunks are ready when the gang frees), but no more videos than
        that sit on base actors, idle behind backpressure, while every gang is busy."""
        with self._cond:
            while self._ahead >= len(self._free) + lookahead and self.items:
                self._cond.wait(timeout=1.0)
            self._ahead += 1

    def taken(self) -> None:
        """The video that passed ahead() has its gang, or gave up."""
        with self._cond:
            self._ahead = max(0, self._ahead - 1)
            self._cond.notify_all()

    def pick(self) -> tuple[object, list[int]]:
        """(the healthy shared item serving the fewest open videos, its pids); release() it after the video."""
        while True:
            with self._cond:
                if not self.items:
                    raise PoolExhausted(f"no healthy {self.stage} actor is left (all {self.size} died)")
                item = min(self.items, key=lambda i: self._load.get(id(i), 0))  # ties: the first
                self._load[id(item)] = self._load.get(id(item), 0) + 1
            pids = self._check(item)
            if pids is not None:
                return item, pids
            with self._cond:
                self._load[id(item)] -= 1

    def report(self) -> dict:
        return {"size": self.size, "healthy": len(self.items), "dropped": sorted(
            n for k, n in self.names.items() if k not in {id(i) for i in self.items})}


def gang_size(settings: RunSettings) -> int:
    """Actors per gang: enhance_shards, or 1 for auto (a video then takes several one-actor gangs at once)."""
    shards = settings.ray.enhance_shards
    return 1 if shards == "auto" else shards


def make_gangs(settings: RunSettings, storage_options, timeout: float, tag: str = "") -> list[Gang]:
    s = settings.ray
    size = gang_size(settings)
    gangs = []
    for g in range(s.enhance.actors // size):
        pg = placement_group([bundle(s.enhance)] * size, strategy="PACK", name="")
        try:
            ray.get(pg.ready(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(pg)
            raise ExecutorStartError(
                f"could not place enhancer gang {g}: {size} bundles of {bundle(s.enhance)} within {timeout:.0f}s. "
                "Check `ray status` and the ray.enhance settings."
            ) from None
        actors = [
            make_actor("enhance", settings, f"enhance-g{g}s{j}", storage_options, s.enhance,
                       PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=j), tag)
            for j in range(size)
        ]
        gangs.append(Gang(g, actors, pg, f"enhance-g{g}"))
    return gangs
