"""The synchronous file system mounted for real, with the real applier as its standby.

Each test mounts ``python -m mosqit_failover.syncfs mount`` over a temporary directory
in a mount namespace of its own (``unshare -m --propagation private``): nothing is ever
mounted in the host's namespace. The writer is a small Python process entered into that
namespace (``nsenter -m``) that runs the calls the test sends it, one at a time, each
with a deadline (a hang fails the test, never blocks it). From the host the test sees
the directory *under* the mount (the data stays in place) and the standby's copy, and
compares them after each call returned. Finalizers unmount (``umount -l`` inside the
namespace) and kill every process, whatever happened.

Needs root and /dev/fuse (skipped without them); pyfuse3 must be installed (make install).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import select
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover.effects.state import StateFile
from mosqit_failover.events import Role
from tests.unit.test_sync_receive import receiver_config_text

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
    reason="mounting FUSE in a private mount namespace needs root and /dev/fuse",
)

PY = sys.executable

DRIVER = r"""
import json, os, sys
os.chdir(sys.argv[1])
scope = {"os": os}
for line in sys.stdin:
    scope["result"] = None
    try:
        exec(compile(json.loads(line), "<test>", "exec"), scope)
        answer = {"ok": scope["result"]}
    except OSError as error:
        answer = {"errno": error.errno, "error": str(error)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""

SLOW_ACKS = r"""
import subprocess, sys, threading, time
delay = float(sys.argv[1])
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
def pump():
    while chunk := sys.stdin.buffer.read1(65536):
        child.stdin.write(chunk)
        child.stdin.flush()
    child.stdin.close()
threading.Thread(target=pump, daemon=True).start()
for line in child.stdout:
    if line.startswith(b"ok "):
        time.sleep(delay)
    sys.stdout.buffer.write(line)
    sys.stdout.flush()
sys.exit(child.wait())
"""


RPO_WRITER = r"""
import os, sys
os.chdir(sys.argv[1])
i = 0
while True:
    name = f"r{i:05d}"
    try:
        fd = os.open(name + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, (name * 300).encode())
        os.fsync(fd)
        os.close(fd)
        os.rename(name + ".tmp", name)
    except OSError as error:
        print("stopped", error.errno, flush=True)
        break
    print(name, flush=True)  # acknowledged: its close and rename returned
    i += 1
"""


class Writer:
    """A process in the mount's namespace, running the test's calls with a deadline."""

    def __init__(self, pid: int, directory: Path) -> None:
        self.process = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-m", "--", PY, "-c", DRIVER, str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def call(self, code: str, timeout: float = 10.0) -> Any:
        """The call's ``result``, or an OSError with the writer's errno."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(code).encode() + b"\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"the call hung for more than {timeout}s: {code}")
        line = self.process.stdout.readline()
        if not line:
            err = self.process.stderr.read().decode() if self.process.stderr else ""
            raise AssertionError(f"the writer died: {err}")
        answer = json.loads(line)
        if "errno" in answer:
            raise OSError(answer["errno"], answer["error"])
        return answer["ok"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait(5)


class Mount:
    """The synced directory ``active`` mounted in its own namespace; ``standby`` applied to."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.active = tmp / "active"
        self.standby = tmp / "standby"
        self.active.mkdir()
        self.standby.mkdir()
        self.state = StateFile(tmp / "standby-state.json")
        self.state.save(5, Role.STANDBY)
        self.stderr = tmp / "syncfs.err"
        self.applier_pid = tmp / "applier.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self.forced: Path | None = None
        self.epoch = 5
        self.writers: list[Writer] = []

    def channel(self, delay: float = 0.0) -> str:
        apply = [PY, "-m", "mosqit_failover.syncfs", "apply"]
        apply += ["--root", str(self.standby), "--state", str(self.state.path)]
        if delay:
            apply = [PY, "-c", SLOW_ACKS, str(delay), *apply]
        script = f"echo $$ > {shlex.quote(str(self.applier_pid))}; "
        if self.forced is not None:  # the standby's forced command, as sshd would run it
            original = f"mosqit-sync {self.epoch} --syncfs {self.standby}"
            apply = [PY, "-m", "mosqit_failover.syncfs", "forced", "--config", str(self.forced)]
            script += f"export SSH_ORIGINAL_COMMAND={shlex.quote(original)}; "
        script += f"exec {shlex.join(apply)}"
        return "standby=" + shlex.join(["sh", "-c", script])

    def start(self, *options: str, delay: float = 0.0, epoch: int = 5, prelude: str = "") -> None:
        """Mount in a new mount namespace, after ``prelude`` (shell) ran in it."""
        self.epoch = epoch
        command = [PY, "-m", "mosqit_failover.syncfs", "mount", str(self.active)]
        command += ["--epoch", str(epoch), "--channel", self.channel(delay), *options]
        argv = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c"]
        argv.append(f"{prelude} exec {shlex.join(command)}")
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        line = self.process.stdout.readline() if ready else b""
        assert line == f"mounted {self.active}\n".encode(), (line, self.log())

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def writer(self) -> Writer:
        writer = Writer(self.pid, self.active)
        self.writers.append(writer)
        return writer

    def log(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""

    def kill_standby(self) -> None:
        os.kill(int(self.applier_pid.read_text()), signal.SIGKILL)

    def stop(self) -> None:
        """Unmount inside the namespace, then end every process (a finalizer: never raises)."""
        process = self.process
        if process is not None and process.poll() is None:
            subprocess.run(
                ["nsenter", "-t", str(process.pid), "-m", "umount", "-l", str(self.active)],
                capture_output=True,
                timeout=10,
                check=False,
            )
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for writer in self.writers:
            writer.close()
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(self.applier_pid.read_text()), signal.SIGKILL)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mount]:
    m = Mount(tmp_path)
    try:
        yield m
    finally:
        m.stop()
        with open("/proc/self/mounts") as mounts:
            assert str(m.active) not in mounts.read(), "a mount leaked into the host"


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """What the standby must hold: type, mode, owner, content, size, mtime, links."""
    entries: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            entry: tuple[Any, ...] = (stat.S_IFMT(info.st_mode), info.st_uid, info.st_gid)
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                entry += (stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns)
                entry += (info.st_nlink, digest)
            elif stat.S_ISLNK(info.st_mode):
                entry += (os.readlink(path),)
            else:
                entry += (stat.S_IMODE(info.st_mode),)
            entries[os.path.relpath(path, root)] = entry
    return entries


