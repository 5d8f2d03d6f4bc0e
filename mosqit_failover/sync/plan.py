"""The dirty set of one directory and when it is due. Pure: every call takes ``now``.

Coalescing: changes are collected until the directory has been quiet for
``settle`` seconds or ``interval`` seconds have passed since the oldest
unsent change, whichever comes first. So a lone change goes out after
``settle``, and a steady stream still goes out at least every ``interval``:
the interval bounds the delay, it is never a fixed sleep.

A failed batch is given back (nothing is lost) and the next attempt waits for
an exponential backoff (``Backoff``), never a tight loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SETTLE = 0.05
"""Quiet time after the last change before a batch goes out early."""


@dataclass(frozen=True)
class Batch:
    """What one rsync run must carry: paths (relative), trees to expand, or everything."""

    paths: frozenset[str]
    trees: frozenset[str]
    full: bool
    since: float  # when the oldest change in it happened
    reason: str = ""

    @property
    def size(self) -> int:
        return len(self.paths | self.trees)


@dataclass
class Dirty:
    """Changed paths not yet on the peer, relative to the synced directory."""

    interval: float
    settle: float = SETTLE
    paths: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)
    full_reason: str = ""
    first: float | None = None  # time of the oldest unsent change
    last: float | None = None  # time of the newest change

    def _touch(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    def add(self, path: str, now: float) -> None:
        """A path changed (created, written, deleted, moved away or attributes)."""
        self.paths.add(path)
        self._touch(now)

    def add_tree(self, path: str, now: float) -> None:
        """A directory appeared with contents (created or moved in): send all of it."""
        self.trees.add(path)
        self._touch(now)

    def need_full(self, reason: str, now: float) -> None:
        """Events were lost (overflow, lost watch, start): rescan the whole tree."""
        if not self.full_reason:
            self.full_reason = reason
        self._touch(now)

    @property
    def pending(self) -> int:
        return len(self.paths) + len(self.trees)

    @property
    def empty(self) -> bool:
        return not self.paths and not self.trees and not self.full_reason

    def due(self) -> float | None:
        """When the next batch should go out, or None if nothing is dirty."""
        if self.empty or self.first is None or self.last is None:
            return None
        if self.full_reason:
            return self.first
        return min(self.first + self.interval, self.last + self.settle)

    def lag(self, now: float) -> float:
        return 0.0 if self.first is None else max(0.0, now - self.first)

    def take(self) -> Batch:
        """Hand everything out and start afresh."""
        batch = Batch(
            frozenset(self.paths),
            frozenset(self.trees),
            bool(self.full_reason),
            self.first if self.first is not None else 0.0,
            self.full_reason,
        )
        self.paths, self.trees = set(), set()
        self.full_reason, self.first, self.last = "", None, None
        return batch

    def give_back(self, batch: Batch, now: float) -> None:
        """A batch that did not reach the peer: merge it back, keeping its age."""
        self.paths |= batch.paths
        self.trees |= batch.trees
        if batch.full and not self.full_reason:
            self.full_reason = batch.reason or "retry"
        self.first = batch.since if self.first is None else min(self.first, batch.since)
        self.last = now if self.last is None else self.last


@dataclass
class Backoff:
    """Exponential retry delay: base, 2 x base, ... up to cap; reset on success."""

    base: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        return float(min(self.cap, self.base * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0
