"""Named failure scenarios for the in-memory simulation (`mosqit-failover simulate`).

Each scenario schedules faults into a World and says what must hold at the
end; `run(name)` returns the world and the list of broken expectations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mosqit_failover.config import Config, parse
from mosqit_failover.events import Command, OperatorCommand, Role
from mosqit_failover.simulation import World

SIM_CONFIG = """
[cluster]
name = "sim"
preferred = "alpha"

[vip]
address = "10.231.1.50/24"
interface = "eth0"

[networks.a]
subnet = "10.231.1.0/24"
switch = "10.231.1.1"

[networks.b]
subnet = "10.231.2.0/24"
switch = "10.231.2.1"

[nodes.alpha]
a = { interface = "eth0", address = "10.231.1.11" }
b = { interface = "eth1", address = "10.231.2.11" }

[nodes.beta]
a = { interface = "eth0", address = "10.231.1.12" }
b = { interface = "eth1", address = "10.231.2.12" }

[[resources]]
name = "db"
kind = "systemd"
unit = "db.service"

[[resources]]
name = "app"
kind = "systemd"
unit = "app.service"

[[sync]]
path = "/srv/data"
"""


def sim_config() -> Config:
    return parse(SIM_CONFIG, "<simulation>")


EXTRA_NODES = ("gamma", "delta", "epsilon", "zeta", "eta", "theta")


def sim_config_text(
    count: int, synchronous: bool = False, profile: str = "standard", synced: bool = True
) -> str:
    """SIM_CONFIG's text with `count` nodes: alpha, beta, gamma, ... in that order; its
    directory synchronous, a timing profile other than the standard one, no synced
    directory at all (`synced`), if asked."""
    text = SIM_CONFIG
    if not synced:
        text = text.replace('[[sync]]\npath = "/srv/data"\n', "")
    if synchronous:
        text = text.replace('path = "/srv/data"\n', 'path = "/srv/data"\nmode = "synchronous"\n')
    if profile != "standard":
        text = text.replace("[vip]", f'[timing]\nprofile = "{profile}"\n\n[vip]', 1)
    if count == 2:
        return text
    names = ("alpha", "beta", *EXTRA_NODES[: count - 2])
    extra = "".join(
        f"[nodes.{name}]\n"
        f'a = {{ interface = "eth0", address = "10.231.1.{11 + i}" }}\n'
        f'b = {{ interface = "eth1", address = "10.231.2.{11 + i}" }}\n\n'
        for i, name in enumerate(names)
        if i >= 2
    )
    text = text.replace("[[resources]]", extra + "[[resources]]", 1)
    order = ", ".join(f'"{n}"' for n in names)
    return text.replace('name = "sim"\n', f'name = "sim"\norder = [{order}]\n', 1)


def sim_config_n(count: int) -> Config:
    """SIM_CONFIG with `count` nodes: alpha, beta, gamma, ... in that order."""
    if count == 2:
        return sim_config()
    return parse(sim_config_text(count), "<simulation>")


Check = Callable[[World], list[str]]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    duration: float
    inject: Callable[[World], None]
    check: Check
    nodes: int = 2  # alpha, beta, then gamma, ...
    synchronous: bool = False  # the [[sync]] directory in synchronous mode
    synced: bool = True  # False: no [[sync]] directory at all
    profile: str = "standard"  # timing.profile


SETTLED = 10.0  # by then the pair has formed: alpha ACTIVE, beta STANDBY


def expect_roles(**wanted: Role) -> Check:
    def check(world: World) -> list[str]:
        roles = world.roles()
        problems = []
        for node, role in wanted.items():
            ended = roles[node]
            if ended is not role:
                state = ended.value if ended else "DOWN"
                problems.append(f"{node} ended {state}, expected {role.value}")
        return problems

    return check


def expect_decision(node: str, kind: str, after: float = 0.0) -> Check:
    def check(world: World) -> list[str]:
        found = any(
            line.decision is not None and line.decision.kind == kind and line.time >= after
            for line in world.timeline
            if line.node == node
        )
        return [] if found else [f"{node} never decided {kind!r} after t={after:g}s"]

    return check


def expect_no_decision(node: str, kind: str, after: float = 0.0, until: float = math.inf) -> Check:
    def check(world: World) -> list[str]:
        bad = [
            line
            for line in world.timeline
            if line.node == node
            and line.decision
            and line.decision.kind == kind
            and after <= line.time < until
        ]
        return [f"{node} unexpectedly: {b.text} at t={b.time:.3f}" for b in bad]

    return check


def no_dual_vip(world: World) -> list[str]:
    if world.dual_vip_seconds > 0:
        return [
            f"both nodes held the VIP while they could hear each other for "
            f"{world.dual_vip_seconds:.3f}s"
        ]
    return []


def dual_holders_within(bound: float) -> Check:
    """Two VIP holders on a cable, heard or not (one of them hung), for `bound` at most
    (0: never; a late fence's time)."""

    def check(world: World) -> list[str]:
        if world.dual_holders_worst > bound:
            return [f"two nodes held the VIP at once for {world.dual_holders_worst:.3f}s"]
        return []

    return check


no_dual_holders = dual_holders_within(0.0)


def no_dual_clients(world: World) -> list[str]:
    """Never two VIP holders that both reach the clients' network, heard or not."""
    if world.dual_clients_worst > 0:
        return [
            f"two nodes held the VIP on the clients' network for {world.dual_clients_worst:.3f}s"
        ]
    return []


def dual_vip_within(bound: float) -> Check:
    """Holders that hear each other resolve within `bound` (a heal)."""

    def check(world: World) -> list[str]:
        if world.dual_vip_worst > bound:
            return [f"holders heard each other for {world.dual_vip_worst:.3f}s (> {bound:g}s)"]
        return []

    return check


def one_active(world: World) -> list[str]:
    actives = world.active_nodes()
    holders = sorted(n.name for n in world.nodes.values() if n.holds_vip)
    if len(actives) != 1 or holders != actives:
        return [f"ended with actives {actives} and VIP holders {holders}"]
    return []


def one_fence(world: World) -> list[str]:
    """At most one FencePeer of any one node (two standbys fencing it both think they
    take over)."""
    fenced = [line.text for line in world.timeline if line.text.startswith("FencePeer")]
    twice = sorted({t for t in fenced if fenced.count(t) > 1})
    return [f"fenced more than once: {t}" for t in twice]


def all_of(*checks: Check) -> Check:
    def check(world: World) -> list[str]:
        return [problem for c in checks for problem in c(world)]

    return check


def _switch_failure(w: World) -> None:
    w.set_switch("a", False, SETTLED)
    w.set_switch("a", True, SETTLED + 10)


def _active_failure(w: World) -> None:
    w.set_port("alpha", "a", False, SETTLED)
    w.set_port("alpha", "b", False, SETTLED)


def _split_brain(w: World) -> None:
    for net in ("a", "b"):
        w.set_switch(net, False, SETTLED)
        w.set_switch(net, True, SETTLED + 10)


def _standby_failure(w: World) -> None:
    w.power_off("beta", SETTLED)
    w.boot("beta", SETTLED + 10)


def _partition_heal(w: World) -> None:
    for net in ("a", "b"):
        w.set_peer_link(net, False, SETTLED)
        w.set_peer_link(net, True, SETTLED + 10)


def _flapping_link(w: World) -> None:
    t = SETTLED
    for _ in range(20):  # 4 flaps a second for 5 seconds on the active's uplink A
        w.set_port("alpha", "a", False, t)
        w.set_port("alpha", "a", True, t + 0.1)
        t += 0.25


def _lossy_network(w: World) -> None:
    for net in ("a", "b"):
        w.set_loss(net, 0.3, SETTLED)
        w.set_loss(net, 0.0, SETTLED + 120)


def _echo_filtered(w: World) -> None:
    w.filter_echo("b", SETTLED)
    w.set_loss("a", 0.3, SETTLED + 1)  # trouble: a calm standard pair probes nobody
    w.set_loss("a", 0.0, SETTLED + 3)


def _active_frozen(w: World) -> None:
    w.freeze("alpha", SETTLED, 5.0)


def _agent_frozen(w: World) -> None:
    w.freeze("alpha", SETTLED, 6.0, agent_only=True)


def _agent_frozen_under_loss(w: World) -> None:
    for net in ("a", "b"):
        w.set_loss(net, 0.3, SETTLED)
    w.freeze("alpha", SETTLED + 5, 20.0, agent_only=True)


def _mismatched_secrets(w: World) -> None:
    w.set_secrets_differ(True, SETTLED)
    w.power_off("alpha", SETTLED + 20)


def _manual_active_lost(w: World) -> None:
    w.set_switch("a", False, SETTLED)
    w.set_port("alpha", "b", False, SETTLED + 5)


def _agent_killed(w: World) -> None:
    w.kill_agent("alpha", SETTLED, restart_after=1.0)


def _lost_uplink(w: World) -> None:
    w.set_port("alpha", "a", False, SETTLED)


def _switchover(w: World) -> None:
    w.command("alpha", OperatorCommand(Command.SWITCHOVER), SETTLED)


def _start_failure(w: World) -> None:
    w.nodes["beta"].fail_start.add("app")
    w.power_off("alpha", SETTLED)


def _force_active(w: World) -> None:
    w.power_off("alpha", SETTLED)
    w.set_port("beta", "b", False, SETTLED)  # beta alone, one network: no automatic promotion
    w.command("beta", OperatorCommand(Command.FORCE_ACTIVE), SETTLED + 5)


def _three_active_failure(w: World) -> None:
    w.set_port("alpha", "a", False, SETTLED)
    w.set_port("alpha", "b", False, SETTLED)


def _three_two_die(w: World) -> None:
    w.power_off("alpha", SETTLED)
    w.power_off("beta", SETTLED)


def _three_sync_behind(w: World) -> None:
    w.set_sync_behind("beta", True, 0.0)  # beta never caught up in alpha's epoch
    w.power_off("alpha", SETTLED)


def _three_sync_falls_behind(w: World) -> None:
    w.set_sync_behind("beta", True, SETTLED)  # beta was in sync, then misses writes
    w.power_off("alpha", SETTLED + 2)


def _three_stream_window(w: World) -> None:
    # the mount drops beta's channel and acknowledges with gamma alone; alpha dies 0.3 s
    # later, before its sync manager (a status poll every 0.5 s) says beta missed writes
    w.drop_from_stream("beta", SETTLED)
    w.set_sync_behind("beta", True, SETTLED + 0.5)
    w.power_off("alpha", SETTLED + 0.3)


def _three_hung_active(w: World) -> None:
    w.freeze("alpha", SETTLED, 30, agent_only=True)  # its mount, a process of its own, serves on


def _three_cut_from_active(w: World) -> None:
    for net in ("a", "b"):  # beta no longer hears alpha (nor gets its writes); gamma does
        w.set_link("alpha", "beta", net, False, SETTLED)
    w.power_off("alpha", SETTLED + 5)


def _three_hung_cut_off(w: World) -> None:
    for net in ("a", "b"):  # beta no longer hears alpha; gamma does
        w.set_link("alpha", "beta", net, False, SETTLED)
    w.freeze("alpha", SETTLED + 5, 6, agent_only=True)  # the VIP and services stay up


def _three_standby_partition(w: World) -> None:
    for net in ("a", "b"):
        w.set_link("beta", "gamma", net, False, SETTLED)
    w.power_off("alpha", SETTLED + 5)


def _three_heal(w: World) -> None:
    for net in ("a", "b"):
        w.set_peer_link(net, False, SETTLED)
        w.set_peer_link(net, True, SETTLED + 10)


def _three_manual(w: World) -> None:
    w.set_switch("a", False, SETTLED)
    w.set_switch("a", True, SETTLED + 10)


def _three_handover(w: World) -> None:
    w.set_port("beta", "b", False, SETTLED - 3)  # beta lacks network b: no candidate
    w.set_port("alpha", "a", False, SETTLED)


def _three_switchover_to(w: World) -> None:
    w.command("alpha", OperatorCommand(Command.SWITCHOVER, "gamma"), SETTLED)


def _three_site_restart(w: World) -> None:
    w.command("alpha", OperatorCommand(Command.SWITCHOVER, "gamma"), SETTLED)
    for name in ("alpha", "beta", "gamma"):
        w.power_off(name, SETTLED + 10)
    w.boot("alpha", SETTLED + 12)
    w.boot("beta", SETTLED + 12.5)
    w.boot("gamma", SETTLED + 14)


A, S, W_ = Role.ACTIVE, Role.STANDBY, Role.WAITING

# beta (first in the order) missed writes of alpha's epoch: gamma, which holds them,
# takes over when alpha dies
_GAMMA_PROMOTES_OVER_BETA = all_of(
    expect_roles(beta=S, gamma=A),
    expect_no_decision("beta", "promote", SETTLED),
    expect_decision("gamma", "promote", SETTLED),
    no_dual_clients,
)
# beta and gamma cannot hear each other: gamma says so and leaves it to beta, first in the
# order (its count, however it moved, never counts against a peer it cannot hear)
_GAMMA_PARTITIONED_BETA_PROMOTES = all_of(
    expect_roles(beta=A, gamma=S),
    expect_decision("gamma", "partitioned", SETTLED),
    expect_no_decision("gamma", "promote", SETTLED),
    no_dual_clients,
)
# alpha's agent hung under loss: beta fences it once and takes over; two VIP holders
# at most for a late fence's time (needed in 1 standard seed of 30, 1 fast one of 10)
_HUNG_UNDER_LOSS_FENCED = all_of(
    expect_roles(alpha=S, beta=A),
    expect_decision("beta", "fence", SETTLED),
    one_fence,
    dual_holders_within(1.0),
)
# ... having withdrawn the epoch first
_BETA_WITHDRAWS_GAMMA_PROMOTES = all_of(
    _GAMMA_PROMOTES_OVER_BETA, expect_decision("beta", "data-epoch-withdrawn", SETTLED)
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "switch-failure",
            "switch A fails for 10 s: both nodes MANUAL, alpha keeps serving, then automatic",
            30,
            _switch_failure,
            all_of(
                expect_roles(alpha=A, beta=S),
                expect_decision("alpha", "manual", SETTLED),
                expect_decision("beta", "manual", SETTLED),
                expect_decision("alpha", "automatic", SETTLED + 10),
                expect_no_decision("beta", "promote", SETTLED),
                no_dual_vip,
            ),
        ),
        Scenario(
            "active-failure",
            "alpha's cables to both switches are pulled: beta promotes after the third miss",
            20,
            _active_failure,
            all_of(
                expect_roles(alpha=W_, beta=A),
                expect_decision("beta", "promote", SETTLED),
                expect_decision("alpha", "demote-isolated", SETTLED),
            ),
        ),
        Scenario(
            "split-brain",
            "both switches off for 10 s: alpha stands down, both wait; then the freshest wins",
            35,
            _split_brain,
            all_of(
                expect_roles(alpha=A, beta=S),
                expect_decision("alpha", "demote-isolated", SETTLED),
                expect_no_decision("beta", "promote", SETTLED),
                no_dual_vip,
            ),
        ),
        Scenario(
            "standby-failure",
            "beta powers off for 10 s and returns: alpha serves throughout",
            30,
            _standby_failure,
            all_of(
                expect_roles(alpha=A, beta=S),
                expect_no_decision("alpha", "handover", SETTLED),
                expect_no_decision("alpha", "demote-isolated", SETTLED),
                no_dual_vip,
            ),
        ),
        Scenario(
            "partition-heal",
            "only the node-to-node path breaks on both networks for 10 s: beta promotes "
            "(it cannot tell a dead peer), then the two actives meet and the lower epoch demotes",
            30,
            _partition_heal,
            all_of(
                expect_roles(alpha=S, beta=A),
                expect_decision("beta", "promote", SETTLED),
                expect_decision("alpha", "demote-dual-active", SETTLED + 10),
            ),
        ),
        Scenario(
            "flapping-link",
            "alpha's uplink A flaps 4 times a second for 5 s: at most one handover, no flapping",
            30,
            _flapping_link,
            all_of(expect_roles(alpha=A, beta=S), no_dual_vip),
        ),
        Scenario(
            "lossy-network",
            "30% random loss on both networks for 2 minutes: no false failover",
            140,
            _lossy_network,
            all_of(
                expect_roles(alpha=A, beta=S),
                expect_no_decision("beta", "promote", SETTLED),
                no_dual_vip,
            ),
        ),
        Scenario(
            "echo-filtered",
            "a firewall drops ICMP echo between the nodes on network b, the peer messages "
            "pass; a little loss on a turns the probes on: both nodes say so (echo-blocked), "
            "nothing moves",
            30,
            _echo_filtered,
            all_of(
                expect_roles(alpha=A, beta=S),
                expect_decision("alpha", "echo-blocked", SETTLED + 10),
                expect_decision("beta", "echo-blocked", SETTLED + 10),
                expect_no_decision("beta", "promote", SETTLED),
                expect_no_decision("alpha", "handover", SETTLED),
                no_dual_vip,
            ),
        ),
        Scenario(
            "active-frozen",
            "every process on alpha stopped for 5 s, sshd too: beta cannot fence it, so it "
            "does not promote (fencing.on_failure = wait); alpha serves on when it wakes",
            25,
            _active_frozen,
            all_of(
                expect_roles(alpha=A, beta=S),
                expect_decision("beta", "fence-failed", SETTLED),
                expect_no_decision("beta", "promote", SETTLED),
                no_dual_holders,
            ),
        ),
        Scenario(
            "agent-frozen",
            "the agent on alpha stopped for 6 s (sshd runs): beta fences alpha over ssh, "
            "then promotes; alpha's agent, killed by the fence, comes back as standby",
            25,
            _agent_frozen,
            all_of(
                expect_roles(alpha=S, beta=A),
                expect_decision("beta", "fence", SETTLED),
                expect_decision("beta", "promote", SETTLED),
                no_dual_holders,
            ),
        ),
        Scenario(
            "agent-frozen-under-loss",
            "30% loss on both networks, then alpha's agent stops for 20 s: echo misses in a "
            "row do not pass for death while alpha's kernel answers between them; beta "
            "fences alpha, then promotes (a hang that looked like death gave two VIP "
            "holders for the whole 20 s)",
            40,
            _agent_frozen_under_loss,
            _HUNG_UNDER_LOSS_FENCED,
        ),
        Scenario(
            "agent-frozen-under-loss-fast",
            "agent-frozen-under-loss with the fast profile: its 25 ms window can end before "
            "any echo reply proves alpha's host alive, and beta promotes on the misses; "
            "the replies that come next make it fence alpha as active, within a fence's "
            "time",
            40,
            _agent_frozen_under_loss,
            _HUNG_UNDER_LOSS_FENCED,
            profile="fast",
        ),
        Scenario(
            "mismatched-secrets",
            "beta's secret is replaced by another: nobody promotes while the datagrams fail "
            "authentication; when alpha then powers off, beta takes over",
            40,
            _mismatched_secrets,
            all_of(
                expect_decision("beta", "peer-auth-failed", SETTLED),
                expect_decision("alpha", "peer-auth-failed", SETTLED),
                expect_no_decision("beta", "promote", SETTLED, until=SETTLED + 20),
                expect_decision("beta", "promote", SETTLED + 20),
                expect_roles(beta=A),
                no_dual_holders,
            ),
        ),
        Scenario(
            "manual-active-lost",
            "switch a fails (MANUAL), then alpha loses its cable to switch b: beta says the "
            "active is lost, claims no automatic mode and leaves the takeover to the operator",
            30,
            _manual_active_lost,
            all_of(
                expect_decision("beta", "manual-peer-lost", SETTLED),
                expect_no_decision("beta", "automatic", SETTLED),
                expect_no_decision("alpha", "automatic", SETTLED),
                expect_no_decision("beta", "promote", SETTLED),
                expect_roles(alpha=W_, beta=W_),
            ),
        ),
        Scenario(
            "agent-killed",
            "the agent on alpha is SIGKILLed and restarted 1 s later: it reclaims, nothing moves",
            20,
            _agent_killed,
            all_of(
                expect_roles(alpha=A, beta=S),
                expect_decision("alpha", "reclaim", SETTLED),
                expect_no_decision("beta", "promote", SETTLED),
                no_dual_vip,
            ),
        ),
        Scenario(
            "lost-uplink",
            "alpha alone loses its cable to switch A: beta sees both networks and takes over",
            20,
            _lost_uplink,
            all_of(
                expect_roles(alpha=W_, beta=A),
                expect_decision("alpha", "handover", SETTLED),
                expect_decision("beta", "promote", SETTLED),
                no_dual_vip,
            ),
        ),
        Scenario(
            "switchover",
            "the operator asks alpha to hand over: beta becomes active",
            20,
            _switchover,
            all_of(expect_roles(alpha=S, beta=A), no_dual_vip),
        ),
        Scenario(
            "start-failure",
            "alpha powers off; beta's app fails to start: beta rolls back, alerts, waits",
            20,
            _start_failure,
            all_of(
                expect_decision("beta", "plan-failed", SETTLED),
                expect_roles(beta=S),
            ),
        ),
        Scenario(
            "force-active",
            "alpha is gone and beta lost network B: no automatic promotion; the operator "
            "forces beta active (the decision line warns of stale data)",
            20,
            _force_active,
            all_of(
                expect_roles(beta=A),
                expect_no_decision("beta", "promote", SETTLED),
                expect_decision("beta", "force-active", SETTLED + 5),
            ),
        ),
        Scenario(
            "three-active-failure",
            "three nodes; alpha's cables are pulled: beta (first in order, in sync) promotes, "
            "gamma stays standby",
            20,
            _three_active_failure,
            all_of(
                expect_roles(alpha=W_, beta=A, gamma=S),
                expect_decision("beta", "promote", SETTLED),
                expect_no_decision("gamma", "promote", SETTLED),
                no_dual_clients,
            ),
            nodes=3,
        ),
        Scenario(
            "three-two-die",
            "three nodes; alpha and beta power off together: gamma skips beta once it is "
            "gone too and promotes",
            20,
            _three_two_die,
            all_of(
                expect_roles(gamma=A),
                expect_decision("gamma", "promote", SETTLED),
                no_dual_clients,
            ),
            nodes=3,
        ),
        Scenario(
            "three-sync-behind",
            "three nodes; beta's sync lags (not in in_sync), alpha powers off: gamma has "
            "the fresher data and promotes although beta is earlier in the order",
            20,
            _three_sync_behind,
            all_of(
                expect_roles(beta=S, gamma=A),
                expect_no_decision("beta", "promote", SETTLED),
                expect_decision("gamma", "promote", SETTLED),
            ),
            nodes=3,
        ),
        Scenario(
            "three-sync-falls-behind",
            "three nodes; beta was in sync in alpha's epoch, then its sync lags, alpha powers "
            "off: beta withdraws its data epoch and gamma, which holds every write, promotes "
            "although beta is earlier in the order",
            20,
            _three_sync_falls_behind,
            _BETA_WITHDRAWS_GAMMA_PROMOTES,
            nodes=3,
        ),
        Scenario(
            "three-stream-window",
            "three nodes, synchronous mode; alpha's mount drops beta's channel and goes on "
            "with gamma alone, alpha powers off 0.3 s later, before it told beta: gamma "
            "applied more commits of the epoch and promotes although beta is earlier in "
            "the order",
            20,
            _three_stream_window,
            _GAMMA_PROMOTES_OVER_BETA,
            nodes=3,
            synchronous=True,
        ),
        Scenario(
            "three-hung-active-sync",
            "three nodes, synchronous mode; alpha's agent hangs while its mount serves both "
            "standbys on: both counts move, they rank equal, and only beta (first in the "
            "order) fences alpha and promotes",
            25,
            _three_hung_active,
            all_of(
                expect_roles(beta=A, gamma=S),
                expect_no_decision("gamma", "promote", SETTLED),
                expect_no_decision("gamma", "fence", SETTLED),
                one_fence,
                no_dual_clients,
            ),
            nodes=3,
            synchronous=True,
        ),
        Scenario(
            "three-standby-partition-sync",
            "three-standby-partition in synchronous mode: gamma's own count goes on while "
            "beta's last one stops in its eyes; it still does not take over past beta",
            25,
            _three_standby_partition,
            _GAMMA_PARTITIONED_BETA_PROMOTES,
            nodes=3,
            synchronous=True,
        ),
        Scenario(
            "three-cut-from-active",
            "three nodes; the path between alpha and beta breaks (gamma hears both), alpha "
            "powers off 5 s later: beta, cut off from alpha's writes, withdraws its data "
            "epoch and gamma promotes although beta is earlier in the order",
            25,
            _three_cut_from_active,
            _BETA_WITHDRAWS_GAMMA_PROMOTES,
            nodes=3,
        ),
        Scenario(
            "three-hung-cut-off",
            "three nodes, nothing synced; the path between alpha and beta breaks (gamma "
            "hears both), alpha's agent hangs 5 s later for 6 s: beta, cut off, withdraws "
            "its data epoch; gamma, which sees alpha's kernel answer, fences alpha and "
            "promotes; beta never does",
            25,
            _three_hung_cut_off,
            all_of(
                _BETA_WITHDRAWS_GAMMA_PROMOTES,
                expect_decision("gamma", "fence", SETTLED),
                expect_no_decision("beta", "fence", SETTLED),
                one_fence,
            ),
            nodes=3,
            synced=False,
        ),
        Scenario(
            "three-standby-partition",
            "three nodes; beta and gamma stop hearing each other, then alpha powers off: "
            "gamma says it cannot hear beta and does not promote, beta does",
            25,
            _three_standby_partition,
            _GAMMA_PARTITIONED_BETA_PROMOTES,
            nodes=3,
        ),
        Scenario(
            "three-heal",
            "three nodes; the paths between all nodes break for 10 s: the standbys promote; "
            "once healed the actives resolve to one (lower epoch, then order, demotes)",
            35,
            _three_heal,
            all_of(
                one_active,
                expect_decision("alpha", "demote-dual-active", SETTLED + 10),
                dual_vip_within(0.5),
            ),
            nodes=3,
        ),
        Scenario(
            "three-manual",
            "three nodes; switch a fails for 10 s: every node MANUAL, alpha keeps serving, "
            "nobody promotes, then automatic again",
            30,
            _three_manual,
            all_of(
                expect_roles(alpha=A, beta=S, gamma=S),
                expect_decision("alpha", "manual", SETTLED),
                expect_decision("gamma", "manual", SETTLED),
                expect_decision("alpha", "automatic", SETTLED + 10),
                expect_no_decision("beta", "promote", SETTLED),
                expect_no_decision("gamma", "promote", SETTLED),
                no_dual_vip,
            ),
            nodes=3,
        ),
        Scenario(
            "three-handover",
            "three nodes; beta lacks network b, then alpha loses network a: alpha hands "
            "over to gamma, the candidate that has both",
            25,
            _three_handover,
            all_of(
                expect_roles(alpha=W_, beta=W_, gamma=A),
                expect_decision("alpha", "handover", SETTLED),
                expect_no_decision("beta", "promote", SETTLED),
                no_dual_vip,
            ),
            nodes=3,
        ),
        Scenario(
            "three-switchover-to",
            "three nodes; switchover --to gamma on alpha: gamma becomes active although "
            "beta is earlier in the order, and beta never promotes",
            20,
            _three_switchover_to,
            all_of(
                expect_roles(alpha=S, beta=S, gamma=A),
                expect_no_decision("beta", "promote", SETTLED),
                no_dual_vip,
            ),
            nodes=3,
        ),
        Scenario(
            "three-site-restart",
            "three nodes; gamma becomes active by switchover, then the whole site powers "
            "off and comes back (alpha first, gamma last): gamma, the freshest, wins",
            35,
            _three_site_restart,
            all_of(
                expect_roles(alpha=S, beta=S, gamma=A),
                expect_no_decision("alpha", "promote", SETTLED + 5),
                expect_no_decision("beta", "promote", SETTLED + 5),
                no_dual_vip,
            ),
            nodes=3,
        ),
    ]
}


def formed(count: int, seed: int, profile: str = "standard") -> World:
    """`count` nodes booted at once and run until SETTLED: alpha active, the rest
    standing by."""
    world = World(parse(sim_config_text(count, profile=profile), "<simulation>"), seed=seed)
    for node in world.config.nodes:
        world.boot(node.name)
    world.run_until(SETTLED)
    return world


def run(name: str, seed: int = 1) -> tuple[World, list[str]]:
    scenario = SCENARIOS[name]
    text = sim_config_text(
        scenario.nodes, scenario.synchronous, scenario.profile, synced=scenario.synced
    )
    world = World(parse(text, "<simulation>"), seed=seed)
    for i, node in enumerate(world.config.order):
        world.boot(node, [0.0, 1.0][i] if i < 2 else 1.0 + 0.5 * (i - 1))
    scenario.inject(world)
    world.run_until(scenario.duration)
    return world, scenario.check(world)
