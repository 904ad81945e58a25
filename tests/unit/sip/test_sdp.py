from __future__ import annotations

import pytest

from ccswitch.sip.sdp import (
    Connection,
    MediaDescription,
    Negotiated,
    SdpError,
    SessionDescription,
    build_offer,
    effective_address,
    is_hold,
    negotiate,
    parse_answer,
    parse_sdp,
)


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# Realistic offers as the devices send them (addresses changed to documentation ranges).

BARESIP = crlf("""
v=0
o=- 1958414335 2587413451 IN IP4 192.0.2.50
s=-
c=IN IP4 192.0.2.50
t=0 0
m=audio 10316 RTP/AVP 96 9 0 8 101
b=AS:96
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=ssrc:1427384742 cname:d1a4e0a8-5b0f-4b48-8f04-8cbf8ab9bc38
a=sendrecv
a=label:1
a=ptime:20
""")

LINPHONE = crlf("""
v=0
o=1001 3062 2130 IN IP4 192.0.2.20
s=Talk
c=IN IP4 192.0.2.20
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
""")

POLYCOM = crlf("""
v=0
o=- 1605892325 1605892325 IN IP4 198.51.100.45
s=Polycom IP Phone
c=IN IP4 198.51.100.45
t=0 0
a=sendrecv
m=audio 2222 RTP/AVP 9 102 0 8 18 126
a=rtpmap:9 G722/8000
a=rtpmap:102 G7221/16000
a=fmtp:102 bitrate=32000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:126 telephone-event/8000
""")

# Yealink: LF-only line endings, trailing whitespace, a=ptime before rtpmap for DTMF.
YEALINK = b"""v=0
o=- 20040 20040 IN IP4 192.0.2.101\t
s=SDP data
c=IN IP4 192.0.2.101
t=0 0
m=audio 11796 RTP/AVP 0 8 9 18 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=ptime:20
a=sendrecv
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
""".replace(b"a=ptime:20\n", b"a=ptime:20 \n")

ASTERISK = crlf("""
v=0
o=- 1846226574 1846226576 IN IP4 203.0.113.10
s=Asterisk
c=IN IP4 203.0.113.10
t=0 0
m=audio 14238 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""")

# SIPp built-in uac scenario: static PT 0 without telephone-event.
SIPP_UAC = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

