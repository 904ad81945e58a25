from __future__ import annotations

import pytest

from ccswitch.apps.routing import (
    ANONYMOUS_FROM,
    DidRule,
    OutboundRoute,
    caller_id_headers,
    compile_pattern,
    emergency_route,
    is_emergency,
    match_did,
    most_specific_first,
    normalize,
    resolve_caller_id,
    select_route,
    transform,
)
from ccswitch.sip.uri import NameAddr

# ---------------------------------------------------------------- patterns


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    ("_X", ["0", "9"], ["", "a", "10"]),
    ("_Z", ["1", "9"], ["0"]),
    ("_N", ["2", "9"], ["0", "1"]),
    ("_nxxnxxxxxx", ["2125551234"], ["1125551234", "212555123"]),  # letters: any case
    ("_9NXXNXXXXXX", ["92125551234"], ["2125551234", "91125551234", "921255512345"]),
    ("_[1-5]", ["1", "3", "5"], ["0", "6"]),
    ("_[135-7]X", ["10", "39", "50", "69", "79"], ["20", "40", "80"]),
    ("_[*#]X", ["*1", "#9"], ["11"]),
    ("_9.", ["91", "9123456"], ["9", "81"]),
    ("_9!", ["9", "91", "9123"], ["8"]),
    ("_+.", ["+442079460000"], ["+", "442079460000"]),
    ("_011.", ["01144207946"], ["011"]),
    ("_NXX-XXXX", ["5551234"], ["555-1234", "1551234"]),
    ("_*7X", ["*70", "*79"], ["*7", "70"]),
    ("911", ["911"], ["9111", "91", "0911"]),
    ("+15551234567", ["+15551234567"], ["15551234567"]),
    ("555-1234", ["5551234"], ["555-1234"]),
    ("re:^00[1-9]\\d+$", ["0044123", "001234"], ["0001", "00", "44123"]),
    ("re:1\\d{2}", ["100", "199"], ["1000", "x100"]),  # whole-number match
])
def test_pattern_matching(pattern: str, yes: list[str], no: list[str]) -> None:
    p = compile_pattern(pattern)
    for n in yes:
        assert p.match(n), f"{pattern} should match {n}"
    for n in no:
        assert not p.match(n), f"{pattern} should not match {n}"


def test_pattern_kinds_and_min_length() -> None:
    assert compile_pattern("911").kind == "exact"
    assert compile_pattern("_9NXX").kind == "dial"
    assert compile_pattern("re:.*").kind == "regex"
    assert compile_pattern("_9NXXNXXXXXX").min_length == 11
    assert compile_pattern("_9.").min_length == 2
    assert compile_pattern("_9!").min_length == 1
    assert compile_pattern("re:9").min_length is None
    assert compile_pattern("  _9X  ").source == "_9X"


@pytest.mark.parametrize(("pattern", "message"), [
    ("", "empty pattern"),
    ("_", "nothing after '_'"),
    ("_--", "matches nothing"),
    ("_9.X", "'.' (position 2) must be the last character"),
    ("_!9", "'!' (position 1) must be the last character"),
    ("_9[1-5", "'[' at position 2 is never closed"),
    ("_9[]", "empty set"),
    ("_9[5-1]", "range 5-1 is backwards"),
    ("_[a-c]", "'a' is not allowed in a set"),
    ("_9]", "']' at position 2 without '['"),
    ("_9Q", "unexpected 'Q' at position 2"),
    ("_9 1", "unexpected ' ' at position 2"),
    ("re:", "empty regular expression"),
    ("re:(12", "invalid regular expression"),
    ("9 1 1", "' ' is not allowed in an exact number"),
    ("91?", "'?' is not allowed in an exact number"),
])
def test_invalid_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        compile_pattern(pattern)
    assert message in str(exc.value)
    if pattern.strip():
        assert repr(pattern.strip()) in str(exc.value)  # names the offending pattern


def test_most_specific_first_like_asterisk() -> None:
    sources = ["re:9.*", "_X.", "_9!", "_9.", "_9NXXNXXXXXX", "_91NXXNXXXXXX", "_9XXX",
               "911", "_9[1-3]X", "_9Z", "_9N"]
    ordered = [p.source for p in most_specific_first(compile_pattern(s) for s in sources)]
    # at the first differing position: literal, then smaller classes; '.' then '!' last
    assert ordered == ["911", "_91NXXNXXXXXX", "_9[1-3]X", "_9N", "_9NXXNXXXXXX", "_9Z",
                       "_9XXX", "_9.", "_9!", "_X.", "re:9.*"]


