"""What the wire reuses between datagrams (the Sender's packed body, the Receiver's
parsed view) never changes what a datagram says or which ones are accepted."""

from __future__ import annotations

import dataclasses

import pytest

from mosqit_failover.events import Role
from mosqit_failover.wire import EncodeError, Reason, Receiver, Rejected, Sender
from tests.unit.test_wire_multi import (
    ALPHA_BOOT,
    BETA_BOOT,
    BETA_VIEW,
    FULL_VIEW,
    GAMMA_BOOT,
    NOW,
    RING,
    alpha,
    sender,
)


def test_every_view_change_reaches_the_receiver() -> None:
    tx, rx = sender("beta", BETA_BOOT), alpha()
    views = [BETA_VIEW, BETA_VIEW, FULL_VIEW, FULL_VIEW, BETA_VIEW]
    views.append(dataclasses.replace(BETA_VIEW, epoch=5))
    for i, view in enumerate(views):
        assert rx.decode(tx.encode(view, NOW + i / 10), NOW + i / 10) == view


def test_a_repeated_view_is_the_same_bytes_but_for_the_header_and_mac() -> None:
    tx = sender("beta", BETA_BOOT)
    one, two = tx.encode(BETA_VIEW, NOW), tx.encode(BETA_VIEW, NOW)
    fresh = sender("beta", BETA_BOOT).encode(BETA_VIEW, NOW)
    assert one == fresh  # the first encode of a view is what an unused sender makes
    assert one[:52] != two[:52] and one[52:-32] == two[52:-32]  # the header (seq) differs


def test_a_bad_view_is_refused_each_time_not_only_the_first() -> None:
    tx = sender("beta", BETA_BOOT)
    bad = dataclasses.replace(BETA_VIEW, epoch=-1)
    for _ in range(2):
        with pytest.raises(EncodeError, match="outside"):
            tx.encode(bad, NOW)
    assert tx.seq == 0  # nothing was sent
    with pytest.raises(EncodeError, match="this sender is"):
        tx.encode(dataclasses.replace(BETA_VIEW, node="gamma"), NOW)


def test_a_known_body_from_another_peers_address_is_still_refused() -> None:
    rx = alpha()
    tx = sender("beta", BETA_BOOT)
    assert rx.decode(tx.encode(BETA_VIEW, NOW), NOW, expected_sender="beta") == BETA_VIEW
    again = rx.decode(tx.encode(BETA_VIEW, NOW), NOW, expected_sender="gamma")
    assert isinstance(again, Rejected) and again.reason is Reason.UNKNOWN_SENDER
    assert "from the address of 'gamma'" in again.detail


def test_a_known_body_under_a_replayed_header_is_still_a_replay() -> None:
    rx = alpha()
    tx = sender("beta", BETA_BOOT)
    first = tx.encode(BETA_VIEW, NOW)
    assert rx.decode(first, NOW) == BETA_VIEW
    assert rx.decode(tx.encode(BETA_VIEW, NOW + 0.1), NOW + 0.1) == BETA_VIEW
    replay = rx.decode(first, NOW + 0.2)
    assert isinstance(replay, Rejected) and replay.reason is Reason.REPLAYED


def test_a_known_body_with_a_forged_mac_is_refused() -> None:
    rx = alpha()
    tx = sender("beta", BETA_BOOT)
    assert rx.decode(tx.encode(BETA_VIEW, NOW), NOW) == BETA_VIEW
    forged = bytearray(tx.encode(BETA_VIEW, NOW + 0.1))
    forged[-1] ^= 1
    result = rx.decode(bytes(forged), NOW + 0.1)
    assert isinstance(result, Rejected) and result.reason is Reason.BAD_MAC


def test_the_parsed_views_kept_stay_few_whatever_the_peers_send() -> None:
    rx = alpha()
    beta, gamma = sender("beta", BETA_BOOT), sender("gamma", GAMMA_BOOT)
    for epoch in range(1, 200):
        now = NOW + epoch / 100
        view = dataclasses.replace(BETA_VIEW, epoch=epoch)
        assert rx.decode(beta.encode(view, now), now) == view
        other = dataclasses.replace(view, node="gamma", role=Role.ACTIVE)
        assert rx.decode(gamma.encode(other, now), now) == other
        assert len(rx._parsed) <= 4  # two per peer at most


def test_a_receiver_of_another_cluster_never_takes_a_body_it_knows_from_this_one() -> None:
    tx = Sender("billing", "beta", RING, BETA_BOOT)
    tx.ack = ALPHA_BOOT
    other = Receiver("mail", "alpha", ("beta",), RING, boot_id=ALPHA_BOOT)
    for i in range(2):
        result = other.decode(tx.encode(BETA_VIEW, NOW + i), NOW + i)
        assert isinstance(result, Rejected) and result.reason is Reason.WRONG_CLUSTER
