"""Fault injection, every fault reversible. All of it happens in ``mqlab-sw``.

* port down/up: the switch-side veth of one node on one network (the node
  sees NO-CARRIER on its interface); isolate/rejoin: both of a node's ports
  at the same instant (one ``ip -batch``), like pulling every cable at once;
* switch down/up: every port of one network;
* cut/heal: traffic between nodes' ports on one network is dropped while
  they still reach the switch (nft bridge ``forward``, matched on the ports,
  so the VIP, ARP and any address are covered): between every node, or
  between some nodes and the others;
* loss/clear: ``numgen random mod 100 < P drop`` on every frame entering
  one network's bridge from its ports, or on some nodes' cables only
  (``iifname``/``oifname``: ``meta ibrname`` is not
  supported by this kernel), in ``forward`` and ``input`` (node-node and
  node-switch traffic). Loss is per frame, so a ping round trip is lost with
  probability 1-(1-P)^2 (75 % for P=50), and ARP suffers too;
* clear_all: undo everything.

Freezing or killing a node is on :class:`~mosqit_failover.lab.node.Node`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .netns import run
from .topology import NETS, LabPlan, Net


def _nft(plan: LabPlan, *cmd: str) -> None:
    run(["nft", *cmd], ns=plan.switch_ns)


def port_down(plan: LabPlan, node: str, net: Net) -> None:
    run(["ip", "link", "set", plan.node(node).port(net), "down"], ns=plan.switch_ns)


def port_up(plan: LabPlan, node: str, net: Net) -> None:
    run(["ip", "link", "set", plan.node(node).port(net), "up"], ns=plan.switch_ns)


def isolate(plan: LabPlan, node: str) -> None:
    _node_ports(plan, node, "down")


def rejoin(plan: LabPlan, node: str) -> None:
    _node_ports(plan, node, "up")


def _node_ports(plan: LabPlan, node: str, state: str) -> None:
    # one command: a second `ip netns exec` would leave one network up ~10 ms longer,
    # which a tool probing over one network only (VRRP unicast on a) would not notice
    batch = "".join(f"link set {plan.node(node).port(net)} {state}\n" for net in NETS)
    run(["ip", "-batch", "-"], ns=plan.switch_ns, input=batch)


def switch_down(plan: LabPlan, net: Net) -> None:
    for port in plan.ports(net):
        run(["ip", "link", "set", port, "down"], ns=plan.switch_ns)


def switch_up(plan: LabPlan, net: Net) -> None:
    for port in plan.ports(net):
        run(["ip", "link", "set", port, "up"], ns=plan.switch_ns)


def cut(
    plan: LabPlan,
    net: Net,
    nodes: Iterable[str] | None = None,
    others: Iterable[str] | None = None,
) -> None:
    """Break the links between nodes on ``net``; the switch stays reachable.

    Without ``nodes``, every node is cut off from every other node. With
    ``nodes``, only the links between those nodes and ``others`` (default:
    every node not in ``nodes``) break: ``cut(plan, "b", ["gamma"])`` cuts
    gamma off from the rest, ``cut(plan, "b", ["alpha"], ["beta"])`` only the
    link alpha-beta. Each call replaces the cuts on ``net`` before it, at once
    (one nft transaction).
    """
    every = [n.name for n in plan.nodes]
    side = list(every if nodes is None else nodes)
    if others is not None:
        other = list(others)
    else:
        other = every if nodes is None else [n for n in every if n not in side]
    for name in (*side, *other):
        plan.node(name)  # KeyError for a node the lab does not have
    chain = f"bridge {plan.nft_table} cut_{net}"
    lines = [f"flush chain {chain}"]
    pairs = {(a, b) for a in side for b in other if a != b}
    pairs |= {(b, a) for a, b in pairs}
    for src in every:  # in the plan's order, both directions
        for dst in every:
            if (src, dst) in pairs:
                port_src, port_dst = plan.node(src).port(net), plan.node(dst).port(net)
                lines.append(f"add rule {chain} iifname {port_src} oifname {port_dst} drop")
    run(["nft", "-f", "-"], ns=plan.switch_ns, input="\n".join(lines) + "\n")


def heal(plan: LabPlan, net: Net) -> None:
    _nft(plan, "flush", "chain", "bridge", plan.nft_table, f"cut_{net}")


def loss(plan: LabPlan, net: Net, percent: int, nodes: Iterable[str] | None = None) -> None:
    """Drop ``percent``% of the frames entering network ``net``'s bridge, at random.

    Without ``nodes``: on every port (the client's too). With ``nodes``: only on
    those nodes' cables, both ways (frames from them and frames forwarded to
    them), as with a bad cable. Each call replaces the loss on ``net`` before it.
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"loss must be 0..100 %, not {percent}")
    clear_loss(plan, net)
    if not percent:
        return
    if nodes is None:
        matches = [("iifname", plan.ports(net))]
    else:
        ports = tuple(plan.node(n).port(net) for n in nodes)
        matches = [("iifname", ports), ("oifname", ports)]
    for match, names in matches:
        _nft(
            plan,
            "add",
            "rule",
            "bridge",
            plan.nft_table,
            f"loss_{net}",
            match,
            "{ " + ", ".join(f'"{p}"' for p in names) + " }",
            # nft refuses `< 100` with `mod 100`: 100 % is every frame
            *(["numgen", "random", "mod", "100", "<", str(percent)] if percent < 100 else []),
            "drop",
        )


def clear_loss(plan: LabPlan, net: Net) -> None:
    _nft(plan, "flush", "chain", "bridge", plan.nft_table, f"loss_{net}")


def clear_all(plan: LabPlan) -> None:
    for net in NETS:
        switch_up(plan, net)
        heal(plan, net)
        clear_loss(plan, net)
