"""Mixed studies in the query engine, on SQLite and PostgreSQL: a source-locked scope sees,
matches and orders on values written by its own sources only, whichever source uploaded
first, at every level (the per-source rows of migration 0005); a scope that sees every
source keeps the study and series rows (the first upload's values)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from tessera.archive import Archive
from tessera.index.models import Series, SeriesSource, StudySource
from tessera.index.query import Level, Query
from tessera.index.query_sql import run_query
from tessera.index.sources import add_source
from tessera.index.tenancy import set_duplicate_policy
from tessera.scope import Scope, full_scope
from tessera.services.ingest import ingest_file
from tessera.synthetic import header_only_instance
from tests.conftest import migrated_archive

VALUES = {
    "A": {
        "PatientName": "ALFA^ANNA",
        "PatientID": "PID-ALFA",
        "AccessionNumber": "ACC-ALFA",
        "StudyDescription": "STUDY ALFA",
        "ReferringPhysicianName": "REF^ALFA",
        "StudyDate": "20200202",
        "SeriesDescription": "SERIES ALFA",
        "Modality": "CT",
    },
    "B": {
        "PatientName": "BRAVO^BOB",
        "PatientID": "PID-BRAVO",
        "AccessionNumber": "ACC-BRAVO",
        "StudyDescription": "STUDY BRAVO",
        "ReferringPhysicianName": "REF^BRAVO",
        "StudyDate": "20210303",
        "SeriesDescription": "SERIES BRAVO",
        "Modality": "MR",
    },
}
STUDY_TAGS = {
    "PatientName": "00100010",
    "PatientID": "00100020",
    "AccessionNumber": "00080050",
    "StudyDescription": "00081030",
    "ReferringPhysicianName": "00080090",
    "StudyDate": "00080020",
}
SERIES_TAGS = {"SeriesDescription": "0008103E", "Modality": "00080060"}


class World:
    def __init__(self, archive: Archive, tmp: Path) -> None:
        self.archive = archive
        self.tmp = tmp
        self.tenant_id = archive.default_tenant.id
        with archive.database.write() as conn:
            self.source = {name: add_source(conn, self.tenant_id, f"clinic{name}") for name in "AB"}
        self.studies: dict[str, str] = {}  # first uploader -> study UID
        self.series: dict[str, str] = {}  # first uploader -> the mixed series UID

    def store(self, source: str, attributes: dict[str, object]) -> None:
        data = header_only_instance({**VALUES[source], **attributes})
        path = self.tmp / f"{hashlib.sha1(data).hexdigest()}.dcm"
        path.write_bytes(data)
        scope = full_scope(self.tenant_id)
        sha = hashlib.sha256(data).hexdigest()
        outcome = ingest_file(self.archive, scope, path, sha, self.source[source])
        assert outcome.stored, outcome.message

    def locked(self, *sources: str) -> Scope:
        pks = frozenset(self.source[s] for s in sources)
        return Scope(tenant_id=self.tenant_id, source_pks=pks, permissions=frozenset({"*"}))

    def run(self, scope: Scope, level: Level, include_all: bool = True, **keys: str) -> list:
        query = Query(level, include_all=include_all)
        for name, value in keys.items():
            query.add_key(name, value)
        with self.archive.database.read() as conn:
            return run_query(conn, scope, query, "http://x/dicomweb").items


@pytest.fixture
def world(tmp_path, database_url):  # type: ignore[no-untyped-def]
    """Two mixed studies: in one clinicA uploads first, in the other clinicB. Each holds a
    series of each source's own and one series holding both sources' instances."""
    archive = migrated_archive(tmp_path / "data", database_url)
    built = World(archive, tmp_path)
    for first, second in (("A", "B"), ("B", "A")):
        study = f"2.25.{ord(first)}0"
        built.studies[first] = study
        built.series[first] = f"{study}.9"
        for number, source in enumerate((first, second, first, second), start=1):
            mixed = number > 2
            built.store(
                source,
                {
                    "StudyInstanceUID": study,
                    "SeriesInstanceUID": f"{study}.9" if mixed else f"{study}.{number}",
                    "SOPInstanceUID": f"{study}.{number}.1",
                    "SeriesNumber": 9 if mixed else number,
                    "InstanceNumber": number,
                },
            )
    yield built
    archive.close()


def _text(item: dict, tag: str) -> str | None:
    values = item.get(tag, {}).get("Value")
    if not values:
        return None
    return values[0]["Alphabetic"] if isinstance(values[0], dict) else str(values[0])


@pytest.mark.parametrize("source", ["A", "B"])
def test_locked_scope_sees_only_its_sources_values(world: World, source: str) -> None:
    locked = world.locked(source)
    own = VALUES[source]
    for first, study in world.studies.items():
        for level, keys in (
            (Level.STUDY, {"StudyInstanceUID": study}),
            (Level.SERIES, {"StudyInstanceUID": study}),
            (Level.INSTANCE, {"StudyInstanceUID": study}),
        ):
            items = world.run(locked, level, **keys)
            case = f"{source} sees {level.name} of the study {first} uploaded first"
            assert len(items) == {Level.STUDY: 1, Level.SERIES: 2, Level.INSTANCE: 2}[level], case
            for item in items:
                for keyword, tag in STUDY_TAGS.items():
                    assert _text(item, tag) == own[keyword], f"{case}: {keyword}"
                if level is not Level.STUDY:
                    for keyword, tag in SERIES_TAGS.items():
                        assert _text(item, tag) == own[keyword], f"{case}: {keyword}"
                else:
                    assert item["00080061"]["Value"] == [own["Modality"]], case
    patients = world.run(locked, Level.PATIENT, include_all=False, PatientName="", PatientID="")
    assert {(_text(p, "00100010"), _text(p, "00100020")) for p in patients} == {
        (own["PatientName"], own["PatientID"])
    }


@pytest.mark.parametrize("source", ["A", "B"])
def test_locked_scope_matches_only_its_sources_values(world: World, source: str) -> None:
    locked = world.locked(source)
    other = VALUES["B" if source == "A" else "A"]
    own = VALUES[source]
    both = set(world.studies.values())
    for values, expected in ((other, set()), (own, both)):
        token = values["PatientName"].split("^")[0]
        for level, keys in (
            (Level.STUDY, {"PatientName": f"*{token}*"}),
            (Level.STUDY, {"PatientName": values["PatientName"]}),
            (Level.STUDY, {"PatientID": values["PatientID"]}),
            (Level.STUDY, {"AccessionNumber": values["AccessionNumber"]}),
            (Level.STUDY, {"StudyDescription": f"*{token}"}),
            (Level.STUDY, {"ReferringPhysicianName": values["ReferringPhysicianName"]}),
            (Level.STUDY, {"StudyDate": values["StudyDate"]}),
            (Level.STUDY, {"ModalitiesInStudy": values["Modality"]}),
            (Level.SERIES, {"SeriesDescription": f"*{token}"}),
            (Level.SERIES, {"Modality": values["Modality"]}),
            (Level.SERIES, {"PatientName": f"{token}*"}),
            (Level.INSTANCE, {"PatientName": f"*{token}*"}),
            (Level.INSTANCE, {"SeriesDescription": values["SeriesDescription"]}),
            (Level.PATIENT, {"PatientName": f"*{token}*"}),
        ):
            items = world.run(locked, level, include_all=False, **keys)
            if level is Level.PATIENT:
                found = {_text(i, "00100020") for i in items}
                assert found == ({own["PatientID"]} if expected else set()), (source, keys)
                continue
            found = {_text(i, "0020000D") for i in items}
            assert found == expected, f"{source} {level.name} {keys}: {found}"


def test_scopes_that_see_every_source_keep_the_first_uploads_values(world: World) -> None:
    """The unlocked scope reads the study and series rows; a scope locked to every source
    takes the earliest source's rows: the same values either way."""
    for scope in (full_scope(world.tenant_id), world.locked("A", "B")):
        for first, study in world.studies.items():
            (item,) = world.run(scope, Level.STUDY, StudyInstanceUID=study)
            for keyword, tag in STUDY_TAGS.items():
                assert _text(item, tag) == VALUES[first][keyword], (scope.source_pks, keyword)
            assert item["00201208"]["Value"] == [4]
            series = world.run(scope, Level.SERIES, SeriesInstanceUID=world.series[first])
            assert _text(series[0], "0008103E") == VALUES[first]["SeriesDescription"]


