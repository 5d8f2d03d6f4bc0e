"""Three-node cases the lab found before the simulation did (tests/lab/test_multi_server_*)."""

from __future__ import annotations

import json

from mosqit_failover.actions import RunPlan, SendPeerMessage
from mosqit_failover.config import Config, parse
from mosqit_failover.events import ActionDone, Command, OperatorCommand, Role
from mosqit_failover.sim_scenarios import sim_config_n, sim_config_text
from mosqit_failover.simulation import World

SETTLED = 10.0


def three(seed: int = 1, config: Config | None = None, gamma_maintenance: bool = False) -> World:
    """Three nodes formed by SETTLED; gamma put in maintenance then (no candidate), if asked."""
    world = World(config or sim_config_n(3), seed=seed)
    for name in ("alpha", "beta", "gamma"):
        world.boot(name)
    world.run_until(SETTLED)
    assert world.roles() == {"alpha": Role.ACTIVE, "beta": Role.STANDBY, "gamma": Role.STANDBY}
    if gamma_maintenance:
        world.command("gamma", OperatorCommand(Command.MAINTENANCE_ON), SETTLED)
    return world


def kinds(world: World, node: str) -> list[str]:
    return [str(d.kind) for d in world.decisions(node)]


def test_a_witness_back_from_a_cut_keeps_the_partition_proven() -> None:
    """beta and gamma cannot hear each other; alpha is cut off (beta, the better, takes
    over) and comes back while the two are still apart. alpha's first messages list
    nobody: gamma must not take that for beta being gone and promote beside beta."""
    for seed in range(1, 9):
        world = three(seed)
        for net in ("a", "b"):
            world.set_link("beta", "gamma", net, False, SETTLED)
            world.set_port("alpha", net, False, SETTLED + 3)
            world.set_port("alpha", net, True, SETTLED + 8)
            world.set_link("beta", "gamma", net, True, SETTLED + 16)
        world.run_until(SETTLED + 25)
        assert "promote" not in kinds(world, "gamma"), (seed, world.decisions("gamma"))
        assert world.roles()["beta"] is Role.ACTIVE, (seed, world.roles())
        assert world.dual_clients_worst == 0.0, seed


def test_a_node_that_starts_late_claims_no_partition() -> None:
    """gamma starts while alpha and beta run: before it hears beta, alpha's messages list
    beta. That is a node that has not listened yet, not a partition."""
    for seed in range(1, 9):
        world = World(sim_config_n(3), seed=seed)
        world.boot("alpha")
        world.boot("beta")
        world.boot("gamma", at=5.0)
        world.run_until(15.0)
        assert "partitioned" not in kinds(world, "gamma"), (seed, world.decisions("gamma"))


def test_a_stopping_active_says_its_last_word_before_it_exits() -> None:
    """The agent exits as soon as it holds nothing: its last message must say so, or the
    standbys take its silence for a hung agent and fence it first (seconds lost)."""
    world = three()
    core = world.nodes["alpha"].core
    assert core is not None
    out = core.handle(OperatorCommand(Command.STOP), world.now)
    plan = next(a for a in out if isinstance(a, RunPlan))
    last: list[object] = []
    for step in plan.steps:
        last = list(core.handle(ActionDone(plan.number, step), world.now))
    assert core.stopped
    sent = [a for a in last if isinstance(a, SendPeerMessage)]
    final = sent[-1].view if sent else None
    assert final is not None and not final.role.may_hold, last
    assert final.yielding and not final.candidate


def _ordered(count: int, order: list[str]) -> Config:
    text = sim_config_text(count).replace(
        'order = ["alpha", "beta", "gamma"]', f"order = {json.dumps(order)}"
    )
    text = text.replace('preferred = "alpha"\n', "")
    return parse(text, "<test>")


