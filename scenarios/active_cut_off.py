"""The active node loses both cables: the standby promotes after three missed echoes."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    old, new = run.active, run.standby
    run.cut_off(old)
    answer = run.probe.wait_answer_from(new, after=run.fault_at or 0, timeout=10)
    run.expect(answer.recv - (run.fault_at or 0) < 2.0, "failover took longer than 2 s")
    run.wait(2)
    run.expect("promote" in run.kinds(new), f"{new} did not promote")
    run.expect("demote-isolated" in run.kinds(old), f"{old} did not stand down")
    run.reconnect(old)
    run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=20)


SCENARIO = LabScenario(
    "active-cut-off",
    "the active node's cables to both switches are pulled, then plugged back",
    play,
    expected=frozenset({"promote", "demote-isolated"}),
)
