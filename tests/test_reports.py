"""Reports over real HTTP against a real server (SQLite and PostgreSQL): drafts and their
versions, signing into DICOM (SR + Encapsulated PDF found by QIDO-RS, served by WADO-RS,
checked by dciodvfy), addenda, templates, and concurrent edits of one draft."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import httpx
import pytest
from pydicom.uid import BasicTextSRStorage, ComprehensiveSRStorage, EncapsulatedPDFStorage

from tests.report_world import (
    ReportClient,
    dciodvfy_errors,
    retrieve,
    study_instances,
)
from tests.security_world import World
from tests.world import DATABASES, served_world


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "reports") as built:
        yield built


def _study(world: World, name: str) -> str:
    return next(o.study for o in world.objects if o.name == name)


def _items(ds) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Content items by concept code value -> text, (number, unit) or code value."""
    found: dict[str, object] = {}
    for item in ds.ContentSequence:
        concept = item.ConceptNameCodeSequence[0].CodeValue
        if item.ValueType == "TEXT":
            found[concept] = item.TextValue
        elif item.ValueType == "NUM":
            measured = item.MeasuredValueSequence[0]
            unit = measured.MeasurementUnitsCodeSequence[0].CodeValue
            found[concept] = (float(measured.NumericValue), unit)
        elif item.ValueType == "CODE":
            found[concept] = item.ConceptCodeSequence[0].CodeValue
    return found


