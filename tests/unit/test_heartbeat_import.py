"""import-heartbeat: /etc/ha.d directories written by the tests, and real ones from
tutorials and repositories (fixtures/heartbeat/NAME, each with its SOURCE)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover import cli
from mosqit_failover.authkeys import parse_secret_text
from mosqit_failover.config import Config, ConfigError, load, parse
from mosqit_failover.effects.resources import make_runner
from mosqit_failover.heartbeat_hacf import HostFacts, parse_hosts
from mosqit_failover.heartbeat_import import (
    AUTO_FAILBACK_SOURCE,
    ImportError_,
    Result,
    add_import_parser,
    convert,
)
from mosqit_failover.heartbeat_resources import init_script_resource

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
        ("drbd-r0", "script", ""),
        ("fs-srv-billing", "ocf", ""),
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
    assert "ping node 192.0.2.77 not carried over: it lies in neither network" in notes
    assert f"{tmp_path}/ha.d/ha.cf:8: udpport 694 not carried over" in notes
    assert f"{tmp_path}/ha.d/ha.cf:17: respawn not carried over" in notes
    assert "logfile not carried over: logs go to the journal" in notes


def test_a_slow_keepalive_gives_the_switch_two_intervals(tmp_path: Path) -> None:
    """keepalive 5 s becomes a 5 s interval: a dead switch is then judged no faster than
    a dead peer (about two keepalives), not by the 2 s default: the import writes 10 s."""
    ha_cf = HA_CF.replace("keepalive 1", "keepalive 5").replace("deadtime 10", "deadtime 20")
    result = convert(ha_dir(tmp_path, **{"ha.cf": ha_cf}), cluster="billing")
    assert 'switch_timeout = "10s"' in result.toml
    assert parse(result.toml).timing.switch_timeout == 10.0
    (tmp_path / "fast").mkdir()
    fast = convert(ha_dir(tmp_path / "fast"), cluster="billing")  # keepalive 1: the default
    assert "switch_timeout" not in fast.toml and parse(fast.toml).timing.switch_timeout == 2.0


def test_drbddisk_and_filesystem_become_resources_the_agent_runs(tmp_path: Path) -> None:
    """drbddisk::r0 is `drbdadm primary/secondary r0`; Filesystem the OCF agent of
    resource-agents, with heartbeat's device, directory and type as its parameters."""
    config = parse(convert(ha_dir(tmp_path)).toml)
    drbd, filesystem = config.resources[:2]
    assert (drbd.start, drbd.stop, drbd.status) == (
        "drbdadm primary r0",
        "drbdadm secondary r0",
        "drbdadm role r0 | grep -q '^Primary'",
    )
    assert filesystem.agent == "ocf:heartbeat:Filesystem"
    assert dict(filesystem.params) == {
        "device": "/dev/drbd0",
        "directory": "/srv/billing",
        "fstype": "ext4",
    }
    for resource in config.resources:  # the agent builds a runner for each, as when it starts
        make_runner(resource)


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
    ("authkeys", "expected"),
    [
        ("auth 1\n1 sha some-key\n", "authkeys:2: unknown method 'sha' (did you mean sha1?)"),
        ("auth 1\n1 sha1\n", "authkeys:2: sha1 needs a key"),
        ("auth 1\n1 rot13 abc\n", "authkeys:2: unknown method 'rot13'"),
        ("1 sha1 abc\n", "authkeys: no 'auth KEYID' line: a new random secret"),
        ("auth 2\n1 sha1 abc\n", "authkeys: 'auth 2' names no key: a new random secret"),
        ("auth one\n", "authkeys:1: expected 'auth KEYID'"),
        ("auth1\n1 sha1 abc\n", "authkeys:1: 'auth1': heartbeat expects 'auth KEYID'"),
        # digits that str.isdigit() takes and int() refuses: a note, never a crash
        ("auth \u00b2\n1 sha1 " + "k" * 40 + "\n", "authkeys:1: expected 'auth KEYID'"),
        ("auth 1\n\u00b9 sha1 " + "k" * 40 + "\n", "authkeys:2: expected 'KEYID METHOD"),
    ],
)
def test_a_bad_authkeys_is_a_note_and_a_new_secret(
    tmp_path: Path, authkeys: str, expected: str
) -> None:
    """authkeys is replaced anyway: a typo in it never stops the import."""
    result = convert(ha_dir(tmp_path, authkeys=authkeys))
    assert result.complete
    assert any(expected in note for note in result.notes), result.notes
    assert len(parse_secret_text(result.secret).signing.secret) == 32


