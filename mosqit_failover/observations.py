"""What a node knows of the world, kept up to date from events. Pure, no I/O.

The core reads these to decide; they hold facts and timestamps only, never
decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mosqit_failover.config import KERNEL_SILENT_MISSES
from mosqit_failover.events import PeerView

NEVER = -math.inf

LOSS_MEMORY = 5.0
"""Seconds in which the weight of an echo round trip in the loss estimate falls to 1/e."""

LOSS_EVIDENCE = 3.0
"""Round trips' worth of weight below which the loss estimate says 0: nothing recent."""

OUTAGE_RUN = KERNEL_SILENT_MISSES
"""Misses in a row that are an outage, not loss: left out of the estimate, and a network
that had that many while the peer's agent still spoke says nothing of its death. The
core passes `Timing.kernel_silent_misses` (more with `misses` over 5): a run that
long decides whatever the loss, so a shorter one still counts as loss."""

ECHO_FILTER_RUN = 40
ECHO_FILTER_SECONDS = 10.0
"""Echo misses in a row on a network, and the seconds they last, after a message of the
peer's agent crossed it during the run, that say its ICMP echo is filtered there, not
lost. The count alone came by chance under 50 % loss a packet (a round trip lost 75 %
of the time) about every quarter of an hour in the simulation; ten seconds of misses at
a probe every interval at least (100 at the standard timing) do not (0.75^100)."""


@dataclass
class EchoLoss:
    """The recent share of lost echo round trips to one peer on one network.

    Only runs of misses a reply ended count: the host lived through them. The run
    still going is left out: it may be the peer's death, and counting it would
    raise the bar for the very verdict it is to inform. So is a run of
    `outage_run` or more, ended or not: that was an outage (a partition, a filtered
    network), not random loss, and it would ask for the cap for a quarter of a
    minute after every heal. Each round trip's weight fades with time
    (`LOSS_MEMORY`), so a loss long past does not slow the verdict on a death after
    a calm hour.
    """

    misses: float = 0.0
    trips: float = 0.0
    at: float = NEVER
    outage_run: int = OUTAGE_RUN

    def run_ended(self, missed: int, now: float) -> None:
        """A reply after `missed` misses in a row (an outage's left out)."""
        missed = missed if missed < self.outage_run else 0
        keep = self._keep(now)
        self.misses = self.misses * keep + missed
        self.trips = self.trips * keep + missed + 1
        self.at = now

    def rate(self, now: float) -> float:
        if self.trips * self._keep(now) < LOSS_EVIDENCE:
            return 0.0
        return self.misses / self.trips

    def _keep(self, now: float) -> float:
        if self.at == NEVER:
            return 0.0
        return math.exp(-max(0.0, now - self.at) / LOSS_MEMORY)  # a clock set back: no fading


@dataclass
class Uplink:
    """One of this node's own uplinks: carrier (debounced) and switch answers.

    The first carrier report is taken as it is (nothing to debounce at start);
    after that a change counts only once the raw carrier has held it for
    `fall` (going down) or `rise` (coming back).
    """

    rise: float
    fall: float
    switch_timeout: float
    needs_switch: bool
    raw: bool | None = None
    raw_since: float = NEVER
    stable: bool = False
    stable_since: float = NEVER
    switch_answered_at: float = NEVER
    first_report_at: float = NEVER
    timers_from: float = NEVER  # the agent was not scheduled before this: timeouts restart

    def carrier(self, up: bool, now: float) -> None:
        if self.raw is None:
            self.raw, self.raw_since = up, now
            self.stable, self.stable_since = up, now
            self.first_report_at = now
        elif up != self.raw:
            self.raw, self.raw_since = up, now
        self.settle(now)

    def switch_answer(self, answered: bool, now: float) -> None:
        if answered:
            self.switch_answered_at = now

    def settle(self, now: float) -> None:
        """Promote the raw carrier to the stable one once it has held long enough."""
        if self.raw is None or self.raw == self.stable:
            return
        hold = self.rise if self.raw else self.fall
        if now - self.raw_since >= hold:
            self.stable, self.stable_since = self.raw, self.raw_since + hold

    def healthy(self, now: float) -> bool:
        if not self.stable:
            return False
        if not self.needs_switch:
            return True
        return now - max(self.switch_answered_at, self.timers_from) <= self.switch_timeout

    def known(self, now: float) -> bool:
        """False until there is something to judge by: no carrier report yet, or a
        carrier but the switch neither answered nor had its full timeout to do so."""
        if self.raw is None:
            return False
        if not self.stable or not self.needs_switch or self.switch_answered_at > NEVER:
            return True
        return now - max(self.first_report_at, self.timers_from) > self.switch_timeout

    def falling(self) -> bool:
        """Carrier just went but has not stayed away for `fall` yet: maybe our own cable."""
        return self.stable and self.raw is False

    def rising(self) -> bool:
        """Carrier is back but has not held for `rise` yet: recovering, not lost."""
        return bool(self.raw) and not self.stable

    def known_down(self, now: float) -> bool:
        return self.known(now) and not self.healthy(now)

    def why_not(self, now: float) -> str:
        if self.raw is None:
            return "carrier unknown"
        if not self.stable:
            return "no carrier" if not self.raw else "carrier back, not yet stable"
        if self.needs_switch and not self.healthy(now):
            return f"switch silent for over {self.switch_timeout:g}s"
        return "healthy"

    def deadlines(self) -> list[float]:
        """Times at which this uplink's health may change without a new event."""
        times = []
        if self.raw is not None and self.raw != self.stable:
            times.append(self.raw_since + (self.rise if self.raw else self.fall))
        if self.needs_switch:
            since = max(self.switch_answered_at, self.timers_from, self.first_report_at)
            times.append(since + self.switch_timeout)
        return times


