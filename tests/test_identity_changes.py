"""Corrections, moves and merges of patient identities over real HTTP and DIMSE
(docs/identity.md): afterwards QIDO-RS (study, series, instance), metadata, WADO-RS,
WADO-URI and C-GET all show the corrected attributes while the stored files stay as
received; every change is in the history, the audit trail and the change feed, and undo
restores exactly the previous state. Conflicts, other tenants and source-locked callers get
clear errors with nothing half applied, and learn nothing about hidden identities."""

from __future__ import annotations

import hashlib
import time
from io import BytesIO

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.conftest import index_rows
from tests.identity_support import instance, stow, value
from tests.identity_world import IdentityWorld, build_identity_world

NAME, BIRTH, SEX, PID, ISSUER = "00100010", "00100030", "00100040", "00100020", "00100021"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.conftest import PG_URL, create_pg_database, drop_pg_database

    data_dir = tmp_path_factory.mktemp("changes") / "data"
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        url = create_pg_database()
    else:
        url = f"sqlite:///{data_dir.parent / 'index.db'}"
    built = build_identity_world(data_dir, url)
    yield built
    built.server.stop()
    if request.param == "postgresql":
        drop_pg_database(url)


# -- helpers --------------------------------------------------------------------------------


def _patch(world: IdentityWorld, user: str, pk: int, body: dict) -> httpx.Response:
    return httpx.patch(
        f"{world.api()}/patients/{pk}", json=body, headers=world.auth(user), timeout=60
    )


def _undo(world: IdentityWorld, user: str, change: int) -> httpx.Response:
    return world.post(user, f"/identity-changes/{change}/undo", {"reason": "test"})


def _ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def _patient(world: IdentityWorld, patient_id: str, studies: int, **kw: str) -> tuple[int, list]:
    """A new identity of the Specialty site with `studies` studies (one instance each)."""
    uids = []
    for n in range(studies):
        part = instance(patient_id, study_date=f"2026040{n + 1}", **kw)
        answer = stow(world.server, [part], source="Specialty", headers=world.auth("admin"))
        assert answer.status_code == 200, answer.text
        uids.append(answer.json()["00081190"]["Value"][0].rsplit("/", 1)[-1])
    found = _ok(world.get("admin", f"/patients?patient_id={patient_id}"))
    return found[0]["id"], uids


def _qido(world: IdentityWorld, path: str, user: str = "reader") -> list[dict]:
    answer = httpx.get(f"{world.server.dicomweb}{path}", headers=world.auth(user), timeout=60)
    assert answer.status_code in (200, 204), answer.text
    return answer.json() if answer.status_code == 200 else []


def _patient_values(item: dict) -> tuple:
    name = item.get(NAME, {}).get("Value", [{}])[0]
    return (
        name.get("Alphabetic") if isinstance(name, dict) else name,
        value(item, PID),
        value(item, ISSUER),
        value(item, BIRTH),
        value(item, SEX),
    )


def _study_state(world: IdentityWorld, study_uid: str) -> list[tuple]:
    """What every interface shows for the study's patient: QIDO-RS at the study, series and
    instance levels, metadata, WADO-RS, WADO-URI and C-GET (one instance per study)."""
    fields = "includefield=00100010&includefield=00100020&includefield=00100021"
    fields += "&includefield=00100030&includefield=00100040"
    shown = []
    study = _qido(world, f"/studies?StudyInstanceUID={study_uid}&{fields}")
    series = _qido(world, f"/studies/{study_uid}/series?{fields}")
    instances = _qido(world, f"/studies/{study_uid}/instances?{fields}")
    shown += [_patient_values(study[0]), _patient_values(series[0]), _patient_values(instances[0])]
    metadata = httpx.get(
        f"{world.server.dicomweb}/studies/{study_uid}/metadata",
        headers=world.auth("reader"),
        timeout=60,
    )
    shown.append(_patient_values(_ok(metadata)[0]))
    client = DICOMwebClient(world.server.dicomweb, headers=world.auth("reader"))
    (retrieved,) = client.retrieve_study(study_uid)
    shown.append(_dataset_values(retrieved))
    series_uid = value(instances[0], "0020000E")
    sop_uid = value(instances[0], "00080018")
    wado = httpx.get(
        f"{world.server.dicomweb}/wado",
        params={
            "requestType": "WADO",
            "studyUID": study_uid,
            "seriesUID": series_uid,
            "objectUID": sop_uid,
            "contentType": "application/dicom",
            "transferSyntax": "*",
        },
        headers=world.auth("reader"),
        timeout=60,
    )
    assert wado.status_code == 200, wado.text
    shown.append(_dataset_values(pydicom.dcmread(BytesIO(wado.content))))
    (got,) = _c_get(world, study_uid)
    shown.append(_dataset_values(got))
    return shown


