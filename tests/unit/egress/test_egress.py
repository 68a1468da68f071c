"""Where the URLs tenants write may lead: the address decision, and connections that go only to checked
addresses, redirects included."""

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import urllib3

from kubescribe import egress
from kubescribe.contract import EgressRules, Endpoint
from localcluster.pki import CertificateAuthority

DEFAULT = egress.Policy()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("169.254.0.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("fd00:ec2::254", "a private address"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("100.127.255.254", "a carrier-grade NAT address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a private address"),
        ("255.255.255.255", "a private address"),
        ("192.0.2.7", "a private address"),
        ("198.18.0.1", "a private address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:169.254.169.254", "a link-local address"),
        ("::ffff:10.1.2.3", "a private address"),
        ("2002:7f00:1::", "a loopback address"),
        ("64:ff9b::a9fe:a9fe", "a link-local address"),
        ("::127.0.0.1", "a reserved address"),
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert egress.non_public(ip_address(address)) == kind
    assert egress.refusal(DEFAULT, ip_address(address), 80) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "100.63.255.255", "100.128.0.1", "2606:4700::1111"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert egress.non_public(ip_address(address)) is None
    assert egress.refusal(DEFAULT, ip_address(address), 443) is None


def test_the_message_names_the_address_and_its_kind() -> None:
    assert egress.refusal(DEFAULT, ip_address("::ffff:127.0.0.1"), 80) == "127.0.0.1, a loopback address"


def test_allowed_ranges_permit_their_addresses_and_no_others() -> None:
    policy = egress.Policy(allowed=(ip_network("10.20.0.0/16"), ip_network("fd12::/16")))
    assert egress.refusal(policy, ip_address("10.20.3.4"), 80) is None
    assert egress.refusal(policy, ip_address("::ffff:10.20.3.4"), 80) is None
    assert egress.refusal(policy, ip_address("fd12::5"), 80) is None
    assert egress.refusal(policy, ip_address("10.21.0.1"), 80) == "10.21.0.1, a private address"
    assert egress.refusal(policy, ip_address("127.0.0.1"), 80) == "127.0.0.1, a loopback address"
    assert egress.refusal(policy, ip_address("169.254.169.254"), 80) == "169.254.169.254, a link-local address"


def test_forbidden_endpoints_stay_refused_inside_allowed_ranges() -> None:
    policy = egress.Policy(
        allowed=(ip_network("10.0.0.0/8"),),
        forbidden={(ip_address("10.96.0.1"), 443): "the Kubernetes API server", (ip_address("8.8.8.8"), 53): "dns"},
    )
    assert egress.refusal(policy, ip_address("10.96.0.1"), 443) == "10.96.0.1:443, the Kubernetes API server"
    assert egress.refusal(policy, ip_address("::ffff:10.96.0.1"), 443) == "10.96.0.1:443, the Kubernetes API server"
    assert egress.refusal(policy, ip_address("8.8.8.8"), 53) == "8.8.8.8:53, dns"
    assert egress.refusal(policy, ip_address("10.96.0.1"), 8080) is None
    assert egress.refusal(policy, ip_address("8.8.8.8"), 443) is None


def test_endpoints_take_the_ports_of_their_schemes() -> None:
    assert egress.endpoint("https://10.96.0.1", "api") == Endpoint(host="10.96.0.1", port=443, name="api")
    assert egress.endpoint("http://minio.storage", "store") == Endpoint(host="minio.storage", port=80, name="store")
    assert egress.endpoint("http://[::1]:9000/", "store") == Endpoint(host="::1", port=9000, name="store")


def test_a_policy_resolves_the_forbidden_hosts() -> None:
    rules = EgressRules(
        allowed_private_ranges=["127.0.0.0/8"],
        forbidden_endpoints=[
            Endpoint(host="localhost", port=9000, name="the store"),
            Endpoint(host="no-such-host.invalid", port=443, name="nothing"),
        ],
    )
    policy = egress.policy(rules)
    assert policy.allowed == (ip_network("127.0.0.0/8"),)
    assert policy.forbidden[(ip_address("127.0.0.1"), 9000)] == "the store"
    assert "nothing" not in policy.forbidden.values()


# Connections, against servers on loopback addresses that the rules allow one by one.


class Handler(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str]] = []  # noqa: RUF012
    redirects: dict[str, str] = {}  # noqa: RUF012

    def do_GET(self) -> None:
        self.requests.append(("GET", self.headers["Host"], self.path))
        location = self.redirects.get(self.path)
        self.send_response(302 if location else 200)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"audio")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append(("POST", self.headers["Host"], body.decode()))
        self.send_response(307)
        self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[dict[str, int]]:
    """A server on 127.0.0.2 and one on 127.0.0.1, by address: their ports."""
    Handler.requests.clear()
    Handler.redirects.clear()
    started = {address: ThreadingHTTPServer((address, 0), Handler) for address in ("127.0.0.2", "127.0.0.1")}
    for server in started.values():
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield {address: server.server_port for address, server in started.items()}
    for server in started.values():
        server.shutdown()
        server.server_close()


