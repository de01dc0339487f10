"""The orders REST API over real HTTP (a `tessera serve` process, SQLite and PostgreSQL):
create / search / get / update / cancel / status / history, bad input answered 4xx with the
problem named, and the security rows: another tenant, a source-locked user and a user
without the permission never see, change or infer an order."""

from __future__ import annotations

import httpx
import pytest

from tests.security_world import World, instance_bytes, stow
from tests.world import DATABASES, add_user, served_world


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "orders") as built:
        # A technologist of ClinicB (orders permission, locked to ClinicB).
        add_user(built, "tech_b", "technologist", ["ClinicB"], upload_sources=["ClinicB"])
        yield built


def body(accession: str, **extra: object) -> dict:
    value = {
        "accession_number": accession,
        "patient_name": "Doe^Jane",
        "patient_id": "MRN-" + accession,
        "patient_birth_date": "1980-02-03",
        "patient_sex": "F",
        "source": "ClinicA",
        "priority": "ROUTINE",
        "requested_procedure_id": "RP1",
        "requested_procedure_description": "CT chest",
        "requested_procedure_code": {
            "code_value": "24627-2",
            "coding_scheme_designator": "LN",
            "code_meaning": "CT Chest",
        },
        "scheduled_procedure_steps": [
            {
                "start": "2026-12-01T10:30:00",
                "modality": "CT",
                "scheduled_station_ae_title": "CT1",
                "description": "CT chest w/o contrast",
            }
        ],
    }
    value.update(extra)
    return value


def test_create_get_search_update_cancel(world: World) -> None:
    api, admin = world.api(), world.auth("admin")
    client = httpx.Client(timeout=30, headers=admin)
    created = client.post(f"{api}/orders", json=body("R1"))
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "SCHEDULED" and order["source"] == "ClinicA"
    assert order["study_instance_uid"].startswith("2.25.")
    assert order["scheduled_procedure_steps"][0]["start"] == "2026-12-01T10:30:00"
    assert order["requested_procedure_code"]["code_value"] == "24627-2"
    # Idempotent: the same accession for the same patient is the same order.
    again = client.post(f"{api}/orders", json=body("R1"))
    assert again.status_code == 200 and again.json()["id"] == order["id"]
    assert again.json()["study_instance_uid"] == order["study_instance_uid"]
    conflict = client.post(f"{api}/orders", json=body("R1", patient_id="SOMEONE"))
    assert conflict.status_code == 409 and "another patient" in conflict.json()["detail"]

    got = client.get(f"{api}/orders/{order['id']}").json()
    assert got == order
    found = client.get(f"{api}/orders", params={"patient_name": "doe", "modality": "ct"}).json()
    assert order["id"] in [x["id"] for x in found]
    assert (
        client.get(f"{api}/orders", params={"accession_number": "R1"}).json()[0]["id"]
        == (order["id"])
    )
    assert client.get(f"{api}/orders", params={"scheduled_from": "2026-12-02"}).json() == []

    patched = client.patch(f"{api}/orders/{order['id']}", json={"priority": "stat"})
    assert patched.status_code == 200 and patched.json()["priority"] == "STAT"
    cancelled = client.post(f"{api}/orders/{order['id']}/cancel", json={"reason": "duplicate"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    late = client.patch(f"{api}/orders/{order['id']}", json={"priority": "LOW"})
    assert late.status_code == 409 and "CANCELLED" in late.json()["detail"]
    assert client.post(f"{api}/orders/{order['id']}/cancel").status_code == 409
    history = client.get(f"{api}/orders/{order['id']}/history").json()
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "SCHEDULED"),
        ("SCHEDULED", "CANCELLED"),
    ]
    assert history[1]["reason"] == "duplicate" and history[1]["principal"].startswith("admin")
    # The audit trail has the changes.
    audit = client.get(f"{api}/audit", params={"action": "order.cancel"}).json()
    assert audit and audit[0]["target"] == str(order["id"])


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "named"),
    [
        ("POST", "/orders", {"patient_name": "X"}, 400, "accession_number"),
        ("POST", "/orders", "not json", 400, "JSON"),
        ("POST", "/orders", ["a list"], 400, "object"),
        (
            "POST",
            "/orders",
            {"accession_number": "B1", "patient_id": "P", "patient_birth_date": "31/12/1999"},
            400,
            "patient_birth_date",
        ),
        (
            "POST",
            "/orders",
            {
                "accession_number": "B2",
                "patient_id": "P",
                "scheduled_procedure_steps": [{"start": "2026-02-30T10:00"}],
            },
            400,
            "start",
        ),
        (
            "POST",
            "/orders",
            {"accession_number": "B3", "patient_id": "P", "source": "Nowhere"},
            400,
            "unknown source",
        ),
        ("GET", "/orders?scheduled_from=yesterday", None, 400, "scheduled_from"),
        ("GET", "/orders?status=DONE", None, 400, "status"),
        ("GET", "/orders?sort=age", None, 400, "sort"),
        ("GET", "/orders?limit=many", None, 400, "limit"),
        ("GET", "/orders?colour=red", None, 400, "colour"),
        ("GET", "/orders?source=Nowhere", None, 400, "unknown source"),
        ("GET", "/orders/999999", None, 404, "no order"),
        ("GET", "/orders/abc", None, 404, "no order"),
        ("GET", "/orders/-1/history", None, 404, "no order"),
        ("PATCH", "/orders/999999", {"priority": "LOW"}, 404, "no order"),
        ("POST", "/orders/999999/status", {"status": "FINAL"}, 404, "no order"),
    ],
)
def test_bad_input_is_a_named_4xx(world: World, method, path, payload, status, named) -> None:  # type: ignore[no-untyped-def]
    kwargs: dict = {}
    if isinstance(payload, str):
        kwargs["content"] = payload
    elif payload is not None:
        kwargs["json"] = payload
    response = httpx.request(
        method, world.api() + path, headers=world.auth("admin"), timeout=30, **kwargs
    )
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]


