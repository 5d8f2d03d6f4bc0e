"""Property tests on three to five cores in the simulated world, under random faults.

Safety for multi-server mode: never a promotion by a node lacking a network;
never two VIP holders that hear each other for longer than the resolution
step, and never two holders that both reach the clients' network (beyond that
same step) unless nothing can tell a live node from a dead one (every path
between the nodes cut while they still see the switches, or 50 % loss).
Liveness: once the faults stop, exactly one node is active and holds the VIP.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosqit_failover.events import Role
from mosqit_failover.sim_scenarios import sim_config_n
from mosqit_failover.simulation import World

NODES = ("alpha", "beta", "gamma")
ALL_NODES = ("alpha", "beta", "gamma", "delta", "epsilon")  # sim_config_n's names, in order
NETS = ("a", "b")
FAULT_WINDOW = (10.0, 50.0)
QUIET = 40.0


@dataclass(frozen=True)
class Fault:
    kind: str
    start: float
    duration: float
    node_index: int
    other_index: int
    net: str
    loss: float

    def inject(self, w: World) -> None:
        names = sorted(w.nodes, key=w.config.rank)
        node, other = (names[i % len(names)] for i in (self.node_index, self.other_index))
        end = self.start + self.duration
        match self.kind:
            case "port":
                w.set_port(node, self.net, False, self.start)
                w.set_port(node, self.net, True, end)
            case "switch":
                w.set_switch(self.net, False, self.start)
                w.set_switch(self.net, True, end)
            case "link":  # two nodes stop hearing each other on both networks
                if node != other:
                    for net in NETS:
                        w.set_link(node, other, net, False, self.start)
                        w.set_link(node, other, net, True, end)
            case "partition":
                w.set_peer_link(self.net, False, self.start)
                w.set_peer_link(self.net, True, end)
            case "loss":
                w.set_loss(self.net, self.loss, self.start)
                w.set_loss(self.net, 0.0, end)
            case "freeze":
                w.freeze(node, self.start, self.duration)
            case "hang":
                w.freeze(node, self.start, self.duration, agent_only=True)
            case "kill":
                w.kill_agent(node, self.start, restart_after=self.duration)
            case "power":
                w.power_off(node, self.start)
                w.boot(node, end)
            case "sync":
                w.set_sync_behind(node, True, self.start)
                w.set_sync_behind(node, False, end)


faults = st.builds(
    Fault,
    kind=st.sampled_from(
        ["port", "switch", "link", "partition", "loss", "freeze", "hang", "kill", "power", "sync"]
    ),
    start=st.floats(*FAULT_WINDOW),
    duration=st.floats(0.05, 15.0),
    node_index=st.integers(0, len(ALL_NODES) - 1),
    other_index=st.integers(0, len(ALL_NODES) - 1),
    net=st.sampled_from(NETS),
    loss=st.sampled_from([0.1, 0.3, 0.5]),
)


def run_world(schedule: list[Fault], seed: int, count: int = 3) -> World:
    world = World(sim_config_n(count), seed=seed)
    for i, name in enumerate(ALL_NODES[:count]):
        world.boot(name, 0.5 * i)
    for fault in schedule:
        fault.inject(world)
    last = max((f.start + f.duration for f in schedule), default=FAULT_WINDOW[0])
    world.run_until(last + QUIET)
    return world


def blind(schedule: list[Fault]) -> bool:
    """Faults under which no node can tell a live peer from a dead one: every path
    between the nodes cut on a network while they still see the switches, heavy loss
    that makes a frozen node look dead, or a cut between two nodes while the third,
    the only witness, may itself be frozen, hung, down or cut off."""
    if any(f.kind == "partition" or (f.kind == "loss" and f.loss >= 0.5) for f in schedule):
        return True
    disabled = {"freeze", "hang", "kill", "power", "port", "switch", "loss"}
    cut = any(f.kind == "link" for f in schedule)
    return cut and any(f.kind in disabled for f in schedule)


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    schedule=st.lists(faults, max_size=5),
    seed=st.integers(0, 2**16),
    count=st.sampled_from([3, 4, 5]),
)
def test_random_faults_keep_three_to_five_nodes_safe_and_they_converge(
    schedule: list[Fault], seed: int, count: int
) -> None:
    world = run_world(schedule, seed, count)
    timing = world.config.timing
    lines = [x.text for x in world.timeline[-40:]]
    assert world.violations == []
    bound = timing.interval + 8 * timing.heartbeat + 0.2
    assert world.dual_vip_worst <= bound, lines
    if not blind(schedule):
        assert world.dual_holders_worst <= bound, lines
        assert world.dual_clients_worst <= bound, lines
    roles = sorted(r.value if r else "DOWN" for r in world.roles().values())
    assert roles == [Role.ACTIVE.value] + [Role.STANDBY.value] * (count - 1), lines
    holders = [n.name for n in world.nodes.values() if n.holds_vip]
    assert holders == world.active_nodes()


def test_a_partition_among_standbys_never_gives_two_holders_on_the_clients_network() -> None:
    """beta and gamma cannot hear each other; the active dies: exactly one promotes."""
    for seed in range(5):
        world = World(sim_config_n(3), seed=seed)
        for i, name in enumerate(NODES):
            world.boot(name, 0.5 * i)
        for net in NETS:
            world.set_link("beta", "gamma", net, False, 10.0)
        world.power_off("alpha", 15.0)
        world.run_until(30.0)
        assert world.dual_clients_worst == 0.0
        assert world.active_nodes() == ["beta"]


def test_a_standby_cut_off_from_the_active_alone_never_promotes() -> None:
    """gamma (the best standby: beta's sync lags) stops hearing alpha (active) while
    beta hears both: beta's `heard` keeps alpha present for gamma from the first miss
    on, before the partition is proven."""
    for seed in range(5):
        world = World(sim_config_n(3), seed=seed)
        for i, name in enumerate(NODES):
            world.boot(name, 0.5 * i)
        world.set_sync_behind("beta", True, 0.0)
        for net in NETS:
            world.set_link("alpha", "gamma", net, False, 10.0)
        world.run_until(20.0)
        assert world.active_nodes() == ["alpha"]
        assert world.dual_clients_worst == 0.0
        assert not any(d.kind == "promote" for d in world.decisions("gamma"))
