"""The UDP peer protocol: encoding and decoding of peer messages.

Pure code: no sockets, no clock reads; whatever needs time takes `now`
(wall-clock seconds, as from time.time()) as a parameter.

Packet layout, version 2 (network byte order; offsets in bytes)::

    off  size  field
      0     2  magic            b"MQ"
      2     1  version          2
      3     1  key id           1..255, the key that made the MAC
      4    16  boot id          random per agent start
     20     8  sequence         u64, strictly increasing per boot id (first is 1)
     28     8  timestamp        u64, wall-clock milliseconds since the epoch
     36    16  ack              the RECEIVER's boot id as the sender last learned it
                                (all zeros: the sender has heard no datagram of it yet)
     52     1  cluster length   C (1..255)
     53     C  cluster name     UTF-8, printable
      .     1  node length      N (1..255)
      .     N  node name        UTF-8, printable: the sender, = PeerView.node
      .     1  role             1 WAITING, 2 STANDBY, 3 PROMOTING, 4 ACTIVE, 5 DEMOTING
      .     8  epoch            i64, must be >= 0
      .     1  flags            bit 0 candidate, 1 maintenance, 2 manual, 3 yielding; others 0
      .     1  uplink count     U (0..255), then U times:
      .     1    name length    L (1..255)
      .     L    network name   UTF-8, printable, unique in the message
      .     1    healthy        0 or 1
    end-32 32  HMAC-SHA256(secret of key id, every byte before it)

The whole datagram is at most MAX_DATAGRAM (512) bytes. Version 1 (without
the ack) is rejected as UNKNOWN_VERSION.

Decoding order: size, magic, version, then a walk over the length bytes only
(TRUNCATED / trailing bytes), then the key id and the MAC. Nothing else is
interpreted before the MAC has been verified.

Why the ack: the replay window lives in memory, so a freshly started receiver
has no record of what its previous run accepted. A datagram is accepted only
if its ack is the receiver's current boot id, which is random per start and
reaches the peer only in datagrams sent after that start: a datagram recorded
before the receiver started carries an older ack (or zeros) and is never
accepted after it (UNCONFIRMED). The receiver still learns the sender's boot
id from such an authentic, fresh datagram (only from one newer than the last
it learned from), and its own sender puts that into the ack: after both
agents restart, messages flow again after about one heartbeat round trip.
"""

from __future__ import annotations

import collections
import enum
import hmac
import math
import secrets
import struct
from collections.abc import Hashable
from dataclasses import dataclass

from mosqit_failover.authkeys import Keyring
from mosqit_failover.events import PeerView, Role

MAGIC = b"MQ"
VERSION = 2
MAX_DATAGRAM = 512
MAC_SIZE = 32
BOOT_ID_SIZE = 16
MAX_NAME_BYTES = 255
MAX_UPLINKS = 255
DEFAULT_WINDOW = 30.0
REPLAY_WINDOW = 64  # sequence numbers remembered behind the newest
RETIRED_STARTS = 64  # boot ids of the peer's earlier starts, never accepted again
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1

# magic, version, key id, boot id, seq, timestamp ms, ack (the receiver's boot id)
_HEADER = struct.Struct("!2sBB16sQQ16s")
NO_ACK = bytes(BOOT_ID_SIZE)  # the ack of a sender that has heard no datagram of the receiver
_VIEW = struct.Struct("!BqB")  # role, epoch, flags
_U8 = struct.Struct("!B")
_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1

# Explicit codes, so that reordering the Role enum never changes the wire.
_ROLE_CODES: dict[Role, int] = {
    Role.WAITING: 1,
    Role.STANDBY: 2,
    Role.PROMOTING: 3,
    Role.ACTIVE: 4,
    Role.DEMOTING: 5,
}
_CODE_ROLES: dict[int, Role] = {code: role for role, code in _ROLE_CODES.items()}
assert set(_ROLE_CODES) == set(Role), "every Role needs a wire code"

_FLAG_CANDIDATE = 0x01
_FLAG_MAINTENANCE = 0x02
_FLAG_MANUAL = 0x04
_FLAG_YIELDING = 0x08
_FLAGS_KNOWN = _FLAG_CANDIDATE | _FLAG_MAINTENANCE | _FLAG_MANUAL | _FLAG_YIELDING

