"""The peer protocol codec: round trip, every rejection reason, restarts, and fuzzing."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mosqit_failover.authkeys import Key, Keyring
from mosqit_failover.events import EPOCH_MAX, PeerView, Role
from mosqit_failover.wire import (
    BOOT_ID_SIZE,
    MAC_SIZE,
    MAGIC,
    MAX_DATAGRAM,
    MIN_DATAGRAM,
    MIN_DATAGRAM_V3,
    NO_ACK,
    EncodeError,
    RateLimitedLog,
    Reason,
    Receiver,
    Rejected,
    Sender,
)

K1 = Key(1, bytes(range(32)))
K2 = Key(2, bytes(range(100, 132)))
K9 = Key(9, bytes(range(200, 232)))
RING = Keyring((K1,))
NOW = 1_700_000_000.0
BOOT_A = b"A" * BOOT_ID_SIZE
BOOT_B = b"B" * BOOT_ID_SIZE
BETA_BOOT = b"b" * BOOT_ID_SIZE  # the receiving agent's own boot id

VIEW = PeerView(
    node="alpha",
    role=Role.ACTIVE,
    epoch=7,
    uplinks=(("a", True), ("b", False)),
    candidate=True,
    yielding=False,
    maintenance=False,
    manual=True,
)


def alpha(
    ring: Keyring = RING, boot: bytes = BOOT_A, cluster: str = "billing", ack: bytes = BETA_BOOT
) -> Sender:
    """The sending side, having heard beta's current start (ack) unless told otherwise."""
    tx = Sender(cluster, "alpha", ring, boot)
    tx.ack = ack
    return tx


def beta(ring: Keyring = RING, window: float = 30.0, boot: bytes = BETA_BOOT) -> Receiver:
    """The receiving side: beta, hearing from alpha."""
    return Receiver("billing", "beta", "alpha", ring, window, boot_id=boot)


def reason(result: PeerView | Rejected) -> Reason | None:
    return result.reason if isinstance(result, Rejected) else None


def resign(packet: bytes | bytearray, key: Key = K1) -> bytes:
    """Replace the MAC, as a peer holding the key (or a buggy one) would."""
    body = bytes(packet[:-MAC_SIZE])
    return body + hmac.new(key.secret, body, hashlib.sha256).digest()


# Offsets in a packet encoded by alpha() for cluster "billing" and node "alpha".
OFF_ACK = 36
OFF_CLUSTER = 52
OFF_NODE = OFF_CLUSTER + 1 + len("billing")
OFF_ROLE = OFF_NODE + 1 + len("alpha")
OFF_EPOCH = OFF_ROLE + 1
OFF_FLAGS = OFF_EPOCH + 8
OFF_COUNT = OFF_FLAGS + 1


# --- round trip and layout -------------------------------------------------------


def test_round_trip() -> None:
    rx = beta()
    assert rx.decode(alpha().encode(VIEW, NOW), NOW) == VIEW
    assert rx.accepted == 1
    assert all(v == 0 for v in rx.counters.values())
    assert rx.peer_boot_id == BOOT_A
    assert rx.last_seq == 1


def test_layout() -> None:
    tx = alpha()
    pkt = tx.encode(VIEW, NOW)
    assert pkt[:2] == MAGIC == b"MQ"
    assert pkt[2] == 3
    assert pkt[3] == K1.key_id
    assert pkt[4:20] == BOOT_A
    assert struct.unpack("!QQ", pkt[20:36]) == (1, round(NOW * 1000))
    assert pkt[OFF_ACK:OFF_CLUSTER] == BETA_BOOT
    assert pkt[OFF_CLUSTER] == 7 and pkt[OFF_CLUSTER + 1 : OFF_NODE] == b"billing"
    assert pkt[OFF_NODE] == 5 and pkt[OFF_NODE + 1 : OFF_ROLE] == b"alpha"
    assert pkt[OFF_ROLE] == 4  # ACTIVE
    assert struct.unpack("!q", pkt[OFF_EPOCH:OFF_FLAGS]) == (7,)
    assert pkt[OFF_FLAGS] == 0b101  # candidate, manual
    assert pkt[OFF_COUNT : OFF_COUNT + 7] == b"\x02\x01a\x01\x01b\x00"
    # version 3: data epoch 0, nobody heard, nobody in sync, no successor, no order id
    assert pkt[OFF_COUNT + 7 : -MAC_SIZE] == bytes(8) + b"\x00\x00\x00" + bytes(4)
    assert len(pkt) == OFF_COUNT + 7 + 15 + MAC_SIZE
    assert pkt[-MAC_SIZE:] == hmac.new(K1.secret, pkt[:-MAC_SIZE], hashlib.sha256).digest()


