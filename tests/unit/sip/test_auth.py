from __future__ import annotations

import base64
import hashlib
import re
import secrets

import pytest

from ccswitch.sip import auth
from ccswitch.sip.auth import (
    AuthError,
    AuthParseError,
    AuthResult,
    DigestServer,
    build_authorization,
    choose_challenge,
    digest_response,
    ha1,
    ha2,
    parse_auth_header,
)

REALM = "ccswitch.test"
SECRET = b"0123456789abcdef0123456789abcdef"
USERS = {"1001": "s3cret-1001", "1002": "pässwörd", 'we"ird\\user': "x"}
NOW = 10_000.0


def lookup(user: str) -> str | None:
    return USERS.get(user)


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def sha256(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def nonce_of(challenge: str) -> str:
    return parse_auth_header(challenge)[1]["nonce"]


def assert_safe(result: AuthResult, *secrets: str) -> None:
    """A result's reason must never leak a password or a digest."""
    for s in secrets:
        assert s not in result.reason


# --------------------------------------------------------------------------- parsing


class TestParseAuthHeader:
    def test_rfc2617_challenge_with_folding(self) -> None:
        value = (
            'Digest\r\n realm="testrealm@host.com",\r\n qop="auth,auth-int",\r\n'
            ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
            ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
        )
        scheme, p = parse_auth_header(value)
        assert scheme == "Digest"
        assert p == {
            "realm": "testrealm@host.com",
            "qop": "auth,auth-int",
            "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
        }

    def test_backslash_escapes_and_commas_in_quotes(self) -> None:
        _, p = parse_auth_header(r'Digest username="a\"b\\c", realm="x, y=z", qop="auth, auth-int"')
        assert p == {"username": 'a"b\\c', "realm": "x, y=z", "qop": "auth, auth-int"}

    def test_case_insensitive_names_and_unquoted_tokens(self) -> None:
        scheme, p = parse_auth_header(
            'digest USERNAME="1001", Algorithm=MD5, NC=00000001, QoP=auth, Stale=TRUE'
        )
        assert scheme == "digest"  # returned as written; compare with .lower()
        assert p == {
            "username": "1001",
            "algorithm": "MD5",
            "nc": "00000001",
            "qop": "auth",
            "stale": "TRUE",
        }

    def test_no_spaces_spaces_around_equals_and_empty_elements(self) -> None:
        _, p = parse_auth_header('Digest a="1",b=2 ,  c = "3" ,, d\t=\t4,')
        assert p == {"a": "1", "b": "2", "c": "3", "d": "4"}

    def test_empty_quoted_value_and_unicode(self) -> None:
        _, p = parse_auth_header('Digest opaque="", username="José"')
        assert p == {"opaque": "", "username": "José"}

    def test_scheme_only(self) -> None:
        assert parse_auth_header("  Digest  ") == ("Digest", {})

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "   ",
            '"Digest"',
            "Digest realm",
            "Digest realm=",
            'Digest realm="abc',
            'Digest realm="abc\\',
            "Digest a=b c=d",
            'Digest realm="x"junk',
            "Digest =x",
            "Digest a=b, a=c",
            "Basic dXNlcjpwYXNz",
            "Basic dXNlcjpwYXNz==",
            "Digest, Digest a=b",
            "Digest a=b, Digest c=d",
            "Dig@est a=b",
        ],
    )
    def test_garbage_raises(self, value: str) -> None:
        with pytest.raises(AuthParseError):
            parse_auth_header(value)


# --------------------------------------------------------------------------- digest math


