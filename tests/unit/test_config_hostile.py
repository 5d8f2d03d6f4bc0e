"""Config: hostile or careless input (trailing newlines, dangerous sync paths, deep nesting,
huge files, unsafe owners and modes) is refused with a problem line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.config import ConfigError, advice, load, parse
from mosqit_failover.sim_scenarios import SIM_CONFIG

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.problems


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


# -- names ending in a newline ("$" matches before a trailing newline) ----------


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('name = "sim"', 'name = "sim\\n"', "cluster.name"),
        ('preferred = "alpha"', 'preferred = "alpha\\n"', "cluster.preferred"),
        (
            'interface = "eth0"\n\n[networks.a]',
            'interface = "eth0\\n"\n\n[networks.a]',
            "vip.interface",
        ),
        (
            'a = { interface = "eth0", address = "10.231.1.11" }',
            'a = { interface = "eth0\\n", address = "10.231.1.11" }',
            "nodes.alpha.a.interface",
        ),
        ("[networks.b]", '[networks."b\\n"]', "networks.b\n"),
        ('name = "db"', 'name = "db\\n"', "resources[0].name"),
        ('path = "/srv/data"', 'path = "/srv/data"\nssh_user = "root\\n"', "sync[0].ssh_user"),
        (
            'kind = "systemd"\nunit = "db.service"',
            'kind = "ocf"\nagent = "ocf:heartbeat:IPaddr2\\n"',
            "resources[0].agent",
        ),
        (
            'kind = "systemd"\nunit = "db.service"',
            'kind = "ocf"\nagent = "ocf:heartbeat:IPaddr2"\nparams = { "ip\\n" = "1" }',
            "resources[0].params",
        ),
        ("[vip]", '[alerts]\nmail_to = ["ops@example.com\\n"]\n\n[vip]', "alerts.mail_to"),
    ],
)
def test_a_value_ending_in_a_newline_is_refused(old: str, new: str, key: str) -> None:
    assert SIM_CONFIG.count(old) == 1
    found = problems(SIM_CONFIG.replace(old, new))
    assert any(p.startswith(key) for p in found), found


def test_the_same_values_without_the_newline_are_accepted() -> None:
    text = SIM_CONFIG.replace("[vip]", '[alerts]\nmail_to = ["ops@example.com"]\n\n[vip]')
    text = text.replace(
        'kind = "systemd"\nunit = "db.service"',
        'kind = "ocf"\nagent = "ocf:heartbeat:IPaddr2"\nparams = { ip = "1" }',
    )
    config = parse(text)
    assert config.alerts.mail_to == ("ops@example.com",)
    assert config.resources[0].agent == "ocf:heartbeat:IPaddr2"


@pytest.mark.parametrize("text", ["100ms\n", "1\n00ms", "\u0661\u0660\u0660ms"])
def test_a_duration_is_plain_ascii_digits_and_a_unit(text: str) -> None:
    if text.endswith("\n"):  # surrounding whitespace is tolerated, as before
        assert configuration.parse_duration(text) == pytest.approx(0.1)
        return
    with pytest.raises(ValueError):
        configuration.parse_duration(text)


# -- synced directories ----------------------------------------------------------


def sync_problems(value: str, extra: str = "", cluster: str = "") -> list[str]:
    text = SIM_CONFIG.replace('path = "/srv/data"', f'path = "{value}"{extra}')
    return problems(text.replace("[cluster]", f"[cluster]\n{cluster}", 1))


UNCLEAN = "has '.', '..' or repeated '/' in it: write it as "
HOST = "part of the system (software, boot, packages, network, logins or ssh keys)"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("/", "is /, a system directory"),
        ("//", "is /, a system directory"),
        ("/etc/..", "means /, a system directory"),
        ("/srv/../..", "means /, a system directory"),
        ("/etc", "is /etc, a system directory"),
        ("/etc/", "is /etc, a system directory"),
        ("/usr", "is /usr, a system directory"),
        ("/proc", "is /proc, a system directory"),
        ("/proc/1/root", "is /proc/1/root, a system directory"),
        ("/sys/fs", "is /sys/fs, a system directory"),
        ("/dev/shm", "is /dev/shm, a system directory"),
        ("/run/app", "is /run/app, a system directory"),
        ("/lib64", "is /lib64, a system directory"),
        ("/boot", "is /boot, a system directory"),
        ("/root", "is /root, a system directory"),
        ("/var", "is /var, a system directory"),
        ("/var/lib", "is /var/lib, a system directory"),
        ("/var/lib/", "is /var/lib, a system directory"),
        ("/etc/ssh", "is /etc/ssh, " + HOST),
        ("/etc/ssh/sshd_config.d", "is /etc/ssh/sshd_config.d, " + HOST),
        ("/root/.ssh", "is /root/.ssh, " + HOST),
        ("/home/ops/.ssh", "is /home/ops/.ssh, " + HOST),
        ("/srv/app/.ssh/keys", "is /srv/app/.ssh/keys, " + HOST),
        ("/etc/network", "is /etc/network, " + HOST),
        ("/etc/systemd/system", "is /etc/systemd/system, " + HOST),
        ("/usr/bin", "is /usr/bin, " + HOST),
        ("/usr/lib/x86_64-linux-gnu", "is /usr/lib/x86_64-linux-gnu, " + HOST),
        ("/usr/local", "is /usr/local, " + HOST),
        ("/lib/modules", "is /lib/modules, " + HOST),
        ("/boot/grub", "is /boot/grub, " + HOST),
        ("/var/lib/dpkg", "is /var/lib/dpkg, " + HOST),
        ("/var/log/journal", "is /var/log/journal, " + HOST),
        ("/var/lib/mosqit-failover", "overlaps the agent's own state directory"),
        ("/var/lib/mosqit-failover/x", "overlaps the agent's own state directory"),
        ("/etc/mosqit-failover", "overlaps the agent's own secret file's directory"),
        ("/srv/../etc/app", UNCLEAN + "/etc/app"),
        ("/srv/./data", UNCLEAN + "/srv/data"),
        ("/srv//data", UNCLEAN + "/srv/data"),
        ("/srv/data//", UNCLEAN + "/srv/data"),
        ("/srv/data/.", UNCLEAN + "/srv/data"),
        ("srv/data", 'must be an absolute directory path, like "/srv/data"'),
    ],
)
def test_a_dangerous_sync_path_is_refused_naming_the_key_and_fix(value: str, says: str) -> None:
    assert sync_problems(value) == [f"sync[0].path = {value!r}: {says}" + _rest(says)]
    peer = sync_problems("/srv/data", f'\npeer_path = "{value}"')
    assert peer == [f"sync[0].peer_path = {value!r}: {says}" + _rest(says)]


def _rest(says: str) -> str:
    if "system directory" in says:
        return (
            ": syncing it would overwrite the standby's own system; sync an application's "
            "directory, like /srv/data"
        )
    if HOST in says:
        return (
            ": syncing it would give the standby the active's copy of them; sync an "
            "application's directory, like /srv/data"
        )
    if "overlaps" in says:
        own = says.rsplit("own ", 1)[1]
        where = {
            "state directory": " (cluster.state_dir) /var/lib/mosqit-failover",
            "secret file's directory": " (cluster.secret_file) /etc/mosqit-failover",
        }[own]
        return f"{where}: the standby must keep its own; sync a directory outside it"
    return ""


@pytest.mark.parametrize("value", ["/srv/data", "/srv/data/", "/var/lib/app", "/etc/app", "/home"])
def test_an_application_directory_is_accepted(value: str) -> None:
    text = SIM_CONFIG.replace('path = "/srv/data"', f'path = "{value}"')
    assert parse(text).sync[0].path == value.rstrip("/")


def test_a_sync_path_holding_a_custom_state_dir_is_refused() -> None:
    found = sync_problems("/srv", cluster='state_dir = "/srv/mosqit/state"')
    assert found == [
        "sync[0].path = '/srv': overlaps the agent's own state directory (cluster.state_dir) "
        "/srv/mosqit/state: the standby must keep its own; sync a directory outside it"
    ]


def test_the_config_files_own_directory_is_not_synced(tmp_path: Path) -> None:
    here = tmp_path / "cfg"
    here.mkdir()
    config = here / "cluster.toml"
    config.write_text(SIM_CONFIG.replace('path = "/srv/data"', f'path = "{tmp_path}"'))
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert caught.value.problems == [
        f"sync[0].path = '{tmp_path}': overlaps the agent's own config directory {here}: "
        "the standby must keep its own; sync a directory outside it"
    ]


# -- nesting and size ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["[" * 10_000 + "]" * 10_000, "{a=" * 10_000 + "1" + "}" * 10_000]
)
def test_a_deeply_nested_value_is_a_problem_not_a_traceback(value: str) -> None:
    found = problems(SIM_CONFIG.replace("[vip]", f"[console]\nserver_names = {value}\n\n[vip]"))
    assert found == [
        "a value is nested too deeply; a config needs a few levels at most: remove the nesting"
    ]


@pytest.mark.parametrize(
    "where",
    [
        "[cluster]\nfailback",
        "[vip]\ngarp_count",
        "[console]\nlisten",
        "[alerts]\nhooks",
        "[[sync]]\nexcludes",
    ],
)
def test_a_deep_dotted_key_where_a_value_belongs_is_shown_briefly(where: str) -> None:
    table, key = where.split("\n")
    deep = f"{key}." + "a." * 2_000 + "b = 1"  # deeper than repr can recurse
    if table in SIM_CONFIG:
        text = SIM_CONFIG.replace(table, f"{table}\n{deep}", 1)
    else:
        text = SIM_CONFIG.replace("[vip]", f"{table}\n{deep}\n\n[vip]", 1)
    (found,) = problems(text)  # not a TOML error: the value reaches its check
    assert found.startswith(f"{table.strip('[]')}.{key}") or found.startswith("sync[0]"), found
    assert len(found) < 400, found


def test_check_config_on_a_deeply_nested_file_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 10_000 + "]" * 10_000 + "\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert "nested too deeply" in result.stderr and "Traceback" not in result.stderr


def test_a_config_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(SIM_CONFIG + ("# padding\n" * 110_000))
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        "larger than 1 MiB; a config is a few KiB: is it the right file?"
    ]
    path.write_text(SIM_CONFIG + ("# padding\n" * 100_000))  # just under: read whole
    assert load(path).cluster == "sim"


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo, 0o644)
    result = run_cli("check-config", str(fifo), timeout=20)
    assert result.returncode == 2
    assert "not a regular file" in result.stderr


# -- owner and mode of the file and its directories ---------------------------------------


def write_config(path: Path, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SIM_CONFIG)
    path.chmod(mode)
    return path


def test_a_root_owned_0644_file_in_a_private_directory_loads(tmp_path: Path) -> None:
    assert load(write_config(tmp_path / "ok.toml")).cluster == "sim"
    assert load(write_config(tmp_path / "private.toml", 0o600)).cluster == "sim"


@pytest.mark.parametrize(
    ("mode", "who"),
    [(0o664, "group"), (0o646, "others"), (0o666, "group and others"), (0o777, "group and others")],
)
def test_a_config_file_others_can_write_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = write_config(tmp_path / "cluster.toml", mode)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        f"is writable by {who} (mode {mode:04o}), but it holds commands run as root; "
        f"fix: chown root:root {path} && chmod 0644 {path}"
    ]


@AS_ROOT
def test_a_config_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "cluster.toml")
    os.chown(path, 4242, 4242)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        "is owned by uid 4242, not root, but it holds commands run as root; "
        f"fix: chown root:root {path} && chmod 0644 {path}"
    ]


@AS_ROOT
def test_a_user_who_is_not_root_may_load_their_own_or_roots_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = write_config(tmp_path / "mine.toml")
    os.chown(mine, 4242, 4242)
    roots = write_config(tmp_path / "roots.toml")
    theirs = write_config(tmp_path / "theirs.toml")
    os.chown(theirs, 4343, 4343)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert load(mine).cluster == "sim"
    assert load(roots).cluster == "sim"
    with pytest.raises(ConfigError, match="is owned by uid 4343, not root"):
        load(theirs)


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    path = write_config(shared / "cluster.toml")
    shared.chmod(0o777)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        f"its directory {shared} is writable by group and others (mode 0777), so others could "
        f"replace the config; fix: chown root:root {shared} && chmod go-w {shared}"
    ]
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace a file they do not own
    assert load(path).cluster == "sim"


def test_a_symlink_to_a_config_in_an_unsafe_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    real = write_config(shared / "cluster.toml")
    shared.chmod(0o770)
    safe = tmp_path / "etc"
    safe.mkdir()
    (safe / "cluster.toml").symlink_to(real)
    with pytest.raises(ConfigError, match=f"its directory {shared} is writable by group"):
        load(safe / "cluster.toml")


def test_check_config_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = write_config(tmp_path / "cluster.toml", 0o666)
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert f"chown root:root {path} && chmod 0644 {path}" in result.stderr
    assert result.stderr.startswith(f"{path}: 1 problem(s):")
    assert "Traceback" not in result.stderr


def test_parse_does_not_look_at_files() -> None:
    assert parse(SIM_CONFIG, "/nonexistent/with/any/mode.toml").cluster == "sim"


# -- the control socket ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("/tmp/control.sock", "/tmp is shared by every user"),
        ("/run/control.sock", "/run is shared by every user"),
        ("/var/run/control.sock", "/var/run is shared by every user"),
        ("/dev/shm/control.sock", "/dev/shm is shared by every user"),
        ("/run/x/../control.sock", "/run is shared by every user"),
        ("control.sock", "must be an absolute path"),
    ],
)
def test_a_control_socket_in_a_shared_directory_is_refused(value: str, says: str) -> None:
    text = SIM_CONFIG.replace("[cluster]", f'[cluster]\ncontrol_socket = "{value}"', 1)
    (found,) = problems(text)
    assert found.startswith(f"cluster.control_socket = {value!r}: {says}")
    assert 'like "/run/mosqit-failover/control.sock"' in found or (
        'control_socket = "/run/mosqit-failover/control.sock"' in found
    )


@pytest.mark.parametrize(
    ("old", "new", "key", "why"),
    [
        ('switch = "10.231.1.1"', 'switch = "10.231.1.255"', "networks.a.switch", "broadcast"),
        ('switch = "10.231.1.1"', 'switch = "10.231.1.0"', "networks.a.switch", "network address"),
        ('"10.231.1.11"', '"10.231.1.255"', "nodes.alpha.a.address", "broadcast"),
    ],
)
def test_a_subnets_network_or_broadcast_address_is_no_host(
    old: str, new: str, key: str, why: str
) -> None:
    """A ping to the broadcast address reaches every host or none (the kernel refuses
    it: EACCES), so such a switch never answered (found by the breaker)."""
    assert old in SIM_CONFIG
    found = problems(SIM_CONFIG.replace(old, new, 1))
    assert any(p.startswith(key) and why in p and "own address" in p for p in found), found


# -- a helper's attack (2026-12-06): a VIP on the wrong port, with a stray prefix, or the
# subnet's broadcast; two synced directories landing in one place; a listener on "[]" --


@pytest.mark.parametrize(
    ("vip", "says"),
    [
        (
            'address = "10.231.2.50/24"\ninterface = "eth0"',
            "nodes.alpha: the VIP is in network b (10.231.2.0/24), whose port on alpha is "
            "eth1, not eth0: set vip.interface (or nodes.alpha.vip_interface) to 'eth1'",
        ),
        (
            'address = "10.231.1.50/8"\ninterface = "eth0"',
            "vip.address = '10.231.1.50/8': the prefix /8 differs from network a's "
            "(10.231.1.0/24): the active node would route 10.0.0.0/8 to that port; "
            "write 10.231.1.50/24 (or /32)",
        ),
        (
            'address = "10.231.1.255/24"\ninterface = "eth0"',
            "vip.address = '10.231.1.255/24': is the broadcast address of 10.231.1.0/24, "
            "not a host; pick a free host address of 10.231.1.0/24",
        ),
        (
            'address = "10.231.1.0/24"\ninterface = "eth0"',
            "vip.address = '10.231.1.0/24': is the network address of 10.231.1.0/24",
        ),
    ],
)
def test_the_vip_is_a_host_of_its_network_on_the_port_to_it(vip: str, says: str) -> None:
    text = SIM_CONFIG.replace('address = "10.231.1.50/24"\ninterface = "eth0"', vip)
    found = problems(text)
    assert any(says in p for p in found), found


def test_a_vip_interface_that_is_no_port_gets_one_line_naming_the_right_one() -> None:
    text = SIM_CONFIG.replace(
        'address = "10.231.1.50/24"\ninterface = "eth0"',
        'address = "10.231.1.50/24"\ninterface = "eth9"',
    )
    found = [p for p in problems(text) if p.startswith("nodes.alpha")]
    assert found == [
        "nodes.alpha: the VIP is in network a (10.231.1.0/24), whose port on alpha is "
        "eth0, not eth9: set vip.interface (or nodes.alpha.vip_interface) to 'eth0'"
    ], found


@pytest.mark.parametrize("address", ["10.231.1.50/32", "10.231.2.50/24"])
def test_a_host_vip_or_one_on_the_right_port_is_accepted(address: str) -> None:
    port = "eth1" if address.startswith("10.231.2.") else "eth0"
    text = SIM_CONFIG.replace(
        'address = "10.231.1.50/24"\ninterface = "eth0"',
        f'address = "{address}"\ninterface = "{port}"',
    )
    assert parse(text).vip.interface == port


@pytest.mark.parametrize(
    ("second", "says"),
    [
        (
            'path = "/srv/other"\npeer_path = "/srv/data"',
            "sync: /srv/data and /srv/other both land in /srv/data on the peer; give each "
            "its own peer_path",
        ),
        (
            'path = "/srv/other"\npeer_path = "/srv/data/other"',
            "sync: /srv/other lands in /srv/data/other on the peer, inside /srv/data where "
            "/srv/data lands, but is not the same place inside /srv/data here",
        ),
    ],
)
def test_two_synced_directories_never_share_a_place_on_the_peer(second: str, says: str) -> None:
    found = problems(SIM_CONFIG + f"\n[[sync]]\n{second}\n")
    assert any(says in p for p in found), found


def test_a_directory_synced_inside_another_to_the_same_place_is_accepted() -> None:
    cfg = parse(SIM_CONFIG + '\n[[sync]]\npath = "/srv/data/inner"\n')
    assert [d.target for d in cfg.sync] == ["/srv/data", "/srv/data/inner"]


@pytest.mark.parametrize("listen", ["[]:8405", "[:8405", "[::1:8405", ":8405", "a b:8405"])
@pytest.mark.parametrize("table", ["console", "metrics"])
def test_a_listener_needs_a_host(table: str, listen: str) -> None:
    found = problems(SIM_CONFIG + f'\n[{table}]\nlisten = "{listen}"\n')
    assert any(
        f"{table}.listen = " in p and 'must be "HOST:PORT", like "127.0.0.1:25"' in p for p in found
    ), found


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            'unit = "db.service"',
            'unit = "-H evil.example.com"',
            "resources[0].unit = '-H evil.example.com': must be a systemd unit name",
        ),
        (
            'name = "sim"',
            'name = "sim"\nsecret_file = "secret"',
            "cluster.secret_file = 'secret': must be an absolute path",
        ),
        (
            'name = "sim"',
            'name = "sim"\nstate_dir = "state"',
            "cluster.state_dir = 'state': must be an absolute path",
        ),
        (
            'name = "sim"',
            'name = "sim"\nstate_dir = "/"',
            "cluster.state_dir = '/': must be a directory of its own",
        ),
        (
            'name = "sim"',
            'name = "sim"\nstate_dir = "/etc"',
            "cluster.state_dir = '/etc': must be a directory of its own",
        ),
        (
            'name = "sim"',
            'name = "sim"\nstate_dir = "/run/mosqit-failover"',
            "cluster.state_dir = '/run/mosqit-failover': /run/mosqit-failover is not kept "
            "across a reboot (or not a disk at all), and the promotion epoch must be",
        ),
        (
            'name = "sim"',
            'name = "sim"\nstate_dir = "/dev/shm"',
            "cluster.state_dir = '/dev/shm': /dev/shm is not kept across a reboot",
        ),
        (
            'unit = "db.service"',
            'unit = "ssh"',
            "resources[0].unit = 'ssh': ssh.service is sshd, which the sync and the ssh fence "
            "log in through: a standby stops its resources, and would stop it; protect the "
            "application's own unit",
        ),
        (
            'unit = "db.service"',
            'unit = "mosqit-failover.service"',
            "mosqit-failover.service is the agent itself",
        ),
        (
            'unit = "db.service"',
            'unit = "systemd-journald.service"',
            "systemd-journald.service is part of systemd itself",
        ),
        (
            'unit = "db.service"',
            'unit = "multi-user.target"',
            "multi-user.target is part of systemd itself",
        ),
        (
            'unit = "db.service"',
            'unit = "networking.service"',
            "networking.service is the network",
        ),
        (
            'path = "/srv/data"',
            'path = "/srv/da\\nta"',
            "sync[0].path = '/srv/da\\nta': has a control character (a newline, a tab) in it",
        ),
        (
            'path = "/srv/data"',
            'path = "/srv/data"\nssh_key = "keys/sync"',
            "sync[0].ssh_key = 'keys/sync': must be an absolute path",
        ),
        (
            'path = "/srv/data"',
            'path = "/srv/da\\u0000ta"',
            "sync[0].path = '/srv/da\\x00ta': has a NUL character (\\u0000) in it",
        ),
    ],
)
def test_a_unit_name_or_path_that_is_no_such_thing_is_refused(
    old: str, new: str, says: str
) -> None:
    """A helper's attack (2026-12-06): an option for systemctl as a unit, paths relative
    to wherever the agent runs from (systemd's /), "/" as the state directory, and
    control characters check-config printed raw."""
    found = problems(SIM_CONFIG.replace(old, new, 1))
    assert any(says in p for p in found), found


# -- what reaches the operator's terminal ------------------------------------------


def test_an_escape_sequence_in_a_key_or_value_is_shown_escaped_not_sent_to_a_terminal() -> None:
    text = SIM_CONFIG.replace("[nodes.alpha]", '[nodes."al\\u001b[2Jpha"]')
    found = problems(text.replace('unit = "db.service"', 'unit = "\\u009b31mdb.service"'))
    assert any(line.startswith("nodes.al\\x1b[2Jpha = ") for line in found), found
    assert any("\\x9b31mdb.service" in line for line in found), found
    assert not any(ch in line for line in found for ch in "\x1b\x9b")


def test_check_config_names_an_undecodable_path_readably(tmp_path: Path) -> None:
    missing = os.fsencode(tmp_path) + b"/conf\xfe.toml"
    result = subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", "check-config", os.fsdecode(missing)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    err = result.stderr.decode("utf-8")  # strict: nothing undecodable reached the terminal
    assert result.returncode == 2 and "conf\\xfe.toml: 1 problem(s)" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('control_socket = "/run/m\\u001b]0;x\\u0007/c.sock"', "cluster.control_socket"),
        ('secret_file = "/etc/m\\u009b31m/secret"', "cluster.secret_file"),
        ('state_dir = "/var/lib/m\\u0085f"', "cluster.state_dir"),
    ],
)
def test_a_path_with_a_control_character_c1_too_is_refused(line: str, key: str) -> None:
    found = problems(SIM_CONFIG.replace("[cluster]", f"[cluster]\n{line}", 1))
    assert any(p.startswith(key) and "has a control character" in p for p in found), found


@pytest.mark.parametrize(
    "value",
    [
        "/etc/asterisk",
        "/etc/postfix",
        "/var/lib/postgresql",
        "/var/spool/mail",
        "/opt/app",
        "/usr/local/billing",
    ],
)
def test_an_application_directory_under_a_system_tree_is_taken(value: str) -> None:
    """A telecom node syncs /etc/asterisk, a mail node /var/spool/mail: only the host's own
    trees are refused."""
    parse(SIM_CONFIG.replace('path = "/srv/data"', f'path = "{value}"'))


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ('"10.231.1.0/24"', '"224.0.2.0/24"', "224.0.2.0 is a multicast address, not a host's"),
        ('"10.231.1.50/24"', '"224.0.2.50/24"', "224.0.2.50 is a multicast address"),
        ('"10.231.1.11"', '"0.0.0.0"', '0.0.0.0 is in 0.0.0.0/8 ("this network")'),
        ('"10.231.1.11"', '"255.255.255.255"', "255.255.255.255 is a reserved address"),
    ],
)
def test_an_address_that_names_no_host_is_refused(old: str, new: str, says: str) -> None:
    """A helper's attack: multicast addresses were taken for the subnet, the VIP, a node."""
    assert old in SIM_CONFIG
    found = problems(SIM_CONFIG.replace(old, new, 1))
    assert any(says in p for p in found), found


def test_loopback_addresses_get_a_note() -> None:
    cfg = parse(SIM_CONFIG.replace("10.231.", "127.231."))
    assert advice(cfg) == [
        "127.231.1.0/24, 127.231.1.50/24, 127.231.2.0/24: loopback, which never leaves a "
        "host: nodes on it cannot hear each other, and clients cannot reach the VIP (fine "
        "for a test on one machine only); use the addresses of the nodes' cabled networks"
    ]


@pytest.mark.parametrize(("length", "refused"), [(107, False), (108, True), (130, True)])
def test_a_control_socket_path_too_long_for_the_kernel_is_refused(
    length: int, refused: bool
) -> None:
    """A helper's attack: a 130-byte path was taken, the agent could not listen on it, and
    the CLI blamed the agent ("is it running?")."""
    path = "/run/mosqit-failover/" + "x" * (length - len("/run/mosqit-failover/.sock")) + ".sock"
    assert len(path) == length
    text = SIM_CONFIG.replace('name = "sim"', f'name = "sim"\ncontrol_socket = "{path}"', 1)
    if not refused:
        assert parse(text).control_socket == Path(path)
        return
    found = problems(text)
    assert len(found) == 1 and found[0].startswith("cluster.control_socket = '/run/"), found
    assert found[0].endswith(
        f"': is {length} bytes long, and a unix socket's path can be at most 107; use a "
        'shorter one, like "/run/mosqit-failover/control.sock"'
    ), found


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('start = "/bin/x"', "resources[0].start: only for kind = \"script\", not 'systemd'"),
        (
            'script = "/etc/init.d/db"',
            "resources[0].script: only for kind = \"sysv\", not 'systemd'",
        ),
        ('agent = "ocf:heartbeat:IPaddr2"', 'resources[0].agent: only for kind = "ocf"'),
        ('params = { ip = "10.0.0.1" }', 'resources[0].params: only for kind = "ocf"'),
    ],
)
def test_a_key_of_another_resource_kind_is_refused(extra: str, says: str) -> None:
    """A helper's attack: a systemd resource's start command was taken and never run."""
    found = problems(SIM_CONFIG.replace('unit = "db.service"', f'unit = "db.service"\n{extra}', 1))
    assert len(found) == 1 and found[0].startswith(says), found
    assert found[0].endswith("; remove it (or change kind)") or "params" in says, found


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xef\xbb\xbf" + SIM_CONFIG.encode(), "begins with a byte-order mark; save it as UTF-8"),
        (SIM_CONFIG.encode("utf-16"), "is not UTF-8 text (it is UTF-16; save it as UTF-8)"),
        (b"# caf\xe9\n" + SIM_CONFIG.encode(), "is not UTF-8 text: byte 0xe9 on line 1"),
    ],
)
def test_an_encoding_slip_is_named_with_its_fix(tmp_path: Path, content: bytes, says: str) -> None:
    """A helper's attack: a BOM gave "Invalid statement (at line 1, column 1)", UTF-16 a
    codec error."""
    path = tmp_path / "pair.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [says] or caught.value.problems[0].startswith(says)


