"""Both switches off: the active stands down, both wait; the freshest data returns."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    run.both_switches(up=False)
    run.wait(4)
    run.expect("demote-isolated" in run.kinds(run.active), "the active kept its resources")
    run.expect(all(r != "ACTIVE" for r in run.roles().values()), "a node is still ACTIVE")
    run.expect("promote" not in run.kinds(run.standby), "the standby promoted while cut off")
    run.both_switches(up=True)
    # the last active has the highest epoch: its data is the freshest, it comes back
    run.wait_roles({run.active: "ACTIVE", run.standby: "STANDBY"}, timeout=20)
    run.expect("promote" not in run.kinds(run.standby), "the standby with older data won")


SCENARIO = LabScenario(
    "split-brain",
    "both switches off for 4 s, then back: stand down, wait, freshest data wins",
    play,
    expected=frozenset({"demote-isolated", "promote", "manual"}),
)
