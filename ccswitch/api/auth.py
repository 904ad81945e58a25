"""Authentication and roles for the HTTP API.

* Passwords: argon2id (argon2-cffi's PasswordHasher defaults), verified in a thread.
* API tokens: `ccs_` + 32 random bytes (url-safe base64); stored as SHA-256 hex.
  Sent as `Authorization: Bearer <token>`.
* Web sessions: a random id in the `ccswitch_session` cookie (HttpOnly,
  SameSite=Strict), stored as SHA-256 hex with an expiry.  Requests that change
  state with a cookie must also carry `X-Requested-With: ccswitch` (a header a
  cross-site form cannot send): CSRF protection.

Roles: admin (everything), supervisor (monitoring; the queues listed on the
user, "*" meaning all, and the agents of those queues; recordings of those
queues), agent (their own extension's state and calls).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "Principal",
    "generate_password",
    "hash_password",
    "hash_secret",
    "new_token",
    "verify_password",
]

_hasher = PasswordHasher()
TOKEN_PREFIX = "ccs_"
SESSION_COOKIE = "ccswitch_session"
CSRF_HEADER = "X-Requested-With"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


_dummy: list[str] = []


def verify_dummy(password: str) -> None:
    """As slow as checking a real user's password: timing does not reveal who exists."""
    if not _dummy:
        _dummy.append(_hasher.hash(secrets.token_urlsafe(16)))
    verify_password(_dummy[0], password)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


@dataclass
class Principal:
    """Who makes a request."""

    username: str
    role: str  # admin, supervisor, agent
    extension: str = ""
    queues: list[str] = field(default_factory=list)
    via: str = "token"  # token, session, local
    # the queue -> members map, to derive a supervisor's agents (set per request)
    members_of: Callable[[str], Iterable[str]] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_supervisor(self) -> bool:
        return self.role in ("admin", "supervisor")

    @property
    def all_queues(self) -> bool:
        return self.is_admin or (self.role == "supervisor" and "*" in self.queues)

    def sees_queue(self, queue: str) -> bool:
        if self.all_queues:
            return True
        if self.role == "supervisor":
            return queue in self.queues
        # an agent sees the queues it is a member of
        return self.members_of is not None and self.extension in self.members_of(queue)

    def supervises_agent(self, agent: str) -> bool:
        """May change this agent's state, monitor it, see its calls."""
        if self.all_queues:
            return True
        if self.role == "supervisor":
            if self.members_of is None:
                return False
            return any(agent in self.members_of(q) for q in self.queues)
        return False

    def controls_agent(self, agent: str) -> bool:
        return self.supervises_agent(agent) or (self.role == "agent" and agent == self.extension
                                                and bool(agent))

    def info(self) -> dict[str, Any]:
        return {"username": self.username, "role": self.role,
                "extension": self.extension or None, "queues": list(self.queues),
                "via": self.via}
