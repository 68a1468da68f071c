"""The pulling half of the OCI distribution API for one repository: manifests and blobs, behind the
registry's Basic or Bearer-token authentication. Plain HTTP to registries on loopback, HTTPS elsewhere."""

from __future__ import annotations

import base64
import contextlib
import re
import urllib.parse
from collections.abc import Iterator

import httpx

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_MANIFEST_BYTES = 4 << 20
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_CHALLENGE_PARAMETER = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


class RegistryError(Exception):
    """The registry could not give what was asked; the message says why and never holds a credential."""


def endpoint(host: str) -> str:
    """The base URL of the API of the registry `host` (host[:port]) names."""
    if host == DOCKER_HUB:
        return f"https://{DOCKER_HUB_API}"
    hostname = urllib.parse.urlsplit(f"//{host}").hostname or ""
    loopback = hostname in {"localhost", "::1"} or hostname.startswith("127.")
    return f"{'http' if loopback else 'https'}://{host}"


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """The scheme (lower case) and parameters of a WWW-Authenticate header."""
    scheme, _, rest = header.strip().partition(" ")
    parameters = {match[1].lower(): match[2] or match[3] for match in _CHALLENGE_PARAMETER.finditer(rest)}
    return scheme.lower(), parameters


class Repository:
    """One repository of one registry, authenticating with `credentials` (username, password) when asked."""

    def __init__(self, client: httpx.Client, host: str, name: str, credentials: tuple[str, str] | None = None) -> None:
        self.client = client
        self.host = host
        self.name = name
        self.credentials = credentials
        self.base = f"{endpoint(host)}/v2/{name}"
        self.authorization: str | None = None

    def manifest(self, reference: str) -> tuple[bytes, str]:
        """A manifest or index by tag or digest: its bytes as served, and its media type."""
        with self._get(f"manifests/{reference}", {"Accept": ", ".join(MANIFEST_TYPES)}) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise RegistryError(f"the manifest {reference} is larger than {MAX_MANIFEST_BYTES} bytes")
            return body, response.headers.get("content-type", "").partition(";")[0].strip()

    def blob(self, digest: str) -> Iterator[bytes]:
        """A blob's bytes as they arrive, unverified."""
        with self._get(f"blobs/{digest}", {}) as response:
            yield from response.iter_bytes()

    @contextlib.contextmanager
    def _get(self, path: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        response = self._send(path, headers)
        if response.status_code == 401:
            challenge = response.headers.get("www-authenticate", "")
            response.close()
            self._authorize(challenge)
            response = self._send(path, headers)
        try:
            if response.status_code == 401:
                raise RegistryError(
                    "unauthorized: the registry rejected the credentials"
                    if self.credentials
                    else "unauthorized: the registry requires credentials and none were given"
                )
            if response.status_code == 404:
                raise RegistryError(f"not found: {self.host}/{self.name} has no {path}{_error_codes(response)}")
            if response.status_code >= 300:
                raise RegistryError(f"{self.host} answered {response.status_code} for {path}{_error_codes(response)}")
            yield response
        except httpx.HTTPError as error:
            raise RegistryError(f"registry {self.host} unreachable: {error}") from error
        finally:
            response.close()

    def _send(self, path: str, headers: dict[str, str]) -> httpx.Response:
        if self.authorization:
            headers = {**headers, "Authorization": self.authorization}
        request = self.client.build_request("GET", f"{self.base}/{path}", headers=headers)
        try:
            return self.client.send(request, stream=True, follow_redirects=True)
        except httpx.HTTPError as error:
            raise RegistryError(f"registry {self.host} unreachable: {error}") from error

    def _authorize(self, challenge: str) -> None:
        """Answers a 401's challenge: Basic with the credentials, or a Bearer token from the challenge's realm."""
        scheme, parameters = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None:
                raise RegistryError("unauthorized: the registry requires credentials and none were given")
            pair = ":".join(self.credentials).encode()
            self.authorization = f"Basic {base64.b64encode(pair).decode()}"
        elif scheme == "bearer" and parameters.get("realm"):
            self.authorization = f"Bearer {self._token(parameters)}"
        else:
            raise RegistryError(f"unauthorized: the registry asks for an authentication not supported: {scheme!r}")

    def _token(self, challenge: dict[str, str]) -> str:
        query = {"scope": challenge.get("scope") or f"repository:{self.name}:pull"}
        if "service" in challenge:
            query["service"] = challenge["service"]
        try:
            response = self.client.get(challenge["realm"], params=query, auth=self.credentials, follow_redirects=True)
        except httpx.HTTPError as error:
            raise RegistryError(f"the token service of {self.host} is unreachable: {error}") from error
        if response.status_code in (401, 403):
            raise RegistryError(
                "unauthorized: the registry's token service refused the credentials"
                if self.credentials
                else "unauthorized: the registry's token service requires credentials and none were given"
            )
        if response.status_code != 200:
            raise RegistryError(f"the token service of {self.host} answered {response.status_code}")
        try:
            document = response.json()
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {self.host} gave no token")
        return token


def _error_codes(response: httpx.Response) -> str:
    """The codes of a registry's error body (MANIFEST_UNKNOWN, ...), as ` (CODE, ...)`; empty if none."""
    try:
        errors = response.read() and response.json().get("errors", [])
        codes = [str(error["code"]) for error in errors if isinstance(error, dict) and "code" in error]
    except (ValueError, AttributeError, TypeError, httpx.HTTPError):
        return ""
    return f" ({', '.join(codes)})" if codes else ""
