"""Directory sync benchmark: mosqit-failover's sync beside lsyncd, same lab, one run.

    python -m mosqit_failover.lab.scenarios.bench_sync   (root; MQLAB_PREFIX: beside other labs)

Both push from the active node to the standby over ssh: ours /srv/bench with
the agent, lsyncd (Debian, default.rsyncssh, delay = 1) /srv/lsync with a
key of its own. Measured on the receiving node by a poller (same host clock):

- single file write -> present on the peer, 20 files, p50 and max;
- a burst of 2,000 small files -> all present on the peer;
- CPU seconds (process + reaped children) and peak RSS of each during the burst.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from mosqit_failover.lab import control, deploy, sshkeys
from mosqit_failover.lab.netns import spawn
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.topology import DEFAULT_PLAN, LabPlan

SINGLES = 20
BURST = 2000

POLLER = r"""
import json, os, sys, time
root, names, timeout = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
seen, end = {}, time.time() + timeout
wanted = set(names)
while len(seen) < len(names) and time.time() < end:
    now = time.time()
    for n in wanted.intersection(os.listdir(root)) - seen.keys():
        seen[n] = now
    time.sleep(0.005)
open(sys.argv[4], "w").write(json.dumps(seen))
"""

WRITER = r"""
import json, os, sys, time
root, names, gap = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
out = {}
for n in names:
    out[n] = time.time()
    with open(os.path.join(root, n), "w") as fh: fh.write("payload " + n)
    if gap: time.sleep(gap)
print(json.dumps(out))
"""

LSYNCD = """settings {{ nodaemon = true, logfile = "/run/lsyncd.log" }}
sync {{ default.rsyncssh, source = "/srv/lsync", host = "root@{peer}", targetdir = "/srv/lsync",
  delay = 1, rsync = {{ rsh = "/usr/bin/ssh -i /root/.ssh/lsyncd_key -o BatchMode=yes" }},
  ssh = {{ identityFile = "/root/.ssh/lsyncd_key" }} }}
"""


def _usage(node: Node, pid: str) -> tuple[float, int]:
    """(CPU seconds incl. reaped children, RSS KiB) of a process in the node."""
    stat = node.run(["cat", f"/proc/{pid}/stat"]).stdout.rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in stat[11:15])
    rss = int(stat[21]) * 4
    return ticks / 100.0, rss


def _measure(
    active: Node, standby: Node, root: str, names: list[str], gap: float, pid: str
) -> tuple[dict[str, float], dict[str, float], float, int]:
    cpu0, _ = _usage(active, pid)
    out = "/tmp/bench-arrivals.json"
    poller = spawn(standby.nsenter(["python3", "-c", POLLER, root, ",".join(names), "120", out]))
    time.sleep(0.3)
    written = json.loads(
        active.run(["python3", "-c", WRITER, root, ",".join(names), str(gap)], timeout=300).stdout
    )
    peak = 0
    while poller.poll() is None:
        peak = max(peak, _usage(active, pid)[1])
        time.sleep(0.1)
    arrived = json.loads(standby.read_file(out))
    cpu1, rss = _usage(active, pid)
    return written, arrived, cpu1 - cpu0, max(peak, rss)


def run(plan: LabPlan = DEFAULT_PLAN) -> list[str]:
    lab = control.up(plan)
    try:
        nodes = lab.nodes
        sshkeys.setup(nodes, plan)
        sshkeys.install_config(nodes, plan, ["/srv/bench"])
        deploy.start(nodes)
        roles = deploy.wait_pair(nodes, 40)
        act = next(n for n, r in roles.items() if r == "ACTIVE")
        sb = next(n for n in roles if n != act)
        a, b = nodes[act], nodes[sb]
        a.run(["sh", "-c", "ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/lsyncd_key"])
        key = a.read_file("/root/.ssh/lsyncd_key.pub")
        b.run(["sh", "-c", f"echo '{key.strip()}' >> /root/.ssh/authorized_keys"])
        for node in (a, b):
            node.run(["mkdir", "-p", "/srv/lsync"])
        a.write_file("/etc/lsyncd/bench.lua", LSYNCD.format(peer=plan.node(sb).addr("a")))
        a.run(
            [
                "sh",
                "-c",
                "cp /root/.ssh/known_hosts /root/.ssh/known_hosts.bak; "
                "systemd-run --unit=bench-lsyncd lsyncd /etc/lsyncd/bench.lua",
            ]
        )
        time.sleep(3)
        ours = a.systemctl("show", "-p", "MainPID", "--value", deploy.UNIT).stdout.strip()
        theirs = a.systemctl("show", "-p", "MainPID", "--value", "bench-lsyncd").stdout.strip()
        results = {}
        for label, root, pid in (("mosqit", "/srv/bench", ours), ("lsyncd", "/srv/lsync", theirs)):
            names = [f"single-{i}" for i in range(SINGLES)]
            written, arrived, _, _ = _measure(a, b, root, names, 1.5, pid)
            lat = [arrived[n] - written[n] for n in names if n in arrived]
            burst = [f"burst-{i}" for i in range(BURST)]
            w2, arr2, cpu, rss = _measure(a, b, root, burst, 0.0, pid)
            done = max(arr2.values()) - min(w2.values()) if len(arr2) == BURST else float("inf")
            results[label] = {
                "p50": statistics.median(lat) if lat else float("inf"),
                "max": max(lat) if len(lat) == SINGLES else float("inf"),
                "burst": done,
                "cpu": cpu,
                "rss": rss,
            }
        m, lsy = results["mosqit"], results["lsyncd"]
        lines = [f"{'':22}{'mosqit':>10}{'lsyncd':>10}{'ratio':>8}"]
        for key_, what, unit in (
            ("p50", "single write p50", "s"),
            ("max", "single write max", "s"),
            ("burst", f"burst {BURST} files", "s"),
            ("cpu", "CPU during burst", "s"),
            ("rss", "peak RSS", "KiB"),
        ):
            ratio = m[key_] / lsy[key_] if lsy[key_] else float("nan")
            lines.append(
                f"{what + ' (' + unit + ')':22}{m[key_]:>10.3f}{lsy[key_]:>10.3f}{ratio:>8.2f}"
            )
        lines.append("targets: p50 <= 0.5 s, max <= 1.2 s, burst <= 0.5 x lsyncd")
        return lines
    finally:
        control.down(plan)


def main() -> int:
    for line in run():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
