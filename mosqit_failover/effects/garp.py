"""Announce the VIP's new owner with gratuitous ARP.

The 42-byte frame (Ethernet header and an ARP packet, RFC 826 / RFC 5227
layout) is packed here with struct and sent on a plain AF_PACKET socket bound
to the interface. It used to be built with scapy: importing scapy cost every
agent ~20-30 MB of RSS and up to 0.7 s at start for one fixed frame (the tests
still check these frames against scapy's).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
from typing import Any

from mosqit_failover.effects import EffectError

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
MIN_FRAME = 60  # Ethernet minimum without FCS; shorter frames are zero-padded
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = b"\xff" * 6
# Ethernet: destination, source, type; ARP: hardware type 1 (Ethernet), protocol
# IPv4, address lengths 6 and 4, operation, sender MAC and IP, target MAC and IP
ARP_FRAME = struct.Struct("!6s6sH HHBBH6s4s6s4s")


def build_frame(
    address: ipaddress.IPv4Address,
    mac: bytes,
    *,
    reply: bool = False,
    target: ipaddress.IPv4Address | None = None,
) -> bytes:
    """A broadcast ARP frame from address and mac, padded to 60 bytes.

    Without ``target``, gratuitous: sender and target IP are both the address; the
    target MAC is zero in a request and broadcast in a reply (as arping -U / -A send
    them). With ``target``, a request asking for that address (who-has target tell
    address, as arping sends it)."""
    if len(mac) != 6:
        raise ValueError(f"an Ethernet address has 6 bytes, not {len(mac)}")
    ip = ipaddress.IPv4Address(address).packed
    asked = ip if target is None else ipaddress.IPv4Address(target).packed
    frame = ARP_FRAME.pack(
        BROADCAST,
        mac,
        ETH_P_ARP,
        1,
        0x0800,
        6,
        4,
        ARP_REPLY if reply and target is None else ARP_REQUEST,
        mac,
        ip,
        BROADCAST if reply and target is None else bytes(6),
        asked,
    )
    return frame + bytes(MIN_FRAME - len(frame))


class Garp:
    """Gratuitous ARP bursts for one address on one interface.

    Guarantees:

    - :meth:`announce` opens an AF_PACKET socket bound to ``ifname``, takes the
      interface's current MAC from it, sends the first frame at once and
      returns; the other ``count - 1`` frames go out from a background task,
      ``interval`` seconds apart. It never waits on the network (the socket is
      non-blocking) and takes well under a millisecond after the first call.
    - A new :meth:`announce` cancels an unfinished burst and starts a new one
      (so the newest MAC and interface are announced). ``count = 0`` sends
      nothing.
    - :meth:`announce` raises :class:`EffectError` if the first frame cannot be
      sent (missing or down interface, no CAP_NET_RAW); failures later in the
      burst are logged and end the burst (:attr:`last_error` keeps the last).
    - :meth:`close` cancels any burst and closes the socket; idempotent.
      :meth:`wait` awaits the end of the current burst (for tests and shutdown).
    - Frames: Ethernet broadcast, ARP request (or reply with ``reply=True``)
      with sender and target IP both the VIP and sender MAC the interface's.
    """

    def __init__(
        self,
        address: ipaddress.IPv4Address,
        ifname: str,
        count: int = 5,
        interval: float = 0.2,
        *,
        reply: bool = False,
    ) -> None:
        if count < 0 or interval < 0:
            raise ValueError("count and interval must not be negative")
        self.address = ipaddress.IPv4Address(address)
        self.ifname = ifname
        self.count = count
        self.interval = interval
        self.reply = reply
        self.last_error: EffectError | None = None
        self._burst: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        return f"Garp({str(self.address)!r}, {self.ifname!r}, count={self.count})"

    async def announce(self) -> None:
        """Send the first gratuitous ARP now; the rest of the burst in the background."""
        self._cancel()
        if self.count == 0:
            return
        sock = self._open()
        try:
            frame = build_frame(self.address, self._mac_of(sock), reply=self.reply)
            self._send(sock, frame)
        except BaseException:
            self._close_socket()
            raise
        if self.count > 1:
            self._burst = asyncio.get_running_loop().create_task(
                self._rest(sock, frame), name=f"garp-{self.address}"
            )
        else:
            self._close_socket()

    async def wait(self) -> None:
        """Wait until the current burst, if any, has ended."""
        if self._burst is not None:
            await asyncio.wait({self._burst})

    def close(self) -> None:
        """Cancel any unfinished burst and close the socket."""
        self._cancel()

    # -- internals ------------------------------------------------------------

    async def _rest(self, sock: socket.socket, frame: bytes) -> None:
        try:
            for _ in range(self.count - 1):
                await asyncio.sleep(self.interval)
                self._send(sock, frame)
        except EffectError as error:
            self.last_error = error
            log.warning("gratuitous ARP burst stopped: %s", error)
        finally:
            if self._sock is sock:
                self._close_socket()

    def _cancel(self) -> None:
        if self._burst is not None and not self._burst.done():
            self._burst.cancel()
        self._burst = None
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _open(self) -> socket.socket:
        try:
            sock = open_packet_socket(self.ifname)
        except PermissionError:
            raise EffectError(
                "cannot open a packet socket for gratuitous ARP: permission denied; run "
                "the agent as root (CAP_NET_RAW)"
            ) from None
        except OSError as error:
            raise EffectError(self._why(error)) from None
        self._sock = sock
        return sock

    def _send(self, sock: socket.socket, frame: bytes) -> None:
        try:
            sock.send(frame)
        except OSError as error:
            raise EffectError(self._why(error)) from None

    def _why(self, error: OSError) -> str:
        what = f"cannot send gratuitous ARP for {self.address} on {self.ifname}"
        fix = "fix vip.interface (or nodes.NAME.vip_interface)"
        return interface_problem(error, what, self.ifname, fix)

    def _mac_of(self, sock: socket.socket) -> bytes:
        mac = ethernet_address(sock)
        if mac is None:
            raise EffectError(
                f"cannot send gratuitous ARP for {self.address}: interface {self.ifname!r} "
                "has no Ethernet address; put the VIP on an Ethernet interface"
            )
        return mac


def open_packet_socket(ifname: str) -> socket.socket:
    """A non-blocking AF_PACKET socket bound to ``ifname`` that receives nothing (protocol
    0: send only). Raises OSError, the socket closed."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setblocking(False)
        sock.bind((ifname, 0))
    except OSError:
        sock.close()
        raise
    return sock