def test_overwrite_drops_a_sources_rows_with_its_last_instance(world: World) -> None:
    """clinicB replaces clinicA's only instance of the series clinicA started: clinicA no
    longer sees that series, clinicB sees its own values."""
    with world.archive.database.write() as conn:
        set_duplicate_policy(conn, world.tenant_id, "overwrite")
    study = world.studies["A"]
    world.store(
        "B",
        {
            "StudyInstanceUID": study,
            "SeriesInstanceUID": f"{study}.1",
            "SOPInstanceUID": f"{study}.1.1",
            "SeriesNumber": 1,
            "InstanceNumber": 1,
            "ImageComments": "replaced",
        },
    )
    series = world.run(world.locked("A"), Level.SERIES, StudyInstanceUID=study)
    assert f"{study}.1" not in {_text(s, "0020000E") for s in series}
    (replaced,) = world.run(world.locked("B"), Level.SERIES, SeriesInstanceUID=f"{study}.1")
    assert _text(replaced, "0008103E") == VALUES["B"]["SeriesDescription"]
    with world.archive.database.read() as conn:
        series_sources = set(
            conn.execute(
                select(SeriesSource.source_pk)
                .join(Series, Series.id == SeriesSource.series_pk)
                .where(Series.series_instance_uid == f"{study}.1")
            ).scalars()
        )
        study_sources = set(conn.execute(select(StudySource.source_pk)).scalars())
    assert series_sources == {world.source["B"]}
    # clinicA keeps its instance in the mixed series, so its study row stays.
    assert study_sources == {world.source["A"], world.source["B"]}


def _migration():  # type: ignore[no-untyped-def]
    from tessera.index.migrate import MIGRATIONS_DIR as directory

    path = directory / "versions" / "0005_source_attributes.py"
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migration_backfill_writes_what_ingest_writes(world: World) -> None:
    """0005 fills the per-source rows of an existing index from the stored metadata: the
    same rows, in the same order, as ingest writes."""
    columns = [c for c in StudySource.__table__.c if c.name != "id"]
    series_columns = [c for c in SeriesSource.__table__.c if c.name != "id"]

    def snapshot(conn):  # type: ignore[no-untyped-def]
        studies = conn.execute(select(*columns).order_by(StudySource.id)).all()
        series = conn.execute(select(*series_columns).order_by(SeriesSource.id)).all()
        return studies, series

    with world.archive.database.write() as conn:
        written = snapshot(conn)
        assert conn.execute(select(func.count()).select_from(StudySource)).scalar_one() == 4
        conn.execute(delete(SeriesSource))
        conn.execute(delete(StudySource))
        _migration()._backfill(conn)
        assert snapshot(conn) == written
