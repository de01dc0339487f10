"""The identity change services as other modules (HL7 ADT handlers) call them, in process on
SQLite and PostgreSQL: find an identity by its key, correct (A08/A47), merge (A40), link and
unlink (A24/A37), undo; two crossing merges at once (A into B, B into A) from two threads:
exactly one applies, the other is a conflict, and nothing is half applied."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from tessera.archive import Archive
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.identity_models import IdentityChange, StudyCoercion
from tessera.index.models import Patient, Study
from tessera.index.sources import source_pk_by_name
from tessera.scope import Scope, full_scope
from tessera.services import identity_changes as ic
from tessera.services.ingest import ingest_file
from tessera.synthetic import header_only_instance
from tests.conftest import migrated_archive


@pytest.fixture
def archive(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = migrated_archive(tmp_path / "data", database_url)
    yield opened
    opened.close()


def _store(archive: Archive, tmp: Path, patient_id: str, name: str, studies: int = 1) -> None:
    scope = full_scope(archive.default_tenant.id, "test")
    with archive.database.read() as conn:
        source_pk = source_pk_by_name(conn, scope.tenant_id, "default")
    assert source_pk is not None
    for _ in range(studies):
        data = header_only_instance(
            {
                "Modality": "CT",
                "PatientID": patient_id,
                "PatientName": name,
                "StudyInstanceUID": generate_uid(),
                "SeriesInstanceUID": generate_uid(),
            }
        )
        path = tmp / f"{hashlib.sha1(data).hexdigest()}.dcm"
        path.write_bytes(data)
        outcome = ingest_file(archive, scope, path, hashlib.sha256(data).hexdigest(), source_pk)
        assert outcome.stored, outcome


def _rows(archive: Archive) -> list:
    with archive.database.read() as conn:
        return [
            conn.execute(select(Patient).order_by(Patient.id)).all(),
            conn.execute(select(Study.id, Study.patient_pk, Study.patient_id)).all(),
            conn.execute(select(StudyCoercion).order_by(StudyCoercion.study_pk)).all(),
        ]


def test_services_for_adt(archive: Archive, tmp_path: Path) -> None:
    _store(archive, tmp_path, "MRN-1", "ROE^ANN", 2)
    _store(archive, tmp_path, "MRN-2", "ROE^ANNE", 1)
    scope = full_scope(archive.default_tenant.id, "hl7:ADT1")
    one = ic.find_identity(archive, scope, "MRN-1", "")
    two = ic.find_identity(archive, scope, "MRN-2", "")
    assert one is not None and two is not None
    assert ic.find_identity(archive, scope, "MRN-9", "") is None
    before = _rows(archive)

    fixed = ic.correct_patient(archive, scope, two, {"patient_name": "ROE^ANN"}, "A08")
    merged = ic.merge_patients(archive, scope, one, two, "A40")
    assert merged.action == "merge" and len(merged.studies) == 1
    with pytest.raises(Conflict):  # "merge into a patient being merged away"
        ic.merge_patients(archive, scope, two, one)
    with pytest.raises(InvalidValue):
        ic.correct_patient(archive, scope, one, {"patient_birth_date": "1.1.1990"})
    renamed = ic.correct_patient(archive, scope, one, {"patient_id": "MRN-1B"}, "A47")
    assert ic.find_identity(archive, scope, "MRN-1B", "") == one
    ic.link_patients(archive, scope, one, two, "A24")
    ic.unlink_patients(archive, scope, one, two, "A37")
    with pytest.raises(NotFound):
        ic.link_patients(archive, scope, one, 999999)

    # Undo in reverse order restores every row.
    for change in (renamed, merged, fixed):
        ic.undo_change(archive, scope, change.change_id)
    assert _rows(archive)[:2] == before[:2]
    assert _rows(archive)[2] == []
    with archive.database.read() as conn:
        actions = conn.execute(
            select(IdentityChange.action, IdentityChange.principal).order_by(IdentityChange.id)
        ).all()
    assert [tuple(a) for a in actions] == [
        ("correct", "hl7:ADT1"),
        ("merge", "hl7:ADT1"),
        ("correct", "hl7:ADT1"),
    ]


def test_a_locked_scope_cannot_change_what_it_does_not_own(archive: Archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _store(archive, tmp_path, "MRN-L", "LOCK^ED")
    tenant = archive.default_tenant.id
    pk = ic.find_identity(archive, full_scope(tenant), "MRN-L", "")
    assert pk is not None
    nobody = Scope(tenant_id=tenant, source_pks=frozenset({999}), principal="locked")
    with pytest.raises(NotFound):
        ic.correct_patient(archive, nobody, pk, {"patient_sex": "F"})
    with pytest.raises(NotFound):
        ic.link_patients(archive, nobody, pk, pk)


def test_crossing_merges_one_wins_nothing_half_applied(archive: Archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _store(archive, tmp_path, "MRN-A", "CROSS^A", 3)
    _store(archive, tmp_path, "MRN-B", "CROSS^B", 3)
    scope = full_scope(archive.default_tenant.id, "test")
    a = ic.find_identity(archive, scope, "MRN-A", "")
    b = ic.find_identity(archive, scope, "MRN-B", "")
    assert a is not None and b is not None
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def merge(survivor: int, merged: int) -> None:
        start.wait()
        try:
            outcomes.append(ic.merge_patients(archive, scope, survivor, merged))
        except Conflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=merge, args=pair) for pair in ((a, b), (b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    applied = [o for o in outcomes if isinstance(o, ic.ChangeResult)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(applied) == 1 and len(refused) == 1, outcomes
    winner = applied[0]
    with archive.database.read() as conn:
        owners = set(conn.execute(select(Study.patient_pk)).scalars())
        merged_rows = conn.execute(
            select(Patient.id, Patient.merged_into_pk).where(Patient.merged_into_pk.is_not(None))
        ).all()
    assert owners == {winner.other_patient_pk}
    assert [tuple(r) for r in merged_rows] == [(winner.patient_pk, winner.other_patient_pk)]
