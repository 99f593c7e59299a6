"""The object store's peak use during a run, sampled from the raylets' store stats, and the
peak number of live objects the driver owns (it submits every task, so it owns every piece).

Objects under ~100 KB live in their owner's memory, not in the store: the byte figure sees the
frame pieces (the bulk). It also counts freed objects the store has not deleted yet (deletion
is asynchronous and lags on a loaded machine), so it overstates; the live-object count is exact.
"""
from __future__ import annotations

import threading

import ray


class ObjectStorePeak:
    """`with ObjectStorePeak() as peak: ...` -> peak.bytes: the largest cluster-wide store use seen."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.bytes = 0
        self.refs = 0  # peak live object refs owned by this driver
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def used(self) -> int:
        """Bytes in the object store now, all nodes together."""
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        if self._state is None:
            self._state = get_state_from_address(ray.get_runtime_context().gcs_address)
        return int(get_memory_info_reply(self._state).store_stats.object_store_bytes_used)

    @staticmethod
    def live_refs() -> int:
        """Object refs this driver holds or has passed to tasks still pending."""
        return len(ray._private.worker.global_worker.core_worker.get_all_reference_counts())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.bytes = max(self.bytes, self.used())
                self.refs = max(self.refs, self.live_refs())
                self.samples += 1
            except Exception:  # a raylet restarting: skip this sample
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> ObjectStorePeak:
        self._state = None
        self.bytes = self.used()
        self._thread = threading.Thread(target=self._run, name="object-store-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
