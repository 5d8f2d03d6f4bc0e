"""`mosqit-failover status` as text with several peers (multi-server mode)."""

from __future__ import annotations

from typing import Any

import pytest

from mosqit_failover.status_watch import format_status


def peer(name: str, role: str, epoch: int, heard: float | None, rank: int) -> dict[str, Any]:
    return {
        "node": name,
        "role": role,
        "epoch": epoch,
        "mode": "AUTO",
        "uplinks": {"a": True, "b": True},
        "heard_ago": heard,
        "heard_ago_by_network": {"a": heard, "b": heard},
        "echo_misses": {"a": 0, "b": 0},
        "unauthenticated": None,
        "fence": None,
        "data_epoch": epoch,
        "rank": rank,
    }


def snapshot(peers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cluster": "billing",
        "vip": "192.0.2.50/24",
        "node": "alpha",
        "role": "ACTIVE",
        "mode": "AUTO",
        "epoch": 9,
        "candidate": True,
        "uplinks": {"a": "healthy", "b": "healthy"},
        "peer": peers[0],
        "peers": {p["node"]: p for p in peers},
        "sync": {"dirs": []},
        "peer_link": {"accepted": 5, "dropped": {}},
        "recent_decisions": [],
    }


def test_every_peer_gets_its_lines_with_its_data_and_place() -> None:
    text = format_status(
        snapshot([peer("beta", "STANDBY", 9, 0.02, 1), peer("gamma", "STANDBY", 7, None, 2)])
    )
    assert (
        "peer       beta: STANDBY (AUTO), epoch 9, heard 20 ms ago, data of epoch 9, "
        "no. 2 in the order" in text
    )
    assert "peer       gamma: STANDBY (AUTO), epoch 7, never heard, data of epoch 7" in text
    synchronous = peer("beta", "STANDBY", 2, 0.02, 1) | {"data_epoch": 9, "commit": 4_000_017}
    assert "data of epoch 9, synchronous commit 4000017, no. 2 in the order" in format_status(
        snapshot([synchronous, peer("gamma", "STANDBY", 7, None, 2)])
    )
    assert text.count("  network a: last message") == 2


def test_a_pair_shows_no_takeover_place() -> None:
    text = format_status(snapshot([peer("beta", "STANDBY", 9, 0.02, 1)]))
    assert "peer       beta: STANDBY (AUTO), epoch 9, heard 20 ms ago\n" in text


def test_an_older_agent_without_peers_is_still_shown() -> None:
    old = snapshot([peer("beta", "STANDBY", 9, 0.02, 1)])
    del old["peers"]
    assert "peer       beta: STANDBY (AUTO), epoch 9, heard 20 ms ago\n" in format_status(old)


def test_the_recent_echo_loss_shows_beside_the_misses_where_there_is_any() -> None:
    lossy = peer("beta", "STANDBY", 9, 0.02, 1) | {
        "echo_misses": {"a": 4, "b": 0},
        "echo_loss": {"a": 0.48, "b": 0.0},
    }
    text = format_status(snapshot([lossy]))
    assert "network a: last message 20 ms ago, echo misses in a row 4 (recent echo loss 48%)" in (
        text
    )
    assert "network b: last message 20 ms ago, echo misses in a row 0, peer's uplink ok" in text


def test_a_network_whose_echo_is_filtered_says_so_beside_the_misses() -> None:
    filtered = peer("beta", "STANDBY", 9, 0.02, 1) | {
        "echo_misses": {"a": 0, "b": 57},
        "echo_blocked": ["b"],
    }
    text = format_status(snapshot([filtered]))
    assert (
        "network b: last message 20 ms ago, echo misses in a row 57 (ICMP echo filtered? its "
        "messages arrive), peer's uplink ok"
    ) in text
    assert "network a: last message 20 ms ago, echo misses in a row 0, peer's uplink ok" in text


@pytest.mark.parametrize("odd", [3, True, "ab", None, {"b": 1}])
def test_an_odd_echo_blocked_field_marks_no_network(odd: object) -> None:
    """A status from another version or a broken one: no network is called filtered."""
    text = format_status(snapshot([peer("beta", "STANDBY", 9, 0.02, 1) | {"echo_blocked": odd}]))
    assert "ICMP echo filtered?" not in text


def test_resource_failures_that_still_count_are_shown() -> None:
    status = snapshot([peer("beta", "STANDBY", 9, 0.02, 1)])
    assert "resource failures" not in format_status(status)
    status["resource_failures"] = {"app": 2, "db": 1}
    assert "resource failures that still count: app 2, db 1\n" in format_status(status)