def test_nodes_with_different_orders_still_elect_exactly_one_and_say_why() -> None:
    """beta's config puts gamma first, the others put alpha then beta: after alpha dies,
    each standby would wait for the other for ever. They notice the digests differ, say
    so, and rank by node name (beta before gamma) until the configs agree."""
    agreed = _ordered(3, ["alpha", "beta", "gamma"])
    other = _ordered(3, ["gamma", "beta", "alpha"])
    world = World(agreed, seed=0, node_configs={"beta": other})
    for i, name in enumerate(("alpha", "beta", "gamma")):
        world.boot(name, 0.5 * i)
    world.run_until(SETTLED)
    assert "order-mismatch" in kinds(world, "beta") and "order-mismatch" in kinds(world, "gamma")
    line = next(d for d in world.decisions("gamma") if d.kind == "order-mismatch")
    assert "peer beta runs another cluster.order" in line.reason
    assert "copy one config to every node" in line.reason
    world.power_off("alpha", SETTLED + 1)
    world.run_until(SETTLED + 10)
    assert world.active_nodes() == ["beta"], world.roles()
    assert world.dual_clients_worst == 0.0


def test_a_pair_whose_preferred_differs_does_not_stay_dual_active() -> None:
    """Each node names itself preferred: both would go first at a cold start and neither
    would yield. By node name, alpha goes first on both."""
    alpha_first = sim_config_n(2)
    beta_first = parse(sim_config_text(2).replace('preferred = "alpha"', 'preferred = "beta"'))
    world = World(alpha_first, seed=0, node_configs={"beta": beta_first})
    world.boot("alpha")
    world.boot("beta")
    world.run_until(SETTLED + 5)
    assert world.active_nodes() == ["alpha"], world.roles()
    assert world.dual_vip_worst <= 1.0
    assert "order-mismatch" in kinds(world, "beta")


def test_a_peer_that_died_is_not_said_to_agree_again() -> None:
    agreed = _ordered(3, ["alpha", "beta", "gamma"])
    other = _ordered(3, ["gamma", "beta", "alpha"])
    world = World(agreed, seed=0, node_configs={"beta": other})
    for i, name in enumerate(("alpha", "beta", "gamma")):
        world.boot(name, 0.5 * i)
    world.run_until(SETTLED)
    world.power_off("beta", SETTLED + 1)
    world.run_until(SETTLED + 10)
    lines = [d.reason for d in world.decisions("gamma") if d.kind == "order-mismatch"]
    assert len(lines) == 1 and "agrees" not in lines[0], lines


def test_three_nodes_fail_over_as_soon_as_two_would() -> None:
    """bench_multi: alpha cut off, beta took over about 100 ms later with a third node
    than a pair does. gamma listed alpha as heard for its whole present window
    (`peer_gone_after`, 300 ms) after its own verdict had said alpha was gone, and beta
    waits for every witness to stop listing alpha. A witness now drops a peer it lost
    and says so at once, so beta decides on the pair's silence (`echo_window`)."""
    for seed in range(1, 9):
        world = three(seed)
        for net in ("a", "b"):
            world.set_port("alpha", net, False, SETTLED)
        world.run_until(SETTLED + 2)
        promote = next(d for d in world.decisions("beta") if str(d.kind) == "promote")
        silence = float(promote.reason.split("no message for ")[1].split("ms")[0]) / 1000
        timing = world.config.timing
        assert silence <= timing.echo_window + timing.echo_timeout, (seed, promote.reason)
        assert world.roles()["beta"] is Role.ACTIVE, (seed, world.roles())


