"""A bounded, deterministic fuzzer of the peer protocol (a few thousand cases, seconds).

Random datagrams, and mutations of valid signed ones (bit flips, truncations,
extensions, length-byte edits, field swaps between datagrams), through a
Receiver and through a real PeerLink on loopback. Whatever comes in: decode
never raises, nothing mutated is accepted (unless it is byte-identical to a
valid datagram the receiver has not seen), every rejection has a Reason and
is counted once, and the link reports every datagram from the peer's own
address to `on_unauthenticated`, never to `deliver`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import random
import struct
import time
from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mosqit_failover.authkeys import Key, Keyring
from mosqit_failover.events import EPOCH_MAX, PeerView, Role
from mosqit_failover.wire import (
    BOOT_ID_SIZE,
    MAC_SIZE,
    MAX_DATAGRAM,
    EncodeError,
    Reason,
    Receiver,
    Rejected,
    Sender,
)
from tests.unit.test_peerlink import Loopback, loopback, run

SEED = 20261202
K1 = Key(1, bytes(range(32)))
RING = Keyring((K1, Key(2, bytes(range(100, 132)))))
NOW = 1_700_000_000.0
BETA_BOOT = b"b" * BOOT_ID_SIZE
OFF_ACK, OFF_BODY = 36, 52
# Fixed-size header fields: key id, boot id, sequence, timestamp, ack.
HEADER_FIELDS = [(3, 4), (4, 20), (20, 28), (28, 36), (OFF_ACK, OFF_BODY)]

Mutator = Callable[[random.Random, bytes, list[bytes]], bytes]


def random_view(rng: random.Random, node: str = "alpha") -> PeerView:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.é€"
    names = {"".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(rng.randint(0, 6))}
    others = [n for n in ("alpha", "beta", "gamma", "delta", "e" * 63, "ü" * 31) if n != node]

    def some() -> tuple[str, ...]:
        return tuple(rng.sample(others, rng.randint(0, len(others))))

    return PeerView(
        node=node,
        role=rng.choice(list(Role)),
        epoch=rng.choice([0, 1, 7, rng.randrange(EPOCH_MAX + 1)]),
        uplinks=tuple((name, rng.random() < 0.5) for name in sorted(names)),
        candidate=rng.random() < 0.5,
        yielding=rng.random() < 0.5,
        maintenance=rng.random() < 0.5,
        manual=rng.random() < 0.5,
        data_epoch=rng.choice([0, 0, 3, rng.randrange(EPOCH_MAX + 1)]),
        heard=some(),
        in_sync=some(),
        successor=rng.choice(["", "", *others]),
        order_id=rng.choice(["", "0badcafe", rng.randbytes(4).hex()]).replace("00000000", ""),
    )


# data epoch 0, no heard, no in_sync, no successor, no order id
V3_TAIL_OF_DEFAULTS = bytes(8) + b"\x00\x00\x00" + bytes(4)


def as_version_2(pkt: bytes) -> bytes:
    """A version 3 datagram of a view with the default multi-server fields, as the
    version 2 encoder sent it (same header, no version 3 fields), signed again."""
    assert pkt[2] == 3 and pkt[-MAC_SIZE - len(V3_TAIL_OF_DEFAULTS) : -MAC_SIZE] == (
        V3_TAIL_OF_DEFAULTS
    )
    body = pkt[:2] + b"\x02" + pkt[3 : -MAC_SIZE - len(V3_TAIL_OF_DEFAULTS)]
    return resign(body + bytes(MAC_SIZE), next(k for k in RING.keys if k.key_id == pkt[3]))


def valid_pool(rng: random.Random, count: int, now: float, ack: bytes = BETA_BOOT) -> list[bytes]:
    """Valid datagrams from alpha to beta, in sending order (increasing sequence numbers);
    about one in five as version 2 (the multi-server fields left at their defaults)."""
    tx = Sender("billing", "alpha", RING, b"A" * BOOT_ID_SIZE)
    tx.ack = ack
    pool: list[bytes] = []
    while len(pool) < count:
        if rng.random() < 0.1:  # the second key signs some: key id swaps stay plausible
            tx.keyring = Keyring(tuple(reversed(RING.keys)))
        try:
            view = random_view(rng)
            if rng.random() < 0.2:
                plain = dataclasses.replace(
                    view, data_epoch=0, heard=(), in_sync=(), successor="", order_id=""
                )
                pool.append(as_version_2(tx.encode(plain, now + len(pool) * 0.01)))
            else:
                pool.append(tx.encode(view, now + len(pool) * 0.01))
        except EncodeError:
            continue
        finally:
            tx.keyring = RING
    return pool


def length_offsets(pkt: bytes) -> list[int]:
    """Offsets of every length or count byte of a well-formed datagram."""
    offsets = [OFF_BODY]
    off = OFF_BODY + 1 + pkt[OFF_BODY]
    offsets.append(off)
    off += 1 + pkt[off] + 10  # node name, then role, epoch, flags
    offsets.append(off)
    count, off = pkt[off], off + 1
    for _ in range(count):
        offsets.append(off)
        off += 1 + pkt[off] + 1
    if pkt[2] != 3:
        return offsets
    off += 8  # data epoch
    for _ in range(2):  # heard, in_sync
        offsets.append(off)
        count, off = pkt[off], off + 1
        for _ in range(count):
            offsets.append(off)
            off += 1 + pkt[off]
    offsets.append(off)  # successor
    return offsets


def flip_bits(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    data = bytearray(pkt)
    for _ in range(rng.randint(1, 3)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def set_byte(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    data = bytearray(pkt)
    if data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def truncate(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    return pkt[: rng.randrange(len(pkt) + 1)]


def extend(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    size = rng.choice([1, 2, rng.randint(1, 64), MAX_DATAGRAM + 1 - len(pkt), 600, 1400])
    return pkt + rng.randbytes(max(size, 1))


def insert_or_delete(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    i = rng.randrange(len(pkt) + 1)
    if rng.random() < 0.5:
        return pkt[:i] + rng.randbytes(rng.randint(1, 8)) + pkt[i:]
    return pkt[:i] + pkt[i + rng.randint(1, 8) :]


def edit_length_byte(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    try:
        offsets = length_offsets(pkt)
    except IndexError:  # already mangled by an earlier mutation
        return set_byte(rng, pkt, pool)
    off = rng.choice(offsets)
    if off >= len(pkt):
        return pkt
    data = bytearray(pkt)
    data[off] = rng.choice([0, 1, 7, 8, 63, 64, 255, (data[off] + 1) % 256, (data[off] - 1) % 256])
    return bytes(data)


def swap_fields(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    """A field of another valid datagram spliced in, or two same-sized fields swapped."""
    other = rng.choice(pool)
    kind = rng.randrange(5)
    if kind == 0:  # one header field from the other datagram
        a, b = rng.choice(HEADER_FIELDS)
        return pkt[:a] + other[a:b] + pkt[b:]
    if kind == 1:  # the other datagram's body under this header and MAC
        return pkt[:OFF_BODY] + other[OFF_BODY:-MAC_SIZE] + pkt[-MAC_SIZE:]
    if kind == 2:  # the other datagram's MAC
        return pkt[:-MAC_SIZE] + other[-MAC_SIZE:]
    if kind == 3:  # boot id and ack swapped (a datagram reflected with roles reversed)
        return pkt[:4] + pkt[OFF_ACK:OFF_BODY] + pkt[20:OFF_ACK] + pkt[4:20] + pkt[OFF_BODY:]
    # sequence number and timestamp swapped
    return pkt[:20] + pkt[28:36] + pkt[20:28] + pkt[36:]


def header_edit(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    data = bytearray(pkt)
    i = rng.randrange(4)
    if i < len(data):
        data[i] = rng.choice([0, 1, 2, 3, 9, 255, ord("M"), ord("Q"), rng.randrange(256)])
    return bytes(data)


MUTATORS: list[Mutator] = [
    flip_bits,
    set_byte,
    truncate,
    extend,
    insert_or_delete,
    edit_length_byte,
    swap_fields,
    header_edit,
]


def mutate(rng: random.Random, pkt: bytes, pool: list[bytes]) -> bytes:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        pkt = rng.choice(MUTATORS)(rng, pkt, pool)
    return pkt


def random_datagram(rng: random.Random) -> bytes:
    """Noise, noise behind a valid magic and version, or well-framed noise with a bad MAC."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.choice([0, 1, 2, 3, rng.randint(0, 100), rng.randint(0, 700)]))
    version = rng.choice([b"\x02", b"\x03"])
    if kind == 1:
        return b"MQ" + version + rng.randbytes(rng.randint(0, 200))
    names = [rng.randbytes(rng.randint(0, 12)) for _ in range(rng.randint(0, 4))]
    body = b"MQ" + version + bytes([rng.choice([1, 2, 9])]) + rng.randbytes(48)
    body += bytes([7]) + b"billing" + bytes([5]) + b"alpha" + rng.randbytes(10)
    body += bytes([len(names)]) + b"".join(bytes([len(n)]) + n + b"\x01" for n in names)
    if version == b"\x03":
        body += rng.randbytes(8)
        for _ in range(2):
            listed = [rng.randbytes(rng.randint(0, 70)) for _ in range(rng.randint(0, 9))]
            body += bytes([len(listed)]) + b"".join(bytes([len(n)]) + n for n in listed)
        successor = rng.randbytes(rng.randint(0, 12))
        body += bytes([len(successor)]) + successor + rng.randbytes(4)  # order id
    return body + rng.randbytes(MAC_SIZE)


