"""PeerLink over real UDP sockets on loopback: what reaches `deliver`, what is
reported to `on_unauthenticated`, and the ack handshake across a restart.

The link under test is alpha, bound on 127.0.0.1. The test plays beta from
sockets bound to beta's configured addresses (127.0.2.12 on network a,
127.0.3.12 on b, on the cluster port, where alpha's link sends to), and a
stranger from 127.0.2.99. The three-node tests run a PeerLink each for alpha,
beta and gamma on 127.0.0.11-13. Only loopback traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from mosqit_failover import peerlink
from mosqit_failover.authkeys import Key, Keyring
from mosqit_failover.config import Config, parse
from mosqit_failover.events import PeerView, Role
from mosqit_failover.journal import DecisionLog
from mosqit_failover.peerlink import PeerLink
from mosqit_failover.wire import (
    MAC_SIZE,
    MAX_DATAGRAM,
    NO_ACK,
    Reason,
    Receiver,
    Rejected,
    Sender,
    binding,
)

RING = Keyring((Key(1, bytes(range(32))),))
OTHER_SECRET = Keyring((Key(1, bytes(range(1, 33))),))  # same key id, another secret
LINK_HOST = "127.0.0.1"
PEER_ADDRESSES = {"a": "127.0.2.12", "b": "127.0.3.12"}
ALPHA = {"a": "127.0.2.11", "b": "127.0.3.11"}  # alpha's configured addresses
STRANGER = "127.0.2.99"
OFF_ACK = 36
OFF_ROLE = 52 + 1 + len("billing") + 1 + len("beta")  # in beta's datagrams
DEADLINE = 10.0  # seconds; only bounds a hang, never measures anything

CONFIG = """
[cluster]
name = "billing"
port = {port}

[vip]
address = "127.0.2.50/24"
interface = "eth0"

[networks.a]
subnet = "127.0.2.0/24"

[networks.b]
subnet = "127.0.3.0/24"

[nodes.alpha]
a = {{ interface = "eth0", address = "127.0.2.11" }}
b = {{ interface = "eth1", address = "127.0.3.11" }}

[nodes.beta]
a = {{ interface = "eth0", address = "127.0.2.12" }}
b = {{ interface = "eth1", address = "127.0.3.12" }}
"""

ALPHA_VIEW = PeerView(
    node="alpha",
    role=Role.ACTIVE,
    epoch=3,
    uplinks=(("a", True), ("b", True)),
    candidate=False,
    yielding=False,
    maintenance=False,
    manual=False,
)
BETA_VIEW = dataclasses.replace(ALPHA_VIEW, node="beta", role=Role.STANDBY)


@pytest.fixture(autouse=True)
def _no_bound_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beta here signs without the binding, as agents before it: the link's bound copy
    beside its datagrams (peerlink.BOUND_COPY_EVERY) would be one more datagram for
    every count below. test_wire_binding.py tests the copies."""
    monkeypatch.setattr(peerlink, "BOUND_COPY_EVERY", math.inf)


class Peer:
    """Beta's side, as a PeerLink would run it: Sender and Receiver sharing a boot id."""

    def __init__(self, ring: Keyring = RING, cluster: str = "billing", node: str = "beta") -> None:
        self.tx = Sender(cluster, node, ring)
        self.rx = Receiver(cluster, node, "alpha", ring, boot_id=self.tx.boot_id)
        self.view = dataclasses.replace(BETA_VIEW, node=node)

    def send(self, now: float, network: str | None = None) -> bytes:
        """Beta's next datagram, bound to the addresses of `network` (None: signed as
        an agent from before the binding signs, which the link accepts too)."""
        self.tx.ack = self.rx.ack_for_peer
        bound = b"" if network is None else binding(PEER_ADDRESSES[network], ALPHA[network])
        return self.tx.encode(self.view, now, bound=bound)

    def hear(self, data: bytes, network: str) -> PeerView | Rejected:
        """Alpha's datagram as beta's link checks it, come on `network`."""
        bound = binding(ALPHA[network], PEER_ADDRESSES[network])
        return self.rx.decode(data, now(), bound=bound)


