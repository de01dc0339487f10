"""Table-driven security suite: every DICOMweb endpoint x every kind of caller x every object.

Each ROW is one endpoint (method, path relative to a tenant's DICOMweb root, the level whose
visibility decides, and whether it is a resource or a search). A NEW ENDPOINT IS ADDED AS A
ROW. Rows whose route does not exist in this tree are skipped (and say so), so the table can
name endpoints before they land.

For every row, caller and object:
- resource: visible -> 2xx; invisible (other source, or nothing there) -> 404, never 403;
- search: 200/204; the result names only visible objects, and every visible target;
- no response body holds a UID of an object the caller cannot see, nor the other tenant's
  content (the two tenants hold IDENTICAL UIDs with different patient names);
- computed counts in search results count only visible instances;
- no value written by a source the caller cannot see appears in any answer (every source of
  `default` writes its own names, IDs, descriptions and dates; mixed studies and a mixed
  series hold both, uploaded in both orders), nor can a search match on one;
- a caller without the read permission gets 403 (the tenant is theirs), a credential of
  another tenant gets 401.
"""

from __future__ import annotations

import importlib.util
import io
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest
from pydicom.uid import generate_uid
from starlette.routing import Match, Mount

from tessera.config import load_settings
from tessera.dicomweb.app import create_app
from tests.conftest import index_rows
from tests.security_world import (
    ACME_MARKER,
    DEFAULT_MARKER,
    SOURCE_TOKEN,
    SOURCE_VALUES,
    Obj,
    World,
    instance_bytes,
    stow,
)
from tests.world import DATABASES, add_user, served_world

MULTIPART_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MULTIPART_OCTETS = "multipart/related; type=application/octet-stream; transfer-syntax=*"
INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    level: str  # study | series | instance: whose visibility decides
    kind: str = "resource"  # resource | search
    headers: dict[str, str] = field(default_factory=dict)
    # A module the endpoint needs that may not have landed yet (the row is skipped until then).
    requires: str | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ROWS = [
    # QIDO-RS
    Row("GET", "/studies?StudyInstanceUID={study}", "study", "search"),
    Row("GET", "/studies?PatientName=*&includefield=all", "study", "search"),
    Row("GET", "/studies/{study}/series", "series", "search"),
    Row("GET", "/series?SeriesInstanceUID={series}", "series", "search"),
    Row("GET", "/studies/{study}/series/{series}/instances", "instance", "search"),
    Row("GET", "/studies/{study}/instances", "instance", "search"),
    Row("GET", "/instances?SOPInstanceUID={instance}", "instance", "search"),
    Row("GET", "/studies/{study}/series?includefield=all", "series", "search"),
    Row("GET", "/studies/{study}/instances?includefield=all", "instance", "search"),
    Row("GET", "/series?StudyInstanceUID={study}&includefield=all", "series", "search"),
    Row("GET", "/instances?StudyInstanceUID={study}&includefield=all", "instance", "search"),
    # WADO-RS
    Row("GET", "/studies/{study}", "study", headers={"Accept": MULTIPART_DICOM}),
    Row("GET", "/studies/{study}/metadata", "study"),
    Row("GET", "/studies/{study}/series/{series}", "series", headers={"Accept": MULTIPART_DICOM}),
    Row("GET", "/studies/{study}/series/{series}/metadata", "series"),
    Row("GET", INSTANCE, "instance", headers={"Accept": MULTIPART_DICOM}),
    Row("GET", INSTANCE + "/metadata", "instance"),
    Row("GET", INSTANCE + "/frames/1", "instance", headers={"Accept": MULTIPART_OCTETS}),
    Row("GET", INSTANCE + "/bulkdata/7FE00010", "instance", headers={"Accept": MULTIPART_OCTETS}),
    Row(
        "GET",
        INSTANCE + "/rendered",
        "instance",
        headers={"Accept": "image/jpeg"},
        requires="tessera.storage.render",
    ),
    Row(
        "GET",
        INSTANCE + "/thumbnail",
        "instance",
        headers={"Accept": "image/jpeg"},
        requires="tessera.storage.render",
    ),
    Row(
        "GET",
        "/studies/{study}/series/{series}/rendered",
        "series",
        headers={"Accept": 'multipart/related; type="image/jpeg"'},
        requires="tessera.storage.render",
    ),
    Row(
        "GET",
        "/studies/{study}/series/{series}/thumbnail",
        "series",
        headers={"Accept": "image/jpeg"},
        requires="tessera.storage.render",
    ),
    Row(
        "GET",
        "/studies/{study}/thumbnail",
        "study",
        headers={"Accept": "image/jpeg"},
        requires="tessera.storage.render",
    ),
    Row(
        "GET",
        INSTANCE + "/frames/1/rendered",
        "instance",
        headers={"Accept": "image/jpeg"},
        requires="tessera.storage.render",
    ),
    Row(
        "GET",
        "/studies/{study}/rendered",
        "study",
        headers={"Accept": 'multipart/related; type="image/jpeg"'},
        requires="tessera.storage.render",
    ),
    # WADO-URI (at {root}/wado and at the root itself)
    Row(
        "GET",
        "/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}"
        "&contentType=application%2Fdicom",
        "instance",
    ),
    Row(
        "GET",
        "/?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}"
        "&contentType=application%2Fdicom",
        "instance",
    ),
]

# Users of the default tenant whose visibility the table checks.
READERS = ["admin", "tech", "ref_a", "read_b"]


