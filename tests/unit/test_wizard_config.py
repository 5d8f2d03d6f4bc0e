"""The wizards' pure parts: config rendering and editing, facts, answers."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from mosqit_failover import config as configuration
from mosqit_failover.wizards import checks, configedit, deploy
from mosqit_failover.wizards.prompts import AnswerError, Asker, load_answers
from mosqit_failover.wizards.ssh import Session

IP_ADDR = [
    {"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "flags": ["UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "10.0.1.11", "prefixlen": 24},
                   {"family": "inet", "local": "10.0.1.50", "prefixlen": 24, "secondary": True}]},
    {"ifname": "eth1", "flags": ["NO-CARRIER", "UP"],
     "addr_info": [{"family": "inet", "local": "10.0.2.11", "prefixlen": 24}]},
]  # fmt: skip


def facts(host: str, last: int, nets: int = 2) -> checks.Facts:
    data = json.loads(json.dumps(IP_ADDR[: 1 + nets]).replace(".11", f".{last}"))
    text = f"{host}\n{json.dumps(data)}\n/usr/local/bin/mosqit-failover\n#!/venv/bin/python\n"
    return checks.parse_facts(text)


def pair_networks() -> list[checks.Network]:
    nets = checks.discover({"alpha": facts("alpha", 11), "beta": facts("beta", 12)})
    nets[0].switch = ipaddress.IPv4Address("10.0.1.1")
    nets[1].switch = ipaddress.IPv4Address("10.0.2.1")
    return nets


def test_parse_facts_reads_carrier_primary_addresses_and_interpreter() -> None:
    f = facts("alpha.example.org", 11)
    assert f.hostname == "alpha" and f.python == "/venv/bin/python"
    assert f.interfaces["eth0"].carrier and not f.interfaces["eth1"].carrier
    assert f.interfaces["eth0"].addresses == (ipaddress.IPv4Interface("10.0.1.11/24"),)


def test_discover_names_the_node_without_a_network() -> None:
    with pytest.raises(checks.CheckError, match=r"beta has no address in 10.0.2.0/24.*eth1"):
        checks.discover({"alpha": facts("alpha", 11), "beta": facts("beta", 12, nets=1)})


def test_discover_puts_the_login_network_first() -> None:
    nets = checks.discover(
        {"alpha": facts("alpha", 11), "beta": facts("beta", 12)},
        ipaddress.IPv4Address("10.0.2.11"),
    )
    assert [str(n.subnet) for n in nets] == ["10.0.2.0/24", "10.0.1.0/24"]
    assert nets[0].ports["beta"].interface == "eth1"


def with_podman_bridge(f: checks.Facts) -> checks.Facts:
    """``f`` with podman's default bridge, 10.88.0.1/16: the same address on every node."""
    bridge = checks.parse_facts(
        'x\n[{"ifname": "cni-podman0", "flags": ["UP", "LOWER_UP"], "addr_info": [{"family": '
        '"inet", "local": "10.88.0.1", "prefixlen": 16}]}]\n\n\n'
    ).interfaces
    return dataclasses.replace(f, interfaces={**f.interfaces, **bridge})


def test_a_bridge_of_each_node_s_own_is_no_network_between_them() -> None:
    """A helper's finding: 10.88.0.0/16 (the same 10.88.0.1 on both) became network B,
    and each node's ping of "the other" answered from itself."""
    both = {"alpha": facts("alpha", 11), "beta": facts("beta", 12)}
    nets = checks.discover({n: with_podman_bridge(f) for n, f in both.items()})
    assert [str(n.subnet) for n in nets] == ["10.0.1.0/24", "10.0.2.0/24"]
    with pytest.raises(checks.CheckError, match=r"beta has no address in 10.0.2.0/24"):
        checks.discover(
            {
                "alpha": with_podman_bridge(facts("alpha", 11)),
                "beta": with_podman_bridge(facts("beta", 12, nets=1)),
            }
        )


def base() -> str:
    vip = ipaddress.IPv4Interface("10.0.1.50/24")
    return configedit.render_config("shop", pair_networks(), vip, "eth0", ["alpha", "beta"])


