"""Security rows for documents and upload sessions: another tenant and a source-locked user
can neither attach a document to, nor learn anything about, a study they cannot see, and
never see or touch another user's upload session (tests/security_world.py
describes the world: tenants default and acme with identical UIDs, sources ClinicA/ClinicB).
"""

from __future__ import annotations

import httpx
import pytest
from pydicom.uid import generate_uid

from tessera.client.stow import request_content_type as content_type
from tessera.dicomweb.multipart_writer import new_boundary
from tessera.synthetic import StudySpec, ct_image
from tests.dimse_support import SERVER_AET, dcmtk, run
from tests.document_files import multipart_body, pdf_bytes
from tests.security_world import ACME_MARKER, DEFAULT_MARKER, PASSWORD, World
from tests.world import DATABASES, served_world


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "security-documents") as built:
        yield built


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


# Upload sessions: only their owner, in their tenant, sees or touches them.


def sessions_api(world: World, tenant: str = "default") -> str:
    return f"{world.api(tenant)}/upload-sessions"


def session_stow(
    world: World, user: str, session: str, parts: list[bytes], tenant: str = "default"
):  # type: ignore[no-untyped-def]
    boundary = new_boundary()
    return httpx.post(
        f"{world.url(tenant)}/upload-sessions/{session}/studies",
        content=multipart_body(parts, boundary),
        headers={**world.auth(user), "Content-Type": content_type(boundary)},
        timeout=60,
    )


def open_session(world: World, user: str, source: str | None = None) -> httpx.Response:
    body = {"source": source} if source else {}
    return httpx.post(sessions_api(world), json=body, headers=world.auth(user), timeout=30)


def test_sessions_of_another_user_or_tenant_are_not_found(world: World) -> None:
    opened = open_session(world, "admin", "ClinicA")
    assert opened.status_code == 201, opened.text
    session = opened.json()["id"]
    study = StudySpec(patient_name="SESSION^SECRET")
    part = ct_image(study, generate_uid(), 1, 16, 16)
    assert session_stow(world, "admin", session, [part]).status_code == 200
    # Invisible before commit, to everyone including the owner.
    qido = httpx.get(
        f"{world.url()}/studies",
        params={"StudyInstanceUID": study.study_instance_uid},
        headers=world.auth("admin"),
    )
    assert qido.json() == []

    for user, tenant in (("tech", "default"), ("acme_admin", "acme")):
        base = f"{sessions_api(world, tenant)}/{session}"
        auth = world.auth(user)
        assert httpx.get(base, headers=auth).status_code == 404
        assert httpx.post(f"{base}/commit", headers=auth).status_code == 404
        assert httpx.post(f"{base}/discard", headers=auth).status_code == 404
        assert httpx.patch(base, json={"description": "x"}, headers=auth).status_code == 404
        assert session_stow(world, user, session, [part], tenant).status_code == 404
        listed = httpx.get(sessions_api(world, tenant), headers=auth).json()
        assert session not in {s["id"] for s in listed}
        assert "SESSION^SECRET" not in httpx.get(base, headers=auth).text
    # acme's key on the default tenant's root is not a credential there at all.
    wrong_root = httpx.get(f"{sessions_api(world)}/{session}", headers=world.auth("acme_admin"))
    assert wrong_root.status_code == 401
    # Still the owner's, intact.
    view = httpx.get(f"{sessions_api(world)}/{session}", headers=world.auth("admin")).json()
    assert view["instances"] == 1 and view["state"] == "open"


def test_source_rules_hold_for_sessions(world: World) -> None:
    assert open_session(world, "tech", "ClinicB").status_code == 400  # may not upload there
    assert open_session(world, "ref_a", "ClinicA").status_code == 403  # no upload permission
    opened = open_session(world, "tech", "ClinicA")
    assert opened.status_code == 201, opened.text
    session = opened.json()["id"]
    # An instance into a study the tech cannot see (ClinicB's S2): the session takes it,
    # commit refuses it as STOW-RS would, and nothing of it shows anywhere.
    b2 = next(o for o in world.objects if o.name == "b2")
    hidden_study = StudySpec(patient_name="TECH^UPLOAD", study_instance_uid=b2.study)
    part = ct_image(hidden_study, generate_uid(), 1, 16, 16)
    assert session_stow(world, "tech", session, [part]).status_code == 200
    refused = httpx.post(f"{sessions_api(world)}/{session}/commit", headers=world.auth("tech"))
    assert refused.status_code == 409, refused.text
    assert [i["FailureReason"] for i in refused.json()["instances"]] == [0xC412]
    assert DEFAULT_MARKER not in refused.text
    series = httpx.get(f"{world.url()}/studies/{b2.study}/series", headers=world.auth("admin"))
    assert len(series.json()) == 1


