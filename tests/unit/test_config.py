from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ccswitch.config import (
    Config,
    ConfigError,
    ConfigIssue,
    Report,
    line_of,
    load_as,
    load_config,
    load_config_text,
    where,
)

REPO = Path(__file__).resolve().parents[2]


def errors(text: str, name: str = "config.yaml") -> list[str]:
    """The error lines for `text` (dedented); fails if it loads."""
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), name)
    return str(info.value).splitlines()


def load(text: str, name: str = "/srv/pbx/config.yaml") -> Config:
    return load_config_text(textwrap.dedent(text), name)


# -- loading good files -----------------------------------------------------


def test_demo_config_loads() -> None:
    cfg = load_config(REPO / "config.yaml")
    assert [(e.number, e.name) for e in cfg.extensions] == [
        ("1001", "Alice"),
        ("1002", "Bob"),
        ("1003", "Carol"),
    ]
    assert [e.password for e in cfg.extensions] == ["secret1001", "secret1002", "secret1003"]
    assert [str(s) for s in cfg.server.listen] == ["udp 0.0.0.0:5060", "tcp 0.0.0.0:5060"]
    assert cfg.recordings.directory == REPO / "recordings"
    assert cfg.database.path == REPO / "var" / "ccswitch.db"
    assert cfg.extension("1002") is cfg.extensions[1]
    assert cfg.extension("9999") is None


def test_demo_config_ipv6_examples_are_valid_when_uncommented() -> None:
    text = (REPO / "config.yaml").read_text()
    ipv6 = [line for line in text.splitlines() if '"::"' in line]
    assert len(ipv6) == 2
    for line in ipv6:
        text = text.replace(line, line.replace("# -", "-", 1))
    cfg = load_config_text(text, str(REPO / "config.yaml"))
    assert [str(s) for s in cfg.server.listen][2:] == ["udp [::]:5060", "tcp [::]:5060"]


def test_empty_sections_and_defaults() -> None:
    cfg = load(
        """\
        server:
        logging:
        extensions:
        """
    )
    assert cfg.server.realm == "ccswitch"
    assert [str(s) for s in cfg.server.listen] == ["udp 0.0.0.0:5060", "tcp 0.0.0.0:5060"]
    assert cfg.server.auth_algorithms == ["MD5"]
    assert cfg.rtp.port_min == 32000 and cfg.rtp.port_max == 34999
    assert cfg.calls.no_answer_timeout == 30.0
    assert cfg.logging.level == "info"
    assert cfg.extensions == []


def test_number_like_strings_keep_the_text_as_typed() -> None:
    cfg = load(
        """\
        extensions:
          - number: 1001
            password: 0123
          - number: 0101
            password: "secret"
          - number: +4930123
            password: secret
          - number: "*97"
            password: secret
        """
    )
    assert [e.number for e in cfg.extensions] == ["1001", "0101", "+4930123", "*97"]
    assert cfg.extensions[0].password == "0123"


def test_int_accepted_for_float_and_types_are_converted() -> None:
    cfg = load(
        """\
        calls: {no_answer_timeout: 45, max_forwards: 20}
        server: {auth_algorithms: [SHA-256, MD5], external_address: pbx.example.com}
        """
    )
    assert cfg.calls.no_answer_timeout == 45.0
    assert isinstance(cfg.calls.no_answer_timeout, float)
    assert cfg.server.auth_algorithms == ["SHA-256", "MD5"]
    assert cfg.server.external_address == "pbx.example.com"


def test_password_not_in_repr() -> None:
    cfg = load("extensions: [{number: 1001, password: hunter22}]\n")
    assert "hunter22" not in repr(cfg)


def test_yaml_anchors_and_merge_keys() -> None:
    cfg = load(
        """\
        extensions:
          - &base {number: 1001, password: secret, codecs: [PCMA]}
          - <<: *base
            number: 1002
        """
    )
    assert [(e.number, e.codecs) for e in cfg.extensions] == [
        ("1001", ["PCMA"]),
        ("1002", ["PCMA"]),
    ]


# -- relative paths ---------------------------------------------------------


def test_paths_resolve_relative_to_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "config.yaml"
    conf.parent.mkdir()
    conf.write_text("recordings: {directory: ../rec}\ndatabase: {path: /abs/cdr.db}\n")
    cfg = load_config(conf)
    assert cfg.recordings.directory == tmp_path / "rec"
    assert cfg.database.path == Path("/abs/cdr.db")
    # Defaults, also those of sections absent from the file, resolve the same way.
    assert cfg.control.socket == tmp_path / "etc" / "var" / "ccswitch.sock"


def test_load_config_text_base_dir() -> None:
    cfg = load_config_text("database: {path: x.db}\n", "config.yaml", base_dir=Path("/opt/pbx"))
    assert cfg.database.path == Path("/opt/pbx/x.db")


