"""Only the agent on the active node is stopped (SIGSTOP to its main process; the
kernel, sshd and the service run on) for 6 s, longer than service_timeout (3 s):
the standby sees an OS problem, fences the old active over ssh (the fence kills the
stopped agent, removes the VIP, stops the service; systemd restarts the agent) and
only then promotes ("fenced: ..."). Never two VIP holders; the old active's new
agent comes back STANDBY."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run

FROZEN_FOR = 6.0


def play(run: Run) -> None:
    old, new = run.active, run.standby
    pid = run.agent_pid(old)
    run.stop_agent(old, stopped=True)
    run.wait(FROZEN_FOR)
    run.stop_agent(old, stopped=False)  # whatever is left: the fence killed the stopped one
    entries = run.decisions(new)
    kinds = [e["DECISION"] for e in entries]
    run.expect("fence" in kinds, f"{new} did not fence (it decided {kinds})")
    run.expect("fence-failed" not in kinds, f"{new}: the ssh fence failed")
    promotes = [e for e in entries if e["DECISION"] == "promote"]
    run.expect(len(promotes) == 1, f"{new} promoted {len(promotes)} times")
    if promotes and "fence" in kinds:
        run.expect(kinds.index("fence") < kinds.index("promote"), f"{new} promoted before fencing")
        text = str(promotes[0].get("MESSAGE", ""))
        run.expect("fenced:" in text, f"{new}'s promotion does not say how it fenced: {text}")
    fenced = [
        e
        for e in run.lab[old].journal(identifier="mosqit-failover", since=run.started)
        if "FENCED_BY_EPOCH" in e
    ]
    run.expect(len(fenced) == 1, f"{old} logged {len(fenced)} fence(s) by the peer")
    run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=20)
    run.expect(run.agent_pid(old) not in (0, pid), f"{old}'s agent was not killed and restarted")
    answer = run.probe.first_answer_from(new, run.fault_at or run.started)
    run.expect(answer is not None, f"the client never reached {new}")


SCENARIO = LabScenario(
    "agent-frozen",
    f"the agent on the active node stopped (SIGSTOP) for {FROZEN_FOR:g} s: the standby "
    "fences it over ssh, then promotes; the old active's agent restarts as standby",
    play,
    expected=frozenset({"fence", "promote"}),
)