ALLOW_2 = EgressRules(allowed_private_ranges=["127.0.0.2/32"])


def get(url: str, rules: EgressRules) -> tuple[int, bytes]:
    with egress.request(url, rules, timeout=5) as response:
        return response.status, response.read()


def test_an_allowed_address_is_reached(servers: dict[str, int]) -> None:
    assert get(f"http://127.0.0.2:{servers['127.0.0.2']}/a.wav?x=1", ALLOW_2) == (200, b"audio")
    assert Handler.requests == [("GET", f"127.0.0.2:{servers['127.0.0.2']}", "/a.wav?x=1")]


def test_a_refused_address_is_never_connected_to(servers: dict[str, int]) -> None:
    with pytest.raises(egress.Refused) as refused:
        get(f"http://127.0.0.1:{servers['127.0.0.1']}/a.wav?token=secret", ALLOW_2)
    assert str(refused.value) == "resolves to 127.0.0.1, a loopback address, which jobs may not reach"
    assert Handler.requests == []


def test_redirects_are_followed_to_allowed_addresses(servers: dict[str, int]) -> None:
    Handler.redirects["/a.wav"] = "/b.wav"
    assert get(f"http://127.0.0.2:{servers['127.0.0.2']}/a.wav", ALLOW_2) == (200, b"audio")
    assert [path for _, _, path in Handler.requests] == ["/a.wav", "/b.wav"]


def test_a_redirect_to_loopback_is_refused(servers: dict[str, int]) -> None:
    Handler.redirects["/a.wav"] = f"http://127.0.0.1:{servers['127.0.0.1']}/b.wav?token=secret"
    with pytest.raises(egress.Refused) as refused:
        get(f"http://127.0.0.2:{servers['127.0.0.2']}/a.wav", ALLOW_2)
    expected = "redirects to a URL that resolves to 127.0.0.1, a loopback address, which jobs may not reach"
    assert str(refused.value) == expected
    assert [path for _, _, path in Handler.requests] == ["/a.wav"]


def test_a_redirect_to_another_scheme_is_refused(servers: dict[str, int]) -> None:
    Handler.redirects["/a.wav"] = "file:///etc/passwd"
    with pytest.raises(egress.Refused, match=r"^redirects to a URL that is not http or https$"):
        get(f"http://127.0.0.2:{servers['127.0.0.2']}/a.wav", ALLOW_2)


def test_redirects_are_bounded(servers: dict[str, int]) -> None:
    Handler.redirects["/loop"] = "/loop"
    with pytest.raises(egress.Refused, match=f"^redirects more than {egress.MAX_REDIRECTS} times$"):
        get(f"http://127.0.0.2:{servers['127.0.0.2']}/loop", ALLOW_2)
    assert len(Handler.requests) == egress.MAX_REDIRECTS + 1


def test_a_post_gets_its_redirect_as_the_answer(servers: dict[str, int]) -> None:
    url = f"http://127.0.0.2:{servers['127.0.0.2']}/hook"
    with egress.request(url, ALLOW_2, method="POST", body=b"{}", timeout=5) as response:
        assert response.status == 307
    assert Handler.requests == [("POST", f"127.0.0.2:{servers['127.0.0.2']}", "{}")]


def test_a_host_name_that_resolves_to_loopback_is_refused(servers: dict[str, int]) -> None:
    with pytest.raises(egress.Refused, match=r"^resolves to 127\.0\.0\.1, a loopback address"):
        get(f"http://localhost:{servers['127.0.0.1']}/a.wav", ALLOW_2)
    assert Handler.requests == []


def test_every_resolved_address_must_be_permitted(monkeypatch: pytest.MonkeyPatch, servers: dict[str, int]) -> None:
    port = servers["127.0.0.2"]
    answers = [("127.0.0.2", port), ("169.254.169.254", port)]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [(socket.AF_INET, 1, 6, "", a) for a in answers])
    with pytest.raises(egress.Refused, match=r"^resolves to 169\.254\.169\.254, a link-local address"):
        get(f"http://media.example:{port}/a.wav", ALLOW_2)
    assert Handler.requests == []


