"""HL7 v2 ADT messages applied to patient identities (tessera.services.adt), in process on
SQLite and PostgreSQL: A08 updates demographics, A40 merges, A47 changes the Patient ID,
A24 / A37 link and unlink, each through the same services (and history) as the REST API;
unknown patients and malformed messages are clear errors with nothing applied; and the same
over a real MLLP client through the listener (tessera.services.adt_hl7), where a site's feed
cannot touch or detect another site's identities."""

from __future__ import annotations

import hashlib
from pathlib import Path

import hl7
import pytest
from hl7.client import MLLPClient
from pydicom.uid import generate_uid
from sqlalchemy import select

from tessera.archive import Archive
from tessera.hl7.listener import Hl7Listener
from tessera.hl7.message import parse
from tessera.index import hl7_facilities
from tessera.index.errors import Conflict
from tessera.index.identity_models import IdentityChange, PatientLink
from tessera.index.models import Patient, Study
from tessera.index.sources import add_source, source_pk_by_name
from tessera.scope import full_scope
from tessera.services import identity_changes as ic
from tessera.services.adt import AdtError, apply_adt
from tessera.services.ingest import ingest_file
from tessera.synthetic import header_only_instance
from tests.conftest import migrated_archive

MSH = "MSH|^~\\&|ADT1|HOSP|TESSERA|TESSERA|20261201120000||ADT^{event}|MSG{event}|P|2.5.1"


