"""SDP (RFC 4566) parsing/serialization and RFC 3264 offer/answer for audio calls.

Sans-IO: takes and returns plain bytes/str and dataclasses. Only what a G.711
softswitch needs is modelled (connection, rtpmap, fmtp, direction, ptime); every
other line and attribute is kept verbatim so that a parse/serialize round trip
loses nothing that matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Connection",
    "MediaDescription",
    "Negotiated",
    "SdpError",
    "SessionDescription",
    "build_offer",
    "effective_address",
    "is_hold",
    "negotiate",
    "parse_answer",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 static audio payload types: (encoding, clock rate, channels).
# G722 advertises 8000 although it samples at 16 kHz (RFC 3551 §4.5.2 quirk).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, None),
    3: ("GSM", 8000, None),
    4: ("G723", 8000, None),
    5: ("DVI4", 8000, None),
    6: ("DVI4", 16000, None),
    7: ("LPC", 8000, None),
    8: ("PCMA", 8000, None),
    9: ("G722", 8000, None),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, None),
    12: ("QCELP", 8000, None),
    13: ("CN", 8000, None),
    14: ("MPA", 90000, None),
    15: ("G728", 8000, None),
    16: ("DVI4", 11025, None),
    17: ("DVI4", 22050, None),
    18: ("G729", 8000, None),
}
_STATIC_BY_NAME: dict[str, int] = {
    "PCMU": 0,
    "GSM": 3,
    "G723": 4,
    "PCMA": 8,
    "G722": 9,
    "CN": 13,
    "G728": 15,
    "G729": 18,
}

# Order of SDP line types (RFC 4566 §5); unknown types go just before a=.
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "micbka"

_RTP_PROTOS = ("RTP/AVP",)
_HOLD_ADDRESSES = ("0.0.0.0", "::")


class SdpError(ValueError):
    """Malformed or unacceptable SDP. ``reason`` is short and safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Connection:
    """A c= line. ``address`` may carry a multicast "/ttl" suffix, kept verbatim."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]


Attribute = tuple[str, str | None]  # (name, value); value None for flags like a=rtcp-mux


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str] = field(default_factory=list)
    rtpmap: dict[int, tuple[str, int, int | None]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    # Effective direction: the media-level attribute, else the session-level one, else sendrecv.
    direction: str = "sendrecv"
    connection: Connection | None = None
    ptime: int | None = None
    attributes: list[Attribute] = field(default_factory=list)
    port_count: int | None = None  # m=audio 49170/2 ...
    # Non-attribute lines other than c= (i=, b=, k=, unknown), as (type, value).
    lines: list[tuple[str, str]] = field(default_factory=list)

    def codecs(self) -> list[tuple[int, str, int]]:
        """(payload type, ENCODING, clock rate) in m-line order, static PTs included."""
        out: list[tuple[int, str, int]] = []
        for fmt in self.formats:
            pt = _int_or_none(fmt)
            if pt is None:
                continue
            entry = self.rtpmap.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if entry is not None:
                out.append((pt, entry[0].upper(), entry[1]))
        return out

    def telephone_event_pt(self, clock: int = 8000) -> int | None:
        """Payload type of telephone-event at ``clock`` (RFC 4733), in m-line order."""
        for pt, name, rate in self.codecs():
            if name == "TELEPHONE-EVENT" and rate == clock:
                return pt
        return None

    def attribute(self, name: str) -> str | None:
        """Value of the first other attribute called ``name`` ("" for a flag)."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def to_lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={self.media} {port} {' '.join([self.proto, *self.formats])}".rstrip()]
        out += [f"{t}={v}" for t, v in _ordered(self.lines, _MEDIA_ORDER) if t == "i"]
        if self.connection is not None:
            out.append(_connection_line(self.connection))
        out += [f"{t}={v}" for t, v in _ordered(self.lines, _MEDIA_ORDER) if t != "i"]
        written: set[int] = set()
        for fmt in self.formats:
            pt = _int_or_none(fmt)
            if pt is not None and pt not in written:
                written.add(pt)
                out += self._format_lines(pt)
        for pt in self.rtpmap.keys() | self.fmtp.keys():
            if pt not in written:
                written.add(pt)
                out += self._format_lines(pt)
        if self.ptime is not None:
            out.append(f"a=ptime:{self.ptime}")
        out += [_attribute_line(a) for a in self.attributes]
        if self.port != 0:  # attributes of a rejected stream mean nothing (RFC 3264 §6)
            out.append(f"a={self.direction}")
        return out

    def _format_lines(self, pt: int) -> list[str]:
        out = []
        if pt in self.rtpmap:
            name, clock, channels = self.rtpmap[pt]
            suffix = f"/{channels}" if channels is not None else ""
            out.append(f"a=rtpmap:{pt} {name}/{clock}{suffix}")
        if pt in self.fmtp:
            out.append(f"a=fmtp:{pt} {self.fmtp[pt]}")
        return out


