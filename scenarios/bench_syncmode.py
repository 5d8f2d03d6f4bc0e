"""Synchronous write mode benchmark: the mount beside the plain directory, async mode
and lsyncd, in one lab run (issue 14's ``make bench`` row).

    python -m mosqit_failover.lab.scenarios.bench_syncmode   (root; MQLAB_PREFIX: beside other labs)

One pair; on it /srv/plain (not synced), /srv/async (``[[sync]]``, async) and
/srv/syncmode (``[[sync]] mode = "synchronous"``: the FUSE mount on the active node,
its channel over ssh to the standby's forced command); lsyncd (Debian,
``default.rsyncssh``, delay = 1) pushes /srv/lsync with a key of its own.

- On the active node, in each directory (``syncfs.bench --measure``): close() latency
  p50/p99 of 4 KiB files (create, write, close), files/s, and sequential MB/s of one
  :data:`SEQUENTIAL_MIB` MiB file (1 MiB writes, then close); the plain directory also
  with an fsync before each close (local durability: the mount's close waits for the
  standby's fsync, the plain close for nothing).
- The RPO (``bench_sync.rpo_cut``): the spool writer on the active node, the node cut
  off (both cables) at a random moment, the acknowledged files missing or different on
  the other node counted; :data:`CUTS` cuts for each of synchronous, async and lsyncd.

Targets: RPO 0 in synchronous mode in every cut; close p50 <= 5 ms; sequential >= 50 %
of the plain directory's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from mosqit_failover.lab import control, deploy, sshkeys
from mosqit_failover.lab.netns import LabError
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.scenarios import bench_sync
from mosqit_failover.lab.topology import DEFAULT_PLAN, LabPlan

PLAIN, ASYNC, SYNCHRONOUS, LSYNC = "/srv/plain", "/srv/async", "/srv/syncmode", "/srv/lsync"
FILES = 2000
SEQUENTIAL_MIB = 256
CUTS = 5
SYNC_SETTINGS = {"mode": "synchronous", "ack_timeout": "2s"}


def sync_dir(node: Node, root: str) -> dict[str, Any]:
    """The agent's status of the synced directory ``root`` on ``node``."""
    dirs = deploy.status(node)["sync"]["dirs"]
    found: dict[str, Any] = next(d for d in dirs if d["path"] == root)
    return found


def synchronous_pair(nodes: dict[str, Node], root: str) -> tuple[Node, Node]:
    """(active, standby) with ``root`` mounted on the active and its channel up (a
    standby away at the promotion is taken back once caught up; failing that, a
    switchover mounts afresh with a channel)."""
    roles = deploy.wait_pair(nodes, 40)
    act = next(n for n, r in roles.items() if r == "ACTIVE")
    sb = next(n for n in roles if n != act)
    deadline = time.monotonic() + 40  # a standby away at the promotion is taken back
    while time.monotonic() < deadline:
        try:
            if sync_dir(nodes[act], root)["in_sync"]:
                return nodes[act], nodes[sb]
        except (LabError, StopIteration, KeyError):
            pass
        time.sleep(0.3)
    return switch_over(nodes, nodes[act], nodes[sb], root)


def switch_over(nodes: dict[str, Node], act: Node, sb: Node, root: str) -> tuple[Node, Node]:
    """Hand over to ``sb`` (it mounts afresh, with a channel); the new (active, standby)."""
    act.run([deploy.AGENT, "switchover", "--config", deploy.CONFIG_PATH])
    deploy.wait_roles(nodes, {sb.name: "ACTIVE", act.name: "STANDBY"}, timeout=40)
    bench_sync.wait_in_sync(sb, root, timeout=40)
    return sb, act


def measure(node: Node, root: str, tag: str, fsync: bool = False) -> dict[str, float]:
    """close p50/p99 (s), files/s and sequential MB/s in a new directory under ``root``
    (``fsync``: each file fsynced before its close)."""
    argv = ["/usr/bin/python3", "-m", "mosqit_failover.syncfs.bench", "--measure", f"{root}/{tag}"]
    argv += ["--files", str(FILES), "--size-mib", str(SEQUENTIAL_MIB)] + ["--fsync"] * fsync
    found: dict[str, float] = json.loads(node.run(argv, timeout=900).stdout)
    return found


