"""The shell's small parts: plan runner semantics and the control socket's bad input."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.actions import ClaimVip, PlanStep, ReleaseVip, RunPlan, SendGarp, StartResource
from mosqit_failover.control import ControlError, ControlServer, ask
from mosqit_failover.effects import EffectError
from mosqit_failover.events import ActionDone, ActionFailed, Event
from mosqit_failover.planrunner import PlanRunner


async def _run_plans(
    plans: list[tuple[float, RunPlan]], fail: set[PlanStep] | None = None
) -> tuple[list[PlanStep], list[Event]]:
    done: list[PlanStep] = []
    reports: list[Event] = []

    async def execute(step: PlanStep) -> None:
        await asyncio.sleep(0.02)
        if fail and step in fail:
            raise EffectError(f"{step} broke")
        done.append(step)

    runner = PlanRunner(execute, reports.append)
    task = asyncio.create_task(runner.run())
    for delay, plan in plans:
        await asyncio.sleep(delay)
        runner.submit(plan)
    await asyncio.sleep(0.3)
    task.cancel()
    return done, reports


def test_steps_run_in_order_and_each_is_reported() -> None:
    plan = RunPlan(1, (ClaimVip(), SendGarp(), StartResource("db")))
    done, reports = asyncio.run(_run_plans([(0, plan)]))
    assert done == list(plan.steps)
    assert reports == [ActionDone(1, s) for s in plan.steps]


def test_the_first_failure_drops_the_rest_of_the_plan() -> None:
    plan = RunPlan(1, (ClaimVip(), StartResource("db"), StartResource("app")))
    done, reports = asyncio.run(_run_plans([(0, plan)], fail={StartResource("db")}))
    assert done == [ClaimVip()]
    assert reports[-1] == ActionFailed(1, StartResource("db"), "StartResource(name='db') broke")
    assert len(reports) == 2


def test_a_newer_plan_supersedes_after_the_step_in_flight() -> None:
    first = RunPlan(1, (ClaimVip(), SendGarp(), StartResource("db")))
    second = RunPlan(2, (ReleaseVip(),))
    done, reports = asyncio.run(_run_plans([(0, first), (0.01, second)]))
    assert done == [ClaimVip(), ReleaseVip()]  # the step in flight finished, the rest dropped
    assert reports == [ActionDone(1, ClaimVip()), ActionDone(2, ReleaseVip())]


def test_an_interruptible_plan_gives_way_at_once_its_step_in_flight_cancelled() -> None:
    """A monitor's restart stuck in a slow start held `systemctl stop mosqit-failover`'s
    demotion until the agent's stop timeout, and the agent exited holding everything (a
    helper's finding): a plan that keeps the role is interruptible."""
    first = RunPlan(1, (ClaimVip(), SendGarp(), StartResource("db")), interruptible=True)
    second = RunPlan(2, (ReleaseVip(),))
    done, reports = asyncio.run(_run_plans([(0, first), (0.01, second)]))
    assert done == [ReleaseVip()]  # ClaimVip was cancelled in flight, neither done nor failed
    assert reports == [ActionDone(2, ReleaseVip())]
    empty = RunPlan(2, (), interruptible=True)  # maintenance on: stop the monitor's plan
    done, reports = asyncio.run(_run_plans([(0, first), (0.01, empty)]))
    assert done == [] and reports == []


async def _with_server(tmp_path: Path, send: bytes) -> dict[str, Any]:
    path = tmp_path / "ctl" / "control.sock"
    seen: list[dict[str, Any]] = []

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"ok": True, "echo": request["command"]}

    server = ControlServer(path, handler)
    await server.start()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(send)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await server.close()
    reply: dict[str, Any] = json.loads(line)
    reply["handled"] = len(seen)
    return reply


@pytest.mark.parametrize(
    ("send", "error"),
    [
        (b"not json\n", "request is not a JSON line"),
        (b"[1, 2]\n", 'request needs {"command": "..."}'),
        (b'{"command": 5}\n', 'request needs {"command": "..."}'),
        (b'{"command": "' + b"x" * 9000 + b'"}\n', "request longer than 4096 bytes"),
    ],
)
def test_control_socket_answers_bad_requests_with_an_error(
    tmp_path: Path, send: bytes, error: str
) -> None:
    reply = asyncio.run(_with_server(tmp_path, send))
    assert reply == {"ok": False, "error": error, "handled": 0}


def test_control_socket_passes_good_requests_on(tmp_path: Path) -> None:
    reply = asyncio.run(_with_server(tmp_path, b'{"command": "status"}\n'))
    assert reply == {"ok": True, "echo": "status", "handled": 1}


def test_asking_an_agent_that_is_not_running_says_so(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="is the agent running"):
        ask(tmp_path / "none.sock", {"command": "status"})
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()
    with pytest.raises(ControlError, match="did not answer"):
        ask(dead, {"command": "status"})
