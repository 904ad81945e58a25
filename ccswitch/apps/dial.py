"""The Dial application: ring one or more extensions, bridge the first to answer.

Every registered contact of every target is rung at once (parallel forking);
the first 2xx wins and the other branches are cancelled.  Ringing and early
media are relayed to the caller; failures are summarised into the best final
response (RFC 3261 §16.7 spirit: 6xx ends the search, busy beats unavailable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ccswitch.call.channel import Bridge, Channel
from ccswitch.media import tones
from ccswitch.media.engine import PcmSource

if TYPE_CHECKING:
    from ccswitch.call.sipua import SipChannel, SipUA

log = logging.getLogger("ccswitch.dial")

# North American ringback: 440 + 480 Hz, 2 s on, 4 s off
RINGBACK = tones.cadence(2000, 4000, 6000, 440, 480)

# set on a caller's channel while Dial rings for it and would take a directed pickup
PICKUP_VAR = "dial_pickup"

# which failure we report when several branches fail (higher wins)
_RANK = {486: 90, 600: 95, 603: 94, 480: 50, 404: 40, 408: 30, 487: 10}


def _rank(status: int) -> int:
    return _RANK.get(status, 20 if status >= 500 else 25)


@dataclass
class DialResult:
    status: str  # ANSWER, BUSY, NOANSWER, CHANUNAVAIL, CANCEL, FAILED (Asterisk's DIALSTATUS)
    sip_status: int = 0
    answered_by: Channel | None = None


async def dial(
    ua: SipUA,
    chan: SipChannel,
    targets: list[str],
    timeout: float,
    *,
    bridge: bool = True,
    on_bridged: Callable[[Channel, Channel], None] | None = None,
    on_bridged_watch: Callable[[Channel, Channel], None] | None = None,
) -> DialResult:
    """Ring `targets` for `chan`.  With bridge=True, returns when the bridged call ends."""
    bindings = [b for t in targets for b in ua.lookup(t)]
    if not bindings:
        return DialResult("CHANUNAVAIL", 480)
    q: asyncio.Queue[tuple[Channel, str, Any]] = asyncio.Queue()

    def listener(c: Channel, what: str, data: Any) -> None:
        q.put_nowait((c, what, data))

    codecs = _codec_order(chan)
    legs: list[SipChannel] = []
    ringback: PcmSource | None = None
    chan.listeners.append(listener)
    try:
        for b in bindings:
            leg = await ua.originate(
                b, caller=chan.caller, caller_name=chan.caller_name, dest=b.aor,
                linkedid=chan.linkedid, codecs=codecs,
            )
            leg.listeners.append(listener)
            legs.append(leg)
            if leg.is_gone:
                q.put_nowait((leg, "failed", 503))
        pending = set(legs)
        # while set, a directed pickup of this call's ringing legs is handled here
        chan.vars[PICKUP_VAR] = True
        best = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        early_from: Channel | None = None
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return DialResult("NOANSWER", 480)
            try:
                c, what, data = await asyncio.wait_for(q.get(), left)
            except TimeoutError:
                return DialResult("NOANSWER", 480)
            if c is chan:
                if what == "hangup":
                    return DialResult("CANCEL", 487)
                if what == "pickup" and isinstance(data, Channel) and not data.is_gone:
                    # directed pickup: another phone takes the call instead
                    chan.vars.pop(PICKUP_VAR, None)
                    for other in pending:
                        other.hangup("PICKED_OFF")
                    pending.clear()
                    if chan.media is not None and ringback is not None and \
                            chan.media.source is ringback:
                        chan.media.set_source(None)
                    await chan.answer()
                    Bridge(ua.manager, chan, data)
                    if on_bridged_watch is not None:
                        on_bridged_watch(chan, data)
                    await asyncio.shield(chan.hungup)
                    return DialResult("ANSWER", 200, data)
                continue
            if what == "ringing":
                chan.ring()
                if chan.is_up and chan.media is not None and chan.media.source is None:
                    # the caller is already answered (IVR): play ringback ourselves
                    ringback = PcmSource(RINGBACK, loop=True)
                    chan.media.set_source(ringback)
            elif what == "progress" and early_from is None and c.media and chan.media:
                # early media (183 + SDP): let the caller hear the far end's tones/announcements
                early_from = c
                chan.progress()
                Bridge(ua.manager, chan, c)
            elif what == "answered":
                chan.vars.pop(PICKUP_VAR, None)
                pending.discard(c)
                for other in pending:
                    other.hangup("LOSE_RACE")
                pending.clear()
                if chan.is_gone:
                    c.hangup("NORMAL_CLEARING")
                    return DialResult("CANCEL", 487)
                if chan.media is not None and ringback is not None and \
                        chan.media.source is ringback:
                    chan.media.set_source(None)  # stop our ringback
                if not bridge:
                    return DialResult("ANSWER", 200, c)
                await chan.answer()
                Bridge(ua.manager, chan, c)
                if on_bridged_watch is not None:
                    on_bridged_watch(chan, c)
                if on_bridged is not None:
                    on_bridged(chan, c)
                # the bridge hangs up one party when the other leaves; a transfer may
                # move either party elsewhere meanwhile, so wait for the caller only
                await asyncio.shield(chan.hungup)
                return DialResult("ANSWER", 200, c)
            elif what in ("failed", "hangup") and c in pending:
                pending.discard(c)
                status = data if isinstance(data, int) else 480
                if _rank(status) > _rank(best) or not best:
                    best = status
                if 600 <= status < 700:
                    for other in pending:
                        other.hangup("CALL_REJECTED")
                    pending.clear()
                if not pending:
                    if best in (486, 600):
                        return DialResult("BUSY", best)
                    return DialResult("CHANUNAVAIL" if best in (480, 404) else "FAILED",
                                      best)
    finally:
        chan.vars.pop(PICKUP_VAR, None)
        if chan.media is not None and ringback is not None and chan.media.source is ringback:
            chan.media.set_source(None)
        if listener in chan.listeners:
            chan.listeners.remove(listener)
        for leg in legs:
            if listener in leg.listeners:
                leg.listeners.remove(listener)
            if not leg.is_up and not leg.is_gone:
                leg.hangup("NORMAL_CLEARING" if chan.is_gone else "NO_ANSWER")


def _codec_order(chan: Channel) -> list[str]:
    """Offer the caller's codec first so the legs need no transcoding when possible."""
    first = chan.codec
    rest = ["PCMU", "PCMA"]
    return [first] + [c for c in rest if c != first] if first in rest else rest

