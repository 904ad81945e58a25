"""Channels, bridges and the channel registry (the call model).

A Channel is one call leg: signalling (a subclass such as SipChannel) plus a
media endpoint.  Applications use only the Channel API (answer, ring, hangup,
play, DTMF...), never SIP.  A Bridge joins two channels' media.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ccswitch.call import events as ev
from ccswitch.call.events import EventBus
from ccswitch.media import engine as media
from ccswitch.media.moh import MohListener

if TYPE_CHECKING:
    from ccswitch.media.engine import Endpoint, MediaEngine
    from ccswitch.media.moh import MusicOnHold


class ChannelState(StrEnum):
    DOWN = "Down"  # created, nothing sent yet
    RING = "Ring"  # inbound: call arrived, not answered
    RINGING = "Ringing"  # outbound: the far end is ringing (or inbound: we sent 180)
    EARLY = "Early"  # early media flowing (183)
    UP = "Up"
    HANGUP = "Hangup"


Listener = Callable[["Channel", str, Any], None]


class Channel:
    """One call leg.  Signalling methods are implemented by technology subclasses."""

    tech = "SIP"

    def __init__(
        self,
        manager: ChannelManager,
        *,
        endpoint_name: str,
        direction: str,
        caller: str,
        caller_name: str,
        dest: str,
        linkedid: str | None = None,
    ) -> None:
        self.manager = manager
        self.id = uuid.uuid4().hex
        self.name = f"{self.tech}/{endpoint_name}-{manager.next_seq():08x}"
        self.endpoint_name = endpoint_name
        self.direction = direction  # "inbound" (from a phone/trunk) or "outbound" (we call)
        self.caller = caller
        self.caller_name = caller_name
        self.dest = dest
        self.linkedid = linkedid or self.id  # the call this leg belongs to
        self.state = ChannelState.DOWN
        self.created = time.time()
        self.created_mono = time.monotonic()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_cause: str | None = None
        self.media: Endpoint | None = None
        self.bridge: Bridge | None = None
        self.vars: dict[str, Any] = {}
        self.app = ""  # what the channel runs, for `ccswitch channels`
        self.app_data = ""
        self.recorder: media.CallRecorder | None = None
        self.recording_path: str | None = None
        self.listeners: list[Listener] = []
        # created on first use (most calls never see a digit): dtmf_queue, dtmf_event
        self._dtmf_queue: asyncio.Queue[str] | None = None
        self._dtmf_event: asyncio.Event | None = None
        self.hungup: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ---- read-only views
    @property
    def dtmf_queue(self) -> asyncio.Queue[str]:
        q = self._dtmf_queue
        if q is None:
            q = self._dtmf_queue = asyncio.Queue()
        return q

    @property
    def dtmf_event(self) -> asyncio.Event:
        """Set while digits wait in dtmf_queue (barge-in)."""
        e = self._dtmf_event
        if e is None:
            e = self._dtmf_event = asyncio.Event()
        return e

    @property
    def is_up(self) -> bool:
        return self.state == ChannelState.UP

    @property
    def is_gone(self) -> bool:
        return self.state == ChannelState.HANGUP

    @property
    def codec(self) -> str:
        if self.media is None:
            return ""
        from ccswitch.media.g711 import CODEC_NAMES

        return CODEC_NAMES.get(self.media.codec_pt, str(self.media.codec_pt))

    def bridged_with(self) -> Channel | None:
        if self.bridge is None:
            return None
        return self.bridge.other(self)

    def snapshot(self) -> dict[str, Any]:
        other = self.bridged_with()
        now = time.time()
        return {
            "id": self.id,
            "name": self.name,
            "state": str(self.state),
            "direction": self.direction,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "callee": self.dest,
            "codec": self.codec,
            "created": self.created,
            "answered": self.answered_at,
            "duration": round(now - self.created, 1),
            "billsec": round(now - self.answered_at, 1) if self.answered_at else 0.0,
            "bridged_with": other.name if other else None,
            "linkedid": self.linkedid,
            "app": self.app,
            "app_data": self.app_data,
            "recording": self.recording_path,
            "media": self.media.info() if self.media else None,
        }

    # ---- signalling API (subclasses)
    def ring(self) -> None:
        raise NotImplementedError

    def progress(self) -> None:
        raise NotImplementedError

    async def answer(self) -> None:
        raise NotImplementedError

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        raise NotImplementedError

    def send_dtmf(self, digit: str) -> None:
        if self.media is not None:
            self.media.send_dtmf(digit)

    # ---- state changes, called by subclasses
    def _notify(self, what: str, data: Any = None) -> None:
        for cb in list(self.listeners):
            cb(self, what, data)

    def _set_ringing(self) -> None:
        if self.state in (ChannelState.DOWN, ChannelState.RING):
            self.state = ChannelState.RINGING
            bus = self.manager.bus
            if bus.wants(ev.CHANNEL_RINGING):
                bus.publish(ev.CHANNEL_RINGING, **self._ev())
        self._notify("ringing")

    def _set_early(self) -> None:
        if self.state not in (ChannelState.UP, ChannelState.HANGUP):
            self.state = ChannelState.EARLY
        self._notify("progress")

    def _set_up(self) -> None:
        if self.state in (ChannelState.UP, ChannelState.HANGUP):
            return
        self.state = ChannelState.UP
        self.answered_at = time.time()
        if not self.answered.done():
            self.answered.set_result(None)
        bus = self.manager.bus
        if bus.wants(ev.CHANNEL_ANSWER):
            bus.publish(ev.CHANNEL_ANSWER, **self._ev())
        self._notify("answered")

    def _set_gone(self, cause: str) -> None:
        if self.state == ChannelState.HANGUP:
            return
        self.state = ChannelState.HANGUP
        self.hangup_cause = cause
        self.ended_at = time.time()
        bridge = self.bridge
        if bridge is not None:
            other = bridge.other(self)
            bridge.destroy()
            keep = bridge.on_leave is not None and other is not None and \
                bridge.on_leave(self, other)
            if other is not None and not other.is_gone and not keep:
                other.hangup(cause)
        if self.media is not None:
            self.media.close()
        self.manager.remove(self)
        bus = self.manager.bus
        if bus.wants(ev.CHANNEL_HANGUP):
            bus.publish(
                ev.CHANNEL_HANGUP, cause=cause, answered=self.answered_at is not None,
                **self._ev(),
            )
        if not self.hungup.done():
            self.hungup.set_result(cause)
        if not self.answered.done():
            self.answered.cancel()
        self._notify("hangup", cause)
        # the last notification: listeners (closures over this channel) would otherwise
        # keep it in a reference cycle for the cyclic GC to find
        self.listeners = []

    def _on_dtmf(self, digit: str, source: str) -> None:
        self.manager.bus.publish(ev.DTMF, digit=digit, source=source, **self._ev())
        self.dtmf_queue.put_nowait(digit)
        self.dtmf_event.set()
        self._notify("dtmf", digit)

    # ---- media operations for applications (IVR, queues...)
    def flush_dtmf(self) -> None:
        while not self.dtmf_queue.empty():
            self.dtmf_queue.get_nowait()
        self.dtmf_event.clear()

    def _take_digit(self) -> str | None:
        if self.dtmf_queue.empty():
            self.dtmf_event.clear()
            return None
        d = self.dtmf_queue.get_nowait()
        if self.dtmf_queue.empty():
            self.dtmf_event.clear()
        return d

    def _check_alive(self) -> None:
        if self.is_gone:
            raise ChannelGone(self.hangup_cause or "")

    async def play(
        self,
        pcm: bytes | list[bytes],
        *,
        barge_in: bool = True,
        stop: asyncio.Event | None = None,
        loop: bool = False,
    ) -> str | None:
        """Play audio to the channel, paced by the media clock.

        Returns "dtmf" when a key press interrupted it (the digit stays queued for
        the next collect), "stop" when `stop` was set (e.g. speech barge-in), None
        when it played to the end.  Raises ChannelGone if the channel hangs up.
        """
        self._check_alive()
        if barge_in and self.dtmf_event.is_set():
            return "dtmf"
        ep = self.media
        if ep is None:
            return None
        loop_ = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop_.create_future()

        def done() -> None:
            if not finished.done():
                finished.set_result(None)

        ep.set_source(media.PcmSource(pcm, loop=loop), on_done=done)
        waits: list[asyncio.Future[Any]] = [finished, self.hungup]
        extra: list[asyncio.Future[Any]] = []
        if barge_in:
            extra.append(asyncio.ensure_future(self.dtmf_event.wait()))
        if stop is not None:
            extra.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits + extra, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in extra:
                t.cancel()
            if not finished.done() and ep.source is not None:
                ep.set_source(None)
        self._check_alive()
        if finished.done():
            return None
        if barge_in and self.dtmf_event.is_set():
            return "dtmf"
        return "stop"

    def stop_playback(self) -> None:
        if self.media is not None and self.media.source is not None:
            cb = self.media.on_source_done
            self.media.set_source(None)
            if cb is not None:
                cb()

    async def get_digits(
        self,
        max_digits: int,
        *,
        terminators: str = "#",
        first_timeout: float = 5.0,
        inter_timeout: float = 3.0,
    ) -> tuple[str, str]:
        """Collect digits; returns (digits, why) with why in max, terminator, timeout."""
        digits = ""
        timeout = first_timeout
        while True:
            self._check_alive()
            d = self._take_digit()
            if d is None:
                waiter: asyncio.Future[Any] = asyncio.ensure_future(self.dtmf_event.wait())
                try:
                    done, _ = await asyncio.wait([waiter, self.hungup], timeout=timeout,
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                self._check_alive()
                if not done:
                    return digits, "timeout"
                continue
            if d in terminators and terminators:
                return digits, "terminator"
            digits += d
            if len(digits) >= max_digits:
                return digits, "max"
            timeout = inter_timeout

    async def wait_for_hangup(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self.hungup), timeout)
            return True
        except TimeoutError:
            return False

    def _ev(self) -> dict[str, Any]:
        return {
            "channel": self.id, "name": self.name, "linkedid": self.linkedid,
            "caller": self.caller, "caller_name": self.caller_name, "callee": self.dest,
            "direction": self.direction, "state": str(self.state),
        }

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.state}>"


class ChannelGone(Exception):
    """The channel hung up while an application was using it."""


class Bridge:
    """Two channels whose media are relayed to each other.

    When one party puts the call on hold (re-INVITE sendonly/inactive), the other
    hears music on hold until it is resumed.
    """

    def __init__(self, manager: ChannelManager, a: Channel, b: Channel) -> None:
        self.id = uuid.uuid4().hex
        self.manager = manager
        self.channels = [a, b]
        self.created = time.time()
        # called when a party hangs up; returning True keeps the other party's call
        # alive (e.g. an attended transfer completed by hanging up)
        self.on_leave: Callable[[Channel, Channel], bool] | None = None
        for ch in (a, b):
            if ch.bridge is not None:
                ch.bridge.destroy()
            ch.bridge = self
            ch.listeners.append(self._on_channel)
        if a.media is not None and b.media is not None:
            media.connect(a.media, b.media)
            for ch in (a, b):
                # whatever an application was playing stops: the parties hear each other
                if ch.media is not None and ch.media.source is not None:
                    ch.media.set_source(None)
        if manager.bus.wants(ev.CHANNEL_BRIDGE):
            manager.bus.publish(
                ev.CHANNEL_BRIDGE, bridge=self.id, channel=a.id, name=a.name,
                linkedid=a.linkedid, other=b.id, other_name=b.name,
            )

    def other(self, ch: Channel) -> Channel | None:
        for c in self.channels:
            if c is not ch:
                return c
        return None

    def _on_channel(self, ch: Channel, what: str, data: Any) -> None:
        if what not in ("hold", "unhold"):
            return
        other = self.other(ch)
        if other is None or other.media is None:
            return
        moh = self.manager.moh
        if what == "hold" and moh is not None:
            other.media.set_source(moh.get(other.vars.get("moh_class")).listener())
        elif what == "unhold" and other.media.source is not None:
            other.media.set_source(None)

    def destroy(self) -> None:
        a, b = self.channels
        if a.media is not None:
            media.disconnect(a.media)
        for ch in (a, b):
            if self._on_channel in ch.listeners:
                ch.listeners.remove(self._on_channel)
            if ch.bridge is self:
                ch.bridge = None
                if ch.media is not None and isinstance(ch.media.source, MohListener):
                    ch.media.set_source(None)
        if self.manager.bus.wants(ev.CHANNEL_UNBRIDGE):
            self.manager.bus.publish(ev.CHANNEL_UNBRIDGE, bridge=self.id, channel=a.id,
                                     other=b.id)


class ChannelManager:
    """The registry of live channels (what `ccswitch channels` lists)."""

    def __init__(self, bus: EventBus, engine: MediaEngine) -> None:
        self.bus = bus
        self.engine = engine
        self.channels: dict[str, Channel] = {}
        self._seq = itertools.count(1)
        self.moh: MusicOnHold | None = None

    def next_seq(self) -> int:
        return next(self._seq)

    def add(self, ch: Channel) -> None:
        self.channels[ch.id] = ch
        if self.bus.wants(ev.CHANNEL_CREATE):
            self.bus.publish(ev.CHANNEL_CREATE, **ch._ev())

    def remove(self, ch: Channel) -> None:
        self.channels.pop(ch.id, None)

    def find(self, key: str) -> Channel | None:
        """By id, id prefix, or name (case-insensitive)."""
        ch = self.channels.get(key)
        if ch is not None:
            return ch
        low = key.lower()
        matches = [c for c in self.channels.values()
                   if c.name.lower() == low or c.id.startswith(low)]
        return matches[0] if len(matches) == 1 else None

    def list(self) -> list[Channel]:
        return sorted(self.channels.values(), key=lambda c: c.created_mono)