def _routed(routes, scope) -> bool:  # type: ignore[no-untyped-def]
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            if _routed(route.routes, {**scope, **child}):
                return True
        elif match is Match.FULL:
            return True
    return False


_APP_ROUTES = create_app(load_settings()).routes


def is_routed(method: str, path: str) -> bool:
    scope = {"type": "http", "method": method, "path": urlsplit(path).path, "root_path": ""}
    return _routed(_APP_ROUTES, scope)


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "security") as built:
        yield built


def _path(row: Row, obj: Obj) -> str:
    return row.path.format(study=obj.study, series=obj.series, instance=obj.instance)


def _visible_at(world: World, user: str, obj: Obj, level: str) -> bool:
    """Is the object at `level` visible: any visible instance inside it."""
    same = {
        "study": lambda o: o.study == obj.study,
        "series": lambda o: o.series == obj.series,
        "instance": lambda o: o.instance == obj.instance,
    }[level]
    return any(world.visible(user, o) for o in world.objects if same(o))


def _hidden_uids(world: World, user: str) -> set[str]:
    """UIDs that must never appear in any answer to `user`."""
    hidden = set()
    for obj in world.objects:
        if not world.visible(user, obj):
            hidden.add(obj.instance)
            if not _visible_at(world, user, obj, "series"):
                hidden.add(obj.series)
            if not _visible_at(world, user, obj, "study"):
                hidden.add(obj.study)
    return hidden


def _hidden_values(sees: frozenset[str] | None) -> set[str]:
    """Values only sources outside `sees` wrote (their tokens, dates): never in an answer."""
    if sees is None:
        return set()
    shown = {v for source in sees for v in SOURCE_VALUES[source].values()}
    hidden = {SOURCE_TOKEN[source] for source in SOURCE_VALUES if source not in sees}
    for source in SOURCE_VALUES:
        if source not in sees:
            hidden |= {v for v in SOURCE_VALUES[source].values() if v.isdigit()} - shown
    return hidden


