"""The path between the nodes breaks on both networks while each still reaches its
switches and clients. Documented behaviour: a quorumless pair cannot tell this from
a dead peer, so the standby promotes and both serve while the partition lasts (the
client on switch A follows the last gratuitous ARP). When the path heals, the two
actives see each other and the lower epoch (the old active) demotes at once."""

from mosqit_failover.lab.scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    old, new = run.active, run.standby
    run.cut_between(("a", "b"), broken=True)
    run.wait(5)
    run.expect("promote" in run.kinds(new), f"{new} did not promote")
    run.cut_between(("a", "b"), broken=False)
    run.wait(2)
    run.expect("demote-dual-active" in run.kinds(old), f"{old} did not demote on healing")
    run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=20)


SCENARIO = LabScenario(
    "peer-link-both",
    "the node-to-node path drops on both networks for 5 s (documented: both serve, "
    "then the lower epoch demotes on healing)",
    play,
    expected=frozenset({"promote", "demote-dual-active"}),
    dual_vip_allowed=1.0,  # after healing, until the old active has released the VIP
)
