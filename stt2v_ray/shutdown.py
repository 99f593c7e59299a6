"""SIGINT/SIGTERM in the driver: stop admitting videos, give those in flight a grace period.

On the first signal `stop` is set (the request iterator stops yielding) and a timer of
`grace_s` starts; when it fires, or on a second signal, `GraceExpired` is raised in the
main thread, which abandons the videos still in flight. Inside `critical()` (committing a
record, writing the tables) the raise waits until the block ends, so a record or a table
is never cut half-way (they are atomic anyway; this keeps a finished video's record).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class GraceExpired(BaseException):
    """Not an Exception: per-video `except Exception` handlers must not swallow it."""


class GracefulStop:
    def __init__(self, grace_s: float, on_signal=None):
        self.grace_s = grace_s
        self.on_signal = on_signal  # called with the signal's name (progress line)
        self.stop = threading.Event()
        self.signum: int | None = None
        self._critical = 0
        self._pending = False
        self._old: dict[int, object] = {}

    @property
    def exit_code(self) -> int | None:
        return EXIT_CODES.get(self.signum) if self.signum is not None else None

    def install(self) -> GracefulStop:
        """Only the main thread can own signals; elsewhere (a library caller's thread) this is a no-op."""
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        if self._old:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}

    def _handle(self, signum, frame) -> None:
        if signum != signal.SIGALRM and not self.stop.is_set():
            self.signum = signum
            self.stop.set()
            if self.on_signal is not None:
                self.on_signal(signal.Signals(signum).name, self.grace_s)
            if self.grace_s > 0:
                signal.setitimer(signal.ITIMER_REAL, self.grace_s)
                return
        # the grace period is over, or a second signal: stop now
        if self._critical:
            self._pending = True
            return
        raise GraceExpired()

    @contextlib.contextmanager
    def critical(self, then_raise: bool = True) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if then_raise and self._pending and not self._critical:
            self._pending = False
            raise GraceExpired()
