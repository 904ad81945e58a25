"""The ccswitch server: wires configuration, transports, SIP, media, apps and storage."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ccswitch.apps.conference import (
    PARK_EVENT,
    UNPARK_EVENT,
    ParkingLot,
    find_ringing,
    run_conference,
)
from ccswitch.apps.dial import dial
from ccswitch.apps.ivr.expr import render
from ccswitch.apps.ivr.flow import Context, FlowError, FlowIssue, FlowSet, flow_files, load_flows
from ccswitch.apps.ivr.runner import DialOutcome, FlowRunner, IvrServices
from ccswitch.apps.queue import QueueService
from ccswitch.apps.transfer import Transfers
from ccswitch.apps.trunks import TrunkManager
from ccswitch.call import events as ev
from ccswitch.call.causes import cause_from_sip, disposition
from ccswitch.call.channel import Bridge, Channel, ChannelManager
from ccswitch.call.conference import Conferences
from ccswitch.call.events import EventBus
from ccswitch.call.sipua import Extension, SipChannel, SipUA
from ccswitch.config import Config, ConfigError, ConfigIssue, load_config
from ccswitch.gcwatch import GcWatch
from ccswitch.media.engine import MediaEngine
from ccswitch.media.moh import MusicOnHold
from ccswitch.media.player import PromptCache
from ccswitch.media.tones import sine
from ccswitch.speech.tts import Tts, tts_available
from ccswitch.storage.cdr import CdrStore
from ccswitch.transport import Transports

log = logging.getLogger("ccswitch")


class StartupError(Exception):
    """A problem that stops start-up; str() is the message to print (no traceback)."""


class Server:
    def __init__(self, cfg: Config, config_path: str = "config.yaml") -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.bus = EventBus()
        self.engine = MediaEngine(cfg.rtp.address, cfg.rtp.port_min, cfg.rtp.port_max)
        self.gc_watch = GcWatch()
        self.manager = ChannelManager(self.bus, self.engine)
        self.cdr = CdrStore()
        self.ua = SipUA(
            manager=self.manager,
            engine=self.engine,
            realm=cfg.server.realm,
            server_name=cfg.server.name,
            extensions=_extensions(cfg),
            on_inbound_call=self.route_call,
            auth_algorithms=tuple(cfg.server.auth_algorithms),
            nonce_ttl=float(cfg.server.nonce_ttl),
            external_address=cfg.server.external_address,
        )
        self.transports = Transports(self.ua.on_data)
        self.prompt_cache = PromptCache()
        self.moh = MusicOnHold(Path(cfg.prompts.directory) / "moh", self.engine,
                               self.prompt_cache)
        self.manager.moh = self.moh
        self.tts: Any = None
        if cfg.tts.enabled and tts_available():
            self.tts = Tts(Path(cfg.tts.cache), cfg.tts.voice, cfg.tts.rate)
        self.recognizers: dict[str, Any] = {}
        self.executor: Any = None
        self.flows = FlowSet({}, 0)
        self.transfers = Transfers(self.ua, self.connect, self.bus.publish)
        self.conferences = Conferences(
            self.manager, Path(cfg.recordings.directory) if cfg.recordings.enabled else None)
        self.parking = ParkingLot(cfg.parking, self.bus.publish, self.connect)
        self.parking.on_bridged = self._watch_features
        self.queues = QueueService(self.ua, self.moh, self.speak, self.bus.publish,
                                   Path(cfg.database.path), on_bridged=self._watch_features,
                                   cdr_extra=self._cdr_extra)
        self.ua.on_refer = self.transfers.on_refer
        self.transfers.on_transfer = self._on_transfer
        # per call (linkedid, while its first leg lives): who it was connected to, its
        # transfers and parkings, kept in the CDR's extra (continuity across transfers)
        self._history: dict[str, dict[str, list[Any]]] = {}
        self.trunks = TrunkManager(self.ua, self.manager, cfg,
                                   on_call_info=lambda cid, f: self.cdr.update_extra(cid, **f))
        self.trunks.run_flow = self.run_flow
        self.trunks.flow_exists = lambda name: self.flows.get(name) is not None
        self.trunks.on_bridged = self._watch_features
        self.trunks.connect = self.connect
        self.started = time.time()
        self._stop = asyncio.Event()
        self._api: Any = None
        self._housekeeping: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle
    # ------------------------------------------------------------ flows
    def flow_context(self, cfg: Config) -> Context:
        return Context(
            prompts_dir=Path(cfg.prompts.directory),
            schedules=set(cfg.schedules),
            queues=set(cfg.queues),
            numbers={e.number for e in cfg.extensions},
            tts_available=self.tts is not None,
        )

    def load_flows(self, cfg: Config, version: int) -> FlowSet:
        """Load and validate every flow; raises FlowError (nothing is replaced)."""
        directory = Path(cfg.flows.directory)
        paths = flow_files(directory) if directory.is_dir() else []

        def tts_missing(issue: FlowIssue) -> None:
            log.error("%s (flow disabled; other flows are unaffected)", issue)

        flows = load_flows(paths, self.flow_context(cfg), version, on_tts_missing=tts_missing)
        for did in cfg.dids:
            if did.flow is not None and did.flow not in flows.flows:
                raise FlowError([FlowIssue(cfg.file, cfg.line_of(did, "flow"), None,
                                           f"DID {did.number}: no flow named "
                                           f"'{did.flow}' in {directory}")])
        for route in cfg.routes:
            if route.flow is not None and route.flow not in flows.flows:
                raise FlowError([FlowIssue(cfg.file, cfg.line_of(route, "flow"), None,
                                           f"route {route.number}: no flow named "
                                           f"'{route.flow}' in {directory}")])
        return flows

    async def _prerender(self, flows: FlowSet) -> None:
        """Render every static `say` text once, at load time, not per call."""
        if self.tts is None:
            return
        for f in flows.flows.values():
            for text in f.say_texts:
                try:
                    await self.tts.render(text)
                except Exception as e:  # a bad text must not stop the server
                    log.error("flow %s: cannot render %r: %s", f.name, text[:40], e)

    def ivr_services(self) -> IvrServices:
        cfg = self.cfg

        async def ivr_dial(chan: Channel, targets: list[str], timeout: float) -> DialOutcome:
            assert isinstance(chan, SipChannel)
            res = await dial(self.ua, chan, targets, timeout)
            return DialOutcome(res.status)

        async def ivr_queue(chan: Channel, node: Any, env: dict[str, Any]) -> str:
            name = render(str(node.get("queue")), env)
            prio = node.get("priority")
            if prio is None:
                try:
                    prio = int(env.get("priority") or 0)
                except (TypeError, ValueError):
                    prio = 0
            skills = node.get("skills") or env.get("skills")
            status, _ = await self.run_queue(chan, name, int(prio),
                                             dict(skills) if isinstance(skills, dict) else None,
                                             overflow=False)
            outcome = {"DONE": "next", "BUSY": "full", "NOANSWER": "timeout"}
            return outcome.get(status, "closed")

        def on_path(chan: Channel, path: list[dict[str, Any]]) -> None:
            self.cdr.update_extra(chan.linkedid, ivr_path=path[-200:])

        return IvrServices(
            prompts_dir=Path(cfg.prompts.directory),
            prompt_cache=self.prompt_cache,
            schedules=dict(cfg.schedules),
            recordings_dir=Path(cfg.recordings.directory),
            dial=ivr_dial,
            tts=self.tts,
            recognizers=self.recognizers,
            default_language=cfg.speech.default_language,
            executor=self.executor,
            publish=self.bus.publish,
            on_path=on_path,
            queue=ivr_queue,
        )

    async def reload(self) -> tuple[bool, str]:
        """Re-read config.yaml and flows; a broken edit is refused, the old version stays."""
        try:
            cfg = load_config(self.config_path)
        except ConfigError as e:
            log.error("reload refused:\n%s", e)
            return False, str(e)
        try:
            flows = self.load_flows(cfg, self.flows.version + 1)
        except FlowError as e:
            log.error("reload refused:\n%s", e)
            return False, str(e)
        await self._prerender(flows)
        self.cfg = cfg
        self.ua.extensions = _extensions(cfg)
        await self.trunks.reload(cfg)
        self.queues.configure(cfg)
        self.flows = flows
        log.info("reloaded configuration and %d flow(s) (version %d)", len(flows.flows),
                 flows.version)
        return True, f"reloaded {len(flows.flows)} flow(s), version {flows.version}"

    async def start(self) -> None:
        cfg = self.cfg
        try:
            self.flows = self.load_flows(cfg, 1)
        except FlowError as e:
            raise StartupError(str(e)) from None
        await self._prerender(self.flows)
        await self._load_speech(cfg)
        db_path = Path(cfg.database.path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        await self.cdr.open(db_path)
        fixed = await self.cdr.recover_interrupted(time.time())
        if fixed:
            log.warning("closed %d call record(s) left open by a crash as INTERRUPTED", fixed)
        self.engine.start()
        self.moh.load()
        self.ua.attach(self.transports.send)
        for lst in cfg.server.listen:
            try:
                bound = await self.transports.listen(lst.transport, lst.address, lst.port)
            except OSError as e:
                reason = "port in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
                raise StartupError(str(ConfigError([ConfigIssue(
                    cfg.file, cfg.line_of(lst), f"listen {lst.transport} "
                    f"{lst.address}:{lst.port}: {reason}")]))) from None
            fam = 10 if ":" in lst.address else 2  # AF_INET6 / AF_INET
            self.ua.listen.setdefault((lst.transport, fam), bound.port)
            self.ua.listen_host.setdefault((lst.transport, fam), lst.address)
            log.info("listening on %s %s:%d", lst.transport, lst.address, bound.port)
        # only the events CDRs and recordings need: the others then cost nothing per call
        self.bus.subscribe(self._on_event, {ev.CHANNEL_CREATE, ev.CHANNEL_ANSWER,
                                            ev.CHANNEL_HANGUP})
        self.bus.subscribe(self._on_call_control,
                           {ev.CHANNEL_BRIDGE, PARK_EVENT, UNPARK_EVENT})
        await self.queues.start(cfg)
        self.bus.subscribe(self.queues.on_channel_event, {ev.CHANNEL_CREATE, ev.CHANNEL_HANGUP})
        await self.trunks.start()  # after the listeners: registrations need our address
        from ccswitch.api.control import ControlServer

        self._api = ControlServer(self)
        from ccswitch.api.http import Operations

        # users, audit, HTTP API, events, monitoring, metrics, backups (extends the local API)
        self.ops = Operations(self)
        await self.ops.start(self._api.app)
        await self._api.start(Path(cfg.control.socket))
        self._housekeeping = asyncio.ensure_future(self._housekeep())
        log.info("ccswitch ready: %d extension(s), RTP %d-%d", len(cfg.extensions),
                 cfg.rtp.port_min, cfg.rtp.port_max)
        # everything loaded so far (modules, config, flows) lives as long as the process:
        # keep it out of the cyclic GC, whose full passes would otherwise walk it all
        # (tens of ms with the loop stalled, every few thousand calls)
        gc.freeze()
        # A call's objects live for its transactions' 32 s linger: with the default
        # thresholds they reach the oldest generation and full collections (~100 ms
        # pauses, ~7% of the CPU at 80 calls/s) come every few seconds.  Rarer young
        # collections let most of them die before that (measured: GC time / 4).
        gc.set_threshold(5000, 20, 20)
        self.gc_watch.install()

    async def _load_speech(self, cfg: Config) -> None:
        """Load each configured recognizer once (models are big); a missing model disables
        speech for that language with one warning, digits keep working."""
        if not cfg.speech.enabled or not cfg.speech.recognizers:
            return
        import concurrent.futures

        if self.executor is None:
            self.executor = concurrent.futures.ThreadPoolExecutor(
                cfg.speech.workers, thread_name_prefix="speech")

        def load(lang: str, engine: str, model: str | None) -> Any:
            try:
                if engine == "vosk" and model:
                    from ccswitch.speech.vosk_engine import load_vosk

                    return load_vosk(model, lang)
                if engine == "pocketsphinx":
                    from ccswitch.speech.sphinx_engine import SphinxRecognizer

                    return SphinxRecognizer(processes=min(2, cfg.speech.workers))
            except Exception as e:  # a broken engine must not stop the server
                log.warning("speech recognition '%s' (%s) disabled: %s", lang, engine, e)
            return None

        for lang, rc in cfg.speech.recognizers.items():
            rec = await asyncio.to_thread(load, lang, rc.engine, rc.model)
            if rec is not None:
                self.recognizers[lang] = rec
                log.info("speech recognition '%s': %s", lang, getattr(rec, "name", rc.engine))

    async def stop(self) -> None:
        """Hang up every call with BYE, finalise recordings and CDRs."""
        log.info("shutting down: hanging up %d channel(s)", len(self.manager.channels))
        self.trunks.stop()  # un-REGISTER: providers stop sending calls here
        for rec in self.recognizers.values():
            close = getattr(rec, "close", None)
            if callable(close):
                close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.ua.hangup_all("SYSTEM_SHUTDOWN")
        # let BYEs and final responses leave before the sockets close
        await asyncio.sleep(0.2)
        self.engine.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._api is not None:
            await self._api.stop()
        if getattr(self, "ops", None) is not None:
            await self.ops.stop()
        self.transports.close()
        await self.queues.stop()
        await self.cdr.close()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # handlers first: a SIGTERM during start-up must still shut down cleanly
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.start()
        except BaseException:
            # a failed start (port in use...) must release what start() opened: the
            # database's worker thread alone keeps the process from ever exiting
            with contextlib.suppress(Exception):
                await self.stop()
            raise
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.ua.registrar.expire(self.ua.now())

    # ------------------------------------------------------------ dialplan
    async def route_call(self, chan: SipChannel) -> None:
        """Run the dialplan for a new inbound call; refuse it if nothing answers it."""
        number = chan.dest
        if chan.replaces is not None:  # INVITE with Replaces: not a new call
            self.cdr.update_extra(chan.linkedid, replaces=chan.replaces.linkedid)
            if await self.transfers.replace(chan, chan.replaces):
                await asyncio.shield(chan.hungup)
            elif not chan.is_gone and not chan.is_up:
                chan.reject(503, "NORMAL_TEMPORARY_FAILURE", "Service Unavailable "
                            "(the call to replace is not connected)")
            return
        if chan.trunk is not None:  # a provider's call: its DID decides, nothing else
            internal = await self._route_did(chan, *self.trunks.inbound_target(chan))
            if internal is None:
                return
            number = internal
        status, code = await self.connect(chan, number)
        if chan.is_gone or chan.is_up or status in ("ANSWER", "DONE"):
            return
        if status == "NOANSWER":
            chan.reject(480, "NO_ANSWER")
        elif status == "CHANUNAVAIL" and code == 480:
            chan.reject(480, "SUBSCRIBER_ABSENT")
        elif status == "NOROUTE":
            chan.reject(404, "UNALLOCATED_NUMBER")
        else:
            chan.reject(code or 480, cause_from_sip(code or 480))

    async def connect(self, chan: Channel, number: str,
                      on_answer: Callable[[], None] | None = None) -> tuple[str, int]:
        """Connect `chan` to whatever `number` means: a route (flow, extension), an
        extension.  Used for new calls, transfers and originations.  Returns an Asterisk
        DIALSTATUS-like status (ANSWER, BUSY, NOANSWER, CHANUNAVAIL, CANCEL, FAILED;
        DONE when an application ran; NOROUTE) and the SIP code behind a failure.
        `on_answer` runs once the far end answered and is bridged."""
        ops = getattr(self, "ops", None)
        if ops is not None and ops.monitor.feature_mode(number) is not None:
            monitored: tuple[str, int] = await ops.monitor.feature(chan, number)  # *61 + agent
            return monitored
        route = next((r for r in self.cfg.routes if r.number == number), None)
        if route is not None and route.flow is not None:
            if on_answer is not None:
                on_answer()
            await self.run_flow(chan, route.flow)
            return "DONE", 200
        conf = next((c for c in self.cfg.conferences if c.number == number), None)
        if conf is not None:
            if on_answer is not None:
                on_answer()
            await run_conference(self.conferences, chan, conf, self.speak)
            return "DONE", 200
        if self.parking.is_slot(number):
            if number in self.parking.slots:
                ok = await self.parking.retrieve(chan, number)
                return ("DONE", 200) if ok else ("CHANUNAVAIL", 404)
            parker = chan.vars.get("transferred_by")
            if parker is None:
                return "CHANUNAVAIL", 404  # dialled an empty slot: nothing to retrieve
            # transferred to a free slot: park the transferee there
            slot = self.parking.park(chan, str(parker), number)
            if slot is None:
                return "FAILED", 486
            if on_answer is not None:
                on_answer()
            await asyncio.shield(chan.hungup)
            return "DONE", 200
        qname = self.queues.numbers.get(number)
        if qname is not None:
            if on_answer is not None:
                on_answer()
            return await self.run_queue(chan, qname)
        f = self.cfg.features
        kinds = {f.agent_login: "login", f.agent_logout: "logout", f.agent_pause: "pause",
                 f.agent_unpause: "unpause"}
        if number in kinds and chan.direction == "inbound" and chan.caller in self.ua.extensions:
            await self.queues.feature(chan, number, kinds[number])
            return "DONE", 200
        pickup = self.cfg.features.pickup
        if pickup and number.startswith(pickup) and len(number) > len(pickup):
            target = find_ringing(self.manager.list(), number[len(pickup):])
            if target is None:
                return "CHANUNAVAIL", 404
            await chan.answer()
            target._notify("pickup", chan)
            await asyncio.shield(chan.hungup)
            return "DONE", 200
        if route is not None and route.extension is not None:
            number = route.extension
        if number in self.ua.extensions and isinstance(chan, SipChannel):
            chan.app, chan.app_data = "Dial", number
            res = await dial(
                self.ua, chan, [number], self.cfg.calls.no_answer_timeout,
                on_bridged=(lambda a, b: on_answer()) if on_answer is not None else None,
                on_bridged_watch=self._watch_features)
            return res.status, res.sip_status
        did = self.trunks.local_did(number)
        if did is not None and isinstance(chan, SipChannel):  # our own DID: no hairpin
            internal = await self._route_did(chan, did.kind, did.target)
            return ("DONE", 200) if internal is None else await self.connect(
                chan, internal, on_answer)
        who = self.trunks.authorising_extension(chan)
        if who is not None and isinstance(chan, SipChannel):
            return await self.trunks.connect_out(chan, number, who,
                                                 self.cfg.calls.no_answer_timeout, on_answer)
        return "NOROUTE", 404

    async def _route_did(self, chan: SipChannel, kind: str, target: str) -> str | None:
        """Where a DID goes: runs a flow (or refuses the call) and returns None, or
        returns the internal number (extension, queue, conference) to connect."""
        if kind == "reject":
            chan.reject(int(target))
            return None
        if kind == "flow":
            await self.run_flow(chan, target)
            return None
        if kind == "queue":
            q = self.cfg.queues.get(target)
            if q is None or q.number is None:
                log.error("%s: DID to queue %r, which has no number", chan.name, target)
                chan.reject(503, "NORMAL_TEMPORARY_FAILURE")
                return None
            return q.number
        if kind == "conference":
            conf = next((c for c in self.cfg.conferences
                         if target in (c.number, c.name)), None)
            return conf.number if conf is not None else target
        return target

    async def run_queue(self, chan: Channel, name: str, priority: int = 0,
                        skills: dict[str, int] | None = None,
                        overflow: bool = True) -> tuple[str, int]:
        """Put a call in a queue; on timeout send it to the queue's overflow destination."""
        outcome, detail = await self.queues.run_caller(chan, name, priority, skills)
        if outcome in ("answered", "callback", "abandoned"):
            return "DONE", 200
        if outcome == "timeout" and overflow and detail and not chan.is_gone:
            kind, _, target = detail.partition(":")
            if kind == "queue":
                return await self.run_queue(chan, target, priority, skills)
            if kind == "flow":
                await self.run_flow(chan, target)
                return "DONE", 200
            if kind in ("extension", "voicemail"):
                return await self.connect(chan, target)
        if outcome == "full":
            return "BUSY", 486
        return ("NOANSWER", 480) if outcome == "timeout" else ("CHANUNAVAIL", 480)

    def _cdr_extra(self, call_uuid: str, **fields: Any) -> None:
        self.cdr.update_extra(call_uuid, **fields)

    async def speak(self, chan: Channel, text: str) -> None:
        """Say `text` on a channel (TTS), or a short tone when no TTS engine exists."""
        if self.tts is not None:
            try:
                path = await self.tts.render(text)
                pcm = await asyncio.to_thread(self.prompt_cache.get, path)
            except Exception as e:
                log.warning("tts failed for %r: %s", text[:40], e)
            else:
                # a hang-up meanwhile raises ChannelGone to the caller: not a TTS failure
                await chan.play(pcm, barge_in=True)
                return
        await chan.play(sine(660, 250, dbfs=-14), barge_in=True)

    def _watch_features(self, a: Channel, b: Channel) -> None:
        """In-call feature codes (transfers, park, 3-way) for both parties of a bridge."""
        f = self.cfg.features
        extra: dict[str, Callable[[Channel], Awaitable[None]]] = {
            f.park: self._feature_park, f.conference: self._feature_three_way}
        for ch in (a, b):
            if not ch.vars.get("features_watched"):
                ch.vars["features_watched"] = True
                self.transfers.watch(ch, f.blind_transfer, f.attended_transfer, extra)

    async def _feature_park(self, ch: Channel) -> None:
        """#72 in a call: park the other party in a free slot and say which."""
        other = ch.bridged_with()
        if other is None or ch.bridge is None:
            return
        ch.bridge.destroy()
        slot = self.parking.park(other, ch.endpoint_name)
        if slot is None:
            await self.speak(ch, "All parking slots are busy.")
            Bridge(self.manager, ch, other)
            return
        await self.speak(ch, "The call is parked at " + " ".join(slot) + ".")
        ch.hangup("NORMAL_CLEARING")

    async def _feature_three_way(self, ch: Channel) -> None:
        """*3 + number: turn the call into a conference and add the number to it."""
        other = ch.bridged_with()
        if other is None:
            return
        ch.flush_dtmf()
        number, _ = await ch.get_digits(32, terminators="#", first_timeout=10.0,
                                        inter_timeout=3.0)
        if not number:
            return
        room = self.conferences.get_or_create(f"adhoc-{ch.linkedid[:8]}", "three-way",
                                              ad_hoc=True)
        room.add(ch)
        room.add(other)
        leg = await self.call_out(number, caller=ch, timeout=self.cfg.calls.no_answer_timeout)
        if leg is not None and not leg.is_gone:
            room.add(leg)

    async def call_out(self, number: str, caller: Channel, timeout: float) -> Channel | None:
        """Ring every contact of extension `number`; return the leg that answers (unbridged)."""
        bindings = self.ua.lookup(number)
        if not bindings:
            return None
        legs = [await self.ua.originate(b, caller=caller.caller, caller_name=caller.caller_name,
                                        dest=number, linkedid=caller.linkedid)
                for b in bindings]
        try:
            waits = [asyncio.ensure_future(asyncio.shield(leg.answered)) for leg in legs]
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            return next((leg for leg in legs if leg.is_up), None)
        finally:
            for leg in legs:
                if not leg.is_up and not leg.is_gone:
                    leg.hangup("NO_ANSWER" if not any(x.is_up for x in legs) else "LOSE_RACE")

    async def run_flow(self, chan: Channel, name: str) -> None:
        flows = self.flows  # the version in force when the call arrived
        flow = flows.get(name)
        if flow is None:
            log.error("%s: flow '%s' is not loaded", chan.name, name)
            if isinstance(chan, SipChannel):
                chan.reject(503, "NORMAL_TEMPORARY_FAILURE")
            return
        chan.vars["flow_version"] = flows.version
        await FlowRunner(self.ivr_services(), chan, flows, flow).run()

    # ------------------------------------------------------------ CDRs and recordings
    def _on_event(self, e: dict[str, Any]) -> None:
        t = e["event"]
        cid = e.get("channel")
        if cid is None or e.get("linkedid") != cid:
            return  # only the call's first leg owns the CDR and the recording
        if t == ev.CHANNEL_CREATE:
            self.cdr.start(cid, e.get("caller", ""), e.get("caller_name") or "",
                           e.get("callee", ""), e["time"], None)
        elif t == ev.CHANNEL_ANSWER:
            self.cdr.answer(cid, e["time"])
            ch = self.manager.channels.get(cid)
            if ch is not None:
                self._start_recording(ch)
        elif t == ev.CHANNEL_HANGUP:
            cause = e.get("cause", "NORMAL_CLEARING")
            self.cdr.end(cid, e["time"], disposition(bool(e.get("answered")), cause), cause)
            self._history.pop(cid, None)

    def _call_history(self, linkedid: str, key: str) -> list[Any] | None:
        """The `key` list of a call's history; None once the call's first leg is gone."""
        if linkedid not in self.manager.channels:
            return None
        return self._history.setdefault(linkedid, {}).setdefault(key, [])

    def _on_call_control(self, e: dict[str, Any]) -> None:
        """Bridges and parkings, into the CDR of the call(s) they belong to."""
        t = e["event"]
        if t == ev.CHANNEL_BRIDGE:
            chans = [self.manager.channels.get(e.get("channel", "")),
                     self.manager.channels.get(e.get("other", ""))]
            for lid in {c.linkedid for c in chans if c is not None}:
                parties = self._call_history(lid, "parties")
                if parties is None:
                    continue
                first = self.manager.channels[lid].endpoint_name
                new = [c.endpoint_name for c in chans if c is not None
                       and c.endpoint_name != first and c.endpoint_name not in parties]
                if new:
                    parties.extend(new)
                    self.cdr.update_extra(lid, parties=parties)
        else:
            lid = str(e.get("linkedid", ""))
            parked = self._call_history(lid, "parked")
            if parked is None:
                return
            item: dict[str, Any] = {k: e[k] for k in ("slot", "parker", "reason", "by")
                                    if k in e}
            item.update(event="park" if t == PARK_EVENT else "unpark", time=e["time"])
            parked.append(item)
            self.cdr.update_extra(lid, parked=parked)

    def _on_transfer(self, kind: str, transferor: Channel, transferee: Channel, target: str,
                     ok: bool, started: float) -> None:
        lid = transferee.linkedid
        transfers = self._call_history(lid, "transfers")
        if transfers is not None:
            transfers.append({"kind": kind, "by": transferor.endpoint_name,
                              "party": transferee.endpoint_name, "to": target, "ok": ok,
                              "time": time.time()})
            self.cdr.update_extra(lid, transfers=transfers)
        agent = transferor.endpoint_name
        if ok and self.queues.agent_legs.get(agent) is transferor:
            # the agent's queue call ends when they let go of it (outcome "transferred"):
            # talk time after that belongs to whoever took the call, not to this agent;
            # the agent leg's hangup, which follows at once, stores the record
            self.queues.acd.agent_on_transfer(agent, started)

    def _start_recording(self, ch: Channel) -> None:
        if not self.cfg.recordings.enabled or ch.media is None or ch.recorder is not None:
            return
        day = time.strftime("%Y/%m/%d", time.localtime(ch.created))
        path = Path(self.cfg.recordings.directory) / day / f"{ch.linkedid}.wav"
        try:
            rec = self.engine.new_recorder(path)
        except OSError as e:
            log.error("cannot record %s to %s: %s", ch.name, path, e)
            return
        ch.recorder = rec
        ch.recording_path = str(path)
        ch.media.record_to(rec, rx_side=0, tx_side=1)
        self.cdr.set_recording(ch.linkedid, path)

        def close_on_hangup(c: Channel, what: str, data: Any) -> None:
            if what == "hangup" and c.recorder is not None:
                self.engine.close_recorder(c.recorder)

        ch.listeners.append(close_on_hangup)


def _extensions(cfg: Config) -> dict[str, Extension]:
    return {
        e.number: Extension(e.number, e.password, e.name or "", e.rtp_symmetric, e.max_contacts,
                            list(e.codecs), e.legacy_digest)
        for e in cfg.extensions
    }


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # per-statement debug output of the database driver drowns everything else
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)


def run_server(config_path: str) -> int:
    """`ccswitch run`: returns the process exit code."""
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(str(e), flush=True)
        return 2
    setup_logging(cfg.logging.level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    server = Server(cfg, config_path)
    try:
        asyncio.run(server.run())
    except StartupError as e:
        print(str(e), flush=True)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _unused(*_: object) -> None:
    pass


_unused(os)
