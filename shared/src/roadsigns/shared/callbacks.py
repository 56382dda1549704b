"""Which callback URLs may be called: the one policy the gateway (at submit) and the webhook
pool (at connect time) share.

A callback is a request this service makes on a stranger's behalf, from inside the cluster:
it must never reach loopback, private, link-local (cloud metadata at 169.254.169.254),
shared, multicast or reserved addresses. The gateway refuses such a literal host at submit
(`check_url`), including the forms resolvers accept for IPv4 (`127.1`, `2130706433`,
`0x7f.1`, `0177.0.0.1`) and `localhost`; the webhook pool resolves the name once and checks
every address it got before connecting to one of them (`roadsigns.tracker.safe_http`), so a
name that resolves, or later re-resolves, to such an address is refused too.
`ROADSIGNS_CALLBACK_ALLOW_PRIVATE=true` lifts the address rule, for development only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62}\.)*[a-z0-9_-]{0,63}\.?")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class CallbackRefused(ValueError):
    """A callback URL or address this service will not call; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str  # http | https
    host: str  # a name, or an address without brackets
    port: int
    target: str  # path and query, never empty
    host_header: str  # what the Host header says


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any form a resolver would take it, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    last_label = host.rstrip(".").split(".")[-1]
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host) and re.fullmatch(r"0[xX][0-9a-fA-F]*|[0-9]+", last_label):
        try:  # 127.1, 2130706433, 0x7f.1, 0177.0.0.1: inet_aton takes them all, as getaddrinfo does
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address: not loopback, private, link-local, shared, multicast, reserved."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:  # an IPv4 address behind NAT64
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def check_url(url: str, allow_private: bool = False) -> Target:
    """Parse and vet a callback URL; raise CallbackRefused with the reason."""
    if len(url) > MAX_URL_LENGTH or any(ord(c) < 33 or ord(c) == 127 or c == "\\" for c in url):
        raise CallbackRefused(
            f"callback_url must be an absolute http(s) URL of at most {MAX_URL_LENGTH} characters, "
            "without spaces, control characters or backslashes"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("callback_url must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise CallbackRefused("callback_url must not carry a user name or password: sign requests with the secret")
    host = parts.hostname  # lower case, brackets removed
    address = literal_address(host)
    if address is None:
        if not host.isascii() or not _NAME.fullmatch(host):
            raise CallbackRefused("callback_url's host must be an ASCII (punycode) host name or an IP address")
        name = host.rstrip(".")
        if not allow_private and (name in _LOCAL_NAMES or name.endswith(".localhost")):
            raise CallbackRefused(
                f"callback_url's host {host!r} is this machine: callbacks go to public addresses only"
            )
    elif not allow_private and not is_public(address):
        raise CallbackRefused(
            f"callback_url's host {host!r} is {address}, not a public address "
            "(loopback, private, link-local, multicast and reserved ranges are refused)"
        )
    default_port = 443 if parts.scheme == "https" else 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port or default_port, target, parts.netloc)