def _assert_no_leak(
    response: httpx.Response,
    hidden: set[str],
    foreign_marker: str,
    hidden_values: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    body = response.content
    for value in hidden_values:
        assert value.encode() not in body, f"{response.request.url} shows a hidden {value}"
    asked = str(response.request.url)
    for uid in hidden:
        if uid in asked:
            continue  # echoing the caller's own question ("no study X") reveals nothing
        assert uid.encode() not in body, f"{response.request.url} leaks {uid}"
    assert foreign_marker.encode() not in body, f"{response.request.url} leaks the other tenant"
    for marker in (b"correct-horse", b"tsk_", b"tss_"):
        assert marker not in body


def _uids_in(payload: list[dict], tag: str) -> set[str]:
    return {item[tag]["Value"][0] for item in payload if item.get(tag, {}).get("Value")}


LEVEL_TAG = {"study": "0020000D", "series": "0020000E", "instance": "00080018"}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_endpoint(world: World, row: Row) -> None:
    sample = _path(row, world.objects[0])
    if not is_routed(row.method, "/dicomweb" + sample):
        pytest.skip(f"{row.id} is not routed in this tree yet")
    if row.requires and importlib.util.find_spec(row.requires) is None:
        pytest.skip(f"{row.id} needs {row.requires}, not in this tree yet")
    check_visibility(world, row)
    check_wrong_tenant_and_missing_permission(world, row)
    check_each_tenant_gets_its_own_copy(world, row)


def check_visibility(world: World, row: Row) -> None:
    with httpx.Client(timeout=60) as client:
        for user in READERS:
            hidden = _hidden_uids(world, user)
            for obj in world.objects:
                visible = _visible_at(world, user, obj, row.level)
                response = client.request(
                    row.method,
                    world.url() + _path(row, obj),
                    headers={**row.headers, **world.auth(user)},
                )
                case = f"{user} {row.id} on {obj.name}"
                _assert_no_leak(response, hidden, ACME_MARKER, _hidden_values(world.sees[user]))
                if row.kind == "resource":
                    expected = "2xx" if visible else "404"
                    got = response.status_code
                    assert (200 <= got < 300) if visible else got == 404, (
                        f"{case}: expected {expected}, got {got} {response.text[:200]}"
                    )
                else:
                    assert response.status_code in (200, 204, 404), f"{case}: {response.text[:200]}"
                    if response.status_code == 404:
                        assert not visible, f"{case}: 404 for a visible object"
                        continue
                    payload = response.json() if response.status_code == 200 else []
                    found = _uids_in(payload, LEVEL_TAG[row.level])
                    assert not (found & hidden), f"{case}: shows {found & hidden}"
                    target = getattr(obj, row.level if row.level != "instance" else "instance")
                    if visible and "{" in row.path:
                        assert target in found, f"{case}: visible {target} missing"
                    _assert_counts(world, user, payload, case)


def _assert_counts(world: World, user: str, payload: list[dict], case: str) -> None:
    """Computed attributes count only what the caller sees (source-locked semantics)."""
    known_studies = {o.study for o in world.objects}
    for item in payload:
        study = item.get("0020000D", {}).get("Value", [None])[0]
        series = item.get("0020000E", {}).get("Value", [None])[0]
        if study not in known_studies:
            continue  # stored by another test of this module
        if "00201208" in item and study:
            expected = sum(1 for o in world.objects if o.study == study and world.visible(user, o))
            assert item["00201208"]["Value"][0] == expected, f"{case}: study instance count leaks"
        if "00201206" in item and study:
            expected = len(
                {o.series for o in world.objects if o.study == study and world.visible(user, o)}
            )
            assert item["00201206"]["Value"][0] == expected, f"{case}: study series count leaks"
        if "00201209" in item and series:
            expected = sum(
                1 for o in world.objects if o.series == series and world.visible(user, o)
            )
            assert item["00201209"]["Value"][0] == expected, f"{case}: series count leaks"


def check_wrong_tenant_and_missing_permission(world: World, row: Row) -> None:
    with httpx.Client(timeout=60) as client:
        for obj in world.objects:
            path = _path(row, obj)
            # acme's credential on default's root, and default's on acme's: 401.
            for user, tenant in (("acme_admin", "default"), ("admin", "acme")):
                response = client.request(
                    row.method,
                    world.url(tenant) + path,
                    headers={**row.headers, **world.auth(user)},
                )
                assert response.status_code == 401, f"{user} on {tenant}: {response.status_code}"
                assert "WWW-Authenticate" in response.headers
                _assert_no_leak(response, {obj.study, obj.series, obj.instance}, "\0")
            # No credentials (anonymous is off on this server): 401.
            response = client.request(row.method, world.url() + path, headers=row.headers)
            assert response.status_code == 401
            # A user of the tenant without the read permission: 403, and nothing else.
            response = client.request(
                row.method, world.url() + path, headers={**row.headers, **world.auth("nobody")}
            )
            assert response.status_code == 403
            _assert_no_leak(response, {obj.study, obj.series, obj.instance}, "\0")


def check_each_tenant_gets_its_own_copy(world: World, row: Row) -> None:
    with httpx.Client(timeout=60) as client:
        for obj in world.objects:
            path = _path(row, obj)
            for user, tenant, foreign in (
                ("acme_admin", "acme", DEFAULT_MARKER),
                ("admin", "default", ACME_MARKER),
            ):
                response = client.request(
                    row.method,
                    world.url(tenant) + path,
                    headers={**row.headers, **world.auth(user)},
                )
                assert response.status_code in (200, 204, 206), (
                    f"{user} on {tenant} {path}: {response.status_code} {response.text[:200]}"
                )
                _assert_no_leak(response, set(), foreign)
                if b'"BulkDataURI"' in response.content:
                    # URLs in answers stay under the root the client used.
                    assert world.url(tenant).encode() + b"/studies/" in response.content
                    if tenant == "default":
                        assert b"/t/acme/" not in response.content


def test_server_log_holds_no_secrets(world: World) -> None:
    log = world.server.log()
    for user, key in world.keys.items():
        assert key not in log, f"{user}'s API key is in the server log"
    assert "correct-horse-battery" not in log


def _failure_reasons(response: httpx.Response) -> list[int]:
    body = response.json()
    return [item["00081197"]["Value"][0] for item in body.get("00081198", {}).get("Value", [])]


UID_NOT_AVAILABLE = 0xC412


def test_upload_never_reveals_or_touches_other_sources(world: World) -> None:
    """STOW-RS row: uploads are checked against the uploader's sources; an upload that would
    join, overwrite or confirm data of a source the uploader cannot see is refused with one
    uniform failure (0xC412), and the hidden data is left exactly as it was."""
    by_name = {o.name: o for o in world.objects}
    b2, b3 = by_name["b2"], by_name["b3"]
    tech = world.auth("tech")
    url = world.url()

    # No upload permission: 403. A source the uploader may not use: 400, same as unknown.
    assert stow(url, [world.stored["b2"]], world.auth("ref_a"), "ClinicA").status_code == 403
    not_allowed = stow(url, [world.stored["b2"]], tech, "ClinicB")
    unknown = stow(url, [world.stored["b2"]], tech, "NoSuchClinic")
    assert not_allowed.status_code == unknown.status_code == 400
    assert not_allowed.json()["detail"].replace("ClinicB", "X") == unknown.json()["detail"].replace(
        "NoSuchClinic", "X"
    )

    cases = {
        "identical copy of a hidden instance": world.stored["b2"],
        "different object under a hidden SOP Instance UID": instance_bytes(
            b2.study, b2.series, b2.instance, "OTHER^PATIENT", 9
        ),
        "new instance in a hidden study": instance_bytes(
            b2.study, generate_uid(), generate_uid(), "OTHER^PATIENT", 9
        ),
        "new instance in a hidden series of a partly visible study": instance_bytes(
            b3.study, b3.series, generate_uid(), "OTHER^PATIENT", 9
        ),
        "new series in a partly visible study": instance_bytes(
            b3.study, generate_uid(), generate_uid(), "OTHER^PATIENT", 9
        ),
    }
    for case, data in cases.items():
        response = stow(url, [data], tech, "ClinicA")
        assert response.status_code == 409, f"{case}: {response.status_code} {response.text}"
        assert _failure_reasons(response) == [UID_NOT_AVAILABLE], case
        # The answer names no retrieve URL of, and no attribute from, the hidden data.
        assert b"00081199" not in response.content, case
        assert b"/studies/" not in response.content, case
        assert DEFAULT_MARKER.encode() not in response.content

    # The hidden data is untouched: the admin still gets it, the tech still does not.
    if is_routed("GET", f"/dicomweb/studies/{b2.study}/metadata"):
        meta = httpx.get(f"{url}/studies/{b2.study}/metadata", headers=world.auth("admin"))
        assert meta.status_code == 200 and b2.instance in meta.text
        assert b"OTHER^PATIENT" not in meta.content
        hidden = httpx.get(f"{url}/studies/{b2.study}/metadata", headers=tech)
        assert hidden.status_code == 404

    # The technologist's own new study is stored; re-sending it is idempotent.
    own = instance_bytes(generate_uid(), generate_uid(), generate_uid(), "OWN^PATIENT", 1)
    assert stow(url, [own], tech, "ClinicA").status_code == 200
    assert stow(url, [own], tech, "ClinicA").status_code == 200
    # An unrestricted admin re-sending an identical stored object: still a success.
    assert stow(url, [world.stored["b2"]], world.auth("admin"), "ClinicB").status_code == 200


# --- DIMSE: the same table idea over C-FIND, C-GET and C-STORE --------------------------------
# Each DIMSE row: (operation, query/retrieve level). Callers are peers whose registry entry
# (query sources) becomes their Scope; the called AE title selects the tenant.

DIMSE_ROWS = [
    ("C-FIND", "STUDY"),
    ("C-FIND", "SERIES"),
    ("C-FIND", "IMAGE"),
    ("C-GET", "STUDY"),
    ("C-MOVE", "STUDY"),
]
DIMSE_LEVEL = {"STUDY": "study", "SERIES": "series", "IMAGE": "instance"}


ALL_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
]


