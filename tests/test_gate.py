"""The permission gate and the error map: every route declares its permission, the middleware
enforces it (an undeclared route is refused), and errors raised by handlers or lower layers
become their statuses through the one exception-handler table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from tessera.auth import permissions
from tessera.config import Settings
from tessera.dicomweb.app import create_app
from tessera.dicomweb.gate import (
    AUDIT_QUERY,
    AUDIT_RETRIEVE,
    AUDIT_UPLOAD,
    GuardedRoute,
    GuardedWebSocketRoute,
    audit_target,
    guarded,
    route_gate,
)
from tessera.index import accounts
from tessera.index.tenancy import create_tenant
from tests.conftest import migrated_archive

# No data: health, and the portal's static files (tessera.portal).
PUBLIC = {"/healthz", "/portal", "/portal/{path:path}"}


def _leaves(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _leaves(route.routes, prefix + route.path)
        else:
            yield prefix + getattr(route, "path", ""), route


def test_every_route_declares_its_permission(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    undeclared = [
        path
        for path, route in _leaves(app.routes)
        if path not in PUBLIC and not isinstance(route, (GuardedRoute, GuardedWebSocketRoute))
    ]
    assert undeclared == []


def _scope(method: str, path: str, query: bytes = b"") -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "query_string": query}


def test_route_gate_finds_the_route_that_answers(tmp_path: Path) -> None:
    routes = create_app(Settings(data_dir=tmp_path / "data")).routes
    search = route_gate(routes, _scope("GET", "/t/acme/dicomweb/studies/1.2/series", b"limit=1"))
    assert search is not None
    assert (search.gate.permission, search.gate.action) == (permissions.READ, AUDIT_QUERY)
    assert audit_target(search) == "/studies/1.2/series?limit=1"

    frames = route_gate(
        routes, _scope("GET", "/dicomweb/studies/1.2/series/3/instances/4/frames/1")
    )
    assert frames is not None and frames.gate.action == AUDIT_RETRIEVE
    assert audit_target(frames) == "1.2"
    wado_uri = route_gate(routes, _scope("GET", "/dicomweb/wado", b"requestType=WADO&studyUID=9.8"))
    assert wado_uri is not None and audit_target(wado_uri) == "9.8"

    store = route_gate(routes, _scope("POST", "/dicomweb/studies/5.6"))
    assert store is not None
    assert (store.gate.permission, store.gate.action) == (permissions.UPLOAD, AUDIT_UPLOAD)
    assert audit_target(store) == "5.6"

    users = route_gate(routes, _scope("GET", "/t/acme/api/v1/users"))
    assert users is not None and users.gate.permission == permissions.ADMIN
    assert users.gate.action is None
    tenants = route_gate(routes, _scope("POST", "/api/v1/tenants"))
    assert tenants is not None and tenants.gate.permission == permissions.SYSTEM
    me = route_gate(routes, _scope("GET", "/api/v1/me"))
    assert me is not None and me.gate.permission is None
    # Orders: `read` to see, `orders` to change (changes audit themselves in their transaction).
    for method, path, needed in (
        ("GET", "/api/v1/orders", permissions.READ),
        ("GET", "/t/acme/api/v1/orders/7/history", permissions.READ),
        ("POST", "/api/v1/orders", permissions.ORDERS),
        ("PATCH", "/api/v1/orders/7", permissions.ORDERS),
        ("POST", "/t/acme/api/v1/orders/7/study", permissions.ORDERS),
    ):
        order = route_gate(routes, _scope(method, path))
        assert order is not None and order.gate.permission == needed, (method, path)
        assert order.gate.action is None
    # A document for an order is an upload, audited as one.
    document = route_gate(routes, _scope("POST", "/t/acme/api/v1/orders/7/documents"))
    assert document is not None
    assert (document.gate.permission, document.gate.action) == (permissions.UPLOAD, AUDIT_UPLOAD)

    # No route answers: the app's 404 / 405, no gate.
    assert route_gate(routes, _scope("GET", "/dicomweb/nothing/here")) is None
    assert route_gate(routes, _scope("DELETE", "/dicomweb/studies")) is None


@pytest.fixture
def served(
    tmp_path: Path, database_url: str
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    archive = migrated_archive(tmp_path / "data", database_url)
    tenant = archive.default_tenant.id
    keys = {}
    with archive.database.write() as conn:
        create_tenant(conn, "acme")
        accounts.save_role(conn, tenant, "nothing", [])
        for username, role in (("chief", "admin"), ("doctor", "referring_physician")):
            accounts.create_user(conn, tenant, username, role)
        accounts.create_user(conn, tenant, "nobody", "nothing")
        for username in ("chief", "doctor", "nobody"):
            user = accounts.get_user(conn, tenant, username)
            assert user is not None
            _, token, _ = accounts.issue_token(conn, tenant, user.id, "api_key")
            keys[username] = {"Authorization": f"Bearer {token}"}
    app = create_app(archive.settings, archive=archive)

    async def undeclared(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("should never be reached")

    async def buggy(request):  # type: ignore[no-untyped-def]
        raise ValueError("a bug, not a client error")

    app.router.routes.insert(0, Route("/dicomweb/undeclared", undeclared, methods=["GET"]))
    app.router.routes.insert(0, guarded("/dicomweb/buggy", buggy, methods=["GET"], permission=None))
    try:
        with TestClient(app) as client:
            yield client, keys
    finally:
        archive.close()


def test_the_gate_refuses_what_the_route_does_not_allow(
    served: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = served
    # Fail closed: a route without a declaration is refused, even for an administrator.
    refused = client.get("/dicomweb/undeclared", headers=keys["chief"])
    assert refused.status_code == 403 and "undeclared" in refused.json()["detail"]

    nothing = client.get("/dicomweb/studies", headers=keys["nobody"])
    assert nothing.status_code == 403
    assert nothing.json()["detail"] == "this operation needs the 'read' permission"
    assert client.get("/dicomweb/studies", headers=keys["doctor"]).status_code == 200
    upload = client.post("/dicomweb/studies", headers=keys["doctor"], content=b"")
    assert upload.status_code == 403 and "'upload'" in upload.json()["detail"]
    assert client.get("/api/v1/users", headers=keys["doctor"]).status_code == 403
    assert client.get("/api/v1/users", headers=keys["chief"]).status_code == 200
    assert client.get("/api/v1/tenants", headers=keys["chief"]).status_code == 403
    assert client.get("/api/v1/me", headers=keys["nobody"]).status_code == 200
    # Authenticated, but no route: 404 / 405 from the app.
    assert client.get("/dicomweb/nothing/here", headers=keys["nobody"]).status_code == 404
    assert client.delete("/dicomweb/studies", headers=keys["doctor"]).status_code == 405
    assert client.get("/dicomweb/studies").status_code == 401


def test_errors_map_to_their_statuses(
    served: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = served
    doctor, chief = keys["doctor"], keys["chief"]
    # Raised by handlers (tessera.dicomweb.errors).
    bad_uid = client.get("/dicomweb/studies/1..2/metadata", headers=doctor)
    assert bad_uid.status_code == 400 and "StudyInstanceUID" in bad_uid.json()["detail"]
    missing = client.get("/dicomweb/studies/1.2.3/metadata", headers=doctor)
    assert missing.status_code == 404 and missing.json()["detail"] == "no study 1.2.3 here"
    not_json = client.get("/dicomweb/studies", headers={**doctor, "Accept": "image/png"})
    assert not_json.status_code == 406
    wrong_type = client.post(
        "/dicomweb/studies", headers={**chief, "Content-Type": "text/plain"}, content=b"x"
    )
    assert wrong_type.status_code == 415
    # Lower layers' errors, mapped in the one table.
    query = client.get("/dicomweb/studies", params={"limit": "many"}, headers=doctor)
    assert query.status_code == 400 and "'limit'" in query.json()["detail"]
    accept = client.get("/dicomweb/studies/1.2.3", headers={**doctor, "Accept": "*/*;q=2"})
    assert accept.status_code == 400 and "q-value" in accept.json()["detail"]
    first = client.post("/api/v1/sources", json={"name": "ClinicA"}, headers=chief)
    assert first.status_code == 201
    again = client.post("/api/v1/sources", json={"name": "ClinicA"}, headers=chief)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert client.patch(
        "/api/v1/sources/Nope", json={"description": "x"}, headers=chief
    ).json() == {
        "status": 404,
        "detail": "no source 'Nope'",
    }
    short = client.patch("/api/v1/users/doctor", json={"password": "short"}, headers=chief)
    assert short.status_code == 400 and "8 characters" in short.json()["detail"]
    tenant = client.post("/api/v1/tenants", json={"name": "acme"}, headers=chief)
    assert tenant.status_code == 403  # chief is a tenant admin, not the system administrator
    not_an_object = client.post("/api/v1/sources", content=b"[1]", headers=chief)
    assert not_an_object.status_code == 400
    assert not_an_object.json()["detail"] == "the body must be a JSON object"
    # Values the index refuses are InvalidValue (400), named.
    role = client.post("/api/v1/users", json={"username": "x", "role": "nope"}, headers=chief)
    assert role.status_code == 400 and role.json()["detail"] == "unknown role 'nope'"
    name = client.post("/api/v1/users", json={"username": "a b", "role": "admin"}, headers=chief)
    assert name.status_code == 400 and "user name" in name.json()["detail"]
    unknown = client.post(
        "/api/v1/users",
        json={"username": "y", "role": "referring_physician", "sources": ["Nowhere"]},
        headers=chief,
    )
    assert unknown.status_code == 400 and "Nowhere" in unknown.json()["detail"]
    # A bare ValueError is a bug, not bad input: 500, never a 400 that would hide it.
    bug = client.get("/dicomweb/buggy", headers=doctor)
    assert bug.status_code == 500 and bug.json()["detail"] == "internal error (logged)"
