"""Namespaces, bridges, veths and the nftables skeleton; the only subprocess helpers.

Layout: ``mqlab-sw`` holds the bridges ``swa``/``swb`` (with the switch
management addresses); each node namespace has ``eth0`` on A and ``eth1`` on B,
whose peers ``NODE-a``/``NODE-b`` are bridge ports in ``mqlab-sw``; the client
has ``eth0`` on A (peer ``client-a``). No namespace has a default route, so
nothing can leave the lab.

nftables: table ``bridge mqlab`` in ``mqlab-sw`` with base chains ``forward``
and ``input`` that jump to the regular chains ``loss_a``, ``loss_b`` (both) and
``cut_a``, ``cut_b`` (forward only). Faults fill those chains, undoing a fault
flushes its chain (see :mod:`.faults`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .topology import NETS, PREFIX, LabPlan

NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    """A lab operation failed; the message says what and why."""


def _argv(argv: Sequence[str], ns: str | None) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def run(
    argv: Sequence[str],
    ns: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (in netns ``ns`` if given), capturing text output."""
    full = _argv(argv, ns)
    try:
        proc = subprocess.run(
            full, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(full)}") from exc
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed ({proc.returncode}): {' '.join(full)}\n{proc.stderr.strip()}"
        )
    return proc


def spawn(
    argv: Sequence[str],
    ns: str | None = None,
    stdout: int | None = subprocess.PIPE,
    log: Path | None = None,
    detach: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """Start a background command (in netns ``ns`` if given).

    ``log`` sends stdout and stderr to a file; ``detach`` puts the process in a
    new session so it survives the caller (used for the nodes).
    """
    full = _argv(argv, ns)
    if log is not None:
        with log.open("a") as fh:
            return subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=detach,
                env=env,
                cwd=cwd,
            )
    return subprocess.Popen(
        full,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=detach,
        env=env,
        cwd=cwd,
    )


def list_lab_netns() -> list[str]:
    """Every ``mqlab-*`` network namespace that exists."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))


def netns_pids(ns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in proc.stdout.split() if x.isdigit()]


def add_netns(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "set", "lo", "up"], ns=ns)


def delete_netns(ns: str) -> None:
    run(["ip", "netns", "del", ns], check=False)


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace, both up."""
    run(
        [
            "ip",
            "link",
            "add",
            name_a,
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            name_b,
            "netns",
            ns_b,
        ]
    )
    run(["ip", "link", "set", name_a, "up"], ns=ns_a)
    run(["ip", "link", "set", name_b, "up"], ns=ns_b)


def _plug(plan: LabPlan, ns: str, iface: str, port: str, net: str, addr: str) -> None:
    _veth(ns, iface, plan.switch_ns, port)
    run(["ip", "link", "set", port, "master", "sw" + net], ns=plan.switch_ns)
    run(["ip", "addr", "add", f"{addr}/{plan.prefix_len}", "dev", iface], ns=ns)


def nft_skeleton(plan: LabPlan) -> str:
    t = plan.nft_table
    lines = [f"table bridge {t} {{"]
    lines += [f"  chain {kind}_{net} {{ }}" for kind in ("loss", "cut") for net in NETS]
    lines.append("  chain forward { type filter hook forward priority 0; policy accept;")
    lines += [f"    jump loss_{net}\n    jump cut_{net}" for net in NETS]
    lines.append("  }")
    lines.append("  chain input { type filter hook input priority 0; policy accept;")
    lines += [f"    jump loss_{net}" for net in NETS]
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_network(plan: LabPlan) -> None:
    """Create every namespace, bridge, veth and address, and the nft skeleton."""
    sw = plan.switch_ns
    add_netns(sw)
    for net in NETS:
        br = plan.bridge(net)
        run(
            ["ip", "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"],
            ns=sw,
        )
        run(["ip", "addr", "add", f"{plan.switch_addr(net)}/{plan.prefix_len}", "dev", br], ns=sw)
        run(["ip", "link", "set", br, "up"], ns=sw)
    for node in plan.nodes:
        add_netns(node.netns)
        for net in NETS:
            _plug(plan, node.netns, plan.iface(net), node.port(net), net, node.addr(net))
    add_netns(plan.client_ns)
    _plug(plan, plan.client_ns, "eth0", plan.client_port(), "a", plan.client_addr)
    run(["nft", "-f", "-"], ns=sw, input=nft_skeleton(plan))


def kill_netns_processes(ns: str) -> None:
    for pid in netns_pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def destroy_network() -> list[str]:
    """Kill what runs in, and delete, every ``mqlab-*`` namespace. Idempotent."""
    gone = list_lab_netns()
    for ns in gone:
        kill_netns_processes(ns)
        delete_netns(ns)
    return gone