def _dimse_identifier(level: str, obj: Obj):  # type: ignore[no-untyped-def]
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = obj.study
    ds.PatientName = ""
    ds.NumberOfStudyRelatedInstances = "" if level == "STUDY" else None
    if level == "STUDY":
        ds.NumberOfStudyRelatedSeries = ""
    if level in ("SERIES", "IMAGE"):
        ds.SeriesInstanceUID = obj.series if level == "IMAGE" else ""
    if level == "SERIES":
        ds.NumberOfSeriesRelatedInstances = ""
    if level == "IMAGE":
        ds.SOPInstanceUID = ""
    return ds


def _dimse(world: World, calling: str, called: str, operation: str, level: str, obj: Obj):  # type: ignore[no-untyped-def]
    """Run one operation; returns (association accepted, found identifiers or received
    datasets, final status)."""
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    received: list = []
    handlers = []
    roles = []
    destination = None
    if operation == "C-FIND":
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    elif operation == "C-MOVE":
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        store_ae = AE(ae_title="MOVE_DEST")
        store_ae.add_supported_context(CTImageStorage, ALL_TRANSFER_SYNTAXES)

        def on_moved(event):  # type: ignore[no-untyped-def]
            received.append(event.dataset)
            return 0x0000

        destination = store_ae.start_server(
            ("127.0.0.1", world.move_port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, on_moved)],
        )
    else:
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_requested_context(CTImageStorage)
        roles.append(build_role(CTImageStorage, scp_role=True))

        def on_store(event):  # type: ignore[no-untyped-def]
            received.append(event.dataset)
            return 0x0000

        handlers.append((evt.EVT_C_STORE, on_store))
    assoc = ae.associate(
        "127.0.0.1", world.dimse_port, ae_title=called, ext_neg=roles, evt_handlers=handlers
    )
    if not assoc.is_established:
        if destination is not None:
            destination.shutdown()
        return False, [], None
    identifier = _dimse_identifier(level, obj)
    final = None
    try:
        if operation == "C-FIND":
            for status, found in assoc.send_c_find(
                identifier, StudyRootQueryRetrieveInformationModelFind
            ):
                final = status.Status if status else None
                if status and status.Status in (0xFF00, 0xFF01) and found is not None:
                    received.append(found)
        elif operation == "C-MOVE":
            for status, _ in assoc.send_c_move(
                identifier, "MOVE_DEST", StudyRootQueryRetrieveInformationModelMove
            ):
                final = status.Status if status else None
        else:
            for status, _ in assoc.send_c_get(
                identifier, StudyRootQueryRetrieveInformationModelGet
            ):
                final = status.Status if status else None
    finally:
        assoc.release()
        if destination is not None:
            destination.shutdown()
    return True, received, final


def _dataset_uids(datasets: list) -> set[str]:
    uids = set()
    for ds in datasets:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            value = ds.get(keyword)
            if value:
                uids.add(str(value))
    return uids


