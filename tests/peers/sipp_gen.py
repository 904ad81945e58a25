"""Generator of the sipp UAC scenarios in tests/peers/sipp/ (uac_*.xml).

The committed files are the output of ``python tests/peers/sipp/gen_uac.py all``;
tests that need other digits or timings call :func:`dtmf_pcap` (or
``tests.peers.sipp.write_dtmf_scenario``) at run time.

All UAC scenarios share one call set-up:
    INVITE (SDP: PCMA 8, PCMU 0, telephone-event 101)
    [-> 401/407 -> ACK -> INVITE with digest credentials from -au/-ap]
    -> optional 100/180/183 -> 200 (route set recorded: rrs="true") -> ACK (CSeq copied)
Timer ``setup`` = first INVITE sent -> 200 received (includes the auth round).
Keywords they need: ``-s <called number>``, ``-key caller <From/Contact user>``.
"""

# ruff: noqa: E501, UP032 - XML templates: long lines, str.format() keeps the braces readable
from __future__ import annotations

import os

PCAP_DIR = "/usr/share/sip-tester"  # Debian sip-tester ships the pcaps here
DTMF_PCAP = {str(d): f"dtmf_2833_{d}.pcap" for d in range(10)}
DTMF_PCAP.update({"*": "dtmf_2833_star.pcap", "#": "dtmf_2833_pound.pcap"})

FROM = "From: <sip:[caller]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]"
TO = "To: <sip:[service]@[remote_ip]:[remote_port]>"
CONTACT = "Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>"
RURI = "sip:[service]@[remote_ip]:[remote_port]"

SDP = """      v=0
      o=sipp [pid][call_number] {ver} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio {mport} RTP/AVP 8 0 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=ptime:20
      a=sendrecv
"""

# CSeq of the INVITE that got the response (1, or 2 after a challenge), for ACK/CANCEL
CSEQ_EREG = """      <ereg regexp="([0-9]+) INVITE" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseqjunk,invcseq" />"""
BRANCH_EREG = """      <ereg regexp="branch=([^;, ]+)" search_in="hdr" header="Via:" check_it="true" assign_to="branchjunk,invbranch" />"""


def _invite(cseq: int, auth: bool, first: bool | str, mport: str = "[auto_media_port]") -> str:
    """``first``: True = start timer "setup", a string = start that timer."""
    return """  <send retrans="500"{rtd}>
    <![CDATA[

      INVITE {ruri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {frm}
      {to}
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      {contact}
{auth}      Max-Forwards: 70
      User-Agent: sipp-ccswitch-tests
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
""".format(rtd=f' start_rtd="{"setup" if first is True else first}"' if first else "", ruri=RURI, frm=FROM, to=TO, cseq=cseq,
           contact=CONTACT, auth="      [authentication]\n" if auth else "",
           sdp=SDP.format(ver=cseq, mport=mport))


def _auth_ack() -> str:
    return """
  <!-- challenged: ACK the 401/407 ([last_Via:] keeps the INVITE branch), then re-INVITE with credentials -->
  <label id="auth" />
  <send>
    <![CDATA[

      ACK {ruri} SIP/2.0
      [last_Via:]
      {frm}
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>

""".format(ruri=RURI, frm=FROM)


def setup(mport: str = "[auto_media_port]") -> str:
    """INVITE [-> challenge -> ACK -> INVITE+auth] -> 200 -> ACK.

    ``mport`` is the SDP media port: ``[auto_media_port]`` (-mp + 4 per call, for pcap
    play) or ``[media_port]`` (-mp for every call)."""
    return _invite(1, False, True, mport) + """
  <recv response="100" optional="true" />
  <recv response="401" optional="true" auth="true" next="auth" />
  <recv response="407" optional="true" auth="true" next="auth" />
  <recv response="180" optional="true" />
  <recv response="183" optional="true" />
  <recv response="200" rtd="setup" rrs="true" next="answered">
    <action>
{ereg}
    </action>
  </recv>
""".format(ereg=CSEQ_EREG) + _auth_ack() + _invite(2, True, False, mport) + """
  <recv response="100" optional="true" />
  <recv response="180" optional="true" />
  <recv response="183" optional="true" />
  <recv response="200" rtd="setup" rrs="true">
    <action>
{ereg}
    </action>
  </recv>

  <label id="answered" />
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      {frm}
      {to}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: [$invcseq] ACK
      {contact}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
""".format(ereg=CSEQ_EREG, frm=FROM, to=TO, contact=CONTACT)


def local_bye() -> str:
    return """
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      {frm}
      {to}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 10 BYE
      {contact}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>

  <recv response="200" crlf="true" />
""".format(frm=FROM, to=TO, contact=CONTACT)


def wait_bye_or_hangup(hold_ms: int) -> str:
    """Wait ``hold_ms`` for a BYE from the server (answer it), else send our BYE."""
    return """
  <!-- wait up to {ms} ms for the server to hang up; a recv timeout is used
       instead of <pause/> because sipp aborts a call that gets a BYE inside a pause -->
  <recv request="BYE" timeout="{ms}" ontimeout="localbye" next="remotebye" />

  <label id="remotebye" />
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      {contact}
      Content-Length: 0

    ]]>
  </send>
  <nop next="end" />

  <label id="localbye" />""".format(ms=hold_ms, contact=CONTACT) + local_bye() + """
  <label id="end" />
"""


def _play(pcap: str) -> str:
    return """  <nop>
    <action>
      <exec play_pcap_audio="{p}" />
    </action>
  </nop>
""".format(p=os.path.join(PCAP_DIR, pcap))


