"""The UDP peer link: one socket, a datagram to every peer on every network.

Guarantees: only authenticated, fresh, well-formed datagrams from a peer
reach `deliver` (with the network they came in on, known by the peer's source
address; the view names the peer); everything else is dropped, counted per
reason and logged at most once per peer and reason every 10 s. Sending never
blocks and never raises: a network that is down just loses the datagram, as a
cable would.

A datagram from one of a peer's configured addresses that is dropped for any
reason but LATE (another secret, a stale clock, a replay, ...) still shows
that something on that peer sends on our port: it goes to
`on_unauthenticated` as (peer, network, reason value, detail), once per peer,
network and reason in each read of what is ready, never to `deliver`. An
authentic datagram signed by another node than the one whose address it came
from is UNKNOWN_SENDER (and reported for the address's node). A datagram from
an address that is no node's is only counted (`foreign`).

The datagrams that are ready are read together (until the socket is empty, or
for a heartbeat's time at most) and go through an `Inbox`: only the newest
view of each peer on each network reaches `deliver`, and none that waited in
the socket longer than the schedule gap (by the kernel's receive timestamp):
after a stop of this agent that is old news (see inbox.py). Such drops are
counted (`stale`) and said in one line per backlog read.

The Sender and the Receiver share one boot id. The Receiver keeps each peer's
replay state apart (see wire.py); every datagram is encoded for its
destination, with that peer's boot id as the Receiver last learned it as its
ack, so a copy sent to one peer is never accepted by another.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from collections.abc import Callable

from mosqit_failover.authkeys import Keyring
from mosqit_failover.config import Config
from mosqit_failover.events import PeerView
from mosqit_failover.inbox import Inbox
from mosqit_failover.journal import DecisionLog
from mosqit_failover.wire import (
    MAX_DATAGRAM,
    EncodeError,
    RateLimitedLog,
    Reason,
    Receiver,
    Sender,
    binding,
    new_boot_id,
)

# (network, view, seconds it waited in the socket: 0 when unknown or under WAIT_RESOLUTION)
Deliver = Callable[[str, PeerView, float], None]
# (peer node name, network, Reason.value such as "bad-mac", detail without
# unauthenticated strings); the peer is the node whose address the datagram came from
Unauthenticated = Callable[[str, str, str, str], None]

# Linux's receive timestamp as a struct timespec (CLOCK_REALTIME) in a control
# message: SO_TIMESTAMPNS_NEW (64-bit fields on every architecture, Linux 5.1+),
# else the old one (the C long's width). Not in Python's socket module.
SO_TIMESTAMPNS_NEW = 64
SO_TIMESTAMPNS_OLD = 35
STAMP_KINDS = (SO_TIMESTAMPNS_NEW, SO_TIMESTAMPNS_OLD)  # its control message's type
SO_RCVBUFFORCE = 33  # root may set a receive buffer above net.core.rmem_max
# The receive buffer holds a schedule gap of the peers' heartbeats at their trouble
# pace, so that after a shorter stop the newest is still there to read (once it is
# full the kernel drops what comes next), and no more: a larger one only lets a flood
# hold the genuine datagrams longer (a helper's finding: 0.3 s with 4 MiB of
# replays). Its kernel accounting per datagram (the skb's truesize) is taken as 2 KiB.
DATAGRAM_TRUESIZE = 2048
RECEIVE_BUFFER_MIN = 256 << 10
RECEIVE_BUFFER_MAX = 4 << 20
READ_BATCH = 256  # datagrams read in one wake-up at most; the rest in the next
ANCILLARY = socket.CMSG_SPACE(16)
# While a peer is answered without the binding (wire.py: it signed without it), a copy
# with the binding goes beside the datagrams this often (seconds). An upgraded peer
# takes it and answers bound from then on; without it, two upgraded agents that each
# read the other's unbound datagram first stayed unbound for good, open to a splice
# (a helper's finding). One a second never makes an old agent's drops a streak that
# counts as failing authentication (an authentic datagram comes between).
BOUND_COPY_EVERY = 1.0
# A shorter wait in the socket is handed over as 0: it is the wake-up's own latency,
# and the core's times are coarser (its shortest heartbeat is 10 ms).
WAIT_RESOLUTION = 0.001


class PeerLink:
    def __init__(
        self,
        config: Config,
        node: str,
        keyring: Keyring,
        deliver: Deliver,
        log: DecisionLog,
        *,
        on_unauthenticated: Unauthenticated | None = None,
    ) -> None:
        peers = config.peers_of(node)
        self._port = config.port
        self._deliver = deliver
        self._on_unauthenticated = on_unauthenticated
        # (peer, network, reason) -> detail, dropped since the read began
        self._unauthenticated: dict[tuple[str, str, str], str] = {}
        self._log = log
        self.boot_id = new_boot_id()
        self._sender = Sender(config.cluster, node, keyring, self.boot_id)
        self.receiver = Receiver(
            config.cluster, node, [p.name for p in peers], keyring, boot_id=self.boot_id
        )
        # source address -> (peer, network); (peer, address) for every peer and network
        self._peer_addresses = {
            str(a.address): (p.name, a.network) for p in peers for a in p.attachments
        }
        own = {a.network: str(a.address) for a in config.node(node).attachments}
        # source address -> the binding its datagrams' MACs cover (wire.binding)
        self._bound_in = {
            address: binding(address, own[network])
            for address, (_, network) in self._peer_addresses.items()
        }
        # network -> [(peer, address, binding)] on it; None: on every network
        everywhere = [(p.name, a.network, str(a.address)) for p in peers for a in p.attachments]
        self._destinations: dict[str | None, list[tuple[str, str, bytes]]] = {None: []}
        for peer, network, address in everywhere:
            destination = (peer, address, binding(own[network], address))
            self._destinations.setdefault(network, []).append(destination)
            self._destinations[None].append(destination)
        self._rate = RateLimitedLog(10.0)
        # (peer, address) -> when the last bound copy went beside the unbound datagrams
        self._bound_copy_at: dict[tuple[str, str], float] = {}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stamp: struct.Struct | None = None  # the receive timestamp's timespec
        # (network, view, the kernel's receive time: None when unknown)
        self._inbox: Inbox[tuple[str, str], tuple[str, PeerView, float | None]] = Inbox(
            config.timing.schedule_gap
        )
        self.sent = 0
        self.send_errors = 0
        self.foreign = 0  # datagrams from an address that is no peer's
        self.stale = 0  # datagrams that waited too long in the socket (inbox.py)
        self._reading_since: float | None = None  # a backlog longer than one batch
        self._deliver_within = config.timing.heartbeat
        self._buffer = _receive_buffer(config, len(peers))

    async def open(self, host: str = "0.0.0.0", port: int | None = None) -> None:
        """Bind the socket: every address on the cluster port unless told otherwise
        (tests bind a loopback address and port 0)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_IP, socket.IP_TOS, 0xB8)  # DSCP EF: heartbeats first
            sock.bind((host, self._port if port is None else port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        stamps = _first_option(sock, [(kind, 1) for kind in STAMP_KINDS])
        self._stamp = None if stamps is None else struct.Struct(("=qq", "@ll")[stamps])
        if self._stamp is None:
            self._log.note(
                "this kernel gives no receive timestamps: peer messages that waited while "
                "this agent was stopped are read as new (only the newest of each is used)",
                priority=4,
            )
        # root may go above net.core.rmem_max (SO_RCVBUFFORCE); else as much as it allows
        _first_option(sock, [(SO_RCVBUFFORCE, self._buffer), (socket.SO_RCVBUF, self._buffer)])
        self._sock = sock
        self._loop = loop
        loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (address, port), None before open()."""
        if self._sock is None:
            return None
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def rekey(self, keyring: Keyring) -> None:
        """Sign and check with a reloaded secret file from the next datagram on."""
        self._sender.keyring = keyring
        self.receiver.keyring = keyring

    def send(self, view: PeerView, network: str | None = None) -> None:
        """`view` to every peer on `network` (None: on every network), each datagram
        with its peer's ack."""
        sock = self._sock
        if sock is None:
            return
        everywhere = self._destinations[None]
        receiver = self.receiver
        now = time.time()
        for peer, address, bound in self._destinations.get(network, everywhere):
            ack = receiver.ack_for(peer)
            signed = [bound]
            if receiver.unbound(peer):  # an agent from before the binding, it seems
                signed = [b""]
                if now - self._bound_copy_at.get((peer, address), 0.0) >= BOUND_COPY_EVERY:
                    self._bound_copy_at[(peer, address)] = now
                    signed.append(bound)
            for binding_ in signed:
                try:
                    data = self._sender.encode(view, now, ack=ack, bound=binding_)
                    # a full send buffer (EAGAIN) or a down network loses the datagram
                    sock.sendto(data, (address, self._port))
                    self.sent += 1
                except (OSError, EncodeError):
                    self.send_errors += 1

    def _readable(self) -> None:
        """Read what is ready, then deliver the inbox's choice: once the socket is
        empty, or after a heartbeat of reading (a flood never empties it). Handing over
        each batch of READ_BATCH read let a flood of junk, which fills the batches, make
        the core act on one old view after another: the bug the Inbox is there for."""
        sock = self._sock
        if sock is None:
            return
        inbox = self._inbox
        empty = False
        for _ in range(READ_BATCH):
            try:
                data, ancillary, _, addr = sock.recvmsg(MAX_DATAGRAM + 1, ANCILLARY)
            except (BlockingIOError, InterruptedError):
                empty = True
                break
            except OSError:  # an ICMP error for an earlier datagram: a down network
                self.send_errors += 1
                continue
            now = time.time()
            arrived = self._arrival(ancillary)
            if arrived is not None and inbox.too_old(now - arrived):
                continue
            self._datagram(data, str(addr[0]), now, arrived)
        self._report_unauthenticated()
        if not empty:  # more is ready: the loop calls again (other callbacks first)
            started = self._reading_since = self._reading_since or time.monotonic()
            if time.monotonic() - started < self._deliver_within:
                return
        self._reading_since = None
        stale, longest = inbox.take_stale()
        if stale:
            self.stale += stale
            self._note_stale(stale, longest)
        now = time.time()
        for network, view, arrived in inbox.take():
            waited = 0.0 if arrived is None else now - arrived
            self._deliver(network, view, waited if waited >= WAIT_RESOLUTION else 0.0)

    def _arrival(self, ancillary: list[tuple[int, int, bytes]]) -> float | None:
        """When the kernel received the datagram (CLOCK_REALTIME): None without a
        timestamp."""
        stamp = self._stamp
        if stamp is None:
            return None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind in STAMP_KINDS and len(payload) >= stamp.size:
                seconds, nanoseconds = stamp.unpack_from(payload)
                arrived: float = seconds + nanoseconds / 1e9
                return arrived
        return None

    def _note_stale(self, count: int, longest: float) -> None:
        suppressed = self._rate.check("stale", time.time())
        if suppressed is None:
            return
        more = f"; {suppressed} more since the last report" if suppressed else ""
        self._log.note(
            f"dropped {count} peer datagrams that waited up to {longest:.1f}s in the socket:"
            " this agent was not running (stopped, suspended, blocked); their news is older"
            f" than what the peers acted on meanwhile, the next heartbeats bring the present{more}",
            priority=4,
        )

    def _datagram(self, data: bytes, source: str, now: float, arrived: float | None) -> None:
        known = self._peer_addresses.get(source)
        if known is None:
            self.foreign += 1
            suppressed = self._rate.check("foreign", now)
            if suppressed is not None:
                self._log.note(
                    f"dropped a datagram from {_safe(source)} (no peer's address)"
                    + (f"; {suppressed} more since the last report" if suppressed else ""),
                    priority=4,
                )
            return
        peer, network = known
        if len(data) > MAX_DATAGRAM:
            data = data[: MAX_DATAGRAM + 1]  # the receiver rejects it as oversized
        result = self.receiver.decode(data, now, expected_sender=peer, bound=self._bound_in[source])
        if isinstance(result, PeerView):
            self._inbox.add((peer, network), (network, result, arrived))  # its wait: `_readable`
            return
        if result.reason is Reason.LATE:
            return  # the other network's copy arrived first: nothing wrong
        suppressed = self._rate.check((peer, result.reason), now)
        if suppressed is not None:
            more = f"; {suppressed} more since the last report" if suppressed else ""
            self._log.note(
                f"dropped a datagram from {peer}'s address on network {network}:"
                f" {result.reason.value} {result.detail}{more}",
                # normal for about one heartbeat round trip after either agent starts
                priority=6 if result.reason is Reason.UNCONFIRMED else 4,
                DROP_REASON=result.reason.value,
            )
        if self._on_unauthenticated is not None:
            self._unauthenticated[(peer, network, result.reason.value)] = result.detail

    def _report_unauthenticated(self) -> None:
        """One report per peer, network and reason of what a read dropped: each one
        cost the core a pass, and a flood of junk from a peer's address (8,500 a
        second) made a 10 ms timer 50 ms late (a helper's finding)."""
        pending, self._unauthenticated = self._unauthenticated, {}
        if self._on_unauthenticated is not None:
            for (peer, network, reason), detail in pending.items():
                self._on_unauthenticated(peer, network, reason, detail)


def _first_option(sock: socket.socket, choices: list[tuple[int, int]]) -> int | None:
    """Set the first SOL_SOCKET (option, value) of `choices` this kernel and user
    accept; its index, or None when none is (the receive timestamps: the wait is
    then unknown, counted as 0; the buffer: the kernel's default)."""
    for index, (option, value) in enumerate(choices):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, value)
        except OSError:
            continue
        return index
    return None


def _receive_buffer(config: Config, peers: int) -> int:
    """Bytes for a schedule gap of `peers`' heartbeats on every network (see
    DATAGRAM_TRUESIZE), within RECEIVE_BUFFER_MIN and RECEIVE_BUFFER_MAX."""
    timing = config.timing
    datagrams = peers * len(config.networks) * timing.schedule_gap / timing.heartbeat
    wanted = int(datagrams * DATAGRAM_TRUESIZE)
    return min(RECEIVE_BUFFER_MAX, max(RECEIVE_BUFFER_MIN, wanted))


def _safe(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "an unknown address"