# -- where things came from -------------------------------------------------


def test_line_of_and_where() -> None:
    cfg = load(
        """\
        # comment
        server:
          listen:
            - transport: udp
              port: 5070
            - {transport: tcp, port: 5071}
        extensions:
          - number: 1001
            password: secret
        """
    )
    udp, tcp = cfg.server.listen
    assert cfg.line_of(udp) == 4
    assert cfg.line_of(udp, "port") == 5
    assert line_of(tcp) == 6
    assert line_of(udp, "address") == 4  # default: the object's own line
    assert line_of(cfg.extensions[0], "password") == 9
    assert where(udp, "port") == "/srv/pbx/config.yaml:5"
    # A section absent from the file names the file without a line.
    assert cfg.where(cfg.rtp) == "/srv/pbx/config.yaml"
    assert cfg.file == "/srv/pbx/config.yaml"
    # Objects built in code have no source.
    assert line_of(Config()) == 0
    assert where(Config()) == "<defaults>"


# -- one test per error kind, with its line -------------------------------


def test_unknown_key_with_suggestion() -> None:
    assert errors(
        """\
        server:
          name: pbx
          relam: x
        extension: []
        """
    ) == [
        "config.yaml:3: server: unknown key 'relam' (did you mean 'realm'?)",
        "config.yaml:4: unknown key 'extension' (did you mean 'extensions'?)",
    ]


def test_unknown_key_without_suggestion() -> None:
    assert errors("rtp:\n  zzz: 1\n") == ["config.yaml:2: rtp: unknown key 'zzz'"]


def test_missing_required_keys() -> None:
    assert errors(
        """\
        extensions:
          - number: 1001
          - password: secret
        server:
          listen:
            - port: 5060
        """
    ) == [
        "config.yaml:2: extensions[0]: missing required key 'password'",
        "config.yaml:3: extensions[1]: missing required key 'number'",
        "config.yaml:6: server.listen[0]: missing required key 'transport'",
    ]


def test_wrong_types() -> None:
    assert errors(
        """\
        calls:
          no_answer_timeout: soon
          max_forwards: 7.5
        recordings:
          enabled: maybe
        server:
          realm: 42
          listen: {transport: udp}
          auth_algorithms: MD5
        rtp: 5
        extensions:
          - number: 1001
            password: secret
            name: [a, b]
        """
    ) == [
        "config.yaml:2: calls.no_answer_timeout: expected a number, got string 'soon'",
        "config.yaml:3: calls.max_forwards: expected an integer, got number 7.5",
        "config.yaml:5: recordings.enabled: expected true or false, got string 'maybe'",
        'config.yaml:7: server.realm: expected a string, got integer 42 (put it in quotes: "42")',
        "config.yaml:8: server.listen: expected a list, got a mapping",
        "config.yaml:9: server.auth_algorithms: expected a list, got string 'MD5'",
        "config.yaml:10: rtp: expected a mapping, got integer 5",
        "config.yaml:14: extensions[0].name: expected a string, got a list",
    ]


def test_null_for_a_required_scalar() -> None:
    assert errors("extensions:\n  - number:\n    password: secret\n") == [
        "config.yaml:2: extensions[0].number: expected a string, got an empty value (null)"
    ]


def test_yaml_booleans_are_not_strings_and_bools_not_ints() -> None:
    assert errors("server: {name: yes, nonce_ttl: true}\n") == [
        'config.yaml:1: server.name: expected a string, got boolean yes (put it in quotes: "yes")',
        "config.yaml:1: server.nonce_ttl: expected an integer, got boolean true",
    ]


def test_literal_choices_with_case_suggestion() -> None:
    assert errors(
        """\
        logging: {level: Debug}
        server:
          listen:
            - {transport: sctp}
          auth_algorithms: [MD5, sha-256]
        extensions:
          - {number: 1001, password: secret, codecs: [PCMU, G729]}
        """
    ) == [
        "config.yaml:1: logging.level: expected one of 'debug', 'info', 'warning', 'error', "
        "got string 'Debug' (did you mean 'debug'?)",
        "config.yaml:4: server.listen[0].transport: expected one of 'udp', 'tcp', "
        "got string 'sctp'",
        "config.yaml:5: server.auth_algorithms[1]: expected one of 'MD5', 'SHA-256', "
        "got string 'sha-256' (did you mean 'SHA-256'?)",
        "config.yaml:7: extensions[0].codecs[1]: expected one of 'PCMU', 'PCMA', got string 'G729'",
    ]


