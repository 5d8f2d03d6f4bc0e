"""Every process of the active node frozen for 5 s (sshd too; the kernel still
answers ICMP and completes TCP handshakes): the standby sees an OS problem and
fences before it promotes. The ssh fence cannot answer and the lab has no power
fence, so by default (`[fencing] on_failure = "wait"`) the standby must NOT
promote: zero seconds with two VIP holders, and after the thaw the old active is
still ACTIVE, with the same agent, and was not fenced late.

The ssh fence waits for the frozen sshd's banner up to its ConnectTimeout (5 s of
the 10 s `fencing.timeout`), so within a 5 s freeze it has not failed yet: the
standby logs `fence`, not `fence-failed`. The variant with sshd dead
(`active-frozen-no-sshd`) sees the fence refused at once: `fence-failed`."""

import time

from mosqit_failover.lab import deploy
from mosqit_failover.lab.scenarios.harness import LabScenario, Run

# after the thaw, long enough for a fence still in flight to reach the old active
# (the ssh connection queued in its kernel during the freeze is served at the thaw)
LATE_FENCE_WINDOW = 5.0


def _frozen(run: Run, seconds: float, sshd_dead: bool) -> None:
    old, new = run.active, run.standby
    pid = run.agent_pid(old)
    if sshd_dead:
        run.lab[old].systemctl("stop", "ssh.service")
    try:
        run.freeze(old, frozen=True)
        run.wait(seconds)
        kinds = run.kinds(new)
        run.expect("fence" in kinds, f"{new} did not fence (it decided {kinds})")
        if sshd_dead:
            run.expect("fence-failed" in kinds, f"{new}: no fence-failed (it decided {kinds})")
        run.expect("promote" not in kinds, f"{new} promoted although no fence succeeded")
        run.freeze(old, frozen=False)
        thawed = time.time()
    finally:
        if sshd_dead:
            run.lab[old].systemctl("start", "ssh.service")
    run.wait(LATE_FENCE_WINDOW)
    run.expect("promote" not in run.kinds(new), f"{new} promoted after the thaw")
    fenced = [
        e["MESSAGE"]
        for e in run.lab[old].journal(identifier="mosqit-failover", since=run.started)
        if "FENCED_BY_EPOCH" in e
    ]
    run.expect(not fenced, f"{old} was fenced although {new} never promoted: {fenced}")
    run.expect(run.agent_pid(old) == pid, f"{old}'s agent was killed or restarted")
    run.wait_roles({old: "ACTIVE", new: "STANDBY"}, timeout=20)
    gap = run.probe.longest_gap_ms(thawed + 1.0)
    run.expect(gap < 500, f"the client lost the service for {gap:.0f} ms after the thaw")
    run.expect(deploy.holds_vip(run.lab[old], run.plan), f"{old} does not hold the VIP")


def _play(run: Run) -> None:
    _frozen(run, 5.0, sshd_dead=False)


def _play_no_sshd(run: Run) -> None:
    _frozen(run, 5.0, sshd_dead=True)


SCENARIOS = [
    LabScenario(
        "active-frozen",
        "the active node frozen (every process stopped) for 5 s: the standby fences, the "
        "fence cannot answer, no promotion; the old active serves on after the thaw",
        _play,
        expected=frozenset({"fence", "fence-failed"}),
    ),
    LabScenario(
        "active-frozen-no-sshd",
        "the active's sshd dead and the node frozen for 5 s: the ssh fence is refused at "
        "once (fence-failed), no promotion; the old active serves on after the thaw",
        _play_no_sshd,
        expected=frozenset({"fence", "fence-failed"}),
    ),
]