@pytest.mark.parametrize(
    ("field", "bit"),
    [("candidate", 0x01), ("maintenance", 0x02), ("manual", 0x04), ("yielding", 0x08)],
)
def test_flag_bits(field: str, bit: int) -> None:
    view = PeerView(
        node="alpha",
        role=Role.STANDBY,
        epoch=0,
        uplinks=(),
        candidate=field == "candidate",
        yielding=field == "yielding",
        maintenance=field == "maintenance",
        manual=field == "manual",
    )
    pkt = alpha().encode(view, NOW)
    assert pkt[OFF_FLAGS] == bit
    assert beta().decode(pkt, NOW) == view


@pytest.mark.parametrize(("role", "code"), list(zip(Role, [1, 2, 3, 4, 5], strict=True)))
def test_role_codes(role: Role, code: int) -> None:
    view = dataclasses.replace(VIEW, role=role)
    pkt = alpha().encode(view, NOW)
    assert pkt[OFF_ROLE] == code
    assert beta().decode(pkt, NOW) == view


def test_sequence_increments() -> None:
    tx, rx = alpha(), beta()
    for i in range(1, 6):
        assert tx.encode(VIEW, NOW + i) is not None
        assert tx.seq == i
    assert struct.unpack("!Q", tx.encode(VIEW, NOW)[20:28]) == (6,)
    assert rx.decode(tx.encode(VIEW, NOW), NOW) == VIEW


def test_random_boot_id_by_default() -> None:
    a, b = Sender("c", "alpha", RING), Sender("c", "alpha", RING)
    assert len(a.boot_id) == BOOT_ID_SIZE and a.boot_id != b.boot_id


def test_min_datagram_constant() -> None:
    view = dataclasses.replace(VIEW, node="n", uplinks=())
    assert len(Sender("c", "n", RING).encode(view, NOW)) == MIN_DATAGRAM_V3
    # a version 2 one: no data epoch, lists, successor nor order id
    assert MIN_DATAGRAM == MIN_DATAGRAM_V3 - 15


# --- encode refuses what it cannot send ------------------------------------------


def test_encode_oversized_raises() -> None:
    many = tuple((f"net{i:03d}-" + "x" * 20, True) for i in range(50))
    with pytest.raises(EncodeError, match="at most 1336"):
        alpha().encode(dataclasses.replace(VIEW, uplinks=many), NOW)


@pytest.mark.parametrize(
    "view",
    [
        dataclasses.replace(VIEW, node="gamma"),
        dataclasses.replace(VIEW, epoch=-1),
        dataclasses.replace(VIEW, epoch=2**63),
        dataclasses.replace(VIEW, uplinks=(("a", True), ("a", False))),
        dataclasses.replace(VIEW, uplinks=(("", True),)),
        dataclasses.replace(VIEW, uplinks=(("a\nb", True),)),
        dataclasses.replace(VIEW, uplinks=(("x" * 256, True),)),
    ],
)
def test_encode_invalid_view_raises(view: PeerView) -> None:
    tx = alpha()
    with pytest.raises(EncodeError):
        tx.encode(view, NOW)
    assert tx.seq == 0  # nothing sent, nothing used


@pytest.mark.parametrize("now", [-1.0, float("nan"), float("inf")])
def test_encode_bad_time_raises(now: float) -> None:
    with pytest.raises(EncodeError):
        alpha().encode(VIEW, now)


def test_sender_invalid_names_and_boot_id() -> None:
    with pytest.raises(EncodeError):
        Sender("", "alpha", RING)
    with pytest.raises(EncodeError):
        Sender("c", "al\x00pha", RING)
    with pytest.raises(ValueError):
        Sender("c", "alpha", RING, b"short")
    tx = Sender("c", "alpha", RING)
    assert tx.ack == NO_ACK == bytes(BOOT_ID_SIZE)
    with pytest.raises(ValueError):
        tx.ack = b"short"


def test_receiver_invalid_boot_id() -> None:
    with pytest.raises(ValueError):
        beta(boot=b"short")
    with pytest.raises(ValueError):  # zeros is the ack of no start: would accept any of them
        beta(boot=NO_ACK)


# --- every Reason from a crafted packet ------------------------------------------


def test_oversized() -> None:
    pkt = alpha().encode(VIEW, NOW)
    assert reason(beta().decode(pkt + bytes(MAX_DATAGRAM + 1 - len(pkt)), NOW)) is Reason.OVERSIZED
    assert reason(beta().decode(bytes(100_000), NOW)) is Reason.OVERSIZED