def test_status_transitions(world: World) -> None:
    api = world.api()
    client = httpx.Client(timeout=30, headers=world.auth("admin"))
    order = client.post(f"{api}/orders", json=body("T1")).json()
    url = f"{api}/orders/{order['id']}/status"
    refused = client.post(url, json={"status": "FINAL"})
    assert refused.status_code == 409 and "cannot become FINAL" in refused.json()["detail"]
    assert client.post(url, json={"status": "WHATEVER"}).status_code == 400
    for status in ("IN_PROGRESS", "IMAGES_READY", "REPORTED", "FINAL"):
        response = client.post(url, json={"status": status})
        assert response.status_code == 200 and response.json()["status"] == status


def test_other_tenant_locked_users_and_permissions(world: World) -> None:
    api = world.api()
    admin = httpx.Client(timeout=30, headers=world.auth("admin"))
    order = admin.post(f"{api}/orders", json=body("S1")).json()
    path = f"/orders/{order['id']}"

    def call(user: str, method: str, suffix: str = "", tenant: str = "default", **kw):  # type: ignore[no-untyped-def]
        return httpx.request(
            method, world.api(tenant) + suffix, headers=world.auth(user), timeout=30, **kw
        )

    # Seen by the ClinicA users (tech, ref_a), with `read`.
    for user in ("tech", "ref_a"):
        assert call(user, "GET", path).json()["id"] == order["id"]
    # Hidden from a ClinicB user and from another tenant: 404 like a missing order, no hit in
    # a search by the exact accession number, no history.
    for user, tenant in (("read_b", "default"), ("tech_b", "default"), ("acme_admin", "acme")):
        for suffix in (path, path + "/history"):
            response = call(user, "GET", suffix, tenant)
            assert response.status_code == 404, (user, suffix)
            assert response.json()["detail"] == f"no order {order['id']}"
        assert call(user, "GET", "/orders?accession_number=S1", tenant).json() == []
        assert call(user, "GET", "/orders?patient_id=MRN-S1", tenant).json() == []
    # Writes: a ClinicB technologist cannot change or cancel it (404), nor create for ClinicA.
    assert call("tech_b", "PATCH", path, json={"priority": "LOW"}).status_code == 404
    assert call("tech_b", "POST", path + "/cancel").status_code == 404
    refused = call("tech_b", "POST", "/orders", json=body("S2"))
    assert refused.status_code == 400 and "unknown source" in refused.json()["detail"]
    assert call("tech_b", "GET", "/orders?source=ClinicA").status_code == 400
    # Without the `orders` permission: 403; without `read`: 403 even for reading.
    assert call("ref_a", "POST", "/orders", json=body("S3")).status_code == 403
    assert call("ref_a", "POST", path + "/cancel").status_code == 403
    assert call("nobody", "GET", "/orders").status_code == 403
    assert httpx.get(f"{api}/orders", timeout=30).status_code == 401
    # The other tenant's own order with the same accession is a separate order.
    acme = call("acme_admin", "POST", "/orders", "acme", json=body("S1", source=None))
    assert acme.status_code == 201 and acme.json()["id"] != order["id"]
    assert call("admin", "GET", f"/orders/{acme.json()['id']}").status_code == 404
    # A locked technologist's order defaults to their source.
    own = call("tech_b", "POST", "/orders", json=body("S4", source=None))
    assert own.status_code == 201 and own.json()["source"] == "ClinicB"
    assert call("tech", "GET", f"/orders/{own.json()['id']}").status_code == 404


