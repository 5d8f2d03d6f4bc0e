"""Resource monitoring in the core: golden transcripts (a look in, exact actions out).

Every timing.monitor_interval the shell looks at what the node holds and feeds a
`ResourceCheck`. The active must hold the VIP and run every monitored resource:
a stopped one is restarted with the ones after it, up to its `restarts` within
timing.failure_timeout, then the node hands over. A node that is not active
must hold nothing: what it holds is stopped, the VIP last.
"""

from __future__ import annotations

from mosqit_failover.actions import RunPlan
from mosqit_failover.config import Config, parse
from mosqit_failover.events import Command, Inventory, OperatorCommand, ResourceCheck, Role
from mosqit_failover.sim_scenarios import SIM_CONFIG
from tests.unit.transcript import Harness, active, standby

BOTH = ("db", "app")


def _config(timing: str = "", app: str = "") -> Config:
    text = SIM_CONFIG.replace("[vip]", f"[timing]\n{timing}\n\n[vip]", 1)
    text = text.replace('unit = "app.service"', f'unit = "app.service"\n{app}', 1)
    return parse(text)


def _look(
    h: Harness,
    running: tuple[str, ...] = BOTH,
    vip: bool | None = True,
    unknown: tuple[str, ...] = (),
    started: float | None = None,
) -> list[str]:
    """Feed one look that began a moment ago; the transcript it led to."""
    h.run_until(h.now + 10.0)
    start = h.now
    when = h.now - 0.05 if started is None else started
    h.feed(ResourceCheck(when, vip, running, unknown))
    return h.transcript(start)


RESTART_APP = "plan {n}: StopResource(app), StartResource(app)"
RESTART_DONE = (
    "[plan-done] alpha ACTIVE: restart complete: the monitored resources run again [epoch 1]"
)


def test_all_held_on_the_active_changes_nothing() -> None:
    h = active()
    assert h.core.monitoring(h.now)
    assert _look(h) == []


def test_the_last_resource_stopped_on_the_active_is_restarted_alone() -> None:
    h = active()
    assert _look(h, running=("db",)) == [
        "[resource-restart] alpha ACTIVE: resource app not running on the active node (app's "
        "failure 1 in 600s; 2 restarts before a handover): restarting app [epoch 1]",
        "Alert(resource-restart, alpha: resource app not running on the active node (app's "
        "failure 1 in 600s; 2 restarts before a handover): restarting app)",
        RESTART_APP.format(n=2),
        RESTART_DONE,
    ]
    assert h.role() is Role.ACTIVE


def test_a_stopped_resource_restarts_with_those_that_start_after_it() -> None:
    h = active()
    lines = _look(h, running=("app",))
    assert lines[0] == (
        "[resource-restart] alpha ACTIVE: resource db not running on the active node (db's "
        "failure 1 in 600s; 2 restarts before a handover): restarting db and what starts "
        "after it [epoch 1]"
    )
    assert lines[2] == (
        "plan 2: StopResource(app), StopResource(db), StartResource(db), StartResource(app)"
    )


def test_past_its_restarts_the_active_hands_over_draining_the_sync() -> None:
    h = active()
    _look(h, running=("db",))
    _look(h, running=("db",))
    lines = _look(h, running=("db",))
    reason = (
        "resource app not running on the active node (app's failure 3 in 600s, past its 2 "
        "restarts): handing over to beta"
    )
    assert lines[:3] == [
        f"Alert(resource-failed, alpha: {reason})",
        f"[resource-failed] alpha ACTIVE -> DEMOTING: {reason} [epoch 1]",
        # planned as a switchover's: the sync drains, and an unpushed change aborts it
        "plan 4: PersistState(1, DEMOTING), StopResource(app), StopResource(db), "
        "StopSync(True, True, beta), ReleaseVip, PersistState(1, WAITING)",
    ], lines
    # beta takes over; alpha is no candidate while its failures count (no failback)
    h.peer = h.peer_view(Role.ACTIVE, 2)
    h.run_until(h.now + 5.0)
    assert h.role() is Role.STANDBY and not h.last_view().candidate
    h.run_until(h.now + 600.0)
    assert h.last_view().candidate


def test_failures_older_than_failure_timeout_no_longer_count() -> None:
    h = active(config=_config('failure_timeout = "30s"'))
    _look(h, running=("db",))
    _look(h, running=("db",))
    h.run_until(h.now + 30.0)
    lines = _look(h, running=("db",))
    assert "app's failure 1 in 30s" in lines[0], lines
    assert h.core.snapshot(h.now)["resource_failures"] == {"app": 1}


