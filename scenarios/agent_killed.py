"""The agent on the active node is SIGKILLed: systemd restarts it, it reclaims."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    run.kill_agent(run.active)
    run.wait(4)
    run.wait_roles({run.active: "ACTIVE", run.standby: "STANDBY"})
    kinds = run.kinds(run.active)
    run.expect(kinds[:2] == ["adopt", "reclaim"], f"the restarted agent decided {kinds}")
    run.expect("promote" not in run.kinds(run.standby), "the standby promoted")
    run.expect(run.probe.longest_gap_ms(run.fault_at) < 500, "the service stopped")


SCENARIO = LabScenario(
    "agent-killed",
    "the agent on the active node is killed with SIGKILL (systemd restarts it)",
    play,
    expected=frozenset({"adopt", "reclaim"}),
)