@dataclass
class PeerTracker:
    """Signs of life from the peer: messages per network and echo misses."""

    networks: tuple[str, ...]
    outage_run: int = OUTAGE_RUN  # Timing.kernel_silent_misses
    view: PeerView | None = None
    # the highest epoch or data epoch any of its views named: the next promotion goes
    # above it even when a later view names less (a peer whose state was reset, or one
    # another cluster's datagrams stood in for: a helper's attack)
    highest_epoch: int = 0
    heard_at: float = NEVER  # last valid UDP message, any network
    echo_at: float = NEVER  # last echo reply, any network
    unauth_at: float = NEVER  # last datagram from the peer's address that was dropped
    unauth_reason: str = ""  # why the last one was dropped
    unauth_since: float = NEVER  # first dropped datagram after the last authentic one
    unauth_reason_since: float = NEVER  # since when they are dropped for unauth_reason
    timers_from: float = NEVER  # the agent was not scheduled before this: timeouts restart
    # the echo replies since the peer's last message: the longest pause in them (counted
    # from that message to the first one too), and when the current run of them began
    # (the first reply after a pause of `run_pause` or more, see echo(); NEVER: before
    # the silence)
    echo_pause: float = 0.0
    echo_run_from: float = NEVER

    def __post_init__(self) -> None:
        self.heard_on: dict[str, float] = {n: NEVER for n in self.networks}
        self.answered_on: dict[str, float] = {n: NEVER for n in self.networks}  # echo replies
        # per network: the time between the last two messages on it (the peer's pace)
        self.gap_on: dict[str, float] = {n: math.inf for n in self.networks}
        self.misses: dict[str, int] = {n: 0 for n in self.networks}
        self.loss = {n: EchoLoss(outage_run=self.outage_run) for n in self.networks}
        # per network: misses of the current run the peer's agent spoke after (lived through)
        self._lived: dict[str, int] = {n: 0 for n in self.networks}
        # per network: the misses of the current run when the peer's agent first spoke
        # on that network during it, and when (None: not yet); the misses since are ones
        # its messages crossed, as where its echo is filtered
        self._spoke_at_miss: dict[str, tuple[int, float] | None] = {n: None for n in self.networks}

    def message(self, network: str, view: PeerView, now: float, waited: float = 0.0) -> None:
        """`view` on `network`, read at `now` after `waited` seconds in the socket: heard
        when it arrived, not when read (after a stop of this agent, words sent during
        the stop are read at the resume, and are no word from after it)."""
        arrived = max(now - waited, self.heard_on[network])
        self._lived.update(self.misses)
        if self.misses[network] and self._spoke_at_miss[network] is None:
            self._spoke_at_miss[network] = (self.misses[network], now)
        self.view = view
        self.highest_epoch = max(self.highest_epoch, view.epoch, view.data_epoch)
        self.heard_at = max(self.heard_at, arrived)
        self.gap_on[network] = arrived - self.heard_on[network]
        self.heard_on[network] = arrived

    def unauthenticated(self, reason: str, now: float, gap: float) -> None:
        """A dropped datagram from the peer's address. A streak of them starts anew
        after an authentic one, or after `gap` without any (the peer restarting)."""
        if self.unauth_at <= self.heard_at or now - self.unauth_at > gap:
            self.unauth_since = self.unauth_reason_since = now
        elif reason != self.unauth_reason:
            self.unauth_reason_since = now
        self.unauth_at = now
        self.unauth_reason = reason

    def failing_auth_for(self, now: float, within: float) -> float:
        """How long datagrams from the peer's address have come without an authentic
        one among them; 0 when the last one authenticated or none came `within`."""
        if self.unauth_at <= self.heard_at or now - self.unauth_at > within:
            return 0.0
        return now - self.unauth_since

    def echo(self, network: str, answered: bool, now: float, run_pause: float) -> None:
        if answered:
            self.loss[network].run_ended(self.misses[network], now)
            self.misses[network] = self._lived[network] = 0
            self._spoke_at_miss[network] = None
            self.answered_on[network] = now
            silent_since = self.silent_since
            if self.echo_at == silent_since == NEVER:
                # never heard, never answered before: the replies begin a run, and the
                # time before this node probed is no pause (it took a node started
                # beside a hung holder for a rebooted one, and promoted without a fence)
                self.echo_pause = 0.0
                self.echo_run_from = now
            elif self.echo_at < silent_since:  # the first reply since the peer's last message
                pause = now - silent_since
                self.echo_pause = pause
                self.echo_run_from = now if pause >= run_pause else NEVER
            else:
                pause = now - self.echo_at
                self.echo_pause = max(self.echo_pause, pause)
                if pause >= run_pause:
                    self.echo_run_from = now
            self.echo_at = now
        else:
            self.misses[network] += 1

    def last_sign(self) -> float:
        return max(self.heard_at, self.echo_at, self.unauth_at)

    @property
    def silent_since(self) -> float:
        """The last datagram from the peer's agent (authentic or not), or a resume if that
        is later: where silence is counted from. A datagram that fails authentication
        still proves the agent alive: with two secrets, silence would make both active."""
        return max(self.heard_at, self.unauth_at, self.timers_from)

    def silent_for(self, now: float) -> float:
        """How long no message came, counted from a resume if that is later."""
        return now - self.silent_since

    def restart_timers(self, now: float) -> None:
        self.timers_from = now
        self.misses = {n: 0 for n in self.networks}
        self._lived = {n: 0 for n in self.networks}
        self._spoke_at_miss = {n: None for n in self.networks}

    def fresh(self, now: float, within: float) -> PeerView | None:
        """The peer's latest view if it was heard within `within` seconds."""
        return self.view if now - self.heard_at <= within else None

    def echo_missed_everywhere(self, misses: int) -> bool:
        return all(count >= misses for count in self.misses.values())

    def misses_beat_loss(self, now: float, doubt: float) -> bool:
        """Whether the runs of misses on the networks together are unlikely, below
        `doubt`, to be the recent loss alone while the host lived. At 30 % loss per
        packet a round trip fails half the time, and three misses in a row on each of
        two networks come every few seconds: then ten each are needed, the cap."""
        chance = 1.0
        for network, count in self.misses.items():
            if self._lived[network] >= self.outage_run:
                continue  # its echo is out while the host lives (ICMP filtered): no word
            chance *= self.loss[network].rate(now) ** count
        return chance <= doubt

    def echo_blocked(self, now: float, within: float) -> dict[str, int]:
        """The networks whose echo missed `ECHO_FILTER_RUN` in a row, for
        `ECHO_FILTER_SECONDS`, since a message of the peer's agent came through on that
        network during the run, and one came `within` seconds ago too, with the run's
        misses: its datagrams pass where its echo does not (ICMP filtered by a firewall
        or `icmp_echo_ignore_all`, or a path broken one way). Not a cut path or a hung
        agent (no message during the run), nor a network cut or a peer dead since (no
        message lately), nor the heal of a cut (its first message came a moment before
        the first echo reply)."""
        blocked = {}
        for network, spoke in self._spoke_at_miss.items():
            misses = self.misses[network]
            if spoke is None or now - spoke[1] < ECHO_FILTER_SECONDS:
                continue
            if misses - spoke[0] >= ECHO_FILTER_RUN and now - self.heard_on[network] <= within:
                blocked[network] = misses
        return blocked

    def echo_blocked_due(self) -> float:
        """When `echo_blocked` may next become true by time alone (inf: not before an
        event): the end of `ECHO_FILTER_SECONDS` of a run a message crossed."""
        return min(
            (spoke[1] + ECHO_FILTER_SECONDS for spoke in self._spoke_at_miss.values() if spoke),
            default=math.inf,
        )

    def loss_summary(self, now: float) -> str:
        """The recent loss per network where there is any, e.g. ``a: 48 %, b: 51 %``."""
        rates = {n: loss.rate(now) for n, loss in self.loss.items()}
        return ", ".join(f"{n}: {r:.0%}" for n, r in rates.items() if r > 0)

    def miss_summary(self) -> str:
        return ", ".join(f"{n}: {c}" for n, c in self.misses.items())
