"""Every process of the active node frozen for 5 s: the standby promotes (OS problem:
its agent is silent although the kernel answers echo); the old active demotes at
once when it wakes, before it serves anything."""

from scenarios.harness import LabScenario, Run


def play(run: Run) -> None:
    old, new = run.active, run.standby
    run.freeze(old, frozen=True)
    run.wait(5)
    run.expect("promote" in run.kinds(new), f"{new} did not promote")
    run.freeze(old, frozen=False)
    run.wait(2)
    run.expect("demote-dual-active" in run.kinds(old), f"{old} did not demote on waking")
    run.wait_roles({new: "ACTIVE", old: "STANDBY"}, timeout=20)


SCENARIO = LabScenario(
    "active-frozen",
    "the active node frozen (every process stopped) for 5 s, then resumed",
    play,
    expected=frozenset({"promote", "demote-dual-active"}),
    dual_vip_allowed=1.0,  # from the moment it wakes until it has released the VIP
)
