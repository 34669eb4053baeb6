"""pulse_engine.outbound: which addresses an outbound connection may reach, in every form.

The connectors' use of it (configuration checks, redirects, DNS rebinding, job errors)
is tested with pulse-etl, in ``plugins/etl/tests/test_outbound.py``.
"""

from __future__ import annotations

import ipaddress

import pytest

from pulse_engine import OutboundPolicy, OutboundRefused
from pulse_engine.outbound import numeric_address, refusal_reason

INTERNAL = [
    "127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "0177.1",
    "017700000001", "127.0.0.1.", "[::1]", "::ffff:127.0.0.1", "::ffff:7f00:1",
    "[::ffff:7f00:1]", "0.0.0.0", "0", "::", "10.0.0.1", "012.1", "172.16.0.1", "192.168.1.1",
    "169.254.169.254", "0xa9fea9fe", "2852039166", "fd00:ec2::254", "168.63.129.16",
    "100.100.100.200", "100.64.0.1", "224.0.0.1", "ff02::1", "fe80::1%eth0", "fc00::1",
    "240.0.0.1", "255.255.255.255", "2002:7f00:1::", "64:ff9b::7f00:1", "192.0.2.1",
]


@pytest.mark.parametrize("host", INTERNAL)
def test_every_numeric_form_of_an_internal_address_is_refused(host: str) -> None:
    address = numeric_address(host)
    assert address is not None, host
    assert refusal_reason(address) is not None, (host, address)


@pytest.mark.parametrize(("host", "expected"), [
    ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("1.2.3", "1.2.0.3"), ("0x7f.0.1", "127.0.0.1"),
    ("[::ffff:7f00:1]", "::ffff:7f00:1"), ("93.184.216.34", "93.184.216.34"),
])
def test_numeric_hosts_are_read_as_the_resolver_reads_them(host: str, expected: str) -> None:
    assert numeric_address(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.5", "0x1g", "256.1.1.1.1", "08.1",
                                  "127.0.0.256x", "4294967296"])
def test_names_are_not_numeric(host: str) -> None:
    assert numeric_address(host) is None


@pytest.mark.parametrize("host", ["93.184.216.34", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_pass(host: str) -> None:
    address = numeric_address(host)
    assert address is not None and refusal_reason(address) is None


async def test_the_allow_list_takes_networks_and_names() -> None:
    policy = OutboundPolicy(["10.1.0.0/16", "jira.internal", " "])
    policy.check_address("x", ipaddress.ip_address("10.1.2.3"))
    policy.check_address("jira.internal.", ipaddress.ip_address("10.9.9.9"))
    with pytest.raises(OutboundRefused, match="private"):
        policy.check_address("x", ipaddress.ip_address("10.2.0.1"))
    with pytest.raises(OutboundRefused, match="loopback"):
        await policy.resolve("localhost", 80)  # a name resolving to loopback
