"""The shell's look at what a node holds (`ResourceMonitor`), and its config keys."""

from __future__ import annotations

import asyncio

import pytest

from mosqit_failover.config import ConfigError, advice, parse
from mosqit_failover.daemon import _redefined
from mosqit_failover.effects import EffectError
from mosqit_failover.events import ResourceCheck
from mosqit_failover.resource_monitor import ResourceMonitor
from mosqit_failover.sim_scenarios import SIM_CONFIG


class _Runner:
    """Answers `alive` as told: True, False, or an EffectError's text."""

    def __init__(self, answer: bool | str) -> None:
        self.answer = answer
        self.asked = 0

    async def alive(self) -> bool:
        self.asked += 1
        if isinstance(self.answer, str):
            raise EffectError(self.answer)
        return self.answer


def _monitor(
    runners: dict[str, _Runner],
    vip: bool | str = True,
    wanted: bool = True,
    interval: float = 0.01,
) -> tuple[ResourceMonitor, list[ResourceCheck], list[str]]:
    checks: list[ResourceCheck] = []
    notes: list[str] = []

    def vip_held() -> bool:
        if isinstance(vip, str):
            raise EffectError(vip)
        return vip

    clock = iter(range(1000))
    monitor = ResourceMonitor(
        interval=lambda: interval,
        wanted=lambda now: wanted,
        clock=lambda: float(next(clock)),
        vip_held=vip_held,
        runners=lambda: runners,  # type: ignore[arg-type,return-value]
        report=checks.append,
        note=notes.append,
    )
    return monitor, checks, notes


def test_a_look_reports_what_runs_and_when_it_began() -> None:
    monitor, _, _ = _monitor({"db": _Runner(True), "app": _Runner(False)})
    assert asyncio.run(monitor.look()) == ResourceCheck(0.0, True, ("db",), ())


def test_what_cannot_be_told_is_unknown_and_said_once_until_it_can_be_told() -> None:
    runner = _Runner("`systemctl is-active app` did not finish within 60s")
    monitor, _, notes = _monitor({"app": runner}, vip="no such interface eth9")
    first = asyncio.run(monitor.look())
    assert first.vip is None and first.unknown == ("app",) and first.running == ()
    asyncio.run(monitor.look())
    assert len(notes) == 2 and "cannot tell whether app is held here" in notes[1]
    runner.answer = "exit 4; stdout: junk pid 295"  # another pid at each look (a helper's)
    asyncio.run(monitor.look())
    assert len(notes) == 2
    runner.answer = True
    asyncio.run(monitor.look())
    runner.answer = "another error"
    asyncio.run(monitor.look())  # told in between: said again
    assert len(notes) == 3


def test_no_status_command_runs_while_the_core_wants_no_look() -> None:
    runner = _Runner(True)
    monitor, checks, _ = _monitor({"app": runner}, wanted=False)

    async def run_briefly() -> None:
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(run_briefly())
    assert runner.asked == 0 and checks == []


def test_looks_come_on_the_interval_while_wanted() -> None:
    runner = _Runner(True)
    monitor, checks, _ = _monitor({"app": runner})

    async def run_briefly() -> None:
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(run_briefly())
    assert len(checks) >= 2 and all(c.running == ("app",) for c in checks)


def _parse(timing: str = "", app: str = "") -> None:
    text = SIM_CONFIG.replace("[vip]", f"[timing]\n{timing}\n\n[vip]", 1)
    parse(text.replace('unit = "app.service"', f'unit = "app.service"\n{app}', 1))


@pytest.mark.parametrize(
    ("timing", "app", "message"),
    [
        (
            'monitor_interval = "0.5s"',
            "",
            "timing.monitor_interval = '0.5s': must be 0 (no monitoring) or at least 1s",
        ),
        ("", "restarts = -1", "resources[1].restarts = -1: must be a whole number from 0 to 100"),
        ("", 'monitor = "yes"', "resources[1].monitor = 'yes': must be true or false"),
        ('failure_timeout = "25h"', "", "timing.failure_timeout = '25h'"),
    ],
)
def test_monitoring_keys_are_checked(timing: str, app: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(timing, app)
    assert message in str(caught.value), str(caught.value)


def test_monitoring_defaults_and_off() -> None:
    _parse('monitor_interval = "0s"\nfailure_timeout = "0s"', "monitor = false\nrestarts = 0")
    config = parse(SIM_CONFIG)
    assert config.timing.monitor_interval == 30.0 and config.timing.failure_timeout == 600.0
    assert all(r.monitor and r.restarts == 2 for r in config.resources)


def test_a_wake_ends_the_wait_and_a_shorter_interval_applies_at_once() -> None:
    """A helper's finding: a reload from 3600 s to 2 s waited out the hour."""
    runner = _Runner(True)
    interval = [3600.0]
    checks: list[ResourceCheck] = []
    monitor = ResourceMonitor(
        interval=lambda: interval[0],
        wanted=lambda now: True,
        clock=lambda: 0.0,
        vip_held=lambda: True,
        runners=lambda: {"app": runner},  # type: ignore[dict-item]
        report=checks.append,
        note=lambda text: None,
    )

    async def reload_shorter() -> None:
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.05)
        interval[0] = 0.01
        monitor.wake()
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(reload_shorter())
    assert checks, "no look within 0.1 s of the reload"


def test_check_config_names_monitoring_that_can_never_hand_over() -> None:
    text = SIM_CONFIG.replace("[vip]", '[timing]\nmonitor_interval = "300s"\n\n[vip]', 1)
    notes = advice(parse(text))
    assert any(
        n.startswith("resource db: restarts = 2, but only 2 looks (timing.monitor_interval 300s)")
        for n in notes
    ), notes
    assert not any("restarts" in n for n in advice(parse(SIM_CONFIG)))


def test_a_reload_giving_a_resource_another_unit_under_its_name_is_refused() -> None:
    """A helper's finding: the reload said nothing changed, the monitor started the new
    unit beside the old one, and after a switchover the old one ran on the standby."""
    old = parse(SIM_CONFIG)
    new = parse(SIM_CONFIG.replace('unit = "app.service"', 'unit = "app2.service"'))
    timeout = parse(
        SIM_CONFIG.replace('unit = "app.service"', 'unit = "app.service"\ntimeout = "5s"')
    )
    assert _redefined(old, new) == [("app", "unit")]
    assert _redefined(old, timeout) == [] and _redefined(old, old) == []
