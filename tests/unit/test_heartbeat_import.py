"""import-heartbeat: realistic /etc/ha.d directories written by the tests."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
from pathlib import Path

import pytest

from mosqit_failover import cli
from mosqit_failover.authkeys import parse_secret_text
from mosqit_failover.config import ConfigError, parse
from mosqit_failover.effects.resources import make_runner
from mosqit_failover.heartbeat_import import ImportError_, _service, add_import_parser, convert

HA_CF = """\
# /etc/ha.d/ha.cf of the billing pair (heartbeat 2.1, v1 style)
logfacility     local0
logfile         /var/log/ha-log
keepalive 1
deadtime 10
warntime 5
initdead 60
udpport 694
ucast eth0 10.1.0.11
ucast eth0 10.1.0.12
ucast eth1 10.2.0.11
ucast eth1 10.2.0.12
ping 10.1.0.1 10.2.0.1 192.0.2.77
auto_failback off
node    bill1
node    bill2
respawn hacluster /usr/lib/heartbeat/ipfail
"""

HARESOURCES = """\
# preferred node, then the group, started left to right
bill1 IPaddr2::10.1.0.50/24/eth0/10.1.0.255 \\
      drbddisk::r0 \\
      Filesystem::/dev/drbd0::/srv/billing::ext4 \\
      postgresql \\
      billing-app \\
      MailTo::ops@example.com::billing-failover
