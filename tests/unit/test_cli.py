"""The command line: --version, help on everything, `status --watch` against a real
control socket, and the commands that must work when optional modules are missing."""

from __future__ import annotations

import argparse
import asyncio
import configparser
import io
import itertools
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import mosqit_failover
from mosqit_failover import cli, nagios, status_watch
from mosqit_failover.control import ControlServer
from mosqit_failover.core import Core
from mosqit_failover.events import Inventory
from mosqit_failover.sim_scenarios import SIM_CONFIG, sim_config
from mosqit_failover.terminal import SafeWriter
from tests.unit.fake_socket import answering, read_request, serving

REPO = Path(__file__).resolve().parents[2]


# ---- --version -----------------------------------------------------------------


def setup_cfg_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser["metadata"]["version"]


def test_the_version_constant_and_the_installed_metadata_agree_with_setup_cfg() -> None:
    assert mosqit_failover.__version__ == setup_cfg_version()
    assert mosqit_failover.version() == setup_cfg_version()


@pytest.mark.parametrize("main", [cli.main, nagios.main])
def test_both_commands_print_the_version(main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"mosqit-failover {setup_cfg_version()}\n"


# ---- help ------------------------------------------------------------------------


def walk(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, f"{path} {name}")


def test_every_command_and_option_says_what_it_does() -> None:
    missing: list[str] = []
    for path, parser in walk(cli.build_parser(), "mosqit-failover"):
        if not parser.description:
            missing.append(f"{path}: no description (shown by --help)")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{path} {choice.dest}: no help line")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_the_listing_gives_each_command_one_line_at_80_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    parser = cli.build_parser()
    text = parser.format_help()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for choice in commands._choices_actions:
        assert f"    {choice.dest} " in text
        line = next(x for x in text.splitlines() if x.startswith(f"    {choice.dest} "))
        assert line.split(maxsplit=1)[1] == choice.help
        assert len(line) <= 80


def test_a_command_s_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["status", "--help"])
    out = capsys.readouterr().out
    assert "redraws it every --interval until Ctrl-C" in " ".join(out.split())


# ---- status and status --watch against a real control server --------------------


def real_status() -> dict[str, Any]:
    """A status as the agent builds it: a real core's snapshot and the agent's fields."""
    snap: dict[str, Any] = Core(sim_config(), "alpha", Inventory(epoch=4), 0.0).snapshot(1.0)
    snap.update(
        cluster="sim",
        vip="192.0.2.50/24",
        probes={},
        peer_link={"accepted": 12, "dropped": {"bad-mac": 2}, "from_strangers": 0, "sent": 9},
        recent_decisions=["12:00:00 alpha promote: the peer is silent on both networks"],
        failovers=0,
        alerts={},
        sync={"dirs": []},
    )
    return snap


