"""ccswitch: a self-hosted SIP softswitch and contact-center server."""

__version__ = "0.1.0"
