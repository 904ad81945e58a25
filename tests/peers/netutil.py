"""Loopback-only port helpers for the peer drivers.

The loopback interface is shared with other workloads, so every port is
picked at run time by binding, and peer RTP stays inside 30000-31999 (the
server under test uses its own range).  Picking a free port is inherently
racy (another process may take it between our check and the peer's bind);
``reserve_*`` helpers shrink that window and the peers retry where it matters.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import time

LOOPBACK = "127.0.0.1"
PEER_RTP_LO = 30000
PEER_RTP_HI = 31999

# Ports handed out by this process recently (port -> time): two peers started
# close together must never get the same port although each was free when
# checked.  After RESERVE_S a peer has bound its ports (then the bind check
# excludes them) or is gone, so the reservation lapses.
RESERVE_S = 60.0
_handed_out: dict[int, float] = {}
_lock = threading.Lock()


def _reserved(port: int, now: float) -> bool:
    t = _handed_out.get(port)
    return t is not None and now - t < RESERVE_S


class NonLoopbackError(ValueError):
    """A target outside 127.0.0.0/8 and ::1 was given to a peer helper."""


def assert_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address (or ``localhost``), else raise.

    Accepts ``[::1]`` and ``host:port`` forms.
    """
    h = host_of(host)
    if h == "localhost":
        return host
    try:
        if ipaddress.ip_address(h).is_loopback:
            return host
    except ValueError:
        pass
    raise NonLoopbackError(f"refusing non-loopback target {host!r} (peers talk to loopback only)")


def host_of(hostport: str) -> str:
    """'127.0.0.1:5060' -> '127.0.0.1', '[::1]:5060' -> '::1', 'h' -> 'h'."""
    hp = hostport.split(";", 1)[0].strip()
    if hp.startswith("["):
        return hp[1 : hp.index("]")]
    if hp.count(":") == 1:
        return hp.rsplit(":", 1)[0]
    return hp


def uri_host(uri: str) -> str:
    """'sip:100@127.0.0.1:5060;transport=udp' -> '127.0.0.1'."""
    rest = uri.split(":", 1)[1] if uri.startswith(("sip:", "sips:")) else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0].strip("<>")
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    return host_of(rest)


def _bindable(port: int, kind: int, host: str = LOOPBACK) -> bool:
    s = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            # same semantics as a listening server (baresip, sipp) would get
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def port_is_free(port: int, *, udp: bool = True, tcp: bool = False, host: str = LOOPBACK) -> bool:
    """True if ``port`` can currently be bound on ``host`` for the given protocols."""
    if udp and not _bindable(port, socket.SOCK_DGRAM, host):
        return False
    return not (tcp and not _bindable(port, socket.SOCK_STREAM, host))


def _claim(port: int) -> bool:
    now = time.monotonic()
    with _lock:
        if _reserved(port, now):
            return False
        _handed_out[port] = now
        return True


def free_udp_port(host: str = LOOPBACK) -> int:
    """A free UDP port from the kernel's ephemeral range."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((host, 0))
            p = int(s.getsockname()[1])
        finally:
            s.close()
        if _claim(p):
            return p
    raise RuntimeError("no free UDP port found")


def free_tcp_port(host: str = LOOPBACK) -> int:
    """A free TCP port (for listeners such as baresip's ctrl_tcp)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, 0))
            p = int(s.getsockname()[1])
        finally:
            s.close()
        if _claim(p):
            return p
    raise RuntimeError("no free TCP port found")


def free_sip_port(host: str = LOOPBACK) -> int:
    """A port free for both UDP and TCP (baresip and sipp listen on both)."""
    for _ in range(100):
        p = free_udp_port(host)
        if port_is_free(p, udp=False, tcp=True, host=host):
            return p
    raise RuntimeError("no free SIP port (udp+tcp) found")


def free_sip_port_pair(host: str = LOOPBACK) -> int:
    """A SIP port ``p`` free for UDP+TCP whose ``p + 1`` is free for TCP as well
    (baresip also listens for SIP/TLS on ``sip_listen`` port + 1)."""
    for _ in range(200):
        p = free_sip_port(host)
        if p < 65535 and port_is_free(p + 1, udp=False, tcp=True, host=host) and _claim(p + 1):
            return p
    raise RuntimeError("no free SIP port pair found")


def free_even_udp_port(lo: int = PEER_RTP_LO, hi: int = PEER_RTP_HI) -> int:
    """A free even UDP port with its odd neighbour free too (RTP+RTCP), in [lo, hi]."""
    for _ in range(200):
        p = random.randrange(lo + lo % 2, hi, 2)
        if port_is_free(p) and port_is_free(p + 1) and _claim(p):
            _claim(p + 1)
            return p
    raise RuntimeError(f"no free even UDP port in {lo}-{hi}")


def free_rtp_range(size: int = 40, lo: int = PEER_RTP_LO, hi: int = PEER_RTP_HI) -> tuple[int, int]:
    """A random even-aligned sub-range ``(first, last)`` of ``size`` ports inside [lo, hi]
    whose ports are all free now and not handed out by this process in the last RESERVE_S."""
    if size < 2 or hi - lo + 1 < size:
        raise ValueError("bad RTP range request")
    size += size % 2
    step = size  # size-aligned blocks: equal requests cannot fragment the range
    starts = list(range(lo + lo % 2, hi - size + 2, step))
    random.shuffle(starts)
    # then every even start, for what mixed sizes left over
    starts += random.sample(range(lo + lo % 2, hi - size + 2, 2),
                            len(range(lo + lo % 2, hi - size + 2, 2)))
    for a in starts:
        ports = range(a, a + size)
        now = time.monotonic()
        with _lock:
            if any(_reserved(p, now) for p in ports):
                continue
        if all(port_is_free(p) for p in ports):
            with _lock:
                if any(_reserved(p, now) for p in ports):
                    continue
                _handed_out.update(dict.fromkeys(ports, now))
            return a, a + size - 1
    raise RuntimeError(f"no free RTP sub-range of {size} ports in {lo}-{hi}")


def _proc_net_ports(files: tuple[str, ...], listen_only: bool) -> set[int]:
    ports: set[int] = set()
    for name in files:
        try:
            with open(name) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 4:
                        continue
                    if listen_only and parts[3] != "0A":  # TCP_LISTEN
                        continue
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def udp_port_bound(port: int) -> bool:
    """True if some socket is bound to UDP ``port`` (read from /proc, no bind attempt,
    so it cannot disturb a peer that is binding right now)."""
    return port in _proc_net_ports(("/proc/net/udp", "/proc/net/udp6"), listen_only=False)


def tcp_port_listening(port: int) -> bool:
    """True if some socket listens on TCP ``port`` (from /proc)."""
    return port in _proc_net_ports(("/proc/net/tcp", "/proc/net/tcp6"), listen_only=True)