def _dataset_values(ds: Dataset) -> tuple:
    return (
        str(ds.PatientName) if "PatientName" in ds else None,
        ds.get("PatientID"),
        ds.get("IssuerOfPatientID"),
        ds.get("PatientBirthDate") or None,
        ds.get("PatientSex") or None,
    )


def _c_get(world: IdentityWorld, study_uid: str) -> list[Dataset]:
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

    ae = AE(ae_title="PEER_ALL")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    received: list[Dataset] = []

    def on_store(event):  # type: ignore[no-untyped-def]
        received.append(event.dataset)
        return 0x0000

    assoc = ae.associate(
        "127.0.0.1",
        world.dimse_port,
        ae_title="TESSERA",
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    try:
        statuses = [
            s.Status
            for s, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
            if s
        ]
    finally:
        assoc.release()
    assert statuses[-1] == 0x0000, statuses
    return received


def _stored_files_unchanged(world: IdentityWorld, study_uid: str) -> None:
    rows = index_rows(
        world.server.database_url,
        "SELECT i.blob_key, i.sha256 FROM instance i JOIN study s ON s.id = i.study_pk "
        "WHERE s.study_instance_uid = :uid",
        uid=study_uid,
    )
    assert rows
    for blob_key, sha256 in rows:
        assert hashlib.sha256(world.server.read_blob(blob_key)).hexdigest() == sha256


def _feed(world: IdentityWorld, after: int) -> list[tuple]:
    rows = index_rows(
        world.server.database_url,
        "SELECT seq, kind, source_pk, study_instance_uid FROM change_event "
        "WHERE tenant_id = 1 AND seq > :after ORDER BY seq",
        after=after,
    )
    return [tuple(r) for r in rows]


def _last_seq(world: IdentityWorld) -> int:
    rows = index_rows(
        world.server.database_url, "SELECT MAX(seq) FROM change_event WHERE tenant_id = 1"
    )
    return rows[0][0] or 0


def _index_state(world: IdentityWorld) -> list:
    """Every row an identity change may touch (to prove nothing was half applied)."""
    url = world.server.database_url
    return [
        index_rows(url, "SELECT * FROM patient ORDER BY id"),
        index_rows(
            url,
            "SELECT id, patient_pk, patient_id, issuer_of_patient_id, patient_name,"
            " patient_birth_date, patient_sex FROM study ORDER BY id",
        ),
        index_rows(
            url,
            "SELECT id, patient_id, issuer_of_patient_id, patient_name, "
            "patient_birth_date, patient_sex FROM study_source ORDER BY id",
        ),
        index_rows(url, "SELECT * FROM study_coercion ORDER BY study_pk"),
    ]


# -- corrections ----------------------------------------------------------------------------


def test_correction_is_seen_everywhere_and_undone_exactly(world: IdentityWorld) -> None:
    pk, (study_uid,) = _patient(
        world, "SC-CORR", 1, name="MILER^ANNA", birth_date="20100101", sex="F"
    )
    original = ("MILER^ANNA", "SC-CORR", "SPECIALTY-CTR", "20100101", "F")
    before_state = _study_state(world, study_uid)
    # The stored file carries no issuer (the source supplied it): retrieval shows none yet.
    assert before_state[0] == original and before_state[3][:2] == ("MILER^ANNA", "SC-CORR")
    rows_before = _index_state(world)
    seq = _last_seq(world)
    metadata_url = f"{world.server.dicomweb}/studies/{study_uid}/metadata"
    old_etag = httpx.get(metadata_url, headers=world.auth("reader")).headers["ETag"]

    answer = _ok(
        _patch(
            world,
            "registrar",
            pk,
            {"patient_name": "MILLER^ANNA", "patient_birth_date": "2010-01-02", "reason": "typo"},
        )
    )
    change = answer["change"]
    assert change["action"] == "correct" and change["studies"] == [study_uid]
    assert answer["identity"]["patient_name"] == "MILLER^ANNA"
    assert answer["identity"]["patient_birth_date"] == "2010-01-02"
    corrected = ("MILLER^ANNA", "SC-CORR", "SPECIALTY-CTR", "20100102", "F")
    assert _study_state(world, study_uid) == [corrected] * 7
    _stored_files_unchanged(world, study_uid)
    # A cached copy is not "not modified" any more.
    revalidated = httpx.get(
        metadata_url, headers={**world.auth("reader"), "If-None-Match": old_etag}
    )
    assert revalidated.status_code == 200 and revalidated.headers["ETag"] != old_etag
    assert "Last-Modified" not in revalidated.headers

    # History, audit trail and change feed.
    history = _ok(world.get("registrar", f"/patients/{pk}/changes"))
    assert [(h["action"], h["principal"], h["reason"], h["undone"]) for h in history] == [
        ("correct", "registrar (key 2)", "typo", None)
    ]
    assert history[0]["changes"]["patient_name"] == {"from": "MILER^ANNA", "to": "MILLER^ANNA"}
    audit = index_rows(
        world.server.database_url,
        "SELECT principal, target FROM audit_event WHERE action = 'identity.correct'",
    )
    assert [tuple(r) for r in audit] == [("registrar (key 2)", f"change {change['id']}")]
    feed = _feed(world, seq)
    specialty = index_rows(
        world.server.database_url, "SELECT id FROM source WHERE name='Specialty'"
    )
    assert [(kind, source, uid) for _, kind, source, uid in feed] == [
        ("study.updated", specialty[0][0], study_uid),
        ("patient.updated", None, None),
    ]

    undone = _ok(_undo(world, "admin", change["id"]))
    assert undone["change"]["undone"] is True
    assert _study_state(world, study_uid) == before_state
    assert _index_state(world) == rows_before
    history = _ok(world.get("registrar", f"/patients/{pk}/changes"))
    assert history[0]["undone"]["principal"].startswith("admin")
    # Undone once: a second undo is a conflict.
    assert _undo(world, "admin", change["id"]).status_code == 409


def test_patient_id_change_a47(world: IdentityWorld) -> None:
    pk, (study_uid,) = _patient(world, "SC-OLD", 1)
    other_pk, _ = _patient(world, "SC-TAKEN", 1)
    # A key another identity holds: a conflict (merge instead), nothing changed.
    rows = _index_state(world)
    taken = _patch(world, "registrar", pk, {"patient_id": "SC-TAKEN"})
    assert taken.status_code == 409 and "merge" in taken.text
    assert _index_state(world) == rows

    change = _ok(_patch(world, "registrar", pk, {"patient_id": "SC-NEW"}))["change"]
    assert _qido(world, "/studies?PatientID=SC-OLD") == []
    found = _qido(world, "/studies?PatientID=SC-NEW&includefield=00100021")
    assert [value(s, "0020000D") for s in found] == [study_uid]
    assert _study_state(world, study_uid)[-1][1] == "SC-NEW"
    # The source-locked view follows too (per-source rows are corrected).
    assert _ok(world.get("admin", "/patients?patient_id=SC-NEW"))[0]["id"] == pk
    _ok(_undo(world, "registrar", change["id"]))
    assert [value(s, "0020000D") for s in _qido(world, "/studies?PatientID=SC-OLD")] == [study_uid]
    assert other_pk != pk


def test_bad_corrections_change_nothing(world: IdentityWorld) -> None:
    pk = world.ids["twin"]
    rows = _index_state(world)
    for body, status in (
        ({}, 400),
        ({"reason": "only a reason"}, 400),
        ({"patient_colour": "blue"}, 400),
        ({"patient_birth_date": "2020-13-45"}, 400),
        ({"patient_sex": "X"}, 400),
        ({"patient_id": ""}, 400),
        ({"patient_id": "A\\B"}, 400),
        ({"issuer_of_patient_id": " padded"}, 400),
        ({"patient_name": 42}, 400),
        ({"patient_sex": "M"}, 409),  # the value it has: nothing to change
    ):
        answer = _patch(world, "registrar", pk, body)
        assert answer.status_code == status, (body, answer.text)
    assert _patch(world, "registrar", 999999, {"patient_sex": "F"}).status_code == 404
    assert _undo(world, "registrar", 999999).status_code == 404
    # No identity permission: 403 at the gate.
    assert _patch(world, "reader", pk, {"patient_sex": "F"}).status_code == 403
    assert _index_state(world) == rows


# -- merges and moves -----------------------------------------------------------------------


def test_merge_a40_and_undo(world: IdentityWorld) -> None:
    survivor, survivor_studies = _patient(world, "SC-KEEP", 2, name="KEEP^ME")
    merged, merged_studies = _patient(world, "SC-DUP", 2, name="DUP^ME", sex="M")
    before = {uid: _study_state(world, uid)[0] for uid in merged_studies}
    rows = _index_state(world)
    seq = _last_seq(world)

    answer = _ok(world.post("registrar", f"/patients/{survivor}/merge", {"identity": merged}))
    assert answer["change"]["action"] == "merge"
    assert sorted(answer["change"]["studies"]) == sorted(merged_studies)
    change = answer["change"]["id"]
    found = _qido(world, "/studies?PatientID=SC-KEEP")
    assert sorted(value(s, "0020000D") for s in found) == sorted(survivor_studies + merged_studies)
    assert _qido(world, "/studies?PatientID=SC-DUP") == []
    for uid in merged_studies:
        state = _study_state(world, uid)
        assert {s[:2] for s in state} == {("KEEP^ME", "SC-KEEP")}
        _stored_files_unchanged(world, uid)
    # The merged-away identity stays resolvable.
    old = _ok(world.get("admin", f"/patients/{merged}"))
    assert old["merged_into"] == survivor
    history = _ok(world.get("registrar", f"/patients/{survivor}/changes"))
    assert [(h["action"], h["identity"], h["other_identity"]) for h in history] == [
        ("merge", merged, survivor)
    ]
    kinds = [kind for _, kind, _, _ in _feed(world, seq)]
    assert kinds == ["study.updated", "study.updated", "patient.merged"]

    # Conflicting operations: nothing half applied.
    during = _index_state(world)
    third, (third_study,) = _patient(world, "SC-THIRD", 1)
    during = _index_state(world)
    for path, body in (
        (f"/patients/{merged}/merge", {"identity": third}),  # into a merged-away identity
        (f"/patients/{survivor}/merge", {"identity": merged}),  # merged already
        (f"/studies/{third_study}/patient", {"identity": merged}),  # move to it
    ):
        conflict = world.post("registrar", path, body)
        assert conflict.status_code == 409, (path, conflict.text)
    assert _patch(world, "registrar", merged, {"patient_sex": "F"}).status_code == 409
    assert (
        world.post("registrar", f"/patients/{survivor}/merge", {"identity": survivor}).status_code
        == 400
    )
    assert _index_state(world) == during

    _ok(_undo(world, "registrar", change))
    for uid in merged_studies:
        assert _study_state(world, uid)[0] == before[uid]
    assert sorted(
        value(s, "0020000D") for s in _qido(world, "/studies?PatientID=SC-DUP")
    ) == sorted(merged_studies)
    assert "merged_into" not in _ok(world.get("admin", f"/patients/{merged}"))
    rows_now = _index_state(world)
    # Everything as before the merge, apart from the identity created since.
    assert rows_now[3] == rows[3]
    assert [r for r in rows_now[0] if r[0] != third] == rows[0]


def test_move_study_and_undo_order(world: IdentityWorld) -> None:
    source_pk, (first, second) = _patient(world, "SC-MOVE-A", 2, name="MOVE^A")
    target_pk, _ = _patient(world, "SC-MOVE-B", 1, name="MOVE^B")
    moved = _ok(world.post("registrar", f"/studies/{second}/patient", {"identity": target_pk}))
    assert moved["change"]["studies"] == [second]
    assert {s[:2] for s in _study_state(world, second)} == {("MOVE^B", "SC-MOVE-B")}
    assert _study_state(world, first)[0][:2] == ("MOVE^A", "SC-MOVE-A")
    # A later correction of the target touches the moved study: undo it first.
    corrected = _ok(_patch(world, "registrar", target_pk, {"patient_name": "MOVE^BEE"}))
    assert {s[0] for s in _study_state(world, second)} == {"MOVE^BEE"}
    blocked = _undo(world, "registrar", moved["change"]["id"])
    assert blocked.status_code == 409 and "later" in blocked.text
    _ok(_undo(world, "registrar", corrected["change"]["id"]))
    _ok(_undo(world, "registrar", moved["change"]["id"]))
    assert {s[:2] for s in _study_state(world, second)} == {("MOVE^A", "SC-MOVE-A")}
    # Moving to the identity it belongs to, or an unknown study: clear errors.
    assert (
        world.post("registrar", f"/studies/{second}/patient", {"identity": source_pk}).status_code
        == 409
    )
    assert (
        world.post(
            "registrar", f"/studies/{generate_uid()}/patient", {"identity": target_pk}
        ).status_code
        == 404
    )


# -- tenants and source lock ----------------------------------------------------------------


def test_other_tenants_identities_cannot_be_merged_or_moved_to(world: IdentityWorld) -> None:
    acme = world.ids["acme"]
    rows = _index_state(world)
    assert (
        world.post("admin", f"/patients/{world.ids['ed']}/merge", {"identity": acme}).status_code
        == 404
    )
    assert (
        world.post("admin", f"/patients/{acme}/merge", {"identity": world.ids["ed"]}).status_code
        == 404
    )
    moved = world.post("admin", f"/studies/{world.studies['ed']}/patient", {"identity": acme})
    assert moved.status_code == 404
    # The other tenant's administrator cannot reach this tenant's identities or changes.
    assert (
        world.post(
            "acme_admin", f"/patients/{acme}/merge", {"identity": world.ids["ed"]}, tenant="acme"
        ).status_code
        == 404
    )
    assert _index_state(world) == rows


def test_source_locked_callers_learn_nothing_hidden(world: IdentityWorld) -> None:
    ed, hidden, center = world.ids["ed"], world.ids["hidden"], world.ids["center"]
    rows = _index_state(world)
    # Identities (and studies) of sources the caller cannot see are not found.
    for path, body in (
        (f"/patients/{ed}/merge", {"identity": hidden}),
        (f"/patients/{ed}/merge", {"identity": center}),
        (f"/patients/{hidden}/merge", {"identity": ed}),
        (f"/studies/{world.studies['hidden']}/patient", {"identity": ed}),
        (f"/studies/{world.studies['ed']}/patient", {"identity": center}),
    ):
        answer = world.post("ed_registrar", path, body)
        assert answer.status_code == 404, (path, answer.text)
        assert "HS-1" not in answer.text and "SC-0093" not in answer.text
    assert _patch(world, "ed_registrar", hidden, {"patient_sex": "F"}).status_code == 404
    assert _index_state(world) == rows

    # An administrator who sees everything moves the hidden site's study to the ED identity.
    moved = _ok(
        world.post("admin", f"/studies/{world.studies['hidden']}/patient", {"identity": ed})
    )
    try:
        # The locked registrar's view of ED-4711 is unchanged: no history entry names the
        # hidden study or identity, and the identity (which now has a hidden site's study)
        # cannot be changed by them.
        history = world.get("ed_registrar", f"/patients/{ed}/changes")
        assert history.status_code == 200 and history.json() == []
        assert "HS-1" not in history.text and world.studies["hidden"] not in history.text
        assert _patch(world, "ed_registrar", ed, {"patient_sex": "F"}).status_code == 404
        assert _undo(world, "ed_registrar", moved["change"]["id"]).status_code == 404
        studies = _qido(world, "/studies?PatientID=ED-4711", user="ed_reader")
        assert [value(s, "0020000D") for s in studies] == [world.studies["ed"]]
        # The full history shows it to those who see every source.
        full = _ok(world.get("admin", f"/patients/{ed}/changes"))
        assert full[0]["action"] == "move" and full[0]["identity"] == hidden
    finally:
        _ok(_undo(world, "admin", moved["change"]["id"]))
    assert _index_state(world)[:3] == rows[:3]


def test_source_locked_caller_changes_their_own_identities(world: IdentityWorld) -> None:
    """The locked registrar corrects an identity all of whose studies their source sent;
    its history shows them the new values only."""
    part = instance("ED-9000", name="SMITH^AL", birth_date="20000101", sex="M")
    assert (
        stow(world.server, [part], source="CommunityED", headers=world.auth("admin")).status_code
        == 200
    )
    pk = _ok(world.get("ed_registrar", "/patients?patient_id=ED-9000"))[0]["id"]
    change = _ok(_patch(world, "ed_registrar", pk, {"patient_name": "SMITH^ALAN"}))["change"]
    history = _ok(world.get("ed_registrar", f"/patients/{pk}/changes"))
    assert history[0]["changes"] == {"patient_name": {"to": "SMITH^ALAN"}}
    assert "person" not in _ok(world.get("ed_registrar", f"/patients/{pk}"))
    _ok(_undo(world, "ed_registrar", change["id"]))


# -- the worked example ---------------------------------------------------------------------


def test_worked_example_link_correct_merge(world: IdentityWorld) -> None:
    """docs/identity.md: the child of the emergency department (ED-4711) and the specialty
    center (SC-0093) is linked, so priors appear; the center's duplicate registration of the
    same child (SC-0094, birth date mistyped) is corrected, then merged into SC-0093."""
    ed, center, twin = world.ids["ed"], world.ids["center"], world.ids["twin"]
    linked = world.post("registrar", f"/patients/{center}/links", {"identity": ed})
    assert linked.status_code == 201, linked.text
    try:
        priors = _qido(world, "/studies?00100020=SC-0093")
        assert sorted(value(s, PID) for s in priors) == ["ED-4711", "SC-0093"]
        # The duplicate: a look-alike with a birth date one day off, never proposed.
        proposed = _ok(world.get("registrar", f"/patients/{center}/candidates"))
        assert twin not in [p["identity"]["id"] for p in proposed]
        fixed = _ok(
            _patch(world, "registrar", twin, {"patient_birth_date": "20200505", "reason": "typo"})
        )["change"]
        proposed = _ok(world.get("registrar", f"/patients/{center}/candidates"))
        assert twin in [p["identity"]["id"] for p in proposed]
        merged = _ok(
            world.post(
                "registrar", f"/patients/{center}/merge", {"identity": twin, "reason": "A40"}
            )
        )["change"]
        priors = _qido(world, "/studies?00100020=SC-0093")
        assert sorted(value(s, PID) for s in priors) == ["ED-4711", "SC-0093", "SC-0093"]
        assert world.studies["twin"] in [value(s, "0020000D") for s in priors]
        history = _ok(world.get("registrar", f"/patients/{center}/changes"))
        assert [h["action"] for h in history] == ["merge", "correct"]
        # Undo, newest first: the answers are as before.
        _ok(_undo(world, "registrar", merged["id"]))
        _ok(_undo(world, "registrar", fixed["id"]))
        priors = _qido(world, "/studies?00100020=SC-0093")
        assert sorted(value(s, PID) for s in priors) == ["ED-4711", "SC-0093"]
    finally:
        world.delete("registrar", f"/patients/{center}/links/{ed}")


def test_routing_sends_the_corrected_attributes(world: IdentityWorld) -> None:
    """A study routed after a correction (STOW-RS to another archive, here this server's
    other tenant) arrives with the corrected patient attributes."""
    pk, (study_uid,) = _patient(world, "SC-ROUTE", 1, name="ROUT^A")
    change = _ok(_patch(world, "registrar", pk, {"patient_name": "ROUTE^ANNA"}))["change"]
    rule = {
        "name": "to-acme",
        "trigger": "study_complete",  # never fires here: only "send again" below
        "destination": {
            "kind": "dicomweb",
            "url": f"{world.server.base_url}/t/acme/dicomweb",
            "authorization": f"Bearer {world.keys['acme_admin']}",
        },
    }
    assert world.post("admin", "/routes", rule).status_code == 201
    try:
        sent = world.post("admin", "/routes/to-acme/send", {"study_instance_uid": study_uid})
        assert sent.status_code == 202, sent.text
        found: list = []
        for _ in range(300):
            answer = httpx.get(
                f"{world.server.base_url}/t/acme/dicomweb/studies/{study_uid}/metadata",
                headers=world.auth("acme_admin"),
                timeout=30,
            )
            if answer.status_code == 200:
                found = answer.json()
                break
            time.sleep(0.2)
        assert found and _patient_values(found[0])[:2] == ("ROUTE^ANNA", "SC-ROUTE")
    finally:
        world.delete("admin", "/routes/to-acme")
        _ok(_undo(world, "registrar", change["id"]))


def test_a_later_upload_into_a_corrected_study_is_shown_corrected(world: IdentityWorld) -> None:
    """Another site's first instances in a corrected study: its source-locked users see the
    corrected values too (as retrieval sends them); the change can then no longer be undone
    (what it touched changed)."""
    pk, (study_uid,) = _patient(world, "SC-LATE", 1, name="LATE^A")
    change = _ok(_patch(world, "registrar", pk, {"patient_name": "LATE^ANNA"}))["change"]
    part = instance("SC-LATE", name="LATE^A", study_uid=study_uid)
    answer = stow(world.server, [part], source="CommunityED", headers=world.auth("admin"))
    assert answer.status_code == 200, answer.text
    fields = "includefield=00100010&includefield=00100020"
    for user in ("ed_reader", "reader"):
        found = _qido(world, f"/studies?StudyInstanceUID={study_uid}&{fields}", user=user)
        assert _patient_values(found[0])[:2] == ("LATE^ANNA", "SC-LATE"), user
    instances = _qido(world, f"/studies/{study_uid}/instances?{fields}", user="ed_reader")
    assert [_patient_values(i)[0] for i in instances] == ["LATE^ANNA"]
    assert _undo(world, "registrar", change["id"]).status_code == 409
