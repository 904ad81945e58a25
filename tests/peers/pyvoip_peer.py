"""pyVoIP 1.6.8 (a threaded pure-Python SIP phone) wrapped for asyncio tests.

    async with PyVoipPeer(server_port=port, user="1003", password="secret1003",
                          tone_hz=900) as phone:          # REGISTERs at start
        call = await phone.wait_incoming(timeout=10)      # auto-answered, plays 900 Hz
        await call.wait_ended(timeout=20)
        rx = call.received()                              # floats, 8 kHz
    async with PyVoipPeer(server_port=port, user="1003", password="secret1003") as phone:
        call = await phone.call("200", timeout=10)        # waits until answered
        await call.send_tone(700, 2.0)
        await call.hangup()

Every blocking pyVoIP call runs in a worker thread under a timeout, pyVoIP's
own threads are made daemon threads (so a wedged pyVoIP cannot keep pytest
alive), and a failing ``stop()`` closes the sockets to unblock them.  The
many protocol quirks of pyVoIP 1.6.8 are listed in tests/peers/README.md;
the ones a server must tolerate are also in :data:`SERVER_REQUIREMENTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from tests.peers import audio, netutil

with warnings.catch_warnings():
    # pyVoIP imports audioop (deprecated in 3.11, gone in 3.13: audioop-lts provides it)
    warnings.simplefilter("ignore", DeprecationWarning)
    # pyVoIP's modules form an import cycle: pyVoIP.VoIP must be imported first.
    from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone  # noqa: I001
    import pyVoIP.RTP
    import pyVoIP.SIP
    import pyVoIP.VoIP.VoIP


class _DaemonTimer(threading.Timer):
    """pyVoIP runs every loop in a threading.Timer; as daemons they cannot block exit."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.daemon = True


for _mod in (pyVoIP.SIP, pyVoIP.RTP, pyVoIP.VoIP.VoIP):
    _mod.Timer = _DaemonTimer  # type: ignore[attr-defined]

SERVER_REQUIREMENTS = """\
What a server must accept for pyVoIP 1.6.8 to work (see README.md for all quirks):
- ACK for a 2xx carries a random To-tag (not the 2xx's), the INVITE's Via branch and
  R-URI = To URI: match it on Call-ID + CSeq (+ From-tag), or the call is torn down
  after 64*T1 (32 s) for a missing ACK.
- INVITE digest: only 401/WWW-Authenticate is handled (a 407 makes call() hang);
  the retried INVITE reuses the first INVITE's Via branch (new CSeq); the response
  is RFC 2069 style (no qop/nc/cnonce even if qop="auth" was offered) with
  uri="sip:<server-ip>;transport=UDP" (not the Request-URI).
- Messages to pyVoIP: header names exactly "Call-ID", "CSeq", "Via", "From", "To",
  "Contact", "Content-Length" (no compact forms, no other casing), "Name: value"
  with one space, no header with an empty value (e.g. "Supported:" makes pyVoIP
  drop the whole message), one Via per header line, exactly one CRLFCRLF.
- Every response/request is sent to the configured server address, never to Via.
"""


class PyVoipError(RuntimeError):
    pass


