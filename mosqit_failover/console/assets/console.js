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
  }

  function clear(tbody) { while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); } }

  function probeText(p, misses) {
    if (!p) { return "not probed"; }
    let text = p.answered + "/" + p.sent + " answered";
    if (p.last_rtt_ms !== null) { text += ", last " + p.last_rtt_ms + " ms"; }
    if (misses) { text += ", " + misses + " missed in a row"; }
    return text;
  }

  function render(data) {
    const s = data.status;
    setText($("#cluster"), s.cluster);
    setText($("#vip"), s.vip);
    setText($("#served-by"), s.node);

    const me = $("#self");
    setText($(".name", me), s.node);
    setText($(".role", me), s.role, "role-" + s.role);
    setText($(".mode", me), s.mode, "mode-" + s.mode);
    setText($(".epoch", me), s.epoch);
    setText($(".candidate", me), s.candidate ? "yes" : "no");
    setText($(".plan", me), s.plan_running ? "yes" : "no");

    const peer = s.peer || {};
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

    // datagrams from the peer that fail authentication (another secret, ...): say it loudly
    const unauth = peer.unauthenticated;
    const alarm = $("#peer-auth");
    if (typeof unauth === "string" && unauth !== "") {
      setText(alarm, "Peer messages fail authentication: " + unauth);
      alarm.hidden = false;
    } else {
      alarm.hidden = true;
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
    if (!window.confirm(question)) { return; }
    busy = true;
    const out = $("#command-result");
    setText(out, name + "…");
    fetch("/api/command", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ command: name }),
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