"""

AUTHKEYS = """\
auth 2
1 crc
2 sha1 OurLittleSecret
3 md5 also-short
"""


def ha_dir(tmp_path: Path, **files: str) -> Path:
    directory = tmp_path / "ha.d"
    directory.mkdir(exist_ok=True)
    contents = {"ha.cf": HA_CF, "haresources": HARESOURCES, "authkeys": AUTHKEYS, **files}
    for name, text in contents.items():
        (directory / name).write_text(text)
    (directory / "authkeys").chmod(0o600)
    return directory


def test_a_classic_drbd_pair_converts_to_a_valid_config(tmp_path: Path) -> None:
    result = convert(ha_dir(tmp_path), cluster="billing")
    assert result.complete
    config = parse(result.toml)
    assert config.cluster == "billing"
    assert [n.name for n in config.nodes] == ["bill1", "bill2"]
    assert config.preferred == "bill1" and config.failback is False
    assert str(config.vip.address) == "10.1.0.50/24" and config.vip.interface == "eth0"
    a, b = config.networks
    assert (str(a.subnet), str(a.switch), str(b.subnet), str(b.switch)) == (
        "10.1.0.0/24",
        "10.1.0.1",
        "10.2.0.0/24",
        "10.2.0.1",
    )
    assert str(config.node("bill2").on("b").address) == "10.2.0.12"
    assert config.node("bill1").on("b").interface == "eth1"
    assert [(r.name, r.kind, r.script) for r in config.resources] == [
        ("postgresql", "sysv", "postgresql"),
        ("billing-app", "sysv", "billing-app"),
    ]
    assert config.alerts.mail_to == ("ops@example.com",)
    t = config.timing
    assert (t.interval, t.heartbeat, t.misses, t.service_timeout, t.startup_grace) == (
        1.0,
        1.0,
        10,
        10.0,
        60.0,
    )
    notes = "\n".join(result.notes)
    assert "drbddisk::r0 not carried over: DRBD is not used" in notes
    assert "Filesystem::/dev/drbd0::/srv/billing::ext4 not carried over" in notes
    assert "[[sync]]" in notes
    assert "ping node 192.0.2.77 not carried over: it lies in neither network" in notes
    assert f"{tmp_path}/ha.d/ha.cf:8: udpport 694 not carried over" in notes
    assert f"{tmp_path}/ha.d/ha.cf:17: respawn not carried over" in notes
    assert "logfile not carried over: logs go to the journal" in notes


def test_a_short_heartbeat_key_is_replaced_by_a_new_secret(tmp_path: Path) -> None:
    result = convert(ha_dir(tmp_path))
    keyring = parse_secret_text(result.secret)
    assert keyring.signing.key_id == 1 and len(keyring.signing.secret) == 32
    assert b"OurLittleSecret" not in keyring.signing.secret
    note = next(n for n in result.notes if "authkeys:3" in n)
    assert "the sha1 key has 15 characters; heartbeat keys cannot be reused" in note


def test_a_long_heartbeat_key_is_reused_hex_encoded(tmp_path: Path) -> None:
    key = "d41d8cd98f00b204e9800998ecf8427e-long-enough"
    result = convert(ha_dir(tmp_path, authkeys=f"auth 7\n7 sha1 {key}\n"))
    keyring = parse_secret_text(result.secret)
    assert keyring.signing.key_id == 7 and keyring.signing.secret == key.encode()
    assert any("long enough for HMAC-SHA256 and was reused" in n for n in result.notes)


def test_crc_gets_a_new_secret_with_a_warning(tmp_path: Path) -> None:
    result = convert(ha_dir(tmp_path, authkeys="auth 1\n1 crc\n"))
    parse_secret_text(result.secret)
    assert any("crc authenticates nothing" in n for n in result.notes)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "ha.cf",
            HA_CF.replace("keepalive 1", "keepalive two"),
            "ha.cf:4: keepalive: 'two' is not a time",
        ),
        (
            "ha.cf",
            HA_CF.replace("ucast eth1 10.2.0.12", "ucast eth1"),
            "ha.cf:12: ucast: expected 'ucast INTERFACE ADDRESS'",
        ),
        (
            "ha.cf",
            HA_CF.replace("ucast eth1 10.2.0.12", "ucast eth1 10.2.0.300"),
            "ha.cf:12: ucast: '10.2.0.300' is not an IPv4 address",
        ),
        (
            "ha.cf",
            HA_CF.replace("auto_failback off", "auto_failback maybe"),
            "ha.cf:14: auto_failback: 'maybe': expected on, off or legacy",
        ),
        (
            "ha.cf",
            HA_CF.replace("node    bill2\n", ""),
            "1 node(s) (bill1); the agent runs exactly two",
        ),
        (
            "haresources",
            "bill3 10.1.0.50 postgresql\n",
            "haresources:1: 'bill3' is not a node of ha.cf",
        ),
        (
            "haresources",
            "bill1 IPaddr::10.1.0.500/24\n",
            "haresources:1: IPaddr::10.1.0.500/24: '10.1.0.500' is not",
        ),
        ("haresources", "# nothing\n", "haresources: no resource group"),
        ("authkeys", "auth 1\n1 sha1\n", "authkeys:2: sha1 needs a key"),
        ("authkeys", "auth 1\n1 rot13 abc\n", "authkeys:2: unknown method 'rot13'"),
        ("authkeys", "1 sha1 abc\n", "authkeys: no 'auth KEYID' line"),
        ("authkeys", "auth 2\n1 sha1 abc\n", "authkeys: 'auth 2' names a key that is not defined"),
        ("authkeys", "auth one\n", "authkeys:1: expected 'auth KEYID'"),
    ],
)
def test_a_malformed_line_is_named_with_its_file_and_line(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    directory = ha_dir(tmp_path, **{name: text})
    with pytest.raises(ImportError_) as caught:
        convert(directory)
    assert any(f"{directory}/{expected}" in p or expected in p for p in caught.value.problems), (
        caught.value.problems
    )
    assert any(str(directory / name) in p for p in caught.value.problems)


def test_every_malformed_line_is_reported_at_once(tmp_path: Path) -> None:
    bad = HA_CF.replace("keepalive 1", "keepalive x").replace("deadtime 10", "deadtime")
    with pytest.raises(ImportError_) as caught:
        convert(ha_dir(tmp_path, **{"ha.cf": bad, "authkeys": "auth 1\n"}))
    assert len(caught.value.problems) == 3


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    directory = ha_dir(tmp_path)
    (directory / "authkeys").unlink()
    with pytest.raises(ImportError_, match="authkeys: missing"):
        convert(directory)


def test_broadcast_setup_leaves_fill_ins_that_check_config_names(tmp_path: Path) -> None:
    ha_cf = "keepalive 500ms\ndeadtime 2\nbcast eth0 eth1\nnode a1\nnode a2\nauto_failback on\n"
    haresources = "a2 10.9.0.5 apache2 mysql::--defaults-file=/etc/mysql/ha.cnf\n"
    directory = ha_dir(tmp_path, **{"ha.cf": ha_cf, "haresources": haresources})
    (directory / "resource.d").mkdir()
    result = convert(directory)
    assert not result.complete
    assert 'address = "FILL-IN: a1\'s address on eth0"' in result.toml
    with pytest.raises(ConfigError) as caught:
        parse(result.toml)
    assert any("FILL-IN" in p for p in caught.value.problems)
    assert "failback = true" in result.toml and 'preferred = "a2"' in result.toml
    assert 'interval = "500ms"' in result.toml and "misses = 4" in result.toml
    assert 'start = "/etc/init.d/mysql --defaults-file=/etc/mysql/ha.cnf start"' in result.toml
    assert any("10.9.0.5 has no netmask: assumed /24" in n for n in result.notes)


def test_the_command_writes_config_and_secret_and_lists_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_import_parser(sub)
    out, secret = tmp_path / "mosqit.toml", tmp_path / "secret"
    args = parser.parse_args(
        ["import-heartbeat", str(ha_dir(tmp_path)), "-o", str(out), "--secret", str(secret)]
    )
    assert args.func(args) == 0
    parse(out.read_text())
    assert oct(os.stat(secret).st_mode & 0o777) == "0o600"
    parse_secret_text(secret.read_text())
    err = capsys.readouterr().err
    assert "not carried over, or assumed:" in err and "drbddisk::r0" in err
    assert args.func(args) == 2  # the secret file exists: never overwritten
    assert "already exists" in capsys.readouterr().err


def test_the_command_reports_malformed_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_import_parser(parser.add_subparsers(dest="command"))
    directory = ha_dir(tmp_path, authkeys="auth 1\n1 sha1\n")
    args = parser.parse_args(["import-heartbeat", str(directory)])
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{directory}/authkeys:2: sha1 needs a key" in captured.err


# ---- haresources arguments reach the script as arguments, never as shell code -----------

RECORDING_SCRIPT = """\
#!/bin/sh
# an init script that logs its arguments (one [..] per argument) and keeps a state file
printf '[%s]' "$@" >> "$0.calls"
echo >> "$0.calls"
for action; do :; done
case "$action" in
    start) touch "$0.running" ;;
    stop) rm -f "$0.running" ;;
    status) [ -e "$0.running" ] || exit 3 ;;
