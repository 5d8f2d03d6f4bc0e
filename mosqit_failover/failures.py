"""Failure counts of the monitored resources on this node (pure: times come in).

Pacemaker's fail-count with its failure-timeout: each failure the monitor finds
on the active node is counted with its time, and counts for `timeout` seconds
(0: until the agent restarts). The core restarts a resource while its count
stays within `Resource.restarts`, and hands over once it goes past.
"""

from __future__ import annotations


class FailureCounts:
    """Per resource, the times of its recent failures."""

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}

    def add(self, name: str, now: float, timeout: float) -> int:
        """Count a failure of `name` at `now`; how many count now, this one included."""
        times = self._recent(name, now, timeout)
        times.append(now)
        self._times[name] = times
        return len(times)

    def counts(self, now: float, timeout: float) -> dict[str, int]:
        """The resources with failures that still count, and how many (for the status)."""
        found = {name: len(self._recent(name, now, timeout)) for name in self._times}
        return {name: count for name, count in sorted(found.items()) if count}

    def _recent(self, name: str, now: float, timeout: float) -> list[float]:
        times = self._times.get(name, [])
        return times if timeout <= 0 else [t for t in times if now - t < timeout]
