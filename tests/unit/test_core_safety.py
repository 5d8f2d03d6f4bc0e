"""Golden transcripts of the safety rules against misconfiguration and hung peers:
datagrams that fail authentication, fencing before the OS-problem promotion, and
a peer that vanishes during MANUAL mode."""

from __future__ import annotations

from dataclasses import replace

from mosqit_failover.actions import FencePeer
from mosqit_failover.config import Fencing, parse
from mosqit_failover.events import Role
from mosqit_failover.sim_scenarios import SIM_CONFIG
from tests.unit.transcript import Harness, active, standby

FENCED = "ssh fence via 10.0.1.1: fenced"
PROMOTION_PLAN = (
    "plan 1: PersistState(2, ACTIVE), ClaimVip, SendGarp, StartSync(2, True, ()), "
    "StartResource(db), StartResource(app)"
)
# alpha's agent silent from a second in while its kernel answers: fence, then promote
OS_PROBLEM_TAKEOVER = [
    "[fence] beta STANDBY: peer alpha's failover service silent for 3000ms while ICMP "
    "answers (OS problem): fencing it before taking over [epoch 0]",
    "FencePeer(2, alpha)",
    "[promote] beta STANDBY -> PROMOTING: peer alpha's failover service silent for 3300ms "
    f"while ICMP answers (OS problem); fenced: {FENCED} [epoch 2]",
    PROMOTION_PLAN,
    "[plan-done] beta PROMOTING -> ACTIVE: promotion complete: VIP, ARP, sync and "
    "services are up [epoch 2]",
]


def fences(h: Harness) -> list[FencePeer]:
    return [a for _, a in h.outputs if isinstance(a, FencePeer)]


# ---- datagrams that fail authentication --------------------------------------


def test_a_standby_whose_peer_fails_authentication_never_promotes() -> None:
    h = standby()
    start = h.now
    h.peer = None
    h.peer_unauthenticated = "bad-mac"  # the secret on alpha was changed
    h.run_until(start + 30)
    assert h.role() is Role.STANDBY
    assert h.transcript(start) == [
        "[peer-auth-failed] beta STANDBY: messages from peer alpha fail authentication "
        "(bad-mac): the secrets differ, or the configs give the nodes other addresses (the "
        "MAC covers them), or the peer was downgraded to a version before that: copy "
        "cluster.secret_file and the config from one node to the other; its agent is alive, "
        "so this node will not take over until they authenticate [epoch 0]"
    ]
    peer = h.core.snapshot(h.now)["peer"]
    assert isinstance(peer, dict)
    assert peer["unauthenticated"].startswith("messages from peer alpha fail authentication")


def test_an_active_node_keeps_serving_while_its_peer_fails_authentication() -> None:
    h = active()
    start = h.now
    h.peer = None
    h.peer_unauthenticated = "bad-mac"
    h.run_until(start + 30)
    assert h.role() is Role.ACTIVE
    assert h.kinds(start) == ["peer-auth-failed"]
    assert "this node keeps serving" in h.decisions(start)[0].text


def test_two_nodes_with_different_secrets_at_a_cold_start_stay_standby() -> None:
    h = Harness(peer_unauthenticated="bad-mac")
    h.run_until(60)
    assert h.role() is Role.STANDBY
    assert "promote" not in h.kinds()
    assert "peer-auth-failed" in h.kinds()
    assert not fences(h)


def test_the_handshake_after_a_restart_is_no_authentication_failure() -> None:
    h = standby()
    start = h.now
    h.peer_unauthenticated = "unconfirmed"  # the peer restarted: one round trip to confirm
    h.run_until(start + 0.3)
    h.peer_unauthenticated = None
    h.run_until(start + 5)
    assert h.kinds(start) == []


