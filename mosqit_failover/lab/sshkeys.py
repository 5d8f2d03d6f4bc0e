"""Sync keys and sshd in the lab nodes, set up as the deployment wizard would.

For each node: an ed25519 key of its own (``/etc/mosqit-failover/sync_key``,
written inside the node), its sshd started with fresh host keys, every peer's
host keys in root's known_hosts (both addresses) and every peer's sync key in
root's authorized_keys, restricted to the sync receiver:

    command="/usr/bin/python3 -m mosqit_failover.sync.receive --config CONFIG",restrict ...

(the packaged receiver, with Debian's python: the deployment wizard's own line for
a node with the package).
Plus helpers to put a config with [[sync]] tables on the nodes.
"""

from __future__ import annotations

from mosqit_failover.lab import deploy
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.topology import NETS, LabPlan
from mosqit_failover.wizards.deploy import authorized_line

SYNC_KEY = "/etc/mosqit-failover/sync_key"


def setup(nodes: dict[str, Node], plan: LabPlan) -> None:
    """Keys, sshd, known_hosts and authorized_keys on every node (idempotent)."""
    public: dict[str, str] = {}
    host_keys: dict[str, str] = {}
    for name, node in nodes.items():
        node.run(
            [
                "sh",
                "-c",
                f"mkdir -p /etc/mosqit-failover && test -f {SYNC_KEY} || "
                f"ssh-keygen -q -t ed25519 -N '' -C mosqit-sync@{name} -f {SYNC_KEY}",
            ]
        )
        public[name] = node.read_file(SYNC_KEY + ".pub")
        if not node.is_active("ssh.service"):
            node.start_sshd()
        pub = node.read_file("/etc/ssh/ssh_host_ed25519_key.pub")
        host_keys[name] = " ".join(pub.split()[:2])
    for name, node in nodes.items():
        peers = [n for n in nodes if n != name]
        known = "".join(
            f"{plan.node(peer).addr(net)} {host_keys[peer]}\n" for peer in peers for net in NETS
        )
        node.write_file("/root/.ssh/known_hosts", known, mode=0o600)
        authorized = "".join(authorized_line(deploy.PYTHON, public[peer]) for peer in peers)
        node.write_file("/root/.ssh/authorized_keys", authorized, mode=0o600)
        node.run(["chmod", "700", "/root/.ssh"])


def sync_tables(dirs: list[str], **keys: str) -> str:
    """[[sync]] tables for these directories (extra keys as TOML values, quoted)."""
    extra = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    return "".join(f'\n[[sync]]\npath = "{d}"\n{extra}' for d in dirs)


def install_config(
    nodes: dict[str, Node],
    plan: LabPlan,
    dirs: list[str],
    timing: dict[str, str] | None = None,
    **keys: str,
) -> str:
    """deploy.install (package, config, secret) with [[sync]] for ``dirs``; creates the dirs."""
    deploy.install(nodes, plan, timing)
    config = deploy.lab_config(plan, timing) + sync_tables(dirs, **keys)
    for node in nodes.values():
        node.write_file(deploy.CONFIG_PATH, config)
        node.run(["mkdir", "-p", *dirs])
    return config
