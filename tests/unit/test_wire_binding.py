"""A datagram's MAC covers the two addresses it goes between (wire.binding).

A helper's attack: two clusters cloned from one template (the same cluster name,
node names and secret, other addresses) accepted each other's datagrams once an
attacker forwarded them with forged source addresses, and one pair ended with two
VIP holders until an agent restarted. Agents from before the binding sign the
bytes alone: they are still heard, and answered so (a rolling upgrade)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from mosqit_failover import peerlink
from mosqit_failover.authkeys import Key, Keyring
from mosqit_failover.events import PeerView, Role
from mosqit_failover.wire import NO_ACK, Reason, Receiver, Rejected, Sender, binding
from tests.unit.test_peerlink import (
    ALPHA,
    ALPHA_VIEW,
    BETA_VIEW,
    PEER_ADDRESSES,
    Peer,
    form,
    loopback,
    run,
    trio,
    trio_view,
)

RING = Keyring((Key(1, bytes(range(32))),))
NOW = 1_700_000_000.0
# one template, two sites: only the addresses differ
SITE_1 = {"alpha": "10.1.0.11", "beta": "10.1.0.12"}
SITE_2 = {"alpha": "10.2.0.11", "beta": "10.2.0.12"}


def _pair(site: dict[str, str]) -> tuple[Sender, Receiver, bytes, bytes]:
    """beta's Sender, alpha's Receiver, and the bindings of beta -> alpha, alpha -> beta."""
    beta = Sender("billing", "beta", RING)
    alpha = Receiver("billing", "alpha", "beta", RING, boot_id=b"A" * 16)
    return (
        beta,
        alpha,
        binding(site["beta"], site["alpha"]),
        binding(site["alpha"], site["beta"]),
    )


def test_a_datagram_of_another_site_with_the_same_secret_is_a_bad_mac() -> None:
    beta_1, alpha_1, into_alpha_1, _ = _pair(SITE_1)
    _, alpha_2, into_alpha_2, _ = _pair(SITE_2)
    beta_1.ack = alpha_1.boot_id
    data = beta_1.encode(BETA_VIEW, NOW, bound=into_alpha_1)
    spliced = alpha_2.decode(data, NOW, expected_sender="beta", bound=into_alpha_2)
    assert isinstance(spliced, Rejected) and spliced.reason is Reason.BAD_MAC
    assert alpha_2.ack_for("beta") == NO_ACK  # nothing learned: it cannot be acked
    assert alpha_1.decode(data, NOW, expected_sender="beta", bound=into_alpha_1) == BETA_VIEW


def test_the_binding_is_per_direction_and_network() -> None:
    beta, alpha, into_alpha, out_of_alpha = _pair(SITE_1)
    beta.ack = alpha.boot_id
    data = beta.encode(BETA_VIEW, NOW, bound=into_alpha)
    other_network = binding("10.1.1.12", "10.1.1.11")
    for wrong in (out_of_alpha, other_network):
        result = alpha.decode(data, NOW, expected_sender="beta", bound=wrong)
        assert isinstance(result, Rejected) and result.reason is Reason.BAD_MAC


def test_an_agent_from_before_the_binding_is_heard_and_answered_so() -> None:
    beta, alpha, into_alpha, _ = _pair(SITE_1)
    beta.ack = alpha.boot_id
    old = beta.encode(BETA_VIEW, NOW)  # the MAC over the bytes alone
    assert alpha.decode(old, NOW, expected_sender="beta", bound=into_alpha) == BETA_VIEW
    assert alpha.unbound("beta")
    upgraded = beta.encode(BETA_VIEW, NOW + 1, bound=into_alpha)
    assert alpha.decode(upgraded, NOW + 1, expected_sender="beta", bound=into_alpha) == BETA_VIEW
    assert not alpha.unbound("beta")
    # an older unbound datagram, replayed, does not move it back
    assert isinstance(
        alpha.decode(old, NOW + 2, expected_sender="beta", bound=into_alpha), Rejected
    )
    assert not alpha.unbound("beta")


def test_once_a_peer_signed_its_addresses_a_datagram_without_them_is_refused() -> None:
    """Only another cluster's agents from before the binding still sign without it: a
    node heard bound since this agent started takes none such (or a cluster upgraded
    could still be spliced with one that is not)."""
    beta, alpha, into_alpha, _ = _pair(SITE_1)
    beta.ack = alpha.boot_id
    assert (
        alpha.decode(
            beta.encode(BETA_VIEW, NOW, bound=into_alpha),
            NOW,
            expected_sender="beta",
            bound=into_alpha,
        )
        == BETA_VIEW
    )
    other_site_old = Sender("billing", "beta", RING)  # the same template, not upgraded
    other_site_old.ack = alpha.boot_id
    late = alpha.decode(
        other_site_old.encode(BETA_VIEW, NOW + 1), NOW + 1, expected_sender="beta", bound=into_alpha
    )
    assert late == Rejected(Reason.BAD_MAC, "key id 1, without the addresses")
    assert not alpha.unbound("beta")


def test_a_bound_datagram_never_passes_as_an_unbound_one() -> None:
    beta, alpha, into_alpha, _ = _pair(SITE_1)
    beta.ack = alpha.boot_id
    data = beta.encode(BETA_VIEW, NOW, bound=into_alpha)
    result = alpha.decode(data, NOW, expected_sender="beta")  # no binding known
    assert isinstance(result, Rejected) and result.reason is Reason.BAD_MAC


def _plain(link_boot: bytes) -> Receiver:
    """A receiver at beta that knows nothing of bindings (only the bytes' MAC)."""
    return Receiver("billing", "beta", "alpha", RING, boot_id=link_boot)


def test_the_link_signs_bound_for_a_bound_peer() -> None:
    async def scenario() -> None:
        async with loopback() as h:
            beta = Peer()
            h.send(beta.send(time.time(), "a"), "a")
            await h.settle()
            assert not h.peerlink.receiver.unbound("beta")
            h.peerlink.send(ALPHA_VIEW, "a")
            data = await h.heard_by_peer("a")
            assert beta.hear(data, "a") == ALPHA_VIEW
            plain = _plain(beta.tx.boot_id)
            result = plain.decode(data, time.time())  # the bytes alone do not check out
            assert isinstance(result, Rejected) and result.reason is Reason.BAD_MAC

    run(scenario)


def test_the_link_signs_plain_for_an_agent_from_before_the_binding() -> None:
    async def scenario() -> None:
        async with loopback() as h:
            old = Peer()
            await form(h, old)  # it signs the bytes alone
            assert h.peerlink.receiver.unbound("beta")
            h.peerlink.send(ALPHA_VIEW, "a")
            plain = _plain(old.tx.boot_id)
            plain.decode(await h.heard_by_peer("a"), time.time())  # learns alpha's start
            h.peerlink.send(ALPHA_VIEW, "a")
            assert plain.decode(await h.heard_by_peer("a"), time.time()) == ALPHA_VIEW

    run(scenario)


def test_the_link_drops_a_datagram_bound_to_another_sites_addresses() -> None:
    async def scenario() -> None:
        async with loopback() as h:
            beta = Peer()
            await form(h, beta)
            delivered = len(h.delivered)
            elsewhere = binding("10.2.0.12", "10.2.0.11")  # site 2's beta -> alpha
            beta.tx.ack = beta.rx.ack_for_peer
            h.send(
                beta.tx.encode(
                    dataclasses.replace(BETA_VIEW, epoch=9), time.time(), bound=elsewhere
                )
            )
            await h.settle()
            assert len(h.delivered) == delivered
            assert h.reported[-1][:2] == ("a", "bad-mac")

    run(scenario)


def test_binding_names_the_configured_addresses() -> None:
    assert binding(PEER_ADDRESSES["a"], ALPHA["a"]).endswith(bytes([127, 0, 2, 12, 127, 0, 2, 11]))
    assert isinstance(ALPHA_VIEW, PeerView) and ALPHA_VIEW.role is Role.ACTIVE


def test_two_upgraded_agents_that_took_each_other_for_old_ones_end_up_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A helper's finding: alpha answered an old beta without the binding; beta, upgraded
    and restarted, read alpha's unbound datagram before alpha read any bound one of beta
    (a flood filled alpha's socket meanwhile), so each signed unbound for the other for
    good, and a cloned cluster's old agents could be spliced in. A bound copy a second
    beside the unbound datagrams ends it."""
    monkeypatch.setattr(peerlink, "BOUND_COPY_EVERY", 0.05)

    async def scenario() -> None:
        async with trio() as t:
            alpha, beta = t.links["alpha"], t.links["beta"]
            for _ in range(2):  # both hear each other once: the acks are learned
                for node in ("alpha", "beta"):
                    t.links[node].send(trio_view(node))
                await asyncio.sleep(0.05)
            # the state the race left: each takes the other for an agent before the binding
            alpha.receiver._state["beta"].unbound = True
            beta.receiver._state["alpha"].unbound = True
            for _ in range(20):
                for node in ("alpha", "beta"):
                    t.links[node].send(trio_view(node))
                await asyncio.sleep(0.03)
            assert not alpha.receiver.unbound("beta") and not beta.receiver.unbound("alpha")
            assert alpha.receiver._state["beta"].ever_bound
            assert beta.receiver._state["alpha"].ever_bound

    run(scenario)
