"""pyVoIP 1.6.8 (a third SIP stack, pure Python) registers, answers and places calls.

pyVoIP's quirks are listed in tests/peers/pyvoip_peer.py (SERVER_REQUIREMENTS).  Its
digest answers are RFC 2069 style (no qop/nc/cnonce although qop="auth" is offered):
``Authorization: Digest username="1003",realm="ccswitch",nonce="...",
uri="sip:127.0.0.1;transport=UDP",response="<md5>",algorithm=MD5``, so its
extension is configured with ``legacy_digest: true``; the same extension without it
must not register.

Placing a call is still expected to fail (strict: the test turns red once the server
copes, to have the marker removed): the INVITE pyVoIP retries with credentials reuses
the first INVITE's Via branch (with CSeq 2), so the transaction layer takes it for a
retransmission of the challenged INVITE (whose transaction is Confirmed) and absorbs
it: no response at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import DEMO_EXTENSIONS, CcswitchServer, running_server
from tests.e2e.test_core_calls import A_TONE, B_TONE, finished_cdrs, hears, phone, tone
from tests.peers import audio
from tests.peers.pyvoip_peer import PyVoipError, PyVoipPeer


@pytest.fixture
def legacy_server(tmp_path: Path) -> Iterator[CcswitchServer]:
    exts = [dict(e, legacy_digest=e["number"] == "1003") for e in DEMO_EXTENSIONS]
    with running_server(tmp_path / "server", {"extensions": exts}) as srv:
        yield srv


def pyvoip(server: CcswitchServer, **kw: object) -> PyVoipPeer:
    return PyVoipPeer(server_port=server.port, user="1003", password="secret1003",
                      register_timeout=3.0, **kw)  # type: ignore[arg-type]


async def test_pyvoip_needs_legacy_digest(server: CcswitchServer) -> None:
    """Without legacy_digest the qop-less answer is refused (qop is not optional)."""
    with pytest.raises(PyVoipError, match="registration failed"):
        async with pyvoip(server):
            pass
    assert await server.acli_json("registrations") == []


async def test_pyvoip_registers_and_answers_a_call(legacy_server: CcswitchServer,
                                                   tmp_path: Path) -> None:
    server = legacy_server
    async with pyvoip(server, tone_hz=A_TONE) as p, \
            phone(server, tmp_path, "1002", source=tone(tmp_path, B_TONE)) as b:
        assert p.registered and await b.register()
        regs = {r["extension"]: r for r in await server.acli_json("registrations")}
        assert regs["1003"]["user_agent"].startswith("pyVoIP")
        await b.dial("1003")
        call = await p.wait_incoming(10)
        await b.wait_established(5)
        await asyncio.sleep(2.5)
        await b.hangup()
        await call.wait_ended(5)
        await b.wait_closed(5)
    assert audio.tone_present(call.received(), 8000, B_TONE), "pyVoIP heard nothing"
    assert hears(b, A_TONE), "baresip did not hear pyVoIP"
    (c,) = await finished_cdrs(server)
    assert (c["caller"], c["callee"], c["disposition"]) == ("1002", "1003", "ANSWERED")



async def test_pyvoip_places_a_call(legacy_server: CcswitchServer, tmp_path: Path) -> None:
    server = legacy_server
    async with pyvoip(server, tone_hz=A_TONE) as p, \
            phone(server, tmp_path, "1002", answermode="auto",
                  source=tone(tmp_path, B_TONE)) as b:
        assert p.registered and await b.register()
        call = await p.call("1002", timeout=10)
        await b.wait_established(5)
        await asyncio.sleep(2.5)
        await call.hangup()
        await b.wait_closed(5)
    assert hears(b, A_TONE), "baresip did not hear pyVoIP"
    assert audio.tone_present(call.received(), 8000, B_TONE), "pyVoIP heard nothing"
    (c,) = await finished_cdrs(server)
    assert (c["caller"], c["callee"], c["disposition"]) == ("1003", "1002", "ANSWERED")
