"""A per-host rate limit shared by every crawl in the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class HostRateLimiter:
    """Keeps at least `delay_s` between the end of one request to a host and the start of the next."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._last_done: dict[str, float] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def slot(self, host: str, delay_s: float) -> Iterator[None]:
        """Hold the host for one request; waits first when the last one ended under `delay_s` ago."""
        if delay_s <= 0:  # the limit is off: no lock, no sleep, only remember when we were there
            try:
                yield
            finally:
                self._last_done[host] = self._clock()
            return
        with self._guard:
            lock = self._host_locks.setdefault(host, threading.Lock())
        with lock:
            # measured from the end of the previous response, so the server sees the full gap
            while (remaining := self._last_done.get(host, float("-inf")) + delay_s - self._clock()) > 0:
                self._sleep(remaining)
            try:
                yield
            finally:
                self._last_done[host] = self._clock()


# one per process, so separate crawls of the same host in one process stay polite together
SHARED_RATE_LIMITER = HostRateLimiter()
