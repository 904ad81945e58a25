"""Transfer, three-way and parking logic on channels without SIP or sockets.

Channels here are the real Channel/Bridge model with a stub signalling layer (hangup
ends the channel at once, answer sets it up) and no media, so the application logic
of ccswitch.apps.transfer / apps.conference / call.conference is exercised alone:
REFER with Replaces, blind transfer outcomes, the *2 consultation state machine, the
end of an ad-hoc three-way call, and park time-outs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ccswitch.apps.conference import ParkingLot
from ccswitch.apps.transfer import FeatureWatcher, Transfers
from ccswitch.call.channel import Bridge, Channel, ChannelGone, ChannelManager
from ccswitch.call.conference import Room
from ccswitch.call.events import EventBus
from ccswitch.config import ParkingConfig
from ccswitch.sip.refer import ReferTarget, Replaces, parse_refer_to


class StubChannel(Channel):
    tech = "TEST"

    def __init__(self, manager: ChannelManager, ext: str) -> None:
        super().__init__(manager, endpoint_name=ext, direction="inbound", caller=ext,
                         caller_name="", dest="")
        manager.add(self)
        self._set_up()
        self.answer_gate: asyncio.Future[None] | None = None

    async def answer(self) -> None:
        if self.answer_gate is not None:
            await self.answer_gate
        if self.is_gone:
            raise ChannelGone(self.hangup_cause or "")
        self._set_up()

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self._set_gone(cause)


class FakeUA:
    """What Transfers needs from SipUA: the channel manager, dialogs by Replaces, spawn."""

    def __init__(self, manager: ChannelManager) -> None:
        self.manager = manager
        self.dialogs: dict[tuple[str, str, str], Channel] = {}
        self.tasks: list[asyncio.Task[Any]] = []

    def find_replaced(self, rep: Replaces) -> Channel | None:
        return self.dialogs.get((rep.call_id, rep.to_tag, rep.from_tag))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.ensure_future(coro)
        self.tasks.append(t)
        return t


class World:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.events: list[dict[str, Any]] = []
        self.bus.subscribe(self.events.append)
        self.manager = ChannelManager(self.bus, engine=None)  # type: ignore[arg-type]
        self.ua = FakeUA(self.manager)
        self.dialled: list[tuple[str, str]] = []
        self.targets: dict[str, Callable[[Channel, Callable[[], None] | None], Any]] = {}
        self.transfers = Transfers(self.ua, self.connect, self.bus.publish)  # type: ignore[arg-type]
        self.hook: list[tuple[str, str, str, str, bool]] = []
        self.transfers.on_transfer = lambda kind, by, who, to, ok, _t: self.hook.append(
            (kind, by.endpoint_name, who.endpoint_name, to, ok))

    def chan(self, ext: str) -> StubChannel:
        return StubChannel(self.manager, ext)

    def pair(self, a: str, b: str) -> tuple[StubChannel, StubChannel]:
        x, y = self.chan(a), self.chan(b)
        Bridge(self.manager, x, y)
        return x, y

    async def connect(self, chan: Channel, number: str,
                      on_answer: Callable[[], None] | None = None) -> tuple[str, int]:
        """The dialplan: registered targets answer (bridged, on_answer) and the call
        lasts until `chan` hangs up; anything else is unavailable (480)."""
        self.dialled.append((chan.endpoint_name, number))
        answer = self.targets.get(number)
        if answer is None:
            return "CHANUNAVAIL", 480
        return await answer(chan, on_answer)

    def answering(self, ext: str, ring: asyncio.Event | None = None
                  ) -> Callable[[Channel, Callable[[], None] | None], Any]:
        async def answer(chan: Channel, on_answer: Callable[[], None] | None
                         ) -> tuple[str, int]:
            if ring is not None:  # ringing until the test answers (or the caller leaves)
                rung = asyncio.ensure_future(ring.wait())
                await asyncio.wait([rung, chan.hungup], return_when=asyncio.FIRST_COMPLETED)
                rung.cancel()
                if chan.is_gone:
                    return "CANCEL", 487
            leg = self.chan(ext)
            self.answered[ext] = leg
            Bridge(self.manager, chan, leg)
            if on_answer is not None:
                on_answer()
            await asyncio.shield(chan.hungup)
            return "ANSWER", 200
        self.answered: dict[str, StubChannel] = getattr(self, "answered", {})
        return answer

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e["event"] == event)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def partner(ch: Channel) -> str | None:
    other = ch.bridged_with()
    return other.endpoint_name if other is not None else None


# ------------------------------------------------------------------ REFER + Replaces
def _replaces_target(call_id: str, to_tag: str, from_tag: str) -> ReferTarget:
    esc = f"{call_id}%3Bto-tag%3D{to_tag}%3Bfrom-tag%3D{from_tag}".replace("@", "%40")
    return parse_refer_to(f"<sip:1003@pbx.example?Replaces={esc}>")


async def test_attended_refer_notifies_200_before_ending_the_transferor_legs() -> None:
    w = World()
    b1, a = w.pair("1002", "1001")
    b2, c = w.pair("1002", "1003")
    w.ua.dialogs[("call2@host", "ourtag", "btag")] = b2
    reports: list[tuple[int, bool]] = []
    await w.transfers.on_refer(b1, _replaces_target("call2@host", "ourtag", "btag"),  # type: ignore[arg-type]
                               lambda code, _r: reports.append((code, b1.is_gone)))
    # the final NOTIFY must leave while call 1's dialog still exists
    assert reports == [(200, False)]
    assert partner(a) == "1003" and partner(c) == "1001"
    assert b1.hangup_cause == b2.hangup_cause == "ATTENDED_TRANSFER"
    assert not a.is_gone and not c.is_gone
    assert w.hook == [("attended", "1002", "1001", "1003", True)]


async def test_attended_refer_naming_an_unknown_dialog_is_481() -> None:
    w = World()
    b1, a = w.pair("1002", "1001")
    reports: list[int] = []
    await w.transfers.on_refer(b1, _replaces_target("nope@host", "x", "y"),  # type: ignore[arg-type]
                               lambda code, _r: reports.append(code))
    assert reports == [481]
    assert partner(a) == "1002" and not b1.is_gone and w.hook == []


# ------------------------------------------------------------------ blind transfer
async def test_blind_transfer_success_reports_200_and_releases_the_transferor() -> None:
    w = World()
    a, b = w.pair("1001", "1002")
    w.targets["1003"] = w.answering("1003")
    reports: list[int] = []
    task = asyncio.ensure_future(w.transfers.blind(b, "1003", lambda c, _r: reports.append(c)))
    await settle()
    assert reports == [200] and b.hangup_cause == "BLIND_TRANSFER"
    assert partner(a) == "1003" and w.hook == [("blind", "1002", "1001", "1003", True)]
    a.hangup()
    assert await task is True


async def test_blind_transfer_failure_reports_the_status_and_returns_the_call() -> None:
    w = World()
    a, b = w.pair("1001", "1002")
    reports: list[int] = []
    assert await w.transfers.blind(b, "1009", lambda c, _r: reports.append(c)) is False
    assert reports == [480]
    assert partner(a) == "1002" and not a.is_gone and not b.is_gone
    assert w.hook == [("blind", "1002", "1001", "1009", False)]


async def test_blind_transfer_failure_with_the_transferor_gone_ends_the_call() -> None:
    w = World()
    a, b = w.pair("1001", "1002")
    ring = asyncio.Event()

    async def fails(chan: Channel, on_answer: Callable[[], None] | None) -> tuple[str, int]:
        await ring.wait()
        return "BUSY", 486
    w.targets["1003"] = fails
    task = asyncio.ensure_future(w.transfers.blind(b, "1003", None))
    await settle()
    b.hangup()  # phones often hang up right after the 202
    assert not a.is_gone  # the transfer goes on without the transferor
    ring.set()
    assert await task is False
    assert a.is_gone


# ------------------------------------------------------------------ *2 consultation
async def _consulting(w: World, ring: asyncio.Event | None = None
                      ) -> tuple[StubChannel, StubChannel]:
    a, b = w.pair("1001", "1002")
    w.targets["1003"] = w.answering("1003", ring)
    FeatureWatcher(w.transfers, b, "##", "*2", {})
    for d in "*2":
        b._on_dtmf(d, "test")
    await settle()
    for d in "1003#":
        b._on_dtmf(d, "test")
    await settle()
    return a, b


async def test_attended_code_completed_when_the_transferor_hangs_up() -> None:
    w = World()
    a, b = await _consulting(w)
    c = w.answered["1003"]
    assert partner(b) == "1003" and partner(a) is None
    b.hangup()
    await settle()
    assert partner(a) == "1003" and not c.is_gone
    assert w.count("TRANSFER") == 1  # joined once, not torn down and rebuilt
    assert w.hook == [("attended", "1002", "1001", "1003", True)]


async def test_attended_code_completed_by_star2() -> None:
    w = World()
    a, b = await _consulting(w)
    for d in "*2":
        b._on_dtmf(d, "test")
    await settle()
    assert partner(a) == "1003" and b.hangup_cause == "ATTENDED_TRANSFER"


async def test_attended_code_cancelled_by_star1() -> None:
    w = World()
    a, b = await _consulting(w)
    c = w.answered["1003"]
    for d in "*1":
        b._on_dtmf(d, "test")
    await settle()
    assert c.is_gone and partner(a) == "1002" and not b.is_gone
    assert w.hook == []


async def test_attended_code_target_hanging_up_returns_to_the_transferee() -> None:
    w = World()
    a, b = await _consulting(w)
    w.answered["1003"].hangup()
    await settle()
    assert partner(a) == "1002" and not a.is_gone and not b.is_gone
    assert w.count("TRANSFER") == 0


async def test_attended_code_transferee_hanging_up_leaves_the_consultation() -> None:
    w = World()
    a, b = await _consulting(w)
    a.hangup()
    await settle()
    assert partner(b) == "1003" and not b.is_gone


async def test_attended_code_cancel_while_the_target_rings_stops_the_ringing() -> None:
    w = World()
    ring = asyncio.Event()
    a, b = await _consulting(w, ring)
    for d in "*1":
        b._on_dtmf(d, "test")
    await settle()
    assert partner(a) == "1002"
    ring.set()  # a late answer must not steal the transferor back
    await settle()
    assert partner(a) == "1002" and "1003" not in w.answered


async def test_attended_code_transferor_gone_while_ringing_hands_over_the_call() -> None:
    w = World()
    ring = asyncio.Event()
    a, b = await _consulting(w, ring)
    b.hangup()
    await settle()
    assert not a.is_gone
    assert ("1001", "1003") in w.dialled  # the transferee now calls the target
    ring.set()
    await settle()
    assert partner(a) == "1003"


# ------------------------------------------------------------------ three-way, parking
class FakeEngine:
    def __init__(self) -> None:
        self.tick_hooks: list[Any] = []


@pytest.mark.parametrize("ad_hoc", [True, False])
async def test_room_with_one_member_left(ad_hoc: bool) -> None:
    w = World()
    room = Room("r", "r1", FakeEngine(), w.bus, None, ad_hoc=ad_hoc)  # type: ignore[arg-type]
    a, b, c = w.chan("1001"), w.chan("1002"), w.chan("1003")
    for ch in (a, b, c):
        room.add(ch)
    b.hangup()
    assert set(room.members) == {a.id, c.id}
    a.hangup()
    # a three-way call ends with its last partner; a configured room keeps its member
    assert c.is_gone is ad_hoc


async def test_park_timeout_without_answer_ends_the_parked_call() -> None:
    w = World()
    calls: list[tuple[str, str]] = []

    async def ring_parker(ch: Channel, parker: str) -> tuple[str, int]:
        calls.append((ch.endpoint_name, parker))
        return "NOANSWER", 480

    lot = ParkingLot(ParkingConfig(timeout=0.05), w.bus.publish, ring_parker)
    a, b = w.pair("1001", "1002")
    assert lot.park(a, "1002") == "701"
    assert partner(b) is None and lot.slots
    await asyncio.sleep(0.2)
    assert calls == [("1001", "1002")] and a.is_gone and not lot.slots


async def test_retriever_hanging_up_while_answering_keeps_the_call_parked() -> None:
    w = World()

    async def never(ch: Channel, parker: str) -> tuple[str, int]:
        return "NOANSWER", 480

    lot = ParkingLot(ParkingConfig(timeout=60), w.bus.publish, never)
    a = w.chan("1001")
    lot.park(a, "1002", "705")
    d = w.chan("1004")
    d.answer_gate = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(lot.retrieve(d, "705"))
    await settle()
    d.hangup()
    d.answer_gate.set_result(None)
    with pytest.raises(ChannelGone):
        await task
    assert "705" in lot.slots and not a.is_gone
    e = w.chan("1003")
    task2 = asyncio.ensure_future(lot.retrieve(e, "705"))
    await settle()
    assert partner(a) == "1003" and not lot.slots
    e.hangup()
    assert await task2 is True
    for p in lot.slots.values():
        if p.task is not None:
            p.task.cancel()


# ------------------------------------------------------------------ INVITE with Replaces
async def test_replaces_puts_the_new_leg_in_the_old_legs_place() -> None:
    w = World()
    old, b = w.pair("1001", "1002")
    new = w.chan("1001")
    assert await w.transfers.replace(new, old)  # type: ignore[arg-type]
    assert partner(b) == "1001" and b.bridged_with() is new
    assert old.is_gone and old.hangup_cause == "ATTENDED_TRANSFER"
    assert not b.is_gone
    assert w.hook == [("replaces", "1001", "1002", "1001", True)]


async def test_replaces_of_an_unbridged_leg_or_a_call_that_ends_meanwhile_changes_nothing(
        ) -> None:
    w = World()
    lone = w.chan("1001")
    new = w.chan("1001")
    assert not await w.transfers.replace(new, lone)  # type: ignore[arg-type]
    assert not lone.is_gone and w.hook == []
    # the far party hangs up while the new leg is being answered
    old, b = w.pair("1001", "1002")
    slow = w.chan("1001")
    slow.answer_gate = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(w.transfers.replace(slow, old))  # type: ignore[arg-type]
    await settle()
    b.hangup()
    slow.answer_gate.set_result(None)
    assert not await task
    assert slow.bridge is None and w.hook == []