def beta(boot: bytes = BETA_BOOT) -> Receiver:
    return Receiver("billing", "beta", "alpha", RING, boot_id=boot)


def decode_checked(rx: Receiver, data: bytes, now: float) -> PeerView | Rejected:
    """Decode, and check the bookkeeping: never raises, exactly one count, a Reason."""
    before = dict(rx.counters)
    accepted = rx.accepted
    result = rx.decode(data, now)
    if isinstance(result, Rejected):
        assert isinstance(result.reason, Reason)
        assert not result.detail.startswith("internal error"), (result, data.hex())
        assert rx.accepted == accepted
        assert rx.counters[result.reason] == before[result.reason] + 1
        assert sum(rx.counters.values()) == sum(before.values()) + 1
    else:
        assert isinstance(result, PeerView)
        assert rx.accepted == accepted + 1 and rx.counters == before
    return result


# --- through the Receiver ----------------------------------------------------------


def test_random_datagrams_are_all_rejected() -> None:
    rng = random.Random(SEED)
    rx = beta()
    for i in range(1500):
        result = decode_checked(rx, random_datagram(rng), NOW)
        assert isinstance(result, Rejected), i
    assert rx.accepted == 0 and sum(rx.counters.values()) == 1500
    # the noise reached every stage before the MAC
    for r in (Reason.TRUNCATED, Reason.BAD_MAGIC, Reason.UNKNOWN_KEY, Reason.BAD_MAC):
        assert rx.counters[r] > 0, r