# SIPp uac_pcap scenario: PCMA + telephone-event, no rtpmap for 8 in some variants.
SIPP_PCAP = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 8 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-11,16
""")


def answer_for(offer: bytes | SessionDescription, **kw: object) -> Negotiated:
    sdp = offer if isinstance(offer, SessionDescription) else parse_sdp(offer)
    args: dict[str, object] = {"session_id": 42, "version": 1, **kw}
    return negotiate(sdp, "192.0.2.1", 20000, **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- parsing


class TestParse:
    def test_baresip(self) -> None:
        sdp = parse_sdp(BARESIP)
        assert (sdp.username, sdp.sess_id, sdp.sess_version) == ("-", "1958414335", "2587413451")
        assert (sdp.nettype, sdp.addrtype, sdp.address) == ("IN", "IP4", "192.0.2.50")
        assert sdp.connection == Connection("192.0.2.50")
        assert sdp.timing == ["0 0"]
        (m,) = sdp.media
        assert (m.media, m.port, m.proto) == ("audio", 10316, "RTP/AVP")
        assert m.formats == ["96", "9", "0", "8", "101"]
        assert m.rtpmap[96] == ("opus", 48000, 2)
        assert m.rtpmap[101] == ("telephone-event", 8000, None)
        assert m.fmtp == {96: "stereo=1;sprop-stereo=1", 101: "0-15"}
        assert m.codecs() == [
            (96, "OPUS", 48000),
            (9, "G722", 8000),
            (0, "PCMU", 8000),
            (8, "PCMA", 8000),
            (101, "TELEPHONE-EVENT", 8000),
        ]
        assert m.telephone_event_pt() == 101
        assert m.direction == "sendrecv"
        assert m.ptime == 20
        assert m.lines == [("b", "AS:96")]
        assert [a[0] for a in m.attributes] == ["rtcp-rsize", "ssrc", "label"]
        assert m.attribute("label") == "1"
        assert m.attribute("rtcp-rsize") == ""
        assert m.attribute("nope") is None

    def test_linphone_several_telephone_events_and_video(self) -> None:
        sdp = parse_sdp(LINPHONE)
        assert sdp.username == "1001"
        assert sdp.session_name == "Talk"
        assert [a[0] for a in sdp.attributes] == ["rtcp-xr", "record"]
        audio, video = sdp.media
        assert audio.telephone_event_pt() == 100
        assert audio.telephone_event_pt(48000) == 101
        assert audio.codecs()[5] == (18, "G729", 8000)  # static PT with fmtp only
        assert audio.fmtp[18] == "annexb=yes"
        assert audio.attribute("rtcp") == "7079"
        assert (video.media, video.port, video.formats) == ("video", 9078, ["96", "97"])
        assert video.rtpmap[96] == ("VP8", 90000, None)  # PT numbers are per m-line

    def test_polycom_session_level_direction_is_inherited(self) -> None:
        sdp = parse_sdp(POLYCOM)
        assert sdp.direction == "sendrecv"
        assert sdp.attributes == []
        (m,) = sdp.media
        assert m.direction == "sendrecv"
        assert m.telephone_event_pt() == 126
        assert m.rtpmap[102] == ("G7221", 16000, None)

    def test_yealink_lf_only_and_trailing_whitespace(self) -> None:
        sdp = parse_sdp(YEALINK)
        assert sdp.address == "192.0.2.101"
        (m,) = sdp.media
        assert m.ptime == 20
        assert m.telephone_event_pt() == 101
        assert [c[1] for c in m.codecs()] == ["PCMU", "PCMA", "G722", "G729", "TELEPHONE-EVENT"]

    def test_sipp_static_pt_without_rtpmap(self) -> None:
        (m,) = parse_sdp(SIPP_PCAP).media
        assert m.rtpmap == {96: ("telephone-event", 8000, None)}
        assert m.codecs() == [(8, "PCMA", 8000), (96, "TELEPHONE-EVENT", 8000)]
        assert m.telephone_event_pt() == 96

    def test_str_input_and_unknown_lines(self) -> None:
        text = (
            "v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\ni=info\nu=http://x\ne=a@b\np=+1 555\n"
            "b=CT:128\nt=0 0\nr=7d 1h 0 25h\nz=0 0\nk=prompt\ny=0123456789\n"
            "this line is junk\n\n\n"
            "m=audio 4000 RTP/AVP 0\ni=audio\nc=IN IP4 192.0.2.10\nb=AS:64\nk=clear:x\n"
            "x=unknown\na=ptime:30.0\na=x-vendor\n"
        )
        sdp = parse_sdp(text)
        assert sdp.timing == ["0 0"]
        assert ("r", "7d 1h 0 25h") in sdp.lines
        assert ("y", "0123456789") in sdp.lines
        (m,) = sdp.media
        assert m.connection == Connection("192.0.2.10")
        assert m.ptime == 30
        assert m.lines == [("i", "audio"), ("b", "AS:64"), ("k", "clear:x"), ("x", "unknown")]
        assert m.attributes == [("x-vendor", None)]

    def test_origin_username_with_spaces(self) -> None:
        sdp = parse_sdp(crlf("v=0\no=Polycom Inc 12 13 IN IP4 192.0.2.1\ns=-\nm=audio 1 RTP/AVP 0"))
        assert sdp.username == "Polycom Inc"
        assert (sdp.sess_id, sdp.sess_version, sdp.address) == ("12", "13", "192.0.2.1")

    def test_ipv6_and_port_count(self) -> None:
        sdp = parse_sdp(
            crlf("""