def test_truncated_at_every_length() -> None:
    pkt = alpha().encode(VIEW, NOW)
    rx = beta()
    for n in range(len(pkt)):
        assert reason(rx.decode(pkt[:n], NOW)) is Reason.TRUNCATED, n
    assert rx.counters[Reason.TRUNCATED] == len(pkt)
    assert rx.accepted == 0
    assert rx.decode(pkt, NOW) == VIEW  # the untouched packet still goes through


def test_length_byte_pointing_past_end_is_truncated() -> None:
    pkt = bytearray(alpha().encode(VIEW, NOW))
    pkt[OFF_COUNT] = 200  # 200 uplinks announced
    assert reason(beta().decode(bytes(pkt), NOW)) is Reason.TRUNCATED


def test_bad_magic() -> None:
    pkt = alpha().encode(VIEW, NOW)
    assert reason(beta().decode(b"XX" + pkt[2:], NOW)) is Reason.BAD_MAGIC
    assert reason(beta().decode(b"GET / HTTP/1.0\r\n\r\n", NOW)) is Reason.BAD_MAGIC


def test_unknown_version() -> None:
    pkt = alpha().encode(VIEW, NOW)
    rejected = beta().decode(pkt[:2] + b"\x06" + pkt[3:], NOW)
    assert rejected == Rejected(Reason.UNKNOWN_VERSION, "version 6")


def test_version_1_is_an_unknown_version() -> None:
    """A version 1 datagram (no ack), even correctly signed, is never accepted."""
    pkt = alpha().encode(VIEW, NOW)
    v1 = pkt[:2] + b"\x01" + pkt[3:OFF_ACK] + pkt[OFF_CLUSTER:-MAC_SIZE]  # the v1 layout
    rejected = beta().decode(resign(v1 + bytes(MAC_SIZE)), NOW)
    assert rejected == Rejected(Reason.UNKNOWN_VERSION, "version 1")


def test_unknown_key() -> None:
    pkt = alpha(Keyring((K9,))).encode(VIEW, NOW)
    assert reason(beta().decode(pkt, NOW)) is Reason.UNKNOWN_KEY


def test_wrong_secret_same_key_id() -> None:
    other = Keyring((Key(1, bytes(32)),))
    assert reason(beta().decode(alpha(other).encode(VIEW, NOW), NOW)) is Reason.BAD_MAC


def test_forged_mac() -> None:
    pkt = bytearray(alpha().encode(VIEW, NOW))
    pkt[OFF_EPOCH + 7] ^= 0x01  # epoch 7 -> 6, MAC kept
    assert reason(beta().decode(bytes(pkt), NOW)) is Reason.BAD_MAC
    pkt = bytearray(alpha().encode(VIEW, NOW))
    pkt[-1] ^= 0x80
    assert reason(beta().decode(bytes(pkt), NOW)) is Reason.BAD_MAC


def test_key_id_swapped_to_other_known_key() -> None:
    ring = Keyring((K1, K2))
    pkt = bytearray(alpha(ring).encode(VIEW, NOW))
    pkt[3] = K2.key_id
    assert reason(beta(ring).decode(bytes(pkt), NOW)) is Reason.BAD_MAC


def test_wrong_cluster() -> None:
    pkt = alpha(cluster="payroll").encode(VIEW, NOW)
    assert reason(beta().decode(pkt, NOW)) is Reason.WRONG_CLUSTER


def test_from_self_reflected() -> None:
    me = Sender("billing", "beta", RING)
    pkt = me.encode(dataclasses.replace(VIEW, node="beta"), NOW)
    assert reason(beta().decode(pkt, NOW)) is Reason.FROM_SELF


def test_unknown_sender() -> None:
    gamma = Sender("billing", "gamma", RING)
    pkt = gamma.encode(dataclasses.replace(VIEW, node="gamma"), NOW)
    assert reason(beta().decode(pkt, NOW)) is Reason.UNKNOWN_SENDER


def test_replay_of_same_bytes() -> None:
    rx, pkt = beta(), alpha().encode(VIEW, NOW)
    assert rx.decode(pkt, NOW) == VIEW
    assert reason(rx.decode(pkt, NOW + 1)) is Reason.REPLAYED
    assert rx.counters[Reason.REPLAYED] == 1 and rx.accepted == 1


def test_reordering() -> None:
    tx, rx = alpha(), beta()
    first, second, third = (tx.encode(VIEW, NOW) for _ in range(3))
    assert rx.decode(second, NOW) == VIEW
    assert reason(rx.decode(first, NOW)) is Reason.LATE  # older than accepted, never seen
    assert reason(rx.decode(first, NOW)) is Reason.REPLAYED  # ... but only once
    assert reason(rx.decode(second, NOW)) is Reason.REPLAYED
    assert rx.decode(third, NOW) == VIEW  # gaps are fine (loss)
    assert rx.last_seq == 3


