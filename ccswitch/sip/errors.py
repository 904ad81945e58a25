"""Errors raised by the sans-IO SIP core."""

from __future__ import annotations


class SipError(Exception):
    """Base class for SIP core errors."""


class ParseError(SipError):
    """A message or header could not be parsed; str(e) names the problem (used in 400 reasons)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