@pytest.mark.parametrize(
    "files",
    [
        {"haresources": "bill1 IPaddr2::10.1.0.50/24/eth0 post\x01gres\n"},
        {"haresources": "bill1 IPaddr2::10.1.0.50/24/eth0 myapp::a\x7fb\n"},
        {"haresources": "bill1 IPaddr2::10.1.0.50/24/eth0 myapp::a\x1bb\\c\n"},
    ],
    ids=["control-char-in-init-script", "DEL-in-argument", "escape-and-backslash"],
)
def test_control_characters_in_haresources_are_escaped_and_the_config_loads(
    tmp_path: Path, files: dict[str, str]
) -> None:
    result = convert(ha_dir(tmp_path, **files))
    assert result.complete
    config = parse(result.toml)  # "complete" means check-config accepts it
    odd = files["haresources"].split()[-1].split("::")[-1]  # kept as haresources has it
    assert any(odd in (r.script or r.start) for r in config.resources), config.resources


@pytest.mark.parametrize("name", ["b\u00efll1", 'b"ill1', "b\x01ll1", "-bill1", "b" * 64])
def test_a_node_name_the_config_refuses_is_a_placeholder_with_a_note(
    tmp_path: Path, name: str
) -> None:
    files = {
        "ha.cf": HA_CF.replace("node    bill1", f"node    {name}"),
        "haresources": f"{name} IPaddr2::10.1.0.50/24/eth0\n",
    }
    result = convert(ha_dir(tmp_path, **files))
    assert not result.complete
    assert any(f"node {name!r} in ha.cf is not a name the agent accepts" in n for n in result.notes)
    with pytest.raises(ConfigError) as caught:  # valid TOML; check-config names what to fill
        parse(result.toml)
    assert all("fill in" in p for p in caught.value.problems), caught.value.problems
    assert any(
        p.startswith(f"nodes.<name>: fill in a node name for {name!r} as the table's name")
        for p in caught.value.problems
    ), caught.value.problems
    filled = result.toml.replace(result.toml.split("[nodes.")[1].split("]")[0], "bill1").replace(
        '"FILL-IN: the preferred node (a node name)"', '"bill1"'
    )
    filled = re.sub(r'name = "FILL-IN[^"]*"', 'name = "billing"', filled)
    assert parse(filled).preferred == "bill1"  # the placeholders were all there was to fix


def test_the_cluster_name_is_the_pairs_own_by_default(tmp_path: Path) -> None:
    """Two pairs named alike look like one pair with two active nodes to fleet alerts."""
    result = convert(ha_dir(tmp_path))
    assert parse(result.toml).cluster == "bill1-bill2"
    assert any("cluster.name = 'bill1-bill2', from the node names" in n for n in result.notes)
    reversed_cf = HA_CF.replace("node    bill1\nnode    bill2", "node    bill2\nnode    bill1")
    again = convert(ha_dir(tmp_path, **{"ha.cf": reversed_cf}))
    assert parse(again.toml).cluster == "bill1-bill2"  # stable: the same on both nodes
    assert parse(convert(ha_dir(tmp_path), cluster="billing").toml).cluster == "billing"


def test_an_fqdn_pair_is_named_by_its_short_names(tmp_path: Path) -> None:
    cf = HA_CF.replace("node    bill1", "node    bill1.example.com").replace(
        "node    bill2", "node    bill2.example.com"
    )
    result = convert(ha_dir(tmp_path, **{"ha.cf": cf}), node="bill1.example.com")
    assert 'name = "bill1-bill2"' in result.toml


def test_a_cluster_name_the_config_refuses_stops_the_import(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match="--cluster 'my pair'"):
        convert(ha_dir(tmp_path), cluster="my pair")


def test_control_characters_in_the_input_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "b\x1b[2Jll1"  # an escape sequence as a node name: ha.cf is read, never trusted
    files = {
        "ha.cf": HA_CF.replace("node    bill1", f"node    {bad}"),
        "haresources": f"{bad} IPaddr2::10.1.0.50/24/eth0 my\x1bapp\x9b2J\n",
    }
    assert cli.main(["import-heartbeat", str(ha_dir(tmp_path, **files))]) == 1
    captured = capsys.readouterr()
    assert not any(ch in captured.err for ch in "\x1b\x9b")
    assert "\\x1b" in captured.err and "\\x9b" in captured.err
    assert "\x1b" not in captured.out  # the TOML escapes it too


def test_a_c1_character_in_haresources_goes_to_stdout_as_toml_that_loads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # a raw C1 is valid TOML but the terminal escaper would rewrite it to "\x9b", which
    # is not: the TOML writer escapes it itself
    files = {"haresources": "bill1 IPaddr2::10.1.0.50/24/eth0 billing-app::a\x9b31mb\n"}
    assert cli.main(["import-heartbeat", str(ha_dir(tmp_path, **files))]) == 0
    toml = capsys.readouterr().out
    assert "a\\u009B31mb" in toml and "\x9b" not in toml
    assert any("a\x9b31mb" in (r.start or "") for r in parse(toml).resources)