def test_free_text_report_drafted_signed_and_amended(world: World, tmp_path) -> None:
    study = _study(world, "a3")  # ClinicA and ClinicB instances
    tech, reader = ReportClient(world, "tech"), ReportClient(world, "read_b")
    before = study_instances(world, "admin", study)

    created = tech.create(study, {"sections": {"findings": "Small nodule."}})
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    report = created.json()
    assert (report["status"], report["version"], report["created_by"]) == ("DRAFT", 1, "tech")
    report_id = report["id"]

    edited = tech.edit(
        study,
        report_id,
        1,
        {
            "status": "PRELIMINARY",
            "sections": {"findings": "Small nodule, 4 mm.", "impression": "Follow up."},
        },
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2 and edited.json()["status"] == "PRELIMINARY"
    assert edited.headers["etag"] == '"2"'
    # Versions are kept: the first draft is still there.
    versions = reader.get(study, report_id).json()["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "DRAFT"), (2, "PRELIMINARY")]

    # A technologist drafts but does not sign.
    assert tech.sign(study, report_id, 2).status_code == 403
    signed = reader.sign(study, report_id, 2)
    assert signed.status_code == 200, signed.text
    final = signed.json()
    assert (final["status"], final["version"], final["signed_by"]) == ("FINAL", 3, "read_b")
    assert final["signed_at"] is not None
    sr_uid = final["versions"][-1]["sr_sop_instance_uid"]
    pdf_uid = final["versions"][-1]["pdf_sop_instance_uid"]

    # QIDO-RS lists both in the study; WADO-RS serves them.
    after = study_instances(world, "admin", study)
    assert set(after) - set(before) == {sr_uid, pdf_uid}
    assert after[sr_uid] == BasicTextSRStorage and after[pdf_uid] == EncapsulatedPDFStorage
    sr = retrieve(world, "read_b", study, sr_uid)
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "read_b"
    assert sr.VerifyingObserverSequence[0].VerifyingOrganization == "default"
    assert _items(sr) == {"121070": "Small nodule, 4 mm.", "121072": "Follow up."}
    assert "PredecessorDocumentsSequence" not in sr
    pdf = retrieve(world, "read_b", study, pdf_uid)
    document = bytes(pdf.EncapsulatedDocument)[: int(pdf.EncapsulatedDocumentLength)]
    assert document.startswith(b"%PDF-") and document.rstrip().endswith(b"%%EOF")
    assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
    for ds in (sr, pdf):
        assert dciodvfy_errors(ds, tmp_path / f"{ds.SOPInstanceUID}.dcm") == []

    # A signed report never changes: editing or re-signing it is refused.
    refused = tech.edit(study, report_id, 3, {"sections": {"findings": "changed"}})
    assert refused.status_code == 409 and "addendum" in refused.json()["detail"]
    assert reader.sign(study, report_id, 3).status_code == 409

    amended = reader.addendum(study, report_id, 3, "Nodule is calcified on review.")
    assert amended.status_code == 201, amended.text
    assert (amended.json()["status"], amended.json()["version"]) == ("AMENDED", 4)
    new_sr_uid = amended.json()["versions"][-1]["sr_sop_instance_uid"]
    new_sr = retrieve(world, "admin", study, new_sr_uid)
    predecessor = new_sr.PredecessorDocumentsSequence[0]
    assert predecessor.StudyInstanceUID == study
    assert predecessor.ReferencedSeriesSequence[0].SeriesInstanceUID == sr.SeriesInstanceUID
    referenced = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == sr_uid
    assert new_sr.SeriesInstanceUID == sr.SeriesInstanceUID and new_sr.InstanceNumber == 4
    assert _items(new_sr)["121078"] == "Nodule is calcified on review."
    assert dciodvfy_errors(new_sr, tmp_path / "amended.dcm") == []
    # The signed versions stay as they were.
    versions = reader.get(study, report_id).json()["versions"]
    assert [v["status"] for v in versions] == ["DRAFT", "PRELIMINARY", "FINAL", "AMENDED"]
    assert versions[2]["sr_sop_instance_uid"] == sr_uid

    # Each signature is a `report.signed` entry in the change feed, in commit order.
    feed = httpx.get(
        f"{world.api()}/changes",
        params={"after": 0, "type": "report.signed"},
        headers=world.auth("admin"),
        timeout=30,
    ).json()["changes"]
    signed_here = [c["sop_instance_uid"] for c in feed if c["study_instance_uid"] == study]
    assert signed_here == [sr_uid, new_sr_uid]

    # Every change is in the audit trail, by whom, in the order made (newest first there).
    audit = httpx.get(
        f"{world.api()}/audit",
        params={"action": "report.*", "limit": 1000},
        headers=world.auth("admin"),
        timeout=30,
    ).json()
    mine = [e for e in audit if e["detail"].get("report_id") == report_id]
    assert [(e["action"], e["principal"], e["detail"]["version"], e["target"]) for e in mine] == [
        ("report.addendum", "read_b", 4, study),
        ("report.sign", "read_b", 3, study),
        ("report.edit", "tech", 2, study),
        ("report.create", "tech", 1, study),
    ]
    assert mine[-1]["detail"]["status"] == "DRAFT"


def test_report_instances_carry_the_signers_source(world: World) -> None:
    """The SR and PDF join the study under the source of its first instance the signer
    sees: a reader of the other source of a mixed study reads the report over the API."""
    study = _study(world, "a3")
    reader = ReportClient(world, "read_b")  # sees ClinicB only
    report_id = reader.create(study, {"sections": {"impression": "Normal."}}).json()["id"]
    final = reader.sign(study, report_id, 1).json()
    sr_uid = final["versions"][-1]["sr_sop_instance_uid"]
    assert sr_uid in study_instances(world, "read_b", study)
    assert sr_uid not in study_instances(world, "ref_a", study)  # ClinicA only
    seen = ReportClient(world, "ref_a").get(study, report_id)
    assert seen.status_code == 200 and seen.json()["status"] == "FINAL"


def test_structured_template_report(world: World, tmp_path) -> None:
    study = _study(world, "b2")
    reader = ReportClient(world, "read_b")
    echo = {
        "heart_rate": 112,
        "lv_ejection_fraction": 64.5,
        "cardiac_situs": "solitus",
        "pericardial_effusion": "none",
        "impression": "Structurally normal heart.",
    }
    bad_choice = reader.create(
        study, {"template": "pediatric-echo", "values": {**echo, "cardiac_situs": "sideways"}}
    )
    assert bad_choice.status_code == 400
    assert "values.cardiac_situs" in bad_choice.json()["detail"]
    assert "solitus" in bad_choice.json()["detail"]
    out_of_range = reader.create(
        study, {"template": "pediatric-echo", "values": {"lv_ejection_fraction": 140}}
    )
    assert out_of_range.status_code == 400
    assert "values.lv_ejection_fraction" in out_of_range.json()["detail"]
    unknown = reader.create(study, {"template": "pediatric-echo", "values": {"lvef": 60}})
    assert unknown.status_code == 400 and "values.lvef" in unknown.json()["detail"]
    no_template = reader.create(study, {"template": "cardiology-x", "values": {}})
    assert no_template.status_code == 400 and "template" in no_template.json()["detail"]
    bad_section = reader.create(study, {"sections": {"summary": "x"}})
    assert bad_section.status_code == 400 and "sections.summary" in bad_section.json()["detail"]

    # A draft may be incomplete; signing needs every required field.
    partial = {k: v for k, v in echo.items() if k != "lv_ejection_fraction"}
    created = reader.create(study, {"template": "pediatric-echo", "values": partial})
    assert created.status_code == 201, created.text
    report_id = created.json()["id"]
    incomplete = reader.sign(study, report_id, 1)
    assert incomplete.status_code == 400
    assert "values.lv_ejection_fraction" in incomplete.json()["detail"]
    assert reader.edit(study, report_id, 1, {"values": echo}).status_code == 200
    signed = reader.sign(study, report_id, 2)
    assert signed.status_code == 200, signed.text
    sr_uid = signed.json()["versions"][-1]["sr_sop_instance_uid"]
    assert study_instances(world, "read_b", study)[sr_uid] == ComprehensiveSRStorage
    sr = retrieve(world, "read_b", study, sr_uid)
    items = _items(sr)
    assert items["10230-1"] == (64.5, "%")  # coded NUM with its UCUM unit
    assert items["8867-4"] == (112.0, "/min")
    assert items["SITUS"] == "SOLITUS"  # a coded choice is a CODE item
    assert items["PERICARDIAL_EFFU"] == "none"  # no code given: TEXT under a local concept
    assert items["121072"] == "Structurally normal heart."
    assert dciodvfy_errors(sr, tmp_path / "echo.dcm") == []


def test_templates_api(world: World) -> None:
    admin, reader = world.auth("admin"), world.auth("read_b")
    api = world.api()
    listed = httpx.get(f"{api}/report-templates", headers=reader, timeout=30)
    assert listed.status_code == 200
    assert {"radiology", "pediatric-echo"} <= {t["name"] for t in listed.json()}
    shipped = httpx.get(f"{api}/report-templates/radiology", headers=reader, timeout=30).json()
    assert shipped["builtin"] is True and shipped["fields"][2]["name"] == "findings"

    custom = {
        "name": "thyroid-us",
        "title": "Thyroid ultrasound",
        "fields": [
            {
                "name": "nodule_size",
                "type": "number",
                "unit": {"value": "mm", "scheme": "UCUM", "meaning": "mm"},
            },
            {"name": "tirads", "type": "choice", "choices": [{"value": "TR1"}, {"value": "TR5"}]},
        ],
    }
    url = f"{api}/report-templates/thyroid-us"
    assert httpx.put(url, json=custom, headers=reader, timeout=30).status_code == 403
    assert httpx.put(url, json=custom, headers=admin, timeout=30).status_code == 201
    assert httpx.put(url, json=custom, headers=admin, timeout=30).status_code == 200
    no_unit = {**custom, "fields": [{"name": "size", "type": "number"}]}
    refused = httpx.put(url, json=no_unit, headers=admin, timeout=30)
    assert refused.status_code == 400 and "fields.size.unit" in refused.json()["detail"]
    shipped_name = httpx.put(
        f"{api}/report-templates/radiology", json={**custom, "name": "radiology"}, headers=admin
    )
    assert shipped_name.status_code == 409
    assert httpx.get(url, headers=reader, timeout=30).json()["title"] == "Thyroid ultrasound"
    saves = httpx.get(
        f"{api}/audit", params={"action": "report.template.save"}, headers=admin, timeout=30
    ).json()
    assert [e["target"] for e in saves if e["target"] == "thyroid-us"] == ["thyroid-us"] * 2
    # Another tenant has its own templates.
    acme = world.auth("acme_admin")
    assert (
        httpx.get(f"{world.api('acme')}/report-templates/thyroid-us", headers=acme).status_code
        == 404
    )

    study = _study(world, "b2")
    client = ReportClient(world, "read_b")
    wrong = client.create(study, {"template": "thyroid-us", "values": {"tirads": "TR9"}})
    assert wrong.status_code == 400 and "values.tirads" in wrong.json()["detail"]
    made = client.create(
        study, {"template": "thyroid-us", "values": {"nodule_size": 7, "tirads": "TR5"}}
    )
    assert made.status_code == 201, made.text
    signed = client.sign(study, made.json()["id"], 1)
    assert signed.status_code == 200, signed.text


def test_versions_guard_against_lost_updates(world: World) -> None:
    study = _study(world, "b2")
    writer = ReportClient(world, "read_b")
    report_id = writer.create(study, {"sections": {"findings": "v1"}}).json()["id"]

    missing = writer.edit(study, report_id, None, {"sections": {"findings": "x"}})
    assert missing.status_code == 428 and "If-Match" in missing.json()["detail"]
    bad = httpx.put(
        f"{writer.reports(study)}/{report_id}",
        json={"sections": {}},
        headers={**writer.headers, "If-Match": "abc"},
    )
    assert bad.status_code == 400 and "If-Match" in bad.json()["detail"]
    # The body's "version" serves clients that cannot set headers.
    by_body = httpx.put(
        f"{writer.reports(study)}/{report_id}",
        json={"version": 1, "sections": {"findings": "v2"}},
        headers=writer.headers,
    )
    assert by_body.status_code == 200 and by_body.json()["version"] == 2

    # Eight concurrent edits, all based on version 2: exactly one wins.
    barrier = threading.Barrier(8)
    results: list[tuple[int, str]] = []

    def edit(n: int) -> None:
        barrier.wait()
        response = writer.edit(study, report_id, 2, {"sections": {"findings": f"edit {n}"}})
        results.append((response.status_code, f"edit {n}"))

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(code for code, _ in results)
    assert codes == [200] + [409] * 7, results
    winner = next(text for code, text in results if code == 200)
    current = writer.get(study, report_id).json()
    assert current["version"] == 3 and current["content"]["sections"]["findings"] == winner
    assert len(current["versions"]) == 3
    stale = writer.edit(study, report_id, 2, {"sections": {"findings": "late"}})
    assert stale.status_code == 409 and "version 3" in stale.json()["detail"]


def _reports_cli(world: World, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        TESSERA_DATABASE_URL=world.server.database_url,
        TESSERA_DATA_DIR=str(world.server.data_dir),
    )
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "reports", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_reports_cli(world: World) -> None:
    study = _study(world, "a1")
    client = ReportClient(world, "admin")
    report_id = client.create(study, {"sections": {"findings": "CLI finding"}}).json()["id"]
    assert client.sign(study, report_id, 1).status_code == 200

    listed = _reports_cli(world, "list", "--status", "FINAL", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {"id": report_id, "study_instance_uid": study, "status": "FINAL"}.items() <= next(
        r for r in rows if r["id"] == report_id
    ).items()
    assert all(r["status"] == "FINAL" for r in rows)
    by_study = json.loads(_reports_cli(world, "list", "--study", study, "--json").stdout)
    assert report_id in {r["id"] for r in by_study}
    assert {r["study_instance_uid"] for r in by_study} == {study}

    shown = _reports_cli(world, "show", study, str(report_id))
    assert shown.returncode == 0, shown.stderr
    assert "FINAL" in shown.stdout and "CLI finding" in shown.stdout and "SR " in shown.stdout
    missing = _reports_cli(world, "show", study, "999999")
    assert missing.returncode == 2 and "no report 999999" in missing.stderr
    # Another tenant's view of the same study UID holds none of these reports.
    acme = json.loads(_reports_cli(world, "list", "--tenant", "acme", "--json").stdout)
    assert all(r["id"] != report_id for r in acme)
