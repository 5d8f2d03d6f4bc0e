"""The record of the VIP this agent added (effects/vip_record.py), which lets the agent
of a new config take the old VIP away (a helper's finding: both nodes held it)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import ClassVar

import pytest

from mosqit_failover import config as configuration
from mosqit_failover import daemon
from mosqit_failover.authkeys import generate_secret_text, parse_secret_text
from mosqit_failover.daemon import Agent
from mosqit_failover.effects import EffectError
from mosqit_failover.effects.vip_record import VipRecord
from mosqit_failover.journal import DecisionLog
from tests.unit.loopback_pair import LOOPBACK_PAIR

VIP = ipaddress.IPv4Interface("10.0.1.50/24")


def test_written_then_read_back_and_not_rewritten_when_unchanged(tmp_path: Path) -> None:
    record = VipRecord(tmp_path / "state")
    assert record.read() is None
    record.write(VIP, "eth0")
    assert record.read() == (VIP, "eth0")
    before = record.path.stat().st_mtime_ns, record.path.stat().st_ino
    record.write(VIP, "eth0")
    assert (record.path.stat().st_mtime_ns, record.path.stat().st_ino) == before
    record.write(ipaddress.IPv4Interface("10.0.1.51/24"), "eth0")
    assert record.read() == (ipaddress.IPv4Interface("10.0.1.51/24"), "eth0")
    assert sorted(p.name for p in record.path.parent.iterdir()) == ["vip"]


@pytest.mark.parametrize("text", ["", "10.0.1.50/24\n", "garbage eth0\n", "a b c\n", "\xff"])
def test_a_garbled_record_reads_as_none_and_nothing_is_taken_away(
    tmp_path: Path, text: str
) -> None:
    record = VipRecord(tmp_path)
    record.path.write_bytes(text.encode("latin-1"))
    assert record.read() is None


def test_a_record_that_cannot_be_written_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    with pytest.raises(EffectError, match=r"cannot record the VIP in .*/file/vip"):
        VipRecord(tmp_path / "file").write(VIP, "eth0")


# ---- what the agent takes away at its start (daemon.Agent._drop_old_vip) -------------


class NoVip:
    """Stands for effects.vip.Vip: says what it was asked, touches no interface."""

    asked: ClassVar[list[str]] = []

    def __init__(self, address: ipaddress.IPv4Interface, ifname: str) -> None:
        self.address, self.ifname = address, ifname

    def held(self) -> bool:
        NoVip.asked.append(f"held {self.address} {self.ifname}")
        return True

    async def release(self) -> None:
        NoVip.asked.append(f"release {self.address} {self.ifname}")


def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Agent, list[str]]:
    text = LOOPBACK_PAIR.format(tmp=tmp_path).replace('"127.0.', '"10.9.')
    built = Agent(
        configuration.parse(text), "alpha", parse_secret_text(generate_secret_text()),
        DecisionLog(False),
    )  # fmt: skip
    monkeypatch.setattr(daemon, "Vip", NoVip)
    NoVip.asked = []
    return built, NoVip.asked


@pytest.mark.parametrize(
    "record",
    [
        "127.0.0.1/8 lo",  # loopback
        "10.9.1.12/24 eth0",  # the peer's address
        "10.9.2.11/24 eth1",  # this node's own
        "10.9.1.77/32 wlan0",  # an interface off the cluster's networks
        "10.9.1.50/24 eth0",  # the VIP of the config itself
    ],
)
def test_what_the_agent_never_takes_away_whatever_the_record_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: str
) -> None:
    """A record written by hand took 127.0.0.1, an operator's address and the peer's,
    and again at every start (a helper's finding)."""
    built, asked = agent(tmp_path, monkeypatch)
    built.vip_record.path.parent.mkdir(parents=True)
    built.vip_record.path.write_text(record + "\n")
    asyncio.run(built._drop_old_vip())
    assert asked == []
    assert built.vip_record.path.exists()


def test_an_old_vip_is_taken_away_once_and_the_record_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built, asked = agent(tmp_path, monkeypatch)
    built.vip_record.write(ipaddress.IPv4Interface("10.9.1.49/24"), "eth0")
    asyncio.run(built._drop_old_vip())
    assert asked == ["held 10.9.1.49/24 eth0", "release 10.9.1.49/24 eth0"]
    assert not built.vip_record.path.exists()
    asyncio.run(built._drop_old_vip())
    assert len(asked) == 2
