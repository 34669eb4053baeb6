"""Outbound connections a tenant can aim (connectors' source URLs): never at internal networks.

A tenant's configuration names the hosts Pulse connects to, so without a check an analyst
could point a connector at ``127.0.0.1``, the database, a cloud metadata service or any
other address of the network Pulse runs in. :class:`OutboundPolicy` refuses addresses
that are loopback, private, link-local, unique-local, multicast, unspecified, reserved,
shared (carrier-grade NAT), documentation or cloud-metadata ones, unless the operator
allows them with ``PULSE_OUTBOUND_ALLOW`` (networks such as ``10.1.0.0/16`` and host
names such as ``jira.internal``).

The check runs twice: on the configuration (:meth:`OutboundPolicy.check_url`, a numeric
host or a name resolving to a refused address is refused) and on the address actually
connected to (:class:`GuardedTransport` resolves each connection's host itself, checks
every address and connects to a checked one, so DNS rebinding and redirects cannot get
around the first check). Every numeric form of an IPv4 address is read as the C library
reads it (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``), IPv6 literals
(bracketed, with a zone) too, and IPv4 addresses embedded in IPv6 (mapped, 6to4, NAT64,
Teredo) are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata and platform services reachable from inside a cloud, some of them at
#: otherwise public addresses (Azure's wire server).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "168.63.129.16", "100.100.100.200",
                    "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_INET_ATON_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")
#: Seconds a configuration check waits for a name to resolve.
CONFIG_RESOLVE_TIMEOUT = 5.0


class OutboundRefused(Exception):
    """An outbound address the policy refuses.

    :param host: the host as configured (or as a redirect named it).
    :param reason: why, in a few words (``"loopback address 127.0.0.1"``).
    """

    def __init__(self, host: str, reason: str) -> None:
        """Record the host and the reason."""
        super().__init__(f"outbound connection to {host!r} refused: {reason}")
        self.host = host
        self.reason = reason


def numeric_address(host: str) -> IPAddress | None:
    """The address a numeric host denotes in any form a resolver accepts, or None for a
    name (``[::1]``, ``fe80::1%eth0``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``)."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0].rstrip(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.match(part) for part in parts):
        return None
    values = [int(part[2:] or "0", 16) if part[:2].lower() == "0x"
              else int(part, 8) if part.startswith("0") else int(part) for part in parts]
    *head, last = values
    if any(value > 0xFF for value in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for position, value in enumerate(head):
        number |= value << (24 - 8 * position)
    return ipaddress.IPv4Address(number)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is internal (``"loopback address 127.0.0.1"``), or None when it is a
    public address."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            reason = refusal_reason(carried)
            return f"{reason} (inside {address})" if reason else None
    if address in METADATA_ADDRESSES:
        return f"cloud metadata address {address}"
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved",
                 "site_local"):
        if getattr(address, f"is_{kind}", False):
            return f"{kind.replace('_', '-')} address {address}"
    if not address.is_global:
        return f"non-public address {address}"
    return None


class OutboundPolicy:
    """Which outbound addresses connectors may reach (see the module docstring).

    :param allow: networks (``10.0.0.0/8``, ``127.0.0.1``) whose addresses are allowed,
        and host names (``jira.internal``) allowed whatever they resolve to.
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        """Parse the allow-list (entries are networks or host names)."""
        self.networks: list[IPNetwork] = []
        self.hosts: set[str] = set()
        for entry in (item.strip() for item in allow):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` is on the allow-list by name."""
        return host.lower().rstrip(".") in self.hosts

    def check_address(self, host: str, address: IPAddress) -> None:
        """Refuse ``address`` (what ``host`` resolved to) unless it is public or allowed."""
        if self.host_allowed(host) or any(address in network for network in self.networks):
            return
        reason = refusal_reason(address)
        if reason is not None:
            raise OutboundRefused(host, reason)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address of ``host``, each checked; the ones to connect to.

        :raises OutboundRefused: when any address is refused (a name with one internal
            address is refused whole, so the resolver's order cannot matter).
        :raises OSError: when the name does not resolve.
        """
        numeric = numeric_address(host)
        if numeric is not None:
            self.check_address(host, numeric)
            return [numeric]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(
            ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
        for address in addresses:
            self.check_address(host, address)
        return addresses

    async def check_host(self, host: str, port: int) -> None:
        """The configuration check of one host: refused when it is (or resolves to) a
        refused address. A name that does not resolve now is left to the connection
        check."""
        try:
            await asyncio.wait_for(self.resolve(host, port), CONFIG_RESOLVE_TIMEOUT)
        except (OSError, TimeoutError):
            return

    async def check_url(self, url: str) -> None:
        """The configuration check of a URL's host (see :meth:`check_host`)."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise OutboundRefused(url, "the URL has no host")
        default = 443 if parts.scheme == "https" else 80
        await self.check_host(parts.hostname, parts.port or default)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self.backend = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 (httpcore signature)
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, check every address, connect to the first that answers."""
        try:
            addresses = await self.policy.resolve(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve: {error}") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.backend.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except httpcore.ConnectError as error:
                failure = error
        raise failure or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        """Unix sockets are local: always refused."""
        raise OutboundRefused(path, "unix sockets are local")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the wrapped backend does."""
        await self.backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection (redirects included) goes through the
    policy: the host is resolved here, and only checked addresses are connected to. TLS
    still verifies the certificate against the host name.

    Use it with ``httpx.AsyncClient(transport=..., trust_env=False)``: proxies from the
    environment would connect on Pulse's behalf, beyond the check.
    """

    def __init__(self, policy: OutboundPolicy, **options: Any) -> None:
        """A transport for ``policy``; ``options`` as :class:`httpx.AsyncHTTPTransport`'s
        (``retries``, ``verify``...), proxies excepted."""
        super().__init__(**options)
        verify = options.get("verify", True)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            retries=options.get("retries", 0),
            network_backend=_GuardedBackend(policy),
        )

