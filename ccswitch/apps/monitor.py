"""Supervisor monitoring of an agent's call: listen, whisper, barge.

Media design: the agent's two-party bridge stays as it is (hangup propagation,
transfers, recording and queue accounting keep working), and a small 3-member
Mixer (caller, agent, supervisor) is fed from audio taps on the three
endpoints and mixed once per media tick.  What each party hears:

    mode     caller hears            agent hears               supervisor hears
    listen   agent (plain relay)     caller (plain relay)      caller + agent
    whisper  agent (plain relay)     caller + supervisor (mix) caller + agent
    barge    agent + supervisor      caller + supervisor       caller + agent

A party that hears the mix gets a frame source on its endpoint: the engine then
stops relaying the bridged peer's packets to it and sends the mixer's "all but
me" frame instead.  In listen mode the supervisor is muted in the mixer.  Ending
monitoring removes the taps and sources: the plain relay resumes.

Started from the API / CLI / wallboard (the supervisor's phone is rung), or by
the supervisor dialling a feature code + the agent's extension
(features.monitor_listen / _whisper / _barge).  While monitoring, the
supervisor presses 4 (listen), 5 (whisper) or 6 (barge) to switch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ccswitch.call.channel import Channel
from ccswitch.media.engine import FrameSource
from ccswitch.media.mixer import Mixer
from ccswitch.media.moh import MohListener

if TYPE_CHECKING:
    from ccswitch.server import Server

log = logging.getLogger("ccswitch.monitor")

MODES = ("listen", "whisper", "barge")
DTMF_MODES = {"4": "listen", "5": "whisper", "6": "barge"}

MONITOR_START = "MONITOR_START"
MONITOR_MODE = "MONITOR_MODE"
MONITOR_STOP = "MONITOR_STOP"


class MonitorError(Exception):
    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class _MixSource(FrameSource):
    """Hands the engine the frame the session mixed for one party in this tick."""

    __slots__ = ("key", "session")

    def __init__(self, session: MonitorSession, key: str) -> None:
        self.session = session
        self.key = key

    def next_frame(self) -> bytes | None:
        # never None: that would end the source (and resume the relay) on its own
        return self.session.out.get(self.key) or self.session.mixer.silence


class MonitorSession:
    def __init__(self, svc: MonitorService, sup: Channel, agent: str, agent_chan: Channel,
                 caller_chan: Channel, mode: str, supervisor: str) -> None:
        self.svc = svc
        self.id = uuid.uuid4().hex[:12]
        self.sup = sup
        self.agent = agent
        self.agent_chan = agent_chan
        self.caller_chan = caller_chan
        self.mode = mode
        self.supervisor = supervisor
        self.started = time.time()
        self.mixer: Mixer[str] = Mixer(max_jitter_frames=4)
        self.out: dict[str, bytes] = {}
        self._parties = {"caller": caller_chan, "agent": agent_chan, "sup": sup}
        self._sources = {k: _MixSource(self, k) for k in self._parties}
        self._taps: dict[str, Callable[[bytes], None]] = {}
        self.active = False

    # ---- life cycle
    def attach(self) -> None:
        for key, ch in self._parties.items():
            self.mixer.add(key)
            if ch.media is not None:
                tap = self._make_tap(key)
                self._taps[key] = tap
                ch.media.taps.append(tap)
            ch.listeners.append(self._on_channel)
        if self.sup.media is not None:
            self.sup.media.peer = None
            self.sup.media.set_source(self._sources["sup"])
        self.svc.engine_hooks.append(self._tick)
        self.active = True
        self._apply()
        self.sup.app, self.sup.app_data = "Monitor", f"{self.agent}:{self.mode}"
        self.svc.publish(MONITOR_START, **self.info())

    def _make_tap(self, key: str) -> Callable[[bytes], None]:
        put = self.mixer.put

        def tap(pcm: bytes) -> None:
            put(key, pcm)

        return tap

    def _tick(self, now: float) -> None:
        self.out = self.mixer.mix()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise MonitorError(f"mode must be one of {', '.join(MODES)}", 400)
        if mode == self.mode or not self.active:
            return
        self.mode = mode
        self._apply()
        self.sup.app_data = f"{self.agent}:{self.mode}"
        self.svc.publish(MONITOR_MODE, monitor=self.id, agent=self.agent, mode=mode,
                         supervisor=self.supervisor, channel=self.agent_chan.id)

    def _apply(self) -> None:
        self.mixer.set_muted("sup", self.mode == "listen")
        self._use_mix(self.agent_chan, "agent", self.mode in ("whisper", "barge"))
        self._use_mix(self.caller_chan, "caller", self.mode == "barge")

    def _use_mix(self, ch: Channel, key: str, on: bool) -> None:
        ep = ch.media
        if ep is None or ch.is_gone:
            return
        src = self._sources[key]
        if on:
            if isinstance(ep.source, MohListener):
                return  # on hold: the music stays until the call is resumed
            if ep.source is not src:
                ep.set_source(src)
        elif ep.source is src:
            ep.set_source(None)  # back to the plain relay of the bridged peer

    def _on_channel(self, ch: Channel, what: str, data: Any) -> None:
        if what == "hangup":
            self.stop("hangup" if ch is self.sup else "call_ended")
        elif what == "dtmf" and ch is self.sup and isinstance(data, str):
            mode = DTMF_MODES.get(data)
            if mode is not None:
                self.set_mode(mode)
        elif what in ("hold", "unhold"):
            # the bridge just set (or cleared) music on hold on the other party: once it
            # has, put the mix back where the mode wants it
            asyncio.get_running_loop().call_soon(self._apply)

    def stop(self, reason: str = "stopped") -> None:
        if not self.active:
            return
        self.active = False
        if self._tick in self.svc.engine_hooks:
            self.svc.engine_hooks.remove(self._tick)
        for key, ch in self._parties.items():
            tap = self._taps.get(key)
            if ch.media is not None and tap is not None and tap in ch.media.taps:
                ch.media.taps.remove(tap)
            if self._on_channel in ch.listeners:
                ch.listeners.remove(self._on_channel)
            if ch.media is not None and ch.media.source is self._sources[key]:
                ch.media.set_source(None)
        self.svc.sessions.pop(self.id, None)
        self.svc.publish(MONITOR_STOP, monitor=self.id, agent=self.agent, reason=reason,
                         supervisor=self.supervisor, channel=self.agent_chan.id)
        if not self.sup.is_gone:
            self.sup.hangup("NORMAL_CLEARING")

    def info(self) -> dict[str, Any]:
        return {"monitor": self.id, "supervisor": self.supervisor, "agent": self.agent,
                "mode": self.mode, "started": self.started, "channel": self.agent_chan.id,
                "caller_channel": self.caller_chan.id, "caller": self.caller_chan.caller,
                "supervisor_channel": self.sup.id}


class MonitorService:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.sessions: dict[str, MonitorSession] = {}
        self.engine_hooks = server.engine.tick_hooks
        self.publish = server.bus.publish
        # who may monitor, by the extension that dials the feature code (set by the API layer:
        # async (extension, agent) -> the user name, or None when not allowed)
        self.authorize_extension: Callable[[str, str], Any] | None = None

    # ---- finding the call
    def find_call(self, agent: str | None = None,
                  channel: str | None = None) -> tuple[str, Channel, Channel]:
        """(agent, the agent's leg, the other party) of a bridged call in progress."""
        mgr = self.server.manager
        if channel:
            ch = mgr.find(channel)
            if ch is None:
                raise MonitorError("no such channel", 404)
            other = ch.bridged_with()
            if other is None or not ch.is_up:
                raise MonitorError("the channel is not in a two-party call")
            return ch.endpoint_name, ch, other
        if not agent:
            raise MonitorError("give an agent or a channel", 400)
        legs = [c for c in mgr.list() if c.endpoint_name == agent and c.is_up
                and c.bridged_with() is not None and not c.vars.get("monitor")]
        if not legs:
            raise MonitorError(f"agent {agent} is not on a call")
        leg = legs[-1]
        other = leg.bridged_with()
        assert other is not None
        return agent, leg, other

    def busy(self, agent_chan: Channel) -> MonitorSession | None:
        return next((s for s in self.sessions.values() if s.agent_chan is agent_chan), None)

    def start(self, sup: Channel, agent: str, agent_chan: Channel, caller_chan: Channel,
              mode: str, supervisor: str) -> MonitorSession:
        if mode not in MODES:
            raise MonitorError(f"mode must be one of {', '.join(MODES)}", 400)
        if self.busy(agent_chan) is not None:
            raise MonitorError(f"agent {agent}'s call is already monitored")
        sup.vars["monitor"] = True
        s = MonitorSession(self, sup, agent, agent_chan, caller_chan, mode, supervisor)
        self.sessions[s.id] = s
        s.attach()
        log.info("%s monitors %s (%s) in %s mode", supervisor, agent, agent_chan.name, mode)
        return s

    def list(self) -> list[dict[str, Any]]:
        return [s.info() for s in self.sessions.values()]

    def stop_all(self) -> None:
        for s in list(self.sessions.values()):
            s.stop("shutdown")

    # ---- started by the API: ring the supervisor's phone first
    async def call_supervisor(self, extension: str, agent: str | None, channel: str | None,
                              mode: str, supervisor: str, timeout: float = 30.0
                              ) -> MonitorSession:
        if mode not in MODES:
            raise MonitorError(f"mode must be one of {', '.join(MODES)}", 400)
        agent_id, agent_chan, caller_chan = self.find_call(agent, channel)
        if self.busy(agent_chan) is not None:
            raise MonitorError(f"agent {agent_id}'s call is already monitored")
        ua = self.server.ua
        bindings = ua.lookup(extension)
        if not bindings:
            raise MonitorError(f"extension {extension} is not registered")
        legs: list[Channel] = []
        for b in bindings:
            leg: Channel = await ua.originate(b, caller=agent_id, caller_name=f"Monitor {agent_id}",
                                     dest=extension, variables={"monitor": True})
            legs.append(leg)
        winner: Channel | None = None
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(asyncio.shield(leg.answered)) for leg in legs]
        gone: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(asyncio.shield(leg.hungup)) for leg in legs]
        deadline = time.monotonic() + timeout
        try:
            while winner is None and not all(leg.is_gone for leg in legs):
                left = deadline - time.monotonic()
                if left <= 0 or agent_chan.is_gone:
                    break
                await asyncio.wait(waits + gone, timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
                winner = next((leg for leg in legs if leg.is_up), None)
        finally:
            for f in waits + gone:
                f.cancel()
            for leg in legs:
                if leg is not winner and not leg.is_gone:
                    leg.hangup("NO_ANSWER" if winner is None else "LOSE_RACE")
        if winner is None:
            raise MonitorError(f"extension {extension} did not answer", 408)
        if agent_chan.is_gone or caller_chan.is_gone:
            winner.hangup("NORMAL_CLEARING")
            raise MonitorError("the call ended before the supervisor answered", 409)
        return self.start(winner, agent_id, agent_chan, caller_chan, mode, supervisor)

    # ---- started by a feature code dialled from the supervisor's phone
    def feature_mode(self, number: str) -> tuple[str, str] | None:
        """(mode, agent) if `number` is a monitor feature code + an extension."""
        f = self.server.cfg.features
        for code, mode in ((f.monitor_listen, "listen"), (f.monitor_whisper, "whisper"),
                           (f.monitor_barge, "barge")):
            if code and number.startswith(code) and len(number) > len(code):
                return mode, number[len(code):]
        return None

    async def feature(self, chan: Channel, number: str) -> tuple[str, int]:
        parsed = self.feature_mode(number)
        assert parsed is not None
        mode, agent = parsed
        who = chan.caller
        allowed = None
        if (chan.direction == "inbound" and getattr(chan, "trunk", None) is None
                and who in self.server.ua.extensions and self.authorize_extension is not None):
            allowed = await self.authorize_extension(who, agent)
        if allowed is None:
            log.warning("%s: extension %s may not monitor %s", chan.name, who, agent)
            self.publish("MONITOR_DENIED", extension=who, agent=agent, mode=mode,
                         channel=chan.id)
            return "FAILED", 403
        try:
            agent_id, agent_chan, caller_chan = self.find_call(agent)
        except MonitorError:
            return "CHANUNAVAIL", 404
        chan.app, chan.app_data = "Monitor", f"{agent_id}:{mode}"
        await chan.answer()
        if chan.is_gone or agent_chan.is_gone:
            return "DONE", 200
        try:
            self.start(chan, agent_id, agent_chan, caller_chan, mode, str(allowed))
        except MonitorError:
            chan.hangup("NORMAL_CLEARING")
            return "DONE", 200
        await asyncio.shield(chan.hungup)
        return "DONE", 200