def test_stow_attaches_the_upload_to_its_order(world: World) -> None:
    api = world.api()
    admin = httpx.Client(timeout=30, headers=world.auth("admin"))
    order = admin.post(f"{api}/orders", json=body("W1", patient_id="PAT-1")).json()
    data = instance_bytes(order["study_instance_uid"], "2.25.5151", "2.25.5152", "Doe^Jane", 1)
    assert stow(world.url(), [data], world.auth("tech"), "ClinicA").status_code == 200
    attached = admin.get(f"{api}/orders/{order['id']}").json()
    assert attached["status"] == "IN_PROGRESS" and attached["images_attached"] is True
    history = admin.get(f"{api}/orders/{order['id']}/history").json()
    assert history[-1]["to_status"] == "IN_PROGRESS" and history[-1]["principal"].startswith("tech")


def _failure_reasons(response: httpx.Response) -> list[int]:
    failed = response.json().get("00081198", {}).get("Value", [])
    return [item["00081197"]["Value"][0] for item in failed]


def test_stow_with_order_parameter(world: World) -> None:
    api = world.api()
    admin = httpx.Client(timeout=30, headers=world.auth("admin"))
    order = admin.post(f"{api}/orders", json=body("W2", patient_id="PAT-1")).json()
    # The modality made up its own Study Instance UID: ?order= names the order anyway.
    own_study = "2.25.626262"
    data = instance_bytes(own_study, "2.25.626263", "2.25.626264", "Doe^Jane", 1)
    url = f"{world.url()}/studies?source=ClinicA&order={order['id']}"
    response = httpx.post(
        url, content=_multipart(data), headers=_stow_headers(world, "tech"), timeout=30
    )
    assert response.status_code == 200, response.text
    attached = admin.get(f"{api}/orders/{order['id']}").json()
    assert attached["status"] == "IN_PROGRESS" and attached["images_attached"]
    # Another patient's instance for this order is refused (nothing merged), with the reason.
    other = instance_bytes(own_study, "2.25.626263", "2.25.626265", "Roe^Rick", 2)
    other = other.replace(b"PAT-1", b"PAT-9")
    refused = httpx.post(
        url, content=_multipart(other), headers=_stow_headers(world, "tech"), timeout=30
    )
    assert refused.status_code == 409, refused.text
    assert _failure_reasons(refused) == [0xC413]
    found = httpx.get(
        f"{world.url()}/instances",
        params={"SOPInstanceUID": "2.25.626265"},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert found.status_code in (200, 204) and (found.status_code == 204 or found.json() == [])
    # Unknown or hidden (another site's) orders: the whole request is a 400.
    for user, source, order_id in (
        ("tech", "ClinicA", "999999"),
        ("tech", "ClinicA", "x"),
        ("tech_b", "ClinicB", str(order["id"])),
    ):
        bad = httpx.post(
            f"{world.url()}/studies?source={source}&order={order_id}",
            content=_multipart(data),
            headers=_stow_headers(world, user),
            timeout=30,
        )
        assert bad.status_code == 400 and "order: no order" in bad.json()["detail"], bad.text


def test_upload_cli_with_order(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    api = world.api()
    admin = httpx.Client(timeout=30, headers=world.auth("admin"))
    order = admin.post(f"{api}/orders", json=body("W3", patient_id="PAT-1")).json()
    folder = tmp_path / "files"
    folder.mkdir()
    for number in (1, 2):
        data = instance_bytes("2.25.737373", "2.25.737374", f"2.25.73737{4 + number}", "D", number)
        (folder / f"{number}.dcm").write_bytes(data)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "upload",
            "--url",
            world.url(),
            "--token",
            world.keys["tech"],
            "--source",
            "ClinicA",
            "--order",
            str(order["id"]),
            "--no-progress",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert admin.get(f"{api}/orders/{order['id']}").json()["status"] == "IN_PROGRESS"


def _multipart(data: bytes) -> bytes:
    from tessera.dicomweb import multipart_writer

    return multipart_writer.body("orderboundary", [data])


def _stow_headers(world: World, user: str) -> dict[str, str]:
    from tessera.client.stow import request_content_type

    return {
        **world.auth(user),
        "Content-Type": request_content_type("orderboundary"),
        "Accept": "application/dicom+json",
    }


# --- documents for an order (docs/documents.md "Documents for an order") -----------------


def _document(
    world: World, user: str, url: str, pdf: bytes | None = None, **fields: str
) -> httpx.Response:
    from tests.document_files import pdf_bytes

    return httpx.post(
        url,
        files={"file": ("referral.pdf", pdf or pdf_bytes(1, "Referral"), "application/pdf")},
        data={"title": "Referral letter", **fields},
        headers=world.auth(user),
        timeout=60,
    )


def _study(world: World, user: str, study_uid: str) -> dict:
    found = httpx.get(
        f"{world.url()}/studies",
        params={"StudyInstanceUID": study_uid, "includefield": "all"},
        headers=world.auth(user),
        timeout=30,
    )
    assert found.status_code == 200, found.text
    (study,) = found.json()
    return study


def test_document_for_an_order_without_images(world: World) -> None:
    api = world.api()
    admin = httpx.Client(timeout=30, headers=world.auth("admin"))
    order = admin.post(f"{api}/orders", json=body("DOC1", patient_id="PAT-D1")).json()
    url = f"{api}/orders/{order['id']}/documents"
    from tests.document_files import pdf_bytes

    letter = pdf_bytes(1, "Referral")
    first = _document(world, "tech", url, letter)
    assert first.status_code == 201, first.text
    stored = first.json()
    assert stored["StudyInstanceUID"] == order["study_instance_uid"]
    assert stored["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.104.1"
    # Patient and study attributes come from the order; the tech (ClinicA) sees the study.
    study = _study(world, "tech", order["study_instance_uid"])
    assert study["00100020"]["Value"] == ["PAT-D1"]
    assert study["00100010"]["Value"][0]["Alphabetic"] == "Doe^Jane"
    assert study["00100030"]["Value"] == ["19800203"]
    assert study["00100040"]["Value"] == ["F"]
    assert study["00080050"]["Value"] == ["DOC1"]
    assert study["00080020"]["Value"] == ["20261201"]  # the first step's start
    assert study["00081030"]["Value"] == ["CT chest"]
    attached = admin.get(f"{api}/orders/{order['id']}").json()
    assert attached["status"] == "IN_PROGRESS" and attached["images_attached"] is True
    # A second document joins the same study, in a new series of its own.
    second = _document(world, "tech", url)
    assert second.status_code == 201, second.text
    assert second.json()["StudyInstanceUID"] == order["study_instance_uid"]
    assert second.json()["SeriesInstanceUID"] != stored["SeriesInstanceUID"]
    series = httpx.get(
        f"{world.url()}/studies/{order['study_instance_uid']}/series",
        headers=world.auth("tech"),
        timeout=30,
    ).json()
    assert sorted(s["00200011"]["Value"][0] for s in series) == [1, 2]
    # The PDF comes back byte for byte, as a PDF.
    pdf = httpx.get(
        f"{stored['RetrieveURL']}/bulkdata/00420011",
        headers={**world.auth("tech"), "Accept": "application/pdf"},
        timeout=30,
    )
    assert pdf.status_code == 200 and pdf.content == letter


def test_document_for_a_hidden_or_closed_order(world: World) -> None:
    api = world.api()
    admin = httpx.Client(timeout=30, headers=world.auth("admin"))
    order = admin.post(f"{api}/orders", json=body("DOC2", patient_id="PAT-D2")).json()
    path = f"/orders/{order['id']}/documents"
    # Another site's user, another tenant, a missing or malformed ID: 404, nothing stored.
    for user, tenant, suffix in (
        ("tech_b", "default", path),
        ("acme_admin", "acme", path),
        ("tech", "default", "/orders/999999/documents"),
        ("tech", "default", "/orders/x/documents"),
    ):
        refused = _document(world, user, world.api(tenant) + suffix)
        assert refused.status_code == 404, (user, tenant, refused.text)
        assert refused.json()["detail"].startswith("no order")
    # Without the `upload` permission: 403.
    assert _document(world, "ref_a", world.api() + path).status_code == 403
    found = httpx.get(
        f"{world.url()}/studies",
        params={"StudyInstanceUID": order["study_instance_uid"]},
        headers=world.auth("admin"),
        timeout=30,
    )
    assert found.status_code == 204 or found.json() == []
    assert admin.get(f"{api}/orders/{order['id']}").json()["status"] == "SCHEDULED"
    # A cancelled order: 409 with the reason.
    admin.post(f"{api}/orders/{order['id']}/cancel", json={"reason": "patient left"})
    closed = _document(world, "tech", world.api() + path)
    assert closed.status_code == 409, closed.text
    assert "CANCELLED" in closed.json()["detail"]
    # The source-locked ClinicB technologist stores a document for its own order.
    own = httpx.post(
        f"{api}/orders", json=body("DOC3", source=None), headers=world.auth("tech_b"), timeout=30
    ).json()
    mine = _document(world, "tech_b", f"{api}/orders/{own['id']}/documents")
    assert mine.status_code == 201, mine.text
    assert _study(world, "tech_b", own["study_instance_uid"])["00080050"]["Value"] == ["DOC3"]
    hidden = httpx.get(
        f"{world.url()}/studies",
        params={"StudyInstanceUID": own["study_instance_uid"]},
        headers=world.auth("tech"),
        timeout=30,
    )
    assert hidden.status_code == 204 or hidden.json() == []


def test_study_document_attached_to_an_order(world: World) -> None:
    api = world.api()
    admin = httpx.Client(timeout=30, headers=world.auth("admin"))
    by_query = admin.post(f"{api}/orders", json=body("DOC4", patient_id="PAT-1")).json()
    by_field = admin.post(f"{api}/orders", json=body("DOC5", patient_id="PAT-1")).json()
    studies = ["2.25.7171001", "2.25.7171002"]
    for number, study_uid in enumerate(studies, 1):
        data = instance_bytes(study_uid, study_uid + ".1", study_uid + ".1.1", "Doe^Jane", number)
        assert stow(world.url(), [data], world.auth("tech"), "ClinicA").status_code == 200
    base = f"{world.url()}/studies"
    stored = _document(
        world, "tech", f"{base}/{studies[0]}/documents?order={by_query['id']}&source=ClinicA"
    )
    assert stored.status_code == 201, stored.text
    stored = _document(
        world, "tech", f"{base}/{studies[1]}/documents", order=str(by_field["id"]), source="ClinicA"
    )
    assert stored.status_code == 201, stored.text
    for order in (by_query, by_field):
        attached = admin.get(f"{api}/orders/{order['id']}").json()
        assert attached["status"] == "IN_PROGRESS" and attached["images_attached"] is True
    # An order the uploader cannot see, a missing one: 404; a cancelled one: 409; nothing stored.
    hidden = httpx.post(
        f"{api}/orders", json=body("DOC6", source=None), headers=world.auth("tech_b"), timeout=30
    ).json()
    cancelled = admin.post(f"{api}/orders", json=body("DOC7", patient_id="PAT-1")).json()
    admin.post(f"{api}/orders/{cancelled['id']}/cancel")
    for order_id, status in ((hidden["id"], 404), (999999, 404), (cancelled["id"], 409)):
        refused = _document(
            world, "tech", f"{base}/{studies[0]}/documents?order={order_id}", source="ClinicA"
        )
        assert refused.status_code == status, refused.text
    series = httpx.get(
        f"{base}/{studies[0]}/series", headers=world.auth("admin"), timeout=30
    ).json()
    assert len(series) == 2  # the images and the one document
