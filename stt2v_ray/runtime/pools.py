"""Actor pools. Base actors and enhancer gangs are held by one video at a time; a gang's
shards are placed together in one placement group, and a gang is handed out whole, so two
videos can never each hold half of the shards they need (no deadlock)."""
from __future__ import annotations

import queue
from dataclasses import dataclass

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from stt2v_ray.config import PoolSettings, RunSettings
from stt2v_ray.errors import ExecutorStartError
from stt2v_ray.runtime.actors import StageActor

WORKERS = {
    "base": "stt2v_ray.pipeline.workers.BaseWorker",
    "enhance": "stt2v_ray.pipeline.workers.EnhanceWorker",
    "interpolate": "stt2v_ray.pipeline.workers.InterpolateWorker",
    "write": "stt2v_ray.pipeline.workers.WriteWorker",
}
# The enhancer's feed() blocks on a bounded inbox while its stream() runs.
CONCURRENCY = {"base": 1, "enhance": 2, "interpolate": 1, "write": 1}


def bundle(pool: PoolSettings) -> dict[str, float]:
    b = {"CPU": pool.num_cpus, "GPU": pool.num_gpus, **pool.resources}
    b = {k: v for k, v in b.items() if v > 0}
    return b or {"CPU": 0.001}  # a bundle may not be empty


def make_actor(stage: str, settings: RunSettings, name: str, storage_options, pool: PoolSettings, strategy=None):
    options = dict(num_cpus=pool.num_cpus, num_gpus=pool.num_gpus, resources=dict(pool.resources) or None,
                   max_concurrency=CONCURRENCY[stage], name=None)
    if strategy is not None:
        options["scheduling_strategy"] = strategy
    return StageActor.options(**options).remote(WORKERS[stage], settings.model_dump_json(), name, storage_options)


@dataclass
class Gang:
    index: int
    actors: list
    pg: object


class ExclusivePool:
    """Items handed out to one user at a time; acquire blocks until one is free."""

    def __init__(self, items: list):
        self.items = list(items)
        self._free: queue.Queue = queue.Queue()
        for item in items:
            self._free.put(item)

    def acquire(self):
        return self._free.get()

    def release(self, item) -> None:
        self._free.put(item)


def make_gangs(settings: RunSettings, storage_options, timeout: float) -> list[Gang]:
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
                       PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=j))
            for j in range(s.enhance_shards)
        ]
        gangs.append(Gang(g, actors, pg))
    return gangs
