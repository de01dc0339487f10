"""Security rows for every report endpoint, against a real server with two tenants holding
identical UIDs and source-locked users (tests.security_world):

- a caller lacking the endpoint's permission gets 403 (signing without report.sign too);
- a report of a study the caller cannot see (another source, another tenant) is 404, exactly
  like one that does not exist, and no answer names its content;
- a report id is only found under its own study;
- the SR and PDF of a signed report are instances of the study: QIDO-RS and WADO-RS show them
  only to callers who see their source, never to another tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.report_world import ReportClient, study_instances
from tests.security_world import World
from tests.world import DATABASES, served_world

SECRET = "FINDING-ONLY-FOR-CLINIC-A"


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # relative to the API root; {study} and {report}
    permission: str
    body: dict | None = None
    versioned: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ROWS = [
    Row("GET", "/studies/{study}/reports", "read"),
    Row("POST", "/studies/{study}/reports", "report.write", {"sections": {"findings": "x"}}),
    Row("GET", "/studies/{study}/reports/{report}", "read"),
    Row(
        "PUT",
        "/studies/{study}/reports/{report}",
        "report.write",
        {"sections": {"findings": "y"}},
        versioned=True,
    ),
    Row("POST", "/studies/{study}/reports/{report}/sign", "report.sign", versioned=True),
    Row(
        "POST",
        "/studies/{study}/reports/{report}/addenda",
        "report.sign",
        {"text": "z"},
        versioned=True,
    ),
]
PERMISSIONS = {
    "admin": {"read", "report.write", "report.sign", "admin"},
    "tech": {"read", "report.write"},
    "ref_a": {"read"},
    "read_b": {"read", "report.write", "report.sign"},
    "nobody": set(),
}


@dataclass
class Reports:
    world: World
    # study name -> (study UID, report id of a signed report there, its SR UID)
    signed: dict[str, tuple[str, int, str]]


@pytest.fixture(scope="module", params=DATABASES)
def reports(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "reports") as world:
        admin = ReportClient(world, "admin")
        signed = {}
        for name in ("a1", "b2", "a3"):
            study = next(o.study for o in world.objects if o.name == name)
            text = SECRET if name == "a1" else f"finding of {name}"
            report_id = admin.create(study, {"sections": {"findings": text}}).json()["id"]
            final = admin.sign(study, report_id, 1)
            assert final.status_code == 200, final.text
            signed[name] = (study, report_id, final.json()["versions"][-1]["sr_sop_instance_uid"])
        yield Reports(world, signed)


def _call(world: World, user: str, row: Row, study: str, report: int, tenant: str = "default"):  # type: ignore[no-untyped-def]
    url = world.api(tenant) + row.path.format(study=study, report=report)
    headers = dict(world.auth(user))
    if row.versioned:
        headers["If-Match"] = '"2"'
    return httpx.request(row.method, url, json=row.body, headers=headers, timeout=60)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_report_endpoint(reports: Reports, row: Row) -> None:
    world = reports.world
    for user, permissions in PERMISSIONS.items():
        for name, (study, report_id, _) in reports.signed.items():
            response = _call(world, user, row, study, report_id)
            visible = any(world.visible(user, o) for o in world.objects if o.study == study)
            assert SECRET not in response.text or (visible and name == "a1")
            if row.permission not in permissions:
                assert response.status_code == 403, (user, name, response.text)
            elif not visible:
                assert response.status_code == 404, (user, name, response.text)
            elif row.method == "GET":
                assert response.status_code == 200, (user, name, response.text)
            else:
                # Allowed and visible: the rules decide (a signed report refuses an edit).
                assert response.status_code in (200, 201, 409), (user, name, response.text)

    # A report id is found only under its own study.
    s1, r1, _ = reports.signed["a1"]
    s2, r2, _ = reports.signed["b2"]
    if "{report}" in row.path:
        assert _call(world, "admin", row, s2, r1).status_code == 404
        assert _call(world, "admin", row, s1, 999_999).status_code == 404
        assert _call(world, "admin", row, s1, "x").status_code in (404, 405)  # type: ignore[arg-type]
    # A study nobody stored: 404, as for a hidden one.
    assert _call(world, "admin", row, "1.2.3.999", r1).status_code == 404

    # Another tenant: its own copy of the same study UIDs has no reports; the default
    # tenant's report ids are not found there; its credentials do not work here.
    acme = _call(world, "acme_admin", row, s1, r1, tenant="acme")
    assert SECRET not in acme.text
    if row.method == "GET" and "{report}" not in row.path:
        assert acme.status_code == 200 and acme.json() == []
    elif row.method == "POST" and "{report}" not in row.path:
        assert acme.status_code == 201  # a draft on acme's own study
    else:
        assert acme.status_code == 404
    assert _call(world, "acme_admin", row, s1, r1).status_code == 401


def test_report_instances_follow_source_and_tenant(reports: Reports) -> None:
    world = reports.world
    s1, _, sr1 = reports.signed["a1"]
    s2, _, sr2 = reports.signed["b2"]
    assert sr1 in study_instances(world, "ref_a", s1)
    assert sr2 not in study_instances(world, "ref_a", s2)
    assert sr1 not in study_instances(world, "read_b", s1)
    for user in ("ref_a", "read_b"):
        hidden = sr2 if user == "ref_a" else sr1
        found = httpx.get(
            f"{world.url()}/instances",
            params={"SOPInstanceUID": hidden},
            headers=world.auth(user),
            timeout=30,
        )
        assert found.status_code == 204 or found.json() == []
    acme = world.auth("acme_admin")
    for sop in (sr1, sr2):
        found = httpx.get(
            f"{world.url('acme')}/instances", params={"SOPInstanceUID": sop}, headers=acme
        )
        assert found.status_code == 204 or found.json() == []


def test_templates_endpoints(reports: Reports) -> None:
    world = reports.world
    api = world.api()
    template = {"name": "sec-t", "fields": [{"name": "note", "type": "text"}]}
    for user, permissions in PERMISSIONS.items():
        listed = httpx.get(f"{api}/report-templates", headers=world.auth(user), timeout=30)
        one = httpx.get(f"{api}/report-templates/radiology", headers=world.auth(user))
        put = httpx.put(
            f"{api}/report-templates/sec-t", json=template, headers=world.auth(user), timeout=30
        )
        expected_read = 200 if "read" in permissions else 403
        assert (listed.status_code, one.status_code) == (expected_read, expected_read), user
        assert put.status_code in ((200, 201) if "admin" in permissions else (403,)), user
    acme = httpx.get(
        f"{world.api('acme')}/report-templates/sec-t", headers=world.auth("acme_admin")
    )
    assert acme.status_code == 404
