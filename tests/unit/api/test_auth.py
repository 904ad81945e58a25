"""Passwords, tokens and the role scope of a principal."""

from __future__ import annotations

from ccswitch.api import auth
from ccswitch.api.auth import Principal

MEMBERS = {"sales": {"1002", "1003"}, "support": {"1004"}}


def members(q: str) -> set[str]:
    return MEMBERS.get(q, set())


def test_password_hash_and_verify() -> None:
    h = auth.hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct horse" not in h
    assert auth.verify_password(h, "correct horse")
    assert not auth.verify_password(h, "wrong horse")
    assert not auth.verify_password("", "anything")
    assert not auth.verify_password("not-a-hash", "anything")


def test_tokens_are_random_and_hashed() -> None:
    a, b = auth.new_token(), auth.new_token()
    assert a != b and a.startswith("ccs_") and len(a) > 40
    assert auth.hash_secret(a) == auth.hash_secret(a) != auth.hash_secret(b)
    assert len(auth.hash_secret(a)) == 64


def test_admin_sees_everything() -> None:
    p = Principal("root", "admin", members_of=members)
    assert p.sees_queue("anything") and p.supervises_agent("9999") and p.controls_agent("1")


def test_supervisor_scope_is_their_queues_and_those_queues_agents() -> None:
    p = Principal("s", "supervisor", queues=["sales"], members_of=members)
    assert p.sees_queue("sales") and not p.sees_queue("support")
    assert p.supervises_agent("1002") and p.controls_agent("1003")
    assert not p.supervises_agent("1004")
    star = Principal("s", "supervisor", queues=["*"], members_of=members)
    assert star.sees_queue("support") and star.supervises_agent("1004")


def test_agent_scope_is_itself() -> None:
    p = Principal("a", "agent", extension="1002", members_of=members)
    assert p.controls_agent("1002") and not p.controls_agent("1003")
    assert not p.supervises_agent("1002")
    assert p.sees_queue("sales") and not p.sees_queue("support")
    nobody = Principal("a", "agent", extension="", members_of=members)
    assert not nobody.controls_agent("")
