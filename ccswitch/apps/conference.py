"""The Conference application, call parking and directed pickup."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccswitch.call.channel import Bridge, Channel
from ccswitch.call.conference import Conferences
from ccswitch.config import ConferenceConfig, ParkingConfig

if TYPE_CHECKING:
    from ccswitch.call.sipua import SipChannel

log = logging.getLogger("ccswitch.conference")

Speak = Callable[[Channel, str], Awaitable[None]]

PARK_EVENT = "CALL_PARKED"
UNPARK_EVENT = "CALL_UNPARKED"


async def run_conference(confs: Conferences, chan: Channel, cfg: ConferenceConfig,
                         speak: Speak) -> None:
    """Answer, check the PIN, join the room and stay until hung up or kicked."""
    await chan.answer()
    moderator = False
    if cfg.pin or cfg.moderator_pin:
        for _ in range(3):
            await speak(chan, "Please enter the conference PIN, followed by the pound key.")
            pin, _why = await chan.get_digits(16, terminators="#", first_timeout=10.0,
                                              inter_timeout=5.0)
            if cfg.moderator_pin and pin == cfg.moderator_pin:
                moderator = True
                break
            if cfg.pin and pin == cfg.pin:
                break
            if not cfg.pin and not cfg.moderator_pin:
                break
            await speak(chan, "That PIN is not valid.")
        else:
            chan.hangup("CALL_REJECTED")
            return
    room = confs.get_or_create(cfg.number, cfg.name, cfg.max_members)
    if room.full:
        await speak(chan, "The conference is full.")
        chan.hangup("USER_BUSY")
        return
    room.add(chan, moderator=moderator)
    await asyncio.shield(chan.hungup)


@dataclass
class Parked:
    slot: str
    chan: Channel
    parker: str  # extension to call back on timeout
    since: float = field(default_factory=time.time)
    task: asyncio.Task[Any] | None = None


class ParkingLot:
    """Park slots: a parked call hears music on hold until someone dials its slot;
    after the timeout it rings the extension that parked it."""

    def __init__(self, cfg: ParkingConfig, publish: Callable[..., None],
                 callback: Callable[[Channel, str], Awaitable[tuple[str, int]]]) -> None:
        self.cfg = cfg
        self.publish = publish
        self.callback = callback  # connect(parked channel, parker extension)
        self.slots: dict[str, Parked] = {}
        self.on_bridged: Callable[[Channel, Channel], None] | None = None

    def is_slot(self, number: str) -> bool:
        return number in self.cfg.slot_numbers()

    def free_slot(self) -> str | None:
        return next((s for s in self.cfg.slot_numbers() if s not in self.slots), None)

    def park(self, chan: Channel, parker: str, slot: str | None = None) -> str | None:
        slot = slot or self.free_slot()
        if slot is None or slot in self.slots:
            return None
        if chan.bridge is not None:
            chan.bridge.destroy()
        moh = chan.manager.moh
        if chan.media is not None and moh is not None:
            chan.media.set_source(moh.get(self.cfg.moh).listener())
        p = Parked(slot, chan, parker)
        self.slots[slot] = p
        chan.app, chan.app_data = "Parked", slot
        p.task = asyncio.ensure_future(self._timeout(p))
        self.publish(PARK_EVENT, slot=slot, channel=chan.id, name=chan.name, parker=parker,
                     linkedid=chan.linkedid)
        return slot

    async def _timeout(self, p: Parked) -> None:
        try:
            done, _ = await asyncio.wait([p.chan.hungup], timeout=self.cfg.timeout)
            if done or self.slots.get(p.slot) is not p:
                return
            # nobody came: ring the parker back
            del self.slots[p.slot]
            self.publish(UNPARK_EVENT, slot=p.slot, channel=p.chan.id, reason="timeout",
                         linkedid=p.chan.linkedid)
            if p.chan.media is not None:
                p.chan.media.set_source(None)
            status, _code = await self.callback(p.chan, p.parker)
            if not p.chan.is_gone and status not in ("ANSWER", "DONE"):
                # the parker did not take it back: end the call rather than leave the
                # caller in silence with nobody (as Asterisk after comebacktoorigin)
                p.chan.hangup("NO_ANSWER")
        finally:
            if self.slots.get(p.slot) is p and p.chan.is_gone:
                del self.slots[p.slot]

    async def retrieve(self, chan: Channel, slot: str) -> bool:
        """Someone dialled a slot: bridge them with the parked call."""
        p = self.slots.get(slot)
        if p is None or p.chan.is_gone:
            return False
        # answer first: a retriever hanging up meanwhile must not lose the parked call
        await chan.answer()
        if self.slots.get(slot) is not p or p.chan.is_gone:
            return False  # another phone took it (or it hung up) while we answered
        del self.slots[slot]
        if p.task is not None:
            p.task.cancel()
        if p.chan.media is not None:
            p.chan.media.set_source(None)
        p.chan.app, p.chan.app_data = "Bridged", chan.name
        Bridge(chan.manager, chan, p.chan)
        if self.on_bridged is not None:
            self.on_bridged(chan, p.chan)  # feature codes (transfer, park again...)
        self.publish(UNPARK_EVENT, slot=slot, channel=p.chan.id, reason="retrieved",
                     by=chan.name, linkedid=p.chan.linkedid)
        await asyncio.shield(chan.hungup)
        return True

    def info(self) -> list[dict[str, Any]]:
        return [{"slot": s, "channel": p.chan.name, "caller": p.chan.caller,
                 "parker": p.parker, "since": p.since} for s, p in sorted(self.slots.items())]


def find_ringing(channels: list[Channel], extension: str) -> SipChannel | None:
    """The caller's channel of a call now ringing `extension` (for directed pickup).

    Only a call that Dial rings can be taken over (Dial handles the "pickup"
    notification); a queue ringing an agent cannot, and is not offered: the picker
    would otherwise be answered into silence."""
    from ccswitch.apps.dial import PICKUP_VAR
    from ccswitch.call.sipua import SipChannel

    for ch in channels:
        if (isinstance(ch, SipChannel) and ch.direction == "outbound"
                and ch.endpoint_name == extension and not ch.is_up and not ch.is_gone):
            for other in channels:
                if (other.id == ch.linkedid and isinstance(other, SipChannel)
                        and other.vars.get(PICKUP_VAR)):
                    return other
    return None
