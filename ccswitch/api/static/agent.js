// The agent page: my state and its controls, my current call, and the screen pop.
"use strict";
const ag = { agent: null, info: null, pop: null, channels: [], pops: 0 };
window.ag = ag;

function $(id) { return document.getElementById(id); }

async function loadAgent() {
  try {
    ag.info = await cc.api("GET", `/api/agents/${encodeURIComponent(ag.agent)}`);
  } catch (e) {
    if (e.status !== 404) throw e;
    ag.info = { agent: ag.agent, name: "", state: "logged_out", since: cc.now(), queues: [] };
  }
  const a = ag.info;
  $("agent-id").textContent = a.agent;
  $("agent-name").textContent = a.name || "";
  const st = $("state");
  st.className = `pill big-state st-${a.state}`;
  st.textContent = a.state.replace("_", " ") + (a.state === "paused" && a.pause_reason ? ` (${a.pause_reason})` : "");
  $("state-for").dataset.since = a.since;
  $("agent-queues").textContent = a.queues && a.queues.length ? `Queues: ${a.queues.join(", ")}` : "";
}

async function loadCalls() {
  ag.channels = (await cc.api("GET", "/api/channels")).filter(
    (c) => c.name.startsWith(`SIP/${ag.agent}-`));
  const box = $("current");
  box.replaceChildren();
  if (!ag.channels.length) { box.append(cc.el("span", { class: "empty" }, "No call")); return; }
  for (const c of ag.channels) {
    const other = c.direction === "outbound" ? `${c.caller} ${c.caller_name || ""}` : c.callee;
    box.append(cc.el("div", { dataset: { channel: c.id } },
      cc.el("span", { class: `pill st-${c.state}` }, c.state), " ", other, " ",
      cc.el("span", { class: "timer", dataset: { since: c.answered || c.created } },
            cc.dur(cc.now() - (c.answered || c.created)))));
  }
}

function renderPop(p) {
  ag.pop = p;
  const box = $("pop-body");
  box.replaceChildren();
  if (!p) { box.append(cc.el("span", { class: "empty" }, "No call offered yet")); return; }
  ag.pops++;
  const path = cc.el("div", { class: "path" });
  for (const step of p.ivr_path || []) {
    const label = [step.flow, step.node].filter(Boolean).join(":") + (step.event ? ` → ${step.event}` : "");
    path.append(cc.el("span", {}, label || JSON.stringify(step)));
  }
  const vars = cc.el("dl", {});
  for (const [k, v] of Object.entries(p.variables || {})) {
    vars.append(cc.el("dt", {}, k), cc.el("dd", {}, typeof v === "object" ? JSON.stringify(v) : v));
  }
  const prev = cc.el("table", {}, cc.el("thead", {}, cc.el("tr", {},
    cc.el("th", {}, "When"), cc.el("th", {}, "To"), cc.el("th", {}, "Queue"),
    cc.el("th", {}, "Agent"), cc.el("th", {}, "Result"), cc.el("th", {}, "Talk"))));
  const tb = cc.el("tbody", {});
  for (const c of p.previous_calls || []) {
    tb.append(cc.el("tr", {}, cc.el("td", {}, new Date(c.start * 1000).toLocaleString()),
      cc.el("td", {}, c.callee), cc.el("td", {}, c.queue || ""), cc.el("td", {}, c.agent || ""),
      cc.el("td", {}, c.disposition || ""), cc.el("td", {}, cc.dur(c.billsec || 0))));
  }
  prev.append(tb);
  box.append(
    cc.el("div", { class: "caller", id: "pop-caller" }, p.caller_number,
          p.caller_name ? ` · ${p.caller_name}` : ""),
    cc.el("dl", {},
      cc.el("dt", {}, "Queue"), cc.el("dd", { id: "pop-queue" }, p.queue || "-"),
      cc.el("dt", {}, "Waited"), cc.el("dd", {}, p.wait === null ? "-" : cc.dur(p.wait)),
      cc.el("dt", {}, "Position"), cc.el("dd", {}, p.position ?? "-"),
      cc.el("dt", {}, "Call"), cc.el("dd", {}, p.call_uuid)),
    cc.el("h2", {}, "IVR path"), p.ivr_path && p.ivr_path.length ? path : cc.el("span", { class: "empty" }, "none"),
    cc.el("h2", {}, "Variables"), vars,
    cc.el("h2", {}, `Previous calls (${(p.previous_calls || []).length})`), prev);
  $("pop").classList.remove("flash");
  void $("pop").offsetWidth;
  $("pop").classList.add("flash");
}

async function act(action, body) {
  $("action-error").textContent = "";
  try {
    await cc.api("POST", `/api/agents/${encodeURIComponent(ag.agent)}/${action}`, body || {});
    await loadAgent();
  } catch (e) { $("action-error").textContent = e.message; }
}

const refreshAgent = cc.debounce(() => loadAgent(), 100);
const refreshCalls = cc.debounce(() => loadCalls(), 150);

function onEvent(e) {
  const t = e.event;
  if (t === "SCREEN_POP" && e.agent === ag.agent) renderPop(e);
  if ((t === "AGENT_STATE" || t.startsWith("QUEUE_MEMBER_")) && e.agent === ag.agent) refreshAgent();
  if (t.startsWith("CHANNEL_")) refreshCalls();
}

cc.start(async (me) => {
  const q = new URLSearchParams(location.search);
  ag.agent = q.get("agent") || me.extension;
  if (!ag.agent) {
    $("pop-body").textContent = "This user has no extension: open /agent?agent=EXT";
    return;
  }
  $("btn-login").onclick = () => act("login");
  $("btn-logout").onclick = () => act("logout");
  $("btn-pause").onclick = () => act("pause", { reason: $("pause-reason").value });
  $("btn-unpause").onclick = () => act("unpause");
  await Promise.all([loadAgent(), loadCalls()]);
  try { renderPop(await cc.api("GET", `/api/agents/${encodeURIComponent(ag.agent)}/screenpop`)); }
  catch (e) { if (e.status !== 404) throw e; }
  cc.connect("types=AGENT_STATE,SCREEN_POP,QUEUE_MEMBER_*,CHANNEL_*", onEvent,
             () => { refreshAgent(); refreshCalls(); });
});
setInterval(() => {
  for (const el of document.querySelectorAll(".timer")) {
    const since = parseFloat(el.dataset.since);
    if (!isNaN(since)) el.textContent = cc.dur(cc.now() - since);
  }
}, 1000);
