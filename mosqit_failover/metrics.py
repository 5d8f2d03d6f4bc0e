"""Prometheus metrics of the agent (prometheus-client), off unless `[metrics] listen` is set.

    [metrics]
    listen = "127.0.0.1:9405"      # default "" = no endpoint

Exposed at http://LISTEN/metrics, every series labelled `cluster` (the config's
cluster name) and `node` (this node's name), so that a fleet's alerts and
dashboards group the two nodes of a pair without hand-kept target labels:

    mosqit_failover_up                        1 when the agent's status could be read
    mosqit_failover_state{role}               1 for this node's role, 0 for the others
    mosqit_failover_role                      the role as a number: 0 WAITING, 1 STANDBY,
                                              2 PROMOTING, 3 ACTIVE, 4 DEMOTING
    mosqit_failover_mode{mode}                AUTO, MANUAL or MAINTENANCE
    mosqit_failover_candidate                 1 if this node may promote (sees both networks,
                                              not in maintenance, not backing off a failure)
    mosqit_failover_uplink_healthy{network}   this node's uplink (carrier and switch)
    mosqit_failover_epoch                     the promotion epoch
    mosqit_failover_failovers_total           times this node became ACTIVE since the agent started
    mosqit_failover_peer_state{peer,role}     each peer's last known role (UNKNOWN if never heard)
    mosqit_failover_peer_uplink_healthy{peer,network}  a peer's uplinks as it last reported them
    mosqit_failover_peer_heard_seconds{peer}  since the last message from that peer
    mosqit_failover_peer_candidate{peer}      1 if that peer last said it may take over
    mosqit_failover_peer_auth_failing{peer}   1 while that peer's datagrams fail authentication
    mosqit_failover_fence_state{peer,state}   the last fence of that peer: running, fenced, failed
                                              (all 0 when there was none)
    mosqit_failover_decisions_total{kind}     decisions by kind (promote, fence-failed, ...),
                                              every kind of the journal catalog from 0
    mosqit_failover_transitions_total{kind,from_state,to_state}   decisions since start
    mosqit_failover_probe_sent_total{probe,target,network}        echo requests sent
    mosqit_failover_probe_lost_total{probe,target,network}        ... not answered
    mosqit_failover_probe_rtt_seconds{probe,target,network}       the last round-trip time
    mosqit_failover_peer_link_accepted_total, _sent_total
    mosqit_failover_peer_link_dropped_total{reason}               forged, replayed, stale ...
                                                                  every reason from 0
    mosqit_failover_sync_running              1 while this node pushes its synced directories
    mosqit_failover_sync_lag_seconds{directory}   age of the oldest change not on the peer
    mosqit_failover_sync_pending{directory}       changes not yet on the peer
    mosqit_failover_sync_error{directory}         1 while the last push failed

Counters that alerts use with increase() start at 0 (every decision kind, every
drop reason): a counter born at 1 would hide its first event from increase().

Guarantees of `MetricsServer` (the side-effect interface): `start()` binds
the address or raises OSError naming it; the HTTP server runs in daemon
threads of prometheus-client and never touches the agent's state directly:
each scrape asks the event loop for a status snapshot
(`run_coroutine_threadsafe`), waiting at most `scrape_timeout`; if the loop
does not answer in time the scrape still succeeds with `mosqit_failover_up 0`
(labelled with the cluster and node of the last snapshot that was read).
`decision()` only increments counters (thread-safe, no I/O). `close()` stops
the server and frees the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mosqit_failover.actions import Decision
from mosqit_failover.kinds import DecisionKind
from mosqit_failover.metrics_http import serve_metrics
from mosqit_failover.wire import Reason

ROLES = ("WAITING", "STANDBY", "PROMOTING", "ACTIVE", "DEMOTING")
MODES = ("AUTO", "MANUAL", "MAINTENANCE")
FENCE_STATES = ("running", "fenced", "failed")
DROP_REASONS = (*(r.value for r in Reason), "from-stranger", "waited-too-long")
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


def _flags(name: str, doc: str, label: str, flags: Any) -> list[Metric]:
    """One 0/1 series per key of a {key: truthy} mapping (absent mapping: no family)."""
    if not isinstance(flags, dict):
        return []
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, ok in sorted(flags.items()):
        family.add_metric([str(key)], 1.0 if ok else 0.0)
    return [family]


def families(status: dict[str, Any]) -> list[Metric]:
    """The metrics of one status snapshot (pure; absent parts are left out)."""
    role = status.get("role")
    out: list[Metric] = [
        _one_of(P + "state", "This node's role (1 = current).", "role", ROLES, role),
        _one_of(P + "mode", "This node's mode (1 = current).", "mode", MODES, status.get("mode")),
    ]
    if role in ROLES:
        out.append(
            GaugeMetricFamily(
                P + "role",
                "This node's role: 0 WAITING, 1 STANDBY, 2 PROMOTING, 3 ACTIVE, 4 DEMOTING.",
                value=ROLES.index(role),
            )
        )
    if isinstance(status.get("candidate"), bool):
        out.append(
            GaugeMetricFamily(
                P + "candidate", "1 if this node may promote.", value=int(status["candidate"])
            )
        )
    uplinks = status.get("uplinks")
    if isinstance(uplinks, dict):  # network -> "healthy" or why not
        out += _flags(
            P + "uplink_healthy",
            "This node's uplink per network (carrier and switch answer).",
            "network",
            {net: why == "healthy" for net, why in uplinks.items()},
        )
    failures = status.get("resource_failures")
    if isinstance(failures, dict):  # resource -> failures that still count
        family = GaugeMetricFamily(
            P + "resource_failures",
            "Monitor failures of a resource on this node that still count against its "
            "restarts (timing.failure_timeout).",
            labels=["resource"],
        )
        for name, count in failures.items():
            if (value := _num(count)) is not None:
                family.add_metric([str(name)], value)
        out.append(family)
    epoch = _num(status.get("epoch"))
    if epoch is not None:
        out.append(GaugeMetricFamily(P + "epoch", "Promotion epoch of this node.", value=epoch))
    failovers = _num(status.get("failovers"))
    if failovers is not None:
        out.append(
            CounterMetricFamily(
                P + "failovers", "Times this node became ACTIVE since start.", value=failovers
            )
        )
    peers = status.get("peers")
    if not isinstance(peers, dict) or not peers:  # an older agent: its one peer
        peer = status.get("peer")
        peers = {peer.get("node"): peer} if isinstance(peer, dict) else {}
    out += _peer_families([p for p in peers.values() if isinstance(p, dict)])
    out += _probe_families(status.get("probes"))
    out += _link_families(status.get("peer_link"))
    out += _sync_families(status.get("sync"))
    return out


def _peer_families(peers: list[dict[str, Any]]) -> list[Metric]:
    """The peer_* families, one set of series per peer (label `peer`)."""
    if not peers:
        return []
    labels = ["peer"]
    state = GaugeMetricFamily(
        P + "peer_state", "The peer's last known role.", labels=[*labels, "role"]
    )
    uplink = GaugeMetricFamily(
        P + "peer_uplink_healthy",
        "The peer's uplinks as it last reported them.",
        labels=[*labels, "network"],
    )
    heard = GaugeMetricFamily(
        P + "peer_heard_seconds", "Seconds since the last peer message.", labels=labels
    )
    candidate = GaugeMetricFamily(
        P + "peer_candidate",
        "1 if the peer last said it may take over (both networks, not yielding).",
        labels=labels,
    )
    auth = GaugeMetricFamily(
        P + "peer_auth_failing",
        "1 while datagrams from the peer's address fail authentication.",
        labels=labels,
    )
    fence = GaugeMetricFamily(
        P + "fence_state",
        "The last attempt to fence the peer (1 = its state; all 0 if none).",
        labels=[*labels, "state"],
    )
    by_network = [*labels, "network"]
    misses = GaugeMetricFamily(
        P + "peer_echo_misses",
        "Echo probes to the peer missed in a row (the run still going).",
        labels=by_network,
    )
    loss = GaugeMetricFamily(
        P + "peer_echo_loss_ratio",
        "The recent share of echo round trips to the peer lost (0 without evidence).",
        labels=by_network,
    )
    blocked = GaugeMetricFamily(
        P + "peer_echo_blocked",
        "1 while the peer's messages cross the network and its ICMP echo does not.",
        labels=by_network,
    )
    for peer in peers:
        name = str(peer.get("node"))
        for role in (*ROLES, "UNKNOWN"):
            state.add_metric([name, role], 1.0 if peer.get("role") == role else 0.0)
        uplinks = peer.get("uplinks")
        for net, ok in sorted(uplinks.items() if isinstance(uplinks, dict) else []):
            uplink.add_metric([name, str(net)], 1.0 if ok else 0.0)
        ago = _num(peer.get("heard_ago"))
        if ago is not None:
            heard.add_metric([name], ago)
        if isinstance(peer.get("candidate"), bool):
            candidate.add_metric([name], 1.0 if peer["candidate"] else 0.0)
        auth.add_metric([name], 1.0 if peer.get("unauthenticated") else 0.0)
        attempt = peer.get("fence")
        current = attempt.get("state") if isinstance(attempt, dict) else None
        for value in FENCE_STATES:
            fence.add_metric([name, value], 1.0 if value == current else 0.0)
        _per_network(misses, name, peer.get("echo_misses"))
        _per_network(loss, name, peer.get("echo_loss"))  # absent from an older agent
        filtered = peer.get("echo_blocked")
        if isinstance(filtered, list):
            said = {str(net) for net in filtered}
            networks = peer.get("echo_misses")
            known = said | {str(n) for n in (networks if isinstance(networks, dict) else ())}
            _per_network(blocked, name, {net: float(net in said) for net in known})
    return [state, uplink, heard, candidate, auth, fence, misses, loss, blocked]


def _per_network(family: GaugeMetricFamily, peer: str, values: Any) -> None:
    """One sample per network of a {network: number} status field, if it is one."""
    pairs = values.items() if isinstance(values, dict) else []
    for net, value in sorted(pairs, key=lambda pair: str(pair[0])):
        number = _num(value)
        if number is not None:
            family.add_metric([peer, str(net)], number)


def _probe_families(probes: Any) -> list[Metric]:
    labels = ["probe", "target", "network"]
    sent = CounterMetricFamily(P + "probe_sent", "Echo requests sent.", labels=labels)
    lost = CounterMetricFamily(P + "probe_lost", "Echo requests not answered.", labels=labels)
    rtt = GaugeMetricFamily(P + "probe_rtt_seconds", "Last echo round-trip time.", labels=labels)
    for name, probe in sorted(probes.items() if isinstance(probes, dict) else []):
        if not isinstance(probe, dict):
            continue
        target, _, network = str(name).partition("-")
        # a multi-server probe is named peer-NETWORK-NODE: the agent says the network
        key = [str(name), target, str(probe.get("network") or network)]
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
    counts = {reason: 0.0 for reason in DROP_REASONS}  # the agent lists only non-zero reasons
    for reason, count in reasons.items() if isinstance(reasons, dict) else []:
        value = _num(count)
        if value is not None:
            counts[str(reason)] = value
    beside = (("from_strangers", "from-stranger"), ("waited_too_long", "waited-too-long"))
    for key, reason in beside:
        value = _num(link.get(key))
        if value is not None:
            counts[reason] = value
    for reason, value in sorted(counts.items()):
        dropped.add_metric([reason], value)
    return [*out, dropped]


def _sync_families(sync: Any) -> list[Metric]:
    """status["sync"] = {"running": bool, "dirs": [engine status per directory]}."""
    if not isinstance(sync, dict):
        return []
    running = GaugeMetricFamily(
        P + "sync_running",
        "1 while this node pushes its synced directories to the peer.",
        value=1 if sync.get("running") else 0,
    )
    labels = ["directory"]
    lag = GaugeMetricFamily(
        P + "sync_lag_seconds", "Age of the oldest change not yet on the peer.", labels=labels
    )
    pending = GaugeMetricFamily(P + "sync_pending", "Changes not yet on the peer.", labels=labels)
    error = GaugeMetricFamily(
        P + "sync_error", "1 while the last push of the directory failed.", labels=labels
    )
    degraded = GaugeMetricFamily(
        P + "sync_degraded",
        "1 while a synchronous directory has a standby that misses writes (0 in async mode).",
        labels=labels,
    )
    dirs = sync.get("dirs")
    for one in dirs if isinstance(dirs, list) else []:
        if not isinstance(one, dict) or not isinstance(one.get("path"), str):
            continue
        key = [one["path"]]
        for family, field in ((lag, "lag_seconds"), (pending, "pending")):
            value = _num(one.get(field))
            if value is not None:
                family.add_metric(key, value)
        error.add_metric(key, 1.0 if one.get("last_error") else 0.0)
        degraded.add_metric(key, 1.0 if one.get("degraded") is True else 0.0)
    return [running, lag, pending, error, degraded]


def labelled(metrics: list[Metric], labels: dict[str, str]) -> list[Metric]:
    """The same metrics with `labels` added to every sample (the pair's identity);
    an unknown (empty) value is left out rather than exposed as an empty label."""
    known = {key: value for key, value in labels.items() if value}
    for metric in metrics:
        metric.samples = [s._replace(labels={**known, **s.labels}) for s in metric.samples]
    return metrics


class DecisionCounts:
    """Decisions counted by kind and by transition; thread-safe, no I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._transitions: dict[tuple[str, str, str], int] = {}  # (kind, from, to): count

    def add(self, decision: Decision) -> None:
        key = (str(decision.kind), decision.old_role.value, decision.role.value)
        with self._lock:
            self._transitions[key] = self._transitions.get(key, 0) + 1

    def families(self) -> list[Metric]:
        kinds = CounterMetricFamily(
            P + "decisions", "Decisions since the agent started, by kind.", labels=["kind"]
        )
        transitions = CounterMetricFamily(
            P + "transitions",
            "Decisions since the agent started, by kind and roles.",
            labels=["kind", "from_state", "to_state"],
        )
        with self._lock:
            counted = sorted(self._transitions.items())
        by_kind = {k.value: 0 for k in DecisionKind}  # every kind from 0 (see the docstring)
        for key, count in counted:
            transitions.add_metric(list(key), count)
            by_kind[key[0]] = by_kind.get(key[0], 0) + count
        for kind, count in sorted(by_kind.items()):
            kinds.add_metric([kind], count)
        return [kinds, transitions]


class _StatusCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any] | None], counts: DecisionCounts) -> None:
        self._read = read
        self._counts = counts
        self._ident = {"cluster": "", "node": ""}  # until a snapshot names them

    def learn(self, status: dict[str, Any]) -> None:
        """Take the pair's identity labels from a status snapshot."""
        self._ident = {key: str(status.get(key, self._ident[key])) for key in self._ident}

    def collect(self) -> Iterator[Metric]:
        status = self._read()
        if status is not None:
            self.learn(status)
        up = GaugeMetricFamily(
            P + "up", "1 if the agent's status could be read.", value=0.0 if status is None else 1
        )
        found = [up, *(families(status) if status is not None else []), *self._counts.families()]
        yield from labelled(found, self._ident)


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
        self.counts = DecisionCounts()
        self._collector = _StatusCollector(self._snapshot, self.counts)
        self.registry = CollectorRegistry()
        self.registry.register(self._collector)
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
        self.counts.add(decision)

    def _learn_identity(self) -> None:
        """In the loop's own thread, read the cluster and node names before the first
        scrape, so that even an `up 0` answer names its pair."""
        try:
            in_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            # if status() fails now, the first successful scrape learns them instead
            with contextlib.suppress(Exception):
                self._collector.learn(self._status())

    def start(self) -> None:
        self._learn_identity()
        try:
            self._server, self._thread = serve_metrics(self.host, self.port, self.registry)
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
