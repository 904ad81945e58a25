"""Call transfers: blind (REFER, or ## + number) and attended (REFER with Replaces, or *2).

A transfer takes one party out of its bridge before anyone hangs up, so the
bridge's hang-up propagation does not end the transferee's call; the
transferee is then connected to the target through the same dialplan as any
call (extension, flow, queue, conference, outside number).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ccswitch.call.channel import Bridge, Channel
from ccswitch.media.engine import PcmSource
from ccswitch.media.tones import sine

if TYPE_CHECKING:
    from ccswitch.call.sipua import SipChannel, SipUA
    from ccswitch.sip.refer import ReferTarget

log = logging.getLogger("ccswitch.transfer")

Report = Callable[[int, "str | None"], None]
# connect(channel, number, on_answer) -> (status, sip code): runs the dialplan for a channel
Connect = Callable[[Channel, str, Callable[[], None] | None], Awaitable[tuple[str, int]]]

TRANSFER_EVENT = "TRANSFER"
CONFIRM = sine(880, 150, dbfs=-14)


# on_transfer(kind, transferor, transferee, target, ok, started): a transfer ended (ok: the
# transferee reached the target); started is the loop time the transferor let go of the
# call (blind: the request; attended: the completion), for talk-time attribution
OnTransfer = Callable[[str, Channel, Channel, str, bool, float], None]


class Transfers:
    def __init__(self, ua: SipUA, connect: Connect, publish: Callable[..., None]) -> None:
        self.ua = ua
        self.connect = connect
        self.publish = publish
        self.on_transfer: OnTransfer | None = None

    def _report(self, kind: str, transferor: Channel, transferee: Channel, target: str,
                ok: bool, started: float) -> None:
        if self.on_transfer is not None:
            try:
                self.on_transfer(kind, transferor, transferee, target, ok, started)
            except Exception:  # bookkeeping must never break the call
                log.exception("transfer hook failed")

    # ------------------------------------------------------------ REFER
    async def on_refer(self, transferor: SipChannel, target: ReferTarget, report: Report) -> None:
        if target.replaces is not None:
            await self.attended(transferor, target, report)
        else:
            await self.blind(transferor, target.user, report)

    async def blind(self, transferor: Channel, number: str, report: Report | None) -> bool:
        transferee = transferor.bridged_with()
        if transferee is None or not number:
            if report:
                report(603, "Decline (nothing to transfer)")
            return False
        bridge = transferor.bridge
        assert bridge is not None
        bridge.destroy()  # take the transferee out: the transferor leaving no longer ends it
        transferee.vars["transferred_by"] = transferor.endpoint_name
        self.publish(TRANSFER_EVENT, kind="blind", channel=transferor.id,
                     transferee=transferee.id, target=number, linkedid=transferee.linkedid)
        log.info("%s transfers %s to %s", transferor.name, transferee.name, number)
        answered = False
        started = asyncio.get_running_loop().time()

        def on_answer() -> None:
            nonlocal answered
            answered = True
            self._report("blind", transferor, transferee, number, True, started)
            if report:
                report(200, "OK")
            if not transferor.is_gone:
                transferor.hangup("BLIND_TRANSFER")

        _status, code = await self.connect(transferee, number, on_answer)
        if answered or transferee.is_gone:
            return answered
        self._report("blind", transferor, transferee, number, False, started)
        # the target failed: say so, and give the call back to the transferor if it waits
        if report:
            report(code or 503, None)
        if not transferor.is_gone and transferor.bridge is None and not transferee.is_gone:
            Bridge(self.ua.manager, transferor, transferee)
        elif not transferee.is_gone:
            transferee.hangup("NORMAL_CLEARING")
        return False

    async def attended(self, transferor: SipChannel, target: ReferTarget,
                       report: Report) -> None:
        """REFER on call 1 whose Refer-To replaces call 2: join the two far parties."""
        assert target.replaces is not None
        leg2 = self.ua.find_replaced(target.replaces)
        transferee = transferor.bridged_with()
        if leg2 is None or transferee is None:
            report(481, "Call Does Not Exist")
            return
        party = leg2.bridged_with()
        if party is None:
            report(503, "Service Unavailable (call not connected)")
            return
        # the final NOTIFY goes out before join() ends the transferor's dialog (a NOTIFY
        # cannot follow our BYE)
        report(200, "OK")
        self.join(transferor, transferee, leg2, party)

    async def replace(self, new: SipChannel, old: SipChannel) -> bool:
        """INVITE with Replaces (RFC 3891): `new` takes `old`'s place in its two-party
        call; `old` is hung up.  False (nothing changed) when `old` is not bridged."""
        other = old.bridged_with()
        if other is None or other.is_gone:
            return False
        await new.answer()
        if old.is_gone or other.is_gone:  # the call ended while we answered
            return False
        if old.bridge is not None:
            old.bridge.destroy()
        if other.media is not None and other.media.source is not None:
            other.media.set_source(None)
        Bridge(self.ua.manager, other, new)
        self.publish(TRANSFER_EVENT, kind="replaces", channel=old.id, transferee=other.id,
                     target=new.name, linkedid=other.linkedid)
        self._report("replaces", old, other, new.endpoint_name, True,
                     asyncio.get_running_loop().time())
        log.info("replaces: %s now talks to %s instead of %s", other.name, new.name, old.name)
        old.hangup("ATTENDED_TRANSFER")
        return True

    def join(self, leg1: Channel, a: Channel, leg2: Channel, c: Channel) -> None:
        """Connect a (from leg1's bridge) with c (from leg2's bridge); end leg1 and leg2."""
        for leg in (leg1, leg2):
            if leg.bridge is not None:
                leg.bridge.destroy()
        for ch in (a, c):
            if ch.media is not None and ch.media.source is not None:
                ch.media.set_source(None)  # music on hold, ringback
        Bridge(self.ua.manager, a, c)
        self.publish(TRANSFER_EVENT, kind="attended", channel=leg1.id, transferee=a.id,
                     target=c.name, linkedid=a.linkedid)
        self._report("attended", leg1, a, c.endpoint_name, True,
                     asyncio.get_running_loop().time())
        log.info("attended transfer: %s now talks to %s", a.name, c.name)
        for leg in (leg1, leg2):
            if not leg.is_gone:
                leg.hangup("ATTENDED_TRANSFER")

    # ------------------------------------------------------------ in-call feature codes
    def watch(self, ch: Channel, blind_code: str, attended_code: str,
              extra: dict[str, Callable[[Channel], Awaitable[None]]] | None = None) -> None:
        """Listen for ## + number (blind), *2 (attended) and `extra` codes (park, 3-way...)
        pressed on a bridged channel."""
        FeatureWatcher(self, ch, blind_code, attended_code, extra or {})


class FeatureWatcher:
    """Per-channel DTMF matcher for transfer feature codes (as Asterisk's features.conf)."""

    DIGIT_TIMEOUT = 3.0

    def __init__(self, t: Transfers, ch: Channel, blind: str, attended: str,
                 extra: dict[str, Callable[[Channel], Awaitable[None]]]) -> None:
        self.t = t
        self.ch = ch
        self.codes = {blind: "blind", attended: "attended"}
        self.extra = extra
        self.buf = ""
        self.busy = False
        ch.listeners.append(self.on_event)

    def on_event(self, ch: Channel, what: str, data: Any) -> None:
        if what == "hangup":
            if self.on_event in ch.listeners:
                ch.listeners.remove(self.on_event)
            return
        if what != "dtmf" or self.busy or ch.bridge is None:
            return
        self.buf = (self.buf + str(data))[-8:]
        for code, kind in self.codes.items():
            if code and self.buf.endswith(code):
                self.buf = ""
                self.busy = True
                self.t.ua.spawn(self._run(kind))
                return
        for code, handler in self.extra.items():
            if code and self.buf.endswith(code):
                self.buf = ""
                self.busy = True
                self.t.ua.spawn(self._run_extra(handler))
                return

    async def _run_extra(self, handler: Callable[[Channel], Awaitable[None]]) -> None:
        try:
            await handler(self.ch)
        except Exception:
            log.exception("%s: feature failed", self.ch.name)
        finally:
            self.busy = False

    async def _collect(self) -> str:
        ch = self.ch
        ch.flush_dtmf()
        digits, _ = await ch.get_digits(32, terminators="#", first_timeout=10.0,
                                        inter_timeout=self.DIGIT_TIMEOUT)
        return digits

    async def _run(self, kind: str) -> None:
        ch = self.ch
        other = ch.bridged_with()
        try:
            if other is None:
                return
            moh = self.t.ua.manager.moh
            # the other party waits with music while the number is entered
            if other.media is not None and moh is not None:
                other.media.set_source(moh.get(None).listener())
            if ch.media is not None:
                ch.media.set_source(PcmSource(CONFIRM))
            number = await self._collect()
            if other.media is not None and other.media.source is not None:
                other.media.set_source(None)
            if not number:
                return
            if kind == "blind":
                await self.t.blind(ch, number, None)
            else:
                await self._attended(number, other)
        except Exception:  # a failed feature must never break the call
            log.exception("%s: transfer feature failed", ch.name)
        finally:
            self.busy = False

    async def _attended(self, number: str, transferee: Channel) -> None:
        """Consult the target while the transferee holds; hang up (or *2) to complete,
        *1 to cancel and return to the transferee."""
        ch = self.ch
        ua = self.t.ua
        bridge = ch.bridge
        if bridge is None:
            return
        bridge.destroy()
        moh = ua.manager.moh
        if transferee.media is not None and moh is not None:
            transferee.media.set_source(moh.get(None).listener())
        consult: dict[str, Channel] = {}
        target_left = asyncio.Event()
        joined = False

        def on_answer() -> None:
            partner = ch.bridged_with()
            if partner is not None and ch.bridge is not None:
                consult["c"] = partner

                def on_leave(leaving: Channel, other: Channel) -> bool:
                    nonlocal joined
                    if leaving is not ch:
                        # the target hung up: the transferor goes back to the transferee
                        target_left.set()
                        return True
                    # the transferor hung up while talking to the target: transfer done
                    if transferee.is_gone:
                        return False
                    joined = True
                    self.t.join(ch, transferee, ch, other)
                    return True

                ch.bridge.on_leave = on_leave

        # the consultation call: ch dials the target; it returns when ch's call ends
        task: asyncio.Future[Any] = asyncio.ensure_future(self.t.connect(ch, number, on_answer))
        left: asyncio.Future[Any] = asyncio.ensure_future(target_left.wait())
        cancel = False
        try:
            while not task.done():
                waiter: asyncio.Future[Any] = asyncio.ensure_future(ch.dtmf_event.wait())
                done, _ = await asyncio.wait([task, waiter, left, transferee.hungup,
                                              ch.hungup], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if transferee.hungup in done or left in done:
                    break
                if waiter in done:
                    d = ch._take_digit()
                    self.buf = (self.buf + (d or ""))[-2:]
                    if self.buf == "*1":
                        cancel = True
                        break
                    if self.buf == "*2" and "c" in consult:
                        break
                if ch.is_gone:
                    break
        finally:
            left.cancel()
            c = consult.get("c")
            if joined:
                pass  # completed by the transferor hanging up (on_leave)
            elif transferee.is_gone:
                pass  # nobody to transfer: the transferor keeps its consultation call
            elif ch.is_gone and c is None:
                # the transferor hung up while the target rang: the transferee gets the
                # target instead (as Asterisk's atxferdropcall=no)
                if not task.done():
                    task.cancel()
                self.t.ua.spawn(self._deliver(transferee, number))
            elif cancel or c is None or c.is_gone:
                # back to the transferee; a target still ringing stops ringing
                if not task.done() and c is None:
                    task.cancel()
                if c is not None and not c.is_gone:
                    if c.bridge is not None:
                        c.bridge.destroy()
                    c.hangup("NORMAL_CLEARING")
                if not ch.is_gone:
                    if transferee.media is not None:
                        transferee.media.set_source(None)
                    Bridge(ua.manager, ch, transferee)
                else:
                    transferee.hangup("NORMAL_CLEARING")
            else:
                self.t.join(ch, transferee, ch, c)

    async def _deliver(self, transferee: Channel, number: str) -> None:
        status, _code = await self.t.connect(transferee, number, None)
        if not transferee.is_gone and status not in ("ANSWER", "DONE"):
            transferee.hangup("NORMAL_CLEARING")