def test_rendered_config_is_valid() -> None:
    cfg = configuration.parse(base())
    assert cfg.cluster == "shop" and cfg.preferred == "alpha"
    assert cfg.node("beta").on("b").address == ipaddress.IPv4Address("10.0.2.12")


def test_add_move_remove_keep_comments_and_validate() -> None:
    text = base() + "\n# keep me\n"
    text = configedit.append(text, "resources", {"name": "db", "kind": "systemd", "unit": "db"})
    text = configedit.append(
        text, "resources",
        {"name": "app", "kind": "script", "start": "a on", "stop": "a off", "status": "a st"},
    )  # fmt: skip
    text = configedit.append(text, "sync", {"path": "/srv/data", "excludes": ["*.tmp", 'a"b']})
    cfg = configuration.parse(text)
    assert [r.name for r in cfg.resources] == ["db", "app"]
    assert cfg.sync[0].excludes == ("*.tmp", 'a"b')
    moved = configedit.move(text, "app", 1)
    assert [r.name for r in configuration.parse(moved).resources] == ["app", "db"]
    assert "# keep me" in moved
    gone = configedit.remove(moved, "sync", "/srv/data/")
    gone = configedit.remove(gone, "resources", "db")
    cfg = configuration.parse(gone)
    assert [r.name for r in cfg.resources] == ["app"] and cfg.sync == ()
    assert "# keep me" in gone


def test_edits_that_break_the_config_are_refused() -> None:
    text = configedit.append(base(), "resources", {"name": "db", "kind": "systemd", "unit": "x"})
    with pytest.raises(configuration.ConfigError, match="used twice"):
        configedit.append(text, "resources", {"name": "db", "kind": "systemd", "unit": "y"})
    with pytest.raises(configedit.EditError, match="no resource 'nope'"):
        configedit.move(text, "nope", 1)
    with pytest.raises(configedit.EditError, match="no synced dir"):
        configedit.remove(text, "sync", "/srv")


def test_given_answers_are_checked_and_missing_ones_named() -> None:
    asker = Asker({"port": "99999"}, interactive=False)
    with pytest.raises(AnswerError, match="port = '99999'"):
        asker.ask("port", "ssh port", lambda t: int(t) if int(t) < 65536 else int("x"))
    with pytest.raises(AnswerError, match=r"add vip = \.\.\. to the answers file or pass --vip"):
        asker.ask("vip", "VIP", str)
    assert asker.ask("user", "Log in as", str, "root") == "root"


def test_interactive_asks_again_until_valid_and_eof_is_interrupt() -> None:
    replies = iter(["", "abc", "22"])
    asker = Asker({}, interactive=True, read=lambda _p: next(replies))
    assert asker.ask("port", "ssh port", lambda t: int(t)) == 22

    def eof(_prompt: str) -> str:
        raise EOFError

    with pytest.raises(KeyboardInterrupt):
        Asker({}, interactive=True, read=eof).ask("x", "X", str)


def test_a_question_naming_what_a_node_said_is_asked_escaped() -> None:
    # input() on a terminal writes its prompt past sys.stdout (and its escaper)
    prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return "eth0"

    asker = Asker({}, interactive=True, read=read)
    asker.ask("vip_interface", "VIP interface (node11 has e\x1b]0;x\x07)", str)
    assert prompts == ["VIP interface (node11 has e\\x1b]0;x\\x07): "]


def test_answers_file_with_password_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "answers.toml"
    path.write_text('node1 = "10.0.1.11"\npassword = "x"\n')
    path.chmod(0o644)
    with pytest.raises(AnswerError, match="chmod 600"):
        load_answers(path)
    path.chmod(0o600)
    assert load_answers(path)["node1"] == "10.0.1.11"


