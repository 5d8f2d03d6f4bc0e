"""Only the path between the nodes breaks, on one network: nothing should move."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    run.cut_between(("a",), broken=True)
    run.wait(6)
    run.cut_between(("a",), broken=False)
    run.wait(2)
    run.expect(run.roles() == {run.active: "ACTIVE", run.standby: "STANDBY"}, "roles changed")
    run.expect(run.probe.longest_gap_ms(run.fault_at) < 300, "the client saw an outage")


SCENARIO = LabScenario(
    "peer-link-one",
    "the node-to-node path on network A drops for 6 s (switches reachable): nothing moves",
    play,
    expected=frozenset(),
)