@contextmanager
def control_server(path: Path) -> Iterator[list[dict[str, Any]]]:
    """The agent's ControlServer on `path`, in a thread; yields the requests it got."""
    requests: list[dict[str, Any]] = []

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        requests.append(request)
        return {"ok": True, "status": real_status()}

    loop = asyncio.new_event_loop()
    server = ControlServer(path, handler)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield requests
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_prints_the_agent_s_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "control.sock"
    with control_server(path):
        assert cli.main(["status", "--socket", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "cluster sim  VIP 192.0.2.50/24\nthis node  alpha: WAITING (AUTO), epoch 4"
    )
    assert "peer link  accepted 12, dropped: bad-mac 2" in out


def test_watch_to_a_pipe_prints_snapshots_separated_by_a_line(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    out = io.StringIO()
    with control_server(path) as requests:
        started = time.monotonic()
        assert status_watch.watch(path, 0.2, out, count=3) == 0
        took = time.monotonic() - started
    text = out.getvalue()
    assert "\x1b" not in text
    snapshots = text.split(status_watch.SEPARATOR + "\n")
    assert len(snapshots) == 3
    for snapshot in snapshots:
        assert snapshot.startswith("every 0.2s: mosqit-failover status on ")
        assert "this node  alpha: WAITING (AUTO), epoch 4" in snapshot
    assert len(requests) == 3
    assert took >= 0.4  # two intervals between three snapshots


def test_watch_on_a_terminal_redraws_the_screen(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    out = Terminal()
    with control_server(path):  # through the escaper, as cli.main runs it
        assert status_watch.watch(path, 0.1, SafeWriter(out), count=2) == 0  # type: ignore[arg-type]
    text = out.getvalue()
    assert text.count(status_watch.CLEAR) == 2
    assert text.startswith(status_watch.CLEAR)
    assert status_watch.SEPARATOR not in text


def test_watch_without_an_agent_says_so_every_refresh(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    out = io.StringIO()
    assert status_watch.watch(path, 0.1, out, count=2) == 0
    line = (
        f"agent not answering on {path}: is mosqit-failover running? "
        "systemctl status mosqit-failover"
    )
    assert out.getvalue().count(line) == 2


@pytest.mark.parametrize(
    "bad", ["0", "-1", "0s", "abc", "nan", "inf", "0.01", "1e10", "3601", "2h"]
)
def test_a_bad_interval_is_one_line(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["status", "--watch", "--socket", "/nonexistent", "--interval", bad])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"mosqit-failover status: argument -i/--interval: {bad!r} is not a")
    assert "like 1, 0.5 or 500ms" in err


def test_the_longest_interval_shows_a_snapshot(tmp_path: Path) -> None:
    interval = cli._interval("3600")  # 1e10 overflowed socket.settimeout: now refused
    out = io.StringIO()
    assert status_watch.watch(tmp_path / "none.sock", interval, out, count=1) == 0
    assert "every 3600s" in out.getvalue()


GARBAGE = {
    "json-array": (b"[1, 2]\n", "a JSON array, not an object"),
    "json-string": (b'"hello"\n', "a JSON string, not an object"),
    "json-null": (b"null\n", "a JSON null, not an object"),
    "not-utf8": (b"\xff\xfe\x00garbage\n", "not UTF-8 text"),
    "deeply-nested": (b"[" * 100000 + b"\n", "JSON nested too deeply"),
    "not-json": (b"HTTP/1.0 400\r\n", "not a JSON line (Expecting value at character 0)"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_status_from_a_socket_that_answers_garbage_is_one_line(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reply, what = GARBAGE[kind]
    with answering(tmp_path / "c.sock", reply) as path:
        assert cli.main(["status", "--socket", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"mosqit-failover: the agent at {path} gave an unreadable reply: {what}; "
        "is it another program or another version?\n"
    )


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_watch_shows_a_socket_that_answers_garbage_and_goes_on(tmp_path: Path, kind: str) -> None:
    reply, what = GARBAGE[kind]
    out = io.StringIO()
    with answering(tmp_path / "c.sock", reply) as path:
        assert status_watch.watch(path, 0.1, out, count=2) == 0
    assert out.getvalue().count("every 0.1s") == 2
    assert out.getvalue().count(f"gave an unreadable reply: {what}") == 2


def test_watch_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """`status --watch | head -1` ends without a traceback, and with the status of a
    command that SIGPIPE stopped (141), not 0: its work ended where it was."""
    proc = subprocess.run(
        [
            "bash",
            "-c",
            'set -o pipefail; "$@" | head -1; echo "status ${PIPESTATUS[0]}"',
            "bash",
            sys.executable,
            "-m",
            "mosqit_failover.cli",
            "status",
            "--watch",
            "--interval",
            "0.1",
            "--socket",
            str(tmp_path / "none.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.stdout.startswith("every 0.1s") and "Traceback" not in proc.stderr
    assert proc.stdout.endswith(f"status {cli.BROKEN_PIPE_STATUS}\n"), proc.stdout
    assert cli.BROKEN_PIPE_STATUS == 141


def test_interval_without_watch_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--socket", "/nonexistent", "--interval", "2"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "mosqit-failover: --interval is the refresh of --watch: status --watch --interval 2\n"
    )


def read_until(process: subprocess.Popen[str], needle: str, seconds: float = 30) -> str:
    """What the process wrote to stdout up to and including `needle`."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + seconds
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in: {seen!r}"
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536).decode()
            assert chunk, f"stdout closed before {needle!r}: {seen!r}"
            seen += chunk
    return seen


def test_watch_keeps_trying_until_the_agent_answers_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    argv = ["status", "--watch", "--interval", "0.2", "--socket", str(path)]
    code = "import sys; from mosqit_failover.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        # Ctrl-C as at a terminal, even when the suite runs with SIGINT ignored (nohup, &)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        read_until(process, "agent not answering on")
        with control_server(path):
            seen = read_until(process, "this node  alpha: WAITING (AUTO)")
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0
    assert err == ""
    assert status_watch.SEPARATOR in seen
    assert "\x1b" not in seen


# ---- switchover [--to NODE] against a fake control socket ------------------------


@contextmanager
def recording(path: Path, reply: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """A control socket at `path` that answers `reply`; yields the requests it got."""
    requests: list[dict[str, Any]] = []

    def respond(conn: socket.socket) -> None:
        requests.append(read_request(conn))
        conn.sendall(json.dumps(reply).encode() + b"\n")

    with serving(path, respond):
        yield requests


def test_switchover_to_a_node_sends_its_name_and_prints_the_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = {"ok": True, "decisions": ["12:00:00 alpha switchover: handing over to gamma"]}
    path = tmp_path / "c.sock"
    with recording(path, reply) as requests:
        assert cli.main(["switchover", "--to", "gamma", "--socket", str(path)]) == 0
    assert requests == [{"command": "switchover", "to": "gamma"}]
    out, err = capsys.readouterr()
    assert (out, err) == ("12:00:00 alpha switchover: handing over to gamma\n", "")


def test_switchover_without_to_sends_no_to_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    with recording(path, {"ok": True, "decisions": []}) as requests:
        assert cli.main(["switchover", "--socket", str(path)]) == 0
    assert requests == [{"command": "switchover"}]
    assert capsys.readouterr().out == ""


def test_the_agent_s_refusal_of_the_target_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = "switchover refused: delta is not a node of this cluster (alpha, beta, gamma)"
    path = tmp_path / "c.sock"
    with recording(path, {"ok": False, "error": refusal}) as requests:
        assert cli.main(["switchover", "--to", "delta", "--socket", str(path)]) == 1
    assert requests == [{"command": "switchover", "to": "delta"}]
    assert capsys.readouterr() == ("", f"mosqit-failover: {refusal}\n")


@pytest.mark.parametrize("bad", ["", "a b", "-x", ".hidden", "x" * 64, "beta\n", "ß"])
def test_a_bad_target_is_one_line_exit_2_and_nothing_is_sent(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sock"
    with recording(path, {"ok": True}) as requests, pytest.raises(SystemExit) as exited:
        cli.main(["switchover", f"--to={bad}", "--socket", str(path)])
    assert exited.value.code == 2
    assert requests == []
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        f"mosqit-failover switchover: argument --to: {bad!r} is not a node name: "
    )
    assert err.endswith("; see mosqit-failover switchover --help\n")


def test_to_is_the_switchover_s_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["maintenance", "on", "--to", "beta", "--socket", "/nonexistent"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --to beta" in capsys.readouterr().err


# ---- commands whose modules may be missing ---------------------------------------


def run_without(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter where `module` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; "
        "from mosqit_failover.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_without_paramiko_everything_but_the_wizard_works() -> None:
    simulate = run_without("paramiko", "simulate", "--list")
    assert simulate.returncode == 0, simulate.stderr
    assert simulate.stdout.startswith("switch-failure ")
    assert "\nsplit-brain " in simulate.stdout
    check = run_without("paramiko", "check-config", str(REPO / "examples" / "pair.toml"))
    assert check.returncode == 0, check.stderr
    assert "OK: cluster billing" in check.stdout
    wizard = run_without("paramiko", "wizard", "deploy", "--unattended")
    assert wizard.returncode == 2
    assert wizard.stderr == (
        "mosqit-failover: the wizard needs python3-paramiko: apt-get install python3-paramiko\n"
    )
    assert wizard.stdout == ""


def test_without_the_lab_the_lab_command_says_where_it_lives() -> None:
    listing = run_without("mosqit_failover.lab", "--help")
    assert listing.returncode == 0
    assert "lab" in listing.stdout
    for argv in (["lab", "up"], ["lab"], ["lab", "scenario", "split-brain"]):
        lab = run_without("mosqit_failover.lab", *argv)
        assert lab.returncode == 2, argv
        assert lab.stderr == (
            "mosqit-failover: the lab is a development tool: "
            "run it from a git checkout (make demo)\n"
        )
    simulate = run_without("mosqit_failover.lab", "simulate", "--list")
    assert simulate.returncode == 0, simulate.stderr


def test_a_missing_library_is_named_with_its_debian_package() -> None:
    error = ModuleNotFoundError("No module named 'prometheus_client'", name="prometheus_client")
    assert cli.missing_module_message("agent", error) == (
        "agent needs python3-prometheus-client: apt-get install python3-prometheus-client"
    )


# ---- the README shows only commands and options that exist -------------------------

README_COMMAND = re.compile(r"(?<![\w/.-])(mosqit-failover|check_mosqit_failover)\b([^`#;|\n]*)")
# the name as an argument of another tool (journalctl -t NAME, systemctl stop NAME, ...)
AS_ARGUMENT = re.compile(r"(-t|start|stop|restart|status|reload|enable|disable|--now|purge)\s+$")


def leaf(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, str]:
    """The parser that `words` (the words after the program) reach, and the path to it."""
    path = parser.prog
    for word in words:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands:
            break
        assert word in commands[0].choices, f"README: {path} has no command {word!r}"
        parser = commands[0].choices[word]
        path = f"{path} {word}"
    return parser, path


def test_every_command_and_option_the_readme_shows_exists() -> None:
    programs = {
        "mosqit-failover": cli.build_parser(),
        "check_mosqit_failover": nagios.build_parser(),
    }
    shown = 0
    for line in (REPO / "README.md").read_text().splitlines():
        # code: an indented block's lines, and `spans` in prose (which may say
        # "mosqit-failover and ..." in words)
        code = [line] if line.startswith("    ") else re.findall(r"`([^`]+)`", line)
        for match in (m for segment in code for m in README_COMMAND.finditer(segment)):
            if AS_ARGUMENT.search(match.string[: match.start()]):
                continue
            words = match.group(2).split()
            commands = list(itertools.takewhile(re.compile(r"[a-z][a-z-]*").fullmatch, words))
            parser, path = leaf(programs[match.group(1)], commands)
            known = {s for a in parser._actions for s in a.option_strings}
            for option in re.findall(r"(?<![\w-])--?[a-z][a-z-]*", match.group(2)):
                assert option in known, f"README: {path} has no option {option}"
            shown += 1
    assert shown > 30


def test_every_file_the_readme_links_is_in_the_repository() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", (REPO / "README.md").read_text())
    assert "docs/design.md" in links
    for link in links:
        assert "://" not in link, f"README links outside the repository: {link}"
        target = (REPO / link).resolve()
        assert target.is_relative_to(REPO), f"README links outside the repository: {link}"
        assert target.is_file(), f"README links {link}, which does not exist"


# ---- a helper's attack (2026-12-06): what an agent of another version, or another
# program on the socket, or a full disk can send back ----


def test_escape_sequences_in_a_status_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = real_status()
    status["recent_decisions"] = ["\x1b]0;pwned\x07\x1b[2J\x9b31mFAKE: all good"]
    path = tmp_path / "control.sock"
    with answering(path, json.dumps({"ok": True, "status": status}).encode() + b"\n"):
        assert cli.main(["status", "--socket", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31mFAKE: all good" in out
    assert not any(ch in out for ch in "\x1b\x07\x9b")


HOSTILE = "\x1b]0;PWNED\x07\x1b[31mRED\x9b2J"


@pytest.mark.parametrize(
    ("argv", "reply"),
    [
        (["switchover"], {"ok": False, "decisions": [f"d {HOSTILE}"], "error": f"e {HOSTILE}"}),
        (["status"], {"ok": False, "error": f"refused {HOSTILE}"}),
        (["maintenance", "on"], {"ok": False, "error": f"e {HOSTILE}"}),
    ],
)
def test_what_the_agent_answers_reaches_the_terminal_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], reply: dict[str, Any]
) -> None:
    path = tmp_path / "control.sock"
    with recording(path, reply):
        assert cli.main([*argv, "--socket", str(path)]) != 0
    out, err = capsys.readouterr()
    assert not any(ch in out + err for ch in "\x1b\x07\x9b"), (out, err)
    assert "\\x1b]0;PWNED\\x07\\x1b[31mRED\\x9b2J" in out + err


def test_a_file_name_argparse_refuses_is_shown_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):  # a glob that matched two files
        cli.main(["check-config", "a.toml", "b\x1b]0;PWNED\x07.toml"])
    err = capsys.readouterr().err
    assert "b\\x1b]0;PWNED\\x07.toml" in err and "\x1b" not in err


def test_commands_run_with_stdout_or_stderr_closed(tmp_path: Path) -> None:
    config = tmp_path / "pair.toml"
    config.write_text(SIM_CONFIG)
    command = f"{shlex.quote(sys.executable)} -m mosqit_failover.cli check-config"
    for path, closed, code in (
        (config, ">&-", 0),
        (config, "2>&-", 0),
        (tmp_path / "missing.toml", "2>&-", 2),
        (tmp_path / "missing.toml", ">&- 2>/dev/full", 1),  # nowhere to say it: exit 1
    ):
        result = subprocess.run(
            ["sh", "-c", f"{command} {path} {closed}"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == code and "Traceback" not in result.stderr, (closed, result)


def test_force_active_answered_with_ctrl_d_is_not_forced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def ctrl_d(_prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", ctrl_d)
    assert cli.main(["force-active", "--socket", "/nonexistent/c.sock"]) == 1
    assert capsys.readouterr().out.endswith("not forced\n")


def test_a_config_path_that_is_not_utf8_is_shown_escaped_on_stdout(tmp_path: Path) -> None:
    config = os.fsencode(tmp_path) + b"/pair\x9b.toml"
    with open(config, "w") as handle:
        handle.write(SIM_CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", "check-config", os.fsdecode(config)],
        capture_output=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )
    out = result.stdout.decode("utf-8")  # strict: no raw byte reached the terminal
    assert "pair\\x9b.toml: OK" in out and b"Traceback" not in result.stderr, result


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (b'{"ok": true, "status": {"epoch": ' + b"9" * 5000 + b"}}\n", "a number too long"),
        (None, "the agent's status reply lacks or mangles"),  # a float out of range
    ],
)
def test_a_status_reply_with_huge_numbers_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reply: bytes | None, says: str
) -> None:
    if reply is None:
        status = real_status()
        status["sync"] = {"dirs": [{"path": "/srv/x", "state": "ok", "lag_seconds": 10**400}]}
        reply = json.dumps({"ok": True, "status": status}).encode() + b"\n"
    path = tmp_path / "control.sock"
    with answering(path, reply):
        assert cli.main(["status", "--socket", str(path)]) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["simulate", "--list"], ["--help"], ["--version"], ["status", "--help"]]
)
def test_output_to_a_full_disk_is_one_line_not_a_traceback(argv: list[str]) -> None:
    """--help and --version exited 0 with nothing written (a helper's finding)."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "mosqit_failover.cli", *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr == "mosqit-failover: cannot write the output: No space left on device\n"


def test_a_config_that_does_not_load_still_leads_to_the_running_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A helper's attack (2026-12-06): with the config broken mid-edit, `maintenance on`
    and `status` stopped at the config's problems, and the operator had to know
    --socket. The socket the file names (or the default) is asked, with a note."""
    path = tmp_path / "control.sock"
    config = tmp_path / "broken.toml"
    text = SIM_CONFIG.replace('name = "sim"', f'name = "sim"\ncontrol_socket = "{path}"')
    config.write_text(text + "\n[timing]\nmisses = 0\n")
    with control_server(path):
        assert cli.main(["status", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "this node  alpha: WAITING (AUTO), epoch 4" in captured.out
    assert (
        f"note: {config}: timing.misses = 0: must be a whole number from 1 to 100; asking "
        f"the running agent at {path} anyway"
    ) in captured.err
    assert cli.main(["status", "--config", str(config)]) == 2  # and with no agent there
    err = capsys.readouterr().err
    assert "timing.misses = 0" in err and f"the control socket {path} is not there" in err
    assert "pass --socket PATH" in err and "Traceback" not in err


def test_an_option_before_the_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--config", "/etc/x.toml", "status"])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "mosqit-failover: unknown option --config: options go after the command; "
        "see mosqit-failover --help\n"
    )


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_the_socket_of_a_config_that_is_no_file_is_not_read_for_ever(
    tmp_path: Path, kind: str
) -> None:
    """The fallback to the socket a broken config names read the file again, past
    load's checks: a FIFO blocked it, /dev/zero ran it out of memory (a review)."""
    config = Path("/dev/zero")
    if kind == "fifo":
        config = tmp_path / "fifo.toml"
        os.mkfifo(config)
    done = subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not a regular file; pass --config with the config file" in done.stderr


@pytest.mark.parametrize("argv", [[""], ["nosuch"], ["--list", "nosuch"]])
def test_simulate_names_a_scenario_it_does_not_know(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A helper's attack: `simulate ""` and `simulate --list nosuch` listed and exited 0."""
    assert cli.main(["simulate", *argv]) == 2
    err = capsys.readouterr().err
    assert f"no scenario {argv[-1]!r}; known: switch-failure, " in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["import-heartbeat", "-o", ""],
        ["import-heartbeat", "--secret", ""],
        ["status", "--socket", ""],
    ],
)
def test_an_empty_path_option_is_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A helper's attack: an empty value was taken for the option not given."""
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    assert "is empty: give a path, or leave the option out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["status", "--bogus"], "mosqit-failover status"),
        (["wizard", "deploy", "--bogus"], "mosqit-failover wizard deploy"),
    ],
)
def test_an_unknown_option_points_to_the_commands_own_help(
    argv: list[str], where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A helper's attack: `status --bogus` pointed to the top-level --help."""
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        f"{where}: unrecognized arguments: --bogus; see {where} --help\n"
    )