def test_a_missing_authkeys_gets_a_new_secret(tmp_path: Path) -> None:
    directory = ha_dir(tmp_path)
    (directory / "authkeys").unlink()
    result = convert(directory)
    parse_secret_text(result.secret)
    assert f"{directory}/authkeys: missing; a new random secret was generated" in result.notes


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
        ("haresources", "# nothing\n", "haresources: no resource group"),
        (
            "haresources",
            "bill1 MailTo\n",
            "haresources:1: MailTo: expected MailTo::ADDRESS[::SUBJECT]",
        ),
        # digits other than ASCII's: heartbeat (atoi) does not read them as numbers
        (
            "ha.cf",
            HA_CF.replace("keepalive 1", "keepalive \u0663"),
            "ha.cf:4: keepalive: '\u0663' is not a time",
        ),
        ("ha.cf", HA_CF.replace("udpport 694", "udpport \u00b2"), "ha.cf:8: udpport: '\u00b2'"),
        # a helper's attack (2026-12-06): tracebacks, OverflowError and StopIteration
        (
            "ha.cf",
            HA_CF.replace("deadtime 10", "deadtime " + "9" * 400),
            "ha.cf:5: deadtime: 99999999999999999999... is more than a day",
        ),
        (
            "ha.cf",
            HA_CF.replace("node    bill2\n", "node    bill1\n"),
            "node: bill1 listed twice; list each node once",
        ),
        (
            "ha.cf",
            HA_CF.replace("node    bill2\n", "node    BILL1\n"),
            "node: BILL1 listed twice; list each node once",
        ),
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
        convert(ha_dir(tmp_path, **{"ha.cf": bad, "haresources": "# empty\n"}))
    assert len(caught.value.problems) == 3


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    directory = ha_dir(tmp_path)
    (directory / "haresources").unlink()
    with pytest.raises(ImportError_, match="haresources: missing"):
        convert(directory)


def test_node_names_compare_case_insensitively_like_heartbeat(tmp_path: Path) -> None:
    result = convert(ha_dir(tmp_path, haresources="BILL2 10.1.0.50/24 postgresql\n"))
    assert result.complete and parse(result.toml).preferred == "bill2"
    assert any("'BILL2' read as node 'bill2'" in n for n in result.notes)


def test_a_preferred_node_that_is_no_node_is_a_placeholder(tmp_path: Path) -> None:
    result = convert(ha_dir(tmp_path, haresources="bill3 10.1.0.50/24 postgresql\n"))
    assert not result.complete
    assert any("'bill3' is not a node of ha.cf (bill1, bill2)" in n for n in result.notes)
    with pytest.raises(ConfigError) as caught:
        parse(result.toml)
    assert caught.value.problems == [
        "cluster.preferred: fill in the preferred node (a node name) "
        "(a placeholder left by import-heartbeat)"
    ]


def test_a_misspelt_resource_agent_is_questioned(tmp_path: Path) -> None:
    # the same letters in another case: heartbeat would not find it; read as the agent
    result = convert(ha_dir(tmp_path, haresources="bill1 Ipaddr2::10.1.0.50/24/eth0 pg\n"))
    assert result.complete and str(parse(result.toml).vip.address) == "10.1.0.50/24"
    assert any("did you mean IPaddr2? Read as IPaddr2" in n for n in result.notes)
    # a close name with arguments: neither an agent nor an init script; ask
    result = convert(ha_dir(tmp_path, haresources="bill1 10.1.0.50/24 Filesytem::/dev/sdb::/x\n"))
    assert not result.complete
    with pytest.raises(ConfigError) as caught:
        parse(result.toml)
    assert caught.value.problems == [
        "resources[0].kind: fill in the kind of Filesytem::/dev/sdb::/x; no agent "
        "'Filesytem' (did you mean Filesystem?) (a placeholder left by import-heartbeat)"
    ]
    # an init script that merely looks like an agent's name stays an init script
    result = convert(ha_dir(tmp_path, haresources="bill1 10.1.0.50/24 apache2\n"))
    assert [(r.kind, r.script) for r in parse(result.toml).resources] == [("sysv", "apache2")]


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
    assert caught.value.problems == [
        f"{key}: fill in {what} (a placeholder left by import-heartbeat)"
        for key, what in [
            ("networks.a.subnet", "subnet of eth0"),
            ("networks.b.subnet", "subnet of eth1"),
            ("nodes.a1.a.address", "a1's address on eth0"),
            ("nodes.a1.b.address", "a1's address on eth1"),
            ("nodes.a2.a.address", "a2's address on eth0"),
            ("nodes.a2.b.address", "a2's address on eth1"),
        ]
    ]
    assert "failback = true" in result.toml and 'preferred = "a2"' in result.toml
    assert 'interval = "500ms"' in result.toml and "misses = 4" in result.toml
    assert 'start = "/etc/init.d/mysql --defaults-file=/etc/mysql/ha.cnf start"' in result.toml
    assert any("10.9.0.5 has no netmask in haresources: 10.9.0.5/24" in n for n in result.notes)


