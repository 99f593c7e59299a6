"""Real actor and node faults for the Ray executor: find a busy stage actor's process, SIGKILL it
by pid (or remove the node it runs on) while the batch runs."""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import psutil

# A stage actor's title between method calls is ray::<Class>; busy: ray::<Class>.<method>.
STAGE_CLASSES = ("BaseActor", "EnhancerShard", "Interpolator", "Writer")


def title(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline()).strip()
    except psutil.Error:
        return ""


def busy(pid: int, method: str | None = None) -> bool:
    t = title(pid)
    return any(t.startswith(f"ray::{c}.{method or ''}") for c in STAGE_CLASSES)


def has_ffmpeg_child(pid: int) -> bool:
    """The writer has a video open: its ffmpeg runs."""
    try:
        return any("ffmpeg" in " ".join(c.cmdline()) for c in psutil.Process(pid).children())
    except psutil.Error:
        return False


@dataclass
class Fault:
    """Watches the executor the render builds; when `ready(pid)` holds for actor `target`, strikes once."""

    target: str  # an actor name of RayExecutor.pids, e.g. "base-0", "enhance-g0s1"
    ready: object  # (pid) -> bool
    strike: object = None  # (pid) -> None; default SIGKILL
    executor: object = None
    struck: dict = field(default_factory=dict)

    def __post_init__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._stop = threading.Event()

    def attach(self, executor) -> None:
        self.executor = executor
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            pids = getattr(self.executor, "pids", {})
            pid = pids.get(self.target)
            if pid and self.ready(pid):
                self.struck.update(pid=pid, title=title(pid), at=time.time())
                (self.strike or (lambda p: os.kill(p, signal.SIGKILL)))(pid)
                return
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


def install(monkeypatch, fault: Fault) -> None:
    """Hand the executor that `render` makes to the fault as soon as its actors exist."""
    import stt2v_ray.run as run_mod
    from stt2v_ray.runtime.executor import RayExecutor

    real_start = RayExecutor.start

    def start(self, storage_options):
        real_start(self, storage_options)
        fault.attach(self)

    monkeypatch.setattr(RayExecutor, "start", start)
    assert run_mod.make_executor  # render builds the executor through it; start() is the hook


def node_of(pid: int, nodes) -> object:
    """The cluster_utils node whose raylet started the worker process `pid`."""
    raylets = {n.all_processes["raylet"][0].process.pid: n for n in nodes}
    proc = psutil.Process(pid)
    while proc is not None:
        if proc.pid in raylets:
            return raylets[proc.pid]
        proc = proc.parent()
    raise LookupError(f"pid {pid} is not under any of the nodes' raylets")
