"""Registries of their own for tests: the pinned `registry` binary serving a directory on a free loopback port,
open, behind htpasswd Basic authentication, or behind a token service, stopped and started again at will."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import httpx
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from localcluster.cluster import free_port
from localcluster.registry import ENVIRONMENT, registry_config
from tests.integration.conftest import bin_path, wait_for

_BLOB_GET = re.compile(r'"GET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) HTTP/[\d.]+" 200 ')


def registry_binary() -> Path:
    for directory in bin_path():
        if (directory / "registry").is_file():
            return directory / "registry"
    raise AssertionError("no registry binary on the binaries' path; run hack/build-binaries.sh")


def htpasswd_auth(directory: Path, users: dict[str, str]) -> dict[str, Any]:
    """The `auth` section of a registry that asks every request for Basic credentials of `users`."""
    path = directory / "htpasswd"
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in users.items()))
    return {"htpasswd": {"realm": "kubescribe", "path": str(path)}}


class RegistryServer:
    def __init__(self, directory: Path, auth: dict[str, Any] | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.log = directory / "registry.log"
        self.storage = directory / "storage"
        config = registry_config(self.storage, self.port)
        if auth:
            config["auth"] = auth
        self.config = directory / "config.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [registry_binary(), "serve", self.config], stdout=log, stderr=subprocess.STDOUT, env=ENVIRONMENT
            )
        wait_for(self._answers, 30, f"the registry on {self.address}", interval=0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/v2/", timeout=2).status_code in (200, 401)
        except httpx.TransportError:
            return False

    def blob_downloads(self) -> list[str]:
        """The digest of each blob served in full, from the registry's access log."""
        return _BLOB_GET.findall(self.log.read_text())

    def blob_file(self, digest: str) -> Path:
        """Where the registry's filesystem storage keeps a blob's bytes."""
        hex_digest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """A registry token service (the Docker token authentication protocol): for Basic credentials of `users`,
    a JWT signed with its RSA key granting the scope asked for; the registry trusts the key through a JWKS file."""

    SERVICE, ISSUER, KEY_ID = "kubescribe-registry", "kubescribe-token-service", "test-key"

    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        self.users = users
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.requests: list[dict[str, Any]] = []
        numbers = self.key.public_key().public_numbers()
        jwks = directory / "jwks.json"
        directory.mkdir(parents=True, exist_ok=True)
        jwks.write_text(
            json.dumps(
                {
                    "keys": [
                        {
                            "kty": "RSA",
                            "kid": self.KEY_ID,
                            "use": "sig",
                            "alg": "RS256",
                            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                            "e": _b64url(numbers.e.to_bytes(3, "big")),
                        }
                    ]
                }
            )
        )
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                service.requests.append({"query": query, "authorization": self.headers.get("Authorization", "")})
                user = service.authenticated(self.headers.get("Authorization", ""))
                if user is None:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(user, query.get("scope", []))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.auth = {
            "token": {
                "realm": self.realm,
                "service": self.SERVICE,
                "issuer": self.ISSUER,
                "jwks": str(jwks),
            }
        }
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authenticated(self, authorization: str) -> str | None:
        if not authorization.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
        return user if self.users.get(user) == password else None

    def token(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.ISSUER,
            "sub": user,
            "aud": self.SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"alg": "RS256", "typ": "JWT", "kid": self.KEY_ID}
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64url(signature)}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