def test_restarts_zero_hands_over_at_the_first_failure() -> None:
    h = active(config=_config(app="restarts = 0"))
    lines = _look(h, running=("db",))
    failed = "[resource-failed] alpha ACTIVE -> DEMOTING: resource app not running"
    assert lines[1].startswith(failed), lines


def test_with_no_standby_to_take_over_the_active_restarts_on() -> None:
    h = active(config=_config(app="restarts = 0"))
    h.peer = h.peer_view(Role.STANDBY, 0, maintenance=True, candidate=False)
    lines = _look(h, running=("db",))
    assert lines[0] == (
        "[resource-restart] alpha ACTIVE: resource app not running on the active node (app's "
        "failure 1 in 600s, past its 0 restarts, but no standby can take over): restarting "
        "app [epoch 1]"
    )
    assert h.role() is Role.ACTIVE


def test_a_resource_not_monitored_is_never_restarted() -> None:
    h = active(config=_config(app="monitor = false"))
    assert _look(h, running=("db",)) == []


def test_a_status_that_cannot_be_told_is_no_failure() -> None:
    h = active()
    assert _look(h, running=("db",), unknown=("app",)) == []


def test_the_vip_gone_from_the_active_is_added_and_announced_again() -> None:
    h = active()
    text = (
        "the VIP 10.231.1.50/24 on eth0 is gone from the active node: adding it again "
        "and announcing it"
    )
    assert _look(h, vip=False) == [
        f"[vip-lost] alpha ACTIVE: {text} [epoch 1]",
        f"Alert(vip-lost, alpha: {text})",
        "plan 2: ClaimVip, SendGarp",
        "[plan-done] alpha ACTIVE: the VIP is back on its interface and announced [epoch 1]",
    ]


def test_the_vip_gone_with_a_resource_is_claimed_before_the_restart() -> None:
    h = active()
    lines = _look(h, running=("db",), vip=False)
    assert lines[0].endswith(
        "restarting app; the VIP 10.231.1.50/24 on eth0 is gone too: adding it again [epoch 1]"
    )
    assert lines[2] == "plan 2: ClaimVip, SendGarp, StopResource(app), StartResource(app)"


def test_a_restart_that_fails_is_said_and_the_next_look_counts_again() -> None:
    h = active()
    h.fail_step = "StartResource(app)"
    lines = _look(h, running=("db",))
    assert lines[-2:] == [
        "[resource-restart] alpha ACTIVE: restarting: StartResource(app) failed: exit status 1 "
        "[epoch 1]",
        "Alert(start-failed, alpha: restarting: StartResource(app) failed: exit status 1)",
    ]
    assert h.role() is Role.ACTIVE and h.core.monitoring(h.now)
    assert "app's failure 2 in 600s" in _look(h, running=("db",))[0]


def test_a_look_begun_before_a_plan_moved_things_is_ignored() -> None:
    h = active()
    h.run_until(h.now + 10.0)
    begun = h.now
    h.feed(OperatorCommand(Command.MAINTENANCE_ON))
    h.feed(OperatorCommand(Command.MAINTENANCE_OFF))
    _look(h, vip=False)  # a plan: ClaimVip, SendGarp
    assert _look(h, running=(), vip=False, started=begun + 5.0) == []


def test_nothing_is_looked_at_in_maintenance_or_while_a_plan_runs() -> None:
    h = active()
    h.feed(OperatorCommand(Command.MAINTENANCE_ON))
    assert not h.core.monitoring(h.now)
    assert _look(h, running=(), vip=False) == []
    h.feed(OperatorCommand(Command.MAINTENANCE_OFF))
    h.auto_complete = False
    _look(h, running=("db",))
    assert not h.core.monitoring(h.now)  # the restart's plan runs


def test_monitor_interval_zero_turns_it_off() -> None:
    h = active(config=_config('monitor_interval = "0s"'))
    assert not h.core.monitoring(h.now)
    assert _look(h, running=(), vip=False) == []


def test_a_resource_running_on_the_standby_is_stopped() -> None:
    h = standby()
    text = (
        "resource app found on this STANDBY node, which must hold nothing (only the active "
        "node does): stopping it"
    )
    assert _look(h, running=("app",), vip=False) == [
        f"[held-astray] beta STANDBY: {text} [epoch 0]",
        f"Alert(held-astray, beta: {text})",
        "plan 1: StopResource(app)",
        "[plan-done] beta STANDBY: released what this node held astray [epoch 0]",
    ]
    assert h.role() is Role.STANDBY


