"""The peer protocol for 2 to 8 nodes: version 3 fields, version 2 still decoded, the
version 4 commit, the bounds of the node lists, replay state per sender, and the ack per
destination."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct

import pytest

from mosqit_failover.authkeys import Key, Keyring
from mosqit_failover.events import EPOCH_MAX, PeerView, Role
from mosqit_failover.wire import (
    BOOT_ID_SIZE,
    MAC_SIZE,
    MAX_DATAGRAM,
    MAX_LISTED_NODES,
    MAX_NODE_NAME_BYTES,
    NO_ACK,
    EncodeError,
    Reason,
    Receiver,
    Rejected,
    Sender,
)

K1 = Key(1, bytes(range(32)))
RING = Keyring((K1,))
NOW = 1_700_000_000.0
ALPHA_BOOT = b"a" * BOOT_ID_SIZE  # the receiving agent (alpha) in most tests
BETA_BOOT = b"b" * BOOT_ID_SIZE
GAMMA_BOOT = b"g" * BOOT_ID_SIZE
OFF_ACK = 36
# data epoch 0, no heard, in_sync, successor, no order id
TAIL_OF_DEFAULTS = bytes(8) + b"\x00\x00\x00" + bytes(4)

BETA_VIEW = PeerView(
    node="beta",
    role=Role.STANDBY,
    epoch=4,
    uplinks=(("a", True), ("b", True)),
    candidate=True,
    yielding=False,
    maintenance=False,
    manual=False,
)
FULL_VIEW = dataclasses.replace(
    BETA_VIEW,
    role=Role.ACTIVE,
    epoch=9,
    data_epoch=9,
    heard=("alpha", "gamma"),
    in_sync=("gamma",),
    successor="gamma",
    order_id="0badcafe",
    yielding=True,
)


def sender(node: str, boot: bytes, ack: bytes = ALPHA_BOOT) -> Sender:
    tx = Sender("billing", node, RING, boot)
    tx.ack = ack
    return tx


def alpha(peers: tuple[str, ...] = ("beta", "gamma")) -> Receiver:
    return Receiver("billing", "alpha", peers, RING, boot_id=ALPHA_BOOT)


def resign(body: bytes) -> bytes:
    return body + hmac.new(K1.secret, body, hashlib.sha256).digest()


def with_tail(tail: bytes, view: PeerView = BETA_VIEW, version: int = 3) -> bytes:
    """Beta's datagram of `view` (default fields) with the bytes after the uplinks
    replaced by `tail`, signed again: what a key holder with another encoder sends."""
    pkt = sender("beta", BETA_BOOT).encode(view, NOW)
    assert pkt[-MAC_SIZE - len(TAIL_OF_DEFAULTS) : -MAC_SIZE] == TAIL_OF_DEFAULTS
    body = pkt[:2] + bytes([version]) + pkt[3 : -MAC_SIZE - len(TAIL_OF_DEFAULTS)]
    return resign(body + tail)


def names(*items: bytes) -> bytes:
    return bytes([len(items)]) + b"".join(bytes([len(n)]) + n for n in items)


def tail(
    data_epoch: int = 0,
    heard: bytes = b"\x00",
    in_sync: bytes = b"\x00",
    successor: bytes = b"",
    order_id: bytes = bytes(4),
) -> bytes:
    head = struct.pack("!q", data_epoch) + heard + in_sync
    return head + bytes([len(successor)]) + successor + order_id


def reason(result: PeerView | Rejected) -> Reason | None:
    return result.reason if isinstance(result, Rejected) else None


# --- PeerView --------------------------------------------------------------------


def test_peerview_defaults_and_freshness() -> None:
    assert (BETA_VIEW.data_epoch, BETA_VIEW.heard, BETA_VIEW.in_sync) == (0, (), ())
    assert BETA_VIEW.successor == "" and BETA_VIEW.freshness == 4
    assert dataclasses.replace(BETA_VIEW, data_epoch=7).freshness == 7
    assert dataclasses.replace(BETA_VIEW, epoch=8, data_epoch=7).freshness == 8


# --- version 3 round trip and layout ----------------------------------------------


def test_round_trip_with_every_field() -> None:
    pkt = sender("beta", BETA_BOOT).encode(FULL_VIEW, NOW)
    assert pkt[2] == 3
    assert alpha().decode(pkt, NOW) == FULL_VIEW


def test_version_3_tail_layout() -> None:
    pkt = sender("beta", BETA_BOOT).encode(FULL_VIEW, NOW)
    expected = (
        struct.pack("!q", 9)
        + b"\x02\x05alpha\x05gamma"  # heard
        + b"\x01\x05gamma"  # in_sync
        + b"\x05gamma"  # successor
        + bytes.fromhex("0badcafe")  # order id
    )
    assert pkt[-MAC_SIZE - len(expected) : -MAC_SIZE] == expected
    plain = dataclasses.replace(
        FULL_VIEW, data_epoch=0, heard=(), in_sync=(), successor="", order_id=""
    )
    assert pkt == with_tail(expected, plain)  # the same bytes, the same MAC


def test_the_largest_valid_config_fits_exactly() -> None:
    """8 nodes, two networks, every name 63 bytes: MAX_DATAGRAM, under 1472. A hung
    peer is one the sender does not list as heard: the two lists share 7 names."""
    long = [chr(ord("a") + i) * MAX_NODE_NAME_BYTES for i in range(8)]
    me, others = long[0], tuple(long[1:])
    net_a, net_b = "x" * MAX_NODE_NAME_BYTES, "y" * MAX_NODE_NAME_BYTES
    view = PeerView(
        node=me,
        role=Role.ACTIVE,
        epoch=EPOCH_MAX,
        uplinks=((net_a, True), (net_b, False)),
        candidate=True,
        yielding=True,
        maintenance=False,
        manual=False,
        data_epoch=EPOCH_MAX,
        heard=others[:-1],
        in_sync=others,
        successor=others[0],
        order_id="0badcafe",
        commit=2**64 - 1,
        hung=others[-1:],
    )
    cluster = "c" * MAX_NODE_NAME_BYTES
    tx = Sender(cluster, me, RING, BETA_BOOT)
    tx.ack = ALPHA_BOOT
    pkt = tx.encode(view, NOW)
    assert len(pkt) == MAX_DATAGRAM == 1336 < 1472
    rx = Receiver(cluster, others[0], (me,), RING, boot_id=ALPHA_BOOT)
    rx_view = rx.decode(pkt, NOW)
    assert rx_view == view
    assert len(tx.encode(dataclasses.replace(view, heard=others, hung=()), NOW)) == 1335
    with pytest.raises(EncodeError, match="at most 1336"):  # one byte more does not fit
        Sender(cluster + "c", me, RING).encode(view, NOW)


# --- version 2 still decoded ------------------------------------------------------


def test_a_version_2_datagram_decodes_with_the_defaults() -> None:
    v2 = with_tail(b"", version=2)
    assert v2[2] == 2
    assert alpha().decode(v2, NOW) == BETA_VIEW


def test_version_2_and_3_share_one_replay_window() -> None:
    """An upgraded encoder keeps its boot id and sequence: the window just continues."""
    rx = alpha()
    tx = sender("beta", BETA_BOOT)
    first = tx.encode(BETA_VIEW, NOW)
    v2 = resign(first[:2] + b"\x02" + first[3 : -MAC_SIZE - len(TAIL_OF_DEFAULTS)])
    second = tx.encode(FULL_VIEW, NOW + 0.1)
    assert rx.decode(v2, NOW) == BETA_VIEW
    assert rx.decode(second, NOW + 0.1) == FULL_VIEW
    assert reason(rx.decode(v2, NOW + 0.2)) is Reason.REPLAYED
    assert rx.last_seq_of("beta") == 2


def test_a_version_2_datagram_with_version_3_fields_has_trailing_bytes() -> None:
    rejected = alpha().decode(with_tail(tail(), version=2), NOW)
    assert rejected == Rejected(Reason.MALFORMED, "15 trailing bytes")


# --- version 4: the commit ---------------------------------------------------------


def test_a_view_with_a_commit_goes_as_version_4_and_round_trips() -> None:
    view = dataclasses.replace(FULL_VIEW, commit=1_234_567_890_123)
    pkt = sender("beta", BETA_BOOT).encode(view, NOW)
    assert pkt[2] == 4
    assert pkt[-MAC_SIZE - 8 : -MAC_SIZE] == struct.pack("!Q", 1_234_567_890_123)
    assert alpha().decode(pkt, NOW) == view


def test_a_view_without_a_commit_is_still_version_3_byte_for_byte() -> None:
    """A cluster without synchronous mode keeps talking to agents that know only 3."""
    pkt = sender("beta", BETA_BOOT).encode(FULL_VIEW, NOW)
    assert pkt[2] == 3
    assert alpha().decode(pkt, NOW) == FULL_VIEW


def test_one_sender_switches_versions_in_one_replay_window() -> None:
    rx, tx = alpha(), sender("beta", BETA_BOOT)
    with_commit = dataclasses.replace(BETA_VIEW, commit=7)
    assert rx.decode(tx.encode(BETA_VIEW, NOW), NOW) == BETA_VIEW
    assert rx.decode(tx.encode(with_commit, NOW + 0.1), NOW + 0.1) == with_commit
    assert rx.decode(tx.encode(BETA_VIEW, NOW + 0.2), NOW + 0.2) == BETA_VIEW
    assert rx.last_seq_of("beta") == 3


def test_version_4_with_commit_0_is_malformed() -> None:
    """Only one encoding per view: commit 0 is version 3."""
    rx = alpha()
    rejected = rx.decode(with_tail(tail() + bytes(8), version=4), NOW)
    assert rejected == Rejected(Reason.MALFORMED, "version 4 with commit 0")
    assert rx.boot_id_of("beta") is None


@pytest.mark.parametrize("cut", [1, 8])
def test_a_version_4_datagram_without_its_commit_is_truncated(cut: int) -> None:
    pkt = with_tail(tail() + struct.pack("!Q", 5)[: 8 - cut], version=4)
    assert reason(alpha().decode(pkt, NOW)) is Reason.TRUNCATED


def test_a_version_3_datagram_with_a_commit_has_trailing_bytes() -> None:
    rejected = alpha().decode(with_tail(tail() + struct.pack("!Q", 5), version=3), NOW)
    assert rejected == Rejected(Reason.MALFORMED, "8 trailing bytes")


# --- version 5: the hung holders ----------------------------------------------------

HUNG_VIEW = dataclasses.replace(BETA_VIEW, heard=("gamma",), hung=("alpha",))


def test_a_view_naming_a_hung_peer_goes_as_version_5_and_round_trips() -> None:
    rx = alpha(("beta", "gamma", "alpha2"))
    pkt = sender("beta", BETA_BOOT).encode(dataclasses.replace(HUNG_VIEW, hung=("alpha2",)), NOW)
    assert pkt[2] == 5
    assert pkt[-MAC_SIZE - 16 : -MAC_SIZE] == bytes(8) + b"\x01\x06alpha2"  # commit 0, hung
    assert rx.decode(pkt, NOW) == dataclasses.replace(HUNG_VIEW, hung=("alpha2",))
    with_commit = dataclasses.replace(HUNG_VIEW, commit=7)
    pkt = sender("beta", BETA_BOOT).encode(with_commit, NOW + 0.1)
    assert pkt[2] == 5 and alpha().decode(pkt, NOW) == with_commit


def test_one_sender_reports_a_hung_peer_and_stops_in_one_replay_window() -> None:
    rx, tx = alpha(), sender("beta", BETA_BOOT)
    plain = dataclasses.replace(HUNG_VIEW, hung=())
    for i, view in enumerate((plain, HUNG_VIEW, plain)):
        assert rx.decode(tx.encode(view, NOW + i / 10), NOW + i / 10) == view
    assert rx.last_seq_of("beta") == 3


def v5(hung: bytes, heard: bytes = b"\x00", commit: int = 0) -> bytes:
    return with_tail(tail(heard=heard) + struct.pack("!Q", commit) + hung, version=5)


@pytest.mark.parametrize(
    ("datagram", "detail"),
    [
        (v5(names()), "version 5 with no hung peer"),
        (v5(names(b"gamma"), heard=names(b"gamma")), "a node both heard and hung"),
        (v5(names(b"beta")), "hung name is the sender itself"),
        (v5(names(b"alpha", b"alpha")), "a node listed twice in hung"),
        (v5(names(b"x" * 64)), "hung name of 64 bytes, at most 63"),
        (v5(names(*(b"n%d" % i for i in range(8)))), "8 names in hung, at most 7"),
        (
            v5(names(b"n6", b"n7"), heard=names(*(b"n%d" % i for i in range(6)))),
            "heard and hung name more than 7 nodes",
        ),
    ],
)
def test_a_malformed_hung_list_is_refused_and_teaches_nothing(datagram: bytes, detail: str) -> None:
    """Only a key holder can send it; still nothing of it is believed, nor learned."""
    rx = alpha()
    assert rx.decode(datagram, NOW) == Rejected(Reason.MALFORMED, detail)
    assert rx.boot_id_of("beta") is None


@pytest.mark.parametrize("cut", [1, 3, 7, 8])
def test_a_cut_version_5_datagram_is_truncated(cut: int) -> None:
    pkt = v5(names(b"alpha"))
    body = pkt[:-MAC_SIZE]
    assert reason(alpha().decode(resign(body[:-cut]), NOW)) is Reason.TRUNCATED


def test_a_version_4_datagram_with_a_hung_list_has_trailing_bytes() -> None:
    pkt = with_tail(tail() + struct.pack("!Q", 5) + names(b"alpha"), version=4)
    assert alpha().decode(pkt, NOW) == Rejected(Reason.MALFORMED, "7 trailing bytes")


# --- bounds: the decoder ----------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_tail", "detail"),
    [
        (tail(heard=names(*(b"n%d" % i for i in range(8)))), "8 names in heard, at most 7"),
        (tail(in_sync=names(*(b"n%d" % i for i in range(8)))), "8 names in in_sync, at most 7"),
        (tail(heard=names(b"x" * 64)), "heard name of 64 bytes, at most 63"),
        (tail(in_sync=names(b"x" * 64)), "in_sync name of 64 bytes, at most 63"),
        (tail(successor=b"x" * 64), "successor of 64 bytes, at most 63"),
        (tail(heard=names(b"")), "heard name is empty or not printable"),
        (tail(heard=names(b"ga\nmma")), "heard name is empty or not printable"),
        (tail(in_sync=names(b"\xff\xfe")), "in_sync name is not UTF-8"),
        (tail(successor=b"\x00"), "successor is empty or not printable"),
        (tail(heard=names(b"gamma", b"gamma")), "a node listed twice in heard"),
        (tail(in_sync=names(b"beta")), "in_sync name is the sender itself"),
        (tail(heard=names(b"beta")), "heard name is the sender itself"),
        (tail(successor=b"beta"), "successor is the sender itself"),
        (tail(data_epoch=-1), "data epoch -1 outside 0..1000000000000000"),
        (tail(data_epoch=EPOCH_MAX + 1), "data epoch 1000000000000001 outside 0..1000000000000000"),
    ],
)
def test_bounds_and_bad_names_are_malformed(bad_tail: bytes, detail: str) -> None:
    rx = alpha()
    assert rx.decode(with_tail(bad_tail), NOW) == Rejected(Reason.MALFORMED, detail)
    assert rx.boot_id_of("beta") is None and rx.ack_for("beta") == NO_ACK  # nothing learned


def test_seven_names_of_63_bytes_are_within_bounds() -> None:
    listed = tuple(bytes([ord("a") + i]) * 63 for i in range(MAX_LISTED_NODES))
    view = alpha().decode(with_tail(tail(heard=names(*listed), in_sync=names(*listed))), NOW)
    assert isinstance(view, PeerView)
    assert view.heard == view.in_sync == tuple(n.decode() for n in listed)


@pytest.mark.parametrize("cut", [1, 2, MAC_SIZE, MAC_SIZE + 6, MAC_SIZE + 12, MAC_SIZE + 20])
def test_a_cut_version_3_datagram_is_truncated(cut: int) -> None:
    """The walk over the length bytes of the version 3 fields finds the cut."""
    pkt = with_tail(tail(heard=names(b"gamma"), successor=b"gamma"))
    assert reason(alpha().decode(pkt[:-cut], NOW)) is Reason.TRUNCATED


# --- bounds: the encoder ----------------------------------------------------------


@pytest.mark.parametrize(
    "view",
    [
        dataclasses.replace(BETA_VIEW, heard=tuple(f"n{i}" for i in range(8))),
        dataclasses.replace(BETA_VIEW, in_sync=tuple(f"n{i}" for i in range(8))),
        dataclasses.replace(BETA_VIEW, heard=("x" * 64,)),
        dataclasses.replace(BETA_VIEW, in_sync=("é" * 32,)),  # 64 bytes
        dataclasses.replace(BETA_VIEW, successor="x" * 64),
        dataclasses.replace(BETA_VIEW, heard=("",)),
        dataclasses.replace(BETA_VIEW, heard=("ga\nmma",)),
        dataclasses.replace(BETA_VIEW, heard=("gamma", "gamma")),
        dataclasses.replace(BETA_VIEW, heard=("beta",)),
        dataclasses.replace(BETA_VIEW, successor="beta"),
        dataclasses.replace(BETA_VIEW, successor="\x00"),
        dataclasses.replace(BETA_VIEW, data_epoch=-1),
        dataclasses.replace(BETA_VIEW, data_epoch=2**63),
        dataclasses.replace(BETA_VIEW, data_epoch=True),
        dataclasses.replace(BETA_VIEW, commit=-1),
        dataclasses.replace(BETA_VIEW, commit=2**64),
        dataclasses.replace(BETA_VIEW, commit=True),
        dataclasses.replace(HUNG_VIEW, hung=("gamma",)),  # heard too
        dataclasses.replace(HUNG_VIEW, hung=("beta",)),
        dataclasses.replace(HUNG_VIEW, hung=("alpha", "alpha")),
        dataclasses.replace(HUNG_VIEW, heard=tuple(f"n{i}" for i in range(7))),
    ],
)
def test_encode_refuses_out_of_bounds_fields(view: PeerView) -> None:
    tx = sender("beta", BETA_BOOT)
    with pytest.raises(EncodeError):
        tx.encode(view, NOW)
    assert tx.seq == 0


# --- replay state per sender ------------------------------------------------------


def test_a_replay_from_beta_is_refused_after_gammas_traffic() -> None:
    rx = alpha()
    beta, gamma = sender("beta", BETA_BOOT), sender("gamma", GAMMA_BOOT)
    gamma_view = dataclasses.replace(BETA_VIEW, node="gamma")
    recorded = beta.encode(BETA_VIEW, NOW)
    assert rx.decode(recorded, NOW) == BETA_VIEW
    for i in range(200):  # far more than the 64-deep window, and newer timestamps
        assert rx.decode(gamma.encode(gamma_view, NOW + i * 0.01), NOW) == gamma_view
    assert reason(rx.decode(recorded, NOW + 2)) is Reason.REPLAYED
    assert rx.decode(beta.encode(BETA_VIEW, NOW + 0.5), NOW + 2) == BETA_VIEW  # still flows
    assert rx.last_seq_of("beta") == 2 and rx.last_seq_of("gamma") == 200


def test_gammas_restart_does_not_reset_betas_window() -> None:
    rx = alpha()
    beta = sender("beta", BETA_BOOT)
    gamma_view = dataclasses.replace(BETA_VIEW, node="gamma")
    recorded = [beta.encode(BETA_VIEW, NOW + i * 0.01) for i in range(5)]
    for pkt in recorded:
        assert rx.decode(pkt, NOW) == BETA_VIEW
    assert rx.decode(sender("gamma", GAMMA_BOOT).encode(gamma_view, NOW), NOW) == gamma_view
    restarted = sender("gamma", b"G" * BOOT_ID_SIZE)  # gamma's agent restarts, later clock
    assert rx.decode(restarted.encode(gamma_view, NOW + 1), NOW + 1) == gamma_view
    assert rx.boot_id_of("gamma") == b"G" * BOOT_ID_SIZE
    assert rx.boot_id_of("beta") == BETA_BOOT and rx.ack_for("beta") == BETA_BOOT
    assert rx.last_seq_of("beta") == 5
    for pkt in recorded:  # beta's window and boot id untouched: still refused
        assert reason(rx.decode(pkt, NOW + 1)) is Reason.REPLAYED
    # and gamma's earlier start stays retired, whatever beta does
    old_gamma = sender("gamma", GAMMA_BOOT).encode(gamma_view, NOW + 2)
    assert reason(rx.decode(old_gamma, NOW + 2)) is Reason.REPLAYED


def test_a_sender_that_is_not_the_expected_one_touches_no_state() -> None:
    rx = alpha()
    pkt = sender("gamma", GAMMA_BOOT).encode(dataclasses.replace(BETA_VIEW, node="gamma"), NOW)
    rejected = rx.decode(pkt, NOW, expected_sender="beta")
    assert rejected == Rejected(Reason.UNKNOWN_SENDER, "node 'gamma' from the address of 'beta'")
    assert rx.ack_for("gamma") == NO_ACK and rx.boot_id_of("gamma") is None
    assert isinstance(rx.decode(pkt, NOW, expected_sender="gamma"), PeerView)  # still unseen


def test_a_node_not_in_the_config_is_an_unknown_sender() -> None:
    pkt = sender("delta", b"d" * BOOT_ID_SIZE).encode(
        dataclasses.replace(BETA_VIEW, node="delta"), NOW
    )
    assert alpha().decode(pkt, NOW) == Rejected(Reason.UNKNOWN_SENDER, "node 'delta'")


def test_the_pair_accessors_need_exactly_one_peer() -> None:
    pair = alpha(("beta",))
    assert pair.peer == "beta" and pair.ack_for_peer == NO_ACK and pair.peer_boot_id is None
    several = alpha()
    assert several.peers == ("beta", "gamma")
    with pytest.raises(ValueError):
        _ = several.ack_for_peer
    with pytest.raises(ValueError):
        Receiver("billing", "alpha", (), RING, boot_id=ALPHA_BOOT)
    with pytest.raises(ValueError):
        Receiver("billing", "alpha", ("beta", "beta"), RING, boot_id=ALPHA_BOOT)


# --- the ack per destination ------------------------------------------------------


def test_the_ack_is_the_destinations_boot_id() -> None:
    """Alpha learns beta's and gamma's starts apart and acks each in its own datagram;
    a copy made for beta is never accepted by gamma, and the other way round."""
    rx = alpha()
    gamma_view = dataclasses.replace(BETA_VIEW, node="gamma")
    rx.decode(sender("beta", BETA_BOOT, ack=NO_ACK).encode(BETA_VIEW, NOW), NOW)
    rx.decode(sender("gamma", GAMMA_BOOT, ack=NO_ACK).encode(gamma_view, NOW), NOW)
    assert rx.ack_for("beta") == BETA_BOOT and rx.ack_for("gamma") == GAMMA_BOOT

    tx = Sender("billing", "alpha", RING, ALPHA_BOOT)
    alpha_view = dataclasses.replace(FULL_VIEW, node="alpha", heard=("beta", "gamma"))
    alpha_view = dataclasses.replace(alpha_view, successor="beta")
    to_beta = tx.encode(alpha_view, NOW, ack=rx.ack_for("beta"))
    to_gamma = tx.encode(alpha_view, NOW, ack=rx.ack_for("gamma"))
    assert to_beta[OFF_ACK : OFF_ACK + 16] == BETA_BOOT
    assert to_gamma[OFF_ACK : OFF_ACK + 16] == GAMMA_BOOT
    assert tx.ack == NO_ACK  # the default ack is left alone

    at_beta = Receiver("billing", "beta", ("alpha", "gamma"), RING, boot_id=BETA_BOOT)
    at_gamma = Receiver("billing", "gamma", ("alpha", "beta"), RING, boot_id=GAMMA_BOOT)
    assert reason(at_gamma.decode(to_beta, NOW)) is Reason.UNCONFIRMED
    assert reason(at_beta.decode(to_gamma, NOW)) is Reason.UNCONFIRMED
    assert at_beta.decode(to_beta, NOW) == alpha_view
    assert at_gamma.decode(to_gamma, NOW) == alpha_view


def test_encode_checks_the_ack_it_is_given() -> None:
    with pytest.raises(ValueError):
        sender("beta", BETA_BOOT).encode(BETA_VIEW, NOW, ack=b"short")