def test_udp_is_read_as_bcast(tmp_path: Path) -> None:
    ha_cf = "node bill1\nnode bill2\nudp eth0\nudp eth1\n"
    result = convert(ha_dir(tmp_path, **{"ha.cf": ha_cf}))
    assert "[networks.a]" in result.toml and "[networks.b]" in result.toml
    assert 'a = { interface = "eth0"' in result.toml and 'b = { interface = "eth1"' in result.toml
    assert any("udp is heartbeat's old spelling of bcast" in n for n in result.notes)


# ---- auto_failback: heartbeat's own default ("legacy") fails back ----------------------


@pytest.mark.parametrize(
    ("line", "failback", "comment"),
    [
        ("auto_failback on", True, "# auto_failback on"),
        ("auto_failback yes", True, "# auto_failback on"),
        ("auto_failback off", False, "# auto_failback off"),
        ("nice_failback on", False, "# auto_failback off"),
        ("nice_failback off", True, "# auto_failback on"),
        ("auto_failback legacy", True, "# auto_failback legacy: heartbeat's legacy default"),
        ("", True, "# no auto_failback in ha.cf: heartbeat's legacy default fails back"),
    ],
)
def test_failback_follows_heartbeat_and_says_why(
    tmp_path: Path, line: str, failback: bool, comment: str
) -> None:
    ha_cf = HA_CF.replace("auto_failback off", line)
    result = convert(ha_dir(tmp_path, **{"ha.cf": ha_cf}))
    assert parse(result.toml).failback is failback
    cluster_line = next(x for x in result.toml.splitlines() if x.startswith("failback ="))
    assert comment in cluster_line


# ---- ucast: the line names the PEER's address, as seen from the ha.cf's own node --------

ONE_UCAST = "node alpha\nnode beta\nucast eth0 192.0.2.11\nbcast eth1\n"


def test_a_single_ucast_address_is_not_guessed(tmp_path: Path) -> None:
    result = convert(ha_dir(tmp_path, **{"ha.cf": ONE_UCAST, "haresources": "alpha 192.0.2.50\n"}))
    assert 'alpha]\na = { interface = "eth0", address = "FILL-IN' in result.toml
    assert 'beta]\na = { interface = "eth0", address = "FILL-IN' in result.toml
    assert any("run again with --node NAME" in n for n in result.notes)


def test_a_single_ucast_address_is_the_other_nodes(tmp_path: Path) -> None:
    directory = ha_dir(tmp_path, **{"ha.cf": ONE_UCAST, "haresources": "alpha 192.0.2.50\n"})
    toml = convert(directory, node="beta").toml
    assert 'alpha]\na = { interface = "eth0", address = "192.0.2.11" }' in toml
    assert "FILL-IN: beta's address on eth0" in toml
    toml = convert(directory, node="ALPHA").toml  # a node name in another case
    assert 'beta]\na = { interface = "eth0", address = "192.0.2.11" }' in toml
    with pytest.raises(ImportError_, match=re.escape("--node 'gamma' is not a node of ha.cf")):
        convert(directory, node="gamma")


def test_on_a_node_its_own_addresses_and_etc_hosts_fill_in_the_rest(tmp_path: Path) -> None:
    directory = ha_dir(tmp_path, **{"ha.cf": ONE_UCAST, "haresources": "alpha 192.0.2.50\n"})
    facts = HostFacts(
        hostname="beta.example.net",  # uname -n as an FQDN, the node named by its short form
        addresses={
            "eth0": (ipaddress.IPv4Interface("192.0.2.12/26"),),
            "eth1": (ipaddress.IPv4Interface("198.51.100.12/24"),),
        },
        hosts=parse_hosts("198.51.100.11 alpha-b alpha\n127.0.1.1 beta.example.net beta\n"),
    )
    result = convert(directory, facts=facts)
    assert result.complete, result.toml
    config = parse(result.toml)
    alpha, beta = config.node("alpha"), config.node("beta")
    assert [str(a.address) for a in alpha.attachments] == ["192.0.2.11", "198.51.100.11"]
    assert [str(a.address) for a in beta.attachments] == ["192.0.2.12", "198.51.100.12"]
    assert [str(n.subnet) for n in config.networks] == ["192.0.2.0/26", "198.51.100.0/24"]
    assert str(config.vip.address) == "192.0.2.50/26"  # no netmask given: its network's