class TestVectors:
    def test_rfc2617_section_3_5(self) -> None:
        h1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
        h2 = ha2("GET", "/dir/index.html")
        response = digest_response(
            h1, h2, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "MD5", "auth", "00000001", "0a4f113b"
        )
        assert response == "6629fae49393a05397450978507c4ef1"

    def test_rfc2617_client_header(self) -> None:
        challenge = (
            'Digest realm="testrealm@host.com", qop="auth,auth-int", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
            'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
        )
        value = build_authorization(
            challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
        )
        _, p = parse_auth_header(value)
        assert p["response"] == "6629fae49393a05397450978507c4ef1"
        assert p["qop"] == "auth"
        assert p["nc"] == "00000001"
        assert p["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"

    @pytest.mark.parametrize(
        ("algorithm", "expected"),
        [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ],
    )
    def test_rfc7616_section_3_9_1(self, algorithm: str, expected: str) -> None:
        challenge = (
            'Digest realm="http-auth@example.org", qop="auth, auth-int", '
            f"algorithm={algorithm}, "
            'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
            'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
        )
        value = build_authorization(
            challenge,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        scheme, p = parse_auth_header(value)
        assert scheme == "Digest"
        assert p == {
            "username": "Mufasa",
            "realm": "http-auth@example.org",
            "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "uri": "/dir/index.html",
            "response": expected,
            "algorithm": algorithm,
            "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
            "qop": "auth",
            "nc": "00000001",
        }

    def test_sess_ha1(self) -> None:
        base = md5("u:r:p")
        assert ha1("u", "r", "p", "MD5") == base
        assert ha1("u", "r", "p", "md5-SESS") == base  # no nonce: stored-credential form
        assert ha1("u", "r", "p", "MD5-sess", "n", "c") == md5(f"{base}:n:c")
        base256 = sha256("u:r:p")
        assert ha1("u", "r", "p", "SHA-256-sess", "n", "c") == sha256(f"{base256}:n:c")

    def test_unsupported_algorithm_in_helpers(self) -> None:
        with pytest.raises(AuthError):
            ha1("u", "r", "p", "SHA-512-256")
        with pytest.raises(AuthError):
            ha2("GET", "/", "SHA-1")


# --------------------------------------------------------------------------- client


class TestClient:
    def test_no_qop_rfc2069_form(self) -> None:
        challenge = 'Digest realm="asterisk", nonce="5f3a1c2b"'
        value = build_authorization(challenge, "REGISTER", "sip:pbx.example", "1001", "pw")
        _, p = parse_auth_header(value)
        h1 = md5("1001:asterisk:pw")
        h2 = md5("REGISTER:sip:pbx.example")
        assert p["response"] == md5(f"{h1}:5f3a1c2b:{h2}")
        assert "qop" not in p and "nc" not in p and "cnonce" not in p and "opaque" not in p
        assert p["algorithm"] == "MD5"

    def test_auth_int_when_only_offer(self) -> None:
        body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
        challenge = 'Digest realm="r", nonce="n", qop="auth-int", algorithm=MD5'
        value = build_authorization(
            challenge, "INVITE", "sip:a@b", "u", "p", cnonce="cn", nc=3, body=body
        )
        _, p = parse_auth_header(value)
        assert p["qop"] == "auth-int"
        assert p["nc"] == "00000003"
        h2 = md5(f"INVITE:sip:a@b:{hashlib.md5(body).hexdigest()}")
        assert p["response"] == md5(f"{md5('u:r:p')}:n:00000003:cn:auth-int:{h2}")

    def test_prefers_auth_over_auth_int(self) -> None:
        value = build_authorization(
            'Digest realm="r", nonce="n", qop="auth-int,auth"', "INVITE", "sip:a@b", "u", "p"
        )
        assert parse_auth_header(value)[1]["qop"] == "auth"

    def test_sha256_sess(self) -> None:
        challenge = 'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256-sess'
        value = build_authorization(challenge, "INVITE", "sip:x", "u", "p", cnonce="c")
        _, p = parse_auth_header(value)
        h1 = sha256(f"{sha256('u:r:p')}:n:c")
        assert p["response"] == sha256(f"{h1}:n:00000001:c:auth:{sha256('INVITE:sip:x')}")
        assert p["algorithm"] == "SHA-256-sess"

    def test_echoes_algorithm_spelling_and_random_cnonce(self) -> None:
        challenge = 'Digest realm="r", nonce="n", qop="auth", algorithm=md5'
        a = parse_auth_header(build_authorization(challenge, "REGISTER", "sip:x", "u", "p"))[1]
        b = parse_auth_header(build_authorization(challenge, "REGISTER", "sip:x", "u", "p"))[1]
        assert a["algorithm"] == "md5"
        assert re.fullmatch(r"[0-9a-f]{16}", a["cnonce"])
        assert a["cnonce"] != b["cnonce"]

    def test_nc_formatting(self) -> None:
        challenge = 'Digest realm="r", nonce="n", qop="auth"'
        value = build_authorization(challenge, "REGISTER", "sip:x", "u", "p", nc=255)
        assert parse_auth_header(value)[1]["nc"] == "000000ff"
        with pytest.raises(ValueError):
            build_authorization(challenge, "REGISTER", "sip:x", "u", "p", nc=0)

    @pytest.mark.parametrize(
        "challenge",
        [
            'Basic realm="r"',
            'Digest realm="r", nonce="n", algorithm=SHA-512-256',
            'Digest realm="r", nonce="n", qop="auth-conf"',
            'Digest nonce="n"',
            'Digest realm="r"',
        ],
    )
    def test_unusable_challenges(self, challenge: str) -> None:
        with pytest.raises(AuthError):
            build_authorization(challenge, "REGISTER", "sip:x", "u", "p")

    def test_choose_strongest(self) -> None:
        md5_ch = 'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"'
        sha_ch = 'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"'
        sess_ch = 'Digest realm="r", nonce="n3", algorithm=SHA-256-sess, qop="auth"'
        unknown = 'Digest realm="r", nonce="n4", algorithm=SHA-512-256, qop="auth"'
        assert choose_challenge([md5_ch, sha_ch]) == sha_ch
        assert choose_challenge([unknown, md5_ch]) == md5_ch
        assert choose_challenge([sess_ch, md5_ch, sha_ch]) == sha_ch
        assert choose_challenge(["garbage ===", 'Basic realm="r"', md5_ch]) == md5_ch
        conf_only = 'Digest realm="r", nonce="n6", algorithm=SHA-256, qop="auth-conf"'
        assert choose_challenge([conf_only, md5_ch]) == md5_ch
        no_alg = 'Digest realm="r", nonce="n5"'  # MD5 by default
        assert choose_challenge([no_alg, md5_ch]) == no_alg  # tie: server's order
        with pytest.raises(AuthError):
            choose_challenge([unknown, 'Basic realm="r"'])
        with pytest.raises(AuthError):
            choose_challenge([])


# --------------------------------------------------------------------------- server


def make_server(**kw: object) -> DigestServer:
    return DigestServer(REALM, SECRET, **kw)  # type: ignore[arg-type]


class TestChallenge:
    def test_one_per_algorithm_in_order(self) -> None:
        server = make_server(algorithms=("SHA-256", "md5"))
        values = server.challenge(NOW)
        assert len(values) == 2
        parsed = [parse_auth_header(v) for v in values]
        assert [p["algorithm"] for _, p in parsed] == ["SHA-256", "MD5"]
        for scheme, p in parsed:
            assert scheme == "Digest"
            assert p["realm"] == REALM
            assert p["qop"] == "auth"
            assert re.fullmatch(r"[0-9a-f]{16}", p["opaque"])
            assert re.fullmatch(r"[A-Za-z0-9_-]{48}", p["nonce"])
            assert "stale" not in p
        assert parsed[0][1]["nonce"] == parsed[1][1]["nonce"]

    def test_stale_flag_and_no_qop(self) -> None:
        server = make_server(qop=False)
        (value,) = server.challenge(NOW, stale=True)
        _, p = parse_auth_header(value)
        assert p["stale"] == "true"
        assert "qop" not in p

    def test_nonces_are_unique(self) -> None:
        server = make_server()
        assert len({nonce_of(server.challenge(NOW)[0]) for _ in range(50)}) == 50

    def test_realm_with_quote_is_escaped(self) -> None:
        server = DigestServer('odd "realm"', SECRET)
        assert parse_auth_header(server.challenge(NOW)[0])[1]["realm"] == 'odd "realm"'

    @pytest.mark.parametrize(
        "kwargs",
        [{"secret": b""}, {"algorithms": ()}, {"algorithms": ("SHA-512-256",)}],
    )
    def test_bad_config(self, kwargs: dict[str, object]) -> None:
        args: dict[str, object] = {"realm": REALM, "secret": SECRET, **kwargs}
        with pytest.raises(ValueError):
            DigestServer(**args)  # type: ignore[arg-type]


def answer(
    server: DigestServer,
    user: str = "1001",
    password: str | None = None,
    method: str = "REGISTER",
    uri: str = "sip:ccswitch.test",
    now: float = NOW,
    index: int = 0,
    **kw: object,
) -> str:
    challenge = server.challenge(now)[index]
    pw = USERS[user] if password is None else password
    return build_authorization(challenge, method, uri, user, pw, **kw)  # type: ignore[arg-type]


class TestVerify:
    @pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
    def test_round_trip_each_algorithm(self, algorithm: str) -> None:
        server = make_server(algorithms=(algorithm,))
        value = answer(server)
        assert parse_auth_header(value)[1]["algorithm"] == algorithm
        result = server.verify(value, "REGISTER", NOW + 1, lookup)
        assert result == AuthResult("ok", "1001", "ok")
        assert result.ok and not result.denied

    @pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
    def test_round_trip_without_qop(self, algorithm: str) -> None:
        server = make_server(algorithms=(algorithm,), qop=False)
        value = answer(server)
        assert "qop" not in parse_auth_header(value)[1]
        assert server.verify(value, "REGISTER", NOW, lookup).ok
        # RFC 2069 style: the same credentials are reused until the nonce goes stale.
        assert server.verify(value, "REGISTER", NOW + 10, lookup).ok
        assert server.verify(value, "REGISTER", NOW + 301, lookup).status == "stale"
        assert server.tracked_nonces == 0

    def test_qop_server_accepts_any_algorithm_offered(self) -> None:
        server = make_server(algorithms=("SHA-256", "MD5"))
        assert server.verify(answer(server, index=0), "REGISTER", NOW, lookup).ok
        assert server.verify(answer(server, index=1), "REGISTER", NOW, lookup).ok

    def test_algorithm_not_offered_is_malformed(self) -> None:
        server = make_server(algorithms=("SHA-256",))
        other = make_server(algorithms=("MD5",))  # same realm and secret: nonce is genuine
        result = server.verify(answer(other), "REGISTER", NOW, lookup)
        assert result.status == "malformed"

    def test_algorithm_case_insensitive_and_default_md5(self) -> None:
        server = make_server(algorithms=("md5",))
        nonce = nonce_of(server.challenge(NOW)[0])
        for alg_param in ["algorithm=md5, ", 'algorithm="Md5", ', ""]:
            h2 = md5("REGISTER:sip:ccswitch.test")
            resp = md5(f"{md5('1001:' + REALM + ':s3cret-1001')}:{nonce}:00000001:c:auth:{h2}")
            value = (
                f'Digest username="1001", realm="{REALM}", nonce="{nonce}", '
                f'uri="sip:ccswitch.test", {alg_param}response="{resp.upper()}", '
                'qop=auth, nc=00000001, cnonce="c"'
            )
            fresh = make_server(algorithms=("md5",))  # fresh replay table each time
            assert fresh.verify(value, "REGISTER", NOW, lookup).ok, alg_param

    def test_uri_is_not_compared_with_request_uri_but_is_signed(self) -> None:
        server = make_server()
        value = answer(server, uri="sip:127.0.0.1:5060", method="INVITE")
        assert server.verify(value, "INVITE", NOW, lookup).ok
        tampered = value.replace('uri="sip:127.0.0.1:5060"', 'uri="sip:127.0.0.1:5061"')
        assert server.verify(tampered, "INVITE", NOW, lookup).status == "bad_password"

    def test_method_is_signed(self) -> None:
        server = make_server()
        value = answer(server, method="REGISTER")
        assert server.verify(value, "INVITE", NOW, lookup).status == "bad_password"

    def test_escaped_username_and_unicode_password(self) -> None:
        server = make_server()
        assert server.verify(answer(server, user='we"ird\\user'), "REGISTER", NOW, lookup).ok
        result = server.verify(answer(server, user="1002"), "REGISTER", NOW, lookup)
        assert result == AuthResult("ok", "1002", "ok")

    def test_bad_password(self) -> None:
        server = make_server()
        value = answer(server, password="guess")
        result = server.verify(value, "REGISTER", NOW, lookup)
        assert result.status == "bad_password" and result.denied
        assert result.username == "1001"
        assert_safe(result, "guess", USERS["1001"], parse_auth_header(value)[1]["response"])

    def test_unknown_user_looks_like_bad_password(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[str] = []
        real_hash = auth._hash

        def counting_hash(algorithm: str, data: str) -> str:
            calls.append(algorithm)
            return real_hash(algorithm, data)

        monkeypatch.setattr(auth, "_hash", counting_hash)
        server = make_server(algorithms=("MD5-sess",))
        looked_up: list[str] = []

        def spy(user: str) -> str | None:
            looked_up.append(user)
            return lookup(user)

        results = []
        hash_counts = []
        for user in ("1001", "9999"):
            value = answer(server, user="1001", password="wrong")
            value = value.replace('username="1001"', f'username="{user}"')
            calls.clear()
            results.append(server.verify(value, "REGISTER", NOW, spy))
            hash_counts.append(len(calls))
        bad, unknown = results
        assert (bad.status, unknown.status) == ("bad_password", "unknown_user")
        assert bad.denied and unknown.denied
        assert hash_counts[0] == hash_counts[1] > 0
        assert looked_up == ["1001", "9999"]
        assert "wrong" not in unknown.reason and "9999" not in unknown.reason

    def test_unknown_user_never_ok_even_with_empty_password(self) -> None:
        server = make_server()
        value = answer(server, user="1001", password="").replace('"1001"', '"ghost"')
        assert server.verify(value, "REGISTER", NOW, lambda u: None).status == "unknown_user"

    def test_unknown_user_cannot_win_with_the_dummy_password(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(secrets, "token_hex", lambda n=None: "dummy")
        server = make_server()
        challenge = server.challenge(NOW)[0]
        value = build_authorization(challenge, "REGISTER", "sip:x", "ghost", "dummy")
        assert server.verify(value, "REGISTER", NOW, lookup).status == "unknown_user"

    def test_stale_nonce(self) -> None:
        server = make_server(nonce_ttl=300.0)
        value = answer(server, now=NOW)
        assert server.verify(value, "REGISTER", NOW + 300.0, lookup).ok  # boundary still fresh
        value = answer(server, now=NOW)
        result = server.verify(value, "REGISTER", NOW + 301.0, lookup)
        assert result.status == "stale"
        # A stale nonce with a wrong password is a wrong password, not "stale"
        # (stale=true would let the client retry without asking its user).
        wrong = answer(server, now=NOW, password="nope")
        assert server.verify(wrong, "REGISTER", NOW + 301.0, lookup).status == "bad_password"
        # The client re-authenticates against the stale=true challenge.
        retry = build_authorization(
            server.challenge(NOW + 301.0, stale=True)[0],
            "REGISTER",
            "sip:ccswitch.test",
            "1001",
            USERS["1001"],
        )
        assert server.verify(retry, "REGISTER", NOW + 302.0, lookup).ok

    def test_nonce_from_the_future_is_stale(self) -> None:
        # e.g. a nonce from before a restart (monotonic clock restarted, same secret)
        server = make_server()
        value = answer(server, now=NOW + 5000)
        assert server.verify(value, "REGISTER", NOW, lookup).status == "stale"

    def test_forged_nonces(self) -> None:
        server = make_server()
        good = answer(server)
        nonce = parse_auth_header(good)[1]["nonce"]
        flipped = nonce[:10] + ("A" if nonce[10] != "A" else "B") + nonce[11:]
        raw = base64.urlsafe_b64decode(nonce)
        # Claim a fresher issue time while keeping the old MAC.
        retimed = base64.urlsafe_b64encode(b"\x7f" + raw[1:]).decode()
        other_secret = DigestServer(REALM, b"another secret")
        other_realm = DigestServer("other.realm", SECRET)
        forged = [
            flipped,
            retimed,
            "x" * 48,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nonce + "AAAA",
            "é" * 48,
            "=" * 48,
            nonce_of(other_secret.challenge(NOW)[0]),
            nonce_of(other_realm.challenge(NOW)[0]),
        ]
        for bad in forged:
            # A client holding the right password still fails with a forged nonce.
            challenge = f'Digest realm="{REALM}", nonce="{bad}", qop="auth"'
            value = build_authorization(challenge, "REGISTER", "sip:x", "1001", USERS["1001"])
            result = server.verify(value, "REGISTER", NOW, lookup)
            assert result.status == "bad_nonce", bad

    def test_bad_realm(self) -> None:
        server = make_server()
        nonce = nonce_of(server.challenge(NOW)[0])
        challenge = f'Digest realm="evil.example", nonce="{nonce}", qop="auth"'
        value = build_authorization(challenge, "REGISTER", "sip:x", "1001", USERS["1001"])
        assert server.verify(value, "REGISTER", NOW, lookup).status == "bad_realm"

    def test_replayed_nc(self) -> None:
        server = make_server()
        challenge = server.challenge(NOW)[0]

        def cred(nc: int, cnonce: str = "abc") -> str:
            return build_authorization(
                challenge, "INVITE", "sip:2000@x", "1001", USERS["1001"], cnonce=cnonce, nc=nc
            )

        assert server.verify(cred(1), "INVITE", NOW, lookup).ok
        replay = server.verify(cred(1), "INVITE", NOW + 1, lookup)
        assert replay.status == "bad_nonce" and "reused" in replay.reason
        assert server.verify(cred(1, cnonce="other"), "INVITE", NOW, lookup).status == "bad_nonce"
        assert server.verify(cred(2), "INVITE", NOW, lookup).ok
        assert server.verify(cred(5), "INVITE", NOW, lookup).ok  # gaps are fine
        assert server.verify(cred(3), "INVITE", NOW, lookup).status == "bad_nonce"

    def test_failed_attempt_does_not_burn_nc(self) -> None:
        # An attacker without the password cannot lock a nonce by sending a huge nc.
        server = make_server()
        challenge = server.challenge(NOW)[0]
        attack = build_authorization(challenge, "INVITE", "sip:x", "1001", "guess", nc=99)
        assert server.verify(attack, "INVITE", NOW, lookup).status == "bad_password"
        legit = build_authorization(challenge, "INVITE", "sip:x", "1001", USERS["1001"])
        assert server.verify(legit, "INVITE", NOW, lookup).ok

    def test_replay_table_is_bounded_and_never_lets_a_replay_through(self) -> None:
        server = make_server(max_tracked_nonces=10)
        creds = [answer(server, now=NOW + i * 0.01) for i in range(50)]
        for i, value in enumerate(creds):
            assert server.verify(value, "REGISTER", NOW + i * 0.01, lookup).ok
            assert server.tracked_nonces <= 10
        # The oldest entries were evicted: replaying them must not succeed.
        for value in creds:
            assert server.verify(value, "REGISTER", NOW + 1, lookup).status in (
                "stale",
                "bad_nonce",
            )

    def test_expired_entries_are_pruned_first(self) -> None:
        server = make_server(max_tracked_nonces=5, nonce_ttl=60.0)
        for i in range(5):
            assert server.verify(answer(server, now=NOW), "REGISTER", NOW + i, lookup).ok
        later = NOW + 1000
        for _ in range(3):
            assert server.verify(answer(server, now=later), "REGISTER", later, lookup).ok
        assert server.tracked_nonces == 3
        # Nothing live was evicted, so a fresh unused nonce from before is still accepted.
        assert server.verify(answer(server, now=later - 1), "REGISTER", later, lookup).ok

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "garbage",
            "Basic dXNlcjpwYXNz",
            'Bearer token="x"',
            'Digest username="1001"',
            'Digest username="1001", realm="ccswitch.test", nonce="n", uri="sip:x"',
            'Digest realm="ccswitch.test", nonce="n", uri="sip:x", response="0"',
            'Digest username="1001", realm="ccswitch.test", nonce="n", response="0"',
            'Digest username="1001", realm="ccswitch.test", nonce="n", uri="sip:x", '
            'response="0", qop=auth',
            'Digest username="1001", realm="ccswitch.test", nonce="n", uri="sip:x", '
            'response="0", qop=auth, nc=zz000001, cnonce="c"',
            'Digest username="1001", realm="ccswitch.test", nonce="n", uri="sip:x", '
            'response="0", qop=auth, nc=1, cnonce="c"',
            'Digest username="1001", realm="ccswitch.test", nonce="n", uri="sip:x", '
            'response="0", qop=auth-int, nc=00000001, cnonce="c"',
            'Digest username="1001", realm="ccswitch.test", nonce="n", uri="sip:x", '
            'response="0", algorithm=SHA-512-256, qop=auth, nc=00000001, cnonce="c"',
            'Digest username="1001", realm="ccswitch.test", nonce="n", uri="sip:x", '
            'response="0"',  # no qop although the server asked for it
            'Digest username="1001", realm="ccswitch.test", nonce="n, uri="sip:x"',
            'Digest username="1001" realm="ccswitch.test"',
            "Digest \x00\x01\x02",
            "Digest " + "a=b, " * 2000 + "a=c",
        ],
    )
    def test_malformed(self, value: str) -> None:
        server = make_server()
        result = server.verify(value, "REGISTER", NOW, lookup)
        assert result.status == "malformed"
        assert not result.ok and not result.denied

    def test_sipp_captured_header(self) -> None:
        # SIPp [authentication] output: no spaces, unquoted qop/nc/algorithm, uri sip:IP:PORT.
        server = make_server()
        nonce = nonce_of(server.challenge(NOW)[0])
        h1 = md5(f"1001:{REALM}:s3cret-1001")
        h2 = md5("REGISTER:sip:127.0.0.1:5060")
        resp = md5(f"{h1}:{nonce}:00000001:6b8b4567:auth:{h2}")
        value = (
            f'Digest username="1001",realm="{REALM}",cnonce="6b8b4567",nc=00000001,'
            f'qop=auth,uri="sip:127.0.0.1:5060",nonce="{nonce}",response="{resp}",'
            "algorithm=MD5"
        )
        assert server.verify(value, "REGISTER", NOW + 0.5, lookup).ok

    def test_baresip_captured_header(self) -> None:
        # baresip/libre: no algorithm (MD5 implied), opaque echoed, 16-hex-digit cnonce.
        server = make_server()
        _, ch = parse_auth_header(server.challenge(NOW)[0])
        nonce, opaque = ch["nonce"], ch["opaque"]
        h1 = md5(f"1001:{REALM}:s3cret-1001")
        h2 = md5("INVITE:sip:2000@ccswitch.test")
        resp = md5(f"{h1}:{nonce}:00000001:33b3fb6ea5a09c1d:auth:{h2}")
        value = (
            f'Digest username="1001", realm="{REALM}", nonce="{nonce}", '
            f'uri="sip:2000@ccswitch.test", response="{resp}", opaque="{opaque}", '
            'cnonce="33b3fb6ea5a09c1d", qop=auth, nc=00000001'
        )
        assert server.verify(value, "INVITE", NOW, lookup).ok

    def test_linphone_captured_header_sha256(self) -> None:
        # belle-sip orders realm first and sends algorithm before username.
        server = make_server(algorithms=("SHA-256", "MD5"))
        _, ch = parse_auth_header(server.challenge(NOW)[0])
        nonce = ch["nonce"]
        uri = "sip:ccswitch.test;transport=udp"
        h1 = sha256(f"1001:{REALM}:s3cret-1001")
        h2 = sha256(f"REGISTER:{uri}")
        resp = sha256(f"{h1}:{nonce}:00000001:3KLaHyT9cA6d0sdc:auth:{h2}")
        value = (
            f'Digest realm="{REALM}", nonce="{nonce}", algorithm=SHA-256, '
            f'opaque="{ch["opaque"]}", username="1001",  uri="{uri}", response="{resp}", '
            'cnonce="3KLaHyT9cA6d0sdc", nc=00000001, qop=auth'
        )
        assert server.verify(value, "REGISTER", NOW, lookup).ok
