"""A bounded queue in front of generation: a few run at once, a few wait, the rest get 429."""

from __future__ import annotations

import asyncio


class QueueFull(Exception):
    pass


class QueueTimeout(Exception):
    pass


class AdmissionGate:
    def __init__(self, concurrent: int, queued: int) -> None:
        self.concurrent = max(1, concurrent)
        self.limit = self.concurrent + max(0, queued)
        self.inside = 0  # running + waiting; only touched on the event loop thread
        self._semaphore: asyncio.Semaphore | None = None

    def admit(self) -> None:
        """Count the request in, or refuse it at once when running + waiting is at the limit."""
        if self.inside >= self.limit:
            raise QueueFull
        self.inside += 1

    async def wait_turn(self, timeout: float) -> None:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrent)
        try:
            await asyncio.wait_for(self._semaphore.acquire(), timeout=timeout)
        except TimeoutError:
            raise QueueTimeout from None

    def leave(self, had_turn: bool) -> None:
        self.inside -= 1
        if had_turn and self._semaphore is not None:
            self._semaphore.release()
