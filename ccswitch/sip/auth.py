"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616).

Sans-IO: header values in and out as ``str``, time passed in as ``now``.

Server side (:class:`DigestServer`) uses stateless nonces: each nonce carries its issue
time and a random part, authenticated by an HMAC over them and the realm, so any nonce
we issued can be checked without remembering it. The only state is a bounded table of
the highest nonce-count seen per nonce, to refuse replays when qop is in use.

Client side (:func:`build_authorization`, :func:`choose_challenge`) answers challenges
from trunks and providers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "AuthParseError",
    "AuthResult",
    "DigestServer",
    "build_authorization",
    "choose_challenge",
    "digest_response",
    "ha1",
    "ha2",
    "parse_auth_header",
]

# Canonical names; the lookup key is the upper-cased name from the wire.
ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess")
_CANONICAL = {name.upper(): name for name in ALGORITHMS}
# Client preference when a server offers several challenges (higher wins).
_STRENGTH = {"SHA-256": 4, "SHA-256-sess": 3, "MD5": 2, "MD5-sess": 1}

# RFC 3261 token characters.
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_WS = " \t\r\n"

_NONCE_RAW_LEN = 8 + 12 + 16  # issue time (double), random, truncated HMAC-SHA256
_NONCE_LEN = 48  # base64 of 36 bytes, no padding
_FUTURE_SKEW = 5.0  # seconds a nonce may appear to come from the future (clock jitter)


class AuthError(ValueError):
    """A challenge or credentials we cannot work with."""


class AuthParseError(AuthError):
    """An Authorization/WWW-Authenticate value that does not parse."""


# --------------------------------------------------------------------------- parsing


# The usual shape, for a fast path: scheme, then name=value pairs separated by commas
# (no empty list elements, no line breaks).  Anything else takes the general parser below,
# which gives the same result for these and the precise error for the rest.
_TOKEN_RE_CLASS = "[A-Za-z0-9\\-.!%*_+`'~]"
_FAST_PARAM = (rf'({_TOKEN_RE_CLASS}+)[ \t]*+=[ \t]*+'
               r'(?:"((?:[^"\\\r\n]++|\\[^\r\n])*+)"|([^ \t\r\n,"=]++))')
_FAST_AUTH_RE = re.compile(
    rf"[ \t]*+({_TOKEN_RE_CLASS}++)[ \t]++{_FAST_PARAM}(?:[ \t]*+,[ \t]*+{_FAST_PARAM})*+[ \t]*+")
