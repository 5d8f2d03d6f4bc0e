"""A peer's message is heard when it arrived, not when it was read (`PeerTracker.message`).

After a stop of this agent, the words that waited in the socket are read at the
resume; counted as heard then, a word sent during the stop passed for one sent
after it (see test_core_stopped_beside_a_cut.py for what that did).
"""

from __future__ import annotations

import pytest

from mosqit_failover.events import PeerView, Role
from mosqit_failover.observations import PeerTracker

VIEW = PeerView("beta", Role.STANDBY, 1, (("a", True), ("b", True)), False, False, False, False)


def test_a_word_that_waited_is_heard_when_it_arrived() -> None:
    tracker = PeerTracker(("a", "b"))
    tracker.restart_timers(10.0)  # the resume
    tracker.message("a", VIEW, 10.0, waited=0.4)
    assert tracker.heard_at == pytest.approx(9.6)
    assert tracker.heard_on["a"] == pytest.approx(9.6)
    assert tracker.silent_since == 10.0  # silence still counts from the resume
    assert tracker.fresh(10.5, 1.0) is VIEW
    assert tracker.fresh(10.7, 1.0) is None  # 1.1 s since it arrived


def test_the_time_heard_never_goes_back() -> None:
    """A later read with a longer wait (the wall clock the kernel stamps with slewed, or
    the other network's copy read later): the newest time heard stays."""
    tracker = PeerTracker(("a", "b"))
    tracker.message("a", VIEW, 20.0)
    tracker.message("b", VIEW, 20.05, waited=0.5)
    assert tracker.heard_at == 20.0
    assert tracker.heard_on["b"] == pytest.approx(19.55)
    tracker.message("a", VIEW, 20.1, waited=0.3)
    assert tracker.heard_on["a"] == 20.0 and tracker.gap_on["a"] == 0.0
    tracker.message("a", VIEW, 20.2)
    assert tracker.heard_at == 20.2 and tracker.gap_on["a"] == pytest.approx(0.2)
