// The wallboard: queues, agents, active calls and today's figures, live from the event stream.
"use strict";
const wb = { queues: [], agents: [], channels: [], monitors: [], updates: 0, events: 0 };
window.wb = wb;

function $(id) { return document.getElementById(id); }

async function loadQueues() { wb.queues = await cc.api("GET", "/api/queues"); renderQueues(); }
async function loadAgents() { wb.agents = await cc.api("GET", "/api/agents"); renderAgents(); }
async function loadChannels() { wb.channels = await cc.api("GET", "/api/channels"); renderCalls(); }
async function loadToday() {
  if (cc.me.role === "agent") return;
  const t = await cc.api("GET", "/api/stats/today");
  $("t-calls").textContent = t.calls;
  $("t-answered").textContent = t.answered;
  $("t-missed").textContent = t.missed;
  $("t-offered").textContent = t.queues.offered;
  $("t-abandoned").textContent = t.queues.abandoned;
}
async function loadMonitors() {
  if (cc.me.role === "agent") return;
  wb.monitors = await cc.api("GET", "/api/monitor");
  renderMonitors();
}

function renderQueues() {
  const box = $("queues");
  box.replaceChildren();
  if (!wb.queues.length) { box.append(cc.el("div", { class: "empty" }, "No queues")); return; }
  for (const q of wb.queues) {
    const a = q.agents;
    const sl = q.service_level_today === null ? "-" : `${Math.round(q.service_level_today)}%`;
    box.append(cc.el("div", { class: "tile", dataset: { queue: q.name } },
      cc.el("div", { class: "name" }, q.name, q.number ? ` · ${q.number}` : ""),
      cc.el("div", { class: "waiting" + (q.waiting ? " alert" : ""), dataset: { field: "waiting" } }, q.waiting),
      cc.el("div", { class: "row" }, "longest wait",
            cc.el("b", { class: "timer", dataset: { since: q.waiting ? cc.now() - q.longest_wait : "" } },
                  q.waiting ? cc.dur(q.longest_wait) : "-")),
      cc.el("div", { class: "row" }, "service level today", cc.el("b", { dataset: { field: "sl" } }, sl)),
      cc.el("div", { class: "row" }, "available / logged in",
            cc.el("b", {}, `${a.available} / ${a.logged_in}`)),
      cc.el("div", { class: "row" }, "on call · wrap-up · paused",
            cc.el("b", {}, `${a.on_call} · ${a.wrap_up} · ${a.paused}`))));
  }
}

function monitorButtons(agent) {
  if (cc.me.role === "agent" || agent.state !== "on_call") return null;
  const start = (mode) => async () => {
    try {
      await cc.api("POST", "/api/monitor", { agent: agent.agent, mode });
      await loadMonitors();
    } catch (e) { alert(`Monitor: ${e.message}`); }
  };
  return cc.el("span", {},
    cc.el("button", { class: "small", onclick: start("listen") }, "Listen"), " ",
    cc.el("button", { class: "small", onclick: start("whisper") }, "Whisper"), " ",
    cc.el("button", { class: "small", onclick: start("barge") }, "Barge"));
}

function renderAgents() {
  const tb = $("agents").tBodies[0];
  tb.replaceChildren();
  if (!wb.agents.length) {
    tb.append(cc.el("tr", {}, cc.el("td", { colspan: 7, class: "empty" }, "No agents")));
    return;
  }
  for (const a of wb.agents) {
    const state = a.state + (a.state === "paused" && a.pause_reason ? ` (${a.pause_reason})` : "");
    tb.append(cc.el("tr", { dataset: { agent: a.agent, state: a.state } },
      cc.el("td", {}, a.agent), cc.el("td", {}, a.name || ""),
      cc.el("td", {}, cc.el("span", { class: `pill st-${a.state}`, dataset: { field: "state" } }, state)),
      cc.el("td", { class: "timer", dataset: { since: a.since } }, cc.dur(cc.now() - a.since)),
      cc.el("td", {}, (a.queues || []).join(", ")), cc.el("td", {}, a.calls_taken),
      cc.el("td", {}, monitorButtons(a))));
  }
}