@dataclass
class SessionDescription:
    version: int = 0
    username: str = "-"
    sess_id: str = "0"
    sess_version: str = "0"
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"
    session_name: str = "-"
    connection: Connection | None = None
    timing: list[str] = field(default_factory=lambda: ["0 0"])
    # Session-level direction attribute if one was present (media inherit it at parse time).
    direction: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    # Other session-level lines (i=, u=, e=, p=, b=, r=, z=, k=, unknown), as (type, value).
    lines: list[tuple[str, str]] = field(default_factory=list)

    def to_str(self) -> str:
        out = [
            f"v={self.version}",
            f"o={self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}",
            f"s={self.session_name or '-'}",
        ]
        others = _ordered(self.lines, _SESSION_ORDER)
        out += [f"{t}={v}" for t, v in others if t in "iuep"]
        if self.connection is not None:
            out.append(_connection_line(self.connection))
        out += [f"{t}={v}" for t, v in others if t == "b"]
        out += [f"t={t}" for t in (self.timing or ["0 0"])]
        out += [f"{t}={v}" for t, v in others if t not in "iuepb"]
        if self.direction is not None:
            out.append(f"a={self.direction}")
        out += [_attribute_line(a) for a in self.attributes]
        for m in self.media:
            out += m.to_lines()
        return "\r\n".join(out) + "\r\n"

    def to_bytes(self) -> bytes:
        return self.to_str().encode("utf-8", "surrogateescape")


def _ordered(lines: list[tuple[str, str]], order: str) -> list[tuple[str, str]]:
    """Stable sort into RFC 4566 order; unknown line types go just before a=."""
    unknown = order.index("a") - 0.5

    def key(item: tuple[str, str]) -> float:
        pos = order.find(item[0])
        return unknown if pos < 0 else float(pos)

    return sorted(lines, key=key)


def _connection_line(c: Connection) -> str:
    return f"c={c.nettype} {c.addrtype} {c.address}"


def _attribute_line(a: Attribute) -> str:
    return f"a={a[0]}" if a[1] is None else f"a={a[0]}:{a[1]}"


def _int_or_none(s: str) -> int | None:
    return int(s) if s.isdigit() and s.isascii() else None


# --------------------------------------------------------------------------- parsing


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body. Liberal in what it accepts (LF endings, blanks, unknown lines)."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    raw = [line.strip() for line in text.split("\n")]
    lines = [line for line in raw if line]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("missing v= line")
    sdp = SessionDescription()
    try:
        sdp.version = int(lines[0][2:].strip())
    except ValueError:
        raise SdpError("bad v= line") from None
    if sdp.version != 0:
        raise SdpError(f"unsupported SDP version {sdp.version}")

    seen_origin = False
    timing: list[str] = []
    media: MediaDescription | None = None
    media_direction: list[str | None] = []  # explicit per-media direction, None = inherit
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            continue  # not "x=..." at all: ignore rather than reject the call
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            media = _parse_m_line(value)
            sdp.media.append(media)
            media_direction.append(None)
        elif kind == "a":
            name, sep, val = value.partition(":")
            attr: Attribute = (name, val if sep else None)
            if media is None:
                if name in DIRECTIONS and not sep:
                    sdp.direction = name
                else:
                    sdp.attributes.append(attr)
            elif name in DIRECTIONS and not sep:
                media_direction[-1] = name
            elif not _parse_media_attribute(media, name, attr[1]):
                media.attributes.append(attr)
        elif kind == "c":
            conn = _parse_c_line(value)
            if media is None:
                sdp.connection = conn
            else:
                media.connection = conn
        elif media is not None:
            media.lines.append((kind, value))
        elif kind == "o":
            _parse_o_line(sdp, value)
            seen_origin = True
        elif kind == "s":
            sdp.session_name = value
        elif kind == "t":
            timing.append(value)
        elif kind == "v":
            raise SdpError("duplicate v= line")
        else:
            sdp.lines.append((kind, value))
    if not seen_origin:
        raise SdpError("missing o= line")
    if not sdp.media:
        raise SdpError("missing m= line")
    if timing:
        sdp.timing = timing
    for m, explicit in zip(sdp.media, media_direction, strict=True):
        m.direction = explicit or sdp.direction or "sendrecv"
    return sdp