def test_replay_window_remembers_64_behind_the_newest() -> None:
    tx, rx = alpha(), beta()
    packets = [tx.encode(VIEW, NOW) for _ in range(70)]
    assert rx.decode(packets[-1], NOW) == VIEW
    assert reason(rx.decode(packets[70 - 64], NOW)) is Reason.LATE
    assert reason(rx.decode(packets[70 - 65], NOW)) is Reason.REPLAYED  # beyond the window


def test_stale_both_directions_and_window_edge() -> None:
    tx = alpha()
    assert reason(beta().decode(tx.encode(VIEW, NOW - 30.5), NOW)) is Reason.STALE
    assert reason(beta().decode(tx.encode(VIEW, NOW + 30.5), NOW)) is Reason.STALE
    assert beta().decode(tx.encode(VIEW, NOW - 30.0), NOW) == VIEW
    assert beta().decode(tx.encode(VIEW, NOW + 30.0), NOW) == VIEW
    assert reason(beta(window=5).decode(tx.encode(VIEW, NOW - 6), NOW)) is Reason.STALE


def test_stale_when_local_clock_not_finite() -> None:
    pkt = alpha().encode(VIEW, NOW)
    assert reason(beta().decode(pkt, float("nan"))) is Reason.STALE
    assert reason(beta().decode(pkt, float("inf"))) is Reason.STALE


def test_old_captured_packet_is_stale() -> None:
    rx, pkt = beta(), alpha().encode(VIEW, NOW)
    assert reason(rx.decode(pkt, NOW + 3600)) is Reason.STALE


@pytest.mark.parametrize(
    ("offset", "value", "detail"),
    [
        (OFF_ROLE, 0, "role"),
        (OFF_ROLE, 6, "role"),
        (OFF_EPOCH, 0x80, "outside 0..1000000000000000"),
        (OFF_EPOCH + 1, 0x04, "outside 0..1000000000000000"),  # > EPOCH_MAX
        (OFF_FLAGS, 0x10, "flags"),
        (OFF_FLAGS, 0x80, "flags"),
        (OFF_COUNT + 3, 2, "health byte"),  # first uplink's healthy byte
        (OFF_COUNT + 5, ord("a"), "listed twice"),  # second uplink renamed to "a"
        (OFF_NODE + 1, 0xFF, "UTF-8"),  # node name
        (OFF_CLUSTER + 1, 0xC3, "UTF-8"),  # cluster name
        (OFF_COUNT + 2, 0x07, "printable"),  # network name "\a"
    ],
)
def test_malformed_field_with_valid_mac(offset: int, value: int, detail: str) -> None:
    pkt = bytearray(alpha().encode(VIEW, NOW))
    pkt[offset] = value
    result = beta().decode(resign(pkt), NOW)
    assert isinstance(result, Rejected)
    assert result.reason is Reason.MALFORMED
    assert detail in result.detail


def test_malformed_empty_name() -> None:
    pkt = bytearray(alpha().encode(VIEW, NOW))
    del pkt[OFF_COUNT + 2]  # first uplink name "a" becomes ""
    pkt[OFF_COUNT + 1] = 0
    result = beta().decode(resign(pkt), NOW)
    assert result == Rejected(Reason.MALFORMED, "network name is empty or not printable")


def test_malformed_trailing_bytes() -> None:
    pkt = alpha().encode(VIEW, NOW)
    padded = pkt[:-MAC_SIZE] + b"\x00" + pkt[-MAC_SIZE:]
    assert reason(beta().decode(resign(padded), NOW)) is Reason.MALFORMED
    assert reason(beta().decode(pkt + b"\x00", NOW)) is Reason.MALFORMED


def test_malformed_sequence_zero() -> None:
    pkt = bytearray(alpha().encode(VIEW, NOW))
    pkt[20:28] = bytes(8)
    assert reason(beta().decode(resign(pkt), NOW)) is Reason.MALFORMED


def test_rejection_changes_no_state() -> None:
    tx, rx = alpha(), beta()
    assert rx.decode(tx.encode(VIEW, NOW), NOW) == VIEW
    forged = bytearray(tx.encode(VIEW, NOW))
    forged[20:28] = struct.pack("!Q", 2**64 - 1)  # try to burn the sequence space
    assert reason(rx.decode(bytes(forged), NOW)) is Reason.BAD_MAC
    stale = tx.encode(VIEW, NOW - 100)
    assert reason(rx.decode(stale, NOW)) is Reason.STALE
    assert rx.last_seq == 1 and rx.peer_boot_id == BOOT_A
    assert rx.decode(tx.encode(VIEW, NOW), NOW) == VIEW  # seq 4 still accepted