@pytest.mark.parametrize("operation,level", DIMSE_ROWS, ids=lambda v: str(v))
def test_dimse_operation(world: World, operation: str, level: str) -> None:
    pytest.importorskip("tessera.scp.find")
    for peer, sees in world.peer_sees.items():
        hidden = set()
        for obj in world.objects:
            if not (sees is None or obj.source in sees):
                hidden.add(obj.instance)
                for part in ("series", "study"):
                    if not any(
                        getattr(o, part) == getattr(obj, part)
                        and (sees is None or o.source in sees)
                        for o in world.objects
                    ):
                        hidden.add(getattr(obj, part))
        for obj in world.objects:
            case = f"{peer} {operation} {level} on {obj.name}"
            accepted, results, final = _dimse(world, peer, "TESSERA", operation, level, obj)
            assert accepted, case
            assert final is not None and final in (0x0000, 0xB000), f"{case}: {final}"
            uids = _dataset_uids(results)
            assert not (uids & hidden), f"{case}: reveals {uids & hidden}"
            names = {str(ds.get("PatientName", "")) for ds in results}
            assert ACME_MARKER not in names, f"{case}: shows the other tenant"
            shown = " ".join(str(ds) for ds in results)
            for value in _hidden_values(sees):
                assert value not in shown, f"{case}: shows a hidden source's {value}"
            target = DIMSE_LEVEL[level] if operation == "C-FIND" else "instance"
            visible = [
                o
                for o in world.objects
                if o.study == obj.study and (sees is None or o.source in sees)
            ]
            expected = {
                getattr(o, target)
                for o in visible
                if not (operation == "C-FIND" and level == "IMAGE" and o.series != obj.series)
            }
            if operation in ("C-GET", "C-MOVE"):
                got = {str(ds.SOPInstanceUID) for ds in results}
                assert got == expected, f"{case}: got {len(got)} of {len(expected)}"
            else:
                assert expected <= uids, f"{case}: visible objects missing"
            for ds in results:  # counts reflect only what the peer sees
                if ds.get("NumberOfStudyRelatedInstances") not in (None, ""):
                    assert int(ds.NumberOfStudyRelatedInstances) == len(visible), case
                if ds.get("NumberOfStudyRelatedSeries") not in (None, ""):
                    assert int(ds.NumberOfStudyRelatedSeries) == len({o.series for o in visible}), (
                        case
                    )

    # Tenants: ACME_PEER reaches acme's copies through the called AE title ACME, and is not
    # a peer of `default`; default's peers are not peers of acme.
    obj = world.objects[0]
    accepted, results, _ = _dimse(world, "ACME_PEER", "ACME", operation, level, obj)
    assert accepted
    assert results and all(DEFAULT_MARKER not in str(ds.get("PatientName", "")) for ds in results)
    assert _dimse(world, "ACME_PEER", "TESSERA", operation, level, obj)[0] is False
    assert _dimse(world, "PEER_ALL", "ACME", operation, level, obj)[0] is False


def test_dimse_store_never_touches_hidden_sources(world: World) -> None:
    """C-STORE from a peer locked to ClinicA: a copy of ClinicB's instance is refused and
    the hidden instance stays as it was."""
    pytest.importorskip("tessera.scp.store")
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    by_name = {o.name: o for o in world.objects}
    hidden = pydicom.dcmread(io.BytesIO(world.stored["b2"]))
    other = instance_bytes(by_name["b2"].study, generate_uid(), generate_uid(), "OTHER^P", 9)
    ae = AE(ae_title="PEER_A")
    ae.add_requested_context(CTImageStorage, hidden.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title="TESSERA")
    assert assoc.is_established
    try:
        for ds in (hidden, pydicom.dcmread(io.BytesIO(other))):
            status = assoc.send_c_store(ds)
            assert status and status.Status not in (0x0000, 0xB000, 0xB007, 0xB006), hex(
                status.Status if status else 0
            )
    finally:
        assoc.release()
    meta = httpx.get(
        f"{world.url()}/studies/{by_name['b2'].study}/metadata", headers=world.auth("admin")
    )
    assert meta.status_code == 200 and b"OTHER^P" not in meta.content
    assert len(meta.json()) == 1


def test_audit_records_data_access_once_per_study(world: World) -> None:
    by_name = {o.name: o for o in world.objects}
    s1 = by_name["a1"]
    ref = world.auth("ref_a")
    for _ in range(3):
        httpx.get(f"{world.url()}/studies/{s1.study}/metadata", headers=ref)
    httpx.get(f"{world.url()}/studies/{by_name['b2'].study}/metadata", headers=ref)  # 404
    httpx.get(f"{world.url()}/studies", params={"PatientID": "AUDIT-PROBE"}, headers=ref)
    api, admin = world.api(), world.auth("admin")
    deadline = time.time() + 15
    while True:
        events = httpx.get(f"{api}/audit", params={"limit": 1000}, headers=admin).json()
        mine = [e for e in events if e["principal"].startswith("ref_a")]
        queries = [e for e in mine if e["action"] == "query" and "AUDIT-PROBE" in e["target"]]
        if queries or time.time() > deadline:
            break
        time.sleep(0.3)
    assert queries, "the QIDO query was not audited"
    retrievals = [e for e in mine if e["action"] == "retrieve" and e["target"] == s1.study]
    # Once per study and caller per worker process (the world runs 2), not once per request.
    assert 1 <= len([e for e in retrievals if e["outcome"] == "ok"]) <= 2
    refused = [e for e in mine if e["action"] == "retrieve" and e["outcome"] == "failed"]
    assert any(e["target"] == by_name["b2"].study for e in refused)
    # Another tenant's admin sees none of it.
    acme_events = httpx.get(
        f"{world.api('acme')}/audit", params={"limit": 1000}, headers=world.auth("acme_admin")
    ).json()
    assert not any(e["principal"].startswith("ref_a") for e in acme_events)
    assert all(world.keys["ref_a"] not in str(e) for e in events)


# --- Values of mixed studies: each locked caller sees and matches only its sources' values ----
# S3 (ClinicA uploaded first) and S4 (ClinicB first, one series holding both) carry different
# patient, study and series values per source. Callers: the users and DIMSE peers locked to
# one source; the unlocked admin is the control (the study row: the first upload's values).

LOCKED_USERS = {"ref_a": "ClinicA", "read_b": "ClinicB"}
LOCKED_PEERS = {"PEER_A": "ClinicA", "PEER_B": "ClinicB"}
STUDY_KEYS = (
    ("00100010", "PatientName"),
    ("00100020", "PatientID"),
    ("00100030", "PatientBirthDate"),
    ("00080050", "AccessionNumber"),
    ("00200010", "StudyID"),
    ("00081030", "StudyDescription"),
    ("00080020", "StudyDate"),
    ("00080090", "ReferringPhysicianName"),
)
SERIES_KEYS = (("0008103E", "SeriesDescription"), ("00180015", "BodyPartExamined"))


