"""check_mosqit_failover: the pure verdict over every combination, and the CLI against a
real ControlServer on a temporary unix socket."""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mosqit_failover import nagios
from mosqit_failover.control import ControlServer
from mosqit_failover.nagios import CRITICAL, OK, UNKNOWN, WARNING, evaluate
from tests.unit.fake_socket import answering

ROLES = ["WAITING", "STANDBY", "PROMOTING", "ACTIVE", "DEMOTING"]
PEER_ROLES = [*ROLES, "UNKNOWN"]
MODES = ["AUTO", "MANUAL", "MAINTENANCE"]
HEARD = [0.05, 30.0, None]  # fresh, stale, never


def status(
    role: str = "ACTIVE",
    mode: str = "AUTO",
    peer_role: str = "STANDBY",
    peer_mode: str | None = "AUTO",
    heard: float | None = 0.05,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "node": "alpha",
        "role": role,
        "mode": mode,
        "epoch": 7,
        "candidate": True,
        "uplinks": {"a": "healthy", "b": "healthy"},
        "peer": {
            "node": "beta",
            "role": peer_role,
            "epoch": 6,
            "mode": peer_mode,
            "heard_ago": heard,
            "uplinks": {"a": True, "b": True},
        },
        "probes": {
            "peer-a": {"sent": 100, "answered": 97, "last_rtt_ms": 0.2},
            "peer-b": {"sent": 100, "answered": 100, "last_rtt_ms": 0.3},
        },
        "peer_link": {"accepted": 10, "dropped": {"bad-mac": 2, "replayed": 1}, "sent": 20},
        "failovers": 1,
        **extra,
    }


def test_healthy_pair_is_ok_with_perfdata() -> None:
    code, text = evaluate(status())
    assert code == OK
    assert text == (
        "MOSQIT-FAILOVER OK - alpha ACTIVE (AUTO), epoch 7; peer beta STANDBY (epoch 6) | "
        "state=3;;;0;4 epoch=7;;;0 failovers=1c;;;0 lost_peer-a=3c;;;0 lost_peer-b=0c;;;0 "
        "peer_link_dropped=3c;;;0"
    )


@pytest.mark.parametrize(
    ("probe", "label"),
    [
        ("it's", "'lost_it''s'"),
        ("a b", "'lost_a b'"),
        ("a=b", "'lost_a=b'"),
        ("x''", "'lost_x'''''"),
    ],
)
def test_a_quote_in_a_perfdata_label_is_written_twice(probe: str, label: str) -> None:
    """The Nagios plugin guidelines: a label with a space, '=' or a quote is quoted, and a
    quote inside it doubled; else the perfdata parser ends the label at that quote."""
    code, text = evaluate(status(probes={probe: {"sent": 5, "answered": 4}}))
    assert code == OK
    assert f" {label}=1c;;;0 " in text


@pytest.mark.parametrize(
    ("kwargs", "code", "start"),
    [
        ({"peer_role": "ACTIVE"}, CRITICAL, "MOSQIT-FAILOVER CRITICAL - both nodes are ACTIVE; "),
        ({"role": "STANDBY"}, CRITICAL, "MOSQIT-FAILOVER CRITICAL - no node is ACTIVE; "),
        (
            {"role": "STANDBY", "peer_role": "ACTIVE", "heard": 30.0},
            CRITICAL,
            "MOSQIT-FAILOVER CRITICAL - no node is ACTIVE; alpha STANDBY (AUTO), epoch 7; "
            "peer beta not heard for 30s |",
        ),
        (
            {"heard": None, "peer_role": "UNKNOWN", "peer_mode": None},
            WARNING,
            "MOSQIT-FAILOVER WARNING - no standby: peer beta not heard; "
            "alpha ACTIVE (AUTO), epoch 7; peer beta not heard |",
        ),
        ({"mode": "MANUAL"}, WARNING, "MOSQIT-FAILOVER WARNING - alpha in MANUAL mode; "),
        ({"peer_mode": "MAINTENANCE"}, WARNING, "MOSQIT-FAILOVER WARNING - beta in MAINTENANCE "),
        ({"peer_role": "WAITING"}, WARNING, "MOSQIT-FAILOVER WARNING - no standby: peer beta is "),
        (
            {"role": "WAITING", "peer_role": "ACTIVE"},
            WARNING,
            "MOSQIT-FAILOVER WARNING - no standby: this node is WAITING; ",
        ),
        ({"role": "STANDBY", "peer_role": "ACTIVE"}, OK, "MOSQIT-FAILOVER OK - alpha STANDBY "),
    ],
)
def test_named_situations(kwargs: dict[str, Any], code: int, start: str) -> None:
    got_code, text = evaluate(status(**kwargs))
    assert (got_code, text[: len(start)]) == (code, start)


