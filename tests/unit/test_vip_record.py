"""The record of the VIP this agent added (effects/vip_record.py), which lets the agent
of a new config take the old VIP away (a helper's finding: both nodes held it)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mosqit_failover.effects import EffectError
from mosqit_failover.effects.vip_record import VipRecord

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
