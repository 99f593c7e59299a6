"""What a lost actor, shard or node looks like to the driver, and one attempt's outstanding work.

A video is retried only when its attempt ended by infrastructure: an actor or worker died,
a node went away, an object was lost, or a wait ran past `retry.stage_timeout_s`. An
exception raised by stage code (a bad image, a decode error, a bad request) is
deterministic: the same inputs raise it again, so it is not retried.
"""
from __future__ import annotations

import threading

import ray
from ray import exceptions as rx

RETRYABLE: tuple[type[BaseException], ...] = (
    rx.RayActorError,  # ActorDiedError, ActorUnavailableError
    rx.NodeDiedError,
    rx.WorkerCrashedError,
    rx.ObjectLostError,  # OwnerDiedError, ObjectReconstructionFailedError, ...
    rx.GetTimeoutError,
    rx.OutOfMemoryError,  # Ray's memory monitor killed the worker
)


class StageTimeout(TimeoutError):
    """A stage produced nothing within retry.stage_timeout_s (retried: the actor may be wedged)."""


class Abandoned(RuntimeError):
    """The attempt was given up (another part of it failed); its remaining work is cancelled."""


def retryable(exc: BaseException) -> bool:
    """True when the error came from losing an actor, worker, node or object, or from a timeout."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, RETRYABLE + (StageTimeout,)):
            return True
        if isinstance(exc, rx.RayTaskError):  # a stage's task failed: look at what it raised
            exc = getattr(exc, "cause", None)
        else:
            return False
        seen += 1
    return False


class Attempt:
    """One try at one video: the refs and generators it started, the actors it used."""

    def __init__(self, number: int, timeout: float):
        self.number, self.timeout = number, timeout
        self.refs: dict = {}  # insertion-ordered set: get() tracks refs that were tracked before
        self.actors: list = []  # (actor, its pid when handed out)
        self.held: dict[str, tuple] = {}  # "base"/"gang" -> (pool, item) until released
        self.early: list = []  # actors released while the attempt was going well (their part is done)
        self.abandoned = threading.Event()
        self._lock = threading.Lock()
        self._prune_at = 16

    def track(self, ref):
        """Remember an ObjectRef, a list/tuple of them, or an ObjectRefGenerator, to cancel on failure."""
        with self._lock:
            for r in ref if isinstance(ref, (list, tuple)) else (ref,):
                self.refs[r] = None
            if len(self.refs) >= self._prune_at:
                self._prune()
        return ref

    def _prune(self) -> None:
        """Forget the refs whose tasks have ended: there is nothing left to cancel, and holding them
        would pin every piece of the video in the object store until the attempt ends (its peak
        would grow with the video's length). Amortized: at most every doubling of the set. The
        set matters: ray.wait refuses a list holding one ref twice, and a prune that failed that
        way kept every finished piece of a sharded video pinned (store peak 6 -> 55 MiB, 120 ->
        1200 frames)."""
        plain = [r for r in self.refs if isinstance(r, ray.ObjectRef)]
        others = [r for r in self.refs if not isinstance(r, ray.ObjectRef)]
        if plain:
            try:
                _, pending = ray.wait(plain, num_returns=len(plain), timeout=0, fetch_local=False)
            except Exception:  # e.g. the owner is shutting down: keep them all
                pending = plain
            self.refs = dict.fromkeys(others + pending)
        self._prune_at = max(16, 2 * len(self.refs))

    def use(self, actors: list, pids: list[int]) -> None:
        with self._lock:
            self.actors.extend(zip(actors, pids, strict=True))

    def hold(self, key: str, pool, item) -> None:
        with self._lock:
            self.held[key] = (pool, item)

    def release(self, key: str | None = None, early: bool = False) -> None:
        """Give held items back to their pools (each once); `early`: this part of the work is done."""
        with self._lock:
            keys = [key] if key else list(self.held)
            items = [self.held.pop(k) for k in keys if k in self.held]
            if early:
                self.early += [a for _, item in items for a in getattr(item, "actors", [item])]
        for pool, item in items:
            pool.release(item)

    def get(self, refs):
        """ray.get with the stage timeout (GetTimeoutError is retried)."""
        if self.abandoned.is_set():
            raise Abandoned("attempt abandoned")
        return ray.get(self.track(refs), timeout=self.timeout)

    def iterate(self, gen, what: str):
        """The refs of a streaming generator (tracked by the caller), each waited for at most the stage timeout."""
        while True:
            if self.abandoned.is_set():
                raise Abandoned("attempt abandoned")
            ready, _ = ray.wait([gen], timeout=self.timeout)
            if not ready:
                raise StageTimeout(f"{what}: nothing within {self.timeout:g}s (retry.stage_timeout_s)")
            try:
                ref = next(gen)
            except StopIteration:
                return
            yield ref

    def cancel(self) -> None:
        """Cancel every task of this attempt that may still run or wait (finished ones are unaffected)."""
        self.abandoned.set()
        with self._lock:
            refs = list(self.refs)
        for ref in refs:
            try:
                ray.cancel(ref)
            except Exception:  # already finished, or its actor is gone: nothing to cancel
                pass

    def settle(self) -> bool:
        """Wait (bounded) until every task of the attempt has ended: a cancel does not stop a task that
        already runs (an enhancer step), and one still running must not share its actor with the next
        video (the models' schedulers keep state). -> True if all ended in time."""
        with self._lock:
            refs, self.refs = list(self.refs), {}
        # A streaming generator's own ref resolves when its task ends; no data is fetched here.
        waitables = list(dict.fromkeys(getattr(r, "_generator_ref", r) for r in refs))
        if not waitables:
            return True
        try:
            _, pending = ray.wait(waitables, num_returns=len(waitables), timeout=self.timeout, fetch_local=False)
        except Exception:  # e.g. the owner is gone: nothing left to wait for
            return True
        return not pending
