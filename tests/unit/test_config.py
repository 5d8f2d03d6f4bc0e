"""Config: the schema, its defaults, and an error naming key, value and fix for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mosqit_failover.config import ConfigError, parse, parse_duration, pick_node
from mosqit_failover.sim_scenarios import SIM_CONFIG

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pair.toml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.problems


def test_the_example_config_is_valid_with_documented_defaults() -> None:
    config = parse(EXAMPLE.read_text())
    assert config.timing.interval == 0.1
    assert config.timing.misses == 3
    assert [r.name for r in config.resources] == ["database", "billing-app"]
    assert config.node("alpha").on("b").interface == "eth1"


def test_defaults_when_timing_is_left_out() -> None:
    config = parse(SIM_CONFIG)
    assert (config.timing.interval, config.timing.misses, config.timing.heartbeat) == (
        0.1,
        3,
        0.05,
    )
    assert config.preferred == "alpha"
    assert config.timing.echo_timeout == 0.02


def test_the_echo_timeout_defaults_to_at_most_half_an_interval() -> None:
    config = parse(
        SIM_CONFIG.replace("[vip]", '[timing]\ninterval = "30ms"\nheartbeat = "10ms"\n\n[vip]')
    )
    assert config.timing.echo_timeout == pytest.approx(0.015)


def test_the_calm_heartbeat_defaults_to_twice_the_heartbeat_within_the_interval() -> None:
    assert parse(SIM_CONFIG).timing.calm_heartbeat == pytest.approx(0.1)
    slow = parse(SIM_CONFIG.replace("[vip]", '[timing]\nheartbeat = "80ms"\n\n[vip]'))
    assert slow.timing.calm_heartbeat == pytest.approx(0.1)  # never beyond the interval
    found = problems(SIM_CONFIG.replace("[vip]", '[timing]\ncalm_heartbeat = "20ms"\n\n[vip]'))
    assert found == [
        "timing.calm_heartbeat = '20ms': must lie between timing.heartbeat and timing.interval"
    ]


def test_an_echo_timeout_as_long_as_the_interval_is_refused() -> None:
    found = problems(SIM_CONFIG.replace("[vip]", '[timing]\necho_timeout = "100ms"\n\n[vip]'))
    assert found == [
        "timing.echo_timeout = '100ms': must be shorter than timing.interval "
        "(a reply is awaited before the next echo)"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("100ms", 0.1), ("1s", 1.0), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0)]
)
def test_durations_carry_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["100", "1 sec", "-1s", "", "ms"])
def test_durations_without_a_unit_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_malformed_toml_names_the_line() -> None:
    found = problems("[cluster\nname = 1")
    assert len(found) == 1 and "not valid TOML" in found[0] and "line 1" in found[0]


def test_unknown_keys_are_named_with_what_is_allowed() -> None:
    found = problems(SIM_CONFIG.replace("[vip]", "[vip]\ngarp_cont = 3"))
    assert found == [
        "vip.garp_cont: unknown key; allowed here: address, garp_count, garp_interval, "
        "garp_refresh, interface"
    ]


def test_a_wrong_duration_names_key_value_and_fix() -> None:
    found = problems(SIM_CONFIG.replace("[vip]", '[timing]\ninterval = "100"\n\n[vip]'))
    assert found == [
        'timing.interval = \'100\': must be a duration with a unit, like "100ms", "2s", "5m"'
    ]


def test_a_missing_node_is_reported() -> None:
    text = (
        SIM_CONFIG.split("[nodes.beta]")[0]
        + SIM_CONFIG.split("[nodes.beta]")[1]
        .split("[[resources]]", 1)[0]
        .replace("a = {", "# a")
        .replace("b = {", "# b")
        + "[[resources]]"
        + SIM_CONFIG.split("[[resources]]", 1)[1]
    )
    assert any(p.startswith("nodes: need 2 to 8 tables (1 given)") for p in problems(text))


def test_a_vip_outside_every_network_is_refused() -> None:
    found = problems(SIM_CONFIG.replace('address = "10.231.1.50/24"', 'address = "192.0.2.5/24"'))
    assert found == [
        "vip.address = '192.0.2.5/24': outside every configured network (10.231.1.0/24, "
        "10.231.2.0/24); pick a free address in one of them"
    ]


def test_the_same_address_twice_is_refused() -> None:
    text = SIM_CONFIG.replace('address = "10.231.1.12"', 'address = "10.231.1.11"')
    assert problems(text) == [
        "nodes.beta.a.address = '10.231.1.11': already used by nodes.alpha.a.address"
    ]


def test_two_networks_on_one_interface_are_refused() -> None:
    text = SIM_CONFIG.replace(
        'b = { interface = "eth1", address = "10.231.2.11" }',
        'b = { interface = "eth0", address = "10.231.2.11" }',
    )
    assert problems(text) == [
        "nodes.alpha: both networks use interface eth0; each network needs its own interface "
        "(one cable to each switch)"
    ]


def test_a_heartbeat_slower_than_the_probe_interval_is_refused() -> None:
    found = problems(SIM_CONFIG.replace("[vip]", '[timing]\nheartbeat = "1s"\n\n[vip]'))
    assert found == ["timing.heartbeat = '1s': must not be longer than timing.interval"]


def test_every_problem_is_reported_at_once() -> None:
    text = SIM_CONFIG.replace('name = "sim"', 'name = "a b"').replace(
        'kind = "systemd"', 'kind = "x"', 1
    )
    assert len(problems(text)) == 2


def test_pick_node_by_hostname_or_flag() -> None:
    config = parse(SIM_CONFIG)
    assert pick_node(config, None, "beta.example.net") == "beta"
    assert pick_node(config, "alpha", "whatever") == "alpha"
    with pytest.raises(ConfigError, match="pass --node NAME"):
        pick_node(config, None, "gamma")


def test_node_names_that_are_fqdns_match_the_full_host_name() -> None:
    """heartbeat names nodes after `uname -n`, often an FQDN (import-heartbeat keeps it)."""
    text = SIM_CONFIG.replace("[nodes.alpha]", '[nodes."alpha.example.net"]')
    text = text.replace('preferred = "alpha"', 'preferred = "alpha.example.net"')
    config = parse(text)
    assert pick_node(config, None, "alpha.example.net") == "alpha.example.net"
    # an operator who typed the FQDN on a host that calls itself "alpha" is told so
    with pytest.raises(ConfigError) as caught:
        pick_node(config, None, "alpha")
    assert caught.value.problems == [
        "this host's name is 'alpha', and the config names 'alpha.example.net': not the "
        "same name, so not taken for this host. Name the node as `uname -n` says "
        "([nodes.alpha] on every node) or pass --node alpha.example.net"
    ]
    with pytest.raises(ConfigError, match="name the node after `uname -n`"):
        pick_node(config, None, "gamma")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mosqit_failover.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_config_exits_zero_on_a_good_file(tmp_path: Path) -> None:
    # a copy: check-config refuses a group-writable file, as a checkout made with umask 002 has
    path = tmp_path / "pair.toml"
    path.write_text(EXAMPLE.read_text())
    path.chmod(0o644)
    result = run_cli("check-config", str(path))
    assert result.returncode == 0
    assert "OK: cluster billing, nodes alpha, beta" in result.stdout


def test_check_config_takes_config_as_the_other_commands_do(tmp_path: Path) -> None:
    path = tmp_path / "pair.toml"
    path.write_text(EXAMPLE.read_text())
    path.chmod(0o644)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0 and "OK: cluster billing" in result.stdout, result.stderr
    both = run_cli("check-config", "/etc/other.toml", "--config", str(path))
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert "two config files given (/etc/other.toml and --config" in both.stderr, both.stderr


def test_check_config_exits_non_zero_and_lists_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SIM_CONFIG.replace("misses", "x") + "\n[timing]\nmisses = 0\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert "timing.misses = 0: must be a whole number from 1 to 100" in result.stderr


def test_check_config_on_a_missing_file() -> None:
    result = run_cli("check-config", "/nonexistent/mosqit.toml")
    assert result.returncode == 2
    assert "file not found; pass --config PATH or create it" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the secret file must be root's")
@pytest.mark.parametrize(
    ("content", "mode", "said"),
    [
        (None, 0o600, "does not exist; fix: generate a fresh file"),
        ("1 abcd\n", 0o600, "line 1: secret has 4 hex digits, at least 32 are required"),
        (
            "1 " + "0123456789abcdef" * 4 + "\n",
            0o644,
            "has mode 0644; only 0600 or 0400 are allowed",
        ),
        ("", 0o600, "no key found (empty or only comments)"),
    ],
)
def test_check_config_reads_the_secret_file_as_the_agent_does(
    tmp_path: Path, content: str | None, mode: int, said: str
) -> None:
    """A helper's attack (2026-12-06): check-config said OK to secret files the agent
    refuses at its start. On a node it fails now; elsewhere it is a note."""
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_text(content)
        secret.chmod(mode)
    path = tmp_path / "pair.toml"
    path.write_text(EXAMPLE.read_text().replace("/etc/mosqit-failover/secret", str(secret)))
    on_a_node = run_cli("check-config", str(path), "--node", "alpha")
    assert on_a_node.returncode == 2 and "Traceback" not in on_a_node.stderr
    assert f"secret file {secret}: {said}" in on_a_node.stderr, on_a_node.stderr
    elsewhere = run_cli("check-config", str(path))  # this host is no node of the example
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert f"note: secret file {secret}: {said}" in elsewhere.stdout


def test_check_config_names_the_file_when_node_is_not_one_of_it() -> None:
    # the problem was labelled "node:", as if a file of that name were wrong
    result = run_cli("check-config", str(EXAMPLE), "--node", "gamma")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"{EXAMPLE}: 1 problem(s):\n  - --node 'gamma' is not a node of this config "
        "(alpha, beta): pass one of them\n"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the secret file must be root's")
def test_check_config_names_the_keys_of_a_good_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("2 " + "0123456789abcdef" * 4 + "\n1 " + "fedcba9876543210" * 4 + "\n")
    secret.chmod(0o600)
    path = tmp_path / "pair.toml"
    path.write_text(EXAMPLE.read_text().replace("/etc/mosqit-failover/secret", str(secret)))
    result = run_cli("check-config", str(path), "--node", "alpha")
    assert result.returncode == 0, result.stderr
    assert f"secret file {secret}: key(s) 2, 1, signing with 2" in result.stdout


def test_check_config_notes_a_network_without_a_switch_and_too_few_misses(
    tmp_path: Path,
) -> None:
    """Accepted, but the operator hears the price and the fix."""
    text = EXAMPLE.read_text()
    assert text.count('switch = "') == 2
    lines = [ln for ln in text.splitlines() if not ln.startswith("switch = ")]
    text = "\n".join(lines).replace("misses = 3 ", "misses = 1 ")
    path = tmp_path / "pair.toml"
    path.write_text(text)
    path.chmod(0o644)
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    notes = [ln for ln in result.stdout.splitlines() if ln.startswith("note: ")]
    assert notes[:3] == [
        "note: networks.a has no switch: its uplink counts as healthy on carrier alone, so a "
        "dead switch, or a cut behind it with the carrier up, goes unseen and a node keeps "
        "the VIP on it. Set networks.a.switch to an address on that network that answers "
        "ping (the switch's management address, or the gateway)",
        "note: networks.b has no switch: its uplink counts as healthy on carrier alone, so a "
        "dead switch, or a cut behind it with the carrier up, goes unseen and a node keeps "
        "the VIP on it. Set networks.b.switch to an address on that network that answers "
        "ping (the switch's management address, or the gateway)",
        "note: timing.misses = 1: fewer than 3 echo misses in a row on every network decide "
        "that a silent peer is dead, so under loss more false failovers; 3 is the default "
        "(the fast profile's 2 goes with its 3 ms heartbeats under loss: docs/timing.md)",
    ]


def test_check_config_has_no_note_for_the_example_or_the_fast_profile(tmp_path: Path) -> None:
    from mosqit_failover.config import advice

    assert advice(parse(EXAMPLE.read_text())) == []
    assert "[timing]" not in SIM_CONFIG
    assert advice(parse(SIM_CONFIG + '\n[timing]\nprofile = "fast"\n')) == []
    # the profile's own value, set again by hand: still no note (a helper's finding)
    assert advice(parse(SIM_CONFIG + '\n[timing]\nprofile = "fast"\nmisses = 2\n')) == []
    assert len(advice(parse(SIM_CONFIG + '\n[timing]\nprofile = "fast"\nmisses = 1\n'))) == 1
