"""One switch fails (B, so the client on A can still reach the VIP): MANUAL, no switchover."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    run.switch("b", up=False)
    run.wait(4)
    for node in (run.active, run.standby):
        run.expect("manual" in run.kinds(node), f"{node} did not go MANUAL")
    run.expect(run.roles()[run.active] == "ACTIVE", "the active stopped serving")
    run.switch("b", up=True)
    run.wait_roles({run.active: "ACTIVE", run.standby: "STANDBY"})
    run.wait(3)
    run.expect("automatic" in run.kinds(run.active), "the active did not return to automatic")
    run.expect(run.probe.longest_gap_ms(run.fault_at) < 500, "the client lost the service")


SCENARIO = LabScenario(
    "switch-failure",
    "switch B off for 4 s: both nodes MANUAL, the active keeps serving, then automatic again",
    play,
    expected=frozenset({"manual"}),
)
