"""The synchronous write mode in the lab (issue 14, docs/sync-mode.md): real agents from
the package, the real FUSE mount as a transient systemd service on the active node, the
real channel over ssh to the standby's forced command.

- RPO 0: the spool writer of the async RPO test (``bench_sync.SPOOL_WRITER``: create,
  write, fsync, close, rename into place, recording each file once its close and rename
  returned) runs on the active node; the active is cut off (both cables) at a random
  moment; after the failover every recorded file is on the new active, byte-identical.
- The mount process SIGKILLed under the same writer: the agent unmounts lazily and hands
  over; the new active holds every file acknowledged before the kill.
- The active node frozen whole (writer, mount and agent; a paused VM): the standby takes
  over with every file acknowledged before; thawed, the old active steps down and keeps
  no mount. The agent SIGKILLed together with the cut, at random moments: the same RPO 0.
- The active's agent hung and fenced over ssh by the promoting standby while the mount
  serves on: the new active's applier refuses the next record, every close fails with
  EIO at once, none acknowledged is lost.
- The agent SIGKILLed on the active: the mount serves on (closes return, replicated), the
  restarted agent adopts it, its channel never dropped.
- The standby unreachable (its cables pulled) with ``on_standby_loss = "degrade"``: the
  first close waits ``ack_timeout``, then closes return at once, status shows the
  directory degraded, the journal says why and the alert fired; back on the network the
  standby is caught up asynchronously, then taken back into the running mount (its
  channel again, in sync, not degraded); with ``"block"`` (the config reloaded, then a
  switchover mounts it with that setting): close fails with EIO after ``block_timeout``,
  and once the standby is back and taken back, closes succeed again.

Each test starts from a synchronous, in-sync pair (:func:`synchronous_pair`: waits for
the standby to be taken back, else a switchover mounts afresh with a channel).
MQLAB_RPO_SEED picks the cut moments.
"""

from __future__ import annotations

import errno
import json
import os
import random
import time
from collections.abc import Iterator

import pytest

from mosqit_failover.lab import deploy, faults, sshkeys
from mosqit_failover.lab.control import Lab
from mosqit_failover.lab.node import Node
from mosqit_failover.lab.scenarios import bench_sync
from mosqit_failover.lab.scenarios.bench_syncmode import switch_over, sync_dir, synchronous_pair
from mosqit_failover.lab.topology import LabPlan

pytestmark = pytest.mark.lab

SPOOL = "/srv/syncspool"
ACK = 2.0  # ack_timeout: a standby that acknowledges nothing this long is dropped
BLOCK = 2.0  # block_timeout of the block-mode test
CUTS = 2
SETTINGS = {"mode": "synchronous", "ack_timeout": f"{ACK:g}s"}
# A frozen active (its sshd frozen too) cannot be fenced over ssh and the lab has no
# power fence here: take over anyway, as before fencing (the frozen-node test).
FENCING = '\n[fencing]\non_failure = "promote"\n'

CLOSER = r"""
import json, os, sys, time
root, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
out = []
for i in range(count):
    start = time.monotonic()
    try:
        fd = os.open(os.path.join(root, f"close-{i:03d}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, b"x" * 4096)
        os.close(fd)
        code = 0
    except OSError as error:
        code = error.errno
    out.append([round(time.monotonic() - start, 3), code])
    time.sleep(gap)
print(json.dumps(out))
"""
"""Writes and closes ``count`` 4 KiB files; prints [seconds the write and close took,
errno or 0] for each."""