_FAST_PARAM_RE = re.compile(_FAST_PARAM)


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest k=v, k2="v 2"`` into ("Digest", {"k": "v", "k2": "v 2"}).

    Parameter names are lower-cased, quoted strings unescaped; the scheme is returned as
    written. Raises AuthParseError on anything that is not scheme + auth-params.
    """
    m = _FAST_AUTH_RE.fullmatch(value)
    if m is not None:
        params: dict[str, str] = {}
        for name, quoted, plain in _FAST_PARAM_RE.findall(value, m.end(1)):
            name = name.lower()
            if name in params:
                break  # duplicate: the general parser reports it
            if quoted and "\\" in quoted:
                quoted = _unescape(quoted)
            params[name] = quoted or plain
        else:
            return m.group(1), params
    return _parse_auth_header(value)


def _unescape(s: str) -> str:
    """Undo quoted-pairs: a backslash takes the next character literally."""
    out: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            out.append(s[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    n = len(value)
    i = _skip_ws(value, 0)
    start = i
    while i < n and value[i] in _TOKEN_CHARS:
        i += 1
    scheme = value[start:i]
    if not scheme:
        raise AuthParseError("missing auth scheme")
    if i < n and value[i] not in _WS:
        raise AuthParseError("bad character after auth scheme")
    params: dict[str, str] = {}
    expect_param = True  # at the start or right after a comma
    i = _skip_ws(value, i)
    while i < n:
        if value[i] == ",":  # empty list elements are allowed (RFC 7230 §7)
            expect_param = True
            i = _skip_ws(value, i + 1)
            continue
        if not expect_param:
            raise AuthParseError("missing comma between parameters")
        start = i
        while i < n and value[i] in _TOKEN_CHARS:
            i += 1
        name = value[start:i].lower()
        if not name:
            raise AuthParseError(f"bad parameter name at offset {start}")
        i = _skip_ws(value, i)
        if i >= n or value[i] != "=":
            raise AuthParseError(f"parameter {name!r} has no value")
        i = _skip_ws(value, i + 1)
        if i < n and value[i] == '"':
            val, i = _quoted_string(value, i)
        else:
            start = i
            while i < n and value[i] not in _WS and value[i] not in ',"=':
                i += 1
            val = value[start:i]
            if not val:
                raise AuthParseError(f"parameter {name!r} has an empty value")
        if name in params:
            raise AuthParseError(f"duplicate parameter {name!r}")
        params[name] = val
        expect_param = False
        i = _skip_ws(value, i)
    return scheme, params


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def _quoted_string(s: str, i: int) -> tuple[str, int]:
    """Parse the quoted string starting at s[i] == '"'; return (value, index after)."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s):
                break
            out.append(s[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise AuthParseError("unterminated quoted string")


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- digest math


def _canonical_algorithm(name: str | None) -> str | None:
    """Canonical algorithm name, MD5 when absent (RFC 7616 §3.3), None if unsupported."""
    if name is None:
        return "MD5"
    return _CANONICAL.get(name.strip().upper())


def _hash(algorithm: str, data: str) -> str:
    h = hashlib.sha256 if algorithm.startswith("SHA-256") else hashlib.md5
    return h(data.encode("utf-8")).hexdigest()


def ha1(
    username: str,
    realm: str,
    password: str,
    algorithm: str = "MD5",
    nonce: str = "",
    cnonce: str = "",
) -> str:
    """H(A1) (RFC 7616 §3.4.2). For the -sess variants pass ``nonce`` and ``cnonce``;
    without them the result is the stored-credential form H(user:realm:password)."""
    alg = _canonical_algorithm(algorithm)
    if alg is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    h = _hash(alg, f"{username}:{realm}:{password}")
    if alg.endswith("-sess") and (nonce or cnonce):
        h = _hash(alg, f"{h}:{nonce}:{cnonce}")
    return h


def ha2(
    method: str, uri: str, algorithm: str = "MD5", qop: str | None = None, body: bytes = b""
) -> str:
    """H(A2) (RFC 7616 §3.4.3); ``body`` only matters for qop=auth-int."""
    alg = _canonical_algorithm(algorithm)
    if alg is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    if qop == "auth-int":
        h = hashlib.sha256 if alg.startswith("SHA-256") else hashlib.md5
        return _hash(alg, f"{method}:{uri}:{h(body).hexdigest()}")
    return _hash(alg, f"{method}:{uri}")


def digest_response(
    ha1_value: str,
    ha2_value: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The request-digest (RFC 7616 §3.4.1; RFC 2069 form when ``qop`` is None).
    ``ha1_value`` is the session H(A1) for the -sess algorithms."""
    alg = _canonical_algorithm(algorithm)
    if alg is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    if qop is None:
        return _hash(alg, f"{ha1_value}:{nonce}:{ha2_value}")
    return _hash(alg, f"{ha1_value}:{nonce}:{nc}:{cnonce}:{qop}:{ha2_value}")


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class AuthResult:
    """``status`` is one of ok, stale, bad_password, unknown_user, malformed, bad_nonce,
    bad_realm. ``reason`` is short, for logs, and never holds a password or a digest."""

    status: str
    username: str | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def denied(self) -> bool:
        """Wrong credentials: answer unknown_user exactly like bad_password (403)."""
        return self.status in ("bad_password", "unknown_user")


class DigestServer:
    """Issue challenges and check Authorization/Proxy-Authorization values for one realm.

    How the SIP layer maps results: ok → proceed; stale → 401/407 with
    ``challenge(now, stale=True)``; bad_nonce, bad_realm, malformed → a fresh 401/407
    (400 if it keeps coming); bad_password and unknown_user → 403, identically.
    Check auth only after transaction matching, so retransmissions are absorbed before
    they could look like replays.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl: float = 300.0,
        algorithms: tuple[str, ...] = ("MD5",),
        qop: bool = True,
        max_tracked_nonces: int = 10000,
    ) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        if not algorithms:
            raise ValueError("at least one algorithm is needed")
        canonical: list[str] = []
        for name in algorithms:
            alg = _canonical_algorithm(name)
            if alg is None:
                raise ValueError(f"unsupported algorithm {name!r}")
            canonical.append(alg)
        self.realm = realm
        self._realm_b = realm.encode()
        self.nonce_ttl = nonce_ttl
        self.algorithms = tuple(canonical)
        self.qop = qop
        self._secret = secret
        # Opaque is constant per realm and secret; clients must echo it but we need nothing
        # from it, so it is not checked.
        opaque_mac = hmac.new(secret, b"opaque\0" + realm.encode(), hashlib.sha256)
        self._opaque = opaque_mac.hexdigest()[:16]
        # nonce -> (issue time, highest nc accepted); dict order = first-use order.
        self._nc_seen: dict[str, tuple[float, int]] = {}
        self._max_tracked = max(1, max_tracked_nonces)
        # Nonces issued at or before this time may have lost their nc entry to eviction:
        # such a nonce is answered as stale, so a replay can never slip through.
        self._evicted_upto = float("-inf")

    # ---- nonces

    def make_nonce(self, now: float) -> str:
        raw = struct.pack(">d", now) + secrets.token_bytes(12)
        return base64.urlsafe_b64encode(raw + self._mac(raw)).decode("ascii")

    def _mac(self, raw: bytes) -> bytes:
        # hmac.digest: the one-shot C path (same value as hmac.new(...).digest(), 3x faster)
        return hmac.digest(self._secret, raw + self._realm_b, "sha256")[:16]

    def _nonce_time(self, nonce: str) -> float | None:
        """Issue time of a nonce we issued, None if it is not ours (forged or mangled)."""
        if len(nonce) != _NONCE_LEN:
            return None
        try:
            blob = base64.b64decode(nonce.encode("ascii"), altchars=b"-_", validate=True)
        except (ValueError, UnicodeEncodeError):
            return None
        if len(blob) != _NONCE_RAW_LEN:
            return None
        raw, mac = blob[:20], blob[20:]
        if not hmac.compare_digest(mac, self._mac(raw)):
            return None
        issued: float = struct.unpack(">d", raw[:8])[0]
        return issued

    # ---- challenges

    def challenge(self, now: float, stale: bool = False) -> list[str]:
        """One WWW-Authenticate / Proxy-Authenticate value per configured algorithm, in
        the configured order (RFC 7616 §3.7: the server's most preferred first)."""
        nonce = self.make_nonce(now)
        out = []
        for alg in self.algorithms:
            parts = [
                f"realm={_quote(self.realm)}",
                f'nonce="{nonce}"',
                f'opaque="{self._opaque}"',
                f"algorithm={alg}",
            ]
            if self.qop:
                parts.append('qop="auth"')
            if stale:
                parts.append("stale=true")
            out.append("Digest " + ", ".join(parts))
        return out

    # ---- verification

    def verify(
        self,
        header_value: str,
        method: str,
        now: float,
        lookup: Callable[[str], str | None],
        legacy: Callable[[str], bool] | None = None,
    ) -> AuthResult:
        """Check one Authorization / Proxy-Authorization value for a request ``method``.

        ``lookup(username)`` returns the plaintext password, or None for an unknown user.
        The digest uri is only required to be present: it is not compared with the
        Request-URI (SIPp, for one, sends ``sip:IP:PORT``).
        """
        try:
            scheme, p = parse_auth_header(header_value)
        except AuthParseError as exc:
            return AuthResult("malformed", None, str(exc))
        username = p.get("username")
        if scheme.lower() != "digest":
            return AuthResult("malformed", username, f"unsupported scheme {scheme!r}")
        for name in ("username", "realm", "nonce", "uri", "response"):
            if name not in p:
                return AuthResult("malformed", username, f"missing {name}")
        assert username is not None
        alg = _canonical_algorithm(p.get("algorithm"))
        if alg is None or alg not in self.algorithms:
            return AuthResult("malformed", username, "algorithm not offered")
        qop = p.get("qop")
        nc_value = 0
        if qop is not None:
            if qop.lower() != "auth":
                return AuthResult("malformed", username, f"unsupported qop {qop!r}")
            qop = "auth"
            nc_text, cnonce = p.get("nc"), p.get("cnonce")
            if nc_text is None or cnonce is None:
                return AuthResult("malformed", username, "qop without nc or cnonce")
            if len(nc_text) != 8 or not all(c in "0123456789abcdefABCDEF" for c in nc_text):
                return AuthResult("malformed", username, "bad nc")
            nc_value = int(nc_text, 16)
        elif self.qop and not (legacy is not None and legacy(username)):
            # We asked for qop; answering without it would give up replay protection.
            return AuthResult("malformed", username, "qop missing")
        if p["realm"] != self.realm:
            return AuthResult("bad_realm", username, "realm does not match")
        nonce = p["nonce"]
        issued = self._nonce_time(nonce)
        if issued is None:
            return AuthResult("bad_nonce", username, "nonce not issued by us")

        password = lookup(username)
        known = password is not None
        if password is None:
            # Same work and control flow as a wrong password, so neither timing nor
            # the path taken tells whether the user exists.
            password = secrets.token_hex(16)
        expected = self._expected(p, alg, qop, method, password)
        matches = hmac.compare_digest(
            expected.encode("ascii"), p["response"].lower().encode("utf-8", "replace")
        )
        if not known:
            return AuthResult("unknown_user", username, "unknown user")
        if not matches:
            return AuthResult("bad_password", username, "wrong password")

        if now - issued > self.nonce_ttl or issued - now > _FUTURE_SKEW:
            return AuthResult("stale", username, "nonce expired")
        if qop is not None or self.qop:
            # a legacy (RFC 2069) answer counts as nc 0: the nonce is then good once
            return self._check_replay(nonce, issued, nc_value, now, username)
        return AuthResult("ok", username, "ok")

    def _expected(
        self, p: dict[str, str], alg: str, qop: str | None, method: str, password: str
    ) -> str:
        cnonce = p.get("cnonce", "")
        h1 = ha1(p["username"], self.realm, password, alg, p["nonce"], cnonce)
        h2 = ha2(method, p["uri"], alg, qop)
        return digest_response(h1, h2, p["nonce"], alg, qop, p.get("nc", ""), cnonce)

    def _check_replay(
        self, nonce: str, issued: float, nc: int, now: float, username: str
    ) -> AuthResult:
        entry = self._nc_seen.get(nonce)
        if entry is None:
            if issued <= self._evicted_upto:
                return AuthResult("stale", username, "nonce no longer tracked")
            self._nc_seen[nonce] = (issued, nc)
            if len(self._nc_seen) > self._max_tracked:
                self._prune(now)
        elif nc <= entry[1]:
            return AuthResult("bad_nonce", username, "nonce count reused")
        else:
            self._nc_seen[nonce] = (issued, nc)
        return AuthResult("ok", username, "ok")

    def _prune(self, now: float) -> None:
        horizon = now - self.nonce_ttl
        for key in [k for k, (t, _) in self._nc_seen.items() if t < horizon]:
            del self._nc_seen[key]
        # Still full of live nonces: drop the oldest tenth in first-use order.
        if len(self._nc_seen) > self._max_tracked:
            excess = len(self._nc_seen) - self._max_tracked + self._max_tracked // 10
            for key in list(self._nc_seen)[:excess]:
                issued, _ = self._nc_seen.pop(key)
                self._evicted_upto = max(self._evicted_upto, issued)

    @property
    def tracked_nonces(self) -> int:
        return len(self._nc_seen)


# --------------------------------------------------------------------------- client


def choose_challenge(values: list[str]) -> str:
    """Pick the challenge with the strongest algorithm we support (RFC 7616 §3.7);
    ties go to the first (the server's preference). Raises AuthError if none is usable."""
    best: tuple[int, str] | None = None
    for value in values:
        try:
            scheme, p = parse_auth_header(value)
        except AuthParseError:
            continue
        if scheme.lower() != "digest" or "nonce" not in p or "realm" not in p:
            continue
        alg = _canonical_algorithm(p.get("algorithm"))
        if alg is None or _choose_qop(p) == "":
            continue
        if best is None or _STRENGTH[alg] > best[0]:
            best = (_STRENGTH[alg], value)
    if best is None:
        raise AuthError("no supported digest challenge")
    return best[1]


def _choose_qop(p: dict[str, str]) -> str | None:
    """auth if offered, else auth-int if offered, None without qop, "" if unusable."""
    if "qop" not in p:
        return None
    offered = {q.strip().lower() for q in p["qop"].split(",") if q.strip()}
    if "auth" in offered:
        return "auth"
    if "auth-int" in offered:
        return "auth-int"
    return "" if offered else None


def _echo_algorithm(raw: str | None, canonical: str) -> str:
    if raw is not None and raw and all(c in _TOKEN_CHARS for c in raw):
        return raw
    return canonical


def build_authorization(
    challenge_value: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering one challenge.

    qop=auth is used when offered, auth-int only when it is the only qop offered, and the
    RFC 2069 form when the challenge has no qop. ``body`` is the message body (auth-int).
    """
    scheme, p = parse_auth_header(challenge_value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported scheme {scheme!r}")
    if "realm" not in p or "nonce" not in p:
        raise AuthError("challenge without realm or nonce")
    alg = _canonical_algorithm(p.get("algorithm"))
    if alg is None:
        raise AuthError(f"unsupported algorithm {p.get('algorithm')!r}")
    qop = _choose_qop(p)
    if qop == "":
        raise AuthError(f"unsupported qop {p['qop']!r}")
    if not 1 <= nc <= 0xFFFFFFFF:
        raise ValueError("nc must be between 1 and 0xffffffff")
    realm, nonce = p["realm"], p["nonce"]
    if qop is not None or alg.endswith("-sess"):
        cnonce = cnonce if cnonce is not None else secrets.token_hex(8)
    else:
        cnonce = ""
    nc_text = f"{nc:08x}"
    h1 = ha1(username, realm, password, alg, nonce, cnonce)
    h2 = ha2(method, uri, alg, qop, body)
    response = digest_response(h1, h2, nonce, alg, qop, nc_text, cnonce)
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f'response="{response}"',
        # Echo the server's spelling: some servers compare it case-sensitively.
        f"algorithm={_echo_algorithm(p.get('algorithm'), alg)}",
    ]
    if cnonce:
        parts.append(f"cnonce={_quote(cnonce)}")
    if "opaque" in p:
        parts.append(f"opaque={_quote(p['opaque'])}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)
