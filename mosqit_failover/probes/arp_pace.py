"""When a run of missed echo probes calls for an ARP request of our own (no I/O here).

The shell sends the request (`effects.garp.ArpAsk`); this says when, from the probe's
reports and the loop's time: from the `after`-th miss in a row, at most one per `gap`
seconds and `most` in one run, none again before an answer ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from mosqit_failover.config import ARP_ASK_GAP, ARP_ASK_MOST, SWITCH_ARP_AFTER
from mosqit_failover.observations import NEVER


@dataclass
class ArpAskPace:
    """The ARP requests one prober's misses call for (one per target and network)."""

    after: int = SWITCH_ARP_AFTER
    gap: float = ARP_ASK_GAP
    most: int = ARP_ASK_MOST
    missed: int = 0  # probes missed in a row
    asked: int = 0  # requests in this run of misses
    asked_at: float = NEVER

    def report(self, answered: bool, now: float) -> bool:
        """Take one probe's outcome at `now`: whether to send an ARP request now."""
        if answered:
            self.missed = self.asked = 0
            return False
        self.missed += 1
        if self.missed < self.after or self.asked >= self.most:
            return False
        if now - self.asked_at < self.gap:
            return False
        self.asked += 1
        self.asked_at = now
        return True