# The reviewed DICOM listener: a staged peer's sessions are for the users of its tenant who
# read and upload to its source, and nobody else.


def test_staged_listener_sessions_follow_tenant_and_sources(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api, admin = world.api(), world.auth("admin")
    peer = {"host": "127.0.0.1", "port": 0, "upload_source": "ClinicB", "staged": True}
    saved = httpx.put(f"{api}/peers/STAGED_B", json=peer, headers=admin, timeout=30)
    assert saved.status_code == 201, saved.text
    keys: dict[str, dict[str, str]] = {}
    for username, sources, uploads in (
        ("tech_b", ["ClinicB"], ["ClinicB"]),  # reads and uploads ClinicB: reviews it
        ("reads_a_uploads_b", ["ClinicA"], ["ClinicB"]),  # may not read what it holds
    ):
        created = httpx.post(
            f"{api}/users",
            json={
                "username": username,
                "role": "technologist",
                "password": PASSWORD,
                "sources": sources,
                "upload_sources": uploads,
            },
            headers=admin,
            timeout=30,
        )
        assert created.status_code < 300, created.text
        key = httpx.post(
            f"{api}/api-keys", json={"user": username, "name": "tests"}, headers=admin
        ).json()["key"]
        keys[username] = {"Authorization": f"Bearer {key}"}

    study = StudySpec(patient_name="STAGED^SECRET")
    path = tmp_path / "staged.dcm"
    path.write_bytes(ct_image(study, generate_uid(), 1, 16, 16))
    sent = run(
        [dcmtk("storescu"), "-aet", "STAGED_B", "-aec", SERVER_AET, "127.0.0.1",
         str(world.dimse_port), str(path)]
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr

    listed = httpx.get(sessions_api(world), headers=admin, timeout=30).json()
    [session] = [s["id"] for s in listed if s["received_from"] == "STAGED_B"]
    base = f"{sessions_api(world)}/{session}"
    # Before commit: in no read path, not even the admin's.
    qido = f"{world.url()}/studies"
    params = {"StudyInstanceUID": study.study_instance_uid}
    assert httpx.get(qido, params=params, headers=admin).json() == []

    outsiders = {
        "tech": (world.auth("tech"), "default"),  # ClinicA only
        "reads_a_uploads_b": (keys["reads_a_uploads_b"], "default"),
        "acme_admin": (world.auth("acme_admin"), "acme"),
    }
    for _, (auth, tenant) in outsiders.items():
        mine = f"{sessions_api(world, tenant)}/{session}"
        listed = httpx.get(sessions_api(world, tenant), headers=auth, timeout=30).json()
        assert session not in {s["id"] for s in listed}
        found = httpx.get(mine, headers=auth, timeout=30)
        assert found.status_code == 404 and "STAGED^SECRET" not in found.text
        assert httpx.post(f"{mine}/commit", headers=auth).status_code == 404
        assert httpx.post(f"{mine}/discard", headers=auth).status_code == 404
    # Without the upload permission: refused at the gate.
    assert httpx.get(base, headers=world.auth("read_b")).status_code == 403

    # A reviewer of ClinicB sees and commits it; then its readers see it, others do not.
    view = httpx.get(base, headers=keys["tech_b"], timeout=30)
    assert view.status_code == 200 and view.json()["patients"][0]["PatientName"] == (
        "STAGED^SECRET"
    )
    committed = httpx.post(f"{base}/commit", headers=keys["tech_b"], timeout=60)
    assert committed.status_code == 200, committed.text
    assert len(httpx.get(qido, params=params, headers=world.auth("read_b")).json()) == 1
    assert httpx.get(qido, params=params, headers=world.auth("tech")).json() == []
    acme_qido = f"{world.url('acme')}/studies"
    assert httpx.get(acme_qido, params=params, headers=world.auth("acme_admin")).json() == []
