"""Security rows for documents: another tenant and a source-locked user can neither attach
a document to, nor learn anything about, a study they cannot see (tests/security_world.py
describes the world: tenants default and acme with identical UIDs, sources ClinicA/ClinicB).
"""

from __future__ import annotations

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import PG_URL, create_pg_database, drop_pg_database
from tests.document_files import pdf_bytes
from tests.security_world import ACME_MARKER, DEFAULT_MARKER, World, build_world


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("security-documents")
    if request.param == "sqlite":
        url, drop = f"sqlite:///{base / 'index.sqlite3'}", None
    else:
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        url = drop = create_pg_database()
    built = build_world(base / "data", url)
    try:
        yield built
    finally:
        built.server.stop()
        if drop:
            drop_pg_database(drop)


def attach(
    world: World, user: str, study: str, tenant: str = "default", source: str | None = None
) -> httpx.Response:
    fields = {"title": "Referral letter"}
    if source:
        fields["source"] = source
    return httpx.post(
        f"{world.url(tenant)}/studies/{study}/documents",
        files={"file": ("letter.pdf", pdf_bytes(), "application/pdf")},
        data=fields,
        headers=world.auth(user),
        timeout=60,
    )


def study_of(world: World, name: str) -> str:
    return next(o.study for o in world.objects if o.name == name)


def series_count(world: World, user: str, study: str, tenant: str = "default") -> int:
    response = httpx.get(
        f"{world.url(tenant)}/studies/{study}/series", headers=world.auth(user), timeout=30
    )
    return len(response.json()) if response.status_code == 200 else 0


def test_hidden_study_is_not_found_exactly_like_a_missing_one(world: World) -> None:
    hidden = attach(world, "tech", study_of(world, "b2"), source="ClinicA")  # ClinicB only
    missing = attach(world, "tech", generate_uid(), source="ClinicA")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace(study_of(world, "b2"), "X") == missing.json()[
        "detail"
    ].replace(missing.request.url.path.split("/")[-2], "X")
    assert series_count(world, "admin", study_of(world, "b2")) == 1  # nothing was added


def test_source_locked_uploader_attaches_only_where_it_sees_everything(world: World) -> None:
    s1 = study_of(world, "a1")
    before = series_count(world, "admin", s1)
    stored = attach(world, "tech", s1, source="ClinicA")
    assert stored.status_code == 201, stored.text
    assert series_count(world, "admin", s1) == before + 1
    assert series_count(world, "ref_a", s1) == before + 1  # ClinicA readers see it
    assert series_count(world, "read_b", s1) == 0  # ClinicB readers still see nothing
    # A source it may not upload with.
    assert attach(world, "tech", s1, source="ClinicB").status_code == 400
    # A study it sees that also holds ClinicB's instances: refused, as STOW-RS refuses.
    mixed = attach(world, "tech", study_of(world, "a3"), source="ClinicA")
    assert mixed.status_code == 409, mixed.text
    assert series_count(world, "admin", study_of(world, "a3")) == 2


def test_other_tenant_attaches_to_its_own_copy_only(world: World) -> None:
    s2 = study_of(world, "b2")  # the same UID exists in both tenants
    before_default = series_count(world, "admin", s2)
    stored = attach(world, "acme_admin", s2, tenant="acme")
    assert stored.status_code == 201, stored.text
    assert series_count(world, "admin", s2) == before_default  # default untouched
    retrieved = httpx.get(
        stored.json()["RetrieveURL"] + "/metadata", headers=world.auth("acme_admin"), timeout=30
    ).json()[0]
    # The document carries acme's patient, never the default tenant's.
    assert retrieved["00100010"]["Value"][0]["Alphabetic"] == ACME_MARKER
    assert DEFAULT_MARKER not in stored.text
    # Its URL does not work with the default tenant's credentials or root.
    other = stored.json()["RetrieveURL"].replace("/t/acme", "")
    assert httpx.get(other, headers=world.auth("admin"), timeout=30).status_code == 404


def test_callers_without_upload_permission_are_refused(world: World) -> None:
    s1 = study_of(world, "a1")
    assert attach(world, "ref_a", s1).status_code == 403
    assert attach(world, "nobody", s1).status_code == 403
    anonymous = httpx.post(
        f"{world.url()}/studies/{s1}/documents",
        files={"file": ("a.pdf", pdf_bytes())},
        data={"title": "x"},
    )
    assert anonymous.status_code == 401


def test_document_thumbnail_follows_the_scope(world: World) -> None:
    s1 = study_of(world, "a1")
    stored = attach(world, "admin", s1, source="ClinicA").json()
    url = stored["RetrieveURL"] + "/thumbnail"
    assert httpx.get(url, headers=world.auth("ref_a"), timeout=30).status_code == 200
    assert httpx.get(url, headers=world.auth("read_b"), timeout=30).status_code == 404
    assert httpx.get(url, headers=world.auth("acme_admin"), timeout=30).status_code == 401