def test_authentication_back_is_said_once() -> None:
    h = standby()
    start = h.now
    h.peer_unauthenticated = "stale"
    h.run_until(start + 5)
    h.peer_unauthenticated = None
    h.run_until(start + 10.5)
    assert h.transcript(start) == [
        "[peer-auth-failed] beta STANDBY: messages from peer alpha fail authentication "
        "(stale): the clocks differ by more than 30 s: run NTP (chrony) on both nodes; its "
        "agent is alive, so this node will not take over until they authenticate [epoch 0]",
        "[peer-auth-ok] beta STANDBY: messages from peer alpha authenticate again [epoch 0]",
    ]
    # failing authentication is trouble: echo ran all along, and stops once calm
    assert h.probes(start) == ["ProbePeer(alpha, False, calm for 5000ms, heartbeats on time)"]


def test_a_peer_that_failed_authentication_and_then_died_is_taken_over() -> None:
    h = standby()
    h.peer = None
    h.peer_unauthenticated = "bad-mac"
    h.run_until(10)
    h.peer_unauthenticated = None  # alpha powered off: no datagram, no echo
    h.echo_answers = {"a": False, "b": False}
    h.run_until(12)
    assert h.kinds(10) == ["promote", "plan-done", "peer-auth-ok"]
    assert not fences(h)  # its kernel is gone too: nothing to fence


def test_force_active_is_refused_while_datagrams_come_from_the_peer() -> None:
    from mosqit_failover.events import Command, OperatorCommand

    h = Harness(peer_unauthenticated="bad-mac")
    h.echo_answers = {"a": False, "b": False}
    h.run_until(10)
    h.feed(OperatorCommand(Command.FORCE_ACTIVE))
    assert h.kinds(10) == ["refused"]
    assert h.role() is Role.STANDBY


# ---- fencing before the OS-problem promotion ---------------------------------


def test_the_os_problem_rule_fences_the_peer_before_it_promotes() -> None:
    h = standby()
    h.peer = None  # the agent hangs, the kernel answers echo
    start = h.now
    h.run_until(start + 4)
    assert h.transcript(start) == OS_PROBLEM_TAKEOVER


