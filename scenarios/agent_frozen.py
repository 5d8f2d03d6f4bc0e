"""Only the agent on the active node is stopped (SIGSTOP to its main process; the
kernel, sshd and the service run on) for 6 s, longer than service_timeout (3 s):
the standby sees an OS problem, fences the old active over ssh (the fence kills the
stopped agent, removes the VIP, stops the service; systemd restarts the agent) and
only then promotes ("fenced: ..."). Never two VIP holders; the old active's new
agent comes back STANDBY.

The same under 30 % loss on both networks: echo misses come in a row there every
few seconds, and a standby that took them for death promoted without a fence while
the hung node kept the VIP. It must tell the hang by the replies between them."""

from typing import Any

from mosqit_failover.lab.scenarios.harness import LabScenario, Run

FROZEN_FOR = 6.0
# shorter than systemd's watchdog (WatchdogSec=15s, pinged every 7.5 s) can be sure to
# leave the stopped agent alone; the fence, begun 3 s in, may or may not get through
LOSSY_FROZEN_FOR = 7.0
FENCE_SETTLES = 11.0  # a fence begun before the thaw ends within fencing.timeout (10 s)


def _fenced_lines(run: Run, node: str) -> list[dict[str, Any]]:
    entries = run.lab[node].journal(identifier="mosqit-failover", since=run.started)
    return [e for e in entries if "FENCED_BY_EPOCH" in e]


def _frozen(run: Run) -> None:
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
    fenced = _fenced_lines(run, old)
    run.expect(len(fenced) == 1, f"{old} logged {len(fenced)} fence(s) by the peer")
    run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=20)
    run.expect(run.agent_pid(old) not in (0, pid), f"{old}'s agent was not killed and restarted")
    answer = run.probe.first_answer_from(new, run.fault_at or run.started)
    run.expect(answer is not None, f"the client never reached {new}")


def _frozen_under_loss(run: Run) -> None:
    """Three endings are right: the fence got through and the standby took over; or it
    did not (ssh sessions die at this loss) and the agent, resumed, serves on; or it
    got through, but the old active's agent, restarted by systemd, was heard before
    the fence's answer reached the standby (the answer then counts for nothing: the
    peer is back) and won the election as the node with the freshest data, so it
    serves again after an outage of a start. Wrong is a promotion without the fence:
    the old code promoted on the misses, with the VIP on both nodes (the harness's
    samples catch that too; one run in sixteen did so before the misses were weighed
    against the loss)."""
    old, new = run.active, run.standby
    run.loss(30)
    run.wait(3)  # both nodes see the loss and probe every interval
    run.stop_agent(old, stopped=True)
    run.wait(LOSSY_FROZEN_FOR)
    run.stop_agent(old, stopped=False)
    run.loss(0)
    run.wait(FENCE_SETTLES)
    entries = run.decisions(new)
    kinds = [e["DECISION"] for e in entries]
    run.expect("fence" in kinds, f"{new} did not fence (it decided {kinds})")
    promotes = kinds.count("promote")
    fenced = len(_fenced_lines(run, old))
    if promotes:
        # after the fence's kill, the restarted agent's WAITING may reach the standby
        # before the fence's answer does: it takes over as "nobody is active" then
        run.expect(promotes == 1, f"{new} promoted {promotes} times")
        run.expect(fenced == 1, f"{new} took over, {old} logged {fenced} fence(s) by the peer")
        run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=20)
    else:
        if fenced:
            won = [e for e in run.decisions(old) if e["DECISION"] == "promote"]
            text = str(won[-1].get("MESSAGE", "")) if won else ""
            run.expect(
                "I win the election" in text,
                f"{old} was fenced, {new} did not take over, and {old} did not win the "
                f"election either (its last promotion: {text or 'none'})",
            )
        run.wait_roles({old: "ACTIVE", new: "STANDBY"}, timeout=20)


SCENARIOS = [
    LabScenario(
        "agent-frozen",
        f"the agent on the active node stopped (SIGSTOP) for {FROZEN_FOR:g} s: the standby "
        "fences it over ssh, then promotes; the old active's agent restarts as standby",
        _frozen,
        expected=frozenset({"fence", "promote"}),
    ),
    LabScenario(
        "agent-frozen-loss-30",
        f"30% loss on both networks, then the active's agent stopped for "
        f"{LOSSY_FROZEN_FOR:g} s: echo misses in a row do not pass for death while the "
        "kernel answers between them; the standby promotes only once the fence got through",
        _frozen_under_loss,
        expected=frozenset({"fence", "fence-failed", "promote"}),
    ),
]