def test_a_short_break_between_the_active_and_the_one_witness_keeps_the_partition() -> None:
    """beta cannot hear alpha (a VLAN filter); gamma hears both and proves the partition.
    The path between alpha and gamma breaks for 0.4 s every 1.5 s: gamma counts alpha
    gone for a moment each time and says so at once. The breaker found beta promoting
    beside the serving alpha on the first 0.2 s break, and before the witness said its
    verdict at once, breaks of 0.27 s did it in 13 of 20 runs. Nothing synced then, so
    beta ranked first by the order. Since then beta withdraws its data epoch when cut
    off, synced or not, and gamma would take over on a break as a pair's standby does;
    so gamma is in maintenance here, no candidate, and beta ranks first. Were the proof
    to end, beta would now fence alpha first (`_unknown_fate`) where it promoted."""
    for seed in range(1, 7):
        world = three(seed, gamma_maintenance=True)
        for net in ("a", "b"):
            world.set_link("alpha", "beta", net, False, SETTLED)
        at = SETTLED + 4
        while at < SETTLED + 20:
            for net in ("a", "b"):
                world.set_link("alpha", "gamma", net, False, at)
                world.set_link("alpha", "gamma", net, True, at + 0.4)
            at += 1.5
        world.run_until(SETTLED + 22)
        assert "partitioned" in kinds(world, "beta"), (seed, world.decisions("beta"))
        assert "promote" not in kinds(world, "beta"), (seed, world.decisions("beta"))
        assert "fence" not in kinds(world, "beta"), (seed, world.decisions("beta"))
        assert world.dual_clients_worst == 0.0, seed


def _reasons(world: World, node: str, kind: str) -> list[str]:
    return [d.reason for d in world.decisions(node) if str(d.kind) == kind]


def _hang_alpha_cut_from_beta(world: World) -> None:
    """beta stops hearing alpha at SETTLED; alpha's agent hangs 4 s later for 6 s."""
    for net in ("a", "b"):
        world.set_link("alpha", "beta", net, False, SETTLED)
    world.freeze("alpha", SETTLED + 4, 6.0, agent_only=True)
    world.run_until(SETTLED + 16)
    assert "promote" not in kinds(world, "beta"), world.decisions("beta")
    assert world.dual_clients_worst == 0.0


def test_a_hung_active_that_one_standby_cannot_hear_is_left_to_the_witness() -> None:
    """beta cannot hear alpha; gamma hears both. alpha's agent hangs for 6 s: its kernel
    answers and the VIP stays. beta knew alpha only through gamma, whose list drops a
    hung agent like a dead host. Before, with nothing synced, beta won by the order and
    promoted beside the hung holder (10 of 10 simulated runs). Now beta, cut off for the
    settle time, withdraws its data epoch as a synced standby does; gamma ranks first,
    sees alpha's kernel answer, fences it and only then promotes."""
    unsynced = parse(sim_config_text(3, synced=False), "<sim>")
    for seed in range(1, 5):
        world = three(seed, unsynced)
        _hang_alpha_cut_from_beta(world)
        withdrawn = _reasons(world, "beta", "data-epoch-withdrawn")
        assert withdrawn and "(out of touch with the active of epoch" in withdrawn[0], seed
        gamma = [k for k in kinds(world, "gamma") if k in ("fence", "promote")]
        assert gamma[:2] == ["fence", "promote"], (seed, world.decisions("gamma"))
        assert world.roles()["gamma"] is Role.ACTIVE, seed


def test_a_standby_that_knew_the_active_only_through_a_witness_fences_first() -> None:
    """As above, with the witness in maintenance (no candidate): beta ranks first however
    its data epoch stands. gamma drops the hung alpha from its list after
    peer_gone_after of silence, which beta took for death and promoted beside alpha (10 of 10
    runs, synced or not). Now beta counts alpha's fate unknown and fences first; its
    ssh fence crosses the same cut and fails, so nobody promotes (fencing.on_failure =
    "wait") and alpha, which never stopped serving, stays the only holder."""
    for seed in range(1, 5):
        world = three(seed, gamma_maintenance=True)
        _hang_alpha_cut_from_beta(world)
        fenced = _reasons(world, "beta", "fence")
        assert fenced, (seed, world.decisions("beta"))
        assert "known here only through gamma, no longer listed there" in fenced[0], fenced
        failed = _reasons(world, "beta", "fence-failed")
        assert failed and "end maintenance on gamma" in failed[0], failed
        assert world.roles()["alpha"] is Role.ACTIVE, seed


