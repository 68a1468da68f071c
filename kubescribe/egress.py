"""HTTP to the URLs tenants write (a job's source URL, its webhook), held to the addresses jobs may reach.

Each connection, every redirect's included, goes to an address checked first: the URL's host is resolved once,
every address it resolves to is checked, and the socket connects to exactly one of those addresses, so a DNS
server cannot answer the check with one address and the connection with another. TLS still verifies the
certificate for the URL's host name. No proxy is used. `pool_manager` holds a urllib3 client (such as the MinIO
client of a store a job names itself) to the same checks, made on every connection it opens.

Refused unless `EgressRules.allowed_private_ranges` covers them: loopback, link-local (cloud metadata included),
private, carrier-grade NAT, unspecified, multicast, reserved and other non-public addresses, also in their IPv6
forms (IPv4-mapped, 6to4, NAT64). Refused whatever the ranges: `EgressRules.forbidden_endpoints`."""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import NewConnectionError

from kubescribe.contract import EgressRules, Endpoint

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SocketAddress = tuple[int, tuple[Any, ...]]
"""A resolved address as socket() and connect() take it: the family and the socket address."""

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(Exception):
    """The URL leads where jobs may not connect. The message says where and why, never the URL itself, and reads
    after the name of the field: "source.url resolves to 127.0.0.1, a loopback address, which jobs may not reach"."""


@dataclass(frozen=True)
class Policy:
    """`EgressRules` with the forbidden endpoints resolved: what `refusal` decides by."""

    allowed: tuple[Network, ...] = ()
    forbidden: Mapping[tuple[Address, int], str] = field(default_factory=dict)
    """What is at each forbidden (address, port), for messages."""


def endpoint(url: str, name: str) -> Endpoint:
    """The host and port `url` connects to, as a forbidden endpoint named `name`."""
    parts = urlsplit(url)
    return Endpoint(host=parts.hostname or "", port=parts.port or DEFAULT_PORTS.get(parts.scheme, 80), name=name)


def policy(rules: EgressRules) -> Policy:
    """`rules` with the forbidden endpoints' hosts resolved now; a host that does not resolve forbids nothing."""
    forbidden: dict[tuple[Address, int], str] = {}
    for forbidden_endpoint in rules.forbidden_endpoints:
        try:
            resolved = _resolve(forbidden_endpoint.host, forbidden_endpoint.port)
        except OSError:
            continue
        for _, sockaddr in resolved:
            forbidden[(unwrapped(ipaddress.ip_address(sockaddr[0])), forbidden_endpoint.port)] = forbidden_endpoint.name
    return Policy(tuple(rules.allowed_private_ranges), forbidden)


def unwrapped(address: Address) -> Address:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4 or NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address


def non_public(address: Address) -> str | None:
    """What kind of non-public address `address` is, or None when it is public."""
    address = unwrapped(address)
    kinds = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _SHARED_ADDRESS_SPACE, "a carrier-grade NAT address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "a special-purpose address"),
    )
    return next((kind for is_kind, kind in kinds if is_kind), None)


def refusal(policy: Policy, address: Address, port: int) -> str | None:
    """Why jobs may not connect to `address` on `port` ("127.0.0.1, a loopback address"), or None when they may."""
    plain = unwrapped(address)
    forbidden = policy.forbidden.get((plain, port))
    if forbidden is not None:
        return f"{_host_port(plain, port)}, {forbidden}"
    if any(plain in network for network in policy.allowed):
        return None
    kind = non_public(plain)
    return f"{plain}, {kind}" if kind else None


