// mosqit-failover web console: polls /api/status every second, renders with
// textContent only (text from the agent is never parsed as HTML), posts
// operator commands with the session's CSRF token in X-CSRF-Token.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const POLL_MS = 1000;
  let lastOk = 0;
  let busy = false;

  function $(sel, root) { return (root || document).querySelector(sel); }

  function setText(el, text, cls) {
    el.textContent = text === null || text === undefined ? "-" : String(text);
    if (cls !== undefined) {
      if (el.dataset.base === undefined) { el.dataset.base = el.className; }
      el.className = (el.dataset.base + " " + cls).trim();
    }
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) { return "never"; }
    if (seconds < 1) { return Math.round(seconds * 1000) + " ms ago"; }
    if (seconds < 120) { return seconds.toFixed(1) + " s ago"; }
    return Math.round(seconds / 60) + " min ago";
  }

  function row(tbody, cells) {
    const tr = document.createElement("tr");
    cells.forEach(function (cell) {
      const td = document.createElement("td");
      if (Array.isArray(cell)) { td.textContent = cell[0]; td.className = cell[1]; }
      else { td.textContent = cell === null || cell === undefined ? "-" : String(cell); }
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    return tr;
  }

  function clear(tbody) { while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); } }

  function probeText(p, misses) {
    if (!p) { return "not probed"; }
    let text = p.answered + "/" + p.sent + " answered";
    if (p.last_rtt_ms !== null) { text += ", last " + p.last_rtt_ms + " ms"; }
    if (misses) { text += ", " + misses + " missed in a row"; }
    return text;
  }

  // every other node: status.peers (in takeover order), else the one status.peer
  function peersOf(s) {
    const peers = s.peers && typeof s.peers === "object" ? s.peers : null;
    const names = peers ? Object.keys(peers) : [];
    if (!names.length) { return s.peer ? [s.peer] : []; }
    return names.map(function (name) {
      const p = peers[name] && typeof peers[name] === "object" ? peers[name] : {};
      return Object.assign({ node: name }, p);
    });
  }

  function uplinksText(up) {
    if (!up || typeof up !== "object") { return ["not reported", "bad"]; }
    const nets = Object.keys(up);
    if (!nets.length) { return ["not reported", "bad"]; }
    const all = nets.every(function (n) { return up[n] === true; });
    return [nets.map(function (n) { return n + " " + (up[n] ? "up" : "DOWN"); }).join(", "),
      all ? "ok" : "bad"];
  }

  function fenceText(fence) {
    if (fence === null || fence === undefined || fence === "") { return "-"; }
    return typeof fence === "object" ? JSON.stringify(fence) : String(fence);
  }

  function renderOthers(peers, multi) {
    $("#others").hidden = !multi;
    $("#peer").hidden = multi;
    document.querySelectorAll("#self .multi").forEach(function (el) { el.hidden = !multi; });
    const tbody = $("#peers tbody");
    clear(tbody);
    if (!multi) { return; }
    peers.forEach(function (p) {
      const unauth = typeof p.unauthenticated === "string" && p.unauthenticated !== "";
      const fresh = typeof p.heard_ago === "number" && p.heard_ago <= 2;
      const tr = row(tbody, [
        p.node,
        [p.role || "-", "role-" + p.role],
        [p.mode || "-", p.mode ? "mode-" + p.mode : ""],
        p.epoch,
        p.data_epoch,
        typeof p.rank === "number" ? "no. " + (p.rank + 1) : "-",
        [ago(p.heard_ago), fresh ? "ok" : "bad"],
        uplinksText(p.uplinks),
        unauth ? ["FAILING: " + p.unauthenticated, "bad"] : ["ok", "ok"],
        fenceText(p.fence),
      ]);
      tr.dataset.node = p.node;
    });
  }

  // the switchover's target: the standbys, "best candidate" first (only with 2+ peers)
  function renderTargets(peers, multi) {
    const label = $("#switchover-target");
    const select = $("#switchover-to");
    label.hidden = !multi;
    const standbys = multi ? peers.filter(function (p) { return p.role === "STANDBY"; }) : [];
    const names = standbys.map(function (p) { return String(p.node); });
    const shown = Array.prototype.slice.call(select.options, 1).map(function (o) { return o.value; });
    if (names.join("\n") !== shown.join("\n")) { // rebuilt only on a change: an open list stays
      const wanted = select.value;
      while (select.options.length > 1) { select.remove(1); }
      names.forEach(function (name) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        select.appendChild(option);
      });
      select.value = names.indexOf(wanted) >= 0 ? wanted : "";
    }
    setText($("#switchover"), multi ? "Switchover" : "Switchover to peer");
  }

  function render(data) {
    const s = data.status;
    const peers = peersOf(s);
    const multi = peers.length >= 2;
    setText($("#cluster"), s.cluster);
    setText($("#vip"), s.vip);
    setText($("#served-by"), s.node);

    const me = $("#self");
    setText($(".name", me), s.node);
    setText($(".role", me), s.role, "role-" + s.role);
    setText($(".mode", me), s.mode, "mode-" + s.mode);
    setText($(".epoch", me), s.epoch);
    setText($(".data-epoch", me), s.data_epoch);
    setText($(".candidate", me), s.candidate ? "yes" : "no");
    setText($(".plan", me), s.plan_running ? "yes" : "no");

    const peer = s.peer || peers[0] || {};
    const pe = $("#peer");
    setText($(".name", pe), peer.node);
    setText($(".role", pe), peer.role, "role-" + peer.role);
    setText($(".mode", pe), peer.mode, peer.mode ? "mode-" + peer.mode : "");
    setText($(".epoch", pe), peer.epoch);
    setText($(".heard", pe), ago(peer.heard_ago), peer.heard_ago === null || peer.heard_ago > 2 ? "bad" : "ok");
    // what the peer's fence reported, when the agent says (absent: the row stays hidden)
    const fence = peer.fence;
    const hasFence = fence !== null && fence !== undefined && fence !== "";
    $(".fence-label", pe).hidden = !hasFence;
    $(".fence", pe).hidden = !hasFence;
    if (hasFence) { setText($(".fence", pe), typeof fence === "object" ? JSON.stringify(fence) : fence); }

    // datagrams from a peer that fail authentication (another secret, ...): say it loudly
    const failing = (multi ? peers : [peer]).filter(function (p) {
      return typeof p.unauthenticated === "string" && p.unauthenticated !== "";
    });
    const alarm = $("#peer-auth");
    if (failing.length) {
      setText(alarm, "Peer messages fail authentication: " + failing.map(function (p) {
        return multi ? p.node + ": " + p.unauthenticated : p.unauthenticated;
      }).join("; "));
      alarm.hidden = false;
    } else {
      alarm.hidden = true;
    }
    renderOthers(peers, multi);
    renderTargets(peers, multi);
    const note = $("#networks-note");
    note.hidden = !multi;
    if (multi) {
      setText(note, "The peer columns show " + peer.node +
        "; every node's uplinks are under Other nodes.");
    }

    const nets = $("#networks tbody");
    clear(nets);
    const peerUp = peer.uplinks || {};
    const byNet = peer.heard_ago_by_network || {};
    const misses = peer.echo_misses || {};
    Object.keys(s.uplinks || {}).forEach(function (net) {
      const mine = s.uplinks[net];
      const theirs = net in peerUp ? (peerUp[net] ? "healthy" : "not healthy") : "not reported";
      row(nets, [
        net,
        [mine, mine === "healthy" ? "ok" : "bad"],
        [theirs, theirs === "healthy" ? "ok" : "bad"],
        probeText((s.probes || {})["peer-" + net], misses[net]),
        probeText((s.probes || {})["switch-" + net]),
        ago(byNet[net]),
      ]);
    });

    const res = $("#resources tbody");
    clear(res);
    (data.resources || []).forEach(function (r) {
      row(res, [r.name, [r.state, "state-" + r.state], ago(r.checked_ago), r.error || ""]);
    });
    if (!(data.resources || []).length) { row(res, ["(none configured)", "", "", ""]); }

    const sync = s.sync || {};
    setText($("#sync-summary"), sync.running
      ? "running from this node, epoch " + sync.epoch
      : "not running on this node (it runs on the active node only)");
    const st = $("#sync tbody");
    clear(st);
    (sync.dirs || []).forEach(function (d) {
      row(st, [d.path, d.peer_path, [d.state, d.in_sync ? "ok" : "bad"], d.lag_seconds + " s",
        d.pending, ago(d.last_ok_ago), d.last_error || ""]);
      // one row per standby under its directory (a pair's single one adds nothing)
      const per = d.peers && typeof d.peers === "object" ? d.peers : {};
      const names = Object.keys(per);
      if (multi || names.length > 1) {
        names.forEach(function (name) {
          const p = per[name] || {};
          const state = (p.state || "-") + (p.full_resync_pending ? ", full resync pending" : "");
          const tr = row(st, ["\u2192 " + name, "", [state, p.in_sync ? "ok" : "bad"],
            p.lag_seconds + " s", p.pending, ago(p.last_ok_ago), p.last_error || ""]);
          tr.className = "per-peer";
          tr.dataset.peer = name;
        });
      }
    });
    if (!(sync.dirs || []).length) {
      row(st, [sync.running ? "(no directory configured)" : "(nothing syncs from this node)",
        "", "", "", "", "", ""]);
    }

    const recent = $("#recent");
    clear(recent);
    (s.recent_decisions || []).slice().reverse().forEach(function (line) {
      const li = document.createElement("li");
      li.textContent = line;
      recent.appendChild(li);
    });

    $("#switchover").disabled = busy || s.role !== "ACTIVE";
    $("#switchover-to").disabled = busy || s.role !== "ACTIVE";
    $("#maintenance-on").disabled = busy || s.mode === "MAINTENANCE";
    $("#maintenance-off").disabled = busy || s.mode !== "MAINTENANCE";
  }

  function freshness() {
    const el = $("#freshness");
    const age = (Date.now() - lastOk) / 1000;
    if (!lastOk) { setText(el, "connecting…", "stale"); }
    else if (age > 3) { setText(el, "NO ANSWER for " + age.toFixed(0) + " s: the state shown is old", "stale"); }
    else { setText(el, "live", "fresh"); }
  }

  function poll() {
    fetch("/api/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
        return r.json();
      })
      .then(function (data) {
        if (data.ok) { lastOk = Date.now(); render(data); document.body.dataset.loaded = "1"; }
      })
      .catch(function () { /* shown by freshness() */ })
      .finally(function () { freshness(); setTimeout(poll, POLL_MS); });
  }

  function command(name, question) {
    const request = { command: name };
    const select = $("#switchover-to");
    if (name === "switchover" && !$("#switchover-target").hidden) {
      if (select.value) { request.to = select.value; }
      question = "Hand the service over to " +
        (select.value || "the best candidate") + " now?";
    }
    if (!window.confirm(question)) { return; }
    busy = true;
    const out = $("#command-result");
    setText(out, name + "…");
    fetch("/api/command", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(request),
    })
      .then(function (r) { return r.json(); })
      .then(function (reply) {
        const lines = reply.decisions || [];
        setText(out, (reply.ok ? name + " done" : name + " refused") +
          (reply.error ? ": " + reply.error : "") + (lines.length ? "\n" + lines.join("\n") : ""),
          reply.ok ? "ok" : "bad");
      })
      .catch(function (e) { setText(out, name + " failed: " + e, "bad"); })
      .finally(function () { busy = false; });
  }

  document.querySelectorAll("button[data-command]").forEach(function (b) {
    b.addEventListener("click", function () { command(b.dataset.command, b.dataset.confirm); });
  });
  poll();
})();
