"""The UDP peer protocol: encoding and decoding of peer messages.

Pure code: no sockets, no clock reads; whatever needs time takes `now`
(wall-clock seconds, as from time.time()) as a parameter.

Packet layout, versions 3 to 5 (network byte order; offsets in bytes)::

    off  size  field
      0     2  magic            b"MQ"
      2     1  version          3, 4 or 5 (2 is still decoded, see below)
      3     1  key id           1..255, the key that made the MAC
      4    16  boot id          random per agent start
     20     8  sequence         u64, strictly increasing per boot id (first is 1)
     28     8  timestamp        u64, wall-clock milliseconds since the epoch
     36    16  ack              the RECEIVER's boot id as the sender last learned it
                                (all zeros: the sender has heard no datagram of it yet);
                                one receiver's, so every destination gets its own datagram
     52     1  cluster length   C (1..255)
     53     C  cluster name     UTF-8, printable
      .     1  node length      N (1..255)
      .     N  node name        UTF-8, printable: the sender, = PeerView.node
      .     1  role             1 WAITING, 2 STANDBY, 3 PROMOTING, 4 ACTIVE, 5 DEMOTING
      .     8  epoch            i64, 0..EPOCH_MAX (10**15)
      .     1  flags            bit 0 candidate, 1 maintenance, 2 manual, 3 yielding; others 0
      .     1  uplink count     U (0..255), then U times:
      .     1    name length    L (1..255)
      .     L    network name   UTF-8, printable, unique in the message
      .     1    healthy        0 or 1
      .     8  data epoch       i64, 0..EPOCH_MAX                          (version 3 on)
      .     1  heard count      H (0..MAX_LISTED_NODES = 7), then H times: (version 3 on)
      .     1    name length    L (1..MAX_NODE_NAME_BYTES = 63)
      .     L    node name      UTF-8, printable, unique in the list, not the sender
      .     1  in-sync count    S (0..7), then S node names as for heard   (version 3 on)
      .     1  successor length L (0..63; 0: no successor)                  (version 3 on)
      .     L  successor        UTF-8, printable, not the sender           (version 3 on)
      .     4  order id         the sender's cluster.order digest (zeros: none) (version 3 on)
      .     8  commit           u64, synchronous-mode commits applied (PeerView.commit)
                                                                            (version 4 on)
      .     1  hung count       G (1..7), then G node names as for heard, none of them
                                in heard, H + G at most 7 (PeerView.hung) (version 5 only)
    end-32 32  HMAC-SHA256(secret of key id, BINDING + every byte before it)

BINDING (not sent) is what ties a datagram to the two addresses it goes between:
a tag (b"\\0mq-bind\\0", which no datagram begins with) and the sender's and the
receiver's configured IPv4 addresses on the network it is sent on (`binding`).
Without it, two clusters that share the cluster name, the node names and the
secret (cloned from one template) accepted each other's datagrams once someone
forwarded them with forged source addresses: a helper's splice left one pair with
two VIP holders. A datagram with an empty binding (the MAC over the bytes alone)
is what agents before it send: the receiver accepts that too, and its Sender then
signs so for that peer as long as the peer's newest datagram does
(`Receiver.unbound`), so a rolling upgrade keeps talking; but not from a peer
that has signed a binding since this agent started (BAD_MAC "without the
addresses"): only another cluster's agents from before it still send such.

The encoder sends version 5 only for a view that names a hung peer (its commit may
then be 0), else version 4 for a view whose commit is not 0 (a standby of a
synchronous directory that applied commits), else version 3, byte for byte as before:
a cluster without synchronous mode keeps talking to agents that decode only 2 and 3,
except for the seconds in which a node reports a peer whose agent hangs.

Version 2 is the same up to the uplinks, then the MAC. It is still decoded
(data_epoch 0, heard and in_sync empty, no successor, no order id), so during a rolling
upgrade an upgraded node keeps hearing an un-upgraded one; the encoder never
sends 2. An un-upgraded (version 2) agent rejects version 3 as UNKNOWN_VERSION
from the upgraded node's own address: its core counts that as an alive peer
failing authentication, so it never promotes past it, but it hears no view
either until it is upgraded too. Version 1 (without the ack) is rejected as
UNKNOWN_VERSION.

The whole datagram is at most MAX_DATAGRAM (1336) bytes: the largest valid
config (8 nodes, two networks, every cluster, node and network name 63 bytes
long as config.py allows, in_sync full, heard and hung sharing the other 7 names,
a successor, a commit) fits exactly, under a
1472-byte UDP payload (1500-byte MTU); the encoder refuses anything larger
(longer names within the per-field 255 still encode while the total fits).

Decoding order: size, magic, version, then a walk over the length bytes only
(TRUNCATED / trailing bytes; skipped for a body byte-identical to one already
parsed, whose walk ended where the MAC starts), then the key id and the MAC. Nothing else is
interpreted before the MAC has been verified. Bounds on the counts and name
lengths of the version-3 fields, and every name in them, are checked after the
MAC (MALFORMED), since only a key holder could have sent them.

Several peers: one Receiver keeps the replay state (learned boot id, ack,
window, retired starts) per configured peer, keyed by the sender name that the
MAC covers, so no peer's datagrams ever touch another's state. A datagram
made for another destination carries that node's boot id as its ack and is
UNCONFIRMED here.

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
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from mosqit_failover.authkeys import Keyring
from mosqit_failover.events import COMMIT_MAX, EPOCH_MAX, PeerView, Role

MAGIC = b"MQ"
VERSION_HUNG = 5  # what the encoder sends for a view that names a hung peer
VERSION = 4  # for a view with a commit (and no hung peer)
VERSION_NO_COMMIT = 3
DECODED_VERSIONS = (2, 3, 4, 5)
MAC_SIZE = 32
BOOT_ID_SIZE = 16
MAX_NAME_BYTES = 255  # any one name field of the wire (one length byte)
MAX_UPLINKS = 255
MAX_NODES = 8  # as config.MAX_NODES
MAX_NODE_NAME_BYTES = 63  # the longest node, network or cluster name config.py accepts
MAX_LISTED_NODES = MAX_NODES - 1  # heard, in_sync, heard + hung: every node but the sender
CONFIG_NETWORKS = 2  # config.py: exactly two networks
DEFAULT_WINDOW = 30.0
REPLAY_WINDOW = 64  # sequence numbers remembered behind the newest
RETIRED_STARTS = 64  # boot ids of the peer's earlier starts, never accepted again
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1

# magic, version, key id, boot id, seq, timestamp ms, ack (the receiver's boot id)
_HEADER = struct.Struct("!2sBB16sQQ16s")
NO_ACK = bytes(BOOT_ID_SIZE)  # the ack of a sender that has heard no datagram of the receiver
_VIEW = struct.Struct("!BqB")  # role, epoch, flags
_U8 = struct.Struct("!B")
_I64 = struct.Struct("!q")  # data epoch (version 3)
_U64 = struct.Struct("!Q")  # commit (version 4)
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

# Smallest possible datagram: header, 1-byte cluster, 1-byte node, view, no uplinks, MAC
# (version 2; a version 3 one adds the data epoch, two empty lists and no successor).
MIN_DATAGRAM = _HEADER.size + 2 + 2 + _VIEW.size + 1 + MAC_SIZE
ORDER_ID_SIZE = 4  # config.order_id: the first 4 bytes of a SHA-256 of cluster.order
_V3_TAIL_MIN = _I64.size + 1 + 1 + 1 + ORDER_ID_SIZE
MIN_DATAGRAM_V3 = MIN_DATAGRAM + _V3_TAIL_MIN
_MIN_BY_VERSION = {
    2: MIN_DATAGRAM,
    3: MIN_DATAGRAM_V3,
    4: MIN_DATAGRAM_V3 + _U64.size,
    5: MIN_DATAGRAM_V3 + _U64.size + 1 + 2,  # one hung name of one byte
}

_LONGEST_NAME = 1 + MAX_NODE_NAME_BYTES  # length byte and name
# The largest datagram of a valid config: every name 63 bytes, 8 nodes, both lists full.
MAX_DATAGRAM = (
    _HEADER.size
    + 2 * _LONGEST_NAME  # cluster, node
    + _VIEW.size
    + 1
    + CONFIG_NETWORKS * (_LONGEST_NAME + 1)  # uplinks: name, healthy
    + _I64.size
    + 2 * (1 + MAX_LISTED_NODES * _LONGEST_NAME)  # heard, in_sync
    + _LONGEST_NAME  # successor
    + ORDER_ID_SIZE
    + _U64.size  # commit
    + 1  # hung count: its names come out of heard's (a peer is in one list or neither)
    + MAC_SIZE
)
assert MAX_DATAGRAM == 1336 and MAX_DATAGRAM <= 1472, "keep it in one UDP payload"


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


def _node_name_bytes(what: str, name: object, sender: str) -> bytes:
    if not isinstance(name, str):
        raise EncodeError(f"{what} {name!r} is not a string")
    data = _name_bytes(what, name)
    if len(data) > MAX_NODE_NAME_BYTES:
        raise EncodeError(f"{what} {name!r} is longer than {MAX_NODE_NAME_BYTES} bytes")
    if name == sender:
        raise EncodeError(f"{what} {name!r} is the sender itself")
    return data


def _put_node_list(out: bytearray, what: str, names: tuple[str, ...], sender: str) -> None:
    if len(names) > MAX_LISTED_NODES:
        raise EncodeError(f"{len(names)} names in {what}, at most {MAX_LISTED_NODES}")
    if len(set(names)) != len(names):
        raise EncodeError(f"a node listed twice in {what}")
    out += _U8.pack(len(names))
    for name in names:
        _put_name(out, _node_name_bytes(f"{what} name", name, sender))


def _put_name(out: bytearray, data: bytes) -> None:
    out += _U8.pack(len(data))
    out += data


# (secret, binding) -> HMAC-SHA256 keyed with the secret and fed the binding, never
# fed more: `_mac` works on a copy. The one-shot hmac.digest() looks the digest up in
# OpenSSL's providers on every call, which cost ~28 µs a datagram in a lab node (a
# copy of a keyed context: ~1 µs).
_KEYED: dict[tuple[bytes, bytes], hmac.HMAC] = {}
# two keys of a keyring (reloads may bring new ones), times a binding each way to each
# of 7 peers on 2 networks, and none
_KEYED_MAX = 128

BIND_TAG = b"\0mq-bind\0"  # a datagram begins with MAGIC: the two inputs never meet


def binding(sender: str, receiver: str) -> bytes:
    """What the MAC of a datagram from `sender`'s address to `receiver`'s (IPv4, as
    configured on the network it goes on) covers besides its bytes."""
    return BIND_TAG + _ipv4(sender) + _ipv4(receiver)


def _ipv4(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))


def _mac(secret: bytes, body: bytes | bytearray, bound: bytes = b"") -> bytes:
    keyed = _KEYED.get((secret, bound))
    if keyed is None:
        if len(_KEYED) >= _KEYED_MAX:
            _KEYED.clear()
        keyed = _KEYED[(secret, bound)] = hmac.new(secret, bound, digestmod="sha256")
    mac = keyed.copy()
    mac.update(body)
    return mac.digest()


class Sender:
    """Encodes this node's PeerView into signed datagrams.

    `keyring` is a public attribute: assign a reloaded keyring to rotate keys
    without a restart. The ack of a datagram is the boot id of the node it is
    sent to, as this node last learned it (`Receiver.ack_for(peer)` of the
    Receiver sharing this boot id): pass it to `encode` per destination, or
    keep `ack` current for a single peer. That peer accepts nothing until it is.
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
        self._last_view: PeerView | None = None
        self._last_body = b""

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

    def encode(
        self, view: PeerView, now: float, *, ack: bytes | None = None, bound: bytes = b""
    ) -> bytes:
        """Sign `view` into one datagram for the node whose boot id is `ack`
        (default: the `ack` attribute), bound to the addresses it goes between
        (`binding`; b"": as agents before the binding sign); raises EncodeError if it
        cannot be sent."""
        ack = self._ack if ack is None else _boot_id_bytes("ack", ack)
        if not math.isfinite(now) or now < 0:
            raise EncodeError(f"timestamp {now!r} is not a valid wall-clock time")
        ts_ms = round(now * 1000)
        if ts_ms > _U64_MAX:
            raise EncodeError(f"timestamp {now!r} is out of range")
        if self._seq >= _U64_MAX:
            raise EncodeError("sequence number exhausted; restart with a new boot id")
        body = self._body(view)
        seq = self._seq + 1
        key = self.keyring.signing
        version = VERSION_HUNG if view.hung else VERSION if view.commit else VERSION_NO_COMMIT
        header = _HEADER.pack(MAGIC, version, key.key_id, self.boot_id, seq, ts_ms, ack)
        if len(header) + len(body) + MAC_SIZE > MAX_DATAGRAM:
            raise EncodeError(
                f"message would be {len(header) + len(body) + MAC_SIZE} bytes, "
                f"at most {MAX_DATAGRAM}"
            )
        signed = header + body
        self._seq = seq
        return signed + _mac(key.secret, signed, bound)

    def _body(self, view: PeerView) -> bytes:
        """Everything after the header: checked and packed once per distinct view (a
        node sends the same view many times, to every peer on every network)."""
        if view is self._last_view:
            return self._last_body
        if view == self._last_view:
            self._last_view = view  # the core's next heartbeats are likely this object
            return self._last_body
        if view.node != self.node:
            raise EncodeError(f"view is of node {view.node!r}, this sender is {self.node!r}")
        if not isinstance(view.role, Role):
            raise EncodeError(f"role {view.role!r} is not a Role")
        if isinstance(view.epoch, bool) or not isinstance(view.epoch, int):
            raise EncodeError(f"epoch {view.epoch!r} is not an integer")
        if not 0 <= view.epoch <= _I64_MAX:
            raise EncodeError(f"epoch {view.epoch} outside 0..2**63-1")
        if isinstance(view.data_epoch, bool) or not isinstance(view.data_epoch, int):
            raise EncodeError(f"data epoch {view.data_epoch!r} is not an integer")
        if not 0 <= view.data_epoch <= _I64_MAX:
            raise EncodeError(f"data epoch {view.data_epoch} outside 0..2**63-1")
        if isinstance(view.commit, bool) or not isinstance(view.commit, int):
            raise EncodeError(f"commit {view.commit!r} is not an integer")
        if not 0 <= view.commit <= COMMIT_MAX:
            raise EncodeError(f"commit {view.commit} outside 0..2**64-1")
        if len(view.uplinks) > MAX_UPLINKS:
            raise EncodeError(f"{len(view.uplinks)} uplinks, at most {MAX_UPLINKS}")
        flags = (
            (_FLAG_CANDIDATE if view.candidate else 0)
            | (_FLAG_MAINTENANCE if view.maintenance else 0)
            | (_FLAG_MANUAL if view.manual else 0)
            | (_FLAG_YIELDING if view.yielding else 0)
        )
        out = bytearray()
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
        out += _I64.pack(view.data_epoch)
        _put_node_list(out, "heard", tuple(view.heard), self.node)
        _put_node_list(out, "in_sync", tuple(view.in_sync), self.node)
        if view.successor == "":
            out += _U8.pack(0)
        else:
            _put_name(out, _node_name_bytes("successor", view.successor, self.node))
        out += _order_id_bytes(view.order_id)
        if view.commit or view.hung:
            out += _U64.pack(view.commit)
        if view.hung:
            hung = tuple(view.hung)
            both = set(hung) & set(view.heard)
            if both:
                raise EncodeError(f"{sorted(both)} both heard and hung")
            if len(hung) + len(view.heard) > MAX_LISTED_NODES:
                raise EncodeError(f"heard and hung name more than {MAX_LISTED_NODES} nodes")
            _put_node_list(out, "hung", hung, self.node)
        self._last_view, self._last_body = view, bytes(out)
        return self._last_body