def _parse_o_line(sdp: SessionDescription, value: str) -> None:
    parts = value.split()
    if len(parts) < 6:
        raise SdpError("bad o= line")
    # A username with spaces is illegal but seen in the wild: keep the last five fields exact.
    sdp.username = " ".join(parts[:-5])
    sdp.sess_id, sdp.sess_version, sdp.nettype, sdp.addrtype, sdp.address = parts[-5:]


def _parse_c_line(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError("bad c= line")
    return Connection(nettype=parts[0], addrtype=parts[1].upper(), address=parts[2])


def _parse_m_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError("bad m= line")
    media, port_s, proto = parts[0], parts[1], parts[2]
    port_s, slash, count_s = port_s.partition("/")
    port = _int_or_none(port_s)
    if port is None or port > 65535:
        raise SdpError(f"bad port in m= line: {parts[1]!r}")
    count: int | None = None
    if slash:
        count = _int_or_none(count_s)
        if count is None or count < 1:
            raise SdpError(f"bad port count in m= line: {parts[1]!r}")
    return MediaDescription(
        media=media, port=port, proto=proto, formats=parts[3:], port_count=count
    )


def _parse_media_attribute(m: MediaDescription, name: str, value: str | None) -> bool:
    """Fill the modelled attributes; False means "keep it as an other attribute"."""
    if value is None:
        return False
    if name == "rtpmap":
        pt_s, _, enc = value.strip().partition(" ")
        pt = _int_or_none(pt_s)
        bits = enc.strip().split("/")
        if pt is None or len(bits) not in (2, 3) or not bits[0]:
            return False
        clock = _int_or_none(bits[1])
        channels = _int_or_none(bits[2]) if len(bits) == 3 else None
        if clock is None or (len(bits) == 3 and channels is None):
            return False
        m.rtpmap[pt] = (bits[0], clock, channels)
        return True
    if name == "fmtp":
        pt_s, _, params = value.strip().partition(" ")
        pt = _int_or_none(pt_s)
        if pt is None:
            return False
        m.fmtp[pt] = params.strip()
        return True
    if name == "ptime":
        try:
            m.ptime = round(float(value))  # "20", "20.0" and "20 " all occur
        except ValueError:
            return False
        return True
    return False


# --------------------------------------------------------------------------- helpers


def effective_address(sdp: SessionDescription, media: MediaDescription) -> str | None:
    """Media connection address: media-level c= wins over session-level (RFC 4566 §5.7)."""
    conn = media.connection or sdp.connection
    return conn.host if conn is not None else None


def is_hold(sdp: SessionDescription, media: MediaDescription) -> bool:
    """True if the sender of ``sdp`` puts ``media`` on hold (RFC 3264 §8.4 or RFC 2543 c=0)."""
    if media.direction in ("sendonly", "inactive"):
        return True
    return effective_address(sdp, media) in _HOLD_ADDRESSES


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _codec_spec(spec: str) -> tuple[str, int | None, int | None]:
    """ "PCMU" -> ("PCMU", None, None); "opus/48000/2" -> ("OPUS", 48000, 2)."""
    bits = spec.split("/")
    name = bits[0].upper()
    clock = int(bits[1]) if len(bits) > 1 else None
    channels = int(bits[2]) if len(bits) > 2 else None
    return name, clock, channels


def _mirror(direction: str) -> str:
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction, direction)


def _combine(remote: str, local: str) -> str:
    """Our direction given the remote's (as seen from the remote) and what we want."""
    mirrored = _mirror(remote)
    send = mirrored in ("sendrecv", "sendonly") and local in ("sendrecv", "sendonly")
    recv = mirrored in ("sendrecv", "recvonly") and local in ("sendrecv", "recvonly")
    return {
        (True, True): "sendrecv",
        (True, False): "sendonly",
        (False, True): "recvonly",
        (False, False): "inactive",
    }[(send, recv)]


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"bad direction {direction!r}")


# --------------------------------------------------------------------------- offer/answer