def test_this_hosts_own_ucast_address_is_skipped(tmp_path: Path) -> None:
    """One ha.cf for both nodes lists both addresses; heartbeat ignores its own."""
    ha_cf = "node alpha\nnode beta\nucast eth0 192.0.2.12\nucast eth0 192.0.2.11\nbcast eth1\n"
    directory = ha_dir(tmp_path, **{"ha.cf": ha_cf, "haresources": "alpha 192.0.2.50\n"})
    facts = HostFacts("alpha", {"eth0": (ipaddress.IPv4Interface("192.0.2.11/24"),)})
    toml = convert(directory, facts=facts).toml
    assert 'alpha]\na = { interface = "eth0", address = "192.0.2.11" }' in toml
    assert 'beta]\na = { interface = "eth0", address = "192.0.2.12" }' in toml


def _import_parser() -> argparse.ArgumentParser:
    """A parser with `import-heartbeat` registered as the CLI registers it."""
    parser = argparse.ArgumentParser()
    add_import_parser(parser.add_subparsers(dest="command"))
    return parser


def test_the_command_writes_config_and_secret_and_lists_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _import_parser()
    out, secret = tmp_path / "mosqit.toml", tmp_path / "secret"
    args = parser.parse_args(
        ["import-heartbeat", str(ha_dir(tmp_path)), "-o", str(out), "--secret", str(secret)]
    )
    assert args.func(args) == 0
    load(out)  # as check-config and the agent read it
    assert oct(os.stat(secret).st_mode & 0o777) == "0o600"
    parse_secret_text(secret.read_text())
    err = capsys.readouterr().err
    assert "not carried over, or assumed:" in err and "drbddisk::r0" in err
    assert args.func(args) == 2  # the secret file exists: never overwritten
    assert "already exists" in capsys.readouterr().err


def test_the_command_reports_malformed_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _import_parser()
    directory = ha_dir(tmp_path, **{"ha.cf": HA_CF.replace("keepalive 1", "keepalive two")})
    args = parser.parse_args(["import-heartbeat", str(directory)])
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{directory}/ha.cf:4: keepalive: 'two' is not a time" in captured.err
    args = parser.parse_args(["import-heartbeat", str(ha_dir(tmp_path)), "--node", "bill9"])
    assert args.func(args) == 2
    assert capsys.readouterr().err.splitlines() == [
        "import-heartbeat: cannot convert, 1 problem(s):",
        "  - --node 'bill9' is not a node of ha.cf (bill1, bill2)",
    ]


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
    service = init_script_resource("app", ["--title=two words", "it's"], tmp_path, set())
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


# ---- real heartbeat directories from tutorials and repositories (fixtures/heartbeat/*) ----

FIXTURES = Path(__file__).parent / "fixtures" / "heartbeat"
PLACEHOLDER_PROBLEM = re.compile(r"^(\S+): fill in .+ \(a placeholder left by import-heartbeat\)$")


def fixture(name: str, tmp_path: Path, **replace: str) -> Path:
    """A copy of a fixture directory (optionally with a file's text replaced)."""
    directory = tmp_path / name
    shutil.copytree(FIXTURES / name, directory)
    for file, text in replace.items():
        (directory / file).write_text(text)
    return directory


def checked(result: Result) -> Config | None:
    """The config when it is complete; else None, after checking that check-config's
    validation names each placeholder, and nothing else."""
    try:
        config = parse(result.toml)
    except ConfigError as error:
        keys = [PLACEHOLDER_PROBLEM.match(p) for p in error.problems]
        assert all(keys), error.problems
        assert len(keys) == result.toml.count('"FILL-IN') and not result.complete
        return None
    assert result.complete and "FILL-IN" not in result.toml
    return config


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_every_real_setup_imports_and_checks_or_names_its_placeholders(name: str) -> None:
    assert (FIXTURES / name / "SOURCE").read_text().strip()
    result = convert(FIXTURES / name)
    checked(result)
    parse_secret_text(result.secret)
    assert "dummy-key" not in result.secret  # a short heartbeat key is never carried over


def test_fixture_vagrant_auto_failback_on_and_heartbeats_apache_agent() -> None:
    result = convert(FIXTURES / "vagrant-bart-lisa")
    assert "failback = true  # auto_failback on" in result.toml
    assert '[vip]\naddress = "192.168.1.71/24"\ninterface = "eth1"' in result.toml
    assert '[[resources]]\nname = "apache"\nkind = "ocf"\nagent = "ocf:heartbeat:apache"' in (
        result.toml
    )


def test_fixture_asterisk_on_its_master(tmp_path: Path) -> None:
    """The master's eth1 and /etc/hosts as its install script makes them."""
    facts = HostFacts(
        "asteriskmaster",
        {"eth1": (ipaddress.IPv4Interface("172.20.10.12/28"),)},
        parse_hosts("172.20.10.13   asteriskslave\n"),
    )
    result = convert(FIXTURES / "asterisk-vagrant", facts=facts)
    assert checked(result) is None  # heartbeat had one network: the second is to fill in
    toml = result.toml
    assert '[networks.a]\nsubnet = "172.20.10.0/28"' in toml
    assert 'asteriskmaster]\na = { interface = "eth1", address = "172.20.10.12" }' in toml
    assert 'asteriskslave]\na = { interface = "eth1", address = "172.20.10.13" }' in toml
    assert 'address = "172.20.10.15/28"' in toml  # IPaddr without netmask: its network's
    assert "failback = false  # auto_failback off" in toml
    notes = "\n".join(result.notes)
    assert "unknown directive 'undport' ignored (did you mean udpport?)" in notes
    assert "crc authenticates nothing; a new random secret was generated" in notes


