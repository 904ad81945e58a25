"""Trunk routing: outbound dial patterns and routes, inbound DID matching, caller ID.

Pure functions and frozen values, no I/O; config loading builds these objects once.

Patterns (`compile_pattern`):

- ``911``, ``+4420...``: an exact number (digits, letters, ``+ * #``).
- ``_9NXXNXXXXXX``: an Asterisk dial pattern.  ``X`` = 0-9, ``Z`` = 1-9, ``N`` = 2-9
  (case-insensitive), ``[1-5]`` / ``[135-7]`` = one of a set, ``.`` = one or more of
  anything, ``!`` = zero or more of anything (``.`` and ``!`` only at the end), other
  characters (digits, ``+ * #``) literal, ``-`` ignored (``_NXX-XXXX``).
- ``re:^00[1-9]\\d+$``: a Python regular expression, matched against the whole number.

Routes are tried in configuration order (what an administrator reads top to bottom is
what happens); `most_specific_first` and ``select_route(..., by_specificity=True)``
offer Asterisk's order instead (a literal beats a class at the first position where two
patterns differ, smaller classes beat larger ones, ``.``/``!`` come last, regexes after
every dial pattern).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ccswitch.sip.errors import ParseError
from ccswitch.sip.uri import quote, split_hostport

__all__ = [
    "DID_KINDS",
    "EMERGENCY_NUMBERS",
    "CallerIdHeaders",
    "DidRule",
    "OutboundRoute",
    "Pattern",
    "caller_id_headers",
    "compile_pattern",
    "emergency_route",
    "is_emergency",
    "match_did",
    "most_specific_first",
    "normalize",
    "resolve_caller_id",
    "select_route",
    "transform",
]

EMERGENCY_NUMBERS = ("911", "112", "999")
DID_KINDS = ("flow", "queue", "extension", "conference")

# Specificity weights: (how many characters a position matches, lowest of them).
_ANY_ONE_OR_MORE = (1 << 20, 0)
_ANY_ZERO_OR_MORE = (1 << 20, 1)  # '!' is more general than '.'
_CLASSES = {"X": ("0-9", 10, "0"), "Z": ("1-9", 9, "1"), "N": ("2-9", 8, "2")}
_LITERAL_CHARS = frozenset("0123456789+*#")
_EXACT_RE = re.compile(r"[0-9A-Za-z+*#]+")
_SEPARATORS = str.maketrans("", "", " -.()/\t")

Weight = tuple[int, int]
Specificity = tuple[int, tuple[Weight, ...]]


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled number pattern.  `kind` is exact, dial or regex; `specificity` sorts the
    most specific first; `min_length` is the shortest number it can match (None for a
    regex)."""

    source: str
    kind: str
    regex: re.Pattern[str] = field(repr=False, compare=False)
    specificity: Specificity = field(repr=False, compare=False)
    min_length: int | None = field(repr=False, compare=False)

    def match(self, number: str) -> bool:
        return self.regex.fullmatch(number) is not None

    def __str__(self) -> str:
        return self.source


def compile_pattern(source: str) -> Pattern:
    """Compile an exact number, ``_`` dial pattern or ``re:`` regex; ValueError says what is
    wrong and where."""
    s = source.strip()
    if not s:
        raise ValueError("empty pattern")
    if s.startswith("re:"):
        body = s[3:]
        if not body:
            raise ValueError(f"pattern {source!r}: empty regular expression after 're:'")
        try:
            rx = re.compile(body)
        except re.error as e:
            raise ValueError(f"pattern {source!r}: invalid regular expression: {e}") from None
        return Pattern(s, "regex", rx, (1, ()), None)
    if s.startswith("_"):
        return _compile_dial(s)
    exact = s.replace("-", "")
    if _EXACT_RE.fullmatch(exact) is None:
        bad = next(c for c in exact if _EXACT_RE.fullmatch(c) is None) if exact else "-"
        raise ValueError(
            f"pattern {source!r}: {bad!r} is not allowed in an exact number "
            "(dial patterns start with '_', regular expressions with 're:')"
        )
    weights = tuple((1, ord(c)) for c in exact)
    return Pattern(s, "exact", re.compile(re.escape(exact)), (0, weights), len(exact))


