"""Looks at what this node holds, every timing.monitor_interval, for the core.

Guarantees:

- One look at a time, on the interval (read anew from the config each time;
  :meth:`wake`, called after a reload, ends the wait at once, so a shorter
  interval takes effect then, not after the old one); with the interval at 0
  no status command runs at all.
- A look runs only while the core wants one (`Core.monitoring`): not during a
  plan, in maintenance, or in PROMOTING/DEMOTING, so no status command runs for
  nothing.
- A look asks whether the VIP is on its interface (netlink) and each monitored
  resource's status check (the runner's `alive`), and hands the core one
  `ResourceCheck` stamped with when it began. What cannot be told is reported
  as unknown, never as stopped: a status check that hangs or cannot run must
  not make the active restart its services (it is said once in the journal
  until it can be told again; its output may differ at each look).
- Nothing here decides or changes anything: the core decides, plans act.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from mosqit_failover.deadlines import within
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.resources import ResourceRunner
from mosqit_failover.events import ResourceCheck

# How often a monitor with the interval at 0 looks whether a reload turned it on
IDLE_RECHECK = 60.0

T = TypeVar("T")


class ResourceMonitor:
    def __init__(
        self,
        interval: Callable[[], float],
        wanted: Callable[[float], bool],
        clock: Callable[[], float],
        vip_held: Callable[[], bool],
        runners: Callable[[], Mapping[str, ResourceRunner]],
        report: Callable[[ResourceCheck], None],
        note: Callable[[str], None],
        vip_others: Callable[[], Awaitable[tuple[str, ...]]] | None = None,
        probe_others: Callable[[], bool] = lambda: False,
    ) -> None:
        """`runners`: the monitored resources' runners, by name, in config order;
        `vip_held`: blocking (it runs in a thread); `note`: a journal line;
        `vip_others`: the other hosts answering ARP for the VIP, asked when the VIP is
        here and `probe_others()` says so (the active node)."""
        self._interval = interval
        self._wanted = wanted
        self._clock = clock
        self._vip_held = vip_held
        self._runners = runners
        self._report = report
        self._note = note
        self._vip_others = vip_others
        self._probe_others = probe_others
        self._unknown_said: set[str] = set()  # what could not be told, said so once
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """End the wait for the next look now (the config changed)."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            interval = self._interval()
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                await within(self._woken.wait(), interval if interval > 0 else IDLE_RECHECK)
            if self._woken.is_set():
                continue  # the interval changed perhaps: wait anew with the new one
            if interval > 0 and self._wanted(self._clock()):
                self._report(await self.look())

    async def look(self) -> ResourceCheck:
        """What this node holds now."""
        started = self._clock()
        vip = await self._asked("the VIP", lambda: asyncio.to_thread(self._vip_held))
        elsewhere: tuple[str, ...] | None = ()
        if vip and self._vip_others is not None and self._probe_others():
            elsewhere = await self._asked("another holder of the VIP", self._vip_others)
        running: list[str] = []
        unknown: list[str] = []
        for name, runner in self._runners().items():
            alive = await self._asked(name, runner.alive)
            if alive is None:
                unknown.append(name)
            elif alive:
                running.append(name)
        return ResourceCheck(started, vip, tuple(running), tuple(unknown), elsewhere or ())

    async def _asked(self, what: str, ask: Callable[[], Awaitable[T]]) -> T | None:
        """The answer, or None when it cannot be told: said once in the journal until it
        can be told again (its output, a pid, changed at each look: 8640 lines a day)."""
        try:
            answer = await ask()
        except EffectError as error:
            if what not in self._unknown_said:
                self._unknown_said.add(what)
                self._note(
                    f"monitor: cannot tell whether {what} is held here ({error}); "
                    "nothing is done about it until it can be told"
                )
            return None
        self._unknown_said.discard(what)
        return answer