def test_most_specific_first_is_stable_for_ties() -> None:
    a, b = compile_pattern("re:a"), compile_pattern("re:b")
    assert most_specific_first([b, a]) == [b, a]


def test_transform() -> None:
    assert transform("92125551234", 1, "") == "2125551234"
    assert transform("92125551234", 1, "+1") == "+12125551234"
    assert transform("011442079460000", 3, "+") == "+442079460000"
    assert transform("+442079460000", 0, "") == "+442079460000"


# ---------------------------------------------------------------- outbound routes


def routes() -> list[OutboundRoute]:
    return [
        OutboundRoute("local", ["_9NXXNXXXXXX"], ["carrier-a", "carrier-b"], strip=1,
                      prepend="+1", caller_id="+12125550100"),
        OutboundRoute("international", ["_9011."], ["carrier-a"], strip=4, prepend="+",
                      allowed_extensions=["1001", "_20X"]),
        OutboundRoute("e164", ["_+."], ["carrier-b", "carrier-a"]),
        OutboundRoute("catch-all", ["_X."], ["carrier-c"], allowed_extensions=["1001"]),
        emergency_route(["carrier-a"], caller_id="+12125550199"),
    ]


def test_nine_plus_ten_digits_strips_the_nine() -> None:
    route, number = select_route(routes(), "92125551234", "1002") or (None, "")
    assert route is not None and route.name == "local" and number == "+12125551234"
    assert route.trunks == ("carrier-a", "carrier-b")


def test_e164_passthrough() -> None:
    route, number = select_route(routes(), "+442079460000", "1002") or (None, "")
    assert route is not None and route.name == "e164" and number == "+442079460000"


def test_international_011_becomes_plus_for_allowed_extensions() -> None:
    found = select_route(routes(), "9011442079460000", "1001")
    assert found is not None and found[0].name == "international"
    assert found[1] == "+442079460000"
    found = select_route(routes(), "9011442079460000", "205")  # allowed by pattern _20X
    assert found is not None and found[0].name == "international"


def test_extension_not_allowed_gets_none() -> None:
    # 1002 may not use international; the only other match is the catch-all, also denied
    assert select_route(routes(), "9011442079460000", "1002") is None
    assert select_route(routes(), "9011442079460000", "215") is None
    assert select_route(routes(), "9011442079460000", None) is None


def test_not_allowed_falls_through_to_next_route() -> None:
    rs = [
        OutboundRoute("premium", ["_9."], ["a"], strip=1, allowed_extensions=["1001"]),
        OutboundRoute("standard", ["_9."], ["b"], strip=1),
    ]
    found = select_route(rs, "955", "1002")
    assert found is not None and found[0].name == "standard"
    found = select_route(rs, "955", "1001")
    assert found is not None and found[0].name == "premium"


def test_no_matching_route() -> None:
    assert select_route(routes(), "", "1001") is None
    assert select_route(routes(), "abc", "1001") is None


def test_config_order_wins_by_default_and_specificity_on_request() -> None:
    rs = [
        OutboundRoute("broad", ["_9X."], ["a"], strip=1),
        OutboundRoute("narrow", ["_9NXXNXXXXXX"], ["b"], strip=1, prepend="+1"),
    ]
    found = select_route(rs, "92125551234", "1001")
    assert found is not None and found[0].name == "broad"
    found = select_route(rs, "92125551234", "1001", by_specificity=True)
    assert found == (rs[1], "+12125551234")
    # specificity still honours permissions
    rs[1] = OutboundRoute("narrow", ["_9NXXNXXXXXX"], ["b"], strip=1, allowed_extensions=[])
    found = select_route(rs, "92125551234", "1001", by_specificity=True)
    assert found is not None and found[0].name == "broad"


def test_specificity_ties_keep_config_order() -> None:
    rs = [OutboundRoute("first", ["_9X."], ["a"]), OutboundRoute("second", ["_9X."], ["b"])]
    found = select_route(rs, "912", "1", by_specificity=True)
    assert found is not None and found[0].name == "first"


@pytest.mark.parametrize("number", ["911", "112", "999"])
def test_emergency_always_allowed_and_first(number: str) -> None:
    rs = [
        # a catch-all listed first, restricted to one extension, must not capture 911
        OutboundRoute("catch-all", ["_X."], ["expensive"], allowed_extensions=["1001"]),
        emergency_route(["carrier-a"]),
    ]
    for ext in ("1001", "1002", None):
        found = select_route(rs, number, ext)
        assert found is not None and found[0].name == "emergency" and found[1] == number
        assert found[0].emergency


