"""keepalived, the peer we compare against, installed in the same lab nodes.

VRRPv3 with unicast peers on network A, `track_interface` on both uplinks,
nopreempt (like our default: no failback), the same advert interval as our
probe interval, and notify scripts that start
and stop the same demo service, so both tools move the VIP and the service.
Only one of the two tools runs in the lab at a time: they would fight over the VIP.
"""

from __future__ import annotations

from typing import Any

from .node import Node
from .topology import LabPlan

UNIT = "keepalived.service"
CONF = "/etc/keepalived/keepalived.conf"


def config(plan: LabPlan, node: str, advert: float) -> str:
    me = plan.node(node)
    peers = "\n        ".join(n.addr("a") for n in plan.nodes if n.name != node)
    priority = 150 if node == plan.nodes[0].name else 100
    unit = plan.demo_unit
    return f"""global_defs {{
    router_id {node}
    vrrp_version 3
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 5
    enable_script_security
    script_user root
}}

vrrp_instance lab {{
    state BACKUP
    interface {plan.iface("a")}
    virtual_router_id 51
    priority {priority}
    nopreempt
    advert_int {advert:g}
    unicast_src_ip {me.addr("a")}
    unicast_peer {{
        {peers}
    }}
    track_interface {{
        {plan.iface("a")}
        {plan.iface("b")}
    }}
    virtual_ipaddress {{
        {plan.vip}/{plan.prefix_len} dev {plan.iface("a")}
    }}
    notify_master "/bin/systemctl start {unit}"
    notify_backup "/bin/systemctl stop {unit}"
    notify_fault "/bin/systemctl stop {unit}"
    notify_stop "/bin/systemctl stop {unit}"
}}
"""


def install(nodes: dict[str, Node], plan: LabPlan, advert: float) -> None:
    for name, node in nodes.items():
        node.write_file(CONF, config(plan, name, advert))


def start(nodes: dict[str, Node]) -> None:
    for node in nodes.values():
        node.systemctl("start", UNIT, timeout=30)


def stop(nodes: dict[str, Node]) -> None:
    for node in nodes.values():
        node.systemctl("stop", UNIT, check=False, timeout=30)


def state(node: Node) -> str:
    """MASTER, BACKUP or FAULT, from keepalived's own log lines."""
    for entry in reversed(node.journal(unit=UNIT)):
        message = str(entry.get("MESSAGE", ""))
        for word in ("MASTER", "BACKUP", "FAULT"):
            if f"Entering {word} STATE" in message:
                return word
    return "UNKNOWN"


def vip_spans(node: Node, since: float, end: float) -> list[tuple[float, float]]:
    """When keepalived held the VIP: from entering MASTER to leaving it."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    entries: list[dict[str, Any]] = node.journal(unit=UNIT, since=since)
    for entry in entries:
        message = str(entry.get("MESSAGE", ""))
        at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        if "Entering MASTER STATE" in message and start is None:
            start = at
        elif start is not None and (
            "Entering BACKUP STATE" in message
            or "Entering FAULT STATE" in message
            or "Stopped" in message
        ):
            spans.append((start, at))
            start = None
    if start is not None:
        spans.append((start, end))
    return spans