@contextmanager
def request(
    url: str,
    rules: EgressRules,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    deadline: float | None = None,
) -> Iterator[http.client.HTTPResponse]:
    """The answer to `method` on `url`, of any status, connected only where `rules` permit. GET follows
    redirects (at most MAX_REDIRECTS), each checked as the first; other methods get the redirect as the answer.
    `timeout` bounds each wait on the socket; `deadline`, when given, all of the exchange: connecting, sending, and
    reading the answer however slowly it comes. Raises Refused before connecting anywhere refused, OSError or
    http.client.HTTPException when the exchange fails (TimeoutError naming the deadline when it passes)."""
    checks = policy(rules)
    ends = None if deadline is None else _Deadline(time.monotonic() + deadline, deadline)
    for hop in range(MAX_REDIRECTS + 1):
        try:
            connection = _connection(url, checks, timeout, ends)
        except Refused as refused:
            raise Refused(f"redirects to a URL that {refused}" if hop else str(refused)) from None
        try:
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request(method, target, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            location = response.getheader("Location")
            if method != "GET" or response.status not in REDIRECT_STATUSES or not location:
                yield response
                return
            url = urljoin(url, location)
        finally:
            connection.close()
    raise Refused(f"redirects more than {MAX_REDIRECTS} times")


def _connection(url: str, checks: Policy, timeout: float, deadline: _Deadline | None) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise Refused("is not http or https")
    if not parts.hostname:
        raise Refused("has no host")
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    addresses = _checked(checks, parts.hostname, port)
    if parts.scheme == "https":
        return _PinnedHTTPSConnection(parts.hostname, port, addresses, timeout, deadline)
    return _PinnedHTTPConnection(parts.hostname, port, addresses, timeout, deadline)


def _checked(checks: Policy, host: str, port: int) -> list[SocketAddress]:
    """Every address `host` resolves to, once all of them are checked."""
    resolved = _resolve(host, port)
    for _, sockaddr in resolved:
        why = refusal(checks, ipaddress.ip_address(sockaddr[0]), port)
        if why is not None:
            raise Refused(f"resolves to {why}, which jobs may not reach")
    return resolved


def _resolve(host: str, port: int) -> list[SocketAddress]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    unique: list[SocketAddress] = []
    for family, _, _, _, sockaddr in found:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in unique:
            unique.append((family, sockaddr))
    return unique


def _connect(addresses: list[SocketAddress], timeout: float | None) -> socket.socket:
    """A socket connected to the first of `addresses` that answers."""
    error: OSError = OSError("no address to connect to")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as failure:
            sock.close()
            error = failure
            continue
        return sock
    raise error


@dataclass(frozen=True)
class _Deadline:
    """When an exchange must be over (time.monotonic()), and how long it was given."""

    at: float
    seconds: float

    def left(self) -> float:
        """The seconds left; raises TimeoutError naming the deadline once none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise self.passed()
        return left

    def passed(self) -> TimeoutError:
        return TimeoutError(f"the exchange did not end within its deadline of {self.seconds:g} s")


class _DeadlineSocket:
    """A connected socket whose sends and receives all end by `deadline`, however slowly the peer trickles: what
    http.client uses of a socket (sendall, makefile, close)."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self.sock = sock
        self.deadline = deadline

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(self.deadline.left())
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise self.deadline.passed() from None

    def makefile(self, mode: str = "rb", *_: Any, **__: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        self.sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.sock.sock.settimeout(self.sock.deadline.left())
        try:
            return self.sock.sock.recv_into(buffer)
        except TimeoutError:
            raise self.sock.deadline.passed() from None


def _deadline_connect(addresses: list[SocketAddress], timeout: float | None, deadline: _Deadline) -> socket.socket:
    """A socket connected to one of `addresses` by `deadline`, its timeout set to what is left of it."""
    try:
        sock = _connect(addresses, min(timeout or deadline.seconds, deadline.left()))
    except TimeoutError:
        raise deadline.passed() from None
    sock.settimeout(deadline.left())
    return sock


def _bounded(sock: socket.socket, deadline: _Deadline) -> socket.socket:
    """`sock` as http.client sees it (it uses only sendall, makefile and close), each use ending by `deadline`."""
    return cast(socket.socket, _DeadlineSocket(sock, deadline))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to `host`, over a connection to one of `addresses` and nowhere else, within `deadline` if given."""

    def __init__(
        self, host: str, port: int, addresses: list[SocketAddress], timeout: float, deadline: _Deadline | None = None
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses
        self.deadline = deadline

    def connect(self) -> None:
        if self.deadline is None:
            self.sock = _connect(self.addresses, self.timeout)
        else:
            self.sock = _bounded(_deadline_connect(self.addresses, self.timeout, self.deadline), self.deadline)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `host` (its name sent and its certificate verified), over a connection to one of `addresses`,
    within `deadline` if given."""

    def __init__(
        self, host: str, port: int, addresses: list[SocketAddress], timeout: float, deadline: _Deadline | None = None
    ) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.addresses = addresses
        self.deadline = deadline

    def connect(self) -> None:
        if self.deadline is None:
            self.sock = self.tls.wrap_socket(_connect(self.addresses, self.timeout), server_hostname=self.host)
            return
        sock = _deadline_connect(self.addresses, self.timeout, self.deadline)
        try:
            tls = self.tls.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            raise self.deadline.passed() from None
        self.sock = _bounded(tls, self.deadline)


def pool_manager(rules: EgressRules, **settings: Any) -> urllib3.PoolManager:
    """A urllib3.PoolManager (made with `settings`) whose every connection goes only where `rules` permit: the host
    is resolved, checked and connected to as `request` does, and TLS verifies the host name. A refused connection
    raises Refused out of the request, not retried."""
    return _PinnedPoolManager(policy(rules), **settings)


class _PinnedPoolManager(urllib3.PoolManager):
    def __init__(self, checks: Policy, **settings: Any) -> None:
        super().__init__(**settings)
        self.checks = checks

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _PinnedPoolHTTPSConnection if scheme == "https" else _PinnedPoolConnection
        pool.conn_kw["checks"] = self.checks
        return pool


def _pinned_socket(connection: HTTPConnection, checks: Policy) -> socket.socket:
    """The socket of a urllib3 connection: to a checked address of its host, as `_connection` makes for http.client."""
    timeout = connection.timeout if isinstance(connection.timeout, int | float) else socket.getdefaulttimeout()
    try:
        sock = _connect(_checked(checks, connection.host, connection.port), timeout)
    except OSError as error:
        raise NewConnectionError(connection, f"Failed to establish a new connection: {error}") from error
    for option in connection.socket_options or ():
        sock.setsockopt(*option)
    return sock


class _PinnedPoolConnection(HTTPConnection):
    def __init__(self, *args: Any, checks: Policy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks = checks

    def _new_conn(self) -> socket.socket:
        return _pinned_socket(self, self.checks)


class _PinnedPoolHTTPSConnection(HTTPSConnection):
    """Its socket pinned as `_PinnedPoolConnection`'s; urllib3 then speaks TLS over it to the host's name."""

    def __init__(self, *args: Any, checks: Policy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks = checks

    def _new_conn(self) -> socket.socket:
        return _pinned_socket(self, self.checks)


def _host_port(address: Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