def test_counters_per_reason() -> None:
    rx = beta()
    for _ in range(3):
        rx.decode(b"", NOW)
    rx.decode(b"ZZZZ", NOW)
    assert rx.counters[Reason.TRUNCATED] == 3
    assert rx.counters[Reason.BAD_MAGIC] == 1
    assert set(rx.counters) == set(Reason)
    assert sum(rx.counters.values()) == 4 and rx.accepted == 0


# --- boot ids: agent restarts ----------------------------------------------------


def test_peer_restart_new_boot_id_accepted() -> None:
    rx = beta()
    old = alpha(boot=BOOT_A)
    for i in range(5):
        assert rx.decode(old.encode(VIEW, NOW + i), NOW + i) == VIEW
    new = alpha(boot=BOOT_B)  # seq starts again at 1
    assert rx.decode(new.encode(VIEW, NOW + 10), NOW + 10) == VIEW
    assert rx.peer_boot_id == BOOT_B and rx.last_seq == 1


def test_old_boot_id_not_replayable_after_restart() -> None:
    rx = beta()
    old = alpha(boot=BOOT_A)
    captured = [old.encode(VIEW, NOW + i) for i in range(5)]
    assert rx.decode(captured[0], NOW) == VIEW
    new = alpha(boot=BOOT_B)
    assert rx.decode(new.encode(VIEW, NOW + 10), NOW + 10) == VIEW
    for pkt in captured:  # all fresh, all authentic, all from the previous boot
        assert reason(rx.decode(pkt, NOW + 10)) is Reason.REPLAYED
    assert rx.decode(new.encode(VIEW, NOW + 11), NOW + 11) == VIEW


def test_forged_restart_with_old_timestamp_refused() -> None:
    """A new boot id is only believed with a timestamp newer than all accepted."""
    rx = beta()
    assert rx.decode(alpha(boot=BOOT_A).encode(VIEW, NOW), NOW) == VIEW
    assert reason(rx.decode(alpha(boot=BOOT_B).encode(VIEW, NOW), NOW)) is Reason.REPLAYED
    assert reason(rx.decode(alpha(boot=BOOT_B).encode(VIEW, NOW - 1), NOW)) is Reason.REPLAYED
    assert rx.peer_boot_id == BOOT_A


# --- this agent's restart: the ack -------------------------------------------------


class Agent:
    """One node's Sender and Receiver sharing a boot id, wired as PeerLink wires them."""

    def __init__(self, node: str, peer: str, boot: bytes) -> None:
        self.tx = Sender("billing", node, RING, boot)
        self.rx = Receiver("billing", node, peer, RING, boot_id=boot)
        self.view = dataclasses.replace(VIEW, node=node)

    def send(self, now: float) -> bytes:
        self.tx.ack = self.rx.ack_for_peer
        return self.tx.encode(self.view, now)

    def hear(self, pkt: bytes, now: float) -> PeerView | Rejected:
        return self.rx.decode(pkt, now)


def form(a: Agent, b: Agent, now: float) -> None:
    """b speaks first: a learns b's start, b learns a's, then both accept."""
    assert reason(a.hear(b.send(now), now)) is Reason.UNCONFIRMED
    assert b.hear(a.send(now), now) == a.view
    assert a.hear(b.send(now), now) == b.view


def test_datagrams_recorded_before_a_restart_are_never_accepted_after_it() -> None:
    """The bug: a restarted receiver's empty window took one replay up to 30 s old."""
    a, b = Agent("alpha", "beta", BOOT_A), Agent("beta", "alpha", BETA_BOOT)
    form(a, b, NOW)
    recorded = []
    for i in range(100):
        t = NOW + 1 + i * 0.1
        pkt = a.send(t)
        recorded.append(pkt)
        if i % 2 == 0:  # every other one only recorded, never delivered
            assert b.hear(pkt, t) == a.view
    t = NOW + 12  # every recording still fresh
    b = Agent("beta", "alpha", BOOT_B)  # beta's agent restarts: new boot id, empty memory
    for pkt in [*recorded, *reversed(recorded)]:
        assert reason(b.hear(pkt, t)) in {Reason.UNCONFIRMED, Reason.REPLAYED}
    assert b.rx.accepted == 0
    assert b.rx.counters[Reason.UNCONFIRMED] + b.rx.counters[Reason.REPLAYED] == 200
    # The handshake: beta's first datagram acks alpha's start and tells it of beta's new one.
    assert a.hear(b.send(t), t) == b.view
    assert b.hear(a.send(t + 0.05), t + 0.05) == a.view
    # Alpha's current sequence number is just above the recordings: the window alone would
    # call the undelivered ones LATE. Their ack is beta's old start: never accepted.
    for pkt in recorded:
        assert reason(b.hear(pkt, t + 0.1)) in {Reason.UNCONFIRMED, Reason.REPLAYED}
    assert b.rx.counters[Reason.LATE] == 0 and b.rx.accepted == 1
    assert b.hear(a.send(t + 0.15), t + 0.15) == a.view


