// meshd status page: polls /v1/private/mesh/status with the mesh token and fills the tables.
// Data goes into the page with textContent only (never innerHTML), so nothing a servicer
// reports can inject markup.
"use strict";

const POLL_MS = 2000;
const STORAGE_KEY = "meshd-token";
let timer = null;

function $(id) { return document.getElementById(id); }

// A token in the URL fragment (#token=…) is moved to sessionStorage and removed from the
// address bar; fragments never reach the server.
function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(STORAGE_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fill(tbody, items, build) {
  const rows = items.map((item) => { const tr = document.createElement("tr"); build(tr, item); return tr; });
  tbody.replaceChildren(...rows);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

const STATE_CLASS = {
  SERVICER_HEALTHY: "ok", SESSION_ACTIVE: "ok", NOTIFY_OK: "ok",
  SERVICER_UNHEALTHY: "bad", NOTIFY_FAILING: "bad", DEAD_LETTERED: "bad",
  SESSION_EXHAUSTED: "warn", NOTIFY_BACKLOG: "warn",
};

// The state's metadata object (its key is the camelCase state name), as "k=v" text.
function stateDetail(s) {
  const parts = [];
  if (s.sessionHeight !== undefined) parts.push("session " + s.sessionHeight);
  for (const [key, value] of Object.entries(s)) {
    if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) {
        if (v !== "" && v !== null) parts.push(k + "=" + v);
      }
    }
  }
  return parts.join(" · ");
}

const OVERALL_CLASS = { ok: "ok", degraded: "warn", down: "bad" };

function ms(v) {
  if (v === null || v === undefined) return "–";
  return (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
}

function renderOverall(o) {
  const cls = OVERALL_CLASS[o.state] || "bad";
  $("overall").textContent = o.state;
  $("overall").className = "pill big " + cls;
  $("state-text").textContent = o.state;
  $("state-text").className = cls;
  $("state-box").className = "state-box " + cls;
  const items = o.reasons.length ? o.reasons : ["nothing to report: servicer nodes healthy, notifies delivered, no dead letters"];
  $("reasons").replaceChildren(...items.map((r) => { const li = document.createElement("li"); li.textContent = r; return li; }));
}

function render(st) {
  renderOverall(st.overall);
  const lm = st.last_minute;
  $("r-rate").textContent = lm.relays_per_second.toFixed(lm.relays_per_second < 10 ? 2 : 0);
  $("r-count").textContent = lm.relays + " relays, " + lm.errors + " refused";
  $("r-latency").textContent = ms(lm.p50_ms) + " / " + ms(lm.p99_ms);
  fill($("rejections"), st.rejections, (tr, r) => {
    cell(tr, r.type);
    cell(tr, r.code, "num");
    cell(tr, r.count, "num");
  });
  fill($("chains"), st.chains, (tr, c) => {
    cell(tr, c.name && c.name !== c.id ? c.id + " (" + c.name + ")" : c.id);
    cell(tr, c.healthy ? (c.endpoints_up < c.endpoints ? "degraded" : "healthy") : "down", c.healthy ? (c.endpoints_up < c.endpoints ? "warn" : "ok") : "bad");
    cell(tr, c.endpoints_up + " of " + c.endpoints, "num");
    cell(tr, c.failovers, "num");
    cell(tr, c.calls_last_minute + (c.errors_last_minute ? " (" + c.errors_last_minute + " failed)" : ""), "num");
    cell(tr, ms(c.p50_ms) + " / " + ms(c.p99_ms));
  });
  fill($("dead"), st.dead_letters, (tr, d) => {
    cell(tr, d.servicer, "mono");
    cell(tr, d.count, "num bad");
    cell(tr, d.reason);
    cell(tr, d.first + " / " + d.last, "mono");
    cell(tr, d.replay, "mono");
  });
  $("moniker").textContent = st.moniker;
  $("version").textContent = st.version;
  $("uptime").textContent = duration(st.uptime_seconds);
  $("updated").textContent = new Date().toLocaleTimeString();
  $("c-served").textContent = st.counters.served;
  $("c-rejected").textContent = st.counters.rejected;
  $("c-notified").textContent = st.counters.notified + st.counters.notify_already_known;
  if (st.counters.failovers !== undefined) {
    $("card-failovers").hidden = false;
    $("c-failovers").textContent = st.counters.failovers;
  }
  const q = st.queue || {};
  $("q-pending").textContent = q.pending ?? "–";
  $("q-dead").textContent = q.dead_letters ?? "–";
  $("q-dead").className = "value" + (q.dead_letters > 0 ? " bad" : "");
  $("q-space").textContent = bytes(q.used_bytes);
  $("q-space-of").textContent = "of " + bytes(q.map_bytes) + " (503 above " + bytes(q.admission_limit_bytes) + ")";

  fill($("nodes"), st.nodes, (tr, n) => {
    cell(tr, n.name);
    cell(tr, n.healthy ? "healthy" : "unhealthy: " + (n.reason || ""), n.healthy ? "ok" : "bad");
    cell(tr, n.height, "num");
    cell(tr, n.version);
    cell(tr, n.checked_seconds_ago === null ? null : duration(n.checked_seconds_ago) + " ago");
    cell(tr, n.url, "mono");
    cell(tr, n.failovers !== undefined ? n.failovers + " failover(s)" : (n.urls > 1 ? n.urls + " URLs" : "single URL"));
  });
  fill($("addresses"), st.addresses, (tr, a) => {
    cell(tr, a.address, "mono");
    cell(tr, a.node);
    cell(tr, a.sessions, "num");
    cell(tr, a.served, "num");
    cell(tr, a.pending, "num");
    cell(tr, a.state ? a.state.state : "–", a.state ? STATE_CLASS[a.state.state] : "");
  });
  fill($("states"), st.recent_states, (tr, s) => {
    cell(tr, s.time.replace("T", " ").replace(/\.\d+Z$/, ""), "mono");
    cell(tr, s.servicer, "mono");
    cell(tr, s.state, STATE_CLASS[s.state]);
    cell(tr, stateDetail(s));
  });
}

// The connection badge says whether the page gets data, nothing about the node's health
// (that is the overall state next to it); without data the overall state is unknown.
function setConn(text, ok) {
  const el = $("conn");
  el.textContent = text;
  el.className = "pill" + (ok ? "" : " bad");
  if (!ok) {
    $("overall").textContent = "unknown";
    $("overall").className = "pill big bad";
  }
}

function showLogin(message) {
  clearTimeout(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  setConn(message, false);
  $("token").focus();
}

async function poll() {
  const token = sessionStorage.getItem(STORAGE_KEY);
  if (!token) { showLogin("token needed"); return; }
  try {
    const res = await fetch("/v1/private/mesh/status", { headers: { Authorization: token }, cache: "no-store" });
    if (res.status === 401) { sessionStorage.removeItem(STORAGE_KEY); showLogin("wrong token"); return; }
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
    $("login").hidden = true;
    $("main").hidden = false;
    setConn("live", true);
  } catch (e) {
    setConn("disconnected (" + e.message + "), retrying", false);
  }
  timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(STORAGE_KEY, $("token").value.trim());
    $("token").value = "";
    poll();
  });
  takeTokenFromFragment();
  poll();
});