def _compile_dial(s: str) -> Pattern:
    body = s[1:]
    if not body:
        raise ValueError(f"pattern {s!r}: nothing after '_'")
    parts: list[str] = []
    weights: list[Weight] = []
    min_length = 0
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        pos = i + 1  # 1-based position after the '_', as people count
        up = c.upper()
        if up in _CLASSES:
            rx, count, low = _CLASSES[up]
            parts.append(f"[{rx}]")
            weights.append((count, ord(low)))
            min_length += 1
        elif c == "[":
            end = body.find("]", i + 1)
            if end < 0:
                raise ValueError(f"pattern {s!r}: '[' at position {pos} is never closed")
            chars = _parse_set(s, body[i + 1 : end], pos)
            parts.append("[" + "".join(re.escape(ch) for ch in sorted(chars)) + "]")
            weights.append((len(chars), ord(min(chars))))
            min_length += 1
            i = end
        elif c in ".!":
            if i != n - 1:
                raise ValueError(
                    f"pattern {s!r}: {c!r} (position {pos}) must be the last character"
                )
            parts.append(".+" if c == "." else ".*")
            weights.append(_ANY_ONE_OR_MORE if c == "." else _ANY_ZERO_OR_MORE)
            min_length += 1 if c == "." else 0
        elif c == "-":
            pass  # readability only: _NXX-XXXX
        elif c in _LITERAL_CHARS:
            parts.append(re.escape(c))
            weights.append((1, ord(c)))
            min_length += 1
        elif c == "]":
            raise ValueError(f"pattern {s!r}: ']' at position {pos} without '['")
        else:
            raise ValueError(
                f"pattern {s!r}: unexpected {c!r} at position {pos} (use X, Z, N, [..], "
                "'.', '!', digits, '+', '*', '#'; or a 're:' regular expression)"
            )
        i += 1
    if not parts:
        raise ValueError(f"pattern {s!r}: matches nothing but separators")
    compiled = re.compile("".join(parts), re.DOTALL)
    return Pattern(s, "dial", compiled, (0, tuple(weights)), min_length)


def _parse_set(s: str, content: str, pos: int) -> frozenset[str]:
    if not content:
        raise ValueError(f"pattern {s!r}: empty set '[]' at position {pos}")
    chars: set[str] = set()
    j = 0
    while j < len(content):
        a = content[j]
        if a not in _LITERAL_CHARS:
            raise ValueError(f"pattern {s!r}: {a!r} is not allowed in a set (position {pos})")
        if j + 2 < len(content) and content[j + 1] == "-":
            b = content[j + 2]
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"pattern {s!r}: range {a}-{b} must be between digits")
            if b < a:
                raise ValueError(f"pattern {s!r}: range {a}-{b} is backwards")
            chars.update(chr(k) for k in range(ord(a), ord(b) + 1))
            j += 3
        else:
            chars.add(a)
            j += 1
    return frozenset(chars)


def most_specific_first(patterns: Iterable[Pattern]) -> list[Pattern]:
    """Asterisk's order; patterns of equal specificity keep their given order."""
    return sorted(patterns, key=lambda p: p.specificity)


def transform(number: str, strip: int, prepend: str) -> str:
    """Drop `strip` leading characters, then put `prepend` in front."""
    return prepend + number[strip:]


# ---------------------------------------------------------------- outbound routes


def _compile_all(items: Sequence[str | Pattern], what: str) -> tuple[Pattern, ...]:
    if isinstance(items, str):  # a lone string would be iterated character by character
        raise ValueError(f"{what}: expected a list of patterns, got the string {items!r}")
    return tuple(p if isinstance(p, Pattern) else compile_pattern(p) for p in items)


@dataclass(frozen=True)
class OutboundRoute:
    """Numbers matching `patterns` go out through `trunks` (tried in order), after
    stripping `strip` leading digits and prepending `prepend`.

    `allowed_extensions` lists the extensions (exact numbers or patterns such as
    ``_1XX``) that may use the route; None allows every extension.  An emergency route
    is open to everyone, is tried before every other route, and so cannot be restricted.
    """

    name: str
    patterns: Sequence[str | Pattern]
    trunks: Sequence[str]
    strip: int = 0
    prepend: str = ""
    caller_id: str | None = None
    allowed_extensions: Sequence[str | Pattern] | None = None
    emergency: bool = False
    compiled: tuple[Pattern, ...] = field(init=False, repr=False, compare=False)
    allowed: tuple[Pattern, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"route {self.name!r}"
        if not self.name:
            raise ValueError("route without a name")
        compiled = _compile_all(self.patterns, f"{where} patterns")
        if not compiled:
            raise ValueError(f"{where}: no patterns")
        if isinstance(self.trunks, str) or not self.trunks:
            raise ValueError(f"{where}: trunks must be a non-empty list of trunk names")
        if self.strip < 0:
            raise ValueError(f"{where}: strip must not be negative")
        if self.prepend and _EXACT_RE.fullmatch(self.prepend) is None:
            raise ValueError(f"{where}: prepend {self.prepend!r} may only hold digits, "
                             "letters, '+', '*' and '#'")
        for p in compiled:
            if p.min_length is not None and self.strip > p.min_length:
                raise ValueError(f"{where}: strip {self.strip} is longer than the shortest "
                                 f"number pattern {p.source!r} matches ({p.min_length})")
        allowed = None
        if self.allowed_extensions is not None:
            if self.emergency:
                raise ValueError(f"{where}: an emergency route is open to every extension; "
                                 "remove allowed_extensions")
            allowed = _compile_all(self.allowed_extensions, f"{where} allowed_extensions")
        object.__setattr__(self, "compiled", compiled)
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "trunks", tuple(self.trunks))

    def allows(self, extension: str | None) -> bool:
        """May `extension` (None: no extension, e.g. an API originate) use this route?"""
        if self.allowed is None:  # emergency routes are always unrestricted
            return True
        return extension is not None and any(p.match(extension) for p in self.allowed)

    def match(self, number: str) -> Pattern | None:
        """The first of this route's patterns that matches `number`."""
        for p in self.compiled:
            if p.match(number):
                return p
        return None