def test_the_connection_goes_to_the_address_checked_not_to_a_second_lookup(
    monkeypatch: pytest.MonkeyPatch, servers: dict[str, int]
) -> None:
    """A rebinding DNS server answers an allowed address first and loopback after: no second answer is asked for."""
    port = servers["127.0.0.2"]
    answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])

    def rebinding(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    assert get(f"http://media.example:{port}/a.wav", ALLOW_2) == (200, b"audio")
    assert Handler.requests == [("GET", f"media.example:{port}", "/a.wav")]
    assert next(answers) == "127.0.0.1"  # one lookup only


def test_https_verifies_the_certificate_for_the_host_name(servers: dict[str, int]) -> None:
    """Against a plain HTTP server the TLS handshake fails: TLS is spoken to the pinned address, not skipped."""
    with pytest.raises(OSError):
        get(f"https://127.0.0.2:{servers['127.0.0.2']}/a.wav", ALLOW_2)
    connection = egress._PinnedHTTPSConnection("media.example", 443, [], 5)
    assert connection.tls.check_hostname
    assert connection.tls.verify_mode.name == "CERT_REQUIRED"


# A urllib3 pool (the MinIO client of a store a job names itself) held to the same checks on each connection.


def pool_get(url: str, rules: EgressRules, **settings: object) -> tuple[int, bytes]:
    response = egress.pool_manager(rules, retries=False, **settings).request("GET", url)
    return response.status, response.data


def test_a_pool_reaches_an_allowed_address(servers: dict[str, int]) -> None:
    assert pool_get(f"http://127.0.0.2:{servers['127.0.0.2']}/a.wav?x=1", ALLOW_2) == (200, b"audio")
    assert Handler.requests == [("GET", f"127.0.0.2:{servers['127.0.0.2']}", "/a.wav?x=1")]


def test_a_pool_never_connects_to_a_refused_address(servers: dict[str, int]) -> None:
    """Refused is not an error urllib3 retries: it leaves the request at once."""
    pool = egress.pool_manager(ALLOW_2)
    with pytest.raises(egress.Refused) as refused:
        pool.request("GET", f"http://localhost:{servers['127.0.0.1']}/a.wav?token=secret")
    assert str(refused.value) == "resolves to 127.0.0.1, a loopback address, which jobs may not reach"
    with pytest.raises(egress.Refused, match=r"^resolves to 169\.254\.169\.254, a link-local address"):
        pool.request("GET", "http://169.254.169.254/latest/meta-data/")
    assert Handler.requests == []


def test_a_pool_keeps_forbidden_endpoints_refused(servers: dict[str, int]) -> None:
    port = servers["127.0.0.2"]
    rules = ALLOW_2.model_copy(
        update={"forbidden_endpoints": [Endpoint(host="127.0.0.2", port=port, name="the store")]}
    )
    with pytest.raises(
        egress.Refused, match=rf"^resolves to 127\.0\.0\.2:{port}, the store, which jobs may not reach$"
    ):
        pool_get(f"http://127.0.0.2:{port}/a.wav", rules)
    assert Handler.requests == []


def test_each_connection_of_a_pool_is_checked_on_the_address_it_connects_to(
    monkeypatch: pytest.MonkeyPatch, servers: dict[str, int]
) -> None:
    """A rebinding DNS server answers an allowed address first and loopback after: the first connection goes to the
    address checked, and the next one (the server closes each) is checked anew and refused."""
    port = servers["127.0.0.2"]
    answers = iter(["127.0.0.2", "127.0.0.1"])

    def rebinding(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    pool = egress.pool_manager(ALLOW_2, retries=False)
    assert pool.request("GET", f"http://store.example:{port}/a.wav").data == b"audio"
    with pytest.raises(egress.Refused, match=r"^resolves to 127\.0\.0\.1, a loopback address"):
        pool.request("GET", f"http://store.example:{port}/b.wav")
    assert Handler.requests == [("GET", f"store.example:{port}", "/a.wav")]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str | None]]]:
    """HTTPS on 127.0.0.2 with a certificate for store.example alone: its port, the CA, and the names clients sent."""
    authority = CertificateAuthority(tmp_path)
    cert, key = authority.issue_server("store", (), ("store.example",))
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_port, authority.cert_path, names
    server.shutdown()
    server.server_close()


def test_a_pool_speaks_tls_to_the_host_name_over_the_pinned_address(
    monkeypatch: pytest.MonkeyPatch, tls_server: tuple[int, Path, list[str | None]]
) -> None:
    port, ca, names = tls_server
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *args, **kwargs: real("127.0.0.2" if host == "store.example" else host, *args, **kwargs),
    )
    assert pool_get(f"https://store.example:{port}/a.wav", ALLOW_2, ca_certs=str(ca)) == (200, b"audio")
    assert names == ["store.example"]
    with pytest.raises(urllib3.exceptions.SSLError, match="certificate verify failed"):
        pool_get(f"https://127.0.0.2:{port}/a.wav", ALLOW_2, ca_certs=str(ca))
    with pytest.raises(urllib3.exceptions.SSLError, match="certificate verify failed"):
        pool_get(f"https://store.example:{port}/a.wav", ALLOW_2)
