"""Names and addresses of the lab: one frozen plan, no I/O."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Net = Literal["a", "b"]
NETS: tuple[Net, Net] = ("a", "b")

# MQLAB_PREFIX lets two labs run side by side (e.g. "mqlab2-"); everything a lab
# makes is named with it, so `lab down` of one never touches the other.
PREFIX = os.environ.get("MQLAB_PREFIX", "mqlab-")
if not re.fullmatch(r"mq[a-z0-9]{1,8}-", PREFIX):
    raise ValueError(f"MQLAB_PREFIX={PREFIX!r}: use 'mq', up to 8 letters or digits, and '-'")
LAB_NAME = PREFIX.rstrip("-")
PROJECT_DIR = Path(__file__).resolve().parents[2]

# A lab has 2 to 8 nodes, named in this order; node i (from 0) has the addresses
# 10.231.1.(11+i) on network A and 10.231.2.(11+i) on network B.
NODE_NAMES: tuple[str, ...] = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
)
MIN_NODES = 2
MAX_NODES = len(NODE_NAMES)


@dataclass(frozen=True)
class NodeSpec:
    """One lab node: its namespace, addresses and switch ports."""

    name: str
    addr_a: str
    addr_b: str

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    def addr(self, net: Net) -> str:
        return self.addr_a if net == "a" else self.addr_b

    def port(self, net: Net) -> str:
        """The switch-side veth end (lives in the switch namespace)."""
        return f"{self.name}-{net}"


def node_specs(count: int) -> tuple[NodeSpec, ...]:
    """The first ``count`` lab nodes (2..8): alpha .11, beta .12, gamma .13, ..."""
    if not MIN_NODES <= count <= MAX_NODES:
        raise ValueError(f"a lab has {MIN_NODES} to {MAX_NODES} nodes, not {count}")
    return tuple(
        NodeSpec(name, f"10.231.1.{11 + i}", f"10.231.2.{11 + i}")
        for i, name in enumerate(NODE_NAMES[:count])
    )


@dataclass(frozen=True)
class LabPlan:
    """Everything the lab is made of. Only lab-internal addresses."""

    nodes: tuple[NodeSpec, ...] = field(default_factory=lambda: node_specs(MIN_NODES))
    switch_ns: str = PREFIX + "sw"
    client_ns: str = PREFIX + "client"
    client_name: str = "client"
    client_addr: str = "10.231.1.100"
    switch_addr_a: str = "10.231.1.1"
    switch_addr_b: str = "10.231.2.1"
    prefix_len: int = 24
    vip: str = "10.231.1.50"
    demo_port: int = 7000
    demo_unit: str = PREFIX + "demo.service"
    nft_table: str = LAB_NAME
    state_dir: Path = Path("/run") / LAB_NAME
    project_dir: Path = PROJECT_DIR
    python: str = field(default_factory=lambda: sys.executable)
    boot_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not MIN_NODES <= len(self.nodes) <= MAX_NODES:
            raise ValueError(f"a lab has {MIN_NODES} to {MAX_NODES} nodes, not {len(self.nodes)}")

    @classmethod
    def with_nodes(cls, count: int) -> LabPlan:
        """The lab with ``count`` nodes (2..8), every one cabled to both switches."""
        return cls(nodes=node_specs(count))

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise KeyError(f"no lab node named {name!r}")

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def all_netns(self) -> tuple[str, ...]:
        return (self.switch_ns, self.client_ns, *(n.netns for n in self.nodes))

    @staticmethod
    def iface(net: Net) -> str:
        """The node-side interface name on a network."""
        return "eth0" if net == "a" else "eth1"

    @staticmethod
    def bridge(net: Net) -> str:
        return "sw" + net

    def switch_addr(self, net: Net) -> str:
        return self.switch_addr_a if net == "a" else self.switch_addr_b

    def client_port(self) -> str:
        return f"{self.client_name}-a"

    def ports(self, net: Net) -> tuple[str, ...]:
        """Every switch port on one network."""
        ports = tuple(n.port(net) for n in self.nodes)
        return (*ports, self.client_port()) if net == "a" else ports

    def node_dir(self, name: str) -> Path:
        return self.state_dir / name


DEFAULT_PLAN = LabPlan()  # the two-node lab: alpha and beta


def plan_for(count: int) -> LabPlan:
    """The lab with ``count`` nodes (2..8); ``plan_for(2) == DEFAULT_PLAN``."""
    return DEFAULT_PLAN if count == len(DEFAULT_PLAN.nodes) else LabPlan.with_nodes(count)