function renderCalls() {
  const tb = $("calls").tBodies[0];
  tb.replaceChildren();
  // one row per call: its first leg, with the leg it is bridged to
  const byCall = new Map();
  for (const c of wb.channels) {
    if (!byCall.has(c.linkedid) || c.id === c.linkedid) byCall.set(c.linkedid, c);
  }
  $("t-active").textContent = byCall.size;
  if (!byCall.size) {
    tb.append(cc.el("tr", {}, cc.el("td", { colspan: 5, class: "empty" }, "No calls")));
    return;
  }
  for (const c of byCall.values()) {
    const where = c.app ? `${c.app}${c.app_data ? " " + c.app_data : ""}` : (c.bridged_with || "");
    tb.append(cc.el("tr", { dataset: { channel: c.id, call: c.linkedid } },
      cc.el("td", {}, c.caller_name ? `${c.caller} ${c.caller_name}` : c.caller),
      cc.el("td", {}, c.callee),
      cc.el("td", {}, cc.el("span", { class: `pill st-${c.state}` }, c.state)),
      cc.el("td", { class: "timer", dataset: { since: c.answered || c.created } },
            cc.dur(cc.now() - (c.answered || c.created))),
      cc.el("td", {}, where)));
  }
}

function renderMonitors() {
  $("monitor-panel").hidden = !wb.monitors.length;
  const box = $("monitors");
  box.replaceChildren();
  for (const m of wb.monitors) {
    const mode = (md) => async () => {
      await cc.api("POST", `/api/monitor/${m.monitor}/mode`, { mode: md });
      await loadMonitors();
    };
    box.append(cc.el("div", { class: "controls", dataset: { monitor: m.monitor } },
      `${m.supervisor} → agent ${m.agent} (${m.mode})`,
      cc.el("button", { class: "small", onclick: mode("listen") }, "Listen"),
      cc.el("button", { class: "small", onclick: mode("whisper") }, "Whisper"),
      cc.el("button", { class: "small", onclick: mode("barge") }, "Barge"),
      cc.el("button", { class: "small", onclick: async () => {
        await cc.api("POST", `/api/monitor/${m.monitor}/stop`); await loadMonitors(); } }, "Stop")));
  }
}

function tickTimers() {
  for (const el of document.querySelectorAll(".timer")) {
    const since = parseFloat(el.dataset.since);
    if (!isNaN(since)) el.textContent = cc.dur(cc.now() - since);
  }
}

const refresh = {
  channels: cc.debounce(() => loadChannels().then(() => wb.updates++), 150),
  queues: cc.debounce(() => loadQueues().then(() => wb.updates++), 150),
  agents: cc.debounce(() => loadAgents().then(() => wb.updates++), 150),
  today: cc.debounce(() => loadToday(), 500),
  monitors: cc.debounce(() => loadMonitors(), 150),
};

function onEvent(e) {
  wb.events++;
  const t = e.event;
  if (t.startsWith("CHANNEL_") || t === "IVR_NODE" || t.startsWith("CONFERENCE_")) refresh.channels();
  if (t === "CHANNEL_CREATE" || t === "CHANNEL_HANGUP" || t === "QUEUE_CALL_END" ||
      t === "QUEUE_CALLER_LEAVE") refresh.today();
  if (t.startsWith("QUEUE_")) { refresh.queues(); refresh.channels(); }
  if (t === "AGENT_STATE" || t.startsWith("QUEUE_MEMBER_")) { refresh.agents(); refresh.queues(); }
  if (t.startsWith("MONITOR_")) refresh.monitors();
}

cc.start(async () => {
  await Promise.all([loadQueues(), loadAgents(), loadChannels(), loadToday(), loadMonitors()]);
  cc.connect("", onEvent, () => {
    // catch up with anything missed while the stream was down
    refresh.channels(); refresh.queues(); refresh.agents(); refresh.today();
  });
});
setInterval(tickTimers, 1000);