# Smallest possible datagram: header, 1-byte cluster, 1-byte node, view, no uplinks, MAC.
MIN_DATAGRAM = _HEADER.size + 2 + 2 + _VIEW.size + 1 + MAC_SIZE


class EncodeError(ValueError):
    """The view or the names cannot be put on the wire (too large, invalid)."""


class Reason(enum.Enum):
    """Why a datagram was dropped."""

    OVERSIZED = "oversized"
    TRUNCATED = "truncated"
    BAD_MAGIC = "bad-magic"
    UNKNOWN_VERSION = "unknown-version"
    UNKNOWN_KEY = "unknown-key"
    BAD_MAC = "bad-mac"
    WRONG_CLUSTER = "wrong-cluster"
    FROM_SELF = "from-self"
    UNKNOWN_SENDER = "unknown-sender"
    REPLAYED = "replayed"
    LATE = "late"  # authentic, unseen, but older than one already accepted (reordered)
    UNCONFIRMED = "unconfirmed"  # the peer has not yet heard this agent's current start
    STALE = "stale"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Rejected:
    """A dropped datagram: the reason, and a short detail for the log.

    `detail` never contains unauthenticated strings from the datagram.
    """

    reason: Reason
    detail: str = ""


def new_boot_id() -> bytes:
    """A fresh random boot id (one per agent start)."""
    return secrets.token_bytes(BOOT_ID_SIZE)


def _boot_id_bytes(what: str, value: bytes) -> bytes:
    if len(value) != BOOT_ID_SIZE:
        raise ValueError(f"{what} must be {BOOT_ID_SIZE} bytes, not {len(value)}")
    return bytes(value)


def _name_bytes(what: str, name: str) -> bytes:
    if not name or not name.isprintable():
        raise EncodeError(f"{what} {name!r} must be non-empty and printable")
    data = name.encode("utf-8")
    if len(data) > MAX_NAME_BYTES:
        raise EncodeError(f"{what} {name!r} is longer than {MAX_NAME_BYTES} bytes")
    return data


def _put_name(out: bytearray, data: bytes) -> None:
    out += _U8.pack(len(data))
    out += data


def _mac(secret: bytes, body: bytes | bytearray) -> bytes:
    return hmac.digest(secret, body, "sha256")