@pytest.fixture
def archive(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = migrated_archive(tmp_path / "data", database_url)
    yield opened
    opened.close()


def _store(
    archive: Archive, tmp: Path, patient_id: str, issuer: str = "HOSP", source: str = "default"
) -> None:
    scope = full_scope(archive.default_tenant.id, "test")
    with archive.database.read() as conn:
        source_pk = source_pk_by_name(conn, scope.tenant_id, source)
    assert source_pk is not None
    data = header_only_instance(
        {
            "Modality": "CT",
            "PatientID": patient_id,
            "IssuerOfPatientID": issuer,
            "PatientName": "ROE^ANN",
            "PatientSex": "F",
            "StudyInstanceUID": generate_uid(),
            "SeriesInstanceUID": generate_uid(),
        }
    )
    path = tmp / f"{hashlib.sha1(data).hexdigest()}.dcm"
    path.write_bytes(data)
    assert ingest_file(archive, scope, path, hashlib.sha256(data).hexdigest(), source_pk).stored


def _adt(archive: Archive, event: str, *segments: str):  # type: ignore[no-untyped-def]
    message = "\r".join([MSH.format(event=event), *segments]) + "\r"
    scope = full_scope(archive.default_tenant.id, "hl7:ADT1")
    return apply_adt(archive, scope, parse(message.encode()), default_issuer="HOSP")


def _patient(archive: Archive, patient_id: str):  # type: ignore[no-untyped-def]
    with archive.database.read() as conn:
        return conn.execute(select(Patient).where(Patient.patient_id == patient_id)).one()


def test_a08_a40_a47_a24_a37(archive: Archive, tmp_path: Path) -> None:
    _store(archive, tmp_path, "MRN-1")
    _store(archive, tmp_path, "MRN-2")
    _store(archive, tmp_path, "MRN-3", issuer="OTHER")

    updated = _adt(archive, "A08^ADT_A01", "PID|1||MRN-1^^^HOSP&1.2.3&ISO||ROE^ANNE^M||19900102|F")
    assert updated.change_id is not None
    one = _patient(archive, "MRN-1")
    assert (one.patient_name, str(one.patient_birth_date), one.patient_sex) == (
        "ROE^ANNE^M",
        "1990-01-02",
        "F",
    )
    # The same values again: accepted, nothing recorded.
    again = _adt(archive, "A08^ADT_A01", "PID|1||MRN-1^^^HOSP||ROE^ANNE^M||19900102|F")
    assert again.change_id is None

    # A24 / A37 (the issuer from CX.4, else the source's default).
    _adt(archive, "A24^ADT_A24", "PID|1||MRN-1", "PID|2||MRN-3^^^OTHER")
    with archive.database.read() as conn:
        assert conn.execute(select(PatientLink)).all()
    _adt(archive, "A37^ADT_A37", "PID|1||MRN-1", "PID|2||MRN-3^^^OTHER")
    with archive.database.read() as conn:
        assert conn.execute(select(PatientLink)).all() == []

    merged = _adt(archive, "A40^ADT_A39", "PID|1||MRN-1^^^HOSP", "MRG|MRN-2^^^HOSP")
    two = _patient(archive, "MRN-2")
    assert two.merged_into_pk == one.id
    with archive.database.read() as conn:
        assert set(conn.execute(select(Study.patient_pk)).scalars()) == {
            one.id,
            _patient(archive, "MRN-3").id,
        }
    # A40 again: the prior identity is merged away already.
    with pytest.raises(Conflict):
        _adt(archive, "A40^ADT_A39", "PID|1||MRN-1^^^HOSP", "MRG|MRN-2^^^HOSP")

    renamed = _adt(archive, "A47^ADT_A30", "PID|1||MRN-1B^^^HOSP", "MRG|MRN-1^^^HOSP")
    assert _patient(archive, "MRN-1B").id == one.id
    with archive.database.read() as conn:
        principals = set(conn.execute(select(IdentityChange.principal)).scalars())
    assert principals == {"hl7:ADT1"}
    # Undone over the same services, newest first.
    scope = full_scope(archive.default_tenant.id, "registrar")
    for change in (renamed, merged, updated):
        assert change.change_id is not None
        ic.undo_change(archive, scope, change.change_id)
    assert _patient(archive, "MRN-1").patient_name == "ROE^ANN"
    assert _patient(archive, "MRN-2").merged_into_pk is None


def test_unknown_patients_and_bad_messages(archive: Archive, tmp_path: Path) -> None:
    _store(archive, tmp_path, "MRN-1")
    with archive.database.read() as conn:
        before = conn.execute(select(Patient).order_by(Patient.id)).all()
    for event, segments, location in (
        ("A08^ADT_A01", ("PID|1||NOPE^^^HOSP||X^Y",), "PID-3"),
        ("A08^ADT_A01", ("PID|1||MRN-1^^^OTHER||X^Y",), "PID-3"),  # another issuer's MRN-1
        ("A40^ADT_A39", ("PID|1||MRN-1", "MRG|NOPE"), "MRG-1"),
        ("A40^ADT_A39", ("PID|1||MRN-1",), "MRG"),
        ("A24^ADT_A24", ("PID|1||MRN-1",), "PID"),
        ("A08^ADT_A01", ("PID|1||MRN-1||X^Y||1990-1-2",), "PID-7"),
        ("A08^ADT_A01", ("PID|1||||X^Y",), "PID-3"),
        ("A08^ADT_A01", (), "PID"),
        ("A02^ADT_A02", ("PID|1||MRN-1",), "MSH-9"),
    ):
        with pytest.raises(AdtError) as raised:
            _adt(archive, event, *segments)
        assert raised.value.location == location, (event, segments, str(raised.value))
    with archive.database.read() as conn:
        assert conn.execute(select(Patient).order_by(Patient.id)).all() == before


def test_adt_over_mllp_acts_for_the_senders_site_only(archive: Archive, tmp_path: Path) -> None:
    from tessera.hl7 import listener as hl7_listener

    # Registered for this test only: the listener's registry is process-wide (the module
    # registers on its first import, so the registry is saved before it).
    saved = dict(hl7_listener.HANDLERS)
    from tessera.services.adt_hl7 import register_handlers

    register_handlers()

    tenant = archive.default_tenant.id
    with archive.database.write() as conn:
        add_source(conn, tenant, "SiteA", default_issuer_of_patient_id="SITE-A")
        add_source(conn, tenant, "SiteB", default_issuer_of_patient_id="SITE-B")
        hl7_facilities.add_facility(
            conn, "SITEA", "", tenant, source_pk_by_name(conn, tenant, "SiteA")
        )  # type: ignore[arg-type]
    _store(archive, tmp_path, "A-1", issuer="SITE-A", source="SiteA")
    _store(archive, tmp_path, "B-1", issuer="SITE-B", source="SiteB")
    listener = Hl7Listener(archive, "127.0.0.1", 0).start()

    def send(event: str, *segments: str) -> tuple[str, str, str]:
        header = MSH.format(event=event).replace("|HOSP|", "|SITEA|")
        with MLLPClient("127.0.0.1", listener.port) as client:
            reply = client.send_message("\r".join([header, *segments]) + "\r")
        ack = hl7.parse(reply.decode("utf-8"))
        err = ""
        if any(str(seg[0]) == "ERR" for seg in ack):
            err = str(ack.segment("ERR").extract_field(field_num=3, component_num=1))
        return str(ack["MSA.F1"]), err, ack.unescape(str(ack["MSA.F3"]))

    try:
        # PID-3 without an assigning authority: the site's default issuer.
        code, _, text = send("A08^ADT_A01", "PID|1||A-1||ROE^ANNIKA||19900102|F")
        assert code == "AA", text
        assert _patient(archive, "A-1").patient_name == "ROE^ANNIKA"
        # Another site's identity answers exactly like an unknown one; nothing changes.
        hidden = send("A08^ADT_A01", "PID|1||B-1^^^SITE-B||X^Y")
        unknown = send("A08^ADT_A01", "PID|1||B-9^^^SITE-B||X^Y")
        assert hidden[:2] == unknown[:2] == ("AE", "204")
        assert hidden[2].replace("B-1", "B-9") == unknown[2]
        assert _patient(archive, "B-1").patient_name == "ROE^ANN"
        code, err, _ = send("A40^ADT_A39", "PID|1||A-1", "MRG|B-1^^^SITE-B")
        assert (code, err) == ("AE", "204")
        assert _patient(archive, "B-1").merged_into_pk is None
        code, err, _ = send("A40^ADT_A39", "PID|1||A-1")
        assert (code, err) == ("AE", "101")
    finally:
        listener.shutdown()
        for key in [k for k in hl7_listener.HANDLERS if k.startswith("ADT^")]:
            if key in saved:
                hl7_listener.HANDLERS[key] = saved[key]
            else:
                del hl7_listener.HANDLERS[key]