def same(m: Mount) -> None:
    assert snapshot(m.standby) == snapshot(m.active)


def test_every_returned_call_is_already_on_the_standby(mount: Mount) -> None:
    mount.start()
    w = mount.writer()
    w.call("f = open('spool.tmp', 'wb'); f.write(b'x' * 4096); f.flush()")
    w.call("os.fsync(f.fileno())")
    assert (mount.standby / "spool.tmp").read_bytes() == b"x" * 4096  # fsync returned
    w.call("f.close()")
    same(mount)
    w.call("open('old', 'wb').write(b'old content')")  # closed at once (refcount)
    same(mount)
    w.call("os.rename('spool.tmp', 'old')")  # rename over an existing file
    same(mount)
    assert (mount.standby / "old").read_bytes() == b"x" * 4096
    steps = [
        "os.mkdir('d', 0o750)",
        "os.link('old', 'd/hard')",
        "os.symlink('d/hard', 'sym')",
        "os.chmod('old', 0o600)",
        "os.truncate('d/hard', 100)",
        "os.utime('old', ns=(1_000_000_000, 2_000_000_000))",
        "with open('d/sparse', 'wb') as s: s.write(b'a'); s.seek(8 << 20); s.write(b'z')",
        "with open('old', 'r+b') as s: s.seek(50); s.write(b'middle')",
        "with open('old', 'ab') as s: s.write(b'appended')",
        "with open('old', 'wb') as s: s.write(b'rewritten')",  # O_TRUNC
        "os.unlink('sym')",
        "os.mkdir('d/e'); os.rename('d/e', 'e'); os.rmdir('e')",
        "os.rename('d', 'moved')",
        "os.chown('moved/hard', 1234, 5678)",
        "import mmap; f = open('mapped', 'w+b'); f.truncate(8192); "
        "m = mmap.mmap(f.fileno(), 8192); m[100:105] = b'mmap!'; m.flush(); m.close(); f.close()",
    ]
    for step in steps:
        w.call(step)
        same(mount)
    sparse = mount.standby / "moved" / "sparse"
    assert sparse.stat().st_size == (8 << 20) + 1
    assert sparse.stat().st_blocks * 512 < 1 << 20  # the hole stayed a hole
    assert (mount.standby / "mapped").read_bytes()[100:105] == b"mmap!"
    assert w.call("result = sorted(os.listdir('.'))") == ["mapped", "moved", "old"]
    assert w.call("result = os.statvfs('.').f_bsize") == os.statvfs(mount.active).f_bsize
    assert (
        w.call("result = open('moved/hard', 'rb').read().decode()") == "rewritten"
    )  # a hard link of old