def _json_value(item: dict, tag: str) -> str | None:
    values = item.get(tag, {}).get("Value")
    if not values:
        return None
    value = values[0]
    return value["Alphabetic"] if isinstance(value, dict) else str(value)


def _mixed(world: World) -> list[tuple[str, str]]:
    """(study UID, series UID of the mixed series or '') of S3 and S4."""
    by_name = {o.name: o for o in world.objects}
    return [(by_name["a3"].study, ""), (by_name["a4"].study, by_name["a4"].series)]


def test_qido_shows_only_visible_sources_values(world: World) -> None:
    with httpx.Client(timeout=60, base_url=world.url()) as client:
        for user, source in LOCKED_USERS.items():
            own = SOURCE_VALUES[source]
            hidden = _hidden_values(world.sees[user])
            headers = world.auth(user)
            for study, _series in _mixed(world):
                for path, level in (
                    (f"/studies?StudyInstanceUID={study}&includefield=all", "study"),
                    (f"/studies/{study}/series?includefield=all", "series"),
                    (f"/series?StudyInstanceUID={study}&includefield=all", "series"),
                    (f"/studies/{study}/instances?includefield=all", "instance"),
                    (f"/instances?StudyInstanceUID={study}&includefield=all", "instance"),
                ):
                    response = client.get(path, headers=headers)
                    case = f"{user} {path}"
                    assert response.status_code == 200, f"{case}: {response.status_code}"
                    _assert_no_leak(response, set(), ACME_MARKER, hidden)
                    items = response.json()
                    assert items, case
                    keys = STUDY_KEYS + (SERIES_KEYS if level != "study" else ())
                    for item in items:
                        for tag, keyword in keys:
                            assert _json_value(item, tag) == own[keyword], f"{case}: {keyword}"


def test_qido_matches_only_visible_sources_values(world: World) -> None:
    """A search on a hidden source's value finds nothing; on the caller's own value it finds
    every study holding the caller's instances, whichever source uploaded first."""
    by_name = {o.name: o for o in world.objects}

    def searches(token: str, values: dict[str, str]) -> list[str]:
        return [
            f"/studies?PatientName=*{token}*",
            f"/studies?PatientName=DEFAULTTENANT^PATIENT^{token}",
            f"/studies?PatientID={values['PatientID']}",
            f"/studies?AccessionNumber=*{token}",
            f"/studies?StudyDescription=*{token}*",
            f"/studies?ReferringPhysicianName=REFERRER^{token}",
            f"/studies?StudyID=ID-{token}",
            f"/studies?StudyDate={values['StudyDate']}",
            f"/studies?PatientBirthDate={values['PatientBirthDate']}",
            f"/studies?PatientName=*{token.lower()}*&fuzzymatching=true",
            f"/series?SeriesDescription=*{token}",
            f"/series?PatientName=*{token}*",
            f"/series?BodyPartExamined=PART{token}",
            f"/instances?PatientName=*{token}*",
            f"/instances?AccessionNumber=ACC-{token}",
        ]

    with httpx.Client(timeout=60, base_url=world.url()) as client:
        for user, source in LOCKED_USERS.items():
            headers = world.auth(user)
            hidden_source = next(s for s in SOURCE_VALUES if s != source)
            for path in searches(SOURCE_TOKEN[hidden_source], SOURCE_VALUES[hidden_source]):
                response = client.get(path, headers=headers)
                assert response.status_code in (200, 204), f"{user} {path}"
                found = response.json() if response.status_code == 200 else []
                assert found == [], f"{user} {path} matches a hidden value: {len(found)}"
            own_studies = {o.study for o in world.objects if o.source == source}
            for path in searches(SOURCE_TOKEN[source], SOURCE_VALUES[source]):
                response = client.get(path, headers=headers)
                assert response.status_code == 200, f"{user} {path}"
                found = _uids_in(response.json(), "0020000D")
                assert found >= own_studies, f"{user} {path}: misses {own_studies - found}"
        # Control: the unlocked admin sees the study row, named by each study's first upload.
        found = _uids_in(
            client.get("/studies?PatientName=*BRAVO*", headers=world.auth("admin")).json(),
            "0020000D",
        )
        assert by_name["b4"].study in found and by_name["b3"].study not in found


def _cfind(world: World, peer: str, model: str, identifier) -> list:  # type: ignore[no-untyped-def]
    from pynetdicom import AE
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    )

    sop_class = {
        "patient": PatientRootQueryRetrieveInformationModelFind,
        "study": StudyRootQueryRetrieveInformationModelFind,
    }[model]
    ae = AE(ae_title=peer)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", world.dimse_port, ae_title="TESSERA")
    assert assoc.is_established
    found = []
    try:
        for status, ds in assoc.send_c_find(identifier, sop_class):
            assert status and status.Status in (0x0000, 0xFF00, 0xFF01), status
            if status.Status in (0xFF00, 0xFF01):
                found.append(ds)
    finally:
        assoc.release()
    return found