def test_emergency_with_dial_prefix() -> None:
    rs = [emergency_route(["a"]), emergency_route(["a"], prefix="9", name="emergency-9")]
    assert select_route(rs, "9911", "1001") == (rs[1], "911")
    assert select_route(rs, "911", "1001") == (rs[0], "911")


def test_emergency_numbers_configurable() -> None:
    r = emergency_route(["a"], numbers=["000", "106"])
    assert select_route([r], "000", "x") == (r, "000")
    assert select_route([r], "911", "x") is None
    assert is_emergency("112") and not is_emergency("113")
    assert is_emergency("000", ["000"])


def test_emergency_route_cannot_be_restricted() -> None:
    with pytest.raises(ValueError, match="open to every extension"):
        OutboundRoute("e", ["911"], ["a"], emergency=True, allowed_extensions=["1001"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"patterns": []}, "no patterns"),
    ({"patterns": "_9."}, "expected a list of patterns"),
    ({"patterns": ["_9[", "_9."]}, "never closed"),
    ({"trunks": []}, "trunks must be a non-empty list"),
    ({"trunks": "carrier"}, "trunks must be a non-empty list"),
    ({"strip": -1}, "strip must not be negative"),
    ({"strip": 3}, "strip 3 is longer than the shortest number pattern '_9.'"),
    ({"prepend": "+1 "}, "prepend"),
    ({"name": ""}, "route without a name"),
    ({"allowed_extensions": ["_1X["]}, "never closed"),
])
def test_route_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "r", "patterns": ["_9."], "trunks": ["a"]}
    args.update(kwargs)
    with pytest.raises(ValueError) as exc:
        OutboundRoute(**args)  # type: ignore[arg-type]
    assert message in str(exc.value)


def test_route_transformation_leaving_nothing_is_skipped() -> None:
    rs = [OutboundRoute("strip-all", ["911"], ["a"], strip=3),
          OutboundRoute("next", ["911"], ["b"])]
    found = select_route(rs, "911", "1")
    assert found is not None and found[0].name == "next"


def test_resolve_caller_id_precedence() -> None:
    local = routes()[0]
    emergency = routes()[-1]
    plain = OutboundRoute("p", ["_X."], ["a"])
    assert resolve_caller_id(local, "+12125550111", "+12125550000") == "+12125550111"
    assert resolve_caller_id(local, None, "+12125550000") == "+12125550100"
    assert resolve_caller_id(plain, None, "+12125550000") == "+12125550000"
    assert resolve_caller_id(plain, None, None) is None
    # the number registered for the site's location, whatever the extension presents
    assert resolve_caller_id(emergency, "+12125550111", None) == "+12125550199"


# ---------------------------------------------------------------- normalisation and DIDs


@pytest.mark.parametrize(("number", "cc", "expected"), [
    ("+44 20 7946 0000", "44", "+442079460000"),
    ("020 7946 0000", "44", "+442079460000"),
    ("0044 20 7946 0000", "44", "+442079460000"),
    ("442079460000", "44", "+442079460000"),
    ("(212) 555-1234", "1", "+12125551234"),
    ("12125551234", "1", "+12125551234"),
    ("011442079460000", "1", "+442079460000"),
    ("+12125551234", "1", "+12125551234"),
    ("1001", "44", "1001"),  # an extension stays
    ("999", "44", "999"),  # a short code stays
    ("*97", "1", "*97"),
    ("020-7946-0000", None, "02079460000"),
])
def test_normalize(number: str, cc: str | None, expected: str) -> None:
    assert normalize(number, cc) == expected


def test_normalize_custom_prefixes_and_bad_country_code() -> None:
    assert normalize("8 495 123 45 67", "7", national_prefix="8",
                     international_prefix="810") == "+74951234567"
    with pytest.raises(ValueError, match="country code"):
        normalize("020", "4x")


def dids() -> list[DidRule]:
    return [
        DidRule("_+4420794600XX", "queue", "sales"),
        DidRule("+442079460001", "flow", "main-ivr"),
        DidRule("02079460002", "extension", "1001"),
        DidRule("re:^\\+?4420794601\\d\\d$", "conference", "bridge"),
    ]