def rpo_synchronous(
    nodes: dict[str, Node], plan: LabPlan, cuts: int, rng: random.Random
) -> list[bench_sync.Cut]:
    out = []
    for i in range(cuts):
        act, sb = synchronous_pair(nodes, SYNCHRONOUS)

        def took_over(sb: Node = sb) -> None:
            deploy.wait_roles({sb.name: sb}, {sb.name: "ACTIVE"}, timeout=30)

        out.append(bench_sync.rpo_cut(plan, act, sb, SYNCHRONOUS, f"s{i}", rng, took_over))
        deploy.wait_roles(nodes, {sb.name: "ACTIVE", act.name: "STANDBY"}, timeout=40)
    return out


def table(found: dict[str, dict[str, float]]) -> list[str]:
    plain = found["plain"]
    lines = [
        f"on the active node: {FILES} files of 4 KiB, one {SEQUENTIAL_MIB} MiB file",
        f"{'':16}{'close p50 ms':>13}{'p99 ms':>9}{'files/s':>9}{'MB/s':>8}{'of plain':>9}",
    ]
    for label, n in found.items():
        share = n["mb_per_s"] / plain["mb_per_s"] if plain["mb_per_s"] else float("nan")
        lines.append(
            f"{label:16}{n['p50'] * 1e3:>13.3f}{n['p99'] * 1e3:>9.3f}"
            f"{n['files_per_s']:>9.0f}{n['mb_per_s']:>8.1f}{share:>9.0%}"
        )
    return lines


def rpo_table(cuts: dict[str, list[bench_sync.Cut]]) -> list[str]:
    lines = [f"RPO, {CUTS} cuts each at ~{bench_sync.RPO_RATE:g} files/s: files lost per failover"]
    for label, each in cuts.items():
        lost = [c.lost for c in each]
        lines.append(
            f"  {label:12} median {statistics.median(lost):6.1f}  worst {max(lost):4d}  "
            f"per cut {lost}  acknowledged before the cut {[c.acked for c in each]}"
        )
    return lines


def run(plan: LabPlan = DEFAULT_PLAN, cuts: int = CUTS, seed: int | None = None) -> list[str]:
    lab = control.up(plan)
    try:
        nodes = lab.nodes
        sshkeys.setup(nodes, plan)
        deploy.install(nodes, plan)
        config = deploy.lab_config(plan) + sshkeys.sync_tables([ASYNC])
        config += sshkeys.sync_tables([SYNCHRONOUS], **SYNC_SETTINGS)
        for node in nodes.values():
            node.write_file(deploy.CONFIG_PATH, config)
            spools = [
                f"{root}/{sub}" for root in (ASYNC, SYNCHRONOUS) for sub in ("tmp", "new", "cur")
            ]
            node.run(["mkdir", "-p", PLAIN, LSYNC, *spools])
        deploy.start(nodes)
        act, sb = synchronous_pair(nodes, SYNCHRONOUS)
        bench_sync.wait_in_sync(act, ASYNC)
        found = {
            label: measure(act, root, f"bench-{label}")
            for label, root in (("plain", PLAIN), ("async", ASYNC), ("synchronous", SYNCHRONOUS))
        }
        found["plain + fsync"] = measure(act, PLAIN, "bench-fsync", fsync=True)
        rng = random.Random(seed)
        rpo = {"synchronous": rpo_synchronous(nodes, plan, cuts, rng)}
        rpo["async"] = bench_sync.rpo_ours(nodes, plan, ASYNC, cuts, rng)
        act, sb = synchronous_pair(nodes, SYNCHRONOUS)
        bench_sync.start_lsyncd(act, sb, plan)
        rpo["lsyncd"] = bench_sync.rpo_lsyncd(nodes, plan, act, sb, cuts, rng)
    finally:
        control.down(plan)
    sync = found["synchronous"]
    share = sync["mb_per_s"] / found["plain"]["mb_per_s"]
    durable = sync["mb_per_s"] / found["plain + fsync"]["mb_per_s"]
    rpo_zero = "met" if not any(c.lost for c in rpo["synchronous"]) else "NOT met"
    return [
        *table(found),
        *rpo_table(rpo),
        f"targets: RPO 0 in synchronous mode ({rpo_zero}), "
        f"close p50 <= 5 ms ({sync['p50'] * 1e3:.1f} ms), "
        f"sequential >= 50 % of plain ({share:.0%}; {durable:.0%} of plain + fsync)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cuts", type=int, default=CUTS, help="RPO cuts per mode")
    parser.add_argument("--seed", type=int, help="seed of the random cut moments")
    args = parser.parse_args(argv)
    for line in run(cuts=args.cuts, seed=args.seed):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(control.run_tool("bench_syncmode", main))
