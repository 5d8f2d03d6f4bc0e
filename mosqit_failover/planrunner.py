"""Runs the core's plans one step at a time, off the probes' path.

Guarantees: steps of one plan run in order, one at a time; each result goes
back to the core as ActionDone or ActionFailed (with the plan's number); the
first failure drops the rest of that plan; a newer plan supersedes an older
one: the step in flight finishes (an `interruptible` plan's is cancelled, and
reported as neither done nor failed), the rest of the old plan is dropped. A
step that raises something unexpected is reported as failed, never lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mosqit_failover.actions import PlanStep, RunPlan, step_name
from mosqit_failover.effects import EffectError
from mosqit_failover.events import ActionDone, ActionFailed, Event

LOGGER = logging.getLogger("mosqit_failover.plans")

Execute = Callable[[PlanStep], Awaitable[None]]


class PlanRunner:
    def __init__(self, execute: Execute, report: Callable[[Event], None]) -> None:
        self._execute = execute
        self._report = report
        self._latest: RunPlan | None = None
        self._wake = asyncio.Event()
        self.busy = False
        self._running: RunPlan | None = None
        self._step: asyncio.Task[None] | None = None

    def submit(self, plan: RunPlan) -> None:
        self._latest = plan
        self._wake.set()
        if self._running is not None and self._running.interruptible and self._step is not None:
            self._step.cancel()  # a monitor's restart stuck in a slow start held a stop 120 s

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            plan = self._latest
            if plan is not None:
                self.busy = True
                try:
                    await self._run_plan(plan)
                finally:
                    self.busy = False
                    self._running = self._step = None

    async def _run_plan(self, plan: RunPlan) -> None:
        for step in plan.steps:
            if self._latest is not plan:
                return  # superseded
            started = time.monotonic()
            self._running, self._step = plan, asyncio.ensure_future(self._execute(step))
            try:
                await self._step
            except asyncio.CancelledError:
                if self._latest is plan or not self._step.cancelled():
                    raise  # the runner itself is being cancelled
                LOGGER.info("%s interrupted by a newer plan", step_name(step))
                return
            except EffectError as error:
                self._report(ActionFailed(plan.number, step, str(error)))
                return
            except Exception as error:  # a bug in an effect must not leave the core waiting
                LOGGER.exception("unexpected error in %s", step)
                self._report(ActionFailed(plan.number, step, f"{type(error).__name__}: {error}"))
                return
            # like Pacemaker's exec-time: where a slow failover spent its time
            LOGGER.info("%s done in %.0f ms", step_name(step), 1000 * (time.monotonic() - started))
            self._report(ActionDone(plan.number, step))