def test_learns_the_peer_start_from_authentic_fresh_unconfirmed_datagrams() -> None:
    b = Agent("beta", "alpha", BETA_BOOT)
    assert b.rx.ack_for_peer == NO_ACK
    assert reason(b.hear(alpha(ack=NO_ACK).encode(VIEW, NOW - 60), NOW)) is Reason.STALE
    wrong = alpha(Keyring((Key(1, bytes(32)),)), ack=NO_ACK)
    assert reason(b.hear(wrong.encode(VIEW, NOW), NOW)) is Reason.BAD_MAC
    assert b.rx.ack_for_peer == NO_ACK
    result = b.hear(alpha(ack=BOOT_B).encode(VIEW, NOW), NOW)
    assert result == Rejected(
        Reason.UNCONFIRMED, "the peer acknowledges another start of this agent, or another node"
    )
    assert b.rx.ack_for_peer == BOOT_A and b.rx.peer_boot_id is None


def test_both_agents_restarted_at_once_converge_in_one_round_trip() -> None:
    a, b = Agent("alpha", "beta", BOOT_A), Agent("beta", "alpha", BETA_BOOT)
    first = a.send(NOW)  # alpha has heard nothing: ack all zeros
    assert first[OFF_ACK:OFF_CLUSTER] == NO_ACK
    result = b.hear(first, NOW)
    assert result == Rejected(Reason.UNCONFIRMED, "the peer has heard no start of this agent yet")
    assert b.rx.ack_for_peer == BOOT_A
    assert a.hear(b.send(NOW + 0.05), NOW + 0.05) == b.view
    assert b.hear(a.send(NOW + 0.1), NOW + 0.1) == a.view
    assert reason(b.hear(first, NOW + 0.1)) is Reason.UNCONFIRMED  # still never


def test_crossing_first_datagrams_converge_on_the_second() -> None:
    a, b = Agent("alpha", "beta", BOOT_A), Agent("beta", "alpha", BETA_BOOT)
    from_a, from_b = a.send(NOW), b.send(NOW)
    assert reason(b.hear(from_a, NOW)) is Reason.UNCONFIRMED
    assert reason(a.hear(from_b, NOW)) is Reason.UNCONFIRMED
    from_a, from_b = a.send(NOW + 0.05), b.send(NOW + 0.05)
    assert b.hear(from_a, NOW + 0.05) == a.view
    assert a.hear(from_b, NOW + 0.05) == b.view


def test_a_replayed_older_datagram_does_not_move_the_learned_boot_id_back() -> None:
    b = Agent("beta", "alpha", BETA_BOOT)
    before_restart = alpha(boot=BOOT_A, ack=NO_ACK).encode(VIEW, NOW)
    after_restart = alpha(boot=BOOT_B, ack=NO_ACK)  # alpha's agent restarted since
    assert reason(b.hear(after_restart.encode(VIEW, NOW + 5), NOW + 5)) is Reason.UNCONFIRMED
    assert b.rx.ack_for_peer == BOOT_B
    assert reason(b.hear(before_restart, NOW + 6)) is Reason.UNCONFIRMED
    assert b.rx.ack_for_peer == BOOT_B
    # Even with the right ack (recorded during this run), the earlier start is not accepted,
    # and not learned from.
    old_acked = alpha(boot=BOOT_A).encode(VIEW, NOW + 1)
    assert reason(b.hear(old_acked, NOW + 6)) is Reason.REPLAYED
    assert b.rx.ack_for_peer == BOOT_B and b.rx.accepted == 0
    new = alpha(boot=BOOT_B)  # alpha learned beta's start: accepted, learned stays
    assert b.hear(new.encode(VIEW, NOW + 7), NOW + 7) == VIEW
    assert b.rx.ack_for_peer == BOOT_B and b.rx.peer_boot_id == BOOT_B