class Sender:
    """Encodes this node's PeerView into signed datagrams.

    `keyring` is a public attribute: assign a reloaded keyring to rotate keys
    without a restart. `ack` is the peer's boot id as this node last learned
    it (`Receiver.ack_for_peer` of the Receiver sharing this boot id); the
    owner keeps it current, the peer accepts nothing until it is.
    """

    def __init__(
        self, cluster: str, node: str, keyring: Keyring, boot_id: bytes | None = None
    ) -> None:
        self._cluster = _name_bytes("cluster name", cluster)
        self._node_bytes = _name_bytes("node name", node)
        self.cluster = cluster
        self.node = node
        self.keyring = keyring
        if boot_id is None:
            boot_id = new_boot_id()
        self.boot_id = _boot_id_bytes("boot id", boot_id)
        self._ack = NO_ACK
        self._seq = 0

    @property
    def ack(self) -> bytes:
        """The receiver's boot id as last learned (NO_ACK before any), sent in every datagram."""
        return self._ack

    @ack.setter
    def ack(self, value: bytes) -> None:
        self._ack = _boot_id_bytes("ack", value)

    @property
    def seq(self) -> int:
        """The sequence number of the last datagram encoded (0 before the first)."""
        return self._seq

    def encode(self, view: PeerView, now: float) -> bytes:
        """Sign `view` into one datagram; raises EncodeError if it cannot be sent."""
        if view.node != self.node:
            raise EncodeError(f"view is of node {view.node!r}, this sender is {self.node!r}")
        if not math.isfinite(now) or now < 0:
            raise EncodeError(f"timestamp {now!r} is not a valid wall-clock time")
        ts_ms = round(now * 1000)
        if ts_ms > _U64_MAX:
            raise EncodeError(f"timestamp {now!r} is out of range")
        if not isinstance(view.role, Role):
            raise EncodeError(f"role {view.role!r} is not a Role")
        if isinstance(view.epoch, bool) or not isinstance(view.epoch, int):
            raise EncodeError(f"epoch {view.epoch!r} is not an integer")
        if not 0 <= view.epoch <= _I64_MAX:
            raise EncodeError(f"epoch {view.epoch} outside 0..2**63-1")
        if len(view.uplinks) > MAX_UPLINKS:
            raise EncodeError(f"{len(view.uplinks)} uplinks, at most {MAX_UPLINKS}")
        if self._seq >= _U64_MAX:
            raise EncodeError("sequence number exhausted; restart with a new boot id")
        flags = (
            (_FLAG_CANDIDATE if view.candidate else 0)
            | (_FLAG_MAINTENANCE if view.maintenance else 0)
            | (_FLAG_MANUAL if view.manual else 0)
            | (_FLAG_YIELDING if view.yielding else 0)
        )
        seq = self._seq + 1
        key = self.keyring.signing
        out = bytearray(
            _HEADER.pack(MAGIC, VERSION, key.key_id, self.boot_id, seq, ts_ms, self._ack)
        )
        _put_name(out, self._cluster)
        _put_name(out, self._node_bytes)
        out += _VIEW.pack(_ROLE_CODES[view.role], view.epoch, flags)
        out += _U8.pack(len(view.uplinks))
        seen: set[str] = set()
        for network, healthy in view.uplinks:
            if network in seen:
                raise EncodeError(f"uplink {network!r} listed twice")
            seen.add(network)
            _put_name(out, _name_bytes("network name", network))
            out += _U8.pack(1 if healthy else 0)
        if len(out) + MAC_SIZE > MAX_DATAGRAM:
            raise EncodeError(
                f"message would be {len(out) + MAC_SIZE} bytes, at most {MAX_DATAGRAM}"
            )
        out += _mac(key.secret, out)
        self._seq = seq
        return bytes(out)


def _walk(data: bytes) -> int | None:
    """Offset where the MAC should start, from the length bytes only; None if cut short."""
    n = len(data)
    off = _HEADER.size
    for _ in range(2):  # cluster, node
        if off >= n:
            return None
        off += 1 + data[off]
    off += _VIEW.size
    if off >= n:
        return None
    count = data[off]
    off += 1
    for _ in range(count):
        if off >= n:
            return None
        off += 1 + data[off] + 1  # length, name, healthy
    return off


class _Malformed(Exception):
    pass


class _Reader:
    """Reads the authenticated body; every problem is _Malformed."""

    def __init__(self, data: bytes, off: int, end: int) -> None:
        self.data = data
        self.off = off
        self.end = end

    def take(self, size: int) -> bytes:
        if self.off + size > self.end:
            raise _Malformed("field runs past the end")
        out = self.data[self.off : self.off + size]
        self.off += size
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def name(self, what: str) -> str:
        raw = self.take(self.u8())
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed(f"{what} is not UTF-8") from None
        if not text or not text.isprintable():
            raise _Malformed(f"{what} is empty or not printable")
        return text