def test_fixture_digitalocean_identical_ucast_file(tmp_path: Path) -> None:
    result = convert(FIXTURES / "digitalocean-ucast")
    toml = result.toml
    assert 'primary]\na = { interface = "eth0", address = "104.236.6.11" }' in toml
    assert 'secondary]\na = { interface = "eth0", address = "104.236.6.22" }' in toml
    assert "failback = true  # no auto_failback in ha.cf: heartbeat's legacy default" in toml
    assert any(AUTO_FAILBACK_SOURCE in n for n in result.notes)
    assert any("'auth1': heartbeat expects 'auth KEYID'" in n for n in result.notes)
    assert 'kind = "sysv"\nscript = "floatip"' in toml
    # the same pair with one ucast line per node's own ha.cf (the secondary's names the
    # primary's address): run on the secondary, or told it is the secondary's
    secondary = "node primary\nucast eth0 104.236.6.11\nnode secondary\n"
    directory = fixture("digitalocean-ucast", tmp_path, **{"ha.cf": secondary})
    toml = convert(directory, node="secondary").toml
    assert 'primary]\na = { interface = "eth0", address = "104.236.6.11" }' in toml
    assert "FILL-IN: secondary's address on eth0" in toml
    on_it = HostFacts("secondary", {"eth0": (ipaddress.IPv4Interface("104.236.6.22/18"),)})
    toml = convert(directory, facts=on_it).toml
    assert 'secondary]\na = { interface = "eth0", address = "104.236.6.22" }' in toml
    assert '[networks.a]\nsubnet = "104.236.0.0/18"' in toml


def test_fixture_elastix_fqdn_nodes_drbd_and_filesystem() -> None:
    result = convert(FIXTURES / "elastix-fqdn-drbd")
    toml = result.toml
    assert 'preferred = "pbx1.local"' in toml  # haresources says pbx1: the node's short name
    assert '[nodes."pbx1.local"]' in toml and '[nodes."pbx2.local"]' in toml
    assert (
        '[[resources]]\nname = "drbd-r0"\nkind = "script"\nstart = "drbdadm primary r0"\n'
        'stop = "drbdadm secondary r0"\nstatus = "drbdadm role r0 | grep -q \'^Primary\'"'
    ) in toml
    assert (
        '[[resources]]\nname = "fs-replica"\nkind = "ocf"\nagent = "ocf:heartbeat:Filesystem"\n'
        'params = { device = "/dev/drbd0", directory = "/replica", fstype = "ext3" }'
    ) in toml
    assert 'mail_to = ["informatica@astican.es"]' in toml  # the second group, merged
    with pytest.raises(ConfigError) as caught:
        parse(toml)
    assert (
        "vip.interface: fill in one of the networks' interfaces (eth0 in haresources is none "
        "of them) (a placeholder left by import-heartbeat)"
    ) in caught.value.problems
    assert 'nodes."pbx1.local".a.address' in "\n".join(caught.value.problems)


def test_fixture_drbd_users_guide_mcast_and_bcast() -> None:
    result = convert(FIXTURES / "drbd-users-guide")
    toml = result.toml
    assert 'alice]\na = { interface = "bond0"' in toml and 'b = { interface = "eth2"' in toml
    assert 'name = "drbd-mysql"' in toml and 'start = "drbdadm primary mysql"' in toml
    assert 'directory = "/var/lib/mysql"' in toml
    assert "failback = true  # no auto_failback in ha.cf" in toml
    assert any("mcast bond0: multicast is not used" in n for n in result.notes)


def test_fixture_linux_ha_one_ip_two_bcast_networks() -> None:
    result = convert(FIXTURES / "linux-ha-oneip")
    assert "failback = false  # auto_failback off" in result.toml  # "auto_failback no"
    assert 'paul]\na = { interface = "eth0"' in result.toml
    assert 'b = { interface = "eth1"' in result.toml


def test_fixture_kolab_nice_failback_and_an_alias_for_the_preferred_node() -> None:
    result = convert(FIXTURES / "kolab-fqdn")
    assert "failback = false  # auto_failback off" in result.toml  # nice_failback on
    assert 'preferred = "FILL-IN: the preferred node (a node name)"' in result.toml
    assert any("'icarus.matrix.com' is not a node of ha.cf" in n for n in result.notes)
    assert 'params = { device = "/dev/sdb1", directory = "/kolab", fstype = "ext3" }' in (
        result.toml
    )