def test_a_newer_start_of_the_peer_moves_the_learned_boot_id() -> None:
    b = Agent("beta", "alpha", BETA_BOOT)
    assert b.hear(alpha(boot=BOOT_A).encode(VIEW, NOW), NOW) == VIEW
    assert b.rx.ack_for_peer == BOOT_A
    restarted = alpha(boot=BOOT_B, ack=NO_ACK)  # alpha restarted: has not heard beta yet
    assert reason(b.hear(restarted.encode(VIEW, NOW + 1), NOW + 1)) is Reason.UNCONFIRMED
    assert b.rx.ack_for_peer == BOOT_B and b.rx.peer_boot_id == BOOT_A
    restarted.ack = BETA_BOOT
    assert b.hear(restarted.encode(VIEW, NOW + 2), NOW + 2) == VIEW
    assert b.rx.peer_boot_id == BOOT_B
    # alpha's previous start, correctly acked, dated between the two: not accepted
    assert reason(b.hear(alpha(boot=BOOT_A).encode(VIEW, NOW + 1.5), NOW + 2)) is Reason.REPLAYED


# --- key rotation ----------------------------------------------------------------


def test_key_rotation_steps() -> None:
    old, new = K1, K2
    # Start: both nodes on the old key.
    tx, rx = alpha(Keyring((old,))), beta(Keyring((old,)))
    assert rx.decode(tx.encode(VIEW, NOW), NOW) == VIEW
    # Step 1: the new key added second, one node after the other.
    rx.keyring = Keyring((old, new))
    assert rx.decode(tx.encode(VIEW, NOW), NOW) == VIEW
    tx.keyring = Keyring((old, new))
    pkt = tx.encode(VIEW, NOW)
    assert pkt[3] == old.key_id
    assert rx.decode(pkt, NOW) == VIEW
    # Step 2: swap, sender first: the receiver still verifies both.
    tx.keyring = Keyring((new, old))
    pkt = tx.encode(VIEW, NOW)
    assert pkt[3] == new.key_id
    assert rx.decode(pkt, NOW) == VIEW
    rx.keyring = Keyring((new, old))
    assert rx.decode(tx.encode(VIEW, NOW), NOW) == VIEW
    # Step 3: old key removed everywhere; messages under it are now refused.
    stale_signer = alpha(Keyring((old,)), boot=BOOT_B)
    rx.keyring = Keyring((new,))
    tx.keyring = Keyring((new,))
    assert rx.decode(tx.encode(VIEW, NOW), NOW) == VIEW
    assert reason(rx.decode(stale_signer.encode(VIEW, NOW + 1), NOW)) is Reason.UNKNOWN_KEY
    assert rx.accepted == 6


def test_removing_new_key_too_early_is_detected() -> None:
    tx = alpha(Keyring((K2, K1)))
    assert reason(beta(Keyring((K1,))).decode(tx.encode(VIEW, NOW), NOW)) is Reason.UNKNOWN_KEY


# --- property tests --------------------------------------------------------------

names = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
    min_size=1,
    max_size=12,
).filter(lambda s: s.isprintable())

views = st.builds(
    PeerView,
    node=st.just("alpha"),
    role=st.sampled_from(Role),
    epoch=st.integers(min_value=0, max_value=EPOCH_MAX),
    uplinks=st.lists(st.tuples(names, st.booleans()), max_size=8, unique_by=lambda u: u[0]).map(
        tuple
    ),
    candidate=st.booleans(),
    yielding=st.booleans(),
    maintenance=st.booleans(),
    manual=st.booleans(),
)

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


def assert_no_internal_error(result: PeerView | Rejected) -> None:
    assert not (isinstance(result, Rejected) and result.detail.startswith("internal error"))


@given(views, times)
def test_round_trip_any_view(view: PeerView, now: float) -> None:
    try:
        pkt = alpha().encode(view, now)
    except EncodeError:
        assume(False)
        return
    assert len(pkt) <= MAX_DATAGRAM
    assert beta().decode(pkt, now) == view


@settings(max_examples=500)
@given(st.binary(max_size=MAX_DATAGRAM + 64), times)
def test_arbitrary_bytes_never_raise_never_accepted(data: bytes, now: float) -> None:
    rx = beta()
    result = rx.decode(data, now)
    assert isinstance(result, Rejected)
    assert_no_internal_error(result)
    assert rx.accepted == 0 and sum(rx.counters.values()) == 1


def _field(b: bytes) -> bytes:
    return bytes([len(b)]) + b