def select_route(
    routes: Sequence[OutboundRoute],
    dialled: str,
    from_extension: str | None,
    *,
    by_specificity: bool = False,
) -> tuple[OutboundRoute, str] | None:
    """The route for `dialled` and the number to send, or None (no route, or none this
    extension may use).

    Emergency routes are tried first, whatever their place in the configuration: a
    catch-all such as ``_X.`` above them must not capture (or, through its permissions,
    refuse) an emergency call.  Then the other routes in configuration order, or with
    `by_specificity` the route owning the most specific matching pattern (ties: the
    earlier route).  A route whose transformation would leave nothing to dial is skipped.
    """
    passes = ([r for r in routes if r.emergency], [r for r in routes if not r.emergency])
    for group in passes:
        best: tuple[Specificity, int, OutboundRoute, str] | None = None
        for index, route in enumerate(group):
            if not route.allows(from_extension):
                continue
            if by_specificity:
                matching = [p for p in route.compiled if p.match(dialled)]
                pattern = min(matching, key=lambda p: p.specificity) if matching else None
            else:
                pattern = route.match(dialled)
            if pattern is None:
                continue
            number = transform(dialled, route.strip, route.prepend)
            if not number:
                continue
            if not by_specificity:
                return route, number
            key = (pattern.specificity, index)
            if best is None or key < best[:2]:
                best = (pattern.specificity, index, route, number)
        if best is not None:
            return best[2], best[3]
    return None


def is_emergency(number: str, numbers: Iterable[str] = EMERGENCY_NUMBERS) -> bool:
    return number in set(numbers)


def emergency_route(
    trunks: Sequence[str],
    numbers: Sequence[str] = EMERGENCY_NUMBERS,
    *,
    name: str = "emergency",
    caller_id: str | None = None,
    prefix: str = "",
) -> OutboundRoute:
    """A route for the emergency `numbers` (sent as dialled), open to every extension.

    With `prefix` it matches the prefixed forms instead and strips the prefix: on
    dial-9-for-an-outside-line systems people dial 9911 as well as 911, so configure
    both ``emergency_route(t)`` and ``emergency_route(t, prefix="9", name=...)``."""
    if isinstance(numbers, str) or not numbers:
        raise ValueError("emergency numbers must be a non-empty list")
    return OutboundRoute(
        name=name,
        patterns=[prefix + n for n in numbers],
        trunks=trunks,
        strip=len(prefix),
        caller_id=caller_id,
        emergency=True,
    )


def resolve_caller_id(
    route: OutboundRoute, extension_caller_id: str | None, trunk_caller_id: str | None
) -> str | None:
    """Which caller-ID number an outbound call presents.

    An emergency route's own caller ID wins (the number registered with the emergency
    service for the site's location); otherwise the extension's (a direct line), then the
    route's, then the trunk's default (the main number).
    """
    if route.emergency and route.caller_id:
        return route.caller_id
    return extension_caller_id or route.caller_id or trunk_caller_id


# ---------------------------------------------------------------- inbound DIDs


def normalize(
    number: str,
    country_code: str | None = None,
    *,
    national_prefix: str | None = None,
    international_prefix: str | None = None,
) -> str:
    """A number in +E.164 where it can tell, else cleaned of separators.

    Without `country_code` only spaces, dashes, dots, slashes and brackets are removed.
    With it (e.g. "1", "44"): ``+...`` stays; the international prefix (default 00, or
    011 for country code 1) becomes ``+``; the national trunk prefix (default 0, or 1 for
    country code 1) becomes ``+<cc>``; for country code 1 a bare 10-digit number is
    national; a number of 10 or more digits that starts with the country code is taken as
    E.164 without its ``+`` (how many providers send DIDs).  Anything else (short codes,
    extensions, numbers with ``*`` or ``#``) is returned cleaned but unchanged.
    """
    n = number.strip().translate(_SEPARATORS)
    if not country_code or not n:
        return n
    if not country_code.isdigit() or not 1 <= len(country_code) <= 3:
        raise ValueError(f"country code {country_code!r} must be 1 to 3 digits")
    nanp = country_code == "1"
    if national_prefix is None:
        national_prefix = "1" if nanp else "0"
    if international_prefix is None:
        international_prefix = "011" if nanp else "00"
    if n.startswith("+"):
        return n
    if not n.isdigit() or not n.isascii():
        return n
    if international_prefix and n.startswith(international_prefix):
        rest = n[len(international_prefix) :]
        return "+" + rest if rest else n
    if nanp and len(n) == 10:
        return "+1" + n
    if nanp and len(n) == 11 and n.startswith("1"):
        return "+" + n
    if national_prefix and n.startswith(national_prefix) and len(n) - len(national_prefix) >= 6:
        return "+" + country_code + n[len(national_prefix) :]
    if n.startswith(country_code) and len(n) >= 10:
        return "+" + n
    return n


