"""Which addresses a download may reach: the SSRF guard.

Every host name is resolved here and each address it resolves to is checked; the connection is then
made to that checked address (never resolved again), so a DNS answer that changes between the check
and the connect (DNS rebinding) cannot steer a request to a private address. Refused: loopback,
private (RFC 1918, ULA), link-local (the cloud metadata service 169.254.169.254), multicast,
reserved, unspecified, shared address space, and anything else that is not globally routable.
IPv6 forms that embed an IPv4 address (mapped ::ffff:0:0/96, NAT64, 6to4, Teredo) are refused
whatever they embed: a public host has a plain IPv4 or IPv6 address, and the reason still names the
embedded address when that one is refused too.

Python's `ipaddress` properties differ between Python versions and miss ranges (3.11 calls
192.0.0.192, 2620:4f:8000::/48 and 3fff::/20 global), so every block of the IANA IPv4 and IPv6
Special-Purpose Address Registries is listed here explicitly, and refused — including the few IANA
marks "globally reachable" (protocol anycast, AS112 sinks, AMT relays, NAT64 translation, ORCHIDv2,
drone tags): no image host lives there, and the NAT64 prefix would translate to any IPv4 address a
worker's network can reach. Deprecated site-local fec0::/10 is refused too. The property checks stay
behind the table for what it does not name (IPv6 space IANA has not allocated, multicast).

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


#: (network, IANA name): the IPv4 Special-Purpose Address Registry, most specific first so the
#: reason names the narrowest block (RFC 6890 and its updates)
SPECIAL_PURPOSE_V4: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", '"this network"'),
    ("10.0.0.0/8", "private-use network"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback network"),
    ("169.254.0.0/16", "link-local network (cloud metadata lives here)"),
    ("172.16.0.0/12", "private-use network"),
    ("192.0.0.0/29", "IPv4 service continuity prefix"),
    ("192.0.0.8/32", "IPv4 dummy address"),
    ("192.0.0.9/32", "Port Control Protocol anycast address"),
    ("192.0.0.10/32", "TURN anycast address"),
    ("192.0.0.170/31", "NAT64/DNS64 discovery address"),
    ("192.0.0.0/24", "IETF protocol assignment (cloud metadata lists name 192.0.0.192)"),
    ("192.0.2.0/24", "documentation network (TEST-NET-1)"),
    ("192.31.196.0/24", "AS112 sink network"),
    ("192.52.193.0/24", "AMT relay network"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast network"),
    ("192.168.0.0/16", "private-use network"),
    ("192.175.48.0/24", "AS112 direct delegation network"),
    ("198.18.0.0/15", "benchmarking network"),
    ("198.51.100.0/24", "documentation network (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation network (TEST-NET-3)"),
    ("240.0.0.0/4", "reserved network"),
    ("255.255.255.255/32", "limited broadcast address"),
)
#: (network, IANA name): the IPv6 Special-Purpose Address Registry, most specific first
SPECIAL_PURPOSE_V6: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified address"),
    ("::1/128", "loopback address"),
    ("::ffff:0:0/96", "IPv4-mapped address"),
    ("64:ff9b::/96", "NAT64 translation prefix"),
    ("64:ff9b:1::/48", "local-use NAT64 translation prefix"),
    ("100::/64", "discard-only prefix"),
    ("100:0:0:1::/64", "dummy IPv6 prefix"),
    ("2001::/32", "Teredo tunnelling prefix"),
    ("2001:1::1/128", "Port Control Protocol anycast address"),
    ("2001:1::2/128", "TURN anycast address"),
    ("2001:1::3/128", "DNS-SD service registration anycast address"),
    ("2001:2::/48", "benchmarking prefix"),
    ("2001:3::/32", "AMT relay prefix"),
    ("2001:4:112::/48", "AS112 sink prefix"),
    ("2001:10::/28", "deprecated ORCHID prefix"),
    ("2001:20::/28", "ORCHIDv2 prefix"),
    ("2001:30::/28", "drone remote ID tag prefix"),
    ("2001::/23", "IETF protocol assignment"),
    ("2001:db8::/32", "documentation prefix"),
    ("2002::/16", "6to4 tunnelling prefix"),
    ("2620:4f:8000::/48", "AS112 direct delegation prefix"),
    ("3fff::/20", "documentation prefix"),
    ("5f00::/16", "segment routing (SRv6) SID prefix"),
    ("fc00::/7", "unique-local prefix (IPv6 private)"),
    ("fe80::/10", "link-local prefix"),
    ("fec0::/10", "deprecated site-local prefix"),
)
_SPECIAL: dict[int, tuple[tuple[IPNetwork, str], ...]] = {
    4: tuple((ipaddress.ip_network(n), name) for n, name in SPECIAL_PURPOSE_V4),
    6: tuple((ipaddress.ip_network(n), name) for n, name in SPECIAL_PURPOSE_V6),
}


def special_purpose(ip: IPAddress) -> str | None:
    """The IANA special-purpose block `ip` lies in (its name and network), None outside all of them."""
    for net, name in _SPECIAL[ip.version]:
        if ip in net:
            return f"{name} {net}"
    return None


def _why_not_public(ip: IPAddress) -> str | None:
    """A short reason when `ip` must not be contacted, None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            inner = _why_not_public(ip.ipv4_mapped)
            return f"{inner} (mapped in {ip})" if inner else f"IPv4-mapped address ::ffff:0:0/96 ({ip.ipv4_mapped})"
    special = special_purpose(ip)
    if special is not None:
        return special
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