def resign(packet: bytes, ring: Keyring = RING) -> bytes:
    body = packet[:-MAC_SIZE]
    return body + hmac.new(ring.signing.secret, body, hashlib.sha256).digest()


@dataclass
class Loopback:
    """A real PeerLink for alpha on 127.0.0.1, and sockets at beta's and a stranger's address."""

    port: int
    config: Config
    peer_socks: dict[str, socket.socket]
    stranger: socket.socket
    with_callback: bool = True
    link: PeerLink | None = None
    delivered: list[tuple[str, PeerView]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # each delivered one's wait in the socket
    reported: list[tuple[str, str, str]] = field(default_factory=list)  # network, reason, detail
    reported_by: list[str] = field(default_factory=list)  # the peer each report names
    _expected: int = 0

    @property
    def peerlink(self) -> PeerLink:
        assert self.link is not None
        return self.link

    async def start(self) -> PeerLink:
        """(Re)start alpha's link: a new PeerLink, a new boot id, an empty memory."""
        if self.link is not None:
            self.link.close()
        self._expected = 0

        def deliver(network: str, view: PeerView, waited: float) -> None:
            self.delivered.append((network, view))
            self.waits.append(waited)

        def report(peer: str, network: str, reason: str, detail: str) -> None:
            self.reported.append((network, reason, detail))
            self.reported_by.append(peer)

        log = DecisionLog(use_journal=False)
        if self.with_callback:
            link = PeerLink(self.config, "alpha", RING, deliver, log, on_unauthenticated=report)
        else:
            link = PeerLink(self.config, "alpha", RING, deliver, log)
        await link.open(LINK_HOST, self.port)
        self.link = link
        return link

    def processed(self) -> int:
        rx = self.peerlink.receiver
        return rx.accepted + sum(rx.counters.values()) + self.peerlink.foreign

    def send(self, data: bytes, network: str = "a") -> None:
        """A datagram to alpha's link from beta's address on `network`, or from the stranger."""
        sock = self.stranger if network == "stranger" else self.peer_socks[network]
        sock.sendto(data, (LINK_HOST, self.port))
        self._expected += 1

    async def settle(self) -> None:
        """Wait until the link has handled every datagram sent to it so far."""
        await until(lambda: self.processed() >= self._expected)
        assert self.processed() == self._expected

    async def heard_by_peer(self, network: str) -> bytes:
        """The next datagram alpha's link sent to beta's address on `network`."""
        loop = asyncio.get_running_loop()
        data, _ = await asyncio.wait_for(
            loop.sock_recvfrom(self.peer_socks[network], 2048), DEADLINE
        )
        return data


async def until(condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < give_up, "the link did not handle the datagrams in time"
        await asyncio.sleep(0.001)


def _udp(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def loopback(with_callback: bool = True) -> AsyncIterator[Loopback]:
    """Beta's sockets on a free port P (both networks), alpha's link on 127.0.0.1:P."""
    for _ in range(20):
        socks: list[socket.socket] = []
        try:
            socks.append(_udp(PEER_ADDRESSES["a"], 0))
            port = socks[0].getsockname()[1]
            socks.append(_udp(PEER_ADDRESSES["b"], port))
            socks.append(_udp(STRANGER, 0))
            harness = Loopback(
                port,
                parse(CONFIG.format(port=port)),
                {"a": socks[0], "b": socks[1]},
                socks[2],
                with_callback,
            )
            await harness.start()
        except OSError:  # the port is taken on one of the addresses: another one
            for sock in socks:
                sock.close()
            continue
        break
    else:
        pytest.fail("no free UDP port on the loopback addresses")
    try:
        yield harness
    finally:
        if harness.link is not None:
            harness.link.close()
        for sock in socks:
            sock.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await asyncio.wait_for(test(), 4 * DEADLINE)

    asyncio.run(main())


def now() -> float:
    return time.time()


async def form(h: Loopback, beta: Peer) -> None:
    """The handshake: beta speaks, alpha's link answers with beta's boot id, beta confirms."""
    h.send(beta.send(now()))
    await h.settle()
    assert h.reported[-1][:2] == ("a", "unconfirmed")
    h.peerlink.send(ALPHA_VIEW)
    for network in ("a", "b"):
        assert beta.hear(await h.heard_by_peer(network), network) == ALPHA_VIEW
    h.send(beta.send(now()))
    await h.settle()
    assert h.delivered[-1] == ("a", BETA_VIEW)


# --- Task: replay after a restart ------------------------------------------------


def test_a_restarted_link_never_delivers_a_datagram_recorded_before_it() -> None:
    async def scenario() -> None:
        async with loopback() as h:
            beta = Peer()
            await form(h, beta)
            recorded = [beta.send(now()) for _ in range(10)]
            for pkt in recorded[::2]:  # some delivered, the others only recorded
                h.send(pkt)
            await h.settle()
            # all accepted; those read in one wake-up reach `deliver` as the newest only
            assert h.peerlink.receiver.accepted == 1 + 5
            assert h.delivered[-1] == ("a", BETA_VIEW)
            old_boot = h.peerlink.boot_id

            await h.start()  # alpha's agent restarts
            assert h.peerlink.boot_id != old_boot
            delivered, reported = len(h.delivered), len(h.reported)
            for pkt in [*recorded, *reversed(recorded)]:
                h.send(pkt, "a")
                h.send(pkt, "b")
            await h.settle()
            assert len(h.delivered) == delivered  # none of the 40
            # one report per network and reason of a read (each costs the core a pass)
            reports = [(n, r) for n, r, _ in h.reported[reported:]]
            assert len(reports) == len(set(reports)) and {n for n, _ in reports} == {"a", "b"}
            assert {r for _, r in reports} <= {"unconfirmed", "replayed"}
            assert sum(h.peerlink.receiver.counters.values()) >= 40

            # One round trip and messages flow again: the new link acks beta's start
            # (learned from the replays, all of them authentic), beta acks the new start.
            h.peerlink.send(ALPHA_VIEW)
            for network in ("a", "b"):
                assert beta.hear(await h.heard_by_peer(network), network) == ALPHA_VIEW
            assert beta.rx.ack_for_peer == h.peerlink.boot_id
            h.send(beta.send(now()), "b")
            await h.settle()
            assert h.delivered[-1] == ("b", BETA_VIEW)
            for pkt in recorded:  # and the recordings still never
                h.send(pkt)
            await h.settle()
            assert len(h.delivered) == delivered + 1

    run(scenario)


def test_both_sides_restarted_converge_in_one_round_trip() -> None:
    async def scenario() -> None:
        async with loopback() as h:
            beta = Peer()
            h.peerlink.send(ALPHA_VIEW)  # alpha has heard nobody: ack all zeros
            first = await h.heard_by_peer("a")
            assert reason(beta.hear(first, "a")) is Reason.UNCONFIRMED
            h.send(beta.send(now()))  # acks alpha's start
            await h.settle()
            assert h.delivered == [("a", BETA_VIEW)] and h.reported == []
            h.peerlink.send(ALPHA_VIEW)
            assert beta.hear(await h.heard_by_peer("a"), "a") == ALPHA_VIEW

    run(scenario)


def reason(result: PeerView | Rejected) -> Reason | None:
    return result.reason if isinstance(result, Rejected) else None


# --- Task: datagrams from the peer that fail authentication -----------------------


def test_a_peer_with_another_secret_is_reported_on_every_network() -> None:
    """The bug: every datagram was dropped as bad-mac and the peer looked silent."""

    async def scenario() -> None:
        async with loopback() as h:
            wrong = Peer(OTHER_SECRET)
            for network in ("a", "b", "a"):
                h.send(wrong.send(now()), network)
            await h.settle()
            assert h.delivered == []
            # read together: one report per network and reason
            assert h.reported == [("a", "bad-mac", "key id 1"), ("b", "bad-mac", "key id 1")]
            h.send(wrong.send(now()), "a")
            await h.settle()
            assert h.reported[2:] == [("a", "bad-mac", "key id 1")]  # the next read's
            h.send(wrong.send(now()), "stranger")  # not the peer's address: only counted
            await h.settle()
            assert len(h.reported) == 3 and h.peerlink.foreign == 1


def test_a_flood_from_a_peers_address_is_one_report_per_reason_and_read() -> None:
    """Each report costs the core a pass: 8,500 junk datagrams a second from beta's
    address, each reported, made a 10 ms timer 50 ms late (a helper's finding)."""

    async def scenario() -> None:
        async with loopback() as h:
            wrong = Peer(OTHER_SECRET)
            for _ in range(100):  # one read: READ_BATCH at most
                h.send(b"MQ" + bytes(60), "a")
                h.send(wrong.send(now()), "b")
            await h.settle()
            assert sorted((n, r) for n, r, _ in h.reported) == [
                ("a", "unknown-version"),
                ("b", "bad-mac"),
            ]
            counters = h.peerlink.receiver.counters
            assert counters[Reason.UNKNOWN_VERSION] == counters[Reason.BAD_MAC] == 100

    run(scenario)

    run(scenario)


def test_every_drop_reason_but_late_is_reported() -> None:
    async def scenario() -> None:
        async with loopback() as h:
            beta = Peer()
            await form(h, beta)
            before = len(h.reported)
            t = now()
            genuine = beta.send(t)
            second = beta.send(t)
            role_zero = bytearray(beta.send(t))
            role_zero[OFF_ROLE] = 0
            cases: list[tuple[str, bytes]] = [
                ("oversized", genuine + bytes(MAX_DATAGRAM)),
                ("truncated", genuine[:40]),
                ("bad-magic", b"XX" + genuine[2:]),
                ("unknown-version", genuine[:2] + b"\x01" + genuine[3:]),
                ("unknown-key", Peer(Keyring((Key(9, bytes(32)),))).send(t)),
                ("bad-mac", Peer(OTHER_SECRET).send(t)),
                ("wrong-cluster", Peer(cluster="payroll").send(t)),
                ("from-self", Peer(node="alpha").send(t)),
                ("unknown-sender", Peer(node="gamma").send(t)),
                ("stale", beta.tx.encode(beta.view, t - 3600)),
                ("malformed", resign(bytes(role_zero))),
            ]
            for _, data in cases:
                h.send(data)
                await h.settle()
            h.send(second)  # accepted
            h.send(genuine)  # older, unseen: late, normal, not reported
            h.send(genuine)  # now seen: replayed
            h.send(Peer().send(now()))  # beta's agent restarted, has not heard alpha yet
            await h.settle()
            expected = [name for name, _ in cases] + ["replayed", "unconfirmed"]
            assert [r for _, r, _ in h.reported[before:]] == expected
            assert {r for _, r, _ in h.reported[before:]} == {r.value for r in Reason} - {"late"}
            assert h.peerlink.receiver.counters[Reason.LATE] == 1
            assert set(h.reported_by) == {"beta"}  # every one from beta's address
            assert h.delivered[-1] == ("a", BETA_VIEW) and len(h.delivered) == 2

    run(scenario)


def test_reported_detail_and_log_never_carry_unauthenticated_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> None:
        async with loopback() as h:
            forged = Peer(OTHER_SECRET, cluster="EVIL-CLUSTER", node="EVIL-NODE")
            h.send(forged.send(now()))
            await h.settle()
            assert h.reported == [("a", "bad-mac", "key id 1")]

    run(scenario)
    assert "EVIL" not in capsys.readouterr().err


def test_existing_call_sites_without_the_callback_still_work() -> None:
    async def scenario() -> None:
        async with loopback(with_callback=False) as h:
            h.send(Peer(OTHER_SECRET).send(now()))
            h.send(Peer().send(now()))  # unconfirmed
            await h.settle()
            counters = h.peerlink.receiver.counters
            assert counters[Reason.BAD_MAC] == 1 and counters[Reason.UNCONFIRMED] == 1
            assert h.reported == [] and h.delivered == []

    run(scenario)


def test_the_link_sends_the_ack_it_learned() -> None:
    async def scenario() -> None:
        async with loopback() as h:
            h.peerlink.send(ALPHA_VIEW)
            for network in ("a", "b"):
                assert (await h.heard_by_peer(network))[OFF_ACK : OFF_ACK + 16] == NO_ACK
            beta = Peer()
            h.send(beta.send(now()))
            await h.settle()
            h.peerlink.send(ALPHA_VIEW)
            for network in ("a", "b"):
                sent = await h.heard_by_peer(network)
                assert sent[4:20] == h.peerlink.boot_id
                assert sent[OFF_ACK : OFF_ACK + 16] == beta.tx.boot_id

    run(scenario)


# --- three nodes: every link talks to every peer ----------------------------------

TRIO = {"alpha": "127.0.0.11", "beta": "127.0.0.12", "gamma": "127.0.0.13"}
TRIO_CONFIG = """
[cluster]
name = "billing"
port = {port}
order = ["alpha", "beta", "gamma"]

[vip]
address = "127.0.0.50/24"
interface = "eth0"

[networks.a]
subnet = "127.0.0.0/24"

[networks.b]
subnet = "127.0.4.0/24"

[nodes.alpha]
a = {{ interface = "eth0", address = "127.0.0.11" }}
b = {{ interface = "eth1", address = "127.0.4.11" }}

[nodes.beta]
a = {{ interface = "eth0", address = "127.0.0.12" }}
b = {{ interface = "eth1", address = "127.0.4.12" }}

[nodes.gamma]
a = {{ interface = "eth0", address = "127.0.0.13" }}
b = {{ interface = "eth1", address = "127.0.4.13" }}
"""


@dataclass
class Trio:
    """A real PeerLink per node, each bound to its network-a address on one port (the
    network-b addresses are bound by nobody: those copies are lost, as on a dead cable)."""

    port: int
    links: dict[str, PeerLink]
    delivered: dict[str, list[tuple[str, PeerView]]]
    reported: dict[str, list[tuple[str, str, str]]]  # (peer, network, reason)

    def processed(self, node: str) -> int:
        rx = self.links[node].receiver
        return rx.accepted + sum(rx.counters.values()) + self.links[node].foreign


def trio_view(node: str) -> PeerView:
    others = tuple(n for n in TRIO if n != node)
    return dataclasses.replace(ALPHA_VIEW, node=node, data_epoch=3, heard=others)


def _recorders(
    delivered: list[tuple[str, PeerView]], reported: list[tuple[str, str, str]]
) -> tuple[Callable[[str, PeerView, float], None], Callable[[str, str, str, str], None]]:
    def deliver(network: str, view: PeerView, waited: float) -> None:
        delivered.append((network, view))

    def report(peer: str, network: str, reason: str, detail: str) -> None:
        reported.append((peer, network, reason))

    return deliver, report


@contextlib.asynccontextmanager
async def trio() -> AsyncIterator[Trio]:
    for _ in range(20):
        probe = _udp(TRIO["alpha"], 0)
        port = probe.getsockname()[1]
        probe.close()
        config = parse(TRIO_CONFIG.format(port=port))
        links: dict[str, PeerLink] = {}
        delivered: dict[str, list[tuple[str, PeerView]]] = {n: [] for n in TRIO}
        reported: dict[str, list[tuple[str, str, str]]] = {n: [] for n in TRIO}
        try:
            for node, address in TRIO.items():
                deliver, report = _recorders(delivered[node], reported[node])
                log = DecisionLog(use_journal=False)
                links[node] = PeerLink(config, node, RING, deliver, log, on_unauthenticated=report)
                await links[node].open(address, port)
        except OSError:  # the port is taken on one of the addresses: another one
            for link in links.values():
                link.close()
            continue
        break
    else:
        pytest.fail("no free UDP port on the loopback addresses")
    try:
        yield Trio(port, links, delivered, reported)
    finally:
        for link in links.values():
            link.close()


def test_three_links_each_hear_the_two_others() -> None:
    async def scenario() -> None:
        async with trio() as t:
            expected = dict.fromkeys(TRIO, 0)
            for round_ in range(3):
                for node, link in t.links.items():
                    link.send(trio_view(node))
                    for other in TRIO:
                        expected[other] += other != node
                await until(lambda: all(t.processed(n) >= expected[n] for n in TRIO))
                if round_ == 0:  # nobody had heard anybody: every first one unconfirmed
                    for node in TRIO:
                        assert t.delivered[node] == []
                        assert sorted(p for p, _, _ in t.reported[node]) == sorted(
                            n for n in TRIO if n != node
                        )
                        assert {r for _, _, r in t.reported[node]} == {"unconfirmed"}
            for node, link in t.links.items():
                others = {n for n in TRIO if n != node}
                # from the second round on, each datagram carries its destination's ack
                views = [view for _, view in t.delivered[node]]
                assert {v.node for v in views} == others
                assert all(v == trio_view(v.node) for v in views) and len(views) == 4
                assert {network for network, _ in t.delivered[node]} == {"a"}
                assert len(t.reported[node]) == 2  # only the first round's
                for other in others:
                    assert link.receiver.ack_for(other) == t.links[other].boot_id

    run(scenario)


def test_an_unauthenticated_datagram_from_gammas_address_is_gammas() -> None:
    async def scenario() -> None:
        async with trio() as t:
            alpha = t.links["alpha"]
            target = (TRIO["alpha"], t.port)
            wrong = Sender("billing", "gamma", OTHER_SECRET)
            gamma_view = trio_view("gamma")
            socks = [_udp(TRIO["gamma"], 0), _udp("127.0.4.13", 0), _udp("127.0.0.99", 0)]
            try:
                for sock in socks:
                    sock.sendto(wrong.encode(gamma_view, now()), target)
                # gamma's key holder signing as beta, from gamma's address
                as_beta = Sender("billing", "beta", RING)
                as_beta.ack = alpha.boot_id
                socks[0].sendto(as_beta.encode(trio_view("beta"), now()), target)
                await until(lambda: t.processed("alpha") >= 4)
            finally:
                for sock in socks:
                    sock.close()
            assert t.reported["alpha"] == [
                ("gamma", "a", "bad-mac"),
                ("gamma", "b", "bad-mac"),
                ("gamma", "a", "unknown-sender"),
            ]
            assert alpha.foreign == 1 and t.delivered["alpha"] == []
            assert alpha.receiver.boot_id_of("beta") is None  # beta's state untouched

    run(scenario)


def test_a_heartbeat_for_one_network_goes_to_the_peer_on_that_network_only() -> None:
    """A calm node's heartbeat (SendPeerMessage with a network) leaves on that network
    alone; without one, on every network."""

    async def scenario() -> None:
        async with loopback() as h:
            beta = Peer()
            await form(h, beta)
            sent = h.peerlink.sent
            h.peerlink.send(ALPHA_VIEW, "b")
            assert beta.hear(await h.heard_by_peer("b"), "b") == ALPHA_VIEW
            assert h.peerlink.sent == sent + 1
            with pytest.raises(BlockingIOError):
                h.peer_socks["a"].recvfrom(2048)  # nothing on network a
            h.peerlink.send(ALPHA_VIEW)
            for network in ("a", "b"):
                assert beta.hear(await h.heard_by_peer(network), network) == ALPHA_VIEW

    run(scenario)


# --- Task: what waited in the socket (inbox.py) -----------------------------------


def _beta_at_epoch(beta: Peer, epoch: int) -> bytes:
    beta.view = dataclasses.replace(BETA_VIEW, epoch=epoch)
    return beta.send(now())


async def _formed(h: Loopback) -> tuple[Peer, int, int]:
    """beta after the handshake, and how many views alpha's link had delivered and
    accepted by then."""
    beta = Peer()
    await form(h, beta)
    return beta, len(h.delivered), h.peerlink.receiver.accepted


def test_datagrams_read_together_reach_deliver_as_the_newest_of_each_network() -> None:
    """Eight of beta's heartbeats wait while alpha's loop does not run (no await between
    the sends): every one is accepted (its replay state kept), but only the last on
    each network reaches `deliver`, in the order those two came."""

    async def scenario() -> None:
        async with loopback() as h:
            beta, delivered, accepted = await _formed(h)
            for epoch in range(10, 18):
                h.send(_beta_at_epoch(beta, epoch), "a" if epoch % 2 == 0 else "b")
            await h.settle()
            assert h.peerlink.receiver.accepted == accepted + 8
            got = [(network, view.epoch) for network, view in h.delivered[delivered:]]
            assert got == [("a", 16), ("b", 17)]
            assert h.peerlink.stale == 0

    run(scenario)


def test_a_datagram_that_waited_past_the_schedule_gap_is_dropped_and_said(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """alpha's loop blocked longer than the schedule gap (as a SIGSTOP would): what
    waited that long is not delivered (the kernel's receive timestamp says so), is not
    even decoded, and one line says why, once the whole backlog is read (more than one
    wake-up reads); what came after the block is delivered."""
    monkeypatch.setattr(peerlink, "RECEIVE_BUFFER_MIN", 4 << 20)  # room for all 300

    async def scenario() -> None:
        async with loopback() as h:
            beta, delivered, accepted = await _formed(h)
            for epoch in range(20, 320):
                h.send(_beta_at_epoch(beta, epoch), "a")
            gap = h.config.timing.schedule_gap
            time.sleep(gap + 0.2)  # the loop cannot run: the 300 wait in the socket
            h.send(_beta_at_epoch(beta, 320), "b")
            await until(lambda: len(h.delivered) > delivered)
            assert h.delivered[delivered:] == [("b", dataclasses.replace(BETA_VIEW, epoch=320))]
            assert h.peerlink.stale == 300
            assert h.peerlink.receiver.accepted == accepted + 1

    run(scenario)
    err = capsys.readouterr().err
    assert err.count("peer datagrams that waited") == 1, err
    assert "dropped 300 peer datagrams that waited up to 1." in err, err
    assert "this agent was not running" in err


def test_a_datagram_that_waited_within_the_schedule_gap_is_delivered_with_its_wait() -> None:
    """alpha's loop blocked for 0.4 s (a short SIGSTOP): beta's view that waited is
    delivered, with the time it spent in the socket, so that the core counts it heard
    when it arrived, during the stop (a word read at the resume is no word from after
    it: two holders in 2 of 12 simulated runs before)."""

    async def scenario() -> None:
        async with loopback() as h:
            beta, delivered, _ = await _formed(h)
            h.send(_beta_at_epoch(beta, 40), "a")
            time.sleep(0.4)  # the loop cannot run: the datagram waits in the socket
            await until(lambda: len(h.delivered) > delivered)
            assert h.delivered[delivered:] == [("a", dataclasses.replace(BETA_VIEW, epoch=40))]
            assert 0.35 <= h.waits[-1] < h.config.timing.schedule_gap, h.waits[-1]
            assert h.peerlink.stale == 0

    run(scenario)


def test_a_flood_of_junk_between_heartbeats_still_yields_only_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stranger's junk fills more than one read batch between beta's waiting
    heartbeats. Handed over batch by batch, the core acted on one old view after
    another (a helper's finding); now only the newest, once the socket is empty.
    (A buffer for the whole flood: a pair's own is sized for its heartbeats.)"""
    monkeypatch.setattr(peerlink, "RECEIVE_BUFFER_MIN", 4 << 20)

    async def scenario() -> None:
        async with loopback() as h:
            beta, delivered, _ = await _formed(h)
            for epoch in range(400, 406):
                for _ in range(300):
                    h.send(b"junk" * 20, "stranger")
                h.send(_beta_at_epoch(beta, epoch), "a")
            await h.settle()
            got = [(network, view.epoch) for network, view in h.delivered[delivered:]]
            assert got == [("a", 405)]
            assert h.peerlink.foreign == 1800

    run(scenario)
