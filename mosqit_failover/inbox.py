"""What the agent takes from the peer messages that waited together in its socket.

Every message is its sender's whole view, sent again each heartbeat. When several
from one peer on one network wait together, only the newest says what that peer
thinks now; acting on the older ones first is acting on old news. A standby
stopped just after a switchover handed over to it read the handover first when
it ran again, and promoted, while the third node, which could not hear it, had
taken over meanwhile: two holders, in every simulated run.

A message that waited longer than the schedule gap (`Timing.schedule_gap`) was
queued while this agent was not running (SIGSTOP, a suspended VM, a blocked
event loop): even the newest may be older than what the other nodes have acted
on since (its sender may have died meanwhile). It is dropped; the core restarts
its timeouts after such a gap, and the next heartbeat brings the present.

Pure: no clock, no socket. The peer link reads the wait from the kernel's receive
timestamp; the simulation models a stopped agent's socket with the same rule.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class Inbox(Generic[K, T]):
    """One batch of messages read together: the newest per key, none too old.

    Guarantees: `take` returns at most one item per key, the last one `add`ed that
    had not waited longer than `max_wait`, in the order those arrived; the items
    dropped as too old are counted in `stale`, the longest wait in `longest`.
    """

    max_wait: float
    stale: int = 0
    longest: float = 0.0
    _newest: dict[K, T] = field(default_factory=dict)

    def add(self, key: K, item: T, waited: float = 0.0) -> None:
        """One message, after `waited` seconds in the socket (0: unknown, or already
        judged by `too_old`)."""
        if self.too_old(waited):
            return
        self._newest.pop(key, None)  # to the end: ordered by arrival of the newest
        self._newest[key] = item

    def too_old(self, waited: float) -> bool:
        """Whether a message that waited this long is dropped (counted as `add` does),
        for a caller that would rather not make the item of a message it drops."""
        if waited > self.max_wait:
            self.stale += 1
            self.longest = max(self.longest, waited)
            return True
        return False

    def take(self) -> list[T]:
        """The batch's items (see the class); the inbox keeps none of them."""
        items = list(self._newest.values())
        self._newest.clear()
        return items

    def take_stale(self) -> tuple[int, float]:
        """How many were dropped as too old, and the longest wait; both start again."""
        counted = self.stale, self.longest
        self.stale, self.longest = 0, 0.0
        return counted