def _wrap(name: str, doc: str, body: str, refs: str = "cseqjunk") -> str:
    return """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- GENERATED by tests/peers/sipp/gen_uac.py (tests/peers/sipp_gen.py) - edit the generator.
{doc}
-->
<scenario name="{name}">
{body}
  <Reference variables="{refs}" />
  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500, 1000, 2000"/>
  <CallLengthRepartition value="500, 1000, 2000, 5000, 10000, 20000, 60000"/>
</scenario>
""".format(doc=doc.strip("\n"), name=name, body=body, refs=refs)


def load() -> str:
    doc = """
  SIP-only call for calls-per-second tests (no RTP is sent; every call offers
  the same media port [media_port] = -mp, so stray RTP stays in one known port).
    set-up -> <pause/> (-d ms) -> BYE -> 200
  A BYE from the server during the pause makes the call fail (intended: a load
  test expects the caller to hang up)."""
    return _wrap("uac load call", doc, setup("[media_port]") + "\n  <pause />\n" + local_bye())


def call_pcap(hold_ms: int = 8000) -> str:
    doc = f"""
  UAC call with RTP from a pcap.
    set-up -> play {PCAP_DIR}/g711a.pcap (PCMA, ~7 s)
    -> wait up to {hold_ms} ms for a BYE from the server (answered with 200)
    -> otherwise send BYE -> 200.
  sipp replays the pcap to the media address/port of the 200 OK SDP, so the
  answer must carry SDP."""
    return _wrap("uac call with pcap media", doc,
                 setup() + "\n" + _play("g711a.pcap") + wait_bye_or_hangup(hold_ms))


def dtmf_pcap(digits: str = "123#", wait_ms: int = 2000, gap_ms: int = 600,
              hold_ms: int = 4000) -> str:
    bad = [d for d in digits if d not in DTMF_PCAP]
    if bad or not digits:
        raise ValueError(f"no pcap for digit(s) {''.join(bad)!r} (have 0-9 * #)")
    doc = f"""
  UAC that sends RFC 4733 DTMF "{digits}" by replaying sipp's dtmf_2833_*.pcap
  (payload type 101, ~140 ms per digit; sipp's own play_dtmf uses PT 96).
    set-up -> pause {wait_ms} ms -> per digit: play the pcap, pause {gap_ms} ms
    -> wait up to {hold_ms} ms for a BYE from the server, else send BYE.
  The pcaps carry their own SSRC (0x0e05384e) and timestamps: a receiver must
  key DTMF on payload type, not on SSRC continuity."""
    body = setup() + f'\n  <pause milliseconds="{wait_ms}" />\n'
    for d in digits:
        body += f"\n  <!-- digit {d} -->\n" + _play(DTMF_PCAP[d]) + f'  <pause milliseconds="{gap_ms}" />\n'
    body += wait_bye_or_hangup(hold_ms)
    return _wrap(f"uac dtmf {digits} via pcap", doc, body)


def cancel(ring_ms: int = 500) -> str:
    doc = f"""
  UAC that cancels a ringing call.
    INVITE [-> 401/407 -> ACK -> INVITE + auth] -> 180/183 -> ring {ring_ms} ms
    -> CANCEL (same branch and CSeq number as the INVITE) -> 200 (CANCEL, optional)
    -> 487 (INVITE; timer "cancel" = CANCEL sent -> 487) -> ACK.
  Timer "ring" = first INVITE -> first 180/183 (post-dial delay, incl. auth round).
  A 200 to the INVITE instead of the 487 (callee answered first) fails the call."""
    ring = """  <recv response="{code}"{opt} rtd="ring" next="ringing">
    <action>
{ereg}
{breg}
    </action>
  </recv>
"""
    body = _invite(1, False, "ring") + """
  <recv response="100" optional="true" />
  <recv response="401" optional="true" auth="true" next="auth" />
  <recv response="407" optional="true" auth="true" next="auth" />
""" + ring.format(code="183", opt=' optional="true"', ereg=CSEQ_EREG, breg=BRANCH_EREG) \
        + ring.format(code="180", opt="", ereg=CSEQ_EREG, breg=BRANCH_EREG) \
        + _auth_ack() + _invite(2, True, False) + """
  <recv response="100" optional="true" />
""" + ring.format(code="183", opt=' optional="true"', ereg=CSEQ_EREG, breg=BRANCH_EREG) \
        + ring.format(code="180", opt="", ereg=CSEQ_EREG, breg=BRANCH_EREG) + """
  <!-- ring for {ring_ms} ms; a recv with a timeout rather than <pause/>, because
       sipp aborts a call on any message (a late 180) that arrives inside a pause -->
  <label id="ringing" />
  <recv response="183" optional="true" timeout="{ring_ms}" ontimeout="docancel" next="docancel" />
  <recv response="180" timeout="{ring_ms}" ontimeout="docancel" next="docancel" />

  <label id="docancel" />
  <send start_rtd="cancel">
    <![CDATA[

      CANCEL {ruri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[$invbranch]
      {frm}
      {to}
      Call-ID: [call_id]
      CSeq: [$invcseq] CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>

  <recv response="180" optional="true" />
  <recv response="183" optional="true" />
  <recv response="200" optional="true" />
  <recv response="487" rtd="cancel" />

  <send>
    <![CDATA[

      ACK {ruri} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[$invbranch]
      {frm}
      [last_To:]
      Call-ID: [call_id]
      CSeq: [$invcseq] ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
""".format(ring_ms=ring_ms, ruri=RURI, frm=FROM, to=TO)
    return _wrap("uac cancel while ringing", doc, body, refs="cseqjunk,branchjunk")


ALL = {
    "uac_load.xml": load,
    "uac_call_pcap.xml": call_pcap,
    "uac_dtmf_pcap.xml": dtmf_pcap,
    "uac_cancel.xml": cancel,
}