def test_out_of_range_and_length_and_pattern() -> None:
    assert errors(
        """\
        calls:
          no_answer_timeout: 601
          max_forwards: 0
        server:
          listen:
            - {transport: udp, port: 70000}
          auth_algorithms: []
        extensions:
          - number: 10a1
            password: abc
        """
    ) == [
        "config.yaml:2: calls.no_answer_timeout: must be at most 600, got 601",
        "config.yaml:3: calls.max_forwards: must be at least 1, got 0",
        "config.yaml:6: server.listen[0].port: must be at most 65535, got 70000",
        "config.yaml:7: server.auth_algorithms: too short: at least 1 item required",
        "config.yaml:9: extensions[0].number: '10a1' is not valid: "
        "use 1 to 32 of the characters 0-9 * # +",
        "config.yaml:10: extensions[0].password: too short: at least 4 characters required",
    ]


def test_addresses() -> None:
    assert errors(
        """\
        server:
          listen:
            - {transport: udp, address: 10.0.0.300}
          external_address: "bad host!"
        rtp: {address: localhost}
        """
    ) == [
        "config.yaml:3: server.listen[0].address: '10.0.0.300' is not an IP address",
        "config.yaml:4: server.external_address: 'bad host!' is not an IP address or host name",
        "config.yaml:5: rtp.address: 'localhost' is not an IP address",
    ]


def test_unique_items() -> None:
    assert errors("server: {auth_algorithms: [MD5, SHA-256, MD5]}\n") == [
        "config.yaml:1: server.auth_algorithms: 'MD5' is listed twice"
    ]


def test_duplicate_yaml_key() -> None:
    assert errors(
        """\
        server:
          realm: a
          realm: b
        """
    ) == ["config.yaml:3: server: duplicate key 'realm' (first at line 2)"]


def test_duplicate_extension_number() -> None:
    assert errors(
        """\
        extensions:
          - number: 1001
            password: secret
          - number: 1002
            password: secret
          - number: "1001"
            password: secret
        """
    ) == [
        "config.yaml:6: extensions[2].number: duplicate extension number '1001' (first at line 2)"
    ]


def test_duplicate_listen_socket() -> None:
    assert errors(
        """\
        server:
          listen:
            - {transport: udp, port: 5060}
            - {transport: tcp, port: 5060}
            - {transport: udp, address: 0.0.0.0}
        """
    ) == ["config.yaml:5: server.listen[2]: udp 0.0.0.0:5060 is listed twice (first at line 3)"]


def test_rtp_port_range() -> None:
    assert errors("rtp:\n  port_min: 40001\n  port_max: 40000\n") == [
        "config.yaml:2: rtp.port_min: must be even (RTP uses even ports), got 40001",
        "config.yaml:3: rtp.port_max: must be greater than port_min (40001), got 40000",
    ]


def test_cross_check_skipped_for_a_field_that_already_failed() -> None:
    # port_min is invalid (so holds its default 32000): no echo "must be greater".
    assert errors("rtp:\n  port_min: 80000\n  port_max: 20000\n") == [
        "config.yaml:2: rtp.port_min: must be at most 65535, got 80000",
    ]


def test_control_socket_path_too_long() -> None:
    lines = errors(f"control:\n  socket: /{'s' * 120}.sock\n")
    assert lines == [
        "config.yaml:2: control.socket: path too long for a Unix socket (126 bytes, at most 107): "
        "choose a shorter path"
    ]


def test_many_errors_at_once_in_file_order() -> None:
    lines = errors(
        """\
        extensions:
          - number: 1001
            password: x
            codecs: [PCMU, opus]
          - number: 1001
            password: secret
        rtp:
          port_min: 1001
        serverr: {}
        calls: {max_forwards: -1}
        """
    )
    assert [line.split(":")[1] for line in lines] == ["3", "4", "5", "8", "9", "10"]
    assert len(lines) == 6
    assert "duplicate extension number '1001'" in lines[2]


def test_error_names_the_given_path(tmp_path: Path) -> None:
    conf = tmp_path / "config.yaml"
    conf.write_text("logging: {level: loud}\n")
    with pytest.raises(ConfigError) as info:
        load_config(conf)
    assert str(info.value).startswith(f"{conf}:1: logging.level: expected one of")
    assert info.value.issues[0] == ConfigIssue(str(conf), 1, info.value.issues[0].message)


# -- files that are not a configuration at all ------------------------------


def test_yaml_syntax_error_reports_the_parser_line() -> None:
    assert errors('server:\n  name: "unterminated\n  realm: x\n') == [
        "config.yaml:4: YAML syntax error: found unexpected end of stream "
        "(while scanning a quoted scalar at line 2)"
    ]
    assert errors("server: [a, b\nrtp: {}\n") == [
        "config.yaml:2: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 1)"
    ]


def test_tabs() -> None:
    assert errors("server:\n\tname: x\n") == [
        "config.yaml:2: YAML syntax error: found character '\\t' that cannot start any token "
        "(tabs are not allowed for indentation: use spaces)"
    ]


