"""A lab of three nodes (alpha, beta, gamma): cabling, addresses, per-node faults.

The lab of this module is built from ``plan_for(3)`` with the session's prefix.
A prefix holds one lab at a time, so building it takes down the session's
two-node lab if one is up; that one is rebuilt afterwards (as
``test_teardown_leaves_nothing_then_rebuilds`` does) for the modules after this.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator

import pytest

from mosqit_failover.lab import control, deploy, faults
from mosqit_failover.lab.netns import list_lab_netns, run
from mosqit_failover.lab.node import Node, cgroup2_root
from mosqit_failover.lab.topology import DEFAULT_PLAN, NETS, PREFIX, LabPlan, plan_for
from tests.lab.conftest import lab_unavailable

pytestmark = pytest.mark.lab

PLAN = plan_for(3)


def pings(node: Node, addr: str, count: int = 1) -> bool:
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "1", addr]
    return node.run(argv, check=False).returncode == 0


def client_pings(plan: LabPlan, addr: str) -> bool:
    argv = ["ping", "-n", "-q", "-c", "1", "-W", "1", addr]
    return run(argv, ns=plan.client_ns, check=False).returncode == 0


def lab_netns_listed() -> list[str]:
    """The namespaces of this prefix that ``ip netns list`` shows."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


@pytest.fixture(scope="module")
def lab3(request: pytest.FixtureRequest) -> Iterator[control.Lab]:
    """The three-node lab; torn down after the module, the session's lab rebuilt."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab tests skipped: {reason}")
    # something of the prefix is up: the session's two-node lab (the `lab` fixture,
    # which returns it as it is), which the three-node lab replaces for a while.
    # Not host_before on its own: its sentinels are removed by `lab`'s teardown only
    shared: control.Lab | None = None
    if control.leftovers(DEFAULT_PLAN):
        shared = request.getfixturevalue("lab")
    try:
        yield control.up(PLAN)
    finally:
        control.down(PLAN)
        if shared is not None:
            shared.nodes = control.up(shared.plan).nodes


@pytest.fixture
def lab3_clean(lab3: control.Lab) -> Iterator[control.Lab]:
    yield lab3
    for node in lab3.nodes.values():
        if node.alive() and node.frozen():
            node.thaw()
    faults.clear_all(lab3.plan)


def test_plan_names_and_addresses_follow_the_scheme() -> None:
    assert plan_for(2) == DEFAULT_PLAN
    assert PLAN.node_names == ("alpha", "beta", "gamma")
    gamma = PLAN.node("gamma")
    assert (gamma.addr_a, gamma.addr_b, gamma.netns) == (
        "10.231.1.13",
        "10.231.2.13",
        PREFIX + "gamma",
    )
    assert plan_for(8).node("theta").addr_b == "10.231.2.18"
    assert PLAN.ports("a") == ("alpha-a", "beta-a", "gamma-a", "client-a")
    for count in (1, 9):
        with pytest.raises(ValueError):
            plan_for(count)


def test_config_lists_every_node_and_the_order() -> None:
    raw = tomllib.loads(deploy.lab_config(PLAN))
    assert raw["cluster"]["order"] == ["alpha", "beta", "gamma"]
    assert "preferred" not in raw["cluster"]
    assert raw["nodes"]["gamma"] == {
        "a": {"interface": "eth0", "address": "10.231.1.13"},
        "b": {"interface": "eth1", "address": "10.231.2.13"},
    }
    two = tomllib.loads(deploy.lab_config(DEFAULT_PLAN))
    assert two["cluster"]["preferred"] == "alpha" and "order" not in two["cluster"]


def test_every_node_pings_every_other_on_both_networks(lab3: control.Lab) -> None:
    print(f"3-node lab up in {lab3.timings['up']:.1f}s ({lab3.timings})")
    assert set(lab3.nodes) == {"alpha", "beta", "gamma"}
    failed = [
        f"{name} -> {other.name} on {net}"
        for name, node in lab3.nodes.items()
        for other in PLAN.nodes
        if other.name != name
        for net in NETS
        if not pings(node, other.addr(net))
    ]
    failed += [
        f"{name} -> switch {net}"
        for name, node in lab3.nodes.items()
        for net in NETS
        if not pings(node, PLAN.switch_addr(net))
    ]
    failed += [f"client -> {s.name}" for s in PLAN.nodes if not client_pings(PLAN, s.addr_a)]
    assert not failed, failed
    for name, node in lab3.nodes.items():
        assert node.run(["hostname"]).stdout.strip() == name


def test_faults_work_on_the_third_node(lab3_clean: control.Lab) -> None:
    plan, alpha, gamma = PLAN, lab3_clean["alpha"], lab3_clean["gamma"]
    beta_a, gamma_a, gamma_b = (
        plan.node("beta").addr_a,
        plan.node("gamma").addr_a,
        plan.node("gamma").addr_b,
    )
    faults.isolate(plan, "gamma")
    assert not pings(alpha, gamma_a) and not pings(alpha, gamma_b)
    assert pings(alpha, beta_a)
    faults.rejoin(plan, "gamma")
    deadline = time.monotonic() + 5
    while not pings(alpha, gamma_a) and time.monotonic() < deadline:
        pass
    assert pings(alpha, gamma_a)

    faults.cut(plan, "b", ["alpha"], ["gamma"])  # only the link alpha-gamma on b
    assert not pings(alpha, gamma_b)
    assert pings(alpha, plan.node("beta").addr_b)
    assert pings(lab3_clean["beta"], gamma_b)
    assert pings(alpha, gamma_a)
    faults.heal(plan, "b")
    assert pings(alpha, gamma_b)

    faults.loss(plan, "a", 100, nodes=["gamma"])  # a dead cable: gamma's only
    assert not pings(alpha, gamma_a)
    assert pings(alpha, beta_a)
    faults.clear_loss(plan, "a")
    assert pings(alpha, gamma_a)

    gamma.freeze()
    assert gamma.frozen()
    assert pings(alpha, gamma_a)  # the kernel still answers
    gamma.thaw()
    assert not gamma.frozen()


def test_teardown_leaves_nothing(lab3: control.Lab) -> None:
    control.down(PLAN)
    assert list_lab_netns() == []
    assert lab_netns_listed() == []
    assert not list(cgroup2_root().glob(PREFIX + "*"))
    assert control.leftovers(PLAN) == []