def test_a_symlink_loop_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pair.toml"
    path.symlink_to(path)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.problems == [
        "is a symlink loop (or too many links in a row); point --config at the file"
    ]


@pytest.mark.parametrize(
    ("value", "ok"), [("0s", True), ("1s", True), ("1ms", False), ("0.5s", False)]
)
def test_a_garp_refresh_that_floods_is_refused(value: str, ok: bool) -> None:
    text = SIM_CONFIG.replace(
        'interface = "eth0"\n', f'interface = "eth0"\ngarp_refresh = "{value}"\n', 1
    )
    if ok:
        parse(text)
        return
    found = problems(text)
    assert found == [
        f'vip.garp_refresh = {value!r}: must be "0s" (off) or at least "1s" (keepalived\'s '
        "floor too): more often floods the network with ARP"
    ], found


def test_metrics_and_console_cannot_share_a_port() -> None:
    """A helper's attack: metrics.listen on the console's default port was taken."""
    found = problems(SIM_CONFIG + '\n[metrics]\nlisten = "127.0.0.1:8405"\n')
    assert found == [
        "metrics.listen = '127.0.0.1:8405': console.listen = '127.0.0.1:8405' is the same "
        "port on an address it covers; give each its own port, like metrics.listen = "
        '"127.0.0.1:9405"'
    ]
    parse(SIM_CONFIG + '\n[metrics]\nlisten = "127.0.0.1:9405"\n')
    parse(SIM_CONFIG + '\n[metrics]\nlisten = "127.0.0.1:8405"\n[console]\nlisten = ""\n')


