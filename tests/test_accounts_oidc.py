"""OpenID Connect: bearer JWTs checked against issuer, audience and a JWKS this test serves."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.security_world import admin_cli, migrate_cli

ISSUER = "https://id.example.test/realms/tessera"
AUDIENCE = "tessera-api"


@pytest.fixture(scope="module")
def signing_key():  # type: ignore[no-untyped-def]
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(signing_key):  # type: ignore[no-untyped-def]
    jwk = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update(kid="test-key", use="sig", alg="RS256")
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks"
    httpd.shutdown()


def _token(key, kid: str = "test-key", **claims) -> str:  # type: ignore[no-untyped-def]
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 300,
        "iat": int(time.time()),
        "preferred_username": "oidc_reader",
    }
    payload.update(claims)
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def test_oidc_tokens(server_factory, signing_key, jwks_url) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(
        env_extra={
            "TESSERA_WORKERS": "1",
            "TESSERA_ANONYMOUS": "off",
            "TESSERA_OIDC_ISSUER": ISSUER,
            "TESSERA_OIDC_AUDIENCE": AUDIENCE,
            "TESSERA_OIDC_JWKS_URL": jwks_url,
        }
    )
    server.data_dir.mkdir(parents=True, exist_ok=True)
    migrate_cli(server)  # user-create, unlike bootstrap, does not migrate
    admin_cli(server, "user-create", "oidc_reader", "--role", "referring_physician")
    server.start()
    me = f"{server.base_url}/api/v1/me"

    good = httpx.get(me, headers={"Authorization": f"Bearer {_token(signing_key)}"})
    assert good.status_code == 200, good.text
    assert good.json()["authenticated_by"] == "oidc" and good.json()["permissions"] == ["read"]

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "wrong audience": _token(signing_key, aud="someone-else"),
        "wrong issuer": _token(signing_key, iss="https://evil.example.test"),
        "expired": _token(signing_key, exp=int(time.time()) - 3600),
        "signed by another key": _token(other_key),
        "unknown user": _token(signing_key, preferred_username="stranger"),
        "another tenant's token": _token(signing_key, tessera_tenant="acme"),
        "not a JWT": "a.b.c",
    }
    for case, token in refused.items():
        response = httpx.get(me, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, case
    assert _token(signing_key) not in server.log()
