"""The ccswitch server: wires configuration, transports, SIP, media, apps and storage."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from ccswitch.apps.dial import dial
from ccswitch.call import events as ev
from ccswitch.call.causes import cause_from_sip, disposition
from ccswitch.call.channel import Channel, ChannelManager
from ccswitch.call.events import EventBus
from ccswitch.call.sipua import Extension, SipChannel, SipUA
from ccswitch.config import Config, ConfigError, ConfigIssue, load_config
from ccswitch.media.engine import MediaEngine
from ccswitch.storage.cdr import CdrStore
from ccswitch.transport import Transports

log = logging.getLogger("ccswitch")


class StartupError(Exception):
    """A problem that stops start-up; str() is the message to print (no traceback)."""


class Server:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.bus = EventBus()
        self.engine = MediaEngine(cfg.rtp.address, cfg.rtp.port_min, cfg.rtp.port_max)
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
        self.started = time.time()
        self._stop = asyncio.Event()
        self._api: Any = None
        self._housekeeping: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        cfg = self.cfg
        db_path = Path(cfg.database.path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        await self.cdr.open(db_path)
        fixed = await self.cdr.recover_interrupted(time.time())
        if fixed:
            log.warning("closed %d call record(s) left open by a crash as INTERRUPTED", fixed)
        self.engine.start()
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
        self.bus.subscribe(self._on_event)
        from ccswitch.api.control import ControlServer

        self._api = ControlServer(self)
        await self._api.start(Path(cfg.control.socket))
        self._housekeeping = asyncio.ensure_future(self._housekeep())
        log.info("ccswitch ready: %d extension(s), RTP %d-%d", len(cfg.extensions),
                 cfg.rtp.port_min, cfg.rtp.port_max)

    async def stop(self) -> None:
        """Hang up every call with BYE, finalise recordings and CDRs."""
        log.info("shutting down: hanging up %d channel(s)", len(self.manager.channels))
        self.ua.hangup_all("SYSTEM_SHUTDOWN")
        # let BYEs and final responses leave before the sockets close
        await asyncio.sleep(0.2)
        self.engine.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._api is not None:
            await self._api.stop()
        self.transports.close()
        await self.cdr.close()

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
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
        """Decide what an inbound call runs (extensions now; flows, queues... later)."""
        number = chan.dest
        if number in self.ua.extensions:
            chan.app, chan.app_data = "Dial", number
            res = await dial(self.ua, chan, [number], self.cfg.calls.no_answer_timeout)
            if chan.is_gone:
                return
            if res.status == "ANSWER":
                return
            if res.status == "NOANSWER":
                chan.reject(480, "NO_ANSWER")
            elif res.status == "CHANUNAVAIL" and res.sip_status == 480:
                chan.reject(480, "SUBSCRIBER_ABSENT")
            else:
                chan.reject(res.sip_status or 480, cause_from_sip(res.sip_status or 480))
            return
        chan.reject(404, "UNALLOCATED_NUMBER")

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
                            list(e.codecs))
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
    server = Server(cfg)
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