@pytest.fixture(scope="module")
def sync_pair(lab: Lab, lab_plan: LabPlan) -> Iterator[Lab]:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("the synchronous mode needs /dev/fuse on the host")
    sshkeys.setup(lab.nodes, lab_plan)
    config = sshkeys.install_config(lab.nodes, lab_plan, [SPOOL], None, **SETTINGS) + FENCING
    for node in lab.nodes.values():  # the spool's folders and a file on both
        node.write_file(deploy.CONFIG_PATH, config)
        node.run(["mkdir", "-p", *(f"{SPOOL}/{sub}" for sub in ("tmp", "new", "cur"))])
        node.write_file(f"{SPOOL}/seed", "seed\n")
    deploy.start(lab.nodes)
    try:
        yield lab
    finally:
        wind_down(lab)
        for node in lab.nodes.values():  # no mount may outlive the agents' stop
            mounts = node.run(["findmnt", "-n", SPOOL], check=False).stdout
            assert not mounts.strip(), f"{SPOOL} still mounted on {node.name}: {mounts}"


def wind_down(lab: Lab) -> None:
    """A synchronous module's end: every cable in, nobody frozen, every agent stopped."""
    faults.clear_all(lab.plan)
    for node in lab.nodes.values():
        if node.frozen():
            node.thaw()
        node.systemctl("stop", deploy.UNIT, check=False, timeout=150)


def closes_without(
    lab: Lab, act: Node, sb: Node, count: int, gap: float
) -> list[tuple[float, int]]:
    """[seconds, errno] of ``count`` closes on ``act`` while ``sb``'s cables are pulled."""
    faults.isolate(lab.plan, sb.name)
    try:
        proc = act.run(["python3", "-c", CLOSER, SPOOL, str(count), str(gap)], timeout=120)
    finally:
        faults.rejoin(lab.plan, sb.name)
    took = [(seconds, code) for seconds, code in json.loads(proc.stdout)]
    print(f"{sync_dir(act, SPOOL)['mount']['on_standby_loss']}, the standby cut off: {took}")
    return took


