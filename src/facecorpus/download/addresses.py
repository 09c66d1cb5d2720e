"""Which addresses a download may reach: the SSRF guard.

Every host name is resolved here and each address it resolves to is checked; the connection is then
made to that checked address (never resolved again), so a DNS answer that changes between the check
and the connect (DNS rebinding) cannot steer a request to a private address. Refused: loopback,
private (RFC 1918, ULA), link-local (the cloud metadata service 169.254.169.254), multicast,
reserved, unspecified, shared address space, and anything else that is not globally routable;
IPv6 forms that embed an IPv4 address (mapped, 6to4, Teredo) are judged by that IPv4 address.

The only way to reach such an address is to list its network in `allow_networks` (a recipe switch
that tests use for 127.0.0.1; production leaves it empty).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: getaddrinfo-compatible resolver (tests inject one to simulate DNS answers)
Resolver = Callable[..., list]


def _why_not_public(ip: IPAddress) -> str | None:
    """A short reason when `ip` must not be contacted, None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            inner = _why_not_public(embedded)
            return f"{inner} (embedded in {ip})" if inner else None
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address (cloud metadata lives here)"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "address that is not globally routable"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Public unicast addresses are allowed; others only when inside one of `allow_networks`."""

    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> AddressPolicy:
        """Parse CIDR strings ('127.0.0.1/32'); raises ValueError naming a bad one."""
        parsed = []
        for n in networks:
            try:
                parsed.append(ipaddress.ip_network(n, strict=False))
            except ValueError as e:
                raise ValueError(f"not an IP network: {n!r} ({e})") from None
        return cls(tuple(parsed))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` is refused, or None when it may be contacted."""
        if any(ip.version == net.version and ip in net for net in self.allow_networks):
            return None
        return _why_not_public(ip)


class DNSFailure(Exception):
    """The host name did not resolve; `retryable` tells a temporary failure from a name that does not exist."""

    def __init__(self, detail: str, retryable: bool) -> None:
        super().__init__(detail)
        self.retryable = retryable


class BlockedAddress(Exception):
    """The host resolves to an address the policy refuses."""


# resolver errors that mean "this name does not exist": asking again later will not help
_PERMANENT_GAI = {getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA", "EAI_FAIL", "EAI_SERVICE") if hasattr(socket, n)}


def resolve_checked(host: str, port: int, policy: AddressPolicy, resolver: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """All addresses `host` resolves to, in resolver order, after checking every one of them.

    Raises DNSFailure when the name does not resolve and BlockedAddress when any answer is refused:
    a name that resolves to both a public and a private address is refused as a whole, because which
    one a connection would use is up to chance.
    """
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        return _raise_dns(host, e)
    except UnicodeError as e:
        raise DNSFailure(f"host name {host!r} cannot be encoded for DNS: {e}", retryable=False) from None
    addresses: list[IPAddress] = []
    for info in infos:
        raw = info[4][0]
        ip = ipaddress.ip_address(raw.split("%", 1)[0])  # drop an IPv6 zone id
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise DNSFailure(f"{host} resolved to no address", retryable=True)
    for ip in addresses:
        why = policy.refusal(ip)
        if why is not None:
            raise BlockedAddress(f"{host} resolves to {ip}, a {why}; refused")
    return addresses


def _raise_dns(host: str, e: socket.gaierror) -> list[IPAddress]:
    permanent = e.errno in _PERMANENT_GAI
    raise DNSFailure(f"{host} does not resolve: {e.strerror or e}", retryable=not permanent) from None
