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
    shared: pick(i) returns a healthy item for several videos at once (interpolation, writing).
    Waiting for a free item is bounded by the other videos' own bounded waits.
    """

    def __init__(self, stage: str, items: list, names: list[str], ping_timeout: float,
                 on_event: Callable[[dict], None], exclusive: bool = True, drop: Callable | None = None):
        self.stage, self.exclusive = stage, exclusive
        self.items, self.names = list(items), dict(zip(map(id, items), names, strict=True))
        self.size = len(items)
        self.ping_timeout, self.on_event, self._drop = ping_timeout, on_event, drop
        self._free: collections.deque = collections.deque(items)
        self.on_wait: Callable[[int], None] = lambda delta: None  # videos waiting for a free item (a queue-depth gauge)
        self._cond = threading.Condition()

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

    def release(self, item) -> None:
        with self._cond:
            if item in self.items:
                self._free.append(item)
            self._cond.notify_all()

    def pick(self, index: int) -> tuple[object, list[int]]:
        """(a healthy shared item chosen round robin by `index`, its pids)."""
        while True:
            with self._cond:
                if not self.items:
                    raise PoolExhausted(f"no healthy {self.stage} actor is left (all {self.size} died)")
                item = self.items[index % len(self.items)]
            pids = self._check(item)
            if pids is not None:
                return item, pids

    def report(self) -> dict:
        return {"size": self.size, "healthy": len(self.items), "dropped": sorted(
            n for k, n in self.names.items() if k not in {id(i) for i in self.items})}


def make_gangs(settings: RunSettings, storage_options, timeout: float, tag: str = "") -> list[Gang]:
    s = settings.ray
    gangs = []
    for g in range(s.enhance.actors // s.enhance_shards):
        pg = placement_group([bundle(s.enhance)] * s.enhance_shards, strategy="PACK", name="")
        try:
            ray.get(pg.ready(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(pg)
            raise ExecutorStartError(
                f"could not place enhancer gang {g}: {s.enhance_shards} bundles of {bundle(s.enhance)} within {timeout:.0f}s. "
                "Check `ray status` and the ray.enhance settings."
            ) from None
        actors = [
            make_actor("enhance", settings, f"enhance-g{g}s{j}", storage_options, s.enhance,
                       PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=j), tag)
            for j in range(s.enhance_shards)
        ]
        gangs.append(Gang(g, actors, pg, f"enhance-g{g}"))
    return gangs