def test_synchronous_mode_loses_no_acknowledged_file_in_a_failover(sync_pair: Lab) -> None:
    seed = int(os.environ.get("MQLAB_RPO_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    report = []
    for i in range(CUTS):
        act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
        mount = sync_dir(act, SPOOL)["mount"]
        assert isinstance(mount, dict) and mount["state"] == "up", mount

        def took_over(sb: Node = sb) -> None:
            deploy.wait_roles({sb.name: sb}, {sb.name: "ACTIVE"}, timeout=30)

        cut = bench_sync.rpo_cut(
            sync_pair.plan, act, sb, SPOOL, f"s{i}", rng, took_over, warm=(2.0, 3.5)
        )
        report.append(f"cut {cut.at:.2f}s in: {cut.lost} of {cut.acked} lost at {cut.rate:.0f}/s")
        deploy.wait_roles(sync_pair.nodes, {sb.name: "ACTIVE", act.name: "STANDBY"}, 40)
        assert cut.acked > 20 and cut.lost == 0, f"MQLAB_RPO_SEED={seed}: {report}"
    print(f"MQLAB_RPO_SEED={seed}: " + "; ".join(report))


def test_a_killed_file_system_hands_over_and_loses_no_acknowledged_file(
    sync_pair: Lab,
) -> None:
    """The mount process SIGKILLed under the spool writer: the agent unmounts lazily and
    hands over to the standby, which holds every file acknowledged before the kill."""
    act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
    pid = sync_dir(act, SPOOL)["mount"]["pid"]
    since = time.time()

    def took_over() -> None:
        deploy.wait_roles(sync_pair.nodes, {sb.name: "ACTIVE", act.name: "STANDBY"}, 40)

    def kill() -> None:
        act.run(["kill", "-KILL", str(pid)])

    seed = int(os.environ.get("MQLAB_RPO_SEED", time.time_ns() % 10**6))
    cut = bench_sync.rpo_cut(
        sync_pair.plan, act, sb, SPOOL, "k", random.Random(seed), took_over, (1.5, 2.5), kill
    )
    print(f"the file system killed {cut.at:.2f}s in: {cut.lost} of {cut.acked} lost")
    assert cut.acked > 20 and cut.lost == 0, cut
    assert not act.run(["findmnt", "-n", SPOOL], check=False).stdout.strip()
    lines = [e.get("MESSAGE", "") for e in act.journal(identifier="mosqit-failover", since=since)]
    assert any("unmounted lazily (umount -l)" in line for line in lines), lines
    assert any("handing over after the synchronous file system died" in line for line in lines)
    bench_sync.wait_in_sync(sb, SPOOL, timeout=40)  # the new active mounted with a channel


def test_a_killed_agent_leaves_the_mount_serving_and_the_next_adopts_it(sync_pair: Lab) -> None:
    """SIGKILL of the agent on the active (systemd restarts it): writes through the mount
    go on synchronously meanwhile, and the restarted agent adopts the same mount."""
    act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
    pid = sync_dir(act, SPOOL)["mount"]["pid"]
    since = time.time()
    act.systemctl("kill", "--signal=SIGKILL", deploy.UNIT)
    proc = act.run(["python3", "-c", CLOSER, SPOOL, "5", "0.1"], timeout=60)
    took = json.loads(proc.stdout)
    assert all(code == 0 for _, code in took), took
    for i in range(5):  # each close had returned: on the standby already
        assert sb.read_file(f"{SPOOL}/close-{i:03d}") == "x" * 4096
    deploy.wait_roles(sync_pair.nodes, {act.name: "ACTIVE", sb.name: "STANDBY"}, 30)
    bench_sync.wait_in_sync(act, SPOOL, timeout=30)  # its channel never dropped
    assert sync_dir(act, SPOOL)["mount"]["pid"] == pid
    lines = [e.get("MESSAGE", "") for e in act.journal(identifier="mosqit-failover", since=since)]
    assert any("adopted the synchronous mount of epoch" in line for line in lines), lines
    # handed over: the restarted agent's own mount namespace, copied while the mount was
    # up, keeps no dead copy of it (its engine could not read the directory any more)
    switch_over(sync_pair.nodes, act, sb, SPOOL)
    table = act.run(["cat", f"/proc/{deploy.main_pid(act)}/mountinfo"]).stdout
    assert "mosqit-syncfs" not in table, table


def test_an_unreachable_standby_degrades_and_writes_go_on(sync_pair: Lab) -> None:
    act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
    since = time.time()
    took = closes_without(sync_pair, act, sb, 8, 0.2)
    assert all(code == 0 for _, code in took), took
    assert took[0][0] < ACK + 3, took  # the first close waits for ack_timeout at most
    assert max(t for t, _ in took[2:]) < 1.0, took  # then closes return at once
    shown = sync_dir(act, SPOOL)
    assert shown["degraded"] and shown["state"] == "synchronous, degraded", shown
    assert sb.name in str(shown["last_error"]), shown
    lines = [e.get("MESSAGE", "") for e in act.journal(identifier="mosqit-failover", since=since)]
    assert any("synchronous channel lost" in line for line in lines), lines
    assert any(line.startswith("ALERT sync-degraded") for line in lines), lines
    # back on the network, the standby is caught up, then taken back into the mount
    took_back = wait_taken_back(act, sb, since)
    print(f"degrade: taken back {took_back:.1f}s after the standby returned")
    check = f"cd {SPOOL} && cat close-00[0-7] | wc -c"
    assert sb.run(["sh", "-c", check]).stdout.strip() == str(8 * 4096)


def wait_taken_back(act: Node, sb: Node, since: float, timeout: float = 60) -> float:
    """Seconds until ``sb``'s channel is back in ``act``'s mount (in sync, not degraded)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        shown = sync_dir(act, SPOOL)
        if shown["in_sync"] and not shown["degraded"]:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(
            f"{sb.name} not taken back within {timeout:g}s: {sync_dir(act, SPOOL)}"
        )
    took = time.monotonic() - started
    said = f"synchronous channel to {sb.name} back"
    lines: list[str] = []
    while time.monotonic() - started < timeout + 5:  # the line follows the status shortly
        found = act.journal(identifier="mosqit-failover", since=since)
        lines = [e.get("MESSAGE", "") for e in found]
        if any(said in line for line in lines):
            return took
        time.sleep(0.3)
    raise AssertionError(f"no line {said!r}: {lines}")


def test_block_mode_fails_a_close_with_eio_after_block_timeout(sync_pair: Lab) -> None:
    config = (
        deploy.lab_config(sync_pair.plan)
        + sshkeys.sync_tables(
            [SPOOL], **SETTINGS, on_standby_loss="block", block_timeout=f"{BLOCK:g}s"
        )
        + FENCING
    )
    said = ""
    for node in sync_pair.nodes.values():
        node.write_file(deploy.CONFIG_PATH, config)
        said += node.run([deploy.AGENT, "reload", "--config", deploy.CONFIG_PATH]).stdout
    assert "keeps its settings until the next promotion" in said, said
    act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
    if sync_dir(act, SPOOL)["mount"].get("on_standby_loss") != "block":  # mounted before the reload
        act, sb = switch_over(sync_pair.nodes, act, sb, SPOOL)
    since = time.time()
    took = closes_without(sync_pair, act, sb, 3, 0.0)
    assert [code for _, code in took] == [errno.EIO] * 3, took
    assert took[0][0] >= BLOCK and all(t >= BLOCK * 0.9 for t, _ in took), took
    assert took[0][0] < ACK + BLOCK + 3, took
    assert sync_dir(act, SPOOL)["degraded"]
    # the standby back: caught up, taken back, and closes succeed again (breaker's finding 6)
    took_back = wait_taken_back(act, sb, since)
    proc = act.run(["python3", "-c", CLOSER, SPOOL, "5", "0.1"], timeout=60)
    after = [(seconds, code) for seconds, code in json.loads(proc.stdout)]
    print(f"block: taken back {took_back:.1f}s after the standby returned; closes {after}")
    assert [code for _, code in after] == [0] * 5, after
    assert max(t for t, _ in after) < 1.0, after
    for i in range(5):  # each close acknowledged through the channel: on the standby
        assert sb.read_file(f"{SPOOL}/close-{i:03d}") == "x" * 4096


def test_a_frozen_active_node_loses_no_acknowledged_file(sync_pair: Lab) -> None:
    """The active node frozen whole (cgroup freezer: the writer, the mount, the agent; a
    paused VM) at a random moment under the spool writer: the standby takes over with
    every file acknowledged before the freeze; thawed, the old active steps down, and
    nothing it still had in flight changes an acknowledged file on the new active."""
    act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
    seed = int(os.environ.get("MQLAB_RPO_SEED", time.time_ns() % 10**6))
    record, seconds = "/run/rpo-frozen.txt", 6.0
    writer = [bench_sync.SPOOL_WRITER, SPOOL, record, "f", str(bench_sync.RPO_RATE), str(seconds)]
    # a service of the node, so that it freezes with it
    act.run(["systemd-run", "--collect", "--unit=rpo-frozen-writer", "python3", "-c", *writer])
    time.sleep(random.Random(seed).uniform(1.5, 2.5))
    frozen_at = time.time()
    act.freeze()
    try:
        deploy.wait_roles({sb.name: sb}, {sb.name: "ACTIVE"}, timeout=30)
    finally:
        act.thaw()
    thawed_at = time.time()
    deploy.wait_roles(sync_pair.nodes, {sb.name: "ACTIVE", act.name: "STANDBY"}, 40)
    deadline = time.monotonic() + seconds + 30
    while act.is_active("rpo-frozen-writer"):
        assert time.monotonic() < deadline, "the writer did not end"
        time.sleep(0.3)
    lines = [line.split() for line in act.read_file(record).splitlines()]
    acked = [path for t, path in lines if float(t) < frozen_at]
    late = [path for t, path in lines if float(t) > thawed_at]
    check = ["python3", "-c", bench_sync.SPOOL_CHECK, SPOOL]
    lost = int(sb.run(check, input="\n".join(acked)).stdout)
    print(
        f"MQLAB_RPO_SEED={seed}: frozen {frozen_at - float(lines[0][0]):.2f}s in: "
        f"{lost} of {len(acked)} lost; {len(late)} acknowledged by the thawed old active"
    )
    assert len(acked) > 20 and lost == 0, (lost, len(acked))
    assert not act.run(["findmnt", "-n", SPOOL], check=False).stdout.strip()


FENCE_WRITER = r"""
import os, sys, time
root, record, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
mounted = os.stat(root).st_dev  # the mount's: started under it
period, start, i = 1.0 / rate, time.monotonic(), 0
with open(record, "w", buffering=1) as rec:
    while time.monotonic() - start < seconds:
        name, began = f"fence-{i:06d}", time.monotonic()
        before = os.stat(root).st_dev
        try:
            fd = os.open(os.path.join(root, "cur", name), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                os.write(fd, ((name + "\n") * (1 + i % 40)).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            through = before == mounted == os.stat(root).st_dev
            outcome = "ok" if through else "plain"
        except OSError as error:
            outcome = f"errno{error.errno}"
        rec.write(f"{outcome} {time.time():.6f} {time.monotonic() - began:.3f} cur/{name}\n")
        i += 1
        time.sleep(max(0.0, start + i * period - time.monotonic()))
"""
"""Writes, fsyncs and closes files at ``rate``/s for ``seconds``, going on after errors;
each line of ``record``: "OUTCOME TIME SECONDS PATH", OUTCOME ``ok`` (the close returned
and the directory was the mount before and after), ``plain`` (it returned, the mount
gone meanwhile) or ``errnoN``."""


def test_a_mount_fenced_by_a_newer_active_fails_every_close_with_eio(sync_pair: Lab) -> None:
    """The active's agent hung (SIGSTOP; its node, sshd and mount alive) and kept from
    restarting: the standby fences it over ssh (the agent SIGKILLed, VIP and services
    gone) and promotes, while the mount on the old node serves on under a writer that is
    no resource of ours (nothing stops it). Its next record reaches the new active, whose
    applier refuses it (ACTIVE with a newer epoch): the mount is fenced and every close
    from then on fails with EIO at once, whatever on_standby_loss (no hang, no close
    acknowledged without the new active), the mount's journal says why, and every file
    whose close returned through the mount is on the new active. Then the agent comes
    back, ends the mount and joins as the standby."""
    act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
    since = time.time()
    record = "/run/fence-writer.txt"
    deploy.drop_in(act, "zz-lab-no-restart", "[Service]\nRestartSec=1h\n")
    try:
        writer = ["python3", "-c", FENCE_WRITER, SPOOL, record, "40", "10"]
        act.run(["systemd-run", "--collect", "--unit=fence-writer", *writer])
        time.sleep(1.5)
        act.systemctl("kill", "--signal=SIGSTOP", "--kill-whom=main", deploy.UNIT)
        deploy.wait_roles({sb.name: sb}, {sb.name: "ACTIVE"}, timeout=30)
        deadline = time.monotonic() + 40
        while act.is_active("fence-writer"):
            assert time.monotonic() < deadline, "the writer hangs on the fenced mount"
            time.sleep(0.3)
        fenced = act.journal(since=since, grep=f"fenced: standby {sb.name} refused")
    finally:
        deploy.drop_in(act, "zz-lab-no-restart", None)
        act.systemctl("kill", "--signal=SIGCONT", deploy.UNIT, check=False)
        act.systemctl("start", deploy.UNIT)
    deploy.wait_roles(sync_pair.nodes, {sb.name: "ACTIVE", act.name: "STANDBY"}, 40)
    lines = [line.split() for line in act.read_file(record).splitlines()]
    ok = [path for outcome, _, _, path in lines if outcome == "ok"]
    failed = [(float(at), float(took), what) for what, at, took, _ in lines if what != "ok"]
    lost = int(sb.run(["python3", "-c", bench_sync.SPOOL_CHECK, SPOOL], input="\n".join(ok)).stdout)
    print(
        f"{len(ok)} closes through the mount, {lost} of them lost; then {len(failed)}: "
        f"{sorted({outcome for *_, outcome in failed})}, the slowest "
        f"{max((took for _, took, _ in failed), default=0):.3f}s; "
        f"{fenced[0]['MESSAGE'] if fenced else 'no fenced line'}"
    )
    assert len(ok) > 20 and lost == 0, (lost, len(ok))
    assert fenced, "the mount never said it was fenced"
    assert failed and all(outcome == f"errno{errno.EIO}" for *_, outcome in failed), failed
    first = min(at for at, _, _ in failed)
    assert not [line for line in lines if line[0] == "ok" and float(line[1]) > first], (
        "a close returned through the fenced mount"
    )
    assert max(took for _, took, _ in failed) < ACK + 3, "a close hung on the fenced mount"
    assert not act.run(["findmnt", "-n", SPOOL], check=False).stdout.strip()


def test_the_agent_killed_with_the_cut_loses_no_acknowledged_file(sync_pair: Lab) -> None:
    """The agent SIGKILLed at a random moment under the spool writer and the node cut off
    at once: the mount serves on alone until its channel is cut; the standby takes over
    with every file acknowledged before."""
    seed = int(os.environ.get("MQLAB_RPO_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    report = []
    for i in range(CUTS):
        act, sb = synchronous_pair(sync_pair.nodes, SPOOL)

        def kill_and_cut(act: Node = act) -> None:
            act.systemctl("kill", "--signal=SIGKILL", deploy.UNIT)
            faults.isolate(sync_pair.plan, act.name)

        def took_over(sb: Node = sb) -> None:
            deploy.wait_roles({sb.name: sb}, {sb.name: "ACTIVE"}, timeout=30)

        try:
            cut = bench_sync.rpo_cut(
                sync_pair.plan, act, sb, SPOOL, f"a{i}", rng, took_over, (1.5, 2.5), kill_and_cut
            )
        finally:
            faults.rejoin(sync_pair.plan, act.name)
        report.append(f"killed and cut {cut.at:.2f}s in: {cut.lost} of {cut.acked} lost")
        deploy.wait_roles(sync_pair.nodes, {sb.name: "ACTIVE", act.name: "STANDBY"}, 40)
        assert cut.acked > 20 and cut.lost == 0, f"MQLAB_RPO_SEED={seed}: {report}"
    print(f"MQLAB_RPO_SEED={seed}: " + "; ".join(report))


def test_an_operators_lazy_unmount_makes_the_directory_asynchronous(sync_pair: Lab) -> None:
    """``umount -l`` of the serving mount by hand while a process holds a file open
    through it (breaker round 2): the agent notices within a few seconds that its file
    system is no longer on top, says so, stops the mount and syncs the directory
    asynchronously, so a file the service writes afterwards reaches the standby; a
    switchover mounts it synchronously again."""
    act, sb = synchronous_pair(sync_pair.nodes, SPOOL)
    since = time.time()
    holder = f"exec sleep 300 < {SPOOL}/seed > /dev/null 2>&1"
    act.run(["sh", "-c", f"setsid sh -c '{holder}' &"])
    try:
        act.run(["umount", "-l", SPOOL])
        deadline = time.monotonic() + 15
        said: list[str] = []
        while not said and time.monotonic() < deadline:
            time.sleep(0.5)
            entries = act.journal(identifier="mosqit-failover", since=since)
            said = [
                e.get("MESSAGE", "") for e in entries if "no longer on top" in e.get("MESSAGE", "")
            ]
        assert said and "umount -l" in said[0], said
        shown = sync_dir(act, SPOOL)
        assert shown["degraded"] and shown["state"].startswith("asynchronous"), shown
        act.write_file(f"{SPOOL}/after-umount", "written after the unmount\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = sb.run(["cat", f"{SPOOL}/after-umount"], check=False).stdout
            if found == "written after the unmount\n":
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the file written after the unmount never reached the standby")
        assert not act.run(["findmnt", "-n", SPOOL], check=False).stdout.strip()
    finally:
        act.run(["pkill", "-f", "sleep 300"], check=False)
    switch_over(sync_pair.nodes, act, sb, SPOOL)  # synchronous again, on the other node