class PyVoipCall:
    """One call of a :class:`PyVoipPeer` (incoming or outgoing)."""

    def __init__(self, peer: PyVoipPeer, call: VoIPCall, incoming: bool) -> None:
        self.peer = peer
        self.call = call
        self.incoming = incoming
        self.rx = bytearray()  # 8-bit unsigned linear, 8 kHz, as pyVoIP returns it
        self.dtmf = ""
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self._stop = threading.Event()
        self._recorder: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> CallState:
        return self.call.state

    @property
    def call_id(self) -> str:
        return str(self.call.call_id)

    def _record_loop(self) -> None:
        # pace reads at 20 ms; non-blocking reads return 0x80 (silence) when nothing
        # arrived, blocking reads would spin forever on true digital silence
        deadline = time.monotonic() + self.peer.max_call_s
        nxt = time.monotonic()
        while (not self._stop.is_set() and self.call.state == CallState.ANSWERED
               and time.monotonic() < deadline):
            try:
                frame = self.call.read_audio(160, blocking=False)
                digits = self.call.get_dtmf(16)
            except Exception:
                break
            with self._lock:
                if self.peer.record:
                    self.rx += frame
                self.dtmf += digits
            nxt += 0.02
            time.sleep(max(0.0, nxt - time.monotonic()))
        self.ended_at = time.monotonic()

    def _start_recorder(self) -> None:
        self.answered_at = time.monotonic()
        self._recorder = threading.Thread(target=self._record_loop, daemon=True,
                                          name=f"pyvoip-rec-{self.call_id[:8]}")
        self._recorder.start()

    def received(self) -> audio.FloatArray:
        """Received audio as floats in [-1, 1] at 8 kHz (0x80 fill where nothing arrived)."""
        with self._lock:
            return audio.u8_to_float(bytes(self.rx))

    async def wait_answered(self, timeout: float = 10.0) -> None:
        await _poll(lambda: self.call.state == CallState.ANSWERED,
                    lambda: self.call.state == CallState.ENDED, timeout,
                    f"{self.peer.name}: call not answered")
        if not self.incoming and self._recorder is None:
            self._start_recorder()

    async def answer(self, timeout: float = 5.0) -> None:
        """Answer a ringing incoming call (peer built with ``auto_answer=False``)."""
        await asyncio.wait_for(asyncio.to_thread(self.call.answer), timeout)
        await asyncio.to_thread(self.peer._send_initial_audio, self.call)

    async def wait_ended(self, timeout: float = 10.0) -> None:
        await _poll(lambda: self.call.state == CallState.ENDED, lambda: False, timeout,
                    f"{self.peer.name}: call did not end")
        self._stop.set()

    async def wait_dtmf(self, digits: str, timeout: float = 10.0) -> str:
        await _poll(lambda: self.dtmf.endswith(digits), lambda: False, timeout,
                    f"{self.peer.name}: DTMF {digits!r} not received")
        return self.dtmf

    async def send_audio(self, samples: audio.FloatArray) -> None:
        """Queue 8 kHz float samples for sending (pyVoIP paces them at 20 ms)."""
        await asyncio.to_thread(self.call.write_audio, audio.float_to_u8(samples))

    async def send_tone(self, freq: float, secs: float, amplitude: float = 0.5) -> None:
        await self.send_audio(audio.tone(freq, secs, 8000, amplitude))

    async def hangup(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.call.state == CallState.ANSWERED:
            await asyncio.wait_for(asyncio.to_thread(self.call.hangup), timeout)
        elif self.call.state == CallState.RINGING:
            await asyncio.wait_for(asyncio.to_thread(self.call.deny), timeout)


async def _poll(done: Callable[[], bool], failed: Callable[[], bool], timeout: float,
                msg: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if failed():
            raise PyVoipError(msg + " (call ended)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{msg} within {timeout}s")
        await asyncio.sleep(0.02)


class PyVoipPeer:
    """A pyVoIP phone on 127.0.0.1 with a free SIP port and RTP ports in 30000-31999.

    ``server_port``/``server_host``: where pyVoIP sends *everything* (REGISTER,
    INVITE, responses, BYE) - the server under test, or another UA for a direct
    call.  ``register=False`` skips REGISTER (pyVoIP cannot run without it
    otherwise).  Incoming calls are answered after ``answer_delay`` s when
    ``auto_answer`` (else rejected with 486 when ``reject``, else left ringing);
    on answer ``tone_hz`` (or ``play`` samples) is sent.
    """

    def __init__(
        self,
        *,
        server_port: int,
        server_host: str = "127.0.0.1",
        user: str = "pyvoip",
        password: str = "",
        register: bool = True,
        auto_answer: bool = True,
        reject: bool = False,
        answer_delay: float = 0.0,
        tone_hz: float | None = None,
        tone_amplitude: float = 0.5,
        play: audio.FloatArray | None = None,
        record: bool = True,
        max_call_s: float = 120.0,
        register_timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        netutil.assert_loopback(server_host)
        self.server_host = server_host
        self.server_port = server_port
        self.user = user
        self.password = password
        self.register_enabled = register
        self.auto_answer = auto_answer
        self.reject = reject
        self.answer_delay = answer_delay
        self.tone_hz = tone_hz
        self.tone_amplitude = tone_amplitude
        self.play = play
        self.record = record
        self.max_call_s = max_call_s
        self.register_timeout = register_timeout
        self.name = name or f"pyvoip-{user}"
        self.sip_port = 0
        self.rtp_range = (0, 0)
        self.calls: list[PyVoipCall] = []
        self.phone: VoIPPhone | None = None
        self.callback_errors: list[BaseException] = []

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    @property
    def status(self) -> PhoneStatus:
        return self.phone.get_status() if self.phone else PhoneStatus.INACTIVE

    @property
    def registered(self) -> bool:
        return self.status == PhoneStatus.REGISTERED

    async def __aenter__(self) -> PyVoipPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --------------------------------------------------------------- incoming
    def _on_call(self, call: VoIPCall) -> None:
        """pyVoIP calls this in its own thread ~1 s after the INVITE (it sent 180 at once)."""
        h = PyVoipCall(self, call, incoming=True)
        self.calls.append(h)
        try:
            if self.reject:
                call.deny()
                return
            if not self.auto_answer:
                # leave it ringing; the thread must stay alive or pyVoIP forgets the call
                _wait_until(lambda: call.state != CallState.RINGING or h._stop.is_set(),
                            self.max_call_s)
                if call.state == CallState.ANSWERED:
                    h._start_recorder()
                    _wait_until(lambda: call.state != CallState.ANSWERED or h._stop.is_set(),
                                self.max_call_s)
                return
            if self.answer_delay:
                time.sleep(self.answer_delay)
            call.answer()
            self._send_initial_audio(call)
            h._start_recorder()
            _wait_until(lambda: call.state != CallState.ANSWERED or h._stop.is_set(),
                        self.max_call_s)
        except BaseException as e:
            self.callback_errors.append(e)

    def _send_initial_audio(self, call: VoIPCall) -> None:
        if self.play is not None:
            call.write_audio(audio.float_to_u8(self.play))
        elif self.tone_hz is not None:
            call.write_audio(audio.float_to_u8(
                audio.tone(self.tone_hz, self.max_call_s, 8000, self.tone_amplitude)))

    async def wait_incoming(self, timeout: float = 10.0, *, answered: bool = True) -> PyVoipCall:
        """Next incoming call (by default: once answered, i.e. pyVoIP sent 200)."""
        n = len(self.calls)
        start = time.monotonic()
        await _poll(lambda: any(c.incoming for c in self.calls[n:]), lambda: False, timeout,
                    f"{self.name}: no incoming call")
        h = next(c for c in self.calls[n:] if c.incoming)
        if answered and self.auto_answer and not self.reject:
            await h.wait_answered(max(0.5, timeout - (time.monotonic() - start)))
        return h

    # ---------------------------------------------------------------- lifecycle
    async def start(self, timeout: float | None = None) -> None:
        self.sip_port = netutil.free_udp_port()
        self.rtp_range = netutil.free_rtp_range(20)
        self.phone = VoIPPhone(
            self.server_host, self.server_port, self.user, self.password,
            myIP=netutil.LOOPBACK, callCallback=self._on_call, sipPort=self.sip_port,
            rtpPortLow=self.rtp_range[0], rtpPortHigh=self.rtp_range[1],
        )
        # bounds REGISTER / un-REGISTER waits (default 30 s per step)
        self.phone.sip.register_timeout = max(1, int(self.register_timeout))
        if not self.register_enabled:
            # pyVoIP has no "no registrar" mode: SIPClient.start() always registers
            self.phone.sip.register = lambda: True  # type: ignore[method-assign]
        limit = timeout if timeout is not None else 3 * self.register_timeout + 2
        try:
            await asyncio.wait_for(asyncio.to_thread(self.phone.start), limit)
        except BaseException:
            await self._force_close()
            raise
        if self.register_enabled and not self.registered:
            st = self.status
            await self._force_close()
            raise PyVoipError(f"{self.name}: registration failed (status {st.name})")

    async def stop(self, timeout: float = 10.0) -> None:
        for c in self.calls:
            c._stop.set()
        if self.phone is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(self.phone.stop), timeout)
        except BaseException:
            await self._force_close()
        self.phone = None

    async def _force_close(self) -> None:
        p = self.phone
        if p is None:
            return
        p.sip.NSD = False
        for c in list(p.calls.values()):
            for r in c.RTPClients:
                r.NSD = False
                with contextlib.suppress(Exception):
                    r.sin.close()
        with contextlib.suppress(Exception):
            p.sip._close_sockets()
        if p.sip.registerThread is not None:
            p.sip.registerThread.cancel()

    # ----------------------------------------------------------------- outgoing
    async def call(
        self, number: str, timeout: float = 10.0, *, wait_answer: bool = True
    ) -> PyVoipCall:
        """INVITE ``sip:<number>@<server_host>`` (pyVoIP offers PCMU + 101 only).

        pyVoIP waits for 100/180/401 inside call() with a blocking recv and no timeout;
        if nothing comes the phone is force-closed and PyVoipError raised."""
        if self.phone is None:
            raise PyVoipError("not started")
        start = time.monotonic()
        try:
            vc = await asyncio.wait_for(asyncio.to_thread(self.phone.call, number), timeout)
        except TimeoutError:
            await self._force_close()
            raise PyVoipError(f"{self.name}: no 100/180/401 to INVITE within {timeout}s "
                              "(pyVoIP blocks; phone closed)") from None
        h = PyVoipCall(self, vc, incoming=False)
        self.calls.append(h)
        if wait_answer:
            await h.wait_answered(max(0.5, timeout - (time.monotonic() - start)))
            if self.play is not None or self.tone_hz is not None:
                await asyncio.to_thread(self._send_initial_audio, vc)
        return h


def _wait_until(pred: Callable[[], bool], limit: float) -> None:
    end = time.monotonic() + limit
    while not pred() and time.monotonic() < end:
        time.sleep(0.02)