def test_on_the_standby_the_vip_goes_first_then_the_resources_in_reverse_order() -> None:
    """The active answers for the VIP already: a stop that fails must not keep a second
    holder of the address (a helper's finding: the VIP stayed on both nodes while a
    resource's stop kept failing)."""
    h = standby()
    lines = _look(h, running=BOTH, vip=True)
    assert lines[0].startswith(
        "[held-astray] beta STANDBY: the VIP 10.231.1.50/24, resource db, resource app found "
        "on this STANDBY node"
    ), lines
    assert lines[2] == "plan 1: ReleaseVip, StopResource(app), StopResource(db)"


def test_a_failed_release_on_the_standby_is_tried_again_later_and_later() -> None:
    h = standby()
    h.fail_step = "StopResource(app)"
    lines = _look(h, running=("app",), vip=False)
    assert lines[-2:] == [
        "[held-astray] beta STANDBY: releasing what this node holds astray: "
        "StopResource(app) failed: exit status 1; trying again in 60s [epoch 0]",
        "Alert(stop-failed, beta: releasing what this node holds astray: StopResource(app) "
        "failed: exit status 1; trying again in 60s)",
    ]
    assert not h.core.monitoring(h.now)
    assert h.core.monitoring(h.now + 60.0)
    assert _look(h, running=("app",), vip=False) == []  # 10 s on: too early
    h.run_until(h.now + 40.0)
    assert "trying again in 120s" in _look(h, running=("app",), vip=False)[-1]


def test_a_standby_promoting_during_a_release_supersedes_it() -> None:
    h = standby()
    h.auto_complete = False
    _look(h, running=("app",), vip=False)
    h.peer = None  # alpha dies: the promotion's plan replaces the release
    h.echo_answers = {"a": False, "b": False}
    h.auto_complete = True
    h.run_until(h.now + 3.0)
    assert h.role() is Role.ACTIVE, h.transcript()


def test_a_failed_release_astray_keeps_no_backoff_into_another_role() -> None:
    """A helper's finding: after failed releases the standby took over, and as the
    active it ignored a dead service for up to 300 s (the backoff went on)."""
    h = standby()
    h.fail_step = "StopResource(app)"
    _look(h, running=("app",), vip=False)
    assert not h.core.monitoring(h.now)
    h.fail_step = None
    h.peer = None  # alpha dies: beta promotes
    h.echo_answers = {"a": False, "b": False}
    h.run_until(h.now + 3.0)
    assert h.role() is Role.ACTIVE and h.core.monitoring(h.now), h.transcript()


def test_the_release_backoff_starts_again_once_nothing_is_held_and_never_overflows() -> None:
    h = standby()
    h.fail_step = "StopResource(app)"
    for _ in range(3):
        _look(h, running=("app",), vip=False)
        h.run_until(h.now + 300.0)
    assert _look(h, running=(), vip=False) == []  # the operator stopped it
    assert "trying again in 60s" in _look(h, running=("app",), vip=False)[-1]
    for _ in range(20):  # the exponent is bounded: 2**1024 x the interval overflowed
        h.run_until(h.now + 300.0)
        h.feed(ResourceCheck(h.now, False, ("app",)))
    assert "trying again in 300s" in h.transcript(h.now)[-1]
    assert h.core._astray_failed == 16


def test_a_look_spanning_maintenance_or_a_reload_is_stale() -> None:
    """A helper's finding: a look begun before maintenance on and delivered after
    maintenance off restarted the service; one spanning a reload that turned monitoring
    on for a resource restarted it while it ran."""
    h = active()
    h.run_until(h.now + 10.0)
    begun = h.now
    h.feed(OperatorCommand(Command.MAINTENANCE_ON))
    h.now += 1.0
    h.feed(OperatorCommand(Command.MAINTENANCE_OFF))
    assert _look(h, running=(), started=begun) == []
    begun = h.now
    h.feed_actions(h.core.reconfigure(_config(), h.now + 1.0, False))
    assert _look(h, running=(), started=begun) == []


def test_a_reload_refused_during_a_monitor_plan_says_which() -> None:
    h = active()
    h.auto_complete = False
    _look(h, running=("db",))
    lines = [str(getattr(a, "text", a)) for a in h.core.reconfigure(_config(), h.now, False)]
    assert lines == [
        "alpha ACTIVE: reload refused: a plan is running (the monitor's restart of a stopped "
        "resource); try again in a moment [epoch 1]"
    ], lines


def test_after_an_aborted_handover_a_resource_failure_restarts_until_the_standby_caught_up() -> (
    None
):
    """A helper's finding: with the standby's sync broken, each failure past the
    restarts ran the whole demotion, a drain of up to a minute, the abort and the whole
    promotion, every interval."""
    h = active(config=_config(app="restarts = 0"))
    h.fail_step = "StopSync(True, True, beta)"
    lines = _look(h, running=("db",))
    assert any(line.startswith("[handover-aborted]") for line in lines), lines
    h.fail_step = None
    h.run_until(h.now + 5.0)
    assert h.role() is Role.ACTIVE, h.transcript()
    lines = _look(h, running=("db",))
    assert lines[0] == (
        "[resource-restart] alpha ACTIVE: resource app not running on the active node (app's "
        "failure 2 in 600s, past its 0 restarts, but beta still lacks changes (the last "
        "handover was aborted)): restarting app [epoch 1]"
    ), lines


