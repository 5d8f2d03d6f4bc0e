"""The journald message catalog: what each decision line means, why, and what to do.

`journalctl -x` (and `-o verbose -x`) shows the catalog entry of a line's
MESSAGE_ID under the line, with @FIELD@ replaced by the line's own fields
(NODE, STATE, OLD_STATE, EPOCH, PEER_STATE, REASON, DECISION).

The file `units/mosqit-failover.catalog` is generated from `ENTRIES` by
`render()` (a unit test keeps them equal: run `python -m mosqit_failover.catalog
> units/mosqit-failover.catalog` after editing an entry).

Install on a server (or inside a lab node): copy the file to
`/usr/lib/systemd/catalog/` and run `journalctl --update-catalog`; `install()`
does both. Lab nodes: `node.write_file(INSTALL_PATH, render())` then
`node.run(list(UPDATE_ARGV))`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mosqit_failover.journal import message_id
from mosqit_failover.kinds import DecisionKind

CATALOG_FILE = Path(__file__).resolve().parents[1] / "units" / "mosqit-failover.catalog"
INSTALL_PATH = "/usr/lib/systemd/catalog/mosqit-failover.catalog"
UPDATE_ARGV = ("journalctl", "--update-catalog")
DOCUMENTATION = "man:journalctl(1)"


@dataclass(frozen=True)
class Entry:
    subject: str
    what: str
    why: str
    do: str


_HEAD = "Node @NODE@ went from @OLD_STATE@ to @STATE@ in epoch @EPOCH@ (peer: @PEER_STATE@)."

ENTRIES: dict[DecisionKind, Entry] = {
    DecisionKind.PROMOTE: Entry(
        "node @NODE@ is taking over the service",
        _HEAD + " It raised the promotion epoch and is claiming the VIP, sending"
        " gratuitous ARP, starting the sync and the protected services in order.",
        "@REASON@. A standby promotes only while it sees both networks, when its"
        " peer missed every echo reply on both networks, or its failover service"
        " stayed silent while ICMP answered (OS problem), or nobody was active and"
        " it won the election (higher epoch, then the preferred node).",
        "Find out why the peer stopped answering (power, kernel, cables). Watch for"
        " the plan-done line (ACTIVE) or a plan-failed line. Once the old active is"
        " repaired it comes back as STANDBY; its data is older than this node's.",
    ),
    DecisionKind.FORCE_ACTIVE: Entry(
        "operator forced node @NODE@ active",
        _HEAD + " An operator ran `mosqit-failover force-active`.",
        "@REASON@. The peer had not been seen for longer than the peer-gone time,"
        " so the agent obeyed; it cannot know whether the peer still serves.",
        "Make sure the peer is really down (powered off or cut off) or both nodes"
        " may serve. This node's data may be older than the peer's: check the"
        " service's data before clients write to it.",
    ),
    DecisionKind.RECLAIM: Entry(
        "restarted agent on @NODE@ claims the VIP and services again",
        _HEAD + " The agent was restarted while holding the VIP or services and is"
        " claiming them again in the same epoch, without a new failover.",
        "@REASON@. No peer with a higher epoch was active, so what the node held is still its own.",
        "Nothing, unless the agent restarts often: then read `journalctl -u"
        " mosqit-failover` for the crash (systemd restarts the agent after 100 ms).",
    ),
    DecisionKind.ADOPT: Entry(
        "restarted agent on @NODE@ found the VIP or services held",
        _HEAD + " At start the agent found the VIP or protected services present on this node.",
        "@REASON@. A restarted agent never flaps: it checks the peer before claiming"
        " what it holds, or releases it when its last role was not active.",
        "Nothing; the next line says whether it claimed (reclaim) or released them.",
    ),
    DecisionKind.PLAN_DONE: Entry(
        "node @NODE@ finished its plan and is @STATE@",
        _HEAD + " Every step of the promotion, demotion or reconfiguration plan succeeded.",
        "@REASON@.",
        "Nothing. After a promotion, check that clients reach the VIP.",
    ),
    DecisionKind.PLAN_FAILED: Entry(
        "a step of the plan failed on node @NODE@",
        _HEAD + " A step (VIP, ARP, sync, a service start or stop) failed.",
        "@REASON@. A failed promotion is rolled back at once and the node is not a"
        " candidate for a while (timing.start_failure_backoff); a failed demotion is"
        " retried with backoff while the peer does not promote.",
        "Fix the failing step (read the service's own logs: `journalctl -u UNIT`),"
        " then watch for plan-done. After repeated stop failures the configured"
        " last resort applies (timing.on_stop_failure).",
    ),
    DecisionKind.DEMOTE_RETRY: Entry(
        "node @NODE@ retries stopping its services",
        _HEAD + " The demotion plan runs again after a failure.",
        "@REASON@. Services must be stopped and the VIP released before the peer may take over.",
        "Look at the previous plan-failed line for the step that fails and fix it;"
        " the service is down on both nodes until the stop succeeds.",
    ),
    DecisionKind.STANDBY: Entry(
        "node @NODE@ is standing by",
        _HEAD + " The node sees both networks and is ready to take over.",
        "@REASON@.",
        "Nothing.",
    ),
    DecisionKind.WAITING: Entry(
        "node @NODE@ lost an uplink and cannot take over",
        _HEAD + " The node lacks a network, so it has no authority to promote.",
        "@REASON@. A node without both networks never promotes on its own: it cannot"
        " tell a dead peer from its own cut-off.",
        "Check the cable, the switch port and the switch of the network named in the"
        " reason (`ip link`, the switch's own status).",
    ),
    DecisionKind.HANDOVER: Entry(
        "active node @NODE@ hands over to its healthier peer",
        _HEAD + " The active node lost an uplink that its peer still has, so the"
        " peer is the healthier node; services, sync and VIP are being released.",
        "@REASON@.",
        "Repair the lost uplink on @NODE@; it comes back as STANDBY (or takes the"
        " service back with failback if it is the preferred node and failback is on).",
    ),
    DecisionKind.SWITCHOVER: Entry(
        "operator switchover from @NODE@",
        _HEAD + " An operator ran `mosqit-failover switchover` on the active node.",
        "@REASON@.",
        "Watch the peer's journal for its promote and plan-done lines.",
    ),
    DecisionKind.FAILBACK: Entry(
        "failback to the preferred node",
        _HEAD + " The preferred node is back and healthy and cluster.failback is"
        " on, so this node hands the service back.",
        "@REASON@.",
        "Nothing; set cluster.failback = false to keep the service where it is after a failover.",
    ),
    DecisionKind.HANDOVER_ABORTED: Entry(
        "handover aborted: @NODE@ serves on",
        _HEAD + " A switchover or failback had stopped the services, but the"
        " directory sync could not push every change to the peer within a minute,"
        " so this node restarts its services in the same epoch, still holding the"
        " VIP, and the peer stays standby.",
        "@REASON@. Had the handover gone on, the new active's first sync would have"
        " replaced those changes on this node too: they existed nowhere else.",
        "Look at `mosqit-failover status` (pending, lag, last error of each synced"
        " directory): a large write still on its way, a slow or lossy link, a full"
        " disk on the peer. Hand over again once it shows the directories in sync.",
    ),
    DecisionKind.DEMOTE_DUAL_ACTIVE: Entry(
        "two active nodes met; @NODE@ stands down",
        _HEAD + " Both nodes held the service and can see each other again.",
        "@REASON@. The node with the lower promotion epoch demotes at once; on a"
        " tie the configured preferred node (cluster.preferred) stays.",
        "Find out how both became active (a split brain, a force-active). Data"
        " written on this node while both served may need merging by hand.",
    ),
    DecisionKind.DEMOTE_ISOLATED: Entry(
        "node @NODE@ lost every network and stands down",
        _HEAD + " Split brain or a cut-off node: the VIP is released first, then"
        " services and sync are stopped, so that two nodes never serve at once.",
        "@REASON@.",
        "Restore the networks (both switches, the node's cables). On recovery the"
        " node with the highest epoch (the freshest data) becomes active.",
    ),
    DecisionKind.MANUAL: Entry(
        "MANUAL mode, automatic switchover off",
        _HEAD + " A network is lost on both nodes, which means a switch failed.",
        "@REASON@. Switching over would not help: the peer has lost the same network.",
        "Repair the switch. The active node keeps serving; the automatic mode comes"
        " back by itself once both networks are back. `mosqit-failover switchover`"
        " still works.",
    ),
    DecisionKind.AUTOMATIC: Entry(
        "automatic mode again",
        _HEAD + " The network that both nodes had lost is back, here or on the peer.",
        "@REASON@.",
        "Nothing.",
    ),
    DecisionKind.MANUAL_PEER_LOST: Entry(
        "peer vanished while in MANUAL mode",
        _HEAD + " The pair was in MANUAL mode (a network lost on both nodes) and the"
        " peer is not heard any more on the network that is left.",
        "@REASON@. With one network only, this node cannot tell a dead peer from its"
        " own isolation, so it takes no automatic action.",
        "Find out whether the peer is really down (console, power, the remaining"
        " switch). If it is and it will stay down, run `mosqit-failover force-active`"
        " on @NODE@ (it says its data may be stale). Otherwise repair the switch.",
    ),
    DecisionKind.PEER_AUTH_FAILED: Entry(
        "messages from the peer of @NODE@ fail authentication",
        _HEAD + " Datagrams come from the peer's own address on the cluster port, but"
        " they do not pass the checks: another secret, clock, cluster name or protocol.",
        "@REASON@. They prove the peer's agent is alive, so they never count as a silent"
        " peer: an active node keeps serving, a standby never takes over while they come."
        " Without authenticated messages the pair cannot fail over automatically.",
        "Fix what the reason names, usually by copying the secret file"
        " (cluster.secret_file, mode 0600) from one node to the other and running"
        " `systemctl reload mosqit-failover` on it. `mosqit-failover status` shows the"
        " counts of dropped datagrams per reason.",
    ),
    DecisionKind.PARTITIONED: Entry(
        "node @NODE@ cannot hear a better candidate that other nodes hear",
        _HEAD + " Multi-server mode: a standby does not hear a better-ranked candidate"
        " directly, but a node it does hear reports hearing it. The two standbys are"
        " partitioned from each other (a VLAN filter on the cluster port, a firewall"
        " rule, a cable between two switch stacks), not gone.",
        "@REASON@. The lower-ranked standby never takes over past a better candidate"
        " that it merely cannot hear: the better side takes over if the active node"
        " fails. If the better side died together with the active node, nobody takes"
        " over on its own.",
        "Fix the path between the two nodes (`mosqit-failover status` shows which peers"
        " each node hears). If the better candidate and the active node are both down"
        " for good, run `mosqit-failover force-active` on @NODE@.",
    ),
    DecisionKind.ORDER_MISMATCH: Entry(
        "node @NODE@ and a peer rank the nodes in different orders",
        _HEAD + " A peer's messages carry a digest of its cluster.order (for a pair:"
        " preferred, then the other) that differs from this node's: the nodes run"
        " different configs. Each would wait for the node its own order puts first,"
        " and after a failure nobody would take over, or two nodes would each think"
        " they go first.",
        "@REASON@. While any node heard runs another order, every node that notices"
        " ranks equal candidates by node name instead (the same on every node), so"
        " exactly one takes over.",
        "Copy one config to every node (`mosqit-failover wizard resources`, or by hand)"
        " and run `systemctl restart mosqit-failover` on the nodes that changed, one at"
        " a time. `mosqit-failover status` shows which peer differs.",
    ),
    DecisionKind.RESOURCE_RESTART: Entry(
        "a monitored resource stopped on the active node @NODE@",
        _HEAD + " Every timing.monitor_interval the active node asks each monitored"
        " resource's status check whether it runs. One did not: it is stopped and"
        " started again, with the resources that start after it.",
        "@REASON@. The resource died, was stopped by hand, or its status check fails."
        " Its failures count for timing.failure_timeout; past its `restarts` the node"
        " hands the service to a healthy standby.",
        "Read why it stopped (journalctl -u UNIT). To stop a resource by hand without"
        " the agent restarting it, put the node in maintenance first"
        " (mosqit-failover maintenance on).",
    ),
    DecisionKind.RESOURCE_FAILED: Entry(
        "a resource failed too often on @NODE@: handing over",
        _HEAD + " A monitored resource stopped on the active node more often than its"
        " `restarts` allow within timing.failure_timeout, and a healthy standby can"
        " take over: this node hands the service over as a switchover does (the sync"
        " drains first) and is no candidate while its failures count"
        " (timing.failure_timeout), unless no other node can serve.",
        "@REASON@.",
        "Find why the resource fails here (journalctl -u UNIT on this node), fix it,"
        " then switch back if you want it here (mosqit-failover switchover on the new"
        " active node).",
    ),
    DecisionKind.VIP_LOST: Entry(
        "the VIP went from the active node @NODE@",
        _HEAD + " The monitor found the VIP missing from its interface on the active"
        " node (removed by hand, by a network script, or by ifdown/ifup of the"
        " interface): it is added again and announced with gratuitous ARP.",
        "@REASON@. Clients could not reach the service at the VIP between its removal"
        " and this line: about timing.monitor_interval, longer while a plan ran or a"
        " resource's status check was slow (a look waits for every check).",
        "Find what removed it (a network configuration reload, a DHCP client, an"
        " operator); to take it away on purpose use maintenance mode first.",
    ),
    DecisionKind.VIP_CONFLICT: Entry(
        "another host answers for the VIP of @NODE@",
        _HEAD + " At each look the active node asks ARP who has the VIP (an RFC 5227"
        " probe, which changes no host's table): another host answered. Clients and"
        " routers that learned its MAC send the service's traffic there. The active"
        " announces the VIP with gratuitous ARP at each look while that lasts, and once"
        " more when it stopped.",
        "@REASON@. Usual causes: the VIP added by hand or in the network configuration"
        " of the standby (it releases it at its own next look: held-astray) or of another"
        " host on the segment.",
        "Find the host with that MAC (ip neigh, the switch's MAC table) and remove the"
        " address from it.",
    ),
    DecisionKind.HELD_ASTRAY: Entry(
        "@NODE@ held the VIP or a resource it must not hold",
        _HEAD + " A node that is not active must hold nothing: the monitor found the"
        " VIP on its interface or a protected resource running there, and releases"
        " it (the VIP first, then the resources in reverse order), so the service"
        " never runs on two nodes.",
        "@REASON@. Usual causes: a `systemctl start` by hand on the standby, a unit"
        " left enabled at boot (systemctl disable it: the agent starts it), the VIP"
        " written into the network configuration.",
        "Disable the resource's unit at boot on every node, remove the VIP from the"
        " network configuration, and start services through the agent (switchover).",
    ),
    DecisionKind.ECHO_BLOCKED: Entry(
        "the peer of @NODE@ answers no ICMP echo on a network its messages cross",
        _HEAD + " The agent probes each peer with ICMP echo on every network: a reply"
        " proves the peer's host alive when its agent is silent (hung), and a run of"
        " misses on every network is half of the proof of its death. On one network"
        " the peer's messages still arrive but its echo replies have not, for ten"
        " seconds and forty probes in a row: something between the nodes drops ICMP"
        " echo there (a firewall rule, a switch ACL, net.ipv4.icmp_echo_ignore_all on"
        " the peer).",
        "@REASON@. The verdict on a silent peer now rests on the other networks' echo"
        " alone: under heavy loss a hung agent can be taken for dead and its node"
        " fenced late. Every miss is a sign of trouble, so the nodes keep sending fast"
        " heartbeats and probes while it lasts. A second line says when the peer"
        " answers again.",
        "Let ICMP echo requests and replies pass between the nodes on that network"
        " (both directions, the cluster addresses). `mosqit-failover status` shows the"
        " misses per network.",
    ),
    DecisionKind.PEER_AUTH_OK: Entry(
        "messages from the peer of @NODE@ authenticate again",
        _HEAD + " The peer's datagrams that failed authentication have stopped.",
        "@REASON@.",
        "Nothing, if the reason says they authenticate again; otherwise the peer has"
        " gone silent altogether: see the next lines.",
    ),
    DecisionKind.FENCE: Entry(
        "node @NODE@ fences its peer",
        _HEAD + " The peer's failover service is silent while its kernel answers ICMP"
        " (OS problem): its VIP and services may still be up there. Before claiming"
        " them this node fences the peer: an ssh login through the sync key's forced"
        " command that removes the VIP, stops the services and kills the hung agent,"
        " and the power fence command where one is configured. An active node fences"
        " too when a peer it took over from as dead (heavy loss made a hang look like"
        " death) answers ICMP afterwards.",
        "@REASON@. Without a fence two nodes could serve the VIP at once.",
        "Watch for the promote line (fenced) or a fence-failed line.",
    ),
    DecisionKind.FENCE_FAILED: Entry(
        "fencing the peer failed; node @NODE@ does not take over",
        _HEAD + " Every configured fence failed (no ssh answer, a refusal, a power fence"
        " command that did not exit 0).",
        "@REASON@. With fencing.on_failure = wait (the default) the node does not promote"
        " while the peer may still hold the VIP, and retries the fence.",
        "Check the peer: if it is hung, power it off (then the next fence attempt or"
        " `mosqit-failover force-active` on @NODE@ takes over). Fix the ssh fence (the"
        " sync key, sshd on the peer) or configure a power fence in [fencing].",
    ),
    DecisionKind.MAINTENANCE: Entry(
        "maintenance mode changed on @NODE@",
        _HEAD + " An operator ran `mosqit-failover maintenance on|off`.",
        "@REASON@. In maintenance the node takes no automatic action: it neither"
        " promotes nor stands down, and stopping the agent leaves everything as is.",
        "Remember to run `mosqit-failover maintenance off` when the work is done.",
    ),
    DecisionKind.REFUSED: Entry(
        "operator command refused on @NODE@",
        _HEAD + " An operator command could not be carried out safely.",
        "@REASON@.",
        "Read the reason: run switchover on the active node, force-active only when"
        " the peer is gone.",
    ),
    DecisionKind.AGENT_STOP: Entry(
        "agent on @NODE@ is stopping",
        _HEAD + " The agent was asked to stop (systemctl stop, SIGTERM).",
        "@REASON@. An active node releases the service so that the peer takes over.",
        "To restart the agent without a switchover, set maintenance mode first.",
    ),
    DecisionKind.RECONFIGURE: Entry(
        "configuration reloaded on @NODE@",
        _HEAD + " The agent took a new configuration without a restart (resource wizard, reload).",
        "@REASON@. On the active node, added resources are started; removed ones are stopped"
        " only when the operator asked for it, else they keep running unmanaged.",
        "Check `mosqit-failover status` on both nodes; both must have the same file.",
    ),
    DecisionKind.RECONFIGURE_FAILED: Entry(
        "a step after a configuration reload failed on @NODE@",
        _HEAD + " Starting or stopping a resource after a reload failed.",
        "@REASON@. The service that was running stays up; the new resource is not running.",
        "Fix the resource (journalctl -u UNIT), then reload again.",
    ),
    DecisionKind.PEER_BACK: Entry(
        "peer is back; re-announcing the VIP",
        _HEAD + " The active node hears its peer again.",
        "@REASON@. Gratuitous ARP is sent again so switches and clients learn the VIP's owner.",
        "Nothing.",
    ),
    DecisionKind.DATA_EPOCH_RECORDED: Entry(
        "standby @NODE@ holds the active node's data",
        _HEAD + " The active node lists this standby in sync: every synced directory"
        " caught up (a synchronous one through a live channel). The standby records"
        " the active's epoch as its data epoch, which ranks it in an election.",
        "@REASON@. Among the candidates the freshest data epoch takes over first.",
        "Nothing.",
    ),
    DecisionKind.DATA_EPOCH_WITHDRAWN: Entry(
        "standby @NODE@ missed writes of the active node's epoch",
        _HEAD + " The active node of the epoch this standby had recorded no longer lists"
        " it in sync: a synchronous directory lost its channel to it, or a push to it"
        " failed or lags. It missed writes, so its data epoch drops below that epoch"
        " and a standby that holds them all is elected before it.",
        "@REASON@. It is still a candidate: with no better one it takes over. It"
        " records the epoch again once the active node has listed it in sync for a"
        " few seconds (caught up).",
        "Check `mosqit-failover status` on the active node (sync state per peer) and"
        " the path to @NODE@.",
    ),
    DecisionKind.RESUMED: Entry(
        "agent on @NODE@ was not scheduled for a while",
        _HEAD + " The agent did not run for a long time (SIGSTOP, suspend, an overloaded host).",
        "@REASON@. Silence seen across the freeze means nothing, so every timeout restarts now.",
        "Find what froze the agent (a debugger, `kill -STOP`, VM suspend, memory"
        " pressure); a frozen agent cannot fail over.",
    ),
}


def render() -> str:
    """The catalog file's text, one entry per decision kind, ids from `message_id`."""
    blocks = [
        "# journald message catalog of mosqit-failover (generated by mosqit_failover/catalog.py)\n"
        f"# Install: cp to {INSTALL_PATH.rsplit('/', 1)[0]}/ && journalctl --update-catalog\n"
    ]
    for kind, entry in ENTRIES.items():
        blocks.append(
            f"-- {message_id(kind)}\n"
            f"Subject: {entry.subject}\n"
            "Defined-By: mosqit-failover\n"
            f"Documentation: {DOCUMENTATION}\n"
            "\n"
            f"Decision: {kind}. {entry.what}\n"
            "\n"
            f"Why: {entry.why}\n"
            "\n"
            f"What to do: {entry.do}\n"
        )
    return "\n".join(blocks)


def install(root: Path = Path("/")) -> Path:
    """Copy the catalog under ROOT/usr/lib/systemd/catalog and rebuild journald's database.

    Side effects: writes one file (replacing an older copy) and runs
    `journalctl [--root ROOT] --update-catalog`; raises CalledProcessError if
    journalctl fails, FileNotFoundError if journalctl is not installed.
    """
    target = root / INSTALL_PATH.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    journalctl = shutil.which(UPDATE_ARGV[0])
    if journalctl is None:
        raise FileNotFoundError("journalctl not found: install systemd")
    argv = [journalctl, *UPDATE_ARGV[1:]]
    if root != Path("/"):
        argv.insert(1, f"--root={root}")
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return target


if __name__ == "__main__":
    sys.stdout.write(render())