def test_unquoted_ipv6_address_hint() -> None:
    assert errors("rtp:\n  address: ::\n") == [
        "config.yaml:2: YAML syntax error: mapping values are not allowed here "
        '(quote IPv6 addresses: "::")'
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    assert errors(text) == [
        "config.yaml:1: the file is empty: expected a mapping of sections "
        "(server:, extensions:, ...)"
    ]


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list"), ("just text\n", "string 'just text'"), ("42\n", "integer 42")],
)
def test_top_level_not_a_mapping(text: str, got: str) -> None:
    assert errors(text) == [
        f"config.yaml:1: the top level must be a mapping of sections "
        f"(server:, extensions:, ...), got {got}"
    ]


def test_unknown_tag_and_bad_characters() -> None:
    assert errors("server: {name: !secret x}\n") == [
        "config.yaml:1: server.name: unsupported YAML tag '!secret'"
    ]
    assert errors("server:\n  name: a\x00b\n") == [
        "config.yaml:2: invalid character '\\x00' in the file"
    ]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert str(info.value) == f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"server:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f"{bad}:2: not valid UTF-8 text"


# -- the generic machinery on a schema of its own ----------------------------
# This is how later sections (trunks, queues...) plug in: dataclasses,
# metadata constraints, a dict[str, T] section, and a check_config hook.


@dataclass(frozen=True, kw_only=True)
class _Trunk:
    host: str = field(metadata={"host": True})
    port: int | None = None
    codecs: list[str] = field(default_factory=list, metadata={"choices": ("PCMU", "PCMA")})


@dataclass(frozen=True, kw_only=True)
class _Route:
    number: str = field(metadata={"number_like": True})
    to: str = field(metadata={"key": "goto"})


@dataclass(frozen=True, kw_only=True)
class _Schema:
    trunks: dict[str, _Trunk] = field(default_factory=dict)
    routes: list[_Route] = field(default_factory=list)
    ratio: float = field(default=0.5, metadata={"min": 0, "max": 1})
    flows: list[Path] = field(default_factory=lambda: [Path("flows/main.yaml")])

    def check_config(self, report: Report) -> None:
        for route in self.routes:
            if route.to not in self.trunks:
                report.error(route, "to", f"no trunk named '{route.to}'")


def test_generic_schema() -> None:
    text = textwrap.dedent(
        """\
        trunks:
          carrier: {host: sip.example.net, codecs: [PCMA]}
          backup:
            host: 192.0.2.1
            port: 5080
        routes:
          - {number: 0800, goto: carrier}
        """
    )
    obj = load_as(_Schema, text, name="/etc/x/s.yaml")
    assert obj.trunks["backup"].port == 5080
    assert obj.trunks["carrier"].port is None
    assert obj.routes[0].number == "0800" and obj.routes[0].to == "carrier"
    assert obj.flows == [Path("/etc/x/flows/main.yaml")]
    assert line_of(obj.trunks["backup"], "port") == 5
    assert line_of(obj.routes[0], "to") == 7


def test_generic_schema_errors() -> None:
    text = textwrap.dedent(
        """\
        trunks:
          carrier: {host: "no such host", codecs: [G722]}
          7: {host: h, port: x}
        routes:
          - {number: 1, to: carrier}
          - {number: 2, goto: nowhere}
        ratio: 2
        """
    )
    with pytest.raises(ConfigError) as info:
        load_as(_Schema, text, name="s.yaml")
    assert str(info.value).splitlines() == [
        "s.yaml:2: trunks.carrier.host: 'no such host' is not an IP address or host name",
        "s.yaml:2: trunks.carrier.codecs[0]: expected one of 'PCMU', 'PCMA', got 'G722'",
        "s.yaml:3: trunks.7.port: expected an integer, got string 'x'",
        "s.yaml:5: routes[0]: unknown key 'to' (did you mean 'goto'?)",
        "s.yaml:5: routes[0]: missing required key 'goto'",
        "s.yaml:6: routes[1].goto: no trunk named 'nowhere'",
        "s.yaml:7: ratio: must be at most 1, got 2",
    ]


def test_unsupported_schema_type_is_a_programming_error() -> None:
    @dataclass
    class Bad:
        x: set[int] = field(default_factory=set)

    with pytest.raises(TypeError, match="unsupported type"):
        load_as(Bad, "x: [1]\n", name="b.yaml")


def test_unknown_metadata_key_is_a_programming_error() -> None:
    @dataclass
    class Typo:
        x: int = field(default=1, metadata={"max_length": 3})

    with pytest.raises(TypeError, match="unknown metadata"):
        load_as(Typo, "x: 2\n", name="t.yaml")
