"""Conference rooms: a mixing bridge of any number of channels.

Each member's received audio goes into the room's Mixer (a tap on its media
endpoint); once per 20 ms media tick the room mixes and sends every member
what the others said ("minus one").  The room is recorded as one mixed file;
each member's own call recording also gets what that member heard.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccswitch.call.channel import Channel, ChannelManager
from ccswitch.call.events import EventBus
from ccswitch.media.engine import MediaEngine
from ccswitch.media.mixer import Mixer, tone_join, tone_leave
from ccswitch.media.wav import CrashSafeWav

log = logging.getLogger("ccswitch.conference")

CONF_JOIN = "CONFERENCE_JOIN"
CONF_LEAVE = "CONFERENCE_LEAVE"
CONF_MUTE = "CONFERENCE_MUTE"
CONF_TALK = "CONFERENCE_TALKING"


class Member:
    def __init__(self, chan: Channel, moderator: bool) -> None:
        self.chan = chan
        self.moderator = moderator
        self.joined = time.time()
        self.tap: Callable[[bytes], None] | None = None
        self.inject: bytes = b""  # audio only this member hears (whisper)


class Room:
    def __init__(self, name: str, number: str, engine: MediaEngine, bus: EventBus,
                 record_path: Path | None, max_members: int = 0, ad_hoc: bool = False) -> None:
        self.id = uuid.uuid4().hex
        self.name = name
        self.number = number
        self.engine = engine
        self.bus = bus
        self.max_members = max_members
        self.ad_hoc = ad_hoc
        self.created = time.time()
        self.mixer: Mixer[str] = Mixer()
        self.members: dict[str, Member] = {}
        self.recording: CrashSafeWav | None = None
        self.record_path = record_path
        self.on_empty: Callable[[Room], None] | None = None
        self._frames = 0

    @property
    def full(self) -> bool:
        return bool(self.max_members) and len(self.members) >= self.max_members

    def add(self, chan: Channel, moderator: bool = False, muted: bool = False,
            tone: bool = True) -> Member:
        if chan.id in self.members:
            return self.members[chan.id]
        if chan.bridge is not None:
            chan.bridge.destroy()
        ep = chan.media
        m = Member(chan, moderator)
        self.mixer.add(chan.id)
        if muted:
            self.mixer.set_muted(chan.id, True)
        if ep is not None:
            ep.peer = None
            ep.set_source(None)
            mixer = self.mixer
            cid = chan.id

            def tap(pcm: bytes) -> None:
                mixer.put(cid, pcm)

            m.tap = tap
            ep.taps.append(tap)
        if not self.members:
            self.engine.tick_hooks.append(self._tick)
            if self.record_path is not None and self.recording is None:
                try:
                    self.record_path.parent.mkdir(parents=True, exist_ok=True)
                    self.recording = CrashSafeWav(self.record_path, 1, writer=self.engine.disk)
                except OSError as e:
                    log.error("conference %s: cannot record: %s", self.name, e)
        self.members[chan.id] = m
        chan.app, chan.app_data = "Conference", self.number
        chan.vars["conference"] = self.number
        chan.listeners.append(self._on_channel)
        if tone:
            self.mixer.play(tone_join())
        self.bus.publish(CONF_JOIN, conference=self.number, channel=chan.id, name=chan.name,
                         linkedid=chan.linkedid, members=len(self.members))
        return m

    def remove(self, chan: Channel, tone: bool = True) -> None:
        m = self.members.pop(chan.id, None)
        if m is None:
            return
        self.mixer.remove(chan.id)
        if self._on_channel in chan.listeners:
            chan.listeners.remove(self._on_channel)
        if chan.media is not None and m.tap is not None and m.tap in chan.media.taps:
            chan.media.taps.remove(m.tap)
        chan.vars.pop("conference", None)
        if tone and self.members:
            self.mixer.play(tone_leave())
        self.bus.publish(CONF_LEAVE, conference=self.number, channel=chan.id, name=chan.name,
                         linkedid=chan.linkedid, members=len(self.members))
        if not self.members:
            self.close()
        elif self.ad_hoc and len(self.members) == 1:
            # a three-way call whose last partner left: nobody to talk to, end it
            # (its hangup notification removes it and closes the room)
            last = next(iter(self.members.values())).chan
            if not last.is_gone:
                last.hangup("NORMAL_CLEARING")

    def close(self) -> None:
        if self._tick in self.engine.tick_hooks:
            self.engine.tick_hooks.remove(self._tick)
        if self.recording is not None:
            self.recording.close()
            self.recording = None
        if self.on_empty is not None:
            self.on_empty(self)

    def _on_channel(self, ch: Channel, what: str, data: Any) -> None:
        if what == "hangup":
            self.remove(ch)

    def mute(self, chan_id: str, muted: bool = True) -> bool:
        m = self.members.get(chan_id)
        if m is None:
            return False
        self.mixer.set_muted(chan_id, muted)
        self.bus.publish(CONF_MUTE, conference=self.number, channel=chan_id, muted=muted)
        return True

    def kick(self, chan_id: str) -> bool:
        m = self.members.get(chan_id)
        if m is None:
            return False
        self.remove(m.chan)
        m.chan.hangup("NORMAL_CLEARING")
        return True

    def _tick(self, now: float) -> None:
        outs = self.mixer.mix()
        for cid, pcm in outs.items():
            m = self.members.get(cid)
            if m is None or m.chan.media is None:
                continue
            m.chan.media.send_pcm(pcm, now)
        if self.recording is not None:
            self.recording.append(self.mixer.mix_all())
            self._frames += 1
            if self._frames % 50 == 0:
                self.recording.flush()
        for cid, talking in self.mixer.pop_events():
            self.bus.publish(CONF_TALK, conference=self.number, channel=cid, talking=talking)

    def info(self) -> dict[str, Any]:
        talking = set(self.mixer.talking)
        return {
            "number": self.number,
            "name": self.name,
            "created": self.created,
            "members": [
                {"channel": m.chan.id, "name": m.chan.name, "caller": m.chan.caller,
                 "joined": m.joined, "muted": self.mixer.is_muted(cid),
                 "moderator": m.moderator, "talking": cid in talking}
                for cid, m in self.members.items()
            ],
            "recording": str(self.record_path) if self.record_path else None,
        }


class Conferences:
    """Every live room, by number."""

    def __init__(self, manager: ChannelManager, recordings_dir: Path | None) -> None:
        self.manager = manager
        self.recordings_dir = recordings_dir
        self.rooms: dict[str, Room] = {}

    def get_or_create(self, number: str, name: str | None = None, max_members: int = 0,
                      ad_hoc: bool = False) -> Room:
        room = self.rooms.get(number)
        if room is None:
            path = None
            if self.recordings_dir is not None:
                day = time.strftime("%Y/%m/%d")
                path = self.recordings_dir / day / f"conf-{number}-{uuid.uuid4().hex[:12]}.wav"
            room = Room(name or number, number, self.manager.engine, self.manager.bus, path,
                        max_members, ad_hoc)
            room.on_empty = self._forget
            self.rooms[number] = room
        return room

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.number) is room:
            del self.rooms[room.number]

    def find_member(self, chan_id: str) -> Room | None:
        for r in self.rooms.values():
            if chan_id in r.members:
                return r
        return None