def test_a_standby_restarted_while_cut_off_fences_a_holder_a_witness_sees_hung() -> None:
    """As above, but beta's agent restarts 2 s into alpha's hang: it has heard nobody
    since it started, so no proof of a partition and no doubt of its own. Before, it
    took alpha's silence for death after startup_grace and promoted beside the hung
    holder (8 of 8 seeds, the client answered by both for ~10 s). Now gamma lists alpha
    as hung in its messages (host answering, agent silent, last seen holding), and beta
    fences alpha first; the fence crosses the cut and fails, nobody promotes."""
    for seed in range(1, 5):
        world = three(seed, gamma_maintenance=True)
        for net in ("a", "b"):
            world.set_link("alpha", "beta", net, False, SETTLED)
        world.freeze("alpha", SETTLED + 4, 20.0, agent_only=True)
        world.kill_agent("beta", SETTLED + 6, 1.0)
        world.run_until(SETTLED + 22)
        after = [
            line.decision
            for line in world.timeline
            if line.decision and line.node == "beta" and line.time > SETTLED + 7
        ]
        fenced = [d.reason for d in after if str(d.kind) == "fence"]
        assert fenced and "gamma sees its host answer while its agent is silent" in fenced[0]
        assert "promote" not in [str(d.kind) for d in after], (seed, after)
        assert world.roles()["alpha"] is Role.ACTIVE and world.dual_clients_worst == 0.0


def test_two_witnesses_that_see_the_holder_hung_are_both_named() -> None:
    """Four nodes, gamma and delta in maintenance: both name alpha hung, and beta's
    fence after its restart says so of both."""
    world = World(sim_config_n(4), seed=1)
    for name in ("alpha", "beta", "gamma", "delta"):
        world.boot(name)
    world.run_until(SETTLED)
    for name in ("gamma", "delta"):
        world.command(name, OperatorCommand(Command.MAINTENANCE_ON), SETTLED)
    for net in ("a", "b"):
        world.set_link("alpha", "beta", net, False, SETTLED)
    world.freeze("alpha", SETTLED + 4, 20.0, agent_only=True)
    world.kill_agent("beta", SETTLED + 6, 1.0)
    world.run_until(SETTLED + 16)
    fenced = [r for r in _reasons(world, "beta", "fence") if "host answer" in r]
    assert fenced and "gamma, delta see its host answer while its agent is silent" in fenced[0]
    assert "promote" not in kinds(world, "beta") and world.dual_clients_worst == 0.0


def test_a_hang_right_after_the_cut_is_fenced_on_the_witness_word() -> None:
    """alpha's agent hangs 0 to 0.5 s after beta is cut off from it, before the cut has
    stood the settle time that makes alpha's fate unknown to beta: beta promoted beside
    the hung holder (8 of 8 seeds for each delay, a helper's attack on the `hung`
    list). gamma's `hung` list now makes beta fence first; the fence crosses the cut."""
    for delay in (0.0, 0.2, 0.5):
        for seed in range(1, 4):
            world = three(seed, gamma_maintenance=True)
            for net in ("a", "b"):
                world.set_link("alpha", "beta", net, False, SETTLED)
            world.freeze("alpha", SETTLED + delay, 15.0, agent_only=True)
            world.run_until(SETTLED + 14)
            assert "promote" not in kinds(world, "beta"), (delay, seed, world.decisions("beta"))
            assert world.dual_clients_worst == 0.0, (delay, seed)