def test_host_keys_new_accepted_then_changed_refused_unless_accepted(tmp_path: Path) -> None:
    import paramiko

    from mosqit_failover.wizards.ssh import KnownHosts, SshError, _check_host_key

    known = KnownHosts(tmp_path / "kh")
    first, second = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    seen: list[str | None] = []

    def yes(_h: str, _now: str, old: str | None) -> bool:
        seen.append(old)
        return True

    _check_host_key("n1", "10.0.1.11", 22, first, known, yes)
    assert (tmp_path / "kh").stat().st_mode & 0o777 == 0o600
    again = KnownHosts(tmp_path / "kh")
    _check_host_key("n1", "10.0.1.11", 22, first, again, lambda *_: False)  # known: not asked
    with pytest.raises(SshError, match="CHANGED"):
        _check_host_key("n1", "10.0.1.11", 22, second, again, lambda *_: False)
    _check_host_key("n1", "10.0.1.11", 22, second, again, yes)
    assert seen[-1] is not None and seen[-1].startswith("SHA256:")


# ---- a node that answers what no Debian node would (a helper's attack, 2026-12-06) ----


class Answering:
    """A session whose every command prints `out` and exits 0."""

    label = "node11"

    def __init__(self, out: str) -> None:
        self.out = out

    def run(self, _command: str, timeout: float = 0.0, check: bool = False) -> SimpleNamespace:
        return SimpleNamespace(status=0, out=self.out, err="")


@pytest.mark.parametrize(
    "listed",
    [
        "not json",
        '[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "x", "prefixlen": 24}]}]',
        '{"ifname": "eth0"}',
        '[{"addr_info": []}]',
        "[1, 2]",
        "[" * 100_000,  # nested too deeply for json
    ],
)
def test_an_ip_answer_iproute2_would_not_give_is_a_check_error_naming_the_node(
    listed: str,
) -> None:
    session = Answering(f"node11\n{listed}\n/usr/bin/mosqit-failover\n#!/usr/bin/python3\n")
    with pytest.raises(checks.CheckError) as caught:
        checks.gather(cast(Session, session))
    assert str(caught.value).startswith("node11: the node's `ip -j addr show` answer is not")
    assert "is `ip` iproute2's" in str(caught.value)


@pytest.mark.parametrize(
    "out", ["[]", '"ACTIVE"', '{"role": 3}', "{}", "null", "not json", "[" * 100_000]
)
def test_a_status_that_is_not_the_agents_counts_as_no_status(out: str) -> None:
    assert deploy.node_status(cast(Session, Answering(out))) is None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'actions = "add"\n', "actions must be tables, one per action: [[actions]] then"),
        (b'[[actions]]\naction = "frobnicate"\n', "action 1 is 'frobnicate': use one of add"),
        (b'[[actions]]\nkind = "systemd"\n', "action 1 is None: use one of add, remove, move"),
        (b'\xef\xbb\xbfnode1 = "10.0.1.11"\n', "begins with a byte-order mark; save it as UTF-8"),
        (b'# caf\xe9\nnode1 = "10.0.1.11"\n', "is not UTF-8 text (byte 0xe9 on line 1)"),
    ],
)
def test_an_answers_file_is_checked_whole_before_anything_changes(
    tmp_path: Path, content: bytes, says: str
) -> None:
    """A helper's attack: a bad action was found after the pair was deployed, a string
    for actions and a Latin-1 byte were tracebacks, a BOM a bare TOML error."""
    path = tmp_path / "answers.toml"
    path.write_bytes(content)
    with pytest.raises(AnswerError) as caught:
        load_answers(path)
    assert says in str(caught.value), caught.value


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (
            "10.231.1.012",
            "10.231.1.012: a leading zero reads as octal (another address); write 10.231.1.12",
        ),
        ("10.231.1.300", "10.231.1.300 is not an IPv4 address: a part is above 255"),
        ("10.231.1.12:22", "give the address alone; the ssh port goes to --port (10.231.1.12:22)"),
    ],
)
def test_a_node_address_typed_wrong_is_named(given: str, says: str) -> None:
    """A helper's attack: 10.231.1.012 reached 10.231.1.10 ("No route to host"), and
    host:22 became "[10.231.1.12:22]:22"."""
    from mosqit_failover.wizards.deploy import check_host

    with pytest.raises(ValueError) as caught:
        check_host(given)
    assert str(caught.value) == says
    assert check_host(" 10.231.1.12 ") == "10.231.1.12"
    assert check_host("alpha.example.net") == "alpha.example.net"
