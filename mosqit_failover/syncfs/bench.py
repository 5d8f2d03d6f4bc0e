"""Measure the synchronous mount against the plain directory, on this machine.

``python -m mosqit_failover.syncfs.bench [--files N] [--size-mib M] [--dir PARENT]``

Runs itself again in a private mount namespace (``unshare -m --propagation private``:
nothing is mounted in the host's), mounts ``python -m mosqit_failover.syncfs mount``
over a temporary directory with the applier as a local standby (its copy in a sibling
directory on the same disk, or under ``--standby-dir``: no network, so this is the cost
of FUSE in Python, the stream and the standby's fsync, not of a link), and reports:

- close() latency p50/p99 of 4 KiB files (create, write 4 KiB, close), and files/s;
- sequential MB/s of one file (1 MiB writes, then close);

each through the mount, and for the plain directory with and without an fsync before
close (the mount's close waits for the standby's fsync, the plain close for nothing).
``--measure DIR`` measures only there (no mount of its own) and prints JSON: the lab
benchmark (``scenarios/bench_syncmode.py``) runs it on the active node, over ssh to a
real standby.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

INNER = "MOSQIT_SYNCFS_BENCH_INNER"


def small_files(directory: Path, count: int, fsync: bool) -> tuple[list[float], float]:
    """(close() seconds of each file, files per second for create+write+close)."""
    data = os.urandom(4096)
    closes = []
    started = time.perf_counter()
    for i in range(count):
        fd = os.open(directory / f"f{i:06d}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        before = time.perf_counter()
        if fsync:
            os.fsync(fd)
        os.close(fd)
        closes.append(time.perf_counter() - before)
    return closes, count / (time.perf_counter() - started)


def sequential(path: Path, size_mib: int, fsync: bool) -> float:
    """MB/s (10^6 bytes) of writing ``size_mib`` MiB in 1 MiB writes, then close."""
    chunk = os.urandom(1 << 20)
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(size_mib):
        os.write(fd, chunk)
    if fsync:
        os.fsync(fd)
    os.close(fd)
    return size_mib * (1 << 20) / 1e6 / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Numbers:
    """One directory's numbers: close() p50/p99 (s), small files/s, sequential MB/s."""

    p50: float
    p99: float
    files_per_s: float
    mb_per_s: float

    def line(self, label: str, size_mib: int) -> str:
        return (
            f"{label:28} close p50 {self.p50 * 1e3:7.3f} ms  p99 {self.p99 * 1e3:7.3f} ms  "
            f"{self.files_per_s:8.0f} files/s  {size_mib} MiB sequential {self.mb_per_s:7.1f} MB/s"
        )


def numbers(work: Path, files: int, size_mib: int, fsync: bool) -> Numbers:
    """Measure in ``work`` (made here; left for the caller to remove)."""
    work.mkdir()
    closes, rate = small_files(work, files, fsync)
    mbs = sequential(work / "big", size_mib, fsync)
    return Numbers(statistics.median(closes), pct(closes, 0.99), rate, mbs)


def measure(
    label: str, directory: Path, files: int, size_mib: int, fsync: bool, keep: bool = False
) -> None:
    """Measure in a new directory under ``directory``, then remove it unless ``keep``: a
    measurement must not pay for the memory an earlier one still holds (on a VM whose
    host backs guest memory only once it is used, page cache grown into memory not used
    lately is written at a fraction of the speed: 380 vs 5,600 MB/s measured here)."""
    work = directory / f"bench-{label}"
    found = numbers(work, files, size_mib, fsync)
    print(found.line(label, size_mib), flush=True)
    if not keep:
        shutil.rmtree(work)


def inner(args: argparse.Namespace) -> int:
    parent = Path(tempfile.mkdtemp(prefix="syncfs-bench-", dir=args.dir))
    plain, active, standby = parent / "plain", parent / "active", parent / "standby"
    if args.standby_dir:
        standby = Path(tempfile.mkdtemp(prefix="syncfs-bench-standby-", dir=args.standby_dir))
        standby.rmdir()
    for d in (plain, active, standby):
        d.mkdir()
    py = sys.executable
    channel = [py, "-m", "mosqit_failover.syncfs", "apply", "--root", str(standby)]
    channel += ["--state", str(parent / "state.json")]
    mount = [py, "-m", "mosqit_failover.syncfs", "mount", str(active), "--epoch", "1"]
    fs = subprocess.Popen(
        [*mount, "--channel", "local=" + shlex.join(channel)], stdout=subprocess.PIPE
    )
    try:
        assert fs.stdout is not None
        line = fs.stdout.readline().decode().strip()
        if line != f"mounted {active}":
            print(f"bench: the file system did not mount ({line!r})", file=sys.stderr)
            return 1
        print(
            f"in {parent}, standby copy in {standby} "
            f"({args.files} files of 4 KiB, {args.size_mib} MiB sequential)"
        )
        measure("plain directory", plain, args.files, args.size_mib, fsync=False)
        measure("plain directory + fsync", plain, args.files, args.size_mib, fsync=True)
        measure("syncfs mount (local standby)", active, args.files, args.size_mib, False, keep=True)
        same = subprocess.run(
            ["diff", "-r", "--no-dereference", str(active), str(standby)], capture_output=True
        )
        print("standby copy identical:", "yes" if same.returncode == 0 else "NO", flush=True)
    finally:
        fs.send_signal(signal.SIGTERM)
        try:
            fs.wait(10)
        except subprocess.TimeoutExpired:
            fs.kill()
            fs.wait()
        subprocess.run(["umount", "-l", str(active)], capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)
        shutil.rmtree(standby, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosqit_failover.syncfs.bench")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--dir", default="/var/tmp", help="where the temporary directories go")
    parser.add_argument(
        "--standby-dir",
        default=None,
        help="where the standby copy goes (default: beside the others; /dev/shm: no disk)",
    )
    parser.add_argument(
        "--measure",
        metavar="DIR",
        help="only measure in a new directory DIR (whatever it lies on: the lab benchmark "
        "runs this on a node, in its plain, async and synchronous directories); prints JSON",
    )
    parser.add_argument("--fsync", action="store_true", help="with --measure: fsync before close")
    args = parser.parse_args(argv)
    if args.measure:
        found = numbers(Path(args.measure), args.files, args.size_mib, fsync=args.fsync)
        print(json.dumps(asdict(found)))
        return 0
    if os.environ.get(INNER) == "1":
        return inner(args)
    if os.geteuid() != 0:
        print("bench: needs root (a private mount namespace and FUSE)", file=sys.stderr)
        return 2
    argv_inner = ["unshare", "-m", "--propagation", "private", "--"]
    argv_inner += [sys.executable, "-m", "mosqit_failover.syncfs.bench", *sys.argv[1:]]
    return subprocess.run(argv_inner, env={**os.environ, INNER: "1"}, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
