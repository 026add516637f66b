"""The lab's deterministic event loop: a simulated clock and a queue of things to happen.

Nothing here reads the wall clock: the same injections always happen at the same lab times,
in the same order, which is what makes captures byte-identical from run to run.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from vswitch.errors import VlabError

#: A run that has not gone quiet after this many events is stopped and reported.
MAX_EVENTS_PER_RUN = 200_000


class RunawayError(VlabError):
    """A run did not go quiet within its bound of events (a forwarding loop, most likely)."""


class EventLoop:
    """Events ordered by lab time, then by the order they were scheduled."""

    def __init__(self) -> None:
        self.now_ns = 0
        self._queue: list[tuple[int, int, Callable[..., Any], tuple, Any]] = []
        self._seq = itertools.count()

    def schedule(self, delay_ns: int, action: Callable[..., Any], *args: Any, context: Any = None) -> None:
        heapq.heappush(self._queue, (self.now_ns + delay_ns, next(self._seq), action, args, context))

    def advance(self, delta_ns: int) -> None:
        self.now_ns += delta_ns

    def run(self, enter: Callable[[Any], None] = lambda context: None,
            max_events: int = MAX_EVENTS_PER_RUN, until_ns: int | None = None) -> int:
        """Run until nothing is left to do (or lab time `until_ns`); `enter` is told each
        event's context first."""
        done = 0
        while self._queue:
            if until_ns is not None and self._queue[0][0] > until_ns:
                self.now_ns = max(self.now_ns, until_ns)
                break
            if done >= max_events:
                pending = len(self._queue)
                self._queue.clear()
                raise RunawayError(f"the lab did not go quiet after {max_events} events "
                                   f"({pending} still pending): is there a loop in the network?")
            time_ns, _, action, args, context = heapq.heappop(self._queue)
            self.now_ns = time_ns
            enter(context)
            action(*args)
            done += 1
        return done

    @property
    def idle(self) -> bool:
        return not self._queue