v=0
o=- 1 1 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 49170/2 RTP/AVP 0
""")
        )
        (m,) = sdp.media
        assert (m.port, m.port_count) == (49170, 2)
        assert sdp.connection == Connection("2001:db8::1", "IP6")
        assert effective_address(sdp, m) == "2001:db8::1"

    def test_malformed_rtpmap_is_kept_as_attribute(self) -> None:
        sdp = parse_sdp(
            crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0 97
a=rtpmap:97 iLBC
a=rtpmap:x PCMU/8000
a=fmtp:y whatever
a=ptime:abc
""")
        )
        (m,) = sdp.media
        assert m.rtpmap == {}
        assert m.ptime is None
        assert [a[0] for a in m.attributes] == ["rtpmap", "rtpmap", "fmtp", "ptime"]
        assert m.codecs() == [(0, "PCMU", 8000)]  # 97 has no usable rtpmap

    def test_non_rtp_formats_are_kept(self) -> None:
        sdp = parse_sdp(
            crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=image 4002 udptl t38
a=T38FaxVersion:0
m=application 5000 TCP/MRCPv2 1
""")
        )
        image, app = sdp.media
        assert image.formats == ["t38"] and image.codecs() == []
        assert app.formats == ["1"]

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "missing v="),
            ("o=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0", "missing v="),
            ("v=0\ns=-\nm=audio 1 RTP/AVP 0", "missing o="),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0", "missing m="),
            ("v=x\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0", "bad v="),
            ("v=1\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0", "unsupported SDP version"),
            ("v=0\nv=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0", "duplicate v="),
            ("v=0\no=- 1 IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0", "bad o="),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4\nm=audio 1 RTP/AVP 0", "bad c="),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1", "bad m="),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio x RTP/AVP 0", "bad port"),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio -5 RTP/AVP 0", "bad port"),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0", "bad port"),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 1/0 RTP/AVP 0", "bad port count"),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio ６ RTP/AVP 0", "bad port"),
            ("SIP/2.0 200 OK\r\n", "missing v="),
        ],
    )
    def test_malformed(self, text: str, reason: str) -> None:
        with pytest.raises(SdpError) as info:
            parse_sdp(text)
        assert reason in info.value.reason
        assert isinstance(info.value, ValueError)

    def test_invalid_utf8_does_not_crash_and_round_trips(self) -> None:
        data = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=\xff\nm=audio 1 RTP/AVP 0").replace(
            "ÿ".encode(), b"\xff"
        )
        sdp = parse_sdp(data)
        assert b"s=\xff\r\n" in sdp.to_bytes()


# --------------------------------------------------------------------------- serialization


class TestSerialize:
    @pytest.mark.parametrize(
        "data", [BARESIP, LINPHONE, POLYCOM, YEALINK, ASTERISK, SIPP_UAC, SIPP_PCAP]
    )
    def test_round_trip(self, data: bytes) -> None:
        sdp = parse_sdp(data)
        out = sdp.to_bytes()
        assert out.endswith(b"\r\n")
        assert b"\n" not in out.replace(b"\r\n", b"")
        assert parse_sdp(out) == sdp
        assert parse_sdp(out).to_bytes() == out

    def test_asterisk_exact_output(self) -> None:
        # Already in canonical order, so serialization gives the input back byte for byte.
        assert parse_sdp(ASTERISK).to_bytes() == ASTERISK

    def test_line_order(self) -> None:
        sdp = parse_sdp(
            "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nb=CT:1\ny=1\nc=IN IP4 192.0.2.1\n"
            "i=info\na=tool:x\nm=audio 1 RTP/AVP 0\nb=AS:1\nc=IN IP4 192.0.2.2\ni=m\n"
        )
        lines = sdp.to_str().split("\r\n")
        assert [line[0] for line in lines if line] == list("vosicbtyamicba")


# --------------------------------------------------------------------------- hold


def _sdp(media_lines: str, session: str = "c=IN IP4 192.0.2.5\n") -> SessionDescription:
    return parse_sdp(f"v=0\no=- 1 2 IN IP4 192.0.2.5\ns=-\n{session}t=0 0\n{media_lines}")


class TestHold:
    @pytest.mark.parametrize(
        ("media", "session", "hold"),
        [
            ("m=audio 4000 RTP/AVP 0\na=sendrecv\n", "c=IN IP4 192.0.2.5\n", False),
            ("m=audio 4000 RTP/AVP 0\n", "c=IN IP4 192.0.2.5\n", False),
            ("m=audio 4000 RTP/AVP 0\na=recvonly\n", "c=IN IP4 192.0.2.5\n", False),
            ("m=audio 4000 RTP/AVP 0\na=sendonly\n", "c=IN IP4 192.0.2.5\n", True),
            ("m=audio 4000 RTP/AVP 0\na=inactive\n", "c=IN IP4 192.0.2.5\n", True),
            ("m=audio 4000 RTP/AVP 0\n", "c=IN IP4 0.0.0.0\n", True),
            ("m=audio 4000 RTP/AVP 0\nc=IN IP4 0.0.0.0\n", "c=IN IP4 192.0.2.5\n", True),
            ("m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.6\n", "c=IN IP4 0.0.0.0\n", False),
            ("m=audio 4000 RTP/AVP 0\n", "c=IN IP4 192.0.2.5\na=sendonly\n", True),
            ("m=audio 4000 RTP/AVP 0\na=sendrecv\n", "c=IN IP4 192.0.2.5\na=sendonly\n", False),
            ("m=audio 4000 RTP/AVP 0\n", "c=IN IP6 ::\n", True),
        ],
    )
    def test_is_hold(self, media: str, session: str, hold: bool) -> None:
        sdp = _sdp(media, session)
        assert is_hold(sdp, sdp.media[0]) is hold

    def test_yealink_hold_reinvite(self) -> None:
        hold = YEALINK.replace(b"a=sendrecv", b"a=sendonly").replace(b"20040 20040", b"20040 20041")
        n = answer_for(hold)
        assert n.remote_hold
        assert n.direction == "recvonly"
        assert n.answer.media[0].direction == "recvonly"
        assert b"a=recvonly\r\n" in n.answer.to_bytes()
        # Resume
        n = answer_for(YEALINK)
        assert not n.remote_hold and n.direction == "sendrecv"

    def test_inactive_hold(self) -> None:
        n = answer_for(ASTERISK.replace(b"a=sendrecv", b"a=inactive"))
        assert n.remote_hold and n.direction == "inactive"

    def test_rfc2543_hold(self) -> None:
        old = SIPP_UAC.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
        n = answer_for(old)
        assert n.remote_hold
        assert n.remote_address == "0.0.0.0"
        assert n.direction == "recvonly"  # do not send media to 0.0.0.0

    def test_remote_recvonly_means_we_only_send(self) -> None:
        n = answer_for(ASTERISK.replace(b"a=sendrecv", b"a=recvonly"))
        assert not n.remote_hold and n.direction == "sendonly"

    @pytest.mark.parametrize(
        ("remote", "local", "expected"),
        [
            ("sendrecv", "sendrecv", "sendrecv"),
            ("sendrecv", "sendonly", "sendonly"),  # we put the remote on hold
            ("sendrecv", "inactive", "inactive"),
            ("sendonly", "sendrecv", "recvonly"),
            ("sendonly", "sendonly", "inactive"),
            ("recvonly", "recvonly", "inactive"),
            ("inactive", "sendrecv", "inactive"),
        ],
    )
    def test_direction_combination(self, remote: str, local: str, expected: str) -> None:
        n = answer_for(ASTERISK.replace(b"a=sendrecv", f"a={remote}".encode()), direction=local)
        assert n.direction == expected
        assert n.answer.media[0].direction == expected


# --------------------------------------------------------------------------- offer


class TestBuildOffer:
    def test_default_offer(self) -> None:
        offer = build_offer("192.0.2.1", 30000, session_id=77, version=3)
        assert offer.to_bytes() == crlf("""
v=0
o=- 77 3 IN IP4 192.0.2.1
s=ccswitch
c=IN IP4 192.0.2.1
t=0 0
m=audio 30000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")

    def test_ipv6_no_dtmf_hold(self) -> None:
        offer = build_offer(
            "2001:db8::5", 4000, ["PCMA"], None, session_id=1, version=2, direction="sendonly"
        )
        assert offer.addrtype == "IP6"
        assert offer.connection == Connection("2001:db8::5", "IP6")
        (m,) = offer.media
        assert m.formats == ["8"]
        assert m.direction == "sendonly"
        assert m.telephone_event_pt() is None
        assert b"c=IN IP6 2001:db8::5\r\n" in offer.to_bytes()

    def test_dynamic_codecs_skip_dtmf_pt(self) -> None:
        offer = build_offer(
            "192.0.2.1",
            4000,
            ["opus/48000/2", "G722", "L16/16000", "pcmu"],
            dtmf_pt=97,
            session_id=1,
            version=1,
            ptime=None,
        )
        (m,) = offer.media
        assert m.formats == ["96", "9", "98", "0", "97"]
        assert m.rtpmap[96] == ("opus", 48000, 2)
        assert m.rtpmap[98] == ("L16", 16000, None)
        assert m.ptime is None
        assert parse_sdp(offer.to_bytes()) == offer

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"codecs": ["opus"]}, "clock rate"),
            ({"codecs": []}, "no codecs"),
            ({"dtmf_pt": 13}, "dynamic"),
            ({"direction": "sideways"}, "direction"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], message: str) -> None:
        args: dict[str, object] = {"session_id": 1, "version": 1, **kwargs}
        with pytest.raises(ValueError, match=message):
            build_offer("192.0.2.1", 4000, **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- answer


class TestNegotiate:
    @pytest.mark.parametrize(
        ("offer", "codec", "pt", "dtmf", "address", "port"),
        [
            (BARESIP, "PCMU", 0, 101, "192.0.2.50", 10316),
            (LINPHONE, "PCMU", 0, 100, "192.0.2.20", 7078),
            (POLYCOM, "PCMU", 0, 126, "198.51.100.45", 2222),
            (YEALINK, "PCMU", 0, 101, "192.0.2.101", 11796),
            (ASTERISK, "PCMA", 8, 101, "203.0.113.10", 14238),
            (SIPP_UAC, "PCMU", 0, None, "127.0.0.1", 6000),
            (SIPP_PCAP, "PCMA", 8, 96, "127.0.0.1", 6000),
        ],
    )
    def test_real_world_offers(
        self, offer: bytes, codec: str, pt: int, dtmf: int | None, address: str, port: int
    ) -> None:
        n = answer_for(offer)
        assert (n.codec_name, n.codec_pt, n.codec_clock) == (codec, pt, 8000)
        assert n.dtmf_pt == dtmf
        assert (n.remote_address, n.remote_port) == (address, port)
        assert n.remote_ptime == parse_sdp(offer).media[0].ptime
        assert n.direction == "sendrecv" and not n.remote_hold
        assert n.media_index == 0
        offered = parse_sdp(offer)
        assert len(n.answer.media) == len(offered.media)
        am = n.answer.media[0]
        assert am.formats == [str(pt)] + ([str(dtmf)] if dtmf is not None else [])
        assert (am.port, am.proto) == (20000, "RTP/AVP")
        if dtmf is not None:
            assert am.rtpmap[dtmf] == ("telephone-event", 8000, None)
            assert am.fmtp[dtmf] == offered.media[0].fmtp.get(dtmf, "0-16")
        # The answer survives the wire and the offerer's view agrees with ours.
        again = parse_answer(offered, parse_sdp(n.answer.to_bytes()))
        assert (again.codec_pt, again.dtmf_pt, again.remote_port) == (pt, dtmf, 20000)
        assert again.remote_address == "192.0.2.1"

    def test_answer_bytes(self) -> None:
        n = answer_for(POLYCOM, supported=["PCMA"])
        assert n.answer.to_bytes() == crlf("""
v=0
o=- 42 1 IN IP4 192.0.2.1
s=ccswitch
c=IN IP4 192.0.2.1
t=0 0
m=audio 20000 RTP/AVP 8 126
a=rtpmap:8 PCMA/8000
a=rtpmap:126 telephone-event/8000
a=fmtp:126 0-16
a=ptime:20
a=sendrecv
""")

    @pytest.mark.parametrize("pt", [96, 100, 101, 126, 127])
    def test_dynamic_telephone_event_pt_is_echoed(self, pt: int) -> None:
        offer = SIPP_PCAP.replace(b"96", str(pt).encode())
        n = answer_for(offer)
        assert n.dtmf_pt == pt
        assert n.answer.media[0].formats == ["8", str(pt)]
        assert f"a=fmtp:{pt} 0-11,16\r\n".encode() in n.answer.to_bytes()

    def test_telephone_event_at_other_clock_is_ignored(self) -> None:
        offer = ASTERISK.replace(b"telephone-event/8000", b"telephone-event/48000")
        assert answer_for(offer).dtmf_pt is None

    def test_dtmf_disabled(self) -> None:
        n = answer_for(ASTERISK, dtmf=False)
        assert n.dtmf_pt is None and n.answer.media[0].formats == ["8"]

    def test_codec_preference(self) -> None:
        assert answer_for(ASTERISK).codec_name == "PCMA"  # offerer prefers PCMA
        n = answer_for(ASTERISK, prefer_offerer_order=False)
        assert n.codec_name == "PCMU"  # our list order wins
        n = answer_for(POLYCOM, supported=["G722", "PCMU"])
        assert (n.codec_name, n.codec_pt) == ("G722", 9)
        n = answer_for(BARESIP, supported=["OPUS/48000/2", "PCMU"])
        assert (n.codec_name, n.codec_pt, n.codec_clock) == ("OPUS", 96, 48000)
        assert n.dtmf_pt is None  # telephone-event/8000 does not go with a 48 kHz codec
        assert n.answer.media[0].fmtp == {96: "stereo=1;sprop-stereo=1"}
        n = answer_for(LINPHONE, supported=["speex/8000"])
        assert (n.codec_pt, n.answer.media[0].rtpmap[98]) == (98, ("speex", 8000, None))

    def test_linphone_video_is_rejected(self) -> None:
        n = answer_for(LINPHONE)
        audio, video = n.answer.media
        assert audio.port == 20000
        assert (video.media, video.port, video.proto, video.formats) == (
            "video",
            0,
            "RTP/AVP",
            ["96", "97"],
        )
        out = n.answer.to_bytes().decode()
        assert "m=video 0 RTP/AVP 96 97\r\n" in out
        assert out.endswith("m=video 0 RTP/AVP 96 97\r\n")  # no attributes on rejected lines

    def test_srtp_then_plain_audio_picks_the_second(self) -> None:
        # Best-effort SRTP as some Grandstream/SBC set-ups send it: RTP/SAVP first.
        offer = parse_sdp(
            crlf("""
v=0
o=- 5 5 IN IP4 192.0.2.30
s=-
c=IN IP4 192.0.2.30
t=0 0
m=audio 5004 RTP/SAVP 0 8 101
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
a=rtpmap:101 telephone-event/8000
m=audio 5006 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
m=image 0 udptl t38
""")
        )
        n = answer_for(offer)
        assert n.media_index == 1
        assert n.remote_port == 5006
        ports = [(m.media, m.port, m.proto) for m in n.answer.media]
        assert ports == [
            ("audio", 0, "RTP/SAVP"),
            ("audio", 20000, "RTP/AVP"),
            ("image", 0, "udptl"),
        ]
        again = parse_answer(offer, parse_sdp(n.answer.to_bytes()))
        assert again.media_index == 1

    def test_second_audio_stream_is_rejected(self) -> None:
        offer = parse_sdp(ASTERISK + b"m=audio 14240 RTP/AVP 0\r\n")
        n = answer_for(offer)
        assert [m.port for m in n.answer.media] == [20000, 0]

    def test_first_audio_without_common_codec_is_skipped(self) -> None:
        offer = parse_sdp(
            crlf("""
v=0
o=- 5 5 IN IP4 192.0.2.30
s=-
c=IN IP4 192.0.2.30
t=0 0
m=audio 5004 RTP/AVP 18
m=audio 5006 RTP/AVP 8
""")
        )
        n = answer_for(offer)
        assert n.media_index == 1
        assert [m.port for m in n.answer.media] == [0, 20000]

    def test_media_level_connection_wins(self) -> None:
        offer = parse_sdp(SIPP_UAC.replace(b"a=rtpmap", b"c=IN IP4 198.51.100.7\r\na=rtpmap"))
        assert answer_for(offer).remote_address == "198.51.100.7"

    def test_ipv6_answer(self) -> None:
        offer = _sdp("m=audio 4000 RTP/AVP 0\n", "c=IN IP6 2001:db8::9\n")
        n = negotiate(offer, "2001:db8::1", 20000, session_id=1, version=1)
        assert n.remote_address == "2001:db8::9"
        assert n.answer.addrtype == "IP6"
        assert b"c=IN IP6 2001:db8::1\r\n" in n.answer.to_bytes()

    @pytest.mark.parametrize(
        ("media", "reason"),
        [
            ("m=audio 4000 RTP/AVP 18 101\na=rtpmap:101 telephone-event/8000\n", "no common codec"),
            ("m=audio 4000 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n", "no common codec"),
            ("m=audio 4000 RTP/AVP 13 101\na=rtpmap:101 telephone-event/8000\n", "no common codec"),
            ("m=audio 4000 RTP/AVP 97\n", "no common codec"),  # dynamic PT, no rtpmap
            ("m=audio 4000 RTP/SAVP 0\n", "no acceptable audio stream"),
            ("m=audio 4000 UDP/TLS/RTP/SAVPF 0\n", "no acceptable audio stream"),
            ("m=video 4000 RTP/AVP 0\n", "no acceptable audio stream"),
            ("m=audio 0 RTP/AVP 0\n", "no acceptable audio stream"),
        ],
    )
    def test_rejections(self, media: str, reason: str) -> None:
        with pytest.raises(SdpError) as info:
            answer_for(_sdp(media))
        assert info.value.reason == reason

    def test_no_connection_address(self) -> None:
        with pytest.raises(SdpError, match="no connection address"):
            answer_for(_sdp("m=audio 4000 RTP/AVP 0\n", session=""))

    def test_g711_only_answer_to_g729_phone(self) -> None:
        with pytest.raises(SdpError, match="no common codec"):
            answer_for(POLYCOM, supported=["GSM"])


# --------------------------------------------------------------------------- offerer side


class TestParseAnswer:
    def offer(self) -> SessionDescription:
        return build_offer("192.0.2.1", 30000, ["PCMU", "PCMA"], 101, session_id=1, version=1)

    def test_answer_with_other_pt_numbers(self) -> None:
        answer = parse_sdp(
            crlf("""
v=0
o=- 9 9 IN IP4 203.0.113.10
s=Asterisk
c=IN IP4 203.0.113.10
t=0 0
m=audio 14000 RTP/AVP 8 96
a=rtpmap:8 PCMA/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
a=sendrecv
""")
        )
        n = parse_answer(self.offer(), answer)
        assert (n.codec_name, n.codec_pt, n.dtmf_pt) == ("PCMA", 8, 96)  # we send with theirs
        assert n.remote_ptime is None
        assert (n.remote_address, n.remote_port) == ("203.0.113.10", 14000)
        assert n.direction == "sendrecv" and not n.remote_hold
        assert n.answer is answer

    def test_first_offered_codec_in_answer_order(self) -> None:
        answer = _sdp("m=audio 14000 RTP/AVP 18 8 0\n")
        n = parse_answer(self.offer(), answer)
        assert n.codec_name == "PCMA" and n.dtmf_pt is None

    def test_telephone_event_and_cn_listed_first(self) -> None:
        answer = _sdp("m=audio 14000 RTP/AVP 101 13 0\na=rtpmap:101 telephone-event/8000\n")
        n = parse_answer(self.offer(), answer)
        assert (n.codec_name, n.codec_pt, n.dtmf_pt) == ("PCMU", 0, 101)

    def test_answer_on_hold(self) -> None:
        n = parse_answer(self.offer(), _sdp("m=audio 14000 RTP/AVP 0\na=sendonly\n"))
        assert n.remote_hold and n.direction == "recvonly"
        n = parse_answer(self.offer(), _sdp("m=audio 14000 RTP/AVP 0\n", "c=IN IP4 0.0.0.0\n"))
        assert n.remote_hold and n.direction == "recvonly"

    def test_our_own_hold_offer(self) -> None:
        offer = build_offer("192.0.2.1", 30000, session_id=1, version=2, direction="sendonly")
        n = parse_answer(offer, _sdp("m=audio 14000 RTP/AVP 0\na=recvonly\n"))
        assert n.direction == "sendonly" and not n.remote_hold

    @pytest.mark.parametrize(
        ("media", "reason"),
        [
            ("m=audio 0 RTP/AVP 0\n", "audio stream rejected"),
            ("m=audio 14000 RTP/AVP 18\n", "no common codec"),
            ("m=audio 14000 RTP/AVP 0\nm=video 0 RTP/AVP 31\n", "m= lines"),
        ],
    )
    def test_bad_answers(self, media: str, reason: str) -> None:
        with pytest.raises(SdpError, match=reason):
            parse_answer(self.offer(), _sdp(media))

    def test_answer_without_connection(self) -> None:
        with pytest.raises(SdpError, match="no connection address"):
            parse_answer(self.offer(), _sdp("m=audio 14000 RTP/AVP 0\n", session=""))


def test_dataclass_defaults_are_independent() -> None:
    a, b = MediaDescription("audio", 1, "RTP/AVP"), MediaDescription("audio", 1, "RTP/AVP")
    a.formats.append("0")
    assert b.formats == []
    s1, s2 = SessionDescription(), SessionDescription()
    s1.timing.append("1 2")
    assert s2.timing == ["0 0"]