def _identifier(level: str, **keys: str):  # type: ignore[no-untyped-def]
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
        setattr(ds, keyword, "")
    if level != "PATIENT":
        for _tag, keyword in STUDY_KEYS:
            setattr(ds, keyword, "")
        ds.StudyInstanceUID = ""
    if level in ("SERIES", "IMAGE"):
        ds.SeriesInstanceUID = ""
        ds.SeriesDescription = ds.BodyPartExamined = ""
    if level == "IMAGE":
        ds.SOPInstanceUID = ""
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_cfind_shows_and_matches_only_visible_sources_values(world: World) -> None:
    pytest.importorskip("tessera.scp.find")
    by_name = {o.name: o for o in world.objects}
    for peer, source in LOCKED_PEERS.items():
        own = SOURCE_VALUES[source]
        hidden = _hidden_values(frozenset({source}))
        token = SOURCE_TOKEN[next(s for s in SOURCE_VALUES if s != source)]
        mine = [o for o in world.objects if o.source == source]
        asks = [("patient", _identifier("PATIENT", PatientID=own["PatientID"]), "PATIENT")]
        for study, _series in _mixed(world):
            asks.append(("study", _identifier("STUDY", StudyInstanceUID=study), "STUDY"))
            for obj in mine:
                if obj.study == study:
                    asks.append(
                        (
                            "study",
                            _identifier(
                                "SERIES", StudyInstanceUID=study, SeriesInstanceUID=obj.series
                            ),
                            "SERIES",
                        )
                    )
                    asks.append(
                        (
                            "study",
                            _identifier(
                                "IMAGE", StudyInstanceUID=study, SeriesInstanceUID=obj.series
                            ),
                            "IMAGE",
                        )
                    )
        for model, identifier, level in asks:
            case = f"{peer} {model} {level}"
            found = _cfind(world, peer, model, identifier)
            assert found, f"{case}: nothing found"
            for ds in found:
                shown = str(ds)
                for value in hidden:
                    assert value not in shown, f"{case}: shows a hidden source's {value}"
                keys = ("PatientName", "PatientID", "PatientBirthDate")
                if level != "PATIENT":
                    keys += tuple(keyword for _tag, keyword in STUDY_KEYS)
                if level in ("SERIES", "IMAGE"):
                    keys += tuple(keyword for _tag, keyword in SERIES_KEYS)
                for keyword in keys:
                    assert str(ds.get(keyword, "")) == own[keyword], f"{case}: {keyword}"
        # Matching on a hidden value finds nothing, at every level.
        for model, level, keys in (
            ("patient", "PATIENT", {"PatientName": f"*{token}*"}),
            ("study", "STUDY", {"PatientName": f"*{token}*"}),
            ("study", "STUDY", {"StudyDescription": f"*{token}*"}),
            ("study", "STUDY", {"AccessionNumber": f"ACC-{token}"}),
            (
                "study",
                "SERIES",
                {"StudyInstanceUID": by_name["a4"].study, "SeriesDescription": f"*{token}"},
            ),
            (
                "study",
                "IMAGE",
                {
                    "StudyInstanceUID": by_name["a4"].study,
                    "SeriesInstanceUID": by_name["a4"].series,
                    "PatientName": f"*{token}*",
                },
            ),
        ):
            found = _cfind(world, peer, model, _identifier(level, **keys))
            assert found == [], f"{peer} {level} {keys}: matches a hidden value"


# --- identity rows: links never cross tenants, never reveal a hidden source's identity ------


def _study_uids(world: World, user: str, query: str) -> tuple[set[str], str]:
    answer = httpx.get(f"{world.url()}/studies?{query}", headers=world.auth(user), timeout=60)
    assert answer.status_code in (200, 204), answer.text
    items = answer.json() if answer.status_code == 200 else []
    return _uids_in(items, "0020000D"), answer.text


def _identity_pk(
    world: World, patient_id: str, tenant: str = "default", user: str = "admin"
) -> int:
    found = httpx.get(
        f"{world.api(tenant)}/patients",
        params={"patient_id": patient_id},
        headers=world.auth(user),
        timeout=60,
    ).json()
    assert len(found) == 1, found
    return found[0]["id"]


