"""`switchover --wait`: the outcome read off the agent's status (handover_wait.py), the
agent's counters it starts from, and the command line against a control socket that
plays the agent's answers of a real switchover, one that was aborted and one that
never ends."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover import cli, handover_wait
from mosqit_failover import config as configuration
from mosqit_failover.actions import Decision
from mosqit_failover.authkeys import generate_secret_text, parse_secret_text
from mosqit_failover.core import Core
from mosqit_failover.daemon import Agent
from mosqit_failover.events import Inventory, Role
from mosqit_failover.handover_wait import Outcome, Start, follow, judge, new_decisions
from mosqit_failover.journal import DecisionLog
from mosqit_failover.sim_scenarios import sim_config
from tests.unit.fake_socket import read_request, serving
from tests.unit.loopback_pair import LOOPBACK_PAIR

START = Start(epoch=4, decisions=3, aborted=0)
BEGUN = "12:00:00 alpha switchover: operator switchover: handing over to beta"
ABORT = (
    "12:00:41 alpha handover-aborted: handover aborted, serving on: 1 change not pushed "
    "to beta; hand over again once `mosqit-failover status` shows the directories in sync"
)


def status(
    role: str = "DEMOTING",
    epoch: int = 4,
    peer: tuple[str, int | None] = ("STANDBY", 4),
    lines: tuple[str, ...] = (BEGUN,),
    aborted: int = 0,
) -> dict[str, Any]:
    """A status as the agent builds it (a real core's snapshot), with this node's role and
    epoch, the peer's view and the decisions since the start set."""
    snap: dict[str, Any] = Core(sim_config(), "alpha", Inventory(epoch=4), 0.0).snapshot(1.0)
    snap["role"], snap["epoch"] = role, epoch
    snap["peers"]["beta"].update(role=peer[0], epoch=peer[1])
    snap["recent_decisions"] = ["11:00:00 alpha promote: the peer is silent", "x", *lines]
    snap["decisions_total"] = 2 + len(lines)
    snap["decisions_by_kind"] = {"promote": 1, "switchover": 1, "handover-aborted": aborted}
    return snap


def test_the_peer_active_in_a_later_epoch_and_this_node_standby_is_done() -> None:
    outcome = judge(START, status("STANDBY", 4, ("ACTIVE", 5)))
    assert outcome == Outcome(
        True, "switchover done: beta is ACTIVE in epoch 5; this node is STANDBY"
    )


@pytest.mark.parametrize(
    ("role", "peer"),
    [
        ("DEMOTING", ("STANDBY", 4)),  # draining the sync, stopping the services
        ("DEMOTING", ("ACTIVE", 5)),  # the peer's view ahead of this node's own
        ("STANDBY", ("STANDBY", 4)),  # released, the peer not yet promoted
        ("STANDBY", ("PROMOTING", 5)),
        ("STANDBY", ("ACTIVE", 4)),  # a view from before the switchover
        ("STANDBY", ("UNKNOWN", None)),
    ],
)
def test_anything_short_of_the_peer_serving_in_a_new_epoch_is_under_way(
    role: str, peer: tuple[str, int | None]
) -> None:
    assert judge(START, status(role, 4, peer)) is None


def test_an_abort_after_the_command_fails_it_even_before_the_role_shows_it() -> None:
    outcome = judge(START, status("DEMOTING", 4, lines=(BEGUN, ABORT), aborted=1))
    assert outcome is not None and not outcome.ok
    assert outcome.text.startswith("switchover aborted: this node serves on in epoch 4")


def test_an_abort_before_the_command_does_not_count() -> None:
    earlier = Start(epoch=4, decisions=3, aborted=1)
    assert judge(earlier, status("DEMOTING", 4, aborted=1)) is None


def test_this_node_serving_again_in_a_later_epoch_is_a_handover_that_did_not_complete() -> None:
    outcome = judge(START, status("ACTIVE", 6, ("STANDBY", 5)))
    assert outcome == Outcome(
        False,
        "switchover did not complete: this node took the service back in epoch 6 "
        "(the decisions above say why)",
    )


def test_new_decisions_are_those_after_the_count_at_the_start() -> None:
    assert new_decisions(3, status(lines=(BEGUN,))) == []
    assert new_decisions(3, status(lines=(BEGUN, ABORT))) == [ABORT]
    assert new_decisions(9, status(lines=(BEGUN, ABORT))) == []  # an agent restarted


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_follow_shows_each_new_decision_once_and_stops_at_the_outcome() -> None:
    steps = iter(
        [
            status(lines=(BEGUN,)),
            status(lines=(BEGUN, "12:00:01 alpha demote: sync drained")),
            status(lines=(BEGUN, "12:00:01 alpha demote: sync drained")),
            status("STANDBY", 4, ("ACTIVE", 5), (BEGUN, "12:00:01 alpha demote: sync drained")),
        ]
    )
    shown: list[str] = []
    clock = Clock()
    outcome = follow(START, lambda: next(steps), shown.append, 60, clock, clock.sleep)
    assert outcome.ok
    assert shown == ["12:00:01 alpha demote: sync drained"]
    assert clock.now == pytest.approx(3 * handover_wait.POLL)


def test_an_agent_restarted_meanwhile_shows_its_decisions_and_can_still_see_the_end() -> None:
    restarted = status("WAITING", 4, ("ACTIVE", 5), lines=())
    restarted["recent_decisions"] = ["12:00:30 alpha start: agent started, waiting for beta"]
    restarted["decisions_total"], restarted["decisions_by_kind"] = 1, {"start": 1}
    shown: list[str] = []
    clock = Clock()
    outcome = follow(START, lambda: restarted, shown.append, 60, clock, clock.sleep)
    assert outcome == Outcome(
        True, "switchover done: beta is ACTIVE in epoch 5; this node is WAITING"
    )
    assert shown == ["12:00:30 alpha start: agent started, waiting for beta"]


def test_follow_says_every_ten_silent_seconds_that_it_still_waits() -> None:
    clock = Clock()
    shown: list[str] = []
    follow(START, lambda: status(), shown.append, 25, clock, clock.sleep)
    assert shown == [
        "still handing over after 10 s: this node is DEMOTING, beta STANDBY",
        "still handing over after 20 s: this node is DEMOTING, beta STANDBY",
    ]


def test_follow_gives_up_at_the_timeout_saying_where_things_stand() -> None:
    clock = Clock()
    outcome = follow(START, lambda: status(), lambda _: None, 5, clock, clock.sleep)
    assert outcome == Outcome(
        False,
        "switchover not done after 5 s: this node is DEMOTING, beta STANDBY; it may still "
        "complete (mosqit-failover status)",
    )
    assert 5 <= clock.now < 5 + 2 * handover_wait.POLL


# ---- the agent's side: the counters a command's answer and the status carry ------


def test_a_command_s_answer_carries_the_epoch_and_the_decision_counters(tmp_path: Path) -> None:
    cfg = configuration.parse(LOOPBACK_PAIR.format(tmp=tmp_path))
    agent = Agent(cfg, "alpha", parse_secret_text(generate_secret_text()), DecisionLog(False))
    agent._core = Core(cfg, "alpha", Inventory(epoch=7), 0.0)
    before = agent._reply([])
    assert (before["epoch"], before["decisions_total"], before["decisions_by_kind"]) == (7, 0, {})
    for kind in ("switchover", "handover-aborted", "handover-aborted"):
        agent._carry_out(Decision(kind, "alpha", Role.DEMOTING, Role.ACTIVE, 7, "STANDBY", "r"))
    after = agent._reply([])
    assert after["decisions_total"] == 3
    assert after["decisions_by_kind"] == {"switchover": 1, "handover-aborted": 2}
    assert json.loads(json.dumps(after))["decisions_by_kind"] == after["decisions_by_kind"]
    assert handover_wait.start_of(after) == Start(7, 3, 2)


# ---- the command line against a control socket playing the agent -----------------


@contextmanager
def agent_playing(path: Path, answers: list[dict[str, Any]]) -> Iterator[list[str]]:
    """A control socket answering the switchover with `answers[0]`, then each status
    request with the next answer (the last one for ever); yields the commands asked."""
    asked: list[str] = []
    queue = list(answers)

    def respond(conn: socket.socket) -> None:
        asked.append(read_request(conn)["command"])
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        conn.sendall(json.dumps(reply).encode() + b"\n")

    with serving(path, respond):
        yield asked


ACCEPTED = {
    "ok": True,
    "decisions": [BEGUN],
    "epoch": 4,
    "decisions_total": 3,
    "decisions_by_kind": {"promote": 1, "switchover": 1},
}


def as_reply(snap: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "status": snap}


def test_switchover_wait_exits_0_once_the_peer_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    answers = [ACCEPTED, as_reply(status()), as_reply(status("STANDBY", 4, ("ACTIVE", 5)))]
    with agent_playing(path, answers) as asked:
        assert cli.main(["switchover", "--wait", "30", "--socket", str(path)]) == 0
    assert asked == ["switchover", "status", "status"]
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        BEGUN,
        "waiting up to 30 s for the handover (Ctrl-C stops waiting, not it)",
        "switchover done: beta is ACTIVE in epoch 5; this node is STANDBY",
    ]
    assert err == ""