esac
"""


# start(), running(), stop(): each action with the status checks around it
CYCLE = ("status", "start", "status", "status", "status", "stop", "status")


def _initd(tmp_path: Path, *names: str) -> Path:
    initd = tmp_path / "init.d"
    initd.mkdir()
    for name in names:
        (initd / name).write_text(RECORDING_SCRIPT)
        (initd / name).chmod(0o755)
    return initd


def _start_and_stop(toml: str, initd: Path) -> None:
    """Load the config as the agent does (scripts under initd, not /etc/init.d) and start
    and stop every resource with the agent's own runner."""
    config = parse(toml.replace('"/etc/init.d/', f'"{shlex.quote(str(initd))}/'))

    async def cycle() -> None:
        for resource in config.resources:
            runner = make_runner(resource, initd=initd)
            await runner.start()
            assert await runner.running()
            await runner.stop()

    asyncio.run(cycle())


def test_haresources_arguments_are_never_run_by_the_shell(tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    payloads = [
        f"$(touch::{marker}-1)",  # '::' separates arguments: "$(touch" "/tmp/...)"
        f"`touch${{IFS}}{marker}-2`",
        f";touch${{IFS}}{marker}-3;",
        f"|touch${{IFS}}{marker}-4",
        f"&&touch${{IFS}}{marker}-5",
        f"'\";touch${{IFS}}{marker}-6;'",
    ]
    items = " ".join(f"svc{n}::{p}" for n, p in enumerate(payloads))
    directory = ha_dir(tmp_path, haresources=f"bill1 10.1.0.50/24 {items}\n")
    initd = _initd(tmp_path, *(f"svc{n}" for n in range(len(payloads))))

    _start_and_stop(convert(directory).toml, initd)

    assert not list(tmp_path.glob("injected*"))
    for n, payload in enumerate(payloads):
        args = "".join(f"[{a}]" for a in payload.split("::"))
        calls = (initd / f"svc{n}.calls").read_text().splitlines()
        assert calls == [f"{args}[{action}]" for action in CYCLE], calls


def test_legitimate_arguments_arrive_whole_and_in_order(tmp_path: Path) -> None:
    haresources = "bill1 10.1.0.50/24 mysql::--defaults-file=/etc/mysql/ha.cnf::--user=*\n"
    result = convert(ha_dir(tmp_path, haresources=haresources))
    initd = _initd(tmp_path, "mysql", "app")
    _start_and_stop(result.toml, initd)
    calls = (initd / "mysql.calls").read_text().splitlines()
    assert calls[1] == "[--defaults-file=/etc/mysql/ha.cnf][--user=*][start]"

    # an argument with a space (not writable in haresources itself) stays one argument
    service = _service("app", ["--title=two words", "it's"], tmp_path, set())
    assert service["kind"] == "script"
    table = "".join(f"{key} = {json.dumps(value)}\n" for key, value in service.items())
    _start_and_stop(f"{result.toml}\n[[resources]]\n{table}", initd)
    calls = (initd / "app.calls").read_text().splitlines()
    assert calls[1] == "[--title=two words][it's][start]"


# ---- -o and --secret: checked before anything is written, written atomically ------------


def _import(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    """Run `mosqit-failover import-heartbeat ARGV` as a user does; (exit status, stderr).

    Nothing goes to stdout unless the config does (without -o, and written)."""
    status = cli.main(["import-heartbeat", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    if "-o" in argv or status == 2:
        assert captured.out == ""
    return status, captured.err


def test_output_into_a_missing_directory_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = ha_dir(tmp_path)
    out, secret = tmp_path / "no" / "such" / "mosqit.toml", tmp_path / "secret"
    status, err = _import(capsys, directory, "-o", out, "--secret", secret)
    assert status == 2
    assert err.splitlines() == [
        f"import-heartbeat: cannot write the config to {out}: the directory {out.parent} "
        "does not exist; create it or choose another path; nothing was written"
    ]
    assert not secret.exists() and not (tmp_path / "no").exists()

    status, err = _import(capsys, directory, "--secret", tmp_path / "nowhere" / "secret")
    assert status == 2 and "the directory" in err and len(err.splitlines()) == 1


def test_an_existing_output_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = ha_dir(tmp_path)
    out, secret = tmp_path / "mosqit.toml", tmp_path / "secret"
    out.write_text("# the config in use\n")
    status, err = _import(capsys, directory, "-o", out, "--secret", secret)
    assert status == 2
    assert err.splitlines() == [
        f"import-heartbeat: {out} already exists: pass --force to replace it (the config); "
        "nothing was written"
    ]
    assert out.read_text() == "# the config in use\n" and not secret.exists()

    reader = out.open()  # a reader of the old file keeps reading the old file
    status, err = _import(capsys, directory, "-o", out, "--secret", secret, "--force")
    assert status == 0, err
    assert reader.read() == "# the config in use\n"
    reader.close()
    parse(out.read_text())
    assert out.stat().st_mode & 0o777 == 0o644
    assert secret.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ha.d", "mosqit.toml", "secret"]

    secret.chmod(0o644)  # a forced secret is replaced by a 0600 file
    old_secret = secret.read_text()
    status, err = _import(capsys, directory, "--secret", secret, "--force")
    assert status == 0, err
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text() != old_secret


def test_a_failed_write_leaves_the_old_files_and_no_temporary_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = ha_dir(tmp_path)
    out, secret = tmp_path / "mosqit.toml", tmp_path / "secret"
    out.write_text("# the config in use\n")
    real_fsync = os.fsync
    calls = []

    def fsync_then_full(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the second file (the config) finds the disk full
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_then_full)
    status, err = _import(capsys, directory, "-o", out, "--secret", secret, "--force")
    assert status == 2
    assert err.splitlines() == [
        f"import-heartbeat: cannot write the config to {out}: No space left on device; "
        "nothing was written"
    ]
    assert out.read_text() == "# the config in use\n" and not secret.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ha.d", "mosqit.toml"]


def test_output_and_secret_must_be_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "both"
    status, err = _import(capsys, ha_dir(tmp_path), "-o", out, "--secret", out)
    assert status == 2 and "-o and --secret name the same file" in err
    assert not out.exists()