@pytest.mark.parametrize(
    ("role", "peer_role", "heard", "mode", "peer_mode"),
    list(itertools.product(ROLES, PEER_ROLES, HEARD, MODES, MODES)),
)
def test_every_combination_follows_the_rules(
    role: str, peer_role: str, heard: float | None, mode: str, peer_mode: str
) -> None:
    code, text = evaluate(status(role, mode, peer_role, peer_mode, heard))
    assert "\n" not in text
    assert text.startswith(f"MOSQIT-FAILOVER {nagios.NAMES[code]} - ")
    assert f" | state={nagios.ROLE_NUMBER[role]};;;0;4 epoch=7;;;0 " in text
    fresh = heard is not None and heard <= 5.0
    active = (role == "ACTIVE") + (fresh and peer_role == "ACTIVE")
    if active != 1:
        assert code == CRITICAL
        return
    other_ready = (peer_role == "STANDBY" and fresh) if role == "ACTIVE" else role == "STANDBY"
    special = mode != "AUTO" or (fresh and peer_mode != "AUTO")
    assert code == (WARNING if special or not other_ready else OK)


@pytest.mark.parametrize(
    ("sync", "code", "perf"),
    [
        ({"lag_seconds": 2.5, "pending": 4}, OK, "sync_lag=2.5s;10;;0 sync_pending=4;;;0"),
        ({"lag": 12, "pending": 0}, WARNING, "sync_lag=12s;10;;0 sync_pending=0;;;0"),
        (
            {
                "/srv/a": {"lag_seconds": 1, "pending": 2},
                "/srv/b": {"lag_seconds": 30, "pending": 1},
            },
            WARNING,
            "sync_lag=30s;10;;0 sync_pending=3;;;0",
        ),
        ({"state": "running"}, OK, ""),
        ("not a dict", OK, ""),
    ],
)
def test_sync_lag_when_present(sync: Any, code: int, perf: str) -> None:
    got, text = evaluate(status(sync=sync))
    assert got == code
    assert text.endswith(perf)
    if code == WARNING:
        assert "sync lags" in text and "(over 10s)" in text


def test_the_agents_own_sync_report_is_read_per_directory() -> None:
    """The shape SyncManager.status() gives: the worst lag warns, pending adds up."""
    report = {
        "running": True,
        "epoch": 7,
        "dirs": [
            {"path": "/srv/data", "lag_seconds": 0.0, "pending": 0, "state": "in-sync"},
            {"path": "/srv/mail", "lag_seconds": 42.5, "pending": 12, "state": "syncing"},
        ],
    }
    got, text = evaluate(status(sync=report))
    assert got == WARNING and "sync lags 42.5s (over 10s)" in text, text
    assert "sync_lag=42.5s;10;;0 sync_pending=12;;;0" in text, text
    idle, text = evaluate(status(sync={"running": False, "epoch": 7, "dirs": []}))
    assert idle == OK and "sync_" not in text, text


def test_a_degraded_synchronous_directory_warns() -> None:
    """SyncManager.status() of a synchronous directory: `degraded` (docs/sync-mode.md)."""
    one = {"path": "/srv/spool", "lag_seconds": 0.0, "pending": 0, "mode": "synchronous"}
    report = {"running": True, "epoch": 7, "dirs": [{**one, "degraded": True}]}
    got, text = evaluate(status(sync=report))
    assert got == WARNING and "synchronous sync of /srv/spool degraded" in text, text
    report["dirs"] = [{**one, "degraded": False}]
    assert evaluate(status(sync=report))[0] == OK


def test_absent_sync_and_absent_counters_are_fine() -> None:
    bare = status()
    for key in ("probes", "peer_link", "failovers"):
        del bare[key]
    assert evaluate(bare) == (OK, evaluate(bare)[1])
    assert evaluate(bare)[1].endswith("| state=3;;;0;4 epoch=7;;;0")


@pytest.mark.parametrize("broken", [{}, {"node": "a", "role": "ACTIVE", "mode": "AUTO"}])
def test_a_status_without_its_fields_is_unknown(broken: dict[str, Any]) -> None:
    code, text = evaluate(broken)
    assert code == UNKNOWN and text.startswith("MOSQIT-FAILOVER UNKNOWN - ")


# -- the command against a real control server ------------------------------------


