"""daemon.CoreFeed: the error policy for events from every source, and the one timer.

A fake event loop (no I/O, a clock the test sets) and a real core stand in
for the Agent, which needs sockets, netlink and root.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from mosqit_failover.actions import Action, Decision
from mosqit_failover.core import Core, ProtocolError
from mosqit_failover.daemon import CoreFeed
from mosqit_failover.events import Event, Inventory, LinkChanged, Tick
from mosqit_failover.journal import DecisionLog
from mosqit_failover.sim_scenarios import sim_config


class FakeLoop:
    """What CoreFeed uses of an event loop: time() and call_at(); the test runs the timers."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def armed(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled and not t.fired]

    def fire(self, at: float) -> None:
        """Run the one armed timer with the clock at `at` (asyncio may run it a hair early)."""
        (timer,) = self.armed()
        self.now = at
        timer.fired = True
        timer.callback()


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


class Notes(DecisionLog):
    def __init__(self) -> None:
        super().__init__(use_journal=False)
        self.notes: list[tuple[str, int, dict[str, str]]] = []

    def note(self, text: str, priority: int = 6, **fields: str) -> None:
        self.notes.append((text, priority, fields))


def make(core: Core | None = None) -> tuple[CoreFeed, FakeLoop, Notes, list[Action]]:
    loop = FakeLoop()
    core = core or Core(sim_config(), "beta", Inventory(), loop.now)
    log = Notes()
    done: list[Action] = []
    feed = CoreFeed(core, loop, log, done.append)  # type: ignore[arg-type]
    return feed, loop, log, done


class Still(Core):
    """A core whose one deadline, every 5 s, changes only once it is reached: what a
    rule's deadline does (the heartbeat's goes out a quarter period early with any
    event, so a Tick a hair before it always moves it)."""

    def __init__(self) -> None:
        super().__init__(sim_config(), "beta", Inventory(), 100.0)
        self.deadline = 105.0

    def handle(self, event: Event, now: float) -> list[Action]:
        if now >= self.deadline:
            self.deadline += 5.0
        return []

    def next_deadline(self) -> float:
        return self.deadline


def test_a_tick_that_runs_a_hair_before_its_deadline_leaves_a_timer_armed() -> None:
    """The old feed compared the fired timer's when() with the deadline: the same
    deadline again meant "nothing changed" and no timer was left at all."""
    feed, loop, _, _ = make(Still())
    feed.feed(Tick())
    deadline = feed.armed_for
    assert deadline is not None and deadline > loop.now
    loop.fire(at=deadline - 1e-9)  # the loop runs timers up to its clock resolution early
    assert feed.core.next_deadline() == deadline  # nothing was due yet
    assert [t.when for t in loop.armed()] == [deadline]
    loop.fire(at=deadline)
    assert len(loop.armed()) == 1 and loop.armed()[0].when > deadline


def test_exactly_one_timer_stays_armed_for_the_cores_deadline() -> None:
    feed, loop, _, _ = make()
    for _ in range(200):
        feed.feed(LinkChanged("a", True))
        (timer,) = loop.armed()
        assert timer.when == feed.core.next_deadline() > loop.now
        loop.fire(at=timer.when)
    assert loop.now > 100.0


class Failing(Core):
    """A core with a bug: it raises on one kind of event."""

    def __init__(self, error: Exception) -> None:
        super().__init__(sim_config(), "beta", Inventory(), 100.0)
        self.error = error

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, LinkChanged):
            raise self.error
        return super().handle(event, now)


@pytest.mark.parametrize("error", [ProtocolError("no move from WAITING"), KeyError("x")])
def test_an_error_in_the_core_is_logged_with_the_event_counted_and_survived(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    core = Failing(error)
    feed, loop, log, _ = make(core)
    role, epoch = core.role, core.epoch
    with caplog.at_level(logging.ERROR, logger="mosqit_failover.daemon"):
        feed.feed(LinkChanged("a", False))
    assert feed.errors == 1
    assert "LinkChanged(network='a', carrier=False)" in caplog.text
    assert caplog.records[0].exc_info is not None  # the traceback
    [(text, priority, fields)] = log.notes
    assert priority == 3 and "LinkChanged(network='a', carrier=False)" in text
    assert fields == {"CORE_ERROR": type(error).__name__}
    assert (core.role, core.epoch) == (role, epoch)
    assert len(loop.armed()) == 1  # still woken at its deadline
    feed.feed(Tick())  # and the next event is handled as usual
    assert feed.errors == 1 and len(log.notes) == 1


def test_the_actions_decided_before_a_protocol_error_are_still_carried_out() -> None:
    class Half(Core):
        def handle(self, event: Event, now: float) -> list[Action]:
            actions = super().handle(event, now)
            error = ProtocolError("did not settle")
            error.actions = actions
            raise error

    core = Half(sim_config(), "beta", Inventory(), 100.0)
    feed, _, _, done = make(core)
    feed.feed(LinkChanged("a", True))
    feed.feed(LinkChanged("b", True))
    assert feed.errors == 2
    assert any(not isinstance(a, Decision) for a in done)  # the heartbeat went out
