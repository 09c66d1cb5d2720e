"""The SSRF guard against the IANA IPv4 and IPv6 Special-Purpose Address Registries, one case per block.

The table below is written from the registries themselves, not read from the code, so a block dropped
from `download/addresses.py` fails here. Each block is probed at its first and last address and one
inside; its IPv4-mapped IPv6 form must be refused as well.
"""

from __future__ import annotations

import ipaddress

import pytest

from facecorpus.download.addresses import AddressPolicy

IPV4_SPECIAL = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32", "192.0.0.10/32", "192.0.0.170/32",
    "192.0.0.171/32", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
]
IPV6_SPECIAL = [
    "::1/128", "::/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64",
    "2001::/23", "2001::/32", "2001:1::1/128", "2001:1::2/128", "2001:1::3/128", "2001:2::/48", "2001:3::/32",
    "2001:4:112::/48", "2001:10::/28", "2001:20::/28", "2001:30::/28", "2001:db8::/32", "2002::/16",
    "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
]
POLICY = AddressPolicy()  # production: nothing allowed beyond the public internet


def _probes(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list:
    return sorted({net[0], net[net.num_addresses // 2], net[-1]})


@pytest.mark.parametrize("block", IPV4_SPECIAL + IPV6_SPECIAL)
def test_every_special_purpose_block_is_refused(block: str) -> None:
    net = ipaddress.ip_network(block)
    for ip in _probes(net):
        why = POLICY.refusal(ip)
        assert why is not None, f"{ip} in {block} is treated as public"
        if net.version == 4:
            mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
            assert POLICY.refusal(mapped) is not None, f"{mapped} (mapped {ip}) is treated as public"


def test_the_reason_names_the_narrowest_block() -> None:
    assert "192.0.0.0/24" in POLICY.refusal(ipaddress.ip_address("192.0.0.192"))  # type: ignore[operator]
    assert "Port Control Protocol" in POLICY.refusal(ipaddress.ip_address("192.0.0.9"))  # type: ignore[operator]
    assert "NAT64" in POLICY.refusal(ipaddress.ip_address("64:ff9b::808:808"))  # type: ignore[operator]


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "191.255.255.255", "192.0.1.0", "192.0.3.1", "198.17.255.255", "198.20.0.0", "223.255.255.254",
    "2606:4700::1111", "2a00:1450:4001:80b::200e", "2001:4860:4860::8888",
])
def test_public_neighbours_stay_allowed(address: str) -> None:
    assert POLICY.refusal(ipaddress.ip_address(address)) is None, address


def test_allow_networks_opens_exactly_what_it_names() -> None:
    policy = AddressPolicy.from_strings(["192.0.0.192/32"])
    assert policy.refusal(ipaddress.ip_address("192.0.0.192")) is None
    assert policy.refusal(ipaddress.ip_address("192.0.0.193")) is not None