def test_exact_did_beats_earlier_pattern() -> None:
    rule = match_did(dids(), "+442079460001")
    assert rule is not None and rule.kind == "flow" and rule.target == "main-ivr"


def test_pattern_did() -> None:
    rule = match_did(dids(), "+442079460042")
    assert rule is not None and rule.kind == "queue" and rule.target == "sales"
    rule = match_did(dids(), "442079460142")
    assert rule is not None and rule.kind == "conference"


def test_did_without_country_code_ignores_plus_only() -> None:
    rule = match_did(dids(), "442079460001")
    assert rule is not None and rule.target == "main-ivr"
    assert match_did(dids(), "02079460001") is None  # national form needs a country code
    assert match_did(dids(), "+449999") is None


def test_did_national_and_international_forms_meet_with_country_code() -> None:
    for form in ("02079460001", "00442079460001", "442079460001", "+44 20 7946 0001"):
        rule = match_did(dids(), form, country_code="44")
        assert rule is not None and rule.target == "main-ivr", form
    rule = match_did(dids(), "+442079460002", country_code="44")
    assert rule is not None and rule.kind == "extension" and rule.target == "1001"
    # patterns see the normalised form too
    rule = match_did(dids(), "02079460077", country_code="44")
    assert rule is not None and rule.target == "sales"


def test_unknown_did() -> None:
    assert match_did(dids(), "+15551234567", country_code="44") is None
    assert match_did([], "123") is None


@pytest.mark.parametrize(("args", "message"), [
    (("123", "voicemail", "x"), "kind 'voicemail' is not one of flow, queue"),
    (("123", "flow", ""), "empty flow target"),
    (("_12[", "flow", "x"), "never closed"),
])
def test_did_validation(args: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        DidRule(*args)
    assert message in str(exc.value)


# ---------------------------------------------------------------- caller ID headers


def test_caller_id_number_and_name() -> None:
    cid = caller_id_headers("+12125550100", "Acme Sales", domain="sip.provider.example")
    assert cid.from_ == '"Acme Sales" <sip:+12125550100@sip.provider.example>'
    assert cid.headers == (("P-Asserted-Identity", cid.from_),)
    na = NameAddr.parse(cid.from_)
    assert na.display == "Acme Sales" and na.sip_uri.user == "+12125550100"


def test_caller_id_without_name_and_without_pai() -> None:
    cid = caller_id_headers("2125550100", domain="192.0.2.5:5070", assert_identity=False)
    assert cid.from_ == "<sip:2125550100@192.0.2.5:5070>" and cid.headers == ()


def test_caller_id_from_user_keeps_number_in_pai() -> None:
    cid = caller_id_headers("+12125550100", "Acme", domain="p.example", from_user="acct42")
    assert cid.from_ == '"Acme" <sip:acct42@p.example>'
    assert cid.headers == (("P-Asserted-Identity", '"Acme" <sip:+12125550100@p.example>'),)


def test_caller_id_privacy() -> None:
    cid = caller_id_headers("+12125550100", "Secret Person", domain="p.example", privacy=True)
    assert cid.from_ == ANONYMOUS_FROM
    assert "Secret" not in cid.from_ and "2125550100" not in cid.from_
    assert cid.headers == (
        ("P-Asserted-Identity", '"Secret Person" <sip:+12125550100@p.example>'),
        ("Privacy", "id"),
    )
    anon = caller_id_headers("100", domain="p.example", privacy=True, assert_identity=False)
    assert anon.from_ == ANONYMOUS_FROM and anon.headers == ()


def test_caller_id_name_is_sanitised_and_quoted() -> None:
    cid = caller_id_headers("100", 'Evil\r\nVia: x "quoted" \\', domain="p.example")
    assert "\r" not in cid.from_ and "\n" not in cid.from_
    na = NameAddr.parse(cid.from_)
    assert na.display == 'Evil Via: x "quoted" \\'
    assert caller_id_headers("1#2", domain="p").from_ == "<sip:1%232@p>"


@pytest.mark.parametrize(("number", "kw", "message"), [
    ("12 34", {}, "caller ID number"),
    ("", {}, "caller ID number"),
    ("1@evil", {}, "caller ID number"),
    ("100", {"from_user": "a b"}, "from_user"),
    ("100", {"domain": "bad domain"}, "caller ID domain"),
])
def test_caller_id_validation(number: str, kw: dict[str, str], message: str) -> None:
    args: dict[str, str] = {"domain": "p.example"}
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        caller_id_headers(number, **args)  # type: ignore[arg-type]
