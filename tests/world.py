"""The security world (tests.security_world) as a test module's fixture: one server per
database (SQLite, and PostgreSQL when TESSERA_TEST_PG_URL is set), the extra users a module
needs, stopped and its database dropped afterwards.

    @pytest.fixture(scope="module", params=DATABASES)
    def world(request, tmp_path_factory):
        with served_world(request.param, tmp_path_factory, "orders") as built:
            add_user(built, "tech_b", "technologist", ["ClinicB"], upload_sources=["ClinicB"])
            yield built
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import PG_URL, create_pg_database, drop_pg_database
from tests.security_world import PASSWORD, World, build_world

# The `params` of a world fixture: each test runs on SQLite and on PostgreSQL.
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def served_world(
    database: str,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    env: dict[str, str] | None = None,
    start_timeout: float = 120,
) -> Iterator[World]:
    """A built world on `database` ("sqlite" or "postgresql"; skipped without a PostgreSQL
    URL), its data under a fresh temporary folder named after `name`."""
    if database == "sqlite":
        base = tmp_path_factory.mktemp(name)
        url, drop = f"sqlite:///{base / 'index.sqlite3'}", None
    else:
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        base = tmp_path_factory.mktemp(f"{name}-pg")
        url = drop = create_pg_database()
    try:
        built = build_world(base / "data", url, env, start_timeout)
        try:
            yield built
        finally:
            built.server.stop()
    finally:
        if drop:
            drop_pg_database(drop)


def add_user(
    world: World,
    username: str,
    role: str,
    sources: Sequence[str] = (),
    upload_sources: Sequence[str] = (),
) -> str:
    """A user of `default` (locked to `sources`, none: every source) with an API key, made
    by the admin; the key is kept in `world.keys`."""
    api, admin = world.api(), world.auth("admin")
    user = {"username": username, "role": role, "password": PASSWORD, "sources": list(sources)}
    if upload_sources:
        user["upload_sources"] = list(upload_sources)
    created = httpx.post(f"{api}/users", json=user, headers=admin, timeout=30)
    assert created.status_code == 201, created.text
    key = httpx.post(
        f"{api}/api-keys", json={"user": username, "name": "tests"}, headers=admin, timeout=30
    )
    assert key.status_code < 300, key.text
    world.keys[username] = key.json()["key"]
    world.sees[username] = frozenset(sources) if sources else None
    return world.keys[username]


def post_order(world: World, body: dict, user: str = "admin", tenant: str = "default") -> dict:
    """An order created over the REST API (`{api}/orders`) by `user` of `tenant`."""
    response = httpx.post(
        f"{world.api(tenant)}/orders", json=body, headers=world.auth(user), timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()


def patient_order(world: World, accession: str, **extra: object) -> dict:
    """An order of ClinicA (accession issued by RIS-A) for a patient of its own, whose
    identity attached images show: ORDERED^PATIENT^{accession}, MRN-{accession}, born
    1970-05-06, F. `extra` adds or overrides fields."""
    body = {
        "accession_number": accession,
        "issuer_of_accession_number": "RIS-A",
        "patient_name": "ORDERED^PATIENT^" + accession,
        "patient_id": "MRN-" + accession,
        "patient_birth_date": "1970-05-06",
        "patient_sex": "F",
        "source": "ClinicA",
        **extra,
    }
    return post_order(world, body)