def _skip_names(data: bytes, off: int, count: int, trailer: int = 0) -> int | None:
    """The offset after `count` length-prefixed names (each followed by `trailer` bytes)
    starting at `off`; None if the data ends first."""
    for _ in range(count):
        if off >= len(data):
            return None
        off += 1 + data[off] + trailer
    return off


def _walk(data: bytes, version: int) -> int | None:
    """Offset where the MAC should start, from the length bytes only; None if cut short."""
    n = len(data)
    off: int | None = _skip_names(data, _HEADER.size, 2)  # cluster, node
    if off is None:
        return None
    off += _VIEW.size
    if off >= n:
        return None
    off = _skip_names(data, off + 1, data[off], trailer=1)  # uplinks: name, healthy
    if off is None or version < 3:
        return off
    off += _I64.size  # data epoch
    for _ in range(2):  # heard, in_sync
        if off >= n:
            return None
        off = _skip_names(data, off + 1, data[off])
        if off is None:
            return None
    off = _skip_names(data, off, 1)  # successor
    if off is None:
        return None
    off += ORDER_ID_SIZE + (_U64.size if version >= 4 else 0)
    if version < 5:
        return off
    if off >= n:
        return None
    return _skip_names(data, off + 1, data[off])  # hung


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
        return self.text(self.take(self.u8()), what)

    def node_name(self, what: str, sender: str, *, optional: bool = False) -> str:
        """A node name of the version-3 fields: bounded like config's, not the sender
        ("" for length 0 if `optional`)."""
        size = self.u8()
        if optional and size == 0:
            return ""
        if size > MAX_NODE_NAME_BYTES:
            raise _Malformed(f"{what} of {size} bytes, at most {MAX_NODE_NAME_BYTES}")
        name = self.text(self.take(size), what)
        if name == sender:
            raise _Malformed(f"{what} is the sender itself")
        return name

    def node_list(self, what: str, sender: str) -> tuple[str, ...]:
        count = self.u8()
        if count > MAX_LISTED_NODES:
            raise _Malformed(f"{count} names in {what}, at most {MAX_LISTED_NODES}")
        names = tuple(self.node_name(f"{what} name", sender) for _ in range(count))
        if len(set(names)) != len(names):
            raise _Malformed(f"a node listed twice in {what}")
        return names

    @staticmethod
    def text(raw: bytes, what: str) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed(f"{what} is not UTF-8") from None
        if not text or not text.isprintable():
            raise _Malformed(f"{what} is empty or not printable")
        return text