def test_identity_links_stay_in_tenant_and_in_sources(world: World) -> None:
    alfa, bravo = _identity_pk(world, "PID-ALFA"), _identity_pk(world, "PID-BRAVO")
    acme = _identity_pk(world, "PAT-1", "acme", "acme_admin")
    queries = ("PatientID=PID-ALFA", "PatientID=PID-BRAVO")
    before = {
        (user, q): _study_uids(world, user, q)[0]
        for user in ("ref_a", "read_b", "admin")
        for q in queries
    }
    # Across tenants: the other tenant's identity is 404 from both sides, nothing linked.
    refused = httpx.post(
        f"{world.api()}/patients/{alfa}/links", json={"identity": acme}, headers=world.auth("admin")
    )
    assert refused.status_code == 404
    refused = httpx.post(
        f"{world.api('acme')}/patients/{acme}/links",
        json={"identity": alfa},
        headers=world.auth("acme_admin"),
    )
    assert refused.status_code == 404
    linked = httpx.post(
        f"{world.api()}/patients/{alfa}/links",
        json={"identity": bravo},
        headers=world.auth("admin"),
    )
    assert linked.status_code == 201, linked.text
    try:
        # The unlocked admin's priors: both identities' studies, whichever ID is asked.
        both = before[("admin", queries[0])] | before[("admin", queries[1])]
        for q in queries:
            assert _study_uids(world, "admin", q)[0] == both
        # Locked users: exactly what they saw before the link, and no trace of the other
        # source's identity (its ID or token) in the answer, over QIDO-RS and C-FIND.
        for user, hidden_token in (("ref_a", "BRAVO"), ("read_b", "ALFA")):
            for q in queries:
                uids, text = _study_uids(world, user, f"{q}&includefield=all")
                assert uids == before[(user, q)], (user, q)
                assert hidden_token not in text, (user, q)
        for peer, hidden_token in (("PEER_A", "BRAVO"), ("PEER_B", "ALFA")):
            found = _cfind(world, peer, "study", _identifier("STUDY", PatientID="PID-ALFA"))
            assert all(hidden_token not in str(ds) for ds in found), peer
        # The identity API and a person's history tell a locked user nothing more.
        hidden_for_a = bravo
        for path in (f"/patients/{hidden_for_a}/studies",):
            answer = httpx.get(f"{world.api()}{path}", headers=world.auth("ref_a"), timeout=60)
            assert answer.status_code == 404
        mine = httpx.get(
            f"{world.api()}/patients/{alfa}/studies", headers=world.auth("ref_a"), timeout=60
        )
        assert mine.status_code == 200 and "BRAVO" not in mine.text
        # The other tenant's search for its own ID is untouched by this tenant's links.
        acme_text = httpx.get(
            f"{world.url('acme')}/studies?PatientID=PAT-1",
            headers=world.auth("acme_admin"),
            timeout=60,
        ).text
        assert "PID-" not in acme_text and DEFAULT_MARKER not in acme_text
    finally:
        httpx.delete(f"{world.api()}/patients/{alfa}/links/{bravo}", headers=world.auth("admin"))


def test_identity_changes_stay_in_tenant_and_in_sources(world: World) -> None:
    """Corrections, merges and moves: never across tenants; a source-locked user with the
    identity permission can change nothing that holds another source's studies, and their
    history never names a change touching hidden studies or identities."""
    api, admin = world.api(), world.auth("admin")
    alfa, bravo = _identity_pk(world, "PID-ALFA"), _identity_pk(world, "PID-BRAVO")
    acme = _identity_pk(world, "PAT-1", "acme", "acme_admin")
    httpx.put(f"{api}/roles/registrar_a", json={"permissions": ["read", "identity"]}, headers=admin)
    if "ident_a" not in world.keys:
        add_user(world, "ident_a", "registrar_a", ["ClinicA"])
    ident_a = world.auth("ident_a")
    state = "SELECT id, patient_pk, patient_id, patient_name FROM study ORDER BY id"
    before_rows = index_rows(world.server.database_url, state)
    before_a = _study_uids(world, "ref_a", "PatientID=PID-ALFA&includefield=all")[0]

    # Across tenants: 404 from both sides, nothing changed.
    for url, body, auth in (
        (f"{api}/patients/{alfa}/merge", {"identity": acme}, admin),
        (f"{api}/patients/{acme}/merge", {"identity": alfa}, admin),
        (f"{api}/studies/{world.objects[0].study}/patient", {"identity": acme}, admin),
        (
            f"{world.api('acme')}/patients/{acme}/merge",
            {"identity": alfa},
            world.auth("acme_admin"),
        ),
    ):
        assert httpx.post(url, json=body, headers=auth, timeout=60).status_code == 404, url
    assert (
        httpx.patch(
            f"{world.api('acme')}/patients/{alfa}",
            json={"patient_sex": "F"},
            headers=world.auth("acme_admin"),
            timeout=60,
        ).status_code
        == 404
    )
    # Locked to ClinicA: PID-ALFA holds a study with ClinicB instances, PID-BRAVO is hidden.
    for url, body in (
        (f"{api}/patients/{alfa}/merge", {"identity": bravo}),
        (f"{api}/patients/{bravo}/merge", {"identity": alfa}),
        (f"{api}/studies/{world.objects[1].study}/patient", {"identity": alfa}),
    ):
        refused = httpx.post(url, json=body, headers=ident_a, timeout=60)
        assert refused.status_code == 404 and "BRAVO" not in refused.text, url
    patched = httpx.patch(
        f"{api}/patients/{alfa}", json={"patient_sex": "O"}, headers=ident_a, timeout=60
    )
    assert patched.status_code == 404
    assert index_rows(world.server.database_url, state) == before_rows

    merged = httpx.post(
        f"{api}/patients/{alfa}/merge", json={"identity": bravo}, headers=admin, timeout=60
    )
    assert merged.status_code == 200, merged.text
    change = merged.json()["change"]["id"]
    try:
        history = httpx.get(f"{api}/patients/{alfa}/changes", headers=ident_a, timeout=60)
        assert history.status_code == 200 and history.json() == []
        assert "BRAVO" not in history.text and str(bravo) not in history.text
        assert httpx.get(f"{api}/patients/{bravo}", headers=ident_a).status_code == 404
        undo = httpx.post(f"{api}/identity-changes/{change}/undo", json={}, headers=ident_a)
        assert undo.status_code == 404
        uids, text = _study_uids(world, "ref_a", "PatientID=PID-ALFA&includefield=all")
        assert uids == before_a and "BRAVO" not in text
        assert httpx.get(f"{api}/patients/{alfa}/changes", headers=admin).json()[0]["action"] == (
            "merge"
        )
    finally:
        undone = httpx.post(f"{api}/identity-changes/{change}/undo", json={}, headers=admin)
        assert undone.status_code == 200, undone.text
    assert index_rows(world.server.database_url, state) == before_rows