def ethernet_address(sock: socket.socket) -> bytes | None:
    """The MAC of the interface a packet socket is bound to; None if it has none."""
    name: Any = sock.getsockname()  # (ifname, proto, pkttype, hatype, addr)
    mac = bytes(name[4])
    return mac if len(mac) == 6 and any(mac) else None


def interface_problem(error: OSError, what: str, ifname: str, fix: str) -> str:
    """``what`` failed with ``error`` on ``ifname``, and the fix (``fix``: a missing one)."""
    if isinstance(error, PermissionError):
        return f"{what}: permission denied; run the agent as root (CAP_NET_RAW)"
    if error.errno in (errno.ENODEV, errno.ENXIO):
        return f"{what}: interface {ifname!r} does not exist; {fix}"
    if error.errno == errno.ENETDOWN:
        return f"{what}: interface {ifname!r} is down; bring it up (`ip link set up`)"
    return f"{what}: {error.strerror or error}"


class ArpAsk:
    """ARP requests for one neighbour (who-has target tell source), from our address on
    one interface: what the kernel sends once a second while it resolves an address.

    Why: under loss the kernels on both ends of a link lose each other's ARP entries now
    and then (three re-checks lost in a row); until one of their broadcasts a second gets
    through, the echo probes or their replies wait in a queue. A request of ours
    settles both sides at once: the neighbour learns our address from it, and its
    reply refreshes ours.

    Guarantees:

    - :meth:`ask` sends one broadcast frame at once and returns; it never blocks and
      never raises. A failure (no such interface, down, no CAP_NET_RAW, no Ethernet
      address) is logged, once until an ask succeeds again, and the next ask tries
      anew. The packet socket is opened on the first ask and kept (send only: it
      receives nothing); :meth:`close` closes it, idempotent.
    """

    def __init__(
        self, source: ipaddress.IPv4Address, target: ipaddress.IPv4Address, ifname: str
    ) -> None:
        self.source = ipaddress.IPv4Address(source)
        self.target = ipaddress.IPv4Address(target)
        self.ifname = ifname
        self.sent = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None
        self._frame = b""

    def __repr__(self) -> str:
        return f"ArpAsk({str(self.target)!r} from {str(self.source)!r} on {self.ifname!r})"

    def ask(self) -> None:
        try:
            if self._sock is None:
                self._sock, self._frame = self._open()
            self._sock.send(self._frame)
        except (OSError, EffectError) as error:
            self.close()
            why = str(error) if isinstance(error, EffectError) else self._why(error)
            if why != self.last_error:
                log.warning("%s", why)
            self.last_error = why
            return
        self.sent += 1
        self.last_error = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _open(self) -> tuple[socket.socket, bytes]:
        sock = open_packet_socket(self.ifname)
        mac = ethernet_address(sock)
        if mac is None:
            sock.close()
            raise EffectError(
                f"cannot ask ARP for {self.target} on {self.ifname}: the interface has no "
                "Ethernet address"
            )
        return sock, build_frame(self.source, mac, target=self.target)

    def _why(self, error: OSError) -> str:
        what = f"cannot ask ARP for {self.target} on {self.ifname}"
        return interface_problem(error, what, self.ifname, "fix its interface")