def test_a_file_open_in_two_processes_and_one_removed_while_open(mount: Mount) -> None:
    mount.start()
    a, b = mount.writer(), mount.writer()
    a.call("f = open('shared', 'wb'); f.write(b'A' * 10); f.flush()")
    b.call("g = open('shared', 'r+b'); g.seek(10); g.write(b'B' * 10); g.flush()")
    b.call("g.close()")  # one close waits for both writers' data
    assert (mount.standby / "shared").read_bytes() == b"A" * 10 + b"B" * 10
    a.call("f.close()")
    same(mount)
    a.call("h = open('doomed', 'wb'); h.write(b'1'); h.flush()")
    b.call("os.unlink('doomed')")
    same(mount)
    a.call("h.write(b'more'); h.flush(); os.fsync(h.fileno()); h.close()")  # no error
    same(mount)
    assert not (mount.standby / "doomed").exists()


def test_through_the_standbys_forced_command(mount: Mount) -> None:
    """The production shape minus sshd: the channel is the forced command's syncfs form."""
    (mount.tmp / "etc").mkdir()
    mount.forced = mount.tmp / "etc" / "node.toml"
    mount.forced.write_text(receiver_config_text(mount.tmp, mount.standby))
    mount.state = StateFile(mount.tmp / "state" / "state.json")
    mount.state.save(5, Role.STANDBY)
    mount.start()
    cmdline = Path(f"/proc/{mount.applier_pid.read_text().strip()}/cmdline").read_bytes()
    assert b"\0forced\0--config\0" in cmdline
    w = mount.writer()
    w.call("f = open('mail.tmp', 'wb'); f.write(b'm' * 5000); f.close()")
    w.call("os.rename('mail.tmp', 'mail')")
    same(mount)
    assert (mount.standby / "mail").read_bytes() == b"m" * 5000


def test_close_waits_for_the_standby_and_write_does_not(mount: Mount) -> None:
    mount.start(delay=2.0)  # the standby acknowledges each commit 2 s late
    w = mount.writer()
    started = time.monotonic()
    w.call("f = open('slow', 'wb'); f.write(b'data'); f.flush()")
    assert time.monotonic() - started < 2.0  # create and write: local, no ack awaited
    started = time.monotonic()
    w.call("f.close()")
    assert time.monotonic() - started >= 2.0  # close: after the standby's (late) ack
    same(mount)


def test_degrade_mode_goes_on_locally_when_the_standby_is_lost(mount: Mount) -> None:
    status = mount.tmp / "status.json"
    mount.start("--on-standby-loss", "degrade", "--ack-timeout", "5", "--status", str(status))
    shown = json.loads(status.read_text())
    assert (shown["state"], shown["degraded"], shown["channels"][0]["alive"]) == ("up", False, True)
    w = mount.writer()
    w.call("open('before', 'wb').write(b'1')")
    same(mount)
    mount.kill_standby()
    w.call("f = open('after', 'wb'); f.write(b'2'); f.close()")
    assert w.call("result = open('after', 'rb').read().decode()") == "2"
    assert not (mount.standby / "after").exists()
    assert "standby channel standby lost" in mount.log()
    assert "degraded" in mount.log()
    shown = json.loads(status.read_text())
    assert shown["degraded"] is True
    assert shown["channels"][0]["alive"] is False
    reason = shown["channels"][0]["reason"]  # whichever of the reader and the writer saw it
    assert "the channel ended" in reason or "cannot write to the channel" in reason, reason


def test_block_mode_fails_with_eio_after_block_timeout(mount: Mount) -> None:
    mount.start("--on-standby-loss", "block", "--block-timeout", "1")
    w = mount.writer()
    w.call("open('before', 'wb').write(b'1')")
    mount.kill_standby()
    started = time.monotonic()
    with pytest.raises(OSError) as caught:
        w.call("f = open('after', 'wb'); f.write(b'2'); f.close()")  # close(): EIO
    elapsed = time.monotonic() - started
    assert caught.value.errno == errno.EIO
    assert 0.9 <= elapsed < 10, elapsed
    assert "no standby left: degraded (block)" in mount.log()


def test_a_standby_that_stops_answering_is_dropped_after_ack_timeout(mount: Mount) -> None:
    mount.start("--ack-timeout", "2")
    w = mount.writer()
    w.call("open('before', 'wb').write(b'1')")
    os.kill(int(mount.applier_pid.read_text()), signal.SIGSTOP)  # hung, not dead
    started = time.monotonic()
    w.call("f = open('after', 'wb'); f.write(b'2'); f.close()")
    assert 1.9 <= time.monotonic() - started < 12
    assert "no acknowledgement within 2s" in mount.log()
    started = time.monotonic()
    w.call("f = open('later', 'wb'); f.write(b'3'); f.close()")
    assert time.monotonic() - started < 2.0  # degraded: no ack_timeout waited again