def build_offer(
    address: str,
    port: int,
    codecs: list[str] | None = None,
    dtmf_pt: int | None = 101,
    *,
    session_id: int,
    version: int,
    direction: str = "sendrecv",
    ptime: int | None = 20,
) -> SessionDescription:
    """An audio offer. ``codecs`` are names ("PCMU", "G722") or "name/clock[/channels]"
    for codecs without a static payload type, which get dynamic PTs from 96."""
    _check_direction(direction)
    if codecs is None:
        codecs = ["PCMU", "PCMA"]
    media = MediaDescription(media="audio", port=port, proto="RTP/AVP", direction=direction)
    media.ptime = ptime
    next_dynamic = 96
    for spec in codecs:
        name, clock, channels = _codec_spec(spec)
        static = _STATIC_BY_NAME.get(name)
        if static is not None and clock in (None, STATIC_PAYLOAD_TYPES[static][1]):
            pt = static
            enc, clock, channels = STATIC_PAYLOAD_TYPES[static]
        else:
            if clock is None:
                raise ValueError(f"codec {spec!r} needs a clock rate, e.g. {spec}/8000")
            while next_dynamic == dtmf_pt or str(next_dynamic) in media.formats:
                next_dynamic += 1
            if next_dynamic > 127:
                raise ValueError("out of dynamic payload types")
            pt, enc = next_dynamic, spec.split("/")[0]
        if str(pt) in media.formats:
            continue
        media.formats.append(str(pt))
        media.rtpmap[pt] = (enc, clock, channels)
    if not media.formats:
        raise ValueError("no codecs to offer")
    if dtmf_pt is not None:
        if not 96 <= dtmf_pt <= 127:
            raise ValueError("dtmf_pt must be a dynamic payload type (96-127)")
        media.formats.append(str(dtmf_pt))
        media.rtpmap[dtmf_pt] = ("telephone-event", 8000, None)
        media.fmtp[dtmf_pt] = "0-16"
    addrtype = _addrtype(address)
    return SessionDescription(
        sess_id=str(session_id),
        sess_version=str(version),
        addrtype=addrtype,
        address=address,
        session_name="ccswitch",
        connection=Connection(address=address, addrtype=addrtype),
        media=[media],
    )


@dataclass
class Negotiated:
    """Outcome of one offer/answer exchange, from our point of view.

    ``codec_pt`` and ``dtmf_pt`` are the payload types we must *send* with (RFC 3264 §6.1:
    they are the answerer's numbers; as answerer we echo the offerer's numbers, so they
    are the same on both sides).
    """

    answer: SessionDescription
    codec_pt: int
    codec_name: str
    codec_clock: int
    dtmf_pt: int | None
    remote_address: str
    remote_port: int
    direction: str  # ours: may we send / receive
    remote_hold: bool
    media_index: int
    remote_ptime: int | None = None  # packetization the remote wants to receive, if stated


def _match_codec(
    offered: list[tuple[int, str, int]],
    supported: list[str],
    prefer_offerer_order: bool,
) -> tuple[int, str, int] | None:
    wanted = [_codec_spec(s) for s in supported]

    def ok(codec: tuple[int, str, int], spec: tuple[str, int | None, int | None]) -> bool:
        return codec[1] == spec[0] and spec[1] in (None, codec[2])

    candidates = [c for c in offered if c[1] not in ("TELEPHONE-EVENT", "CN")]
    if prefer_offerer_order:
        for codec in candidates:
            if any(ok(codec, spec) for spec in wanted):
                return codec
    else:
        for spec in wanted:
            for codec in candidates:
                if ok(codec, spec):
                    return codec
    return None


