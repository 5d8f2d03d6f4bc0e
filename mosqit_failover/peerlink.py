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
`on_unauthenticated` as (peer, network, reason value, detail), never to
`deliver`. An authentic datagram signed by another node than the one whose
address it came from is UNKNOWN_SENDER (and reported for the address's node).
A datagram from an address that is no node's is only counted (`foreign`).

The Sender and the Receiver share one boot id. The Receiver keeps each peer's
replay state apart (see wire.py); every datagram is encoded for its
destination, with that peer's boot id as the Receiver last learned it as its
ack, so a copy sent to one peer is never accepted by another.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from typing import cast

from mosqit_failover.authkeys import Keyring
from mosqit_failover.config import Config
from mosqit_failover.events import PeerView
from mosqit_failover.journal import DecisionLog
from mosqit_failover.wire import (
    MAX_DATAGRAM,
    EncodeError,
    RateLimitedLog,
    Reason,
    Receiver,
    Sender,
    new_boot_id,
)

Deliver = Callable[[str, PeerView], None]
# (peer node name, network, Reason.value such as "bad-mac", detail without
# unauthenticated strings); the peer is the node whose address the datagram came from
Unauthenticated = Callable[[str, str, str, str], None]


class PeerLink(asyncio.DatagramProtocol):
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
        # network -> [(peer, address)] on it; None: on every network
        everywhere = [(p.name, a.network, str(a.address)) for p in peers for a in p.attachments]
        self._destinations: dict[str | None, list[tuple[str, str]]] = {None: []}
        for peer, network, address in everywhere:
            self._destinations.setdefault(network, []).append((peer, address))
            self._destinations[None].append((peer, address))
        self._rate = RateLimitedLog(10.0)
        self._transport: asyncio.DatagramTransport | None = None
        self.sent = 0
        self.send_errors = 0
        self.foreign = 0  # datagrams from an address that is no peer's

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
        await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (address, port), None before open()."""
        if self._transport is None:
            return None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def rekey(self, keyring: Keyring) -> None:
        """Sign and check with a reloaded secret file from the next datagram on."""
        self._sender.keyring = keyring
        self.receiver.keyring = keyring

    def send(self, view: PeerView, network: str | None = None) -> None:
        """`view` to every peer on `network` (None: on every network), each datagram
        with its peer's ack."""
        if self._transport is None:
            return
        everywhere = self._destinations[None]
        for peer, address in self._destinations.get(network, everywhere):
            try:
                ack = self.receiver.ack_for(peer)
                data = self._sender.encode(view, time.time(), ack=ack)
                self._transport.sendto(data, (address, self._port))
                self.sent += 1
            except (OSError, EncodeError):
                self.send_errors += 1

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (unreachable) for earlier datagrams: a down network, not a fault here.
        self.send_errors += 1

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        source = str(addr[0])
        known = self._peer_addresses.get(source)
        now = time.time()
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
        result = self.receiver.decode(data, now, expected_sender=peer)
        if isinstance(result, PeerView):
            self._deliver(network, result)
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
            self._on_unauthenticated(peer, network, result.reason.value, result.detail)


def _safe(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "an unknown address"