def test_a_full_standby_disk_is_a_refusal_and_a_clear_line(mount: Mount) -> None:
    standby = shlex.quote(str(mount.standby))
    mount.start(prelude=f"mount -t tmpfs -o size=256k none {standby} &&")
    w = mount.writer()
    w.call("f = open('big', 'wb'); f.write(os.urandom(1 << 20)); f.close()")
    assert (mount.active / "big").stat().st_size == 1 << 20  # the local write stands
    assert "No space left on device" in mount.log()
    assert "no standby left: degraded (degrade)" in mount.log()


def test_a_standby_with_a_newer_epoch_refuses_and_the_mount_is_fenced(mount: Mount) -> None:
    """Proof that a newer epoch exists: not degraded but fenced (this node must demote)."""
    mount.state.save(9, Role.STANDBY)
    status = mount.tmp / "status.json"
    mount.start("--status", str(status), epoch=5)
    assert "older than this node's 9" in mount.log()
    shown = json.loads(status.read_text())
    assert shown["degraded"] is True
    assert "knows epoch 9, newer than ours (5)" in shown["fenced"]
    assert "older than this node's 9" in shown["channels"][0]["reason"]
    w = mount.writer()
    w.call("f = open('f', 'wb'); f.write(b'local only')")
    with pytest.raises(OSError) as caught:  # degrade mode, yet no sync point succeeds
        w.call("f.close()")
    assert caught.value.errno == errno.EIO
    assert (mount.active / "f").read_bytes() == b"local only"
    assert os.listdir(mount.standby) == []
    assert "fenced: standby standby refused" in mount.log()


@pytest.mark.parametrize("seed", [1, 2])
def test_rpo_zero_when_the_file_system_dies_mid_stream(mount: Mount, seed: int) -> None:
    """A spool writer (create, write, fsync, close, rename into place) runs until the file
    system is SIGKILLed at a random moment: every file whose rename had returned is on the
    standby, whole, under its final name."""
    mount.start()
    assert mount.process is not None
    writer = subprocess.Popen(
        ["nsenter", "-t", str(mount.pid), "-m", "--", PY, "-c", RPO_WRITER, str(mount.active)],
        stdout=subprocess.PIPE,
    )
    try:
        time.sleep(random.Random(seed).uniform(0.3, 1.0))
        mount.process.kill()
        out, _ = writer.communicate(timeout=10)  # it stops (ENOTCONN), never hangs
    finally:
        with contextlib.suppress(OSError):
            writer.kill()
        writer.wait(5)
    lines = out.decode().split()
    # the call in flight when the connection aborts fails with ECONNABORTED, later ones ENOTCONN
    assert lines[-2] == "stopped" and int(lines[-1]) in (errno.ECONNABORTED, errno.ENOTCONN)
    names = lines[:-2]
    assert names, "the writer acknowledged nothing before the kill: the test proved nothing"
    for name in names:
        assert (mount.standby / name).read_bytes() == (name * 300).encode(), name


def test_the_writer_of_a_killed_file_system_gets_enotconn_not_a_hang(mount: Mount) -> None:
    """SIGKILL of the FUSE process: the kernel aborts the connection; every access, open
    descriptors included, fails at once with ENOTCONN until the mount is lazily unmounted;
    then the directory is the plain directory again, with what was acknowledged in it."""
    mount.start()
    w = mount.writer()
    w.call("f = open('kept', 'wb'); f.write(b'acknowledged'); f.flush(); os.fsync(f.fileno())")
    assert mount.process is not None
    mount.process.kill()
    mount.process.wait(5)
    for code in ("f.write(b'more'); f.flush()", "os.stat('kept')", "os.listdir('.')"):
        with pytest.raises(OSError) as caught:
            w.call(code, timeout=5)
        assert caught.value.errno == errno.ENOTCONN, code
    with contextlib.suppress(OSError):
        w.call("f.close()", timeout=5)
    umount = ["nsenter", "-t", str(w.process.pid), "-m", "umount", "-l", str(mount.active)]
    subprocess.run(umount, check=True, timeout=10)
    assert w.call(f"os.chdir({str(mount.active)!r}); result = open('kept').read()") == (
        "acknowledged"
    )
    assert (mount.standby / "kept").read_bytes() == b"acknowledged"


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("touch {d}/file", "is not a directory"),
        ("mount -t tmpfs none {d}", "is already a mount point"),
    ],
)
def test_a_directory_that_cannot_be_mounted_is_one_clear_line(
    tmp_path: Path, setup: str, words: str
) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    path = target / "file" if setup.startswith("touch") else target
    script = (
        setup.format(d=shlex.quote(str(target)))
        + " && exec "
        + shlex.join([PY, "-m", "mosqit_failover.syncfs", "mount", str(path), "--epoch", "1"])
    )
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", script],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done
    assert words in done.stderr.decode()
    assert len(done.stderr.decode().strip().splitlines()) == 1
    assert b"Traceback" not in done.stderr