@st.composite
def authentic_junk(draw: st.DrawFn) -> bytes:
    """Well-framed, correctly signed packets whose fields hold anything at all
    (a peer with the key but a bug, or another version of the agent)."""
    name = st.one_of(st.binary(max_size=10), st.sampled_from([b"billing", b"alpha", b"beta"]))
    out = b"MQ\x02\x01" + draw(st.binary(min_size=32, max_size=32))  # boot id, seq, ts
    out += draw(st.one_of(st.just(BETA_BOOT), st.binary(min_size=16, max_size=16)))  # ack
    out += _field(draw(st.one_of(st.just(b"billing"), name)))
    out += _field(draw(st.one_of(st.just(b"alpha"), name)))
    out += bytes([draw(st.one_of(st.integers(1, 5), st.integers(0, 255)))])  # role
    out += draw(st.binary(min_size=8, max_size=8))  # epoch
    out += bytes([draw(st.one_of(st.integers(0, 15), st.integers(0, 255)))])  # flags
    links = draw(st.lists(st.tuples(name, st.binary(min_size=1, max_size=1)), max_size=6))
    out += bytes([len(links)]) + b"".join(_field(n) + h for n, h in links)
    return resign(out + bytes(MAC_SIZE))


@settings(max_examples=1000)
@given(authentic_junk(), st.floats(min_value=-40, max_value=40))
def test_authentic_junk_never_raises(data: bytes, skew: float) -> None:
    now = struct.unpack("!Q", data[28:36])[0] / 1000 + skew
    rx = beta()
    result = rx.decode(data, now)
    assert_no_internal_error(result)
    assert rx.accepted + sum(rx.counters.values()) == 1
    if isinstance(result, PeerView):
        assert result.node == "alpha" and result.epoch >= 0


@st.composite
def mutations(draw: st.DrawFn, packet: bytes) -> bytes:
    data = bytearray(packet)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
        i = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "set" and data:
            data[i] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[i : i + draw(st.integers(min_value=1, max_value=8))]
        elif kind == "truncate":
            del data[i:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), views)
def test_mutated_packets_never_accepted(data: st.DataObject, view: PeerView) -> None:
    try:
        pkt = alpha().encode(view, NOW)
    except EncodeError:
        assume(False)
        return
    mutated = data.draw(mutations(pkt))
    result = beta().decode(mutated, NOW)
    assert_no_internal_error(result)
    if isinstance(result, PeerView):
        assert mutated == pkt
        assert result == view
    else:
        assert mutated != pkt


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=30))
def test_any_delivery_order_accepts_only_increasing_seq(order: list[int]) -> None:
    tx, rx = alpha(), beta()
    pkts = [tx.encode(VIEW, NOW) for _ in range(10)]
    best = 0
    seen: set[int] = set()
    for i in order:
        result = rx.decode(pkts[i], NOW)
        assert isinstance(result, PeerView) == (i + 1 > best)
        if not isinstance(result, PeerView):  # each packet counts once; a repeat is a replay
            assert result.reason is (Reason.REPLAYED if i in seen else Reason.LATE)
        best = max(best, i + 1)
        seen.add(i)
    counted = rx.accepted + rx.counters[Reason.REPLAYED] + rx.counters[Reason.LATE]
    assert counted == len(order)


# --- rate-limited logging --------------------------------------------------------


def test_rate_limited_log() -> None:
    log = RateLimitedLog(interval=10)
    assert log.check(Reason.BAD_MAC, 100.0) == 0
    assert log.check(Reason.BAD_MAC, 101.0) is None
    assert log.check(Reason.BAD_MAC, 109.9) is None
    assert log.check(Reason.STALE, 105.0) == 0  # per reason
    assert log.check(Reason.BAD_MAC, 110.0) == 2  # two suppressed since
    assert log.check(Reason.BAD_MAC, 115.0) is None
    assert log.check(Reason.BAD_MAC, 50.0) == 1  # clock stepped back: log, do not go silent


def test_an_earlier_start_of_the_peer_is_never_accepted_once_a_later_one_was() -> None:
    """The peer's clock ran 10 s ahead before its restart and was stepped back at boot:
    captures of its earlier start carry later timestamps than its new datagrams. They
    must not win the peer back from its new start (found by an attack: the stale view
    shadowed the real one for as long as the captures lasted)."""
    rx = beta()
    old, new = alpha(boot=BOOT_A), alpha(boot=BOOT_B)
    captured = [
        old.encode(dataclasses.replace(VIEW, role=Role.STANDBY), NOW + 10 + i / 10)
        for i in range(100)
    ]
    for i, datagram in enumerate(captured[:80]):  # the last 2 s are withheld
        assert isinstance(rx.decode(datagram, NOW + i / 10), PeerView)
    now = NOW + 18.0
    assert isinstance(rx.decode(new.encode(VIEW, now), now), PeerView)
    for k, datagram in enumerate(captured[85:], start=1):
        assert reason(rx.decode(datagram, now + k / 100)) is Reason.REPLAYED
        real = rx.decode(new.encode(VIEW, now + k / 100), now + k / 100)
        assert isinstance(real, PeerView) and real.role is Role.ACTIVE
    assert rx.ack_for_peer == BOOT_B