def test_switchover_wait_exits_1_on_an_abort_showing_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    aborted = status("ACTIVE", 4, lines=(BEGUN, ABORT), aborted=1)
    with agent_playing(path, [ACCEPTED, as_reply(status()), as_reply(aborted)]):
        assert cli.main(["switchover", "--wait", "--socket", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == ABORT
    assert err.startswith("switchover aborted: this node serves on in epoch 4")
    assert "Traceback" not in out + err


def test_a_refused_switchover_is_not_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    refused = {"ok": False, "error": "switchover refused: peer beta cannot take over"}
    with agent_playing(path, [refused]) as asked:
        assert cli.main(["switchover", "--wait", "--socket", str(path)]) == 1
    assert asked == ["switchover"]
    assert "waiting" not in capsys.readouterr().out


def test_an_agent_of_an_older_version_is_named_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    with agent_playing(path, [{"ok": True, "decisions": [BEGUN]}]):
        assert cli.main(["switchover", "--wait", "--socket", str(path)]) == 2
    err = capsys.readouterr().err
    assert "the switchover began" in err and "same version" in err
    assert "Traceback" not in err


def test_an_agent_that_stops_answering_while_waited_for_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    with agent_playing(path, [ACCEPTED, {"ok": False, "error": "busy"}]):
        assert cli.main(["switchover", "--wait", "--socket", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == "mosqit-failover: cannot follow the switchover: the agent refused status: busy\n"


@pytest.mark.parametrize("bad", ["0", "-5", "abc", "nan", "inf", "2h"])
def test_a_bad_wait_is_one_line_exit_2_and_nothing_is_sent(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    with agent_playing(path, [ACCEPTED]) as asked, pytest.raises(SystemExit) as exited:
        cli.main(["switchover", f"--wait={bad}", "--socket", str(path)])
    assert exited.value.code == 2 and asked == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad!r} is not a time to wait" in err


class Gone(Exception):
    """What the control socket raises while no agent answers."""


def test_an_agent_that_does_not_answer_for_a_moment_is_waited_for() -> None:
    """A restart during the wait: no socket for a moment, and the wait ended with exit 2
    though the handover completed (a helper's finding)."""
    answers: list[dict[str, Any] | None] = [None, None, status("STANDBY", 4, ("ACTIVE", 5))]

    def ask() -> dict[str, Any]:
        answer = answers.pop(0)
        if answer is None:
            raise Gone("no agent control socket")
        return answer

    shown: list[str] = []
    clock = Clock()
    outcome = follow(START, ask, shown.append, 60, clock, clock.sleep, unanswered=(Gone,))
    assert outcome.ok
    assert shown == [
        "the agent does not answer (no agent control socket); waiting for it (a restart?)"
    ]


def test_an_agent_silent_longer_than_the_patience_ends_the_wait() -> None:
    def ask() -> dict[str, Any]:
        raise Gone("no agent control socket")

    clock = Clock()
    with pytest.raises(Gone):
        follow(START, ask, lambda _t: None, 600, clock, clock.sleep, unanswered=(Gone,))
    assert handover_wait.PATIENCE <= clock.now <= handover_wait.PATIENCE + 1
