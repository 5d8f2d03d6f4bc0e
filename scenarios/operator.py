"""Operator commands: switchover; maintenance mode; force-active with one node alive."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def _switchover(run: Run) -> None:
    old, new = run.active, run.standby
    out = run.command(old, "switchover")
    run.expect("handing over" in out, f"switchover said: {out}")
    run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=15)
    run.expect(run.probe.longest_gap_ms(run.fault_at) < 1000, "switchover outage over 1 s")


def _maintenance_and_force(run: Run) -> None:
    old, new = run.active, run.standby
    run.command(new, "maintenance", "on")
    run.cut_off(old)
    run.wait(3)
    run.expect("promote" not in run.kinds(new), "promoted in maintenance mode")
    out = run.command(new, "force-active", "--yes")
    run.expect("DATA MAY BE STALE" in out, f"force-active said: {out}")
    run.wait_roles({new: "ACTIVE"}, timeout=10)
    run.command(new, "maintenance", "off")
    run.reconnect(old)
    run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=20)


SCENARIOS = [
    LabScenario(
        "switchover",
        "the operator hands the service over to the standby",
        _switchover,
        expected=frozenset({"switchover", "promote"}),
    ),
    LabScenario(
        "maintenance-force-active",
        "standby in maintenance; the active is cut off: no promotion; the operator "
        "forces the standby active (stale-data warning)",
        _maintenance_and_force,
        expected=frozenset({"maintenance", "force-active", "demote-isolated"}),
    ),
]