class Receiver:
    """Checks and decodes datagrams from the one peer.

    `boot_id` is this agent's own boot id, the one its Sender signs with.

    Every datagram must be authentic, well-formed and fresh: its timestamp
    within ±window of `now` (so the two nodes' clocks must agree to within the
    window). Then, in this order:
    - its boot id must not be one that a later start of the peer replaced
      (REPLAYED): once a datagram of a new start was accepted, the earlier
      start's are never accepted again, whatever their timestamps say (a peer
      whose clock was ahead before its restart would win them back otherwise);
    - learning: if its timestamp is newer than that of every datagram learned
      from before, its boot id becomes `ack_for_peer` (accepted or not, so a
      replayed older datagram cannot move it back);
    - the ack must be `boot_id`, else UNCONFIRMED: the datagram was made
      before the peer heard of this agent's current start (possibly before
      this receiver existed, and its in-memory window knows nothing of it);
    - its boot id must be the learned one (else REPLAYED: an earlier start of
      the peer than the newest heard of), and its sequence number greater
      than the last accepted one of that boot id (64-deep window: an unseen
      older one is LATE, a seen one REPLAYED), or the boot id is new (the
      peer's agent restarted) with a timestamp later than every datagram
      accepted before.

    `keyring` is a public attribute: assign a reloaded keyring to rotate keys.
    """

    def __init__(
        self,
        cluster: str,
        node: str,
        peer: str,
        keyring: Keyring,
        window: float = DEFAULT_WINDOW,
        *,
        boot_id: bytes,
    ) -> None:
        if not window > 0:
            raise ValueError(f"window must be positive, not {window!r}")
        self.boot_id = _boot_id_bytes("boot id", boot_id)
        if self.boot_id == NO_ACK:
            raise ValueError("boot id must not be all zeros (that is the ack of no start)")
        self.cluster = cluster
        self.node = node
        self.peer = peer
        self.keyring = keyring
        self.window = window
        self.counters: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.accepted = 0
        self._boot_id: bytes | None = None
        self._last_seq = 0
        self._seen = 0  # bit i set: seq last_seq - i was accepted (anti-replay window)
        self._max_ts_ms = -1
        self._learned = NO_ACK
        self._learned_ts_ms = -1
        self._retired: collections.deque[bytes] = collections.deque(maxlen=RETIRED_STARTS)

    @property
    def peer_boot_id(self) -> bytes | None:
        """The boot id of the peer's last accepted datagram (None before the first)."""
        return self._boot_id

    @property
    def ack_for_peer(self) -> bytes:
        """What this agent's Sender must put in its ack: the peer's boot id from the
        newest authentic, fresh datagram, accepted or not (NO_ACK before the first)."""
        return self._learned

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def decode(self, data: bytes, now: float) -> PeerView | Rejected:
        """The peer's view, or why the datagram was dropped. Never raises."""
        try:
            result = self._decode(data, now)
        except Exception as e:  # a bug here must not stop the agent; count it
            result = Rejected(Reason.MALFORMED, f"internal error: {type(e).__name__}")
        if isinstance(result, Rejected):
            self.counters[result.reason] += 1
        else:
            self.accepted += 1
        return result

    def _decode(self, raw: bytes, now: float) -> PeerView | Rejected:
        data = bytes(raw)
        n = len(data)
        if n > MAX_DATAGRAM:
            return Rejected(Reason.OVERSIZED, f"{n} bytes > {MAX_DATAGRAM}")
        if n < len(MAGIC):
            return Rejected(Reason.TRUNCATED, f"{n} bytes")
        if data[: len(MAGIC)] != MAGIC:
            return Rejected(Reason.BAD_MAGIC)
        if n < len(MAGIC) + 1:
            return Rejected(Reason.TRUNCATED, f"{n} bytes")
        if data[2] != VERSION:
            return Rejected(Reason.UNKNOWN_VERSION, f"version {data[2]}")
        if n < MIN_DATAGRAM:
            return Rejected(Reason.TRUNCATED, f"{n} bytes")
        body_end = _walk(data)
        if body_end is None or body_end + MAC_SIZE > n:
            return Rejected(Reason.TRUNCATED, f"{n} bytes")
        if body_end + MAC_SIZE < n:
            return Rejected(Reason.MALFORMED, f"{n - body_end - MAC_SIZE} trailing bytes")

        # Authenticate before interpreting anything else.
        key_id = data[3]
        secret = self.keyring.secret_for(key_id)
        if secret is None:
            return Rejected(Reason.UNKNOWN_KEY, f"key id {key_id}")
        if not hmac.compare_digest(_mac(secret, data[:body_end]), data[body_end:]):
            return Rejected(Reason.BAD_MAC, f"key id {key_id}")

        _, _, _, boot_id, seq, ts_ms, ack = _HEADER.unpack_from(data, 0)
        reader = _Reader(data, _HEADER.size, body_end)
        try:
            cluster = reader.name("cluster name")
            if cluster != self.cluster:
                return Rejected(Reason.WRONG_CLUSTER, f"cluster {cluster!r}")
            sender = reader.name("node name")
            if sender == self.node:
                return Rejected(Reason.FROM_SELF)
            if sender != self.peer:
                return Rejected(Reason.UNKNOWN_SENDER, f"node {sender!r}")
            view = self._read_view(reader, sender)
        except _Malformed as e:
            return Rejected(Reason.MALFORMED, str(e))
        if reader.off != body_end:  # cannot happen after _walk; kept as a guard
            return Rejected(Reason.MALFORMED, "trailing bytes")
        if seq == 0:
            return Rejected(Reason.MALFORMED, "sequence number 0")

        if not math.isfinite(now):
            return Rejected(Reason.STALE, "local clock is not finite")
        skew = ts_ms / 1000.0 - now
        if abs(skew) > self.window:
            return Rejected(Reason.STALE, f"timestamp {skew:+.3f}s from local clock")

        if boot_id in self._retired:
            return Rejected(Reason.REPLAYED, "from a start of the peer that a later one replaced")
        if ts_ms > self._learned_ts_ms:
            self._learned = boot_id
            self._learned_ts_ms = ts_ms
        if ack != self.boot_id:
            return Rejected(
                Reason.UNCONFIRMED,
                "the peer has heard no start of this agent yet"
                if ack == NO_ACK
                else "the peer acknowledges an earlier start of this agent",
            )

        if boot_id != self._learned:  # ts not newer than one of the peer's later start
            return Rejected(Reason.REPLAYED, "from an earlier start of the peer than the newest")
        if boot_id == self._boot_id:
            if seq <= self._last_seq:
                return self._older(seq)
            shift = seq - self._last_seq
            self._seen = ((self._seen << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
        elif ts_ms <= self._max_ts_ms:
            return Rejected(
                Reason.REPLAYED, "other boot id, not newer than the last accepted message"
            )
        else:
            self._seen = 1
            if self._boot_id is not None:
                self._retired.append(self._boot_id)

        self._boot_id = boot_id
        self._last_seq = seq
        self._max_ts_ms = max(self._max_ts_ms, ts_ms)
        return view

    def _older(self, seq: int) -> Rejected:
        """An authentic datagram older than the newest: a replay, or one that came late
        (the copies on the two networks can arrive in either order). A late one is
        marked seen so it cannot be replayed, and dropped: its view is already stale."""
        age = self._last_seq - seq
        if age >= REPLAY_WINDOW or self._seen >> age & 1:
            return Rejected(Reason.REPLAYED, f"seq {seq}, last {self._last_seq}")
        self._seen |= 1 << age
        return Rejected(Reason.LATE, f"seq {seq}, last {self._last_seq}")

    @staticmethod
    def _read_view(reader: _Reader, sender: str) -> PeerView:
        role_code, epoch, flags = _VIEW.unpack(reader.take(_VIEW.size))
        role = _CODE_ROLES.get(role_code)
        if role is None:
            raise _Malformed(f"unknown role code {role_code}")
        if epoch < 0:
            raise _Malformed(f"negative epoch {epoch}")
        if flags & ~_FLAGS_KNOWN:
            raise _Malformed(f"unknown flags 0x{flags:02x}")
        uplinks: list[tuple[str, bool]] = []
        seen: set[str] = set()
        for _ in range(reader.u8()):
            network = reader.name("network name")
            if network in seen:
                raise _Malformed(f"network {network!r} listed twice")
            seen.add(network)
            healthy = reader.u8()
            if healthy not in (0, 1):
                raise _Malformed(f"uplink health byte {healthy}")
            uplinks.append((network, healthy == 1))
        return PeerView(
            node=sender,
            role=role,
            epoch=epoch,
            uplinks=tuple(uplinks),
            candidate=bool(flags & _FLAG_CANDIDATE),
            yielding=bool(flags & _FLAG_YIELDING),
            maintenance=bool(flags & _FLAG_MAINTENANCE),
            manual=bool(flags & _FLAG_MANUAL),
        )


class RateLimitedLog:
    """Decides when to log repeated rejections: at most once per `interval` per key.

    `check(key, now)` returns None when the caller should stay quiet, or the
    number of occurrences suppressed since the last logged one (0 the first
    time) when it should log now.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def check(self, key: Hashable, now: float) -> int | None:
        last = self._last.get(key)
        if last is not None and 0 <= now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
