"""HL7 v2 ADT messages applied to patient identities (tessera.services.adt), in process on
SQLite and PostgreSQL: A08 updates demographics, A40 merges, A47 changes the Patient ID,
A24 / A37 link and unlink, each through the same services (and history) as the REST API;
unknown patients and malformed messages are clear errors with nothing applied. (The MLLP
listener that calls this lives on the hl7 branch.)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from tessera.archive import Archive
from tessera.hl7.message import parse
from tessera.index.errors import Conflict
from tessera.index.identity_models import IdentityChange, PatientLink
from tessera.index.models import Patient, Study
from tessera.index.sources import source_pk_by_name
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


def _store(archive: Archive, tmp: Path, patient_id: str, issuer: str = "HOSP") -> None:
    scope = full_scope(archive.default_tenant.id, "test")
    with archive.database.read() as conn:
        source_pk = source_pk_by_name(conn, scope.tenant_id, "default")
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
