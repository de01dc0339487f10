"""index/retrieve.py at the engine level: the Scope (tenant, source lock) is applied inside
SQL; instances outside it are never returned (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tessera.archive import Archive
from tessera.index.models import Tenant
from tessera.index.retrieve import (
    metadata_batches,
    resolve_instance,
    resolve_instances,
    resolve_uid_lists,
)
from tessera.index.sources import add_source
from tessera.scope import Scope, full_scope
from tessera.services.ingest import ingest_file
from tessera.synthetic import StudySpec, ct_image, mr_rle_image
from tests.conftest import migrated_archive


def _ingest(archive: Archive, scope: Scope, data: bytes, source_pk: int) -> None:
    spool = archive.spool_dir
    spool.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(data).hexdigest()
    path = Path(spool) / f"{sha}.part"
    path.write_bytes(data)
    outcome = ingest_file(archive, scope, path, sha, source_pk)
    assert outcome.stored, outcome.message


@pytest.fixture
def archive(tmp_path, database_url):  # type: ignore[no-untyped-def]
    opened = migrated_archive(tmp_path / "data", database_url)
    yield opened
    opened.close()


def test_scope_is_applied_in_sql(archive: Archive) -> None:
    tenant = archive.default_tenant.id
    with archive.database.write() as conn:
        clinic_a = add_source(conn, tenant, "ClinicA")
        clinic_b = add_source(conn, tenant, "ClinicB")
        other_tenant = conn.execute(
            Tenant.__table__.insert().values(name="other", duplicate_policy="reject")
        ).inserted_primary_key[0]
        other_source = add_source(conn, other_tenant, "default")
    everything = full_scope(tenant)
    study = StudySpec()
    series_a, series_b = "2.25.1001", "2.25.1002"
    a1 = ct_image(study, series_a, 1, 16, 16)
    a2 = ct_image(study, series_a, 2, 16, 16)
    b1 = mr_rle_image(study, series_b, 1, 16)
    _ingest(archive, everything, a1, clinic_a)
    _ingest(archive, everything, a2, clinic_a)
    _ingest(archive, everything, b1, clinic_b)
    # The same study sent to another tenant: a separate, invisible copy.
    other_scope = full_scope(other_tenant)
    _ingest(archive, other_scope, ct_image(study, series_a, 3, 16, 16), other_source)

    only_a = Scope(
        tenant_id=tenant, source_pks=frozenset({clinic_a}), permissions=frozenset({"read"})
    )
    nothing = Scope(tenant_id=tenant, source_pks=frozenset(), permissions=frozenset({"read"}))
    uid = study.study_instance_uid
    with archive.database.read() as conn:
        all_items = resolve_instances(conn, everything, uid)
        assert [i.series_instance_uid for i in all_items] == [series_a, series_a, series_b]
        assert [i.instance_pk for i in all_items] == sorted(i.instance_pk for i in all_items)
        locked = resolve_instances(conn, only_a, uid)
        assert {i.series_instance_uid for i in locked} == {series_a}
        assert len(locked) == 2
        assert resolve_instances(conn, only_a, uid, series_b) == []
        hidden_sop = all_items[2].sop_instance_uid
        assert resolve_instance(conn, only_a, uid, series_b, hidden_sop) is None
        assert resolve_instance(conn, everything, uid, series_b, hidden_sop) is not None
        assert resolve_instances(conn, nothing, uid) == []
        other = resolve_instances(conn, other_scope, uid)
        assert len(other) == 1 and other[0].sop_instance_uid not in {
            i.sop_instance_uid for i in all_items
        }

        # UID lists (C-MOVE / C-GET identifiers).
        sops = [i.sop_instance_uid for i in all_items]
        assert len(resolve_uid_lists(conn, only_a, sop_instance_uids=sops)) == 2
        assert len(resolve_uid_lists(conn, everything, study_uids=[uid])) == 3
        assert len(resolve_uid_lists(conn, everything, series_uids=[series_b])) == 1
        assert resolve_uid_lists(conn, only_a, series_uids=[series_b]) == []
        assert len(resolve_uid_lists(conn, other_scope, study_uids=[uid])) == 1
        with pytest.raises(ValueError):
            resolve_uid_lists(conn, everything)

        # What retrieval needs per instance.
        first = resolve_instance(conn, everything, uid, series_a, sops[0], with_metadata=True)
        assert first is not None
        assert first.transfer_syntax_uid == "1.2.840.10008.1.2.1"
        assert first.frames is not None and len(first.frames) == 1
        assert first.size_bytes == len(a1)
        assert archive.blob_store.read_range(first.blob_key, 0, first.size_bytes) == a1
        assert first.dicom_json and b'"BulkDataURI":"studies/' in first.dicom_json

        # Metadata batches keep the scope too.
        pks = [i.instance_pk for i in all_items]
        assert sum(len(b) for b in metadata_batches(conn, everything, pks, 2)) == 3
        assert sum(len(b) for b in metadata_batches(conn, only_a, pks, 2)) == 2