def test_another_host_answering_for_the_vip_is_said_once_and_announced_over() -> None:
    h = active()
    conflict = (
        "[vip-conflict] alpha ACTIVE: the VIP 10.231.1.50/24 on eth0 is answered by another "
        "host too (MAC 02:00:00:00:00:0b): announcing it with gratuitous ARP at each look "
        "until that stops; find that host and take the address off it [epoch 1]"
    )
    other = ("02:00:00:00:00:0b",)
    h.run_until(h.now + 10.0)
    start = h.now
    h.feed(ResourceCheck(h.now, True, BOTH, vip_elsewhere=other))
    lines = h.transcript(start)
    assert lines[0] == conflict and lines[1].startswith("Alert(vip-conflict, alpha: the VIP")
    assert lines[2:] == ["SendGarp"]
    h.run_until(h.now + 10.0)
    start = h.now
    h.feed(ResourceCheck(h.now, True, BOTH, vip_elsewhere=other))
    assert h.transcript(start) == ["SendGarp"]  # said once, announced at each look
    h.run_until(h.now + 10.0)
    start = h.now
    h.feed(ResourceCheck(h.now, True, BOTH))
    assert h.transcript(start) == [
        "[vip-conflict] alpha ACTIVE: no other host answers for the VIP 10.231.1.50/24 on "
        "eth0 any more: announcing it again [epoch 1]",
        "SendGarp",
    ]
    assert _look(h) == []


def test_maintenance_on_stops_a_monitor_restart_halfway_and_says_so() -> None:
    """A helper's finding: the operator put the node in maintenance and stopped the
    service by hand, as the README says, and the monitor's restart begun before started
    it under them."""
    h = active()
    h.auto_complete = False
    _look(h, running=("db",))
    h.run_until(h.now + 0.5)
    start = h.now
    h.feed(OperatorCommand(Command.MAINTENANCE_ON))
    assert h.transcript(start) == [
        "plan 3: ",
        "[maintenance] alpha ACTIVE: maintenance mode on: no automatic action; the monitor's "
        "restart of a stopped resource was stopped halfway: check what runs "
        "(mosqit-failover status, systemctl status) [epoch 1]",
    ]
    plans = [a for _, a in h.outputs if isinstance(a, RunPlan)]
    assert plans[-2].interruptible and plans[-1] == RunPlan(3, (), interruptible=True)
    assert not h.core.snapshot(h.now)["plan_running"]


def test_a_node_that_found_the_vip_on_itself_beside_a_serving_peer_releases_it_first() -> None:
    """A helper's finding: an agent restarted on the standby with the VIP and a resource
    on it released them with the demotion's plan, the VIP last, and the resource's stop
    kept failing: both nodes held the VIP for minutes. Its last role held nothing, so
    the VIP is not its own, peer heard yet or not."""
    h = Harness(inventory=Inventory(0, Role.WAITING, True, ("app",)))
    h.peer = h.peer_view(Role.ACTIVE, 1)
    h.run_until(1.0)
    plans = [line for line in h.transcript() if line.startswith("plan")]
    assert plans[0] == (
        "plan 1: PersistState(0, DEMOTING), ReleaseVip, StopResource(app), StopResource(db), "
        "StopSync(False, False, ), PersistState(0, WAITING)"
    ), plans


def test_a_node_kept_back_after_a_handover_takes_over_when_its_successor_cannot() -> None:
    """A helper's finding: the standby taking over failed to start the service and
    rolled back, and the node that handed over, kept back for start_failure_backoff,
    left nobody serving for that long, at each failure."""
    h = active(config=_config(app="restarts = 0"))
    _look(h, running=("db",))
    assert h.role() is Role.STANDBY
    h.peer = h.peer_view(Role.PROMOTING, 2)
    h.run_until(h.now + 0.5)
    assert not h.last_view().candidate
    start = h.now
    h.peer = h.peer_view(Role.WAITING, 2, candidate=False)  # its start failed: rolled back
    h.run_until(h.now + 2.0)
    assert h.role() is Role.ACTIVE, h.transcript(start)
    assert h.transcript(start)[0] == (
        "[resource-failed] alpha STANDBY: no other node can serve: a candidate again, its "
        "resource's failures still counting [epoch 1]"
    )