def test_mutated_datagrams_are_never_accepted() -> None:
    rng = random.Random(SEED + 1)
    pool = valid_pool(rng, 150, NOW)
    index = {pkt: i for i, pkt in enumerate(pool)}
    rx = beta()
    seen: set[bytes] = set()
    decoded = accepted = identical = 0
    for step in range(3000):
        if rng.random() < 0.05:  # now and then the next genuine one, in order
            data = pool[min(step // 20, len(pool) - 1)]
        else:
            data = mutate(rng, rng.choice(pool), pool)
        now = NOW + rng.uniform(0, 5)
        result = decode_checked(rx, data, now)
        decoded += 1
        if data in index:
            identical += data not in seen
        if isinstance(result, PeerView):
            accepted += 1
            assert data in index and data not in seen, (step, data.hex())
        if data in index:
            seen.add(data)
    assert rx.accepted == accepted > 0
    assert rx.accepted + sum(rx.counters.values()) == decoded
    assert accepted <= identical
    reached = {r for r, n in rx.counters.items() if n}  # each check before the MAC, and after
    assert reached >= {
        Reason.OVERSIZED,
        Reason.TRUNCATED,
        Reason.BAD_MAGIC,
        Reason.UNKNOWN_VERSION,
        Reason.UNKNOWN_KEY,
        Reason.BAD_MAC,
        Reason.MALFORMED,
        Reason.REPLAYED,
        Reason.LATE,
    }


def resign(data: bytes, key: Key = K1) -> bytes:
    body = data[:-MAC_SIZE]
    return body + hmac.new(key.secret, body, hashlib.sha256).digest()


def test_signed_junk_is_accepted_only_in_canonical_form() -> None:
    """A peer holding the key but sending mangled fields (a bug, another build): decode
    never raises, and whatever it accepts is exactly what an honest Sender would send."""
    rng = random.Random(SEED + 2)
    pool = valid_pool(rng, 100, NOW)
    accepted = 0
    versions = {2: 0, 3: 0}
    for _ in range(1500):
        data = mutate(rng, rng.choice(pool), pool)
        if len(data) <= MAC_SIZE:
            continue
        data = resign(data)
        ts = struct.unpack_from("!Q", data, 28)[0] if len(data) >= 36 else 0
        result = decode_checked(beta(), data, ts / 1000 if rng.random() < 0.8 else NOW)
        if isinstance(result, PeerView):
            accepted += 1
            honest = Sender("billing", "alpha", RING, data[4:20])
            honest.ack = data[OFF_ACK:OFF_BODY]
            again = honest.encode(result, NOW)
            if data[2] == 2:  # still decoded: what the version 2 encoder would have sent
                versions[2] += 1
                again = as_version_2(again)
            else:
                versions[3] += 1
            assert again[OFF_BODY:-MAC_SIZE] == data[OFF_BODY:-MAC_SIZE], data.hex()
            assert data[2] in (2, 3) and len(data) == len(again)
    assert accepted > 0  # the canonical check above did run
    assert versions[2] > 0 and versions[3] > 0, versions


# --- restarts under replay: hypothesis drives the interleaving ----------------------


class RestartsUnderReplay(RuleBasedStateMachine):
    """Two agents exchange datagrams over a lossy, reordering network, restart at any
    moment, and an attacker replays anything ever sent, all within the freshness window.

    Safety: no receiver accepts a datagram made before it started, nor one twice.
    Liveness: after any history, a clean exchange gets both sides accepting again.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = NOW
        self.starts = 0
        self.agents: dict[str, tuple[Sender, Receiver, int]] = {}
        self.wire: list[tuple[str, bytes, int]] = []  # (to, datagram, made at event)
        self.recorded: list[tuple[str, bytes, int]] = []
        self.events = 0
        self.accepted: dict[int, set[bytes]] = {}
        for node in ("alpha", "beta"):
            self._start(node)

    def _start(self, node: str) -> None:
        self.starts += 1
        boot = self.starts.to_bytes(BOOT_ID_SIZE, "big")
        peer = "beta" if node == "alpha" else "alpha"
        self.events += 1
        self.agents[node] = (
            Sender("billing", node, RING, boot),
            Receiver("billing", node, peer, RING, boot_id=boot),
            self.events,
        )
        self.accepted[self.events] = set()

    def _send(self, node: str) -> bytes:
        tx, rx, _ = self.agents[node]
        tx.ack = rx.ack_for_peer
        self.now += 0.01
        self.events += 1
        pkt = tx.encode(random_view(random.Random(self.events), node), self.now)
        to = "beta" if node == "alpha" else "alpha"
        self.wire.append((to, pkt, self.events))
        self.recorded.append((to, pkt, self.events))
        return pkt

    def _hear(self, to: str, pkt: bytes, made: int) -> PeerView | Rejected:
        _, rx, started = self.agents[to]
        result = decode_checked(rx, pkt, self.now)
        if isinstance(result, PeerView):
            assert made > started, "accepted a datagram made before this receiver started"
            assert pkt not in self.accepted[started], "accepted the same datagram twice"
            self.accepted[started].add(pkt)
        else:
            assert result.reason is not Reason.STALE
        return result

    @rule(node=st.sampled_from(["alpha", "beta"]))
    def send(self, node: str) -> None:
        self._send(node)

    @precondition(lambda self: self.wire)
    @rule(i=st.integers(min_value=0), drop=st.booleans())
    def deliver_or_drop(self, i: int, drop: bool) -> None:
        to, pkt, made = self.wire.pop(i % len(self.wire))
        if not drop:
            self._hear(to, pkt, made)

    @precondition(lambda self: self.recorded)
    @rule(i=st.integers(min_value=0))
    def replay(self, i: int) -> None:
        self._hear(*self.recorded[i % len(self.recorded)])

    @rule(node=st.sampled_from(["alpha", "beta"]))
    def restart(self, node: str) -> None:
        self._start(node)

    @invariant()
    def recovers_after_one_round_trip(self) -> None:
        """On copies of both agents, whatever happened so far: alpha speaks, then beta
        (accepted: it acks alpha's start), then each again (accepted)."""
        copies = {n: _clone(tx, rx) for n, (tx, rx, _) in self.agents.items()}
        now = self.now
        results: list[bool] = []
        for node in ("alpha", "beta", "alpha", "beta"):
            tx, rx = copies[node]
            tx.ack = rx.ack_for_peer
            now += 0.01
            pkt = tx.encode(random_view(random.Random(0), node), now)
            other = copies["beta" if node == "alpha" else "alpha"][1]
            results.append(isinstance(other.decode(pkt, now), PeerView))
        assert results[1:] == [True, True, True], results


def _clone(tx: Sender, rx: Receiver) -> tuple[Sender, Receiver]:
    """Independent copies of an agent's Sender and Receiver (their whole state)."""
    return copy.deepcopy(tx), copy.deepcopy(rx)


RestartsUnderReplay.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, derandomize=True, deadline=None
)
test_restarts_under_replay = RestartsUnderReplay.TestCase


# --- through a real PeerLink on loopback -------------------------------------------


def test_fuzz_through_a_real_peerlink() -> None:
    rng = random.Random(SEED + 3)
    sent_from: dict[str, int] = {"a": 0, "b": 0, "stranger": 0}

    async def scenario() -> None:
        async with loopback() as h:
            link = h.peerlink
            ring = link.receiver.keyring
            twin = Receiver("billing", "alpha", "beta", ring, boot_id=link.boot_id)
            pool = _beta_pool(rng, link.boot_id)
            valid = set(pool)
            # one report per network and reason of a read (every 50: one read each)
            expected: list[tuple[str, str]] = []
            read: list[tuple[str, str]] = []
            cases = 0
            while cases < 900:
                data = random_datagram(rng) if rng.random() < 0.3 else _mutate_beta(rng, pool)
                if data in valid:
                    continue
                cases += 1
                source = rng.choice(["a", "a", "b", "stranger"])
                h.send(data, source)
                sent_from[source] += 1
                if source != "stranger":
                    result = twin.decode(data[: MAX_DATAGRAM + 1], time.time())
                    assert isinstance(result, Rejected)
                    if (source, result.reason.value) not in read:
                        read.append((source, result.reason.value))
                if cases % 50 == 0:  # never more than the socket buffer holds
                    await h.settle()
                    expected += read
                    read = []
            await h.settle()
            expected += read
            assert h.delivered == []
            assert [(n, r) for n, r, _ in h.reported] == expected
            assert link.foreign == sent_from["stranger"]
            assert link.receiver.counters == twin.counters

    run(scenario)
    assert all(n > 0 for n in sent_from.values())


def _beta_pool(rng: random.Random, alpha_boot: bytes) -> list[bytes]:
    """Valid datagrams from beta to the link (acking its start), fresh by the wall clock."""
    tx = Sender("billing", "beta", RING, b"B" * BOOT_ID_SIZE)
    tx.ack = alpha_boot
    now = time.time()
    pool: list[bytes] = []
    while len(pool) < 60:
        try:
            pool.append(tx.encode(random_view(rng, "beta"), now))
        except EncodeError:
            continue
    return pool


def _mutate_beta(rng: random.Random, pool: list[bytes]) -> bytes:
    return mutate(rng, rng.choice(pool), pool)


def test_loopback_harness_counts_what_it_sends() -> None:
    """The harness itself: a stranger's datagram is only counted, never reported."""

    async def scenario() -> None:
        async with loopback() as h:
            assert isinstance(h, Loopback)
            h.send(b"hello", "stranger")
            h.send(b"hello", "b")
            await h.settle()
            assert h.peerlink.foreign == 1
            assert h.reported == [("b", "bad-magic", "")]

    run(scenario)