def test_a_witness_stops_naming_a_hung_holder_once_it_speaks_or_dies() -> None:
    """gamma names alpha as hung only while alpha's kernel answers and its agent is
    silent: not while alpha speaks, and no longer once alpha's agent is back or its
    host is off (the echo misses end the proof), so a dead holder is not fenced for
    ever."""
    world = three(gamma_maintenance=True)

    def named(at: float) -> tuple[str, ...]:
        world.run_until(at)
        core = world.nodes["gamma"].core
        assert core is not None
        return core.view(at).hung

    for net in ("a", "b"):  # beta, which cannot hear alpha, cannot take over either
        world.set_link("alpha", "beta", net, False, SETTLED)
    world.freeze("alpha", SETTLED + 1, 2.0, agent_only=True)
    assert named(SETTLED + 0.9) == ()
    assert named(SETTLED + 2.5) == ("alpha",)
    assert named(SETTLED + 4.0) == ()  # its agent speaks again
    world.freeze("alpha", SETTLED + 5, 20.0, agent_only=True)
    assert named(SETTLED + 6.5) == ("alpha",)
    world.power_off("alpha", SETTLED + 7)
    assert named(SETTLED + 11.0) == ()
    assert "promote" not in kinds(world, "beta")


def test_the_partition_alert_about_the_active_says_what_to_do_about_the_active() -> None:
    """The alert told a standby cut from the active itself to act "if alpha and the
    active node are both down", naming the same node twice. What helps is a witness
    that can take over: force-active is refused while the witness lives."""
    world = three()
    for net in ("a", "b"):
        world.set_link("alpha", "beta", net, False, SETTLED)
    world.run_until(SETTLED + 3)
    said = _reasons(world, "beta", "partitioned")
    # "heard", not "hears": gamma may have stopped listing alpha since (a helper's review)
    assert said == [
        "cannot hear alpha, which gamma heard after this node lost it (a partition among "
        "the nodes): not taking over past it; fix the path between beta and alpha "
        "(cables, VLANs, firewall). If alpha goes down, a node that hears it takes over: "
        "keep gamma a candidate (out of maintenance, both networks)"
    ], said


def test_a_partition_proven_for_a_moment_before_the_active_died_needs_no_fence() -> None:
    """The fence for a peer known only through a witness is for a cut, not for a few
    heartbeats lost here: beta stops hearing alpha 0.5 s before alpha powers off
    (gamma, in maintenance, still heard it). Its proof held less than the settle time
    before gamma lost alpha too: beta's own misses count, and it promotes without a
    fence (a dead host cannot be fenced over ssh: it would wait for the operator)."""
    for seed in range(1, 5):
        world = three(seed, gamma_maintenance=True)
        for net in ("a", "b"):
            world.set_link("alpha", "beta", net, False, SETTLED)
        world.power_off("alpha", SETTLED + 0.5)
        world.run_until(SETTLED + 8)
        assert "partitioned" in kinds(world, "beta"), (seed, world.decisions("beta"))
        assert "fence" not in kinds(world, "beta"), (seed, world.decisions("beta"))
        assert world.roles()["beta"] is Role.ACTIVE, (seed, world.decisions("beta"))


def test_a_takeover_by_a_node_that_heard_the_peer_settles_its_fate() -> None:
    """beta is cut off from alpha; alpha powers off and gamma, which heard it, takes
    over. beta's doubt about alpha ends there: kept, beta fenced the long-dead alpha
    before every later takeover, for ever, and a switchover from gamma left nobody
    holding the VIP (a breaker: 6 of 6 runs; also a failover, a handover, 3 to 8 nodes)."""
    for seed in range(1, 4):
        world = three(seed)
        for net in ("a", "b"):
            world.set_link("alpha", "beta", net, False, SETTLED)
        world.power_off("alpha", SETTLED + 5)
        world.command("gamma", OperatorCommand(Command.SWITCHOVER), SETTLED + 15)
        world.run_until(SETTLED + 20)
        assert "promote" in kinds(world, "gamma"), (seed, world.decisions("gamma"))
        assert "fence" not in kinds(world, "beta"), (seed, world.decisions("beta"))
        assert world.roles()["beta"] is Role.ACTIVE, (seed, world.decisions("beta"))
