"""Fault injection, every fault reversible. All of it happens in ``mqlab-sw``.

* port down/up: the switch-side veth of one node on one network (the node
  sees NO-CARRIER on its interface); isolate/rejoin: both of a node's ports
  at the same instant (one ``ip -batch``), like pulling every cable at once;
* switch down/up: every port of one network;
* cut/heal: traffic between the two nodes' ports on one network is dropped
  while both still reach the switch (nft bridge ``forward``, matched on the
  ports, so the VIP, ARP and any address are covered);
* loss/clear: ``numgen random mod 100 < P drop`` on every frame entering
  one network's bridge from its ports (``iifname``: ``meta ibrname`` is not
  supported by this kernel), in ``forward`` and ``input`` (node-node and
  node-switch traffic). Loss is per frame, so a ping round trip is lost with
  probability 1-(1-P)^2 (75 % for P=50), and ARP suffers too;
* clear_all: undo everything.

Freezing or killing a node is on :class:`~mosqit_failover.lab.node.Node`.
"""

from __future__ import annotations

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


def cut(plan: LabPlan, net: Net) -> None:
    """Break the link between the nodes on ``net``; the switch stays reachable."""
    heal(plan, net)
    ports = [n.port(net) for n in plan.nodes]
    for src in ports:
        for dst in ports:
            if src != dst:
                _nft(
                    plan,
                    "add",
                    "rule",
                    "bridge",
                    plan.nft_table,
                    f"cut_{net}",
                    "iifname",
                    src,
                    "oifname",
                    dst,
                    "drop",
                )


def heal(plan: LabPlan, net: Net) -> None:
    _nft(plan, "flush", "chain", "bridge", plan.nft_table, f"cut_{net}")


def loss(plan: LabPlan, net: Net, percent: int) -> None:
    """Drop ``percent``% of the frames entering network ``net``'s bridge, at random."""
    if not 0 <= percent <= 100:
        raise ValueError(f"loss must be 0..100 %, not {percent}")
    clear_loss(plan, net)
    if percent:
        ports = "{ " + ", ".join(f'"{p}"' for p in plan.ports(net)) + " }"
        _nft(
            plan,
            "add",
            "rule",
            "bridge",
            plan.nft_table,
            f"loss_{net}",
            "iifname",
            ports,
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            str(percent),
            "drop",
        )


def clear_loss(plan: LabPlan, net: Net) -> None:
    _nft(plan, "flush", "chain", "bridge", plan.nft_table, f"loss_{net}")


def clear_all(plan: LabPlan) -> None:
    for net in NETS:
        switch_up(plan, net)
        heal(plan, net)
        clear_loss(plan, net)
