"""MANUAL mode, then the active vanishes: switch A off (both nodes lose network A:
MANUAL, the active keeps serving), then the active's remaining cable (B) is
pulled. The active has lost every network and stands down (demote-isolated); the
standby logs `manual-peer-lost` (no automatic switchover: `force-active` is the
operator's call), never a false `automatic`, and does not promote. Everything
restored, the pair recovers with the node of the higher epoch (the old active)
ACTIVE."""

import time

from mosqit_failover.lab.scenarios.harness import LabScenario, Run

LOST_FOR = 6.0


def play(run: Run) -> None:
    old, new = run.active, run.standby
    run.switch("a", up=False)
    run.wait(4)
    for node in (old, new):
        run.expect("manual" in run.kinds(node), f"{node} did not go MANUAL")
    run.expect(run.roles()[old] == "ACTIVE", f"{old} stopped serving in MANUAL mode")
    lost = time.time()
    run.port(old, "b", up=False)
    run.wait(LOST_FOR)
    until = lost + LOST_FOR
    said = run.decisions(new, since=lost, until=until)
    kinds = [e["DECISION"] for e in said]
    run.expect("manual-peer-lost" in kinds, f"{new} did not log manual-peer-lost ({kinds})")
    for entry in said:
        if entry["DECISION"] == "manual-peer-lost":
            text = str(entry["MESSAGE"])
            run.expect("force-active" in text, f"manual-peer-lost does not say what to do: {text}")
    run.expect("promote" not in kinds, f"{new} promoted")
    for node in (old, new):
        automatic = "automatic" in run.kinds(node, since=lost, until=until)
        run.expect(not automatic, f"{node} said automatic mode while the loss lasted")
    run.expect(
        "demote-isolated" in run.kinds(old, since=lost), f"{old} did not stand down (isolated)"
    )
    roles = run.roles()
    run.expect("ACTIVE" not in roles.values(), f"a node is ACTIVE while cut off: {roles}")
    run.switch("a", up=True)
    run.port(old, "b", up=True)
    # the old active has the higher epoch: it comes back
    run.wait_roles({old: "ACTIVE", new: "STANDBY"}, timeout=30)
    run.expect("promote" not in run.kinds(new), f"{new} promoted")


SCENARIO = LabScenario(
    "manual-active-lost",
    "switch A off (MANUAL), then the active's cable B pulled: the standby logs "
    "manual-peer-lost and does not promote, the active stands down; restored",
    play,
    expected=frozenset({"manual", "manual-peer-lost", "demote-isolated", "promote"}),
)