@dataclass
class _PeerState:
    """What the Receiver remembers of one peer's datagrams (see Receiver)."""

    boot_id: bytes | None = None  # of the last accepted datagram
    last_seq: int = 0
    seen: int = 0  # bit i set: seq last_seq - i was accepted (anti-replay window)
    max_ts_ms: int = -1
    learned: bytes = NO_ACK
    learned_ts_ms: int = -1
    unbound: bool = False  # the learned datagram's MAC had no binding (an older agent)
    ever_bound: bool = False  # an authentic, fresh datagram of it covered the binding
    retired: collections.deque[bytes] = field(
        default_factory=lambda: collections.deque(maxlen=RETIRED_STARTS)
    )


class Receiver:
    """Checks and decodes datagrams from the configured peers (one or several).

    `peers` is the peer's name, or the names of every peer (every other node
    of the config); a datagram from any other node name is UNKNOWN_SENDER.
    `boot_id` is this agent's own boot id, the one its Sender signs with.

    Every peer has its own state below (boot id, ack, window, retired starts),
    keyed by the sender name the MAC covers: one Receiver rather than one per
    peer, because the sender is known only once the MAC is verified, and
    dispatching on anything before that (the source address) would key the
    replay state on what an attacker can forge. The caller that knows where a
    datagram came from passes `expected_sender` to `decode`.

    Every datagram must be authentic, well-formed and fresh: its timestamp
    within ±window of `now` (so the nodes' clocks must agree to within the
    window). Then, in this order, all against the sending peer's own state:
    - its boot id must not be one that a later start of the peer replaced
      (REPLAYED): once a datagram of a new start was accepted, the earlier
      start's are never accepted again, whatever their timestamps say (a peer
      whose clock was ahead before its restart would win them back otherwise);
    - learning: if its timestamp is newer than that of every datagram learned
      from before, its boot id becomes `ack_for(peer)` (accepted or not, so a
      replayed older datagram cannot move it back);
    - the ack must be `boot_id`, else UNCONFIRMED: the datagram was made
      before the peer heard of this agent's current start (possibly before
      this receiver existed, and its in-memory window knows nothing of it),
      or it was made for another node;
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
        peers: str | Iterable[str],
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
        names = (peers,) if isinstance(peers, str) else tuple(peers)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"peers {names!r}: at least one, each once")
        self.cluster = cluster
        self.node = node
        self.peers = names
        self.keyring = keyring
        self.window = window
        self.counters: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.accepted = 0
        self._state: dict[str, _PeerState] = {name: _PeerState() for name in names}
        self._parsed: dict[tuple[int, bytes], PeerView] = {}  # (version, body) -> its view

    @property
    def peer(self) -> str:
        """The one peer of a pair (ValueError with several)."""
        if len(self.peers) != 1:
            raise ValueError(f"{len(self.peers)} peers: name the one you mean")
        return self.peers[0]

    def boot_id_of(self, peer: str) -> bytes | None:
        """The boot id of the peer's last accepted datagram (None before the first)."""
        return self._state[peer].boot_id

    def unbound(self, peer: str) -> bool:
        """Whether the peer's newest authentic, fresh datagram was signed without a
        binding (an agent from before it): sign for it so too, or it hears nothing."""
        return self._state[peer].unbound

    def ack_for(self, peer: str) -> bytes:
        """What this agent's Sender must put in the ack of a datagram to `peer`: the
        peer's boot id from its newest authentic, fresh datagram, accepted or not
        (NO_ACK before the first)."""
        return self._state[peer].learned

    def last_seq_of(self, peer: str) -> int:
        return self._state[peer].last_seq

    @property
    def peer_boot_id(self) -> bytes | None:
        """`boot_id_of` the one peer of a pair."""
        return self.boot_id_of(self.peer)

    @property
    def ack_for_peer(self) -> bytes:
        """`ack_for` the one peer of a pair."""
        return self.ack_for(self.peer)

    @property
    def last_seq(self) -> int:
        return self.last_seq_of(self.peer)

    def decode(
        self,
        data: bytes,
        now: float,
        *,
        expected_sender: str | None = None,
        bound: bytes = b"",
    ) -> PeerView | Rejected:
        """The peer's view, or why the datagram was dropped. Never raises.

        With `expected_sender` (the peer whose address it came from), an
        authentic datagram signed as any other node is UNKNOWN_SENDER and
        touches no state. With `bound` (`binding` of the address it came from and
        this node's on that network), its MAC must cover that binding, or none (an
        agent from before the binding: `unbound`).
        """
        try:
            result = self._decode(data, now, expected_sender, bound)
        except Exception as e:  # a bug here must not stop the agent; count it
            result = Rejected(Reason.MALFORMED, f"internal error: {type(e).__name__}")
        if isinstance(result, Rejected):
            self.counters[result.reason] += 1
        else:
            self.accepted += 1
        return result

    def _decode(
        self, raw: bytes, now: float, expected: str | None, bound: bytes
    ) -> PeerView | Rejected:
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
        version = data[2]
        if version not in DECODED_VERSIONS:
            return Rejected(Reason.UNKNOWN_VERSION, f"version {version}")
        if n < _MIN_BY_VERSION[version]:
            return Rejected(Reason.TRUNCATED, f"{n} bytes")
        # A body parsed before (the peers send the same one over and over) walked to
        # exactly where the MAC starts: the walk would find the same end again.
        body = (version, data[_HEADER.size : n - MAC_SIZE])
        known = self._parsed.get(body)
        if known is not None:
            body_end = n - MAC_SIZE
        else:
            walked = _walk(data, version)
            if walked is None or walked + MAC_SIZE > n:
                return Rejected(Reason.TRUNCATED, f"{n} bytes")
            if walked + MAC_SIZE < n:
                return Rejected(Reason.MALFORMED, f"{n - walked - MAC_SIZE} trailing bytes")
            body_end = walked

        # Authenticate before interpreting anything else.
        key_id = data[3]
        secret = self.keyring.secret_for(key_id)
        if secret is None:
            return Rejected(Reason.UNKNOWN_KEY, f"key id {key_id}")
        signed, mac = data[:body_end], data[body_end:]
        unbound = False
        if not (bound and hmac.compare_digest(_mac(secret, signed, bound), mac)):
            if not hmac.compare_digest(_mac(secret, signed), mac):
                return Rejected(Reason.BAD_MAC, f"key id {key_id}")
            unbound = bool(bound)
        peer_state = self._state.get(expected) if expected is not None else None
        if unbound and peer_state is not None and peer_state.ever_bound:
            # the peer's agent signs its addresses: one that does not is another
            # cluster's (spliced in), or the peer downgraded (restart this agent)
            return Rejected(Reason.BAD_MAC, f"key id {key_id}, without the addresses")

        _, _, _, boot_id, seq, ts_ms, ack = _HEADER.unpack_from(data, 0)
        if known is None:
            parsed = self._parse(data, body_end, version)
            if isinstance(parsed, Rejected):
                return parsed
            if len(self._parsed) >= 2 * len(self.peers):
                self._parsed.clear()
            self._parsed[body] = known = parsed
        view = known
        sender = view.node
        if expected is not None and sender != expected:
            return Rejected(
                Reason.UNKNOWN_SENDER, f"node {sender!r} from the address of {expected!r}"
            )
        if seq == 0:
            return Rejected(Reason.MALFORMED, "sequence number 0")

        if not math.isfinite(now):
            return Rejected(Reason.STALE, "local clock is not finite")
        skew = ts_ms / 1000.0 - now
        if abs(skew) > self.window:
            return Rejected(Reason.STALE, f"timestamp {skew:+.3f}s from local clock")

        st = self._state[sender]
        if boot_id in st.retired:
            return Rejected(Reason.REPLAYED, "from a start of the peer that a later one replaced")
        if ts_ms > st.learned_ts_ms:
            st.learned = boot_id
            st.learned_ts_ms = ts_ms
            st.unbound = unbound
        if bound and not unbound:
            st.ever_bound = True
        if ack != self.boot_id:
            return Rejected(
                Reason.UNCONFIRMED,
                "the peer has heard no start of this agent yet"
                if ack == NO_ACK
                else "the peer acknowledges another start of this agent, or another node",
            )

        if boot_id != st.learned:  # ts not newer than one of the peer's later start
            return Rejected(Reason.REPLAYED, "from an earlier start of the peer than the newest")
        if boot_id == st.boot_id:
            if seq <= st.last_seq:
                return self._older(st, seq)
            shift = seq - st.last_seq
            st.seen = ((st.seen << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
        elif ts_ms <= st.max_ts_ms:
            return Rejected(
                Reason.REPLAYED, "other boot id, not newer than the last accepted message"
            )
        else:
            st.seen = 1
            if st.boot_id is not None:
                st.retired.append(st.boot_id)

        st.boot_id = boot_id
        st.last_seq = seq
        st.max_ts_ms = max(st.max_ts_ms, ts_ms)
        return view

    def _parse(self, data: bytes, body_end: int, version: int) -> PeerView | Rejected:
        """The view in an authentic body, if it comes from one of the peers.

        Peers send the same body over and over (only the header changes), so
        `_decode` keeps the views of the last bodies: this runs once per change."""
        reader = _Reader(data, _HEADER.size, body_end)
        try:
            cluster = reader.name("cluster name")
            if cluster != self.cluster:
                return Rejected(Reason.WRONG_CLUSTER, f"cluster {cluster!r}")
            sender = reader.name("node name")
            if sender == self.node:
                return Rejected(Reason.FROM_SELF)
            if sender not in self._state:
                return Rejected(Reason.UNKNOWN_SENDER, f"node {sender!r}")
            view = self._read_view(reader, sender, version)
        except _Malformed as e:
            return Rejected(Reason.MALFORMED, str(e))
        if reader.off != body_end:  # cannot happen after _walk; kept as a guard
            return Rejected(Reason.MALFORMED, "trailing bytes")
        return view

    @staticmethod
    def _older(st: _PeerState, seq: int) -> Rejected:
        """An authentic datagram older than the newest: a replay, or one that came late
        (the copies on the two networks can arrive in either order). A late one is
        marked seen so it cannot be replayed, and dropped: its view is already stale."""
        age = st.last_seq - seq
        if age >= REPLAY_WINDOW or st.seen >> age & 1:
            return Rejected(Reason.REPLAYED, f"seq {seq}, last {st.last_seq}")
        st.seen |= 1 << age
        return Rejected(Reason.LATE, f"seq {seq}, last {st.last_seq}")

    @staticmethod
    def _read_view(reader: _Reader, sender: str, version: int) -> PeerView:
        role_code, epoch, flags = _VIEW.unpack(reader.take(_VIEW.size))
        role = _CODE_ROLES.get(role_code)
        if role is None:
            raise _Malformed(f"unknown role code {role_code}")
        if not 0 <= epoch <= EPOCH_MAX:
            raise _Malformed(f"epoch {epoch} outside 0..{EPOCH_MAX}")
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
        data_epoch, successor, order_id, commit = 0, "", "", 0
        heard: tuple[str, ...] = ()
        in_sync: tuple[str, ...] = ()
        if version >= 3:
            (data_epoch,) = _I64.unpack(reader.take(_I64.size))
            if not 0 <= data_epoch <= EPOCH_MAX:
                raise _Malformed(f"data epoch {data_epoch} outside 0..{EPOCH_MAX}")
            heard = reader.node_list("heard", sender)
            in_sync = reader.node_list("in_sync", sender)
            successor = reader.node_name("successor", sender, optional=True)
            raw_order = reader.take(ORDER_ID_SIZE)
            order_id = "" if raw_order == bytes(ORDER_ID_SIZE) else raw_order.hex()
        hung: tuple[str, ...] = ()
        if version >= 4:
            (commit,) = _U64.unpack(reader.take(_U64.size))
            if commit == 0 and version == 4:  # the encoder sends such a view as version 3
                raise _Malformed("version 4 with commit 0")
        if version >= 5:
            hung = reader.node_list("hung", sender)
            if not hung:  # the encoder sends such a view as version 3 or 4
                raise _Malformed("version 5 with no hung peer")
            if set(hung) & set(heard):
                raise _Malformed("a node both heard and hung")
            if len(hung) + len(heard) > MAX_LISTED_NODES:
                raise _Malformed(f"heard and hung name more than {MAX_LISTED_NODES} nodes")
        return PeerView(
            node=sender,
            role=role,
            epoch=epoch,
            uplinks=tuple(uplinks),
            candidate=bool(flags & _FLAG_CANDIDATE),
            yielding=bool(flags & _FLAG_YIELDING),
            maintenance=bool(flags & _FLAG_MAINTENANCE),
            manual=bool(flags & _FLAG_MANUAL),
            data_epoch=data_epoch,
            heard=heard,
            in_sync=in_sync,
            successor=successor,
            order_id=order_id,
            commit=commit,
            hung=hung,
        )


def _order_id_bytes(order_id: str) -> bytes:
    """A view's order id (hex, "" for none) as the 4 bytes on the wire."""
    if order_id == "":
        return bytes(ORDER_ID_SIZE)
    try:
        raw = bytes.fromhex(order_id)
    except ValueError:
        raise EncodeError(f"order id {order_id!r} is not hex") from None
    if len(raw) != ORDER_ID_SIZE or raw == bytes(ORDER_ID_SIZE):
        raise EncodeError(f"order id {order_id!r} is not {ORDER_ID_SIZE} bytes, nor zeros")
    return raw


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