async def _serve_and_check(
    path: Path, reply: dict[str, Any], argv: list[str], installed: bool = False
) -> tuple[int, str]:
    server = ControlServer(path, lambda request: reply)
    await server.start()
    try:
        if installed:
            script = Path(sys.executable).parent / "check_mosqit_failover"
            proc = await asyncio.create_subprocess_exec(
                str(script), *argv, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out.decode()
        return await asyncio.to_thread(_main, argv)
    finally:
        await server.close()


def _main(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = nagios.main(argv)
    return code, buffer.getvalue()


def test_the_check_asks_a_real_control_server(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"
    reply = {"ok": True, "status": status(peer_role="ACTIVE")}
    code, out = asyncio.run(_serve_and_check(path, reply, ["--socket", str(path)]))
    assert code == CRITICAL
    assert out.startswith("MOSQIT-FAILOVER CRITICAL - both nodes are ACTIVE")
    assert out.count("\n") == 1


def test_the_installed_console_script_exits_with_the_plugin_code(tmp_path: Path) -> None:
    if not (Path(sys.executable).parent / "check_mosqit_failover").exists():
        pytest.skip("console script not installed: pip install -e .")
    path = tmp_path / "control.sock"
    reply = {"ok": True, "status": status(mode="MANUAL")}
    code, out = asyncio.run(_serve_and_check(path, reply, ["--socket", str(path)], installed=True))
    assert code == WARNING and out.startswith("MOSQIT-FAILOVER WARNING - alpha in MANUAL mode")


def test_the_socket_from_the_config_file(tmp_path: Path) -> None:
    from mosqit_failover.sim_scenarios import SIM_CONFIG

    path = tmp_path / "control.sock"
    config = tmp_path / "failover.toml"
    config.write_text(SIM_CONFIG.replace("[cluster]", f'[cluster]\ncontrol_socket = "{path}"', 1))
    reply = {"ok": True, "status": status()}
    code, out = asyncio.run(_serve_and_check(path, reply, ["--config", str(config)]))
    assert (code, out[:18]) == (OK, "MOSQIT-FAILOVER OK")


def test_an_agent_that_refuses_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    reply = {"ok": False, "error": "busy"}
    code, out = asyncio.run(_serve_and_check(path, reply, ["--socket", str(path)]))
    assert (code, out) == (UNKNOWN, "MOSQIT-FAILOVER UNKNOWN - the agent refused status: busy\n")


def test_no_agent_is_unknown(tmp_path: Path) -> None:
    code, out = _main(["--socket", str(tmp_path / "none.sock")])
    assert code == UNKNOWN
    assert out.startswith("MOSQIT-FAILOVER UNKNOWN - agent not answering: no agent control socket")


def test_an_agent_that_never_answers_is_unknown_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(path))
        silent.listen(1)
        code, out = _main(["--socket", str(path), "--timeout", "300ms"])
    assert code == UNKNOWN and "did not answer" in out


@pytest.mark.parametrize("reply", [b"[1, 2]\n", b"\xff\xfe\n", b"[" * 100000 + b"\n"])
def test_a_socket_that_answers_garbage_is_unknown(tmp_path: Path, reply: bytes) -> None:
    with answering(tmp_path / "c.sock", reply) as path:
        code, out = _main(["--socket", str(path)])
    assert code == UNKNOWN and "gave an unreadable reply" in out and out.count("\n") == 1


def test_a_missing_config_is_unknown(tmp_path: Path) -> None:
    code, out = _main(["--config", str(tmp_path / "nope.toml")])
    assert code == UNKNOWN and "cannot read the config" in out


def test_bad_arguments_exit_unknown_not_critical() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mosqit_failover.nagios", "--timeout", "soon"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == UNKNOWN
    assert result.stdout.startswith("MOSQIT-FAILOVER UNKNOWN - usage: ")


def test_a_peer_failing_authentication_is_critical_even_while_one_node_serves() -> None:
    s = status(heard=9.0, peer_role="ACTIVE")
    s["peer"]["unauthenticated"] = (
        "messages from peer beta fail authentication (bad-mac): the secrets differ"
    )
    code, text = evaluate(s)
    assert code == CRITICAL
    assert text.startswith(
        "MOSQIT-FAILOVER CRITICAL - messages from peer beta fail authentication (bad-mac): "
        "the secrets differ; no automatic failover; "
    )


def test_a_failed_fence_is_critical() -> None:
    s = status(role="STANDBY", peer_role="ACTIVE", heard=4.0)
    s["peer"]["fence"] = {"epoch": 8, "state": "failed", "detail": "ssh fence: no answer"}
    code, text = evaluate(s)
    assert code == CRITICAL
    assert "fencing peer beta failed: ssh fence: no answer" in text


def three(
    role: str = "ACTIVE", beta: tuple[str, float | None] = ("STANDBY", 0.05), **gamma: Any
) -> dict[str, Any]:
    """A multi-server status: alpha with peers beta and gamma (gamma's keys as given)."""
    peers = {
        "beta": {"node": "beta", "role": beta[0], "epoch": 6, "mode": "AUTO", "heard_ago": beta[1]},
        "gamma": {"node": "gamma", "role": "STANDBY", "epoch": 2, "mode": "AUTO", "heard_ago": 0.1}
        | gamma,
    }
    return status(role=role, peers=peers)


def test_three_nodes_one_active_two_standbys_are_ok() -> None:
    code, text = evaluate(three())
    assert code == OK
    assert (
        "alpha ACTIVE (AUTO), epoch 7; peers beta STANDBY (epoch 6), gamma STANDBY (epoch 2)"
        in text
    )


def test_three_nodes_a_standby_not_heard_is_a_standby_less() -> None:
    code, text = evaluate(three(heard_ago=40.0))
    assert code == WARNING
    assert text.startswith("MOSQIT-FAILOVER WARNING - a standby less: peer gamma not heard;")
    assert "gamma not heard for 40s" in text


def test_three_nodes_no_standby_at_all() -> None:
    code, text = evaluate(three(beta=("WAITING", 0.1), heard_ago=None))
    assert code == WARNING
    assert "no standby: peer beta is WAITING, peer gamma not heard" in text


def test_three_nodes_two_active_is_critical_and_named() -> None:
    reply = three(role="STANDBY", beta=("ACTIVE", 0.1))
    reply["peers"]["gamma"]["role"] = "ACTIVE"
    code, text = evaluate(reply)
    assert code == CRITICAL and "beta, gamma are ACTIVE" in text


def test_three_nodes_a_stale_active_counts_as_none() -> None:
    code, text = evaluate(three(role="STANDBY", beta=("ACTIVE", 30.0)))
    assert code == CRITICAL and "no node is ACTIVE" in text


def test_three_nodes_each_peer_failing_authentication_is_critical() -> None:
    said = "messages from peer gamma fail authentication (bad-mac): the secrets differ"
    code, text = evaluate(three(unauthenticated=said))
    assert code == CRITICAL
    assert text.startswith(f"MOSQIT-FAILOVER CRITICAL - {said}; no automatic failover;")


def test_three_nodes_a_failed_fence_names_the_peer() -> None:
    fence = {"epoch": 8, "state": "failed", "detail": "ssh: timed out"}
    code, text = evaluate(three(role="STANDBY", beta=("STANDBY", 0.1), heard_ago=9.0, fence=fence))
    assert code == CRITICAL and "fencing peer gamma failed: ssh: timed out" in text


def test_three_nodes_a_peer_in_maintenance_is_a_warning() -> None:
    code, text = evaluate(three(mode="MAINTENANCE"))
    assert code == WARNING and "gamma in MAINTENANCE mode" in text


def test_a_peer_view_without_a_role_is_unknown() -> None:
    broken = three()
    del broken["peers"]["gamma"]["role"]
    assert evaluate(broken)[0] == UNKNOWN


def test_a_peer_running_another_order_is_a_warning_naming_the_fix() -> None:
    code, text = evaluate(three(order_differs=True))
    assert code == WARNING
    assert "peer gamma runs another cluster.order: copy one config to every node" in text


def test_what_the_agent_reports_reaches_nagios_escaped(tmp_path: Path) -> None:
    # ssh's or ipmitool's stderr in a fence's detail; NRPE shows it on a web page
    path = tmp_path / "control.sock"
    hostile = "ssh: \x1b]0;PWNED\x07\x1b[31mRED\x9b2J"
    failed = status(peer_role="UNKNOWN", heard=None)
    failed["peer"]["fence"] = {"state": "failed", "detail": hostile}
    for reply in ({"ok": True, "status": failed}, {"ok": False, "error": hostile}):
        code, out = asyncio.run(_serve_and_check(path, reply, ["--socket", str(path)]))
        assert code != OK
        assert "ssh: \\x1b]0;PWNED\\x07\\x1b[31mRED\\x9b2J" in out, out
        assert not any(ch in out for ch in "\x1b\x07\x9b"), out


def test_resource_failures_that_still_count_warn() -> None:
    """A helper's finding: the check said OK while the monitor restarted a resource at
    every look."""
    code, text = evaluate(status(resource_failures={"flaky": 5, "db": 1}))
    assert code == WARNING
    assert text.startswith(
        "MOSQIT-FAILOVER WARNING - resource failures on this node: db 1, flaky 5;"
    )
    assert evaluate(status(resource_failures={}))[0] == OK