@pytest.mark.parametrize(
    ("metrics", "clash"),
    [
        ("0.0.0.0:8405", True),  # the wildcard takes the console's loopback port too
        ("[::]:8405", True),
        ("localhost:8405", True),
        ("127.0.0.1:08405", True),
        ("10.0.1.11:8405", False),
        ("[::1]:8405", False),
        ("0.0.0.0:9405", False),
    ],
)
def test_a_wildcard_metrics_address_on_the_console_port_is_refused(
    metrics: str, clash: bool
) -> None:
    """The console listens on 127.0.0.1:8405 by default (a careless operator's attack:
    metrics on 0.0.0.0:8405 was taken, and one of the two failed to bind at each start)."""
    text = SIM_CONFIG + f'\n[metrics]\nlisten = "{metrics}"\n'
    if not clash:
        parse(text)
        return
    assert any("is the same port on an address it covers" in p for p in problems(text))


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("/etc/init.d/ssh", "/etc/init.d/ssh starts sshd, which the sync and the ssh fence"),
        ("/etc/init.d/mosqit-failover", "starts the agent itself"),
        ("/etc/init.d/network-manager", "starts the network"),
    ],
)
def test_a_host_init_script_is_refused(script: str, says: str) -> None:
    """A helper's attack: `wizard resources --add-sysv /etc/init.d/ssh` was taken, and a
    switchover then stopped the old active's sshd."""
    text = SIM_CONFIG.replace(
        'kind = "systemd"\nunit = "db.service"', f'kind = "sysv"\nscript = "{script}"', 1
    )
    found = problems(text)
    assert len(found) == 1 and says in found[0], found
    assert found[0].endswith("protect the application's own script, like /etc/init.d/asterisk")


def test_sshd_by_its_socket_is_refused() -> None:
    found = problems(SIM_CONFIG.replace('unit = "db.service"', 'unit = "ssh.socket"', 1))
    assert len(found) == 1 and "ssh.socket is sshd" in found[0], found