def _rejected(m: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its media type and proto, port 0, >= 1 format.
    return MediaDescription(media=m.media, port=0, proto=m.proto, formats=list(m.formats) or ["0"])


def negotiate(
    offer: SessionDescription,
    address: str,
    port: int,
    supported: list[str] | None = None,
    *,
    session_id: int,
    version: int,
    prefer_offerer_order: bool = True,
    direction: str = "sendrecv",
    dtmf: bool = True,
    ptime: int | None = 20,
) -> Negotiated:
    """Answer ``offer`` (RFC 3264 §6): accept the first audio stream with a common codec,
    reject every other m-line with port 0. ``direction`` is what we want (e.g. "sendonly"
    to put the remote on hold while answering its re-INVITE); the answer mirrors the
    offer within that. Raises SdpError("no common codec") for a 488."""
    _check_direction(direction)
    if supported is None:
        supported = ["PCMU", "PCMA"]
    answer_media: list[MediaDescription] = []
    chosen: Negotiated | None = None
    failure = "no acceptable audio stream"
    addrtype = _addrtype(address)
    answer = SessionDescription(
        sess_id=str(session_id),
        sess_version=str(version),
        addrtype=addrtype,
        address=address,
        session_name="ccswitch",
        connection=Connection(address=address, addrtype=addrtype),
        media=answer_media,
    )
    for index, m in enumerate(offer.media):
        usable = chosen is None and m.media == "audio" and m.port != 0 and m.proto in _RTP_PROTOS
        codec = None
        remote_address = effective_address(offer, m)
        if usable:
            codec = _match_codec(m.codecs(), supported, prefer_offerer_order)
            if codec is None:
                failure = "no common codec"
            elif remote_address is None:
                failure = "no connection address"
        if codec is None or remote_address is None:
            answer_media.append(_rejected(m))
            continue
        pt, name, clock = codec
        hold = is_hold(offer, m)
        remote_dir = m.direction
        if remote_address in _HOLD_ADDRESSES and remote_dir in ("sendrecv", "recvonly"):
            # RFC 2543 hold: the remote does not want our media whatever a= says.
            remote_dir = "sendonly" if remote_dir == "sendrecv" else "inactive"
        our_dir = _combine(remote_dir, direction)
        dtmf_pt = m.telephone_event_pt(clock) if dtmf and clock == 8000 else None
        am = MediaDescription(
            media="audio", port=port, proto=m.proto, direction=our_dir, ptime=ptime
        )
        am.formats.append(str(pt))
        am.rtpmap[pt] = m.rtpmap.get(pt) or STATIC_PAYLOAD_TYPES[pt]
        if pt in m.fmtp:
            am.fmtp[pt] = m.fmtp[pt]
        if dtmf_pt is not None:
            am.formats.append(str(dtmf_pt))
            am.rtpmap[dtmf_pt] = m.rtpmap[dtmf_pt]
            am.fmtp[dtmf_pt] = m.fmtp.get(dtmf_pt, "0-16")
        answer_media.append(am)
        chosen = Negotiated(
            answer=answer,
            codec_pt=pt,
            codec_name=name,
            codec_clock=clock,
            dtmf_pt=dtmf_pt,
            remote_address=remote_address,
            remote_port=m.port,
            direction=our_dir,
            remote_hold=hold,
            media_index=index,
            remote_ptime=m.ptime,
        )
    if chosen is None:
        raise SdpError(failure)
    return chosen


def parse_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Check the ``answer`` to our ``offer`` (offerer side, RFC 3264 §7).

    The chosen codec is the first one in the answer that we offered (matched by name and
    clock, since the answerer's numbers are the ones we send with)."""
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m= lines, offer had {len(offer.media)}")
    rejected = False
    for index, (om, am) in enumerate(zip(offer.media, answer.media, strict=True)):
        if om.media != "audio" or om.port == 0 or om.proto not in _RTP_PROTOS:
            continue
        if am.port == 0:
            rejected = True
            continue
        ours = {(name, clock) for _, name, clock in om.codecs()}
        codec = next(
            (
                c
                for c in am.codecs()
                if (c[1], c[2]) in ours and c[1] not in ("TELEPHONE-EVENT", "CN")
            ),
            None,
        )
        if codec is None:
            raise SdpError("no common codec")
        remote_address = effective_address(answer, am)
        if remote_address is None:
            raise SdpError("no connection address")
        pt, name, clock = codec
        dtmf_pt = None
        if clock == 8000 and om.telephone_event_pt() is not None:
            dtmf_pt = am.telephone_event_pt()
        remote_dir = am.direction
        if remote_address in _HOLD_ADDRESSES and remote_dir in ("sendrecv", "recvonly"):
            remote_dir = "sendonly" if remote_dir == "sendrecv" else "inactive"
        return Negotiated(
            answer=answer,
            codec_pt=pt,
            codec_name=name,
            codec_clock=clock,
            dtmf_pt=dtmf_pt,
            remote_address=remote_address,
            remote_port=am.port,
            direction=_combine(remote_dir, om.direction),
            remote_hold=is_hold(answer, am),
            media_index=index,
            remote_ptime=am.ptime,
        )
    raise SdpError("audio stream rejected" if rejected else "no audio stream in offer")
