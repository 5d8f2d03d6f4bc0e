"""The standby fails and returns: the active serves on undisturbed."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    run.cut_off(run.standby)
    run.wait(5)
    run.reconnect(run.standby)
    run.wait_roles({run.active: "ACTIVE", run.standby: "STANDBY"}, timeout=20)
    run.expect(run.probe.longest_gap_ms(run.fault_at) < 300, "the client saw an outage")
    run.expect(
        set(run.probe.who_answered(run.fault_at or run.started)) == {run.active},
        "someone else answered",
    )


SCENARIO = LabScenario(
    "standby-failure",
    "the standby is cut off for 5 s and returns: no disruption of the active",
    play,
    expected=frozenset(),
)
