"""Directory sync benchmark: mosqit-failover's sync beside lsyncd, same lab, one run.

    python -m mosqit_failover.lab.scenarios.bench_sync   (root; MQLAB_PREFIX: beside other labs)

Both push from the active node to the standby over ssh: ours /srv/bench with
the agent, lsyncd (Debian, default.rsyncssh, delay = 1) /srv/lsync with a
key of its own. Measured on the receiving node by a poller (same host clock):

- single file write -> present on the peer, 20 files, p50 and max;
- a burst of 2,000 small files -> all present on the peer;
- CPU seconds (process + reaped children) and peak RSS of each during the burst;
- the RPO (:func:`rpo_cut`): a writer on the sending node creates, fsyncs and
  closes ~90 files/s and renames every other one into place (as mail spools
  do), the sending node is cut off (both cables) at a random moment, and the
  files it had acknowledged before the cut that are missing or different on
  the receiving node are counted; :data:`CUTS` cuts for each, median and worst.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from mosqit_failover.lab import control, deploy, faults, sshkeys
from mosqit_failover.lab.netns import LabError, spawn
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

SPOOL_WRITER = r"""
import os, sys, time
root, record, tag = sys.argv[1:4]
rate, seconds = float(sys.argv[4]), float(sys.argv[5])
for sub in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
period, start = 1.0 / rate, time.monotonic()
with open(record, "w", buffering=1) as rec:
    i = 0
    while time.monotonic() - start < seconds:
        name = f"{tag}-{i:06d}"
        spool = i % 2 == 0
        path = os.path.join(root, "tmp" if spool else "cur", name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, ((name + "\n") * (1 + i % 40)).encode())
        os.fsync(fd)
        os.close(fd)
        final = "cur/" + name
        if spool:
            final = "new/" + name
            os.rename(path, os.path.join(root, final))
            dfd = os.open(os.path.join(root, "new"), os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
        rec.write(f"{time.time():.6f} {final}\n")
        i += 1
        time.sleep(max(0.0, start + i * period - time.monotonic()))
"""
"""Writes, fsyncs and closes files at ``rate``/s for ``seconds``; every other one is
written in tmp/ and renamed into new/ (the directory fsynced), the others are written
in cur/; each line of ``record`` is "TIME PATH", written once the close (and rename)
returned: the file was acknowledged."""

SPOOL_CHECK = r"""
import os, sys
root, lost = sys.argv[1], 0
for rel in sys.stdin.read().split():
    name = rel.split("/")[1]
    want = ((name + "\n") * (1 + int(name.rsplit("-", 1)[1]) % 40)).encode()
    try:
        with open(os.path.join(root, rel), "rb") as fh:
            lost += fh.read() != want
    except OSError:
        lost += 1
print(lost)
"""
"""Reads PATHs on stdin; prints how many are missing or differ from what the writer wrote."""

RPO_RATE = 90.0
"""Files per second the RPO writer acknowledges."""

CUTS = 5
"""Cuts per tool in the RPO benchmark."""


@dataclass(frozen=True)
class Cut:
    """One cut of the sending node while the spool writer ran."""

    acked: int  # files acknowledged before the cut
    lost: int  # of those, missing or different on the receiving node
    rate: float  # files acknowledged per second over the 2 s before the cut
    at: float  # seconds from the writer's first file to the cut

    @property
    def lost_seconds(self) -> float:
        """The loss as seconds of writes."""
        return self.lost / self.rate if self.rate else 0.0


def rpo_cut(
    plan: LabPlan,
    source: Node,
    dest: Node,
    root: str,
    tag: str,
    rng: random.Random,
    after_cut: Callable[[], None],
    warm: tuple[float, float] = (1.0, 3.0),
    fault: Callable[[], None] | None = None,
) -> Cut:
    """Cut ``source`` off (both cables) at a random moment ``warm`` seconds into the spool
    writer's run there, call ``after_cut`` (e.g. wait until ``dest`` took over), count the
    acknowledged files missing or different on ``dest``, then plug ``source`` back in.
    ``fault``, if given, is done instead of the cut (and nothing is plugged back in).

    The cut instant is the host's time just before the cables go: files acknowledged
    later are not counted (a few ms of writes may be acknowledged before the cables
    are down and are not counted either: the test's lenient side).
    """
    record = f"/run/rpo-{tag}.txt"
    cut_at = rng.uniform(*warm)
    seconds = cut_at + 1.5  # the writer goes on through the failover, then ends by itself
    writer = spawn(
        source.nsenter(
            ["python3", "-c", SPOOL_WRITER, root, record, tag, str(RPO_RATE), str(seconds)]
        )
    )
    try:
        time.sleep(cut_at)
        t_cut = time.time()
        (fault or (lambda: faults.isolate(plan, source.name)))()
        try:
            after_cut()
        finally:
            writer.wait(timeout=seconds + 30)
        lines = [line.split() for line in source.read_file(record).splitlines()]
        acks = [(float(t), path) for t, path in lines if float(t) < t_cut]
        paths = [path for _, path in acks]
        lost = int(dest.run(["python3", "-c", SPOOL_CHECK, root], input="\n".join(paths)).stdout)
    finally:
        if writer.poll() is None:
            writer.kill()
        if fault is None:
            faults.rejoin(plan, source.name)
    at = t_cut - acks[0][0] if acks else 0.0
    recent = [t for t, _ in acks if t >= t_cut - 2.0]
    return Cut(len(acks), lost, len(recent) / min(2.0, at) if at else 0.0, at)


def wait_in_sync(node: Node, root: str, timeout: float = 30.0) -> None:
    """Wait until the agent on ``node`` (ACTIVE) reports ``root`` in sync with its peer."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            dirs = deploy.status(node)["sync"]["dirs"]
            seen = next(d for d in dirs if d["path"] == root)
            if seen["in_sync"] and not seen["pending"]:  # type: ignore[index]
                return
        except (LabError, StopIteration, KeyError):
            pass
        time.sleep(0.2)
    raise LabError(f"{root} on {node.name} not in sync within {timeout:g}s: {seen}")


def rpo_ours(
    nodes: dict[str, Node],
    plan: LabPlan,
    root: str,
    cuts: int,
    rng: random.Random,
    warm: tuple[float, float] = (1.0, 3.0),
) -> list[Cut]:
    """``cuts`` failovers of the pair (the agent syncing ``root``), each ``warm`` seconds
    into the spool writer's run on the active node; the loss is counted on the new active."""
    out = []
    for node in nodes.values():  # the spool's folders (an empty source is never pushed)
        node.run(["mkdir", "-p", *(f"{root}/{sub}" for sub in ("tmp", "new", "cur"))])
    for i in range(cuts):
        roles = deploy.wait_pair(nodes, 40)
        act = next(n for n, r in roles.items() if r == "ACTIVE")
        sb = next(n for n in roles if n != act)
        wait_in_sync(nodes[act], root)

        def took_over(sb: str = sb) -> None:
            deploy.wait_roles({sb: nodes[sb]}, {sb: "ACTIVE"}, timeout=20)

        out.append(rpo_cut(plan, nodes[act], nodes[sb], root, f"m{i}", rng, took_over, warm))
        deploy.wait_roles(nodes, {sb: "ACTIVE", act: "STANDBY"}, timeout=30)
    return out


def wait_same(a: Node, b: Node, root: str, timeout: float = 60.0) -> None:
    """Wait until the files under ``root`` are the same on both nodes (names and contents)."""
    script = f"cd {root} && find . -type f -print0 | sort -z | xargs -0r md5sum | md5sum"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left, right = (n.run(["sh", "-c", script], check=False).stdout for n in (a, b))
        if left and left == right:
            return
        time.sleep(0.5)
    raise LabError(f"{root} still differs between {a.name} and {b.name} after {timeout:g}s")


def rpo_lsyncd(
    nodes: dict[str, Node], plan: LabPlan, a: Node, b: Node, cuts: int, rng: random.Random
) -> list[Cut]:
    """The same cuts of ``a``, where lsyncd pushes /srv/lsync to ``b``; loss counted on ``b``."""
    out = []
    for i in range(cuts):
        wait_same(a, b, "/srv/lsync")
        out.append(rpo_cut(plan, a, b, "/srv/lsync", f"l{i}", rng, lambda: time.sleep(1.0)))
        deploy.wait_pair(nodes, 40)
    return out


def rpo_lines(ours: list[Cut], theirs: list[Cut]) -> list[str]:
    """The RPO table: files lost per cut (median, worst), as seconds of writes, and the ratio."""
    lines = [f"RPO, {len(ours)} cuts each at ~{RPO_RATE:g} files/s: files lost per failover"]
    for label, cuts in (("mosqit (async)", ours), ("lsyncd", theirs)):
        each = " ".join(str(c.lost) for c in cuts)
        secs = " ".join(f"{c.lost_seconds:.2f}" for c in cuts)
        lines.append(
            f"  {label:15} median {statistics.median(c.lost for c in cuts):6.1f}  "
            f"worst {max(c.lost for c in cuts):4d}  per cut [{each}]  as seconds [{secs}]"
        )
    m, lsy = (statistics.median(c.lost for c in cuts) for cuts in (ours, theirs))
    lines.append(f"  ratio mosqit/lsyncd (medians) {m / lsy if lsy else float('nan'):.2f}")
    return lines


LSYNCD = """settings {{ nodaemon = true, logfile = "/run/lsyncd.log" }}
sync {{ default.rsyncssh, source = "/srv/lsync", host = "root@{peer}", targetdir = "/srv/lsync",
  delay = 1, rsync = {{ rsh = "/usr/bin/ssh -i /root/.ssh/lsyncd_key -o BatchMode=yes" }},
  ssh = {{ identityFile = "/root/.ssh/lsyncd_key" }} }}
"""


def start_lsyncd(a: Node, b: Node, plan: LabPlan) -> None:
    """lsyncd on ``a`` pushing /srv/lsync to ``b`` over ssh with a key of its own (the
    unit bench-lsyncd of ``a``)."""
    a.run(["sh", "-c", "ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/lsyncd_key"])
    key = a.read_file("/root/.ssh/lsyncd_key.pub")
    b.run(["sh", "-c", f"echo '{key.strip()}' >> /root/.ssh/authorized_keys"])
    for node in (a, b):
        node.run(["mkdir", "-p", "/srv/lsync"])
    a.write_file("/etc/lsyncd/bench.lua", LSYNCD.format(peer=plan.node(b.name).addr("a")))
    a.run(
        [
            "sh",
            "-c",
            "cp /root/.ssh/known_hosts /root/.ssh/known_hosts.bak; "
            "systemd-run --unit=bench-lsyncd lsyncd /etc/lsyncd/bench.lua",
        ]
    )
    time.sleep(3)


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


def single_write_lag(active: Node, standby: Node, root: str, count: int = 3) -> float:
    """Median seconds from a lone file's write on ``active`` to its presence on ``standby``
    (files written 0.5 s apart, each alone in its batch: the wait for quiet and one push)."""
    names = [f"lone-{time.time_ns()}-{i}" for i in range(count)]
    out = "/tmp/bench-lone.json"
    poller = spawn(standby.nsenter(["python3", "-c", POLLER, root, ",".join(names), "30", out]))
    time.sleep(0.3)
    written = json.loads(
        active.run(["python3", "-c", WRITER, root, ",".join(names), "0.5"], timeout=60).stdout
    )
    poller.wait(timeout=60)
    arrived: dict[str, float] = json.loads(standby.read_file(out))
    return statistics.median(arrived.get(n, float("inf")) - float(written[n]) for n in names)


def run(
    plan: LabPlan = DEFAULT_PLAN, cuts: int = CUTS, rpo_only: bool = False, seed: int | None = None
) -> list[str]:
    """The benchmark's lines; ``rpo_only``: only the RPO cuts (``cuts`` for each tool)."""
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
        start_lsyncd(a, b, plan)
        ours, theirs = str(deploy.main_pid(a)), str(deploy.main_pid(a, "bench-lsyncd"))
        rng = random.Random(seed)
        if rpo_only:
            return _rpo(nodes, plan, a, b, cuts, rng)
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
        return lines + _rpo(nodes, plan, a, b, cuts, rng)
    finally:
        control.down(plan)


def _rpo(
    nodes: dict[str, Node], plan: LabPlan, a: Node, b: Node, cuts: int, rng: random.Random
) -> list[str]:
    root = "/srv/bench"
    for node in nodes.values():  # the spool's folders (an empty source is never pushed)
        node.run(["mkdir", "-p", *(f"{root}/{sub}" for sub in ("tmp", "new", "cur"))])
    roles = deploy.wait_pair(nodes, 40)
    act = next(n for n, r in roles.items() if r == "ACTIVE")
    wait_in_sync(nodes[act], root)
    lone = single_write_lag(nodes[act], next(n for k, n in nodes.items() if k != act), root)
    ours = rpo_ours(nodes, plan, root, cuts, rng)
    theirs = rpo_lsyncd(nodes, plan, a, b, cuts, rng)
    return [
        *rpo_lines(ours, theirs),
        f"  (mosqit: a lone write reached the peer in {lone:.2f}s just before the cuts)",
        "target: mosqit loses <= 0.5 s of writes per failover",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cuts", type=int, default=CUTS, help="RPO cuts per tool")
    parser.add_argument("--rpo-only", action="store_true", help="only the RPO cuts")
    parser.add_argument("--seed", type=int, help="seed of the random cut moments")
    args = parser.parse_args(argv)
    for line in run(cuts=args.cuts, rpo_only=args.rpo_only, seed=args.seed):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(control.run_tool("bench_sync", main))