def test_fixture_jeos_udp_and_a_node_name_in_another_case() -> None:
    result = convert(FIXTURES / "jeos-udp")
    assert 'preferred = "JeOS-Serv1"' in result.toml
    assert '[nodes.JeOS-Serv1]\na = { interface = "eth1"' in result.toml
    assert any("udp is heartbeat's old spelling of bcast" in n for n in result.notes)


def test_fixture_with_a_typo_in_authkeys_and_haresources(tmp_path: Path) -> None:
    directory = fixture(
        "vagrant-bart-lisa",
        tmp_path,
        authkeys="auth 1\n1 sha dummy-key\n",
        haresources="lisa Ipaddr2::192.168.1.71/24/eth1 apache\n",
    )
    result = convert(directory)
    assert '[vip]\naddress = "192.168.1.71/24"' in result.toml
    notes = "\n".join(result.notes)
    assert "unknown method 'sha' (did you mean sha1?)" in notes
    assert "did you mean IPaddr2? Read as IPaddr2" in notes
    parse_secret_text(result.secret)


# ---- FQDN node names, end to end: check-config and the agent on a host of each name -----


def _as_host(hostname: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """`mosqit-failover ARGV` on a host whose `uname -n` is HOSTNAME (a UTS namespace)."""
    command = f"hostname {shlex.quote(hostname)} && exec {shlex.join(argv)}"
    return subprocess.run(
        ["unshare", "--uts", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_fqdn_node_names_end_to_end(tmp_path: Path) -> None:
    """The Elastix pair imported on pbx1 (its bond0, its /etc/hosts), the second network
    filled in, then checked and started as each host name would see it."""
    hosts = parse_hosts((FIXTURES / "elastix-fqdn-drbd" / "hosts").read_text())
    bond0 = (ipaddress.IPv4Interface("10.50.0.16/16"),)
    result = convert(
        FIXTURES / "elastix-fqdn-drbd", facts=HostFacts("pbx1.local", {"bond0": bond0}, hosts)
    )
    filled = {
        "subnet of network b": "10.60.0.0/24",
        "interface of network b": "eth3",
        "pbx1.local's address on network b": "10.60.0.16",
        "pbx2.local's address on network b": "10.60.0.17",
        "one of the networks' interfaces (eth0 in haresources is none of them)": "bond0",
    }
    toml = result.toml.replace('address = "192.168.220.3/24"', 'address = "10.50.0.15/16"')
    for what, value in filled.items():
        toml = toml.replace(f'"FILL-IN: {what}"', f'"{value}"')
    secret = tmp_path / "no-secret-here"
    toml = toml.replace("[cluster]\n", f'[cluster]\nsecret_file = "{secret}"\n')
    path = tmp_path / "mosqit-failover.toml"
    path.write_text(toml)
    cli = [sys.executable, "-m", "mosqit_failover.cli"]

    fqdn = _as_host("pbx1.local", *cli, "check-config", str(path))
    assert "this host runs as node pbx1.local" in fqdn.stdout
    assert fqdn.returncode == 2  # on the node: the missing secret, as the agent says
    assert f"secret file {secret}: does not exist" in fqdn.stderr
    agent = _as_host("pbx1.local", *cli, "agent", "--config", str(path))
    assert agent.returncode == 78  # past the node, stopped by the missing secret
    assert f"secret file {secret}: does not exist" in agent.stderr

    short = _as_host("pbx1", *cli, "check-config", str(path))
    assert short.returncode == 0, short.stderr
    said = (
        "this host's name is 'pbx1', and the config names 'pbx1.local': not the same name, "
        "so not taken for this host. Name the node as `uname -n` says ([nodes.pbx1] on every "
        "node) or pass --node pbx1.local"
    )
    assert f"note: {said}" in short.stdout
    agent = _as_host("pbx1", *cli, "agent", "--config", str(path))
    assert agent.returncode == 78 and said in agent.stderr
    assert "Traceback" not in agent.stderr
    agent = _as_host("pbx1", *cli, "agent", "--config", str(path), "--node", "pbx1.local")
    assert agent.returncode == 78 and "does not exist" in agent.stderr


def test_check_config_names_each_placeholder_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mosqit.toml"
    assert cli.main(["import-heartbeat", str(FIXTURES / "kolab-fqdn"), "-o", str(out)]) == 1
    capsys.readouterr()
    assert cli.main(["check-config", str(out)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{out}: 10 problem(s):"
    assert lines[1:5] == [
        "  - cluster.preferred: fill in the preferred node (a node name) "
        "(a placeholder left by import-heartbeat)",
        "  - vip.interface: fill in one of the networks' interfaces (eth0 in haresources is "
        "none of them) (a placeholder left by import-heartbeat)",
        "  - networks.a.subnet: fill in subnet of eth1 (a placeholder left by import-heartbeat)",
        "  - networks.b.subnet: fill in subnet of network b "
        "(a placeholder left by import-heartbeat)",
    ]
    assert all(line.startswith("  - ") and ": fill in " in line for line in lines[1:])
    assert '  - nodes."logos.matrix.com".a.address: fill in' in "\n".join(lines)


def test_filesystem_arguments_past_the_options_are_named_in_a_note(tmp_path: Path) -> None:
    line = "bill1 Filesystem::/dev/sdb1::/srv/x::ext4::noatime::extra\n"
    result = convert(ha_dir(tmp_path, haresources=line))
    said = [n for n in result.notes if "were left out" in n]
    assert said and "(extra) were left out" in said[0], result.notes
    assert 'options = "noatime"' in result.toml


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_force_never_replaces_what_is_not_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A helper's attack: `-o /dev/full --force` replaced the device node with the config
    (and a FIFO or a symlink with a file)."""
    directory = ha_dir(tmp_path)
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        (tmp_path / "real.toml").write_text("# managed elsewhere\n")
        target.symlink_to(tmp_path / "real.toml")
    else:
        os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # root only, as make test
    before = target.lstat()
    for option in ("-o", "--secret"):
        status, err = _import(capsys, directory, option, target, "--force")
        what = "a symlink" if kind == "symlink" else "not a regular file"
        assert status == 2
        assert err.splitlines() == [
            f"import-heartbeat: cannot write the {'config' if option == '-o' else 'secret'} "
            f"to {target}: it is {what}, and is never replaced; give the path of a regular "
            "file (or a new one); nothing was written"
        ]
        after = target.lstat()
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


@pytest.mark.parametrize("name", ["ha.cf", "authkeys", "haresources", "mosqit.toml"])
def test_nothing_is_written_into_heartbeats_own_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A helper's attack: `-o DIR/ha.cf --force` replaced heartbeat's config, the way back."""
    directory = ha_dir(tmp_path)
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    for option in ("-o", "--secret"):
        status, err = _import(capsys, directory, option, directory / name, "--force")
        assert status == 2
        assert f"it is in heartbeat's directory {directory}, whose files are the way back" in err
        assert {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()} == before


def test_an_unreadable_input_is_named_for_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A helper's attack: an ha.cf that is a directory, a FIFO or a symlink loop was
    "missing", and a file given as the directory gave "ha.cf/ha.cf: missing"."""
    directory = ha_dir(tmp_path)
    hacf = directory / "ha.cf"
    saved = hacf.read_text()
    hacf.unlink()
    cases = {
        "dir": "not a regular file (a directory, a FIFO, a device); give heartbeat's file",
        "fifo": "not a regular file (a directory, a FIFO, a device); give heartbeat's file",
        "loop": "cannot be read (Too many levels of symbolic links); give the real file",
        "dangling": "a symlink to nothing; point it at the file or copy the file here",
    }
    for case, says in cases.items():
        if case == "dir":
            hacf.mkdir()
        elif case == "fifo":
            os.mkfifo(hacf)
        elif case == "loop":
            hacf.symlink_to(hacf)
        else:
            hacf.symlink_to(tmp_path / "nowhere")
        status, err = _import(capsys, directory)
        assert status == 2 and f"{hacf}: {says}" in err, (case, err)
        if hacf.is_dir() and not hacf.is_symlink():
            hacf.rmdir()
        else:
            hacf.unlink()
    hacf.write_text(saved)
    status, err = _import(capsys, hacf)
    assert status == 2
    assert f"{hacf}: is not a directory; give heartbeat's directory (like /etc/ha.d)" in err


def test_a_byte_order_mark_in_hacf_keeps_the_first_directive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = ha_dir(tmp_path)
    hacf = directory / "ha.cf"
    # the directive first: with the mark read as text it became '\ufefflogfacility'
    body = HA_CF.split("\n", 1)[1]
    assert body.startswith("logfacility")
    hacf.write_bytes(b"\xef\xbb\xbf" + body.encode())
    status, err = _import(capsys, directory)
    assert "\ufeff" not in err and "unknown directive" not in err, err
    assert status in (0, 1), err


@pytest.mark.parametrize(("given", "interval"), [("0", "10ms"), ("5ms", "10ms"), ("60", "10s")])
def test_a_keepalive_outside_the_agents_range_is_noted(
    tmp_path: Path, given: str, interval: str
) -> None:
    """A helper's attack: keepalive 0 became 10 ms probes without a word."""
    result = convert(
        ha_dir(tmp_path, **{"ha.cf": HA_CF.replace("keepalive 1", f"keepalive {given}")})
    )
    assert f'interval = "{interval}"' in result.toml
    assert any(
        note.startswith("timing: keepalive ") and f"interval = {interval} instead" in note
        for note in result.notes
    ), result.notes