@dataclass(frozen=True)
class DidRule:
    """Calls to `number` (exact, ``_`` dial pattern or ``re:`` regex) go to `target`, a
    flow, queue, extension or conference (`kind`)."""

    number: str
    kind: str
    target: str
    pattern: Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in DID_KINDS:
            raise ValueError(f"DID {self.number!r}: destination kind {self.kind!r} is not one "
                             f"of {', '.join(DID_KINDS)}")
        if not self.target:
            raise ValueError(f"DID {self.number!r}: empty {self.kind} target")
        object.__setattr__(self, "pattern", compile_pattern(self.number))


def match_did(
    dids: Sequence[DidRule], number: str, country_code: str | None = None
) -> DidRule | None:
    """The rule for a called `number`: an exact rule beats any pattern; patterns are tried
    in order.  Exact numbers compare after `normalize` (with `country_code`, national and
    international forms meet in +E.164; without it a leading ``+`` is ignored).  Patterns
    see the number as received, cleaned of separators, and normalised."""

    def key(n: str) -> str:
        return normalize(n, country_code) if country_code else normalize(n).lstrip("+")

    wanted = key(number)
    for rule in dids:
        if rule.pattern.kind == "exact" and key(rule.number) == wanted:
            return rule
    forms = list(dict.fromkeys([number, normalize(number), normalize(number, country_code)]))
    for rule in dids:
        if rule.pattern.kind != "exact" and any(rule.pattern.match(f) for f in forms):
            return rule
    return None


# ---------------------------------------------------------------- caller ID

_CALLER_NUMBER_RE = re.compile(r"\+?[0-9*#]+")
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'


@dataclass(frozen=True)
class CallerIdHeaders:
    """Header values for an outbound INVITE: `from_` is the From value without its tag;
    `headers` are extra (name, value) pairs (P-Asserted-Identity, Privacy)."""

    from_: str
    headers: tuple[tuple[str, str], ...]


def caller_id_headers(
    number: str,
    name: str | None = None,
    *,
    domain: str,
    privacy: bool = False,
    from_user: str | None = None,
    assert_identity: bool = True,
) -> CallerIdHeaders:
    """From and P-Asserted-Identity (RFC 3325) presenting `number` and `name`.

    `from_user` puts an account name in From (providers that authorise on it) while the
    number still travels in P-Asserted-Identity.  With `privacy`, From is anonymous
    (RFC 3323) and the real identity is only asserted to the provider, with
    ``Privacy: id`` asking it to withhold that from the called party.
    """
    if _CALLER_NUMBER_RE.fullmatch(number) is None:
        raise ValueError(f"caller ID number {number!r} may only hold digits, '*', '#' "
                         "and a leading '+'")
    if from_user is not None and _USER_RE.fullmatch(from_user) is None:
        raise ValueError(f"from_user {from_user!r} is not a valid SIP user part")
    try:
        split_hostport(domain)
    except ParseError as e:
        raise ValueError(f"caller ID domain {domain!r}: {e}") from None
    display = _clean_display(name)
    user = number.replace("#", "%23")  # '#' is not allowed unescaped in a SIP user part
    identity = f"<sip:{user}@{domain}>"
    if display:
        identity = f"{quote(display)} {identity}"
    headers: list[tuple[str, str]] = []
    if assert_identity:
        headers.append(("P-Asserted-Identity", identity))
    if privacy:
        if assert_identity:
            headers.append(("Privacy", "id"))
        return CallerIdHeaders(ANONYMOUS_FROM, tuple(headers))
    if from_user is not None:
        from_ = f"<sip:{from_user}@{domain}>"
        if display:
            from_ = f"{quote(display)} {from_}"
    else:
        from_ = identity
    return CallerIdHeaders(from_, tuple(headers))


def _clean_display(name: str | None) -> str:
    """One line of printable text: a caller name comes from config, LDAP or the far end."""
    if not name:
        return ""
    return " ".join("".join(c if c.isprintable() else " " for c in name).split())