def test_no_fence_no_promotion_and_the_fence_is_retried() -> None:
    h = standby(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    h.peer = None
    start = h.now
    h.run_until(start + 20)
    assert h.role() is Role.STANDBY
    kinds = h.kinds(start)
    assert "promote" not in kinds
    assert kinds[:2] == ["fence", "fence-failed"]
    assert len(fences(h)) >= 3  # retried every fencing.retry (5 s)
    failed = h.decisions(start)[1].text
    assert failed == (
        "beta STANDBY: fencing peer alpha failed: ssh fence via 10.0.1.1: no answer; not "
        "taking over while the peer may hold the VIP; retrying in 5000ms (fix the fence, or "
        "power the peer off and run `mosqit-failover force-active` on beta) [epoch 0]"
    )
    h.fence_answer = (True, FENCED)  # the operator fixed sshd on alpha
    h.run_until(h.now + 6)
    assert h.role() is Role.ACTIVE


def _promote_on_failure() -> Harness:
    """beta standby beside alpha active, every fence failing, fencing.on_failure = promote."""
    h = Harness(fence_answer=(False, "power fence: exit status 1"))
    h.config = replace(h.config, fencing=Fencing(on_failure="promote"))
    h.core.config = h.config
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.run_until(1.0)
    return h


def test_an_operator_may_choose_to_promote_when_every_fence_failed() -> None:
    h = _promote_on_failure()
    h.peer = None
    h.run_until(5.0)
    assert h.role() is Role.ACTIVE
    promote = next(d for d in h.decisions() if d.kind == "promote")
    assert "FENCING FAILED (power fence: exit status 1)" in promote.reason


def test_a_peer_heard_again_during_the_fence_is_not_taken_over() -> None:
    h = standby(fence_answer=None)  # the fence never answers in this test
    h.peer = None
    start = h.now
    h.run_until(start + 3.2)
    assert h.kinds(start) == ["fence"]
    h.peer = h.peer_view(Role.ACTIVE, 1)  # the agent resumed
    h.run_until(start + 4)
    from mosqit_failover.events import FenceResult

    h.feed(FenceResult(2, True, FENCED))  # a late answer to a fence no longer wanted
    h.run_until(start + 5)
    assert h.role() is Role.STANDBY
    assert "promote" not in h.kinds(start)


def test_a_dead_peer_is_not_fenced() -> None:
    h = standby()
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(5)
    assert "promote" in h.kinds()
    assert not fences(h)


def test_echo_misses_in_a_row_after_the_kernel_answered_do_not_pass_for_death() -> None:
    """Heavy loss on both networks while the active's agent hangs: the misses came in
    a row after the standby had seen alpha's kernel answer in the agent's silence. It
    promoted on them without a fence, and alpha kept the VIP while it hung."""
    h = standby()
    start = h.now
    h.peer = None  # the agent hangs; its kernel answers
    h.run_until(start + 0.5)
    h.echo_answers = {"a": False, "b": False}  # a streak of lost echoes on both networks
    h.run_until(start + 0.6)  # fewer than kernel_silent_misses: the proof holds
    assert h.core.peers["alpha"].echo_missed_everywhere(h.config.timing.misses)
    assert h.kinds(start) == []
    h.echo_answers = {"a": True, "b": True}
    h.run_until(start + 4)
    assert h.transcript(start) == OS_PROBLEM_TAKEOVER


def test_the_os_problem_says_why_the_misses_did_not_decide() -> None:
    # probes whose send fails (a firewall's EPERM) are not re-sent: a miss a slot, so
    # the runs stay short of kernel_silent_misses on b
    h = standby(echo_retries=False)
    start = h.now
    h.peer = None
    h.run_until(start + 0.5)
    h.echo_answers = {"a": False, "b": True}  # network a lossy from here on
    h.run_until(start + 2.6)
    h.echo_answers = {"a": False, "b": False}  # b too, a moment before service_timeout
    h.run_until(start + 3.1)
    fence = h.decisions(start)[0]
    assert fence.text == (
        "beta STANDBY: peer alpha's failover service silent for 3000ms while ICMP answers "
        "(OS problem; its kernel answered 2550ms into the silence, echo replies missed "
        "since: a: 25, b: 4): fencing it before taking over [epoch 0]"
    )


def test_a_host_silent_long_enough_on_every_network_is_dead_after_all() -> None:
    """Heartbeats lost just before alpha died, and one echo reply already 250 ms into
    that silence: taken for a hung agent, it was fenced for nothing and the failover
    took 3 s. `kernel_silent_misses` misses in a row on every network end the proof:
    0.3 s after the death here, where the quick retries bring them (1 s when only
    `misses - 1` were re-sent at once and the rest came one a slot)."""
    h = standby()
    start = h.now
    h.peer = None
    h.run_until(start + 0.2)  # its kernel answers 200 ms into the silence: a proof
    h.echo_answers = {"a": False, "b": False}  # then it dies
    h.run_until(start + 1.2)
    assert h.kinds(start) == ["promote", "plan-done"]
    assert h.decisions(start)[0].text == (
        "beta STANDBY -> PROMOTING: peer alpha gone: echo replies missed (a: 11, b: 10), "
        "no message for 510ms [epoch 2]"
    )
    assert not fences(h)


def test_a_rebooted_holder_whose_kernel_answers_first_is_not_fenced() -> None:
    """alpha died, beta took over; alpha boots, its kernel answers ICMP before its agent
    runs. That is no hung holder: beta fenced it (sshd not up yet), the fence failed,
    and beta stood down, an outage for as long as alpha's agent took to start."""
    h = standby(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(5.0)
    assert h.role() is Role.ACTIVE
    h.echo_answers = {"a": True, "b": True}  # booting
    h.run_until(30.0)
    assert h.kinds(5.0) == []
    assert h.role() is Role.ACTIVE


def _taken_over_as_dead(**kwargs: object) -> Harness:
    """beta promoted on echo misses; then alpha's kernel answers, its agent silent."""
    h = standby(**kwargs)
    h.peer = None
    h.echo_answers = {"a": False, "b": False}  # the first echoes after the hang all lost
    h.run_until(1.5)
    assert h.kinds(1.0) == ["promote", "plan-done"]
    assert "echo replies missed" in h.decisions(1.0)[0].text
    h.echo_answers = {"a": True, "b": True}
    h.run_until(3.0)
    return h


TAKEN_OVER_FENCE = (
    "[fence] beta ACTIVE: peer alpha, taken over from as dead, answers ICMP while its "
    "failover service is silent (700ms): hung, not dead, and it may still hold the VIP: "
    "fencing it [epoch 2]"
)


def test_a_hang_taken_for_death_is_fenced_by_the_new_active() -> None:
    h = _taken_over_as_dead()
    assert h.transcript(1.5) == [TAKEN_OVER_FENCE, "FencePeer(2, alpha)"]
    h.run_until(10)
    assert h.role() is Role.ACTIVE
    assert len(fences(h)) == 1  # fenced once, not again while its host answers


def test_a_late_fence_that_fails_leaves_the_new_active_serving_and_says_why() -> None:
    """Standing down on it stood down for a healthy old active, in the lab: back from a
    cut, its agent spoke later than its kernel, and its fence was refused (the agent
    answers). The hung case keeps the alert: fence-failed names what to check."""
    h = _taken_over_as_dead(fence_answer=(False, "ssh fence via 10.0.1.1: refused"))
    assert h.transcript(1.5) == [
        TAKEN_OVER_FENCE,
        "FencePeer(2, alpha)",
        "[fence-failed] beta ACTIVE: fencing peer alpha failed: ssh fence via 10.0.1.1: "
        "refused; staying active: its agent may only be slow to speak (then it stands down "
        "when it hears this node), or hung with the VIP up: check it, power it off if it is "
        "hung [epoch 2]",
    ]
    h.run_until(10)
    assert h.role() is Role.ACTIVE
    assert len(fences(h)) == 1


def test_a_partition_that_heals_is_no_hang_when_echo_answers_before_the_first_heartbeat() -> None:
    """Both paths between the nodes cut for a second: beta takes over. At the heal
    alpha's kernel answered a probe a moment before alpha's first heartbeat arrived:
    beta took that for a hung agent and fenced a healthy node (4 runs in 20)."""
    h = standby()
    h.peer = None
    h.echo_answers = {"a": False, "b": False}
    h.run_until(2.0)
    assert h.role() is Role.ACTIVE
    h.echo_answers = {"a": True, "b": True}
    h.run_until(h.core.peers["alpha"].echo_at + 0.001)  # the first reply after the heal
    h.run_until(h.now + 0.05)
    h.peer = h.peer_view(Role.ACTIVE, 1)  # then its heartbeat
    h.run_until(4.0)
    assert "fence" not in h.kinds(2.0)
    assert not fences(h)


def test_a_dead_peer_whose_last_reply_was_on_its_way_is_not_fenced() -> None:
    """Fast profile: alpha's last heartbeat went a calm period before it died, its
    kernel's last echo reply a moment before. No proof of a live host: no fence."""
    config = parse(SIM_CONFIG.replace("[vip]", '[timing]\nprofile = "fast"\n\n[vip]'))
    h = Harness(config=config, peer_pace=config.timing.calm_heartbeat)
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.run_until(1.0)  # the next heartbeat and probe are due at once
    start = h.now
    h.peer = None  # that heartbeat is not sent: alpha dies as its kernel answers the probe
    h.run_until(start + 0.001)
    alpha = h.core.peers["alpha"]
    assert alpha.echo_at - alpha.heard_at > config.timing.echo_window / 2
    h.echo_answers = {"a": False, "b": False}
    h.run_until(start + 1)
    assert h.kinds(start) == ["promote", "plan-done"]
    assert not fences(h)


# ---- MANUAL mode ends only when the shared loss does ---------------------------


def _manual_standby() -> Harness:
    h = standby()
    h.set_carrier("a", False)
    h.peer = h.peer_view(Role.ACTIVE, 1, uplinks=(("a", False), ("b", True)))
    h.peer_networks = ("b",)
    h.run_until(h.now + 3)
    assert h.core.manual, h.transcript()
    return h


def test_the_active_lost_while_manual_is_said_and_no_automatic_mode_is_claimed() -> None:
    h = _manual_standby()
    start = h.now
    h.peer = None  # alpha lost network b as well
    h.echo_answers = {"a": False, "b": False}
    h.run_until(start + 30)
    assert h.transcript(start) == [
        "[manual-peer-lost] beta WAITING: peer alpha lost while in MANUAL mode (it was "
        "ACTIVE): no automatic switchover; `mosqit-failover force-active` on beta takes "
        "over [epoch 0]"
    ]
    assert h.core.manual
    assert h.role() is Role.WAITING


def test_the_active_that_loses_its_last_network_while_manual_says_nothing_false() -> None:
    h = active()
    h.set_carrier("a", False)
    h.peer = h.peer_view(Role.STANDBY, 0, uplinks=(("a", False), ("b", True)), candidate=False)
    h.peer_networks = ("b",)
    h.run_until(h.now + 3)
    assert h.core.manual
    start = h.now
    h.set_carrier("b", False)
    h.peer = None
    h.run_until(start + 10)
    assert "automatic" not in h.kinds(start)
    assert h.kinds(start)[0] == "demote-isolated"


def test_manual_ends_when_the_lost_network_is_back_on_either_node() -> None:
    h = _manual_standby()
    start = h.now
    h.set_carrier("a", True)  # switch a repaired: the peer's carrier is stable first
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.peer_networks = ("a", "b")
    h.run_until(start + 5)
    assert h.transcript(start) == [
        "[automatic] beta WAITING: automatic mode: peer alpha has network a again [epoch 0]",
        "[standby] beta WAITING -> STANDBY: sees both networks: standing by [epoch 0]",
    ]
    assert not h.core.manual


def test_manual_ends_when_the_lost_network_is_back_here() -> None:
    h = _manual_standby()
    start = h.now
    h.set_carrier("a", True)  # our cable back, the peer still lacks network a
    h.run_until(start + 5)
    assert "[automatic] beta STANDBY: automatic mode: both networks back [epoch 0]" in (
        h.transcript(start)
    )


def test_the_restart_handshake_after_a_failure_and_a_pause_is_no_new_failure() -> None:
    h = standby()
    start = h.now
    h.peer_unauthenticated = "bad-mac"
    h.run_until(start + 3)
    h.peer_unauthenticated = None  # the operator fixed the secret and restarts the agent:
    h.peer = None  # a pause while it restarts,
    h.run_until(start + 3.5)
    h.peer_unauthenticated = "unconfirmed"  # its first datagrams await our ack,
    h.run_until(start + 3.7)
    h.peer_unauthenticated = None
    h.peer = h.peer_view(Role.ACTIVE, 1)  # then it is heard
    h.run_until(start + 6)
    assert h.kinds(start) == ["peer-auth-failed", "peer-auth-ok"]


def test_the_handshake_right_after_a_fixed_secret_is_no_new_failure() -> None:
    h = standby()
    start = h.now
    h.peer = None
    h.peer_unauthenticated = "bad-mac"
    h.run_until(start + 3)
    h.peer_unauthenticated = "unconfirmed"  # secret fixed by a reload: one round trip
    h.run_until(start + 3.15)
    h.peer_unauthenticated = None
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.run_until(start + 6)
    assert h.kinds(start) == ["peer-auth-failed", "peer-auth-ok"]
    assert h.decisions(start)[1].reason == "messages from peer alpha authenticate again"


def test_a_lasting_new_reason_is_told() -> None:
    h = standby()
    start = h.now
    h.peer = None
    h.peer_unauthenticated = "bad-mac"
    h.run_until(start + 3)
    h.peer_unauthenticated = "stale"  # secret fixed, but the clocks are apart too
    h.run_until(start + 6)
    assert h.kinds(start) == ["peer-auth-failed", "peer-auth-failed"]
    assert "(stale)" in h.decisions(start)[1].reason


# ---- a node started beside a peer it never heard -----------------------------


def test_a_node_started_beside_a_hung_peer_fences_it_before_taking_over() -> None:
    """alpha's agent and sshd stopped (SIGSTOP) while it held the VIP; beta's agent
    starts and never hears it, but its kernel answers. beta took the time before its
    first probe for a pause of the peer's echo (a rebooted host), and once its startup
    grace ended promoted beside the holder as if the peer were silent (4 s of two
    holders in the simulation, until alpha resumed)."""
    h = Harness(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    h.peer = None
    h.run_until(8.0)
    assert h.role() is Role.STANDBY
    assert h.kinds()[:3] == ["standby", "fence", "fence-failed"], h.transcript()
    assert h.decisions()[1].text == (
        "beta STANDBY: peer alpha's failover service silent for ever while ICMP answers "
        "(OS problem): fencing it before taking over [epoch 0]"
    )


def test_a_node_started_beside_a_peer_whose_agent_is_stopped_takes_over_once_fenced() -> None:
    h = Harness()  # alpha's host up, its agent stopped: the fence goes through
    h.peer = None
    h.run_until(8.0)
    assert h.role() is Role.ACTIVE
    assert h.kinds()[:3] == ["standby", "fence", "promote"], h.transcript()


def test_a_node_started_alone_takes_over_after_its_grace_without_a_fence() -> None:
    h = Harness()
    h.peer = None
    h.echo_answers = {"a": False, "b": False}  # alpha powered off
    h.run_until(8.0)
    assert h.role() is Role.ACTIVE
    assert not fences(h)


def test_a_host_that_rebooted_during_the_grace_is_fenced_not_waited_for() -> None:
    """alpha's host up without its agent; its kernel silent from 0.5 to 3.6 s (a reboot)
    while beta's startup grace ran. The pause in its replies reads as a reboot, so no
    proof holds; beta waited for ever without a word (an agent that fails to start on
    the peer meant no active node) until the rule fenced a peer whose kernel answers."""
    h = Harness()
    h.peer = None
    h.run_until(0.5)
    h.echo_answers = {"a": False, "b": False}
    h.run_until(3.6)
    h.echo_answers = {"a": True, "b": True}
    h.run_until(8.0)
    assert h.role() is Role.ACTIVE
    assert h.kinds()[:3] == ["standby", "fence", "promote"], h.transcript()


def test_a_standby_cut_off_while_the_holder_hung_fences_it_when_back() -> None:
    """beta's cables out for 10 s, alpha's agent hung meanwhile (its kernel answers):
    back on both networks, beta took the first reply for silence and promoted beside
    the holder (before), or waited for ever (a proof cannot hold after that pause)."""
    h = standby(fence_answer=(False, "ssh fence via 10.0.1.1: no answer"))
    start = h.now
    for network in ("a", "b"):
        h.set_carrier(network, False)
    h.run_until(start + 2)
    h.peer = None  # alpha's agent hangs while beta is cut off
    h.run_until(start + 10)
    for network in ("a", "b"):
        h.set_carrier(network, True)
    h.run_until(start + 25)
    assert "promote" not in h.kinds(start)
    assert "fence" in h.kinds(start), h.transcript(start)
    h.fence_answer = (True, FENCED)
    h.run_until(start + 31)
    assert h.role() is Role.ACTIVE
