"""Prometheus metrics of the agent (prometheus-client), off unless `[metrics] listen` is set.

    [metrics]
    listen = "127.0.0.1:9405"      # default "" = no endpoint

Exposed at http://LISTEN/metrics:

    mosqit_failover_up                        1 when the agent's status could be read
    mosqit_failover_state{role}               1 for this node's role, 0 for the others
    mosqit_failover_mode{mode}                AUTO, MANUAL or MAINTENANCE
    mosqit_failover_epoch                     the promotion epoch
    mosqit_failover_peer_state{role}          the peer's last known role (UNKNOWN if never heard)
    mosqit_failover_peer_heard_seconds        since the last message from the peer
    mosqit_failover_transitions_total{kind,from_state,to_state}   decisions since start
    mosqit_failover_probe_sent_total{probe,target,network}        echo requests sent
    mosqit_failover_probe_lost_total{probe,target,network}        ... not answered
    mosqit_failover_probe_rtt_seconds{probe,target,network}       the last round-trip time
    mosqit_failover_peer_link_accepted_total, _sent_total
    mosqit_failover_peer_link_dropped_total{reason}               forged, replayed, stale ...
    mosqit_failover_sync_lag_seconds, mosqit_failover_sync_pending   when the agent reports sync

Guarantees of `MetricsServer` (the side-effect interface): `start()` binds
the address or raises OSError naming it; the HTTP server runs in daemon
threads of prometheus-client and never touches the agent's state directly:
each scrape asks the event loop for a status snapshot
(`run_coroutine_threadsafe`), waiting at most `scrape_timeout`; if the loop
does not answer in time the scrape still succeeds with `mosqit_failover_up 0`.
`decision()` only increments a counter (thread-safe, no I/O). `close()` stops
the server and frees the port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mosqit_failover.actions import Decision
from mosqit_failover.nagios import sync_numbers

ROLES = ("WAITING", "STANDBY", "PROMOTING", "ACTIVE", "DEMOTING")
MODES = ("AUTO", "MANUAL", "MAINTENANCE")
P = "mosqit_failover_"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _one_of(name: str, doc: str, label: str, values: tuple[str, ...], current: Any) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value in values:
        family.add_metric([value], 1.0 if value == current else 0.0)
    return family


def families(status: dict[str, Any]) -> list[Metric]:
    """The metrics of one status snapshot (pure; absent parts are left out)."""
    out: list[Metric] = [
        _one_of(P + "state", "This node's role (1 = current).", "role", ROLES, status.get("role")),
        _one_of(P + "mode", "This node's mode (1 = current).", "mode", MODES, status.get("mode")),
    ]
    epoch = _num(status.get("epoch"))
    if epoch is not None:
        out.append(GaugeMetricFamily(P + "epoch", "Promotion epoch of this node.", value=epoch))
    peer = status.get("peer")
    if isinstance(peer, dict):
        out.append(
            _one_of(
                P + "peer_state",
                "The peer's last known role.",
                "role",
                (*ROLES, "UNKNOWN"),
                peer.get("role"),
            )
        )
        heard = _num(peer.get("heard_ago"))
        if heard is not None:
            out.append(
                GaugeMetricFamily(
                    P + "peer_heard_seconds", "Seconds since the last peer message.", value=heard
                )
            )
        out.append(
            GaugeMetricFamily(
                P + "peer_auth_failing",
                "1 while datagrams from the peer's address fail authentication.",
                value=1 if peer.get("unauthenticated") else 0,
            )
        )
    out += _probe_families(status.get("probes"))
    out += _link_families(status.get("peer_link"))
    lag, pending = sync_numbers(status.get("sync"))
    if lag is not None:
        out.append(GaugeMetricFamily(P + "sync_lag_seconds", "Sync lag behind.", value=lag))
    if pending is not None:
        out.append(GaugeMetricFamily(P + "sync_pending", "Changes not yet synced.", value=pending))
    return out


def _probe_families(probes: Any) -> list[Metric]:
    labels = ["probe", "target", "network"]
    sent = CounterMetricFamily(P + "probe_sent", "Echo requests sent.", labels=labels)
    lost = CounterMetricFamily(P + "probe_lost", "Echo requests not answered.", labels=labels)
    rtt = GaugeMetricFamily(P + "probe_rtt_seconds", "Last echo round-trip time.", labels=labels)
    for name, probe in sorted(probes.items() if isinstance(probes, dict) else []):
        if not isinstance(probe, dict):
            continue
        target, _, network = str(name).partition("-")
        key = [str(name), target, network]
        n_sent, n_answered = _num(probe.get("sent")), _num(probe.get("answered"))
        if n_sent is not None and n_answered is not None:
            sent.add_metric(key, n_sent)
            lost.add_metric(key, max(n_sent - n_answered, 0.0))
        last = _num(probe.get("last_rtt_ms"))
        if last is not None:
            rtt.add_metric(key, last / 1000)
    return [sent, lost, rtt]


def _link_families(link: Any) -> list[Metric]:
    if not isinstance(link, dict):
        return []
    out: list[Metric] = []
    for key, doc in (("accepted", "Peer messages accepted."), ("sent", "Peer messages sent.")):
        value = _num(link.get(key))
        if value is not None:
            out.append(CounterMetricFamily(P + f"peer_link_{key}", doc, value=value))
    dropped = CounterMetricFamily(
        P + "peer_link_dropped", "Peer datagrams dropped, by reason.", labels=["reason"]
    )
    reasons = link.get("dropped")
    for reason, count in sorted(reasons.items() if isinstance(reasons, dict) else []):
        value = _num(count)
        if value is not None:
            dropped.add_metric([str(reason)], value)
    strangers = _num(link.get("from_strangers"))
    if strangers is not None:
        dropped.add_metric(["from-stranger"], strangers)
    return [*out, dropped]


class _StatusCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any] | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        status = self._read()
        yield GaugeMetricFamily(
            P + "up", "1 if the agent's status could be read.", value=0.0 if status is None else 1
        )
        if status is not None:
            yield from families(status)


class MetricsServer:
    """The /metrics endpoint; see the module doc for its guarantees."""

    def __init__(
        self,
        host: str,
        port: int,
        status: Callable[[], dict[str, Any]],
        loop: asyncio.AbstractEventLoop,
        scrape_timeout: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self._status = status
        self._loop = loop
        self._timeout = scrape_timeout
        self.registry = CollectorRegistry()
        self.registry.register(_StatusCollector(self._snapshot))
        self.transitions = Counter(
            P + "transitions",
            "Decisions since the agent started, by kind and roles.",
            ["kind", "from_state", "to_state"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _snapshot(self) -> dict[str, Any] | None:
        """Called in a server thread: take the status in the event loop's thread."""

        async def take() -> dict[str, Any]:
            return self._status()

        try:
            future = asyncio.run_coroutine_threadsafe(take(), self._loop)
            return future.result(self._timeout)
        except Exception:  # loop busy, closed, or status() failed: report up 0
            return None

    def decision(self, decision: Decision) -> None:
        self.transitions.labels(decision.kind, decision.old_role.value, decision.role.value).inc()

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(
                self.port, self.host, registry=self.registry
            )
        except OSError as error:
            raise OSError(
                error.errno,
                f"metrics: cannot listen on {self.host}:{self.port}: {error.strerror}; "
                "fix metrics.listen",
            ) from None
        self.port = self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
