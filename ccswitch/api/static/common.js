// Shared by the wallboard and the agent page: API calls, login, the event stream, timers.
"use strict";
const cc = {
  me: null,
  offset: 0,            // server clock - browser clock (s), from event times
  onLogin: null,
  socket: null,
  loadId: Math.random().toString(36).slice(2),

  async api(method, path, body) {
    const opts = { method, credentials: "same-origin",
                   headers: { "X-Requested-With": "ccswitch", "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    if (r.status === 401) { cc.showLogin(); throw new Error("not logged in"); }
    const data = (r.headers.get("Content-Type") || "").includes("json") ? await r.json() : null;
    if (!r.ok) { const e = new Error((data && data.error) || r.statusText); e.status = r.status; throw e; }
    return data;
  },

  now() { return Date.now() / 1000 + cc.offset; },

  dur(sec) {
    sec = Math.max(0, Math.floor(sec));
    const h = Math.floor(sec / 3600), m = Math.floor(sec / 60) % 60, s = sec % 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
  },

  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  },

  showLogin() {
    document.getElementById("login").classList.add("show");
    document.getElementById("login-user").focus();
  },

  async start(onLogin) {
    cc.onLogin = onLogin;
    document.getElementById("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = document.getElementById("login-error");
      err.textContent = "";
      try {
        await cc.api("POST", "/api/login", {
          username: document.getElementById("login-user").value,
          password: document.getElementById("login-pass").value });
        document.getElementById("login").classList.remove("show");
        document.getElementById("login-pass").value = "";
        await cc.begin();
      } catch (e) { err.textContent = e.message; }
    });
    const out = document.getElementById("logout");
    if (out) out.addEventListener("click", async () => {
      try { await cc.api("POST", "/api/logout"); } catch (e) { /* already out */ }
      if (cc.socket) cc.socket.close();
      cc.me = null;
      cc.showLogin();
    });
    setInterval(() => {
      const c = document.getElementById("clock");
      if (c) c.textContent = new Date().toLocaleTimeString();
    }, 1000);
    try { await cc.begin(); } catch (e) { /* login shown */ }
  },

  async begin() {
    cc.me = await cc.api("GET", "/api/me");
    const u = document.getElementById("user");
    if (u) u.textContent = `${cc.me.username} (${cc.me.role})`;
    await cc.onLogin(cc.me);
  },

  // The event stream: reconnects by itself; `onEvent` gets each event object.
  connect(query, onEvent, onOpen) {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    let delay = 500;
    const open = () => {
      if (!cc.me) return;
      const ws = new WebSocket(`${proto}://${location.host}/api/events${query ? "?" + query : ""}`);
      cc.socket = ws;
      const dot = document.getElementById("live");
      ws.onopen = () => { delay = 500; if (dot) dot.classList.add("live"); if (onOpen) onOpen(); };
      ws.onmessage = (m) => {
        const e = JSON.parse(m.data);
        if (e.time) cc.offset = e.time - Date.now() / 1000;
        onEvent(e);
      };
      ws.onclose = () => {
        if (dot) dot.classList.remove("live");
        if (cc.socket === ws && cc.me) setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    };
    open();
  },

  // run `fn` at most once per `ms`, after the last call
  debounce(fn, ms) {
    let t = null;
    return () => { if (t) clearTimeout(t); t = setTimeout(() => { t = null; fn(); }, ms); };
  },
};
window.cc = cc;
