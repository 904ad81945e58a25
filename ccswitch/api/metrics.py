"""Prometheus metrics (text exposition format 0.0.4) and the event-loop lag probe.

Counters come from the event bus (calls ended by disposition, RTP loss of ended
calls); gauges are read when scraped (channels, queues, registrations, RTP of
live calls).  Event-loop lag: a timer every 0.5 s notes how late it fires.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ccswitch.call import events as ev
from ccswitch.call.causes import disposition

if TYPE_CHECKING:
    from ccswitch.call.channel import Channel
    from ccswitch.server import Server

LAG_INTERVAL = 0.5


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def metric(self, name: str, kind: str, help_: str, value: float,
               labels: dict[str, str] | None = None) -> None:
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f"# HELP {name} {help_}")
            self.lines.append(f"# TYPE {name} {kind}")
        lab = ""
        if labels:
            lab = "{" + ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items()) + "}"
        if value != value:  # NaN: leave the sample out
            return
        self.lines.append(f"{name}{lab} {value:.6g}" if isinstance(value, float)
                          else f"{name}{lab} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class Metrics:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.calls: dict[str, int] = {}  # disposition -> calls ended
        self.rtp_lost_total = 0
        self.rtp_packets_total = 0
        self.loop_lag = 0.0
        self.loop_lag_max = 0.0  # since the last scrape
        self._live: dict[str, Channel] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._unsub = server.bus.subscribe(self._on_event,
                                           {ev.CHANNEL_CREATE, ev.CHANNEL_HANGUP})

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + LAG_INTERVAL
        self._timer = loop.call_at(self._due, self._probe)

    def stop(self) -> None:
        self._unsub()
        if self._timer is not None:
            self._timer.cancel()

    def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        lag = max(0.0, now - self._due)
        self.loop_lag = lag
        self.loop_lag_max = max(self.loop_lag_max, lag)
        self._due = now + LAG_INTERVAL
        self._timer = loop.call_at(self._due, self._probe)

    def _on_event(self, e: dict[str, Any]) -> None:
        cid = e.get("channel")
        if cid is None:
            return
        if e["event"] == ev.CHANNEL_CREATE:
            ch = self.server.manager.channels.get(cid)
            if ch is not None:
                self._live[cid] = ch
            return
        ch = self._live.pop(cid, None)
        if ch is not None and ch.media is not None:
            self.rtp_lost_total += max(0, ch.media.stats.lost)
            self.rtp_packets_total += ch.media.rx_packets
        if e.get("linkedid") == cid:  # a call (its first leg) ended
            d = disposition(bool(e.get("answered")), str(e.get("cause", "NORMAL_CLEARING")))
            self.calls[d] = self.calls.get(d, 0) + 1

    def render(self) -> str:
        s = self.server
        o = _Out()
        o.metric("ccswitch_up", "gauge", "1 while the server runs", 1)
        o.metric("ccswitch_uptime_seconds", "gauge", "seconds since start",
                 round(time.time() - s.started, 1))
        chans = s.manager.list()
        o.metric("ccswitch_channels", "gauge", "live channels (call legs)", len(chans))
        o.metric("ccswitch_calls_active", "gauge", "calls in progress",
                 len({c.linkedid for c in chans}))
        for d in ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED"):
            o.metric("ccswitch_calls_total", "counter",
                     "calls ended since start, by disposition", self.calls.get(d, 0),
                     {"disposition": d})
        regs = s.ua.registrar.all(s.ua.now())
        o.metric("ccswitch_registrations", "gauge", "registered contacts", len(regs))
        o.metric("ccswitch_registered_extensions", "gauge", "extensions with a contact",
                 len({b.aor for b in regs}))
        # RTP quality of the calls in progress
        jit = [c.media.stats.jitter_ms for c in chans if c.media is not None
               and c.media.rx_packets]
        lost_live = sum(max(0, c.media.stats.lost) for c in chans if c.media is not None)
        o.metric("ccswitch_rtp_jitter_ms_max", "gauge",
                 "highest interarrival jitter (RFC 3550) among live streams, ms",
                 round(max(jit), 3) if jit else 0.0)
        o.metric("ccswitch_rtp_jitter_ms_mean", "gauge",
                 "mean interarrival jitter among live streams, ms",
                 round(sum(jit) / len(jit), 3) if jit else 0.0)
        o.metric("ccswitch_rtp_lost_packets", "gauge", "packets lost on live streams",
                 lost_live)
        o.metric("ccswitch_rtp_lost_packets_total", "counter",
                 "packets lost on streams that have ended", self.rtp_lost_total)
        o.metric("ccswitch_rtp_received_packets_total", "counter",
                 "packets received on streams that have ended", self.rtp_packets_total)
        o.metric("ccswitch_rtp_ports_free", "gauge", "free RTP port pairs", s.engine.ports_free)
        # event loop and media clock
        o.metric("ccswitch_event_loop_lag_seconds", "gauge",
                 "how late the last 0.5 s probe timer fired", round(self.loop_lag, 6))
        o.metric("ccswitch_event_loop_lag_max_seconds", "gauge",
                 "the worst probe lateness since the previous scrape",
                 round(self.loop_lag_max, 6))
        self.loop_lag_max = self.loop_lag
        o.metric("ccswitch_media_tick_lag_max_seconds", "gauge",
                 "the worst lateness of the 20 ms media clock since start",
                 round(s.engine.max_tick_lag, 6))
        gw = s.gc_watch
        for g in range(3):
            o.metric("ccswitch_gc_collections_total", "counter",
                     "cyclic garbage collections, by generation", gw.collections[g],
                     {"generation": str(g)})
            o.metric("ccswitch_gc_pause_seconds_total", "counter",
                     "time the event loop stood still in garbage collection",
                     round(gw.pause_total[g], 6), {"generation": str(g)})
            o.metric("ccswitch_gc_pause_seconds_max", "gauge",
                     "the longest garbage-collection pause since start",
                     round(gw.pause_max[g], 6), {"generation": str(g)})
        o.metric("ccswitch_events_published_total", "counter", "events published on the bus",
                 s.bus.published)
        qs = getattr(s, "queues", None)
        if qs is not None:
            for q in qs.queues_info():
                lab = {"queue": str(q["name"])}
                o.metric("ccswitch_queue_waiting", "gauge", "callers waiting", q["waiting"], lab)
                o.metric("ccswitch_queue_longest_wait_seconds", "gauge",
                         "wait of the longest-waiting caller", float(q["longest_wait"]), lab)
                sl = q.get("service_level_today")
                o.metric("ccswitch_queue_service_level_ratio", "gauge",
                         "service level today (0-1)",
                         float("nan") if sl is None else round(float(sl) / 100.0, 4), lab)
                for state, n in q["agents"].items():
                    o.metric("ccswitch_queue_agents", "gauge", "agents by state", n,
                             dict(lab, state=str(state)))
                for k in ("offered", "answered", "abandoned"):
                    if k in q:
                        o.metric(f"ccswitch_queue_{k}_today", "gauge", f"calls {k} today",
                                 q[k], lab)
        return o.text()
