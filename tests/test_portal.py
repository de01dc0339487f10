"""The web portal (tessera/portal, docs/portal.md) in Debian's headless Chromium driven by
playwright-core (tests/portal/drive.mjs), against a real `tessera serve` with credentials
required: signing in and out, the worklist, what a source-locked user sees, which controls
each role gets, the study page, and an upload through the page.

Screenshots: test-artifacts/portal/ (git-ignored)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tessera.dicomweb import multipart_writer
from tests.conftest import PG_URL, ServerProcess, create_pg_database, drop_pg_database, free_port
from tests.security_world import PASSWORD, admin_cli, instance_bytes, stow

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).parent / "portal" / "drive.mjs"
# playwright-core as the OHIF conformance test installs it (conformance/ohif/install.sh).
PLAYWRIGHT_DIR = ROOT / "conformance" / "ohif"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "portal"
NEW_PASSWORD = "another-horse-staple"
# The tests' own HTTP calls (argon2 hashing and signing on a loaded 2-core machine can take
# seconds).
HTTP = httpx.Client(timeout=60)


def playwright_dir() -> Path:
    """The folder whose node_modules holds playwright-core (installed from its lock file
    when missing, as conformance/ohif/install.sh does)."""
    folder = PLAYWRIGHT_DIR
    if (folder / "node_modules" / "playwright-core" / "package.json").is_file():
        return folder
    if shutil.which("npm") is None:
        pytest.skip("npm is needed to install playwright-core (conformance/ohif)")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return folder


@dataclass
class Site:
    server: ServerProcess
    admin_key: str
    # Study Instance UIDs by name: a_study (source ClinicA), b_study (source ClinicB).
    studies: dict[str, str]
    workdir: Path

    @property
    def api(self) -> str:
        return f"{self.server.base_url}/api/v1"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


def _ok(response: httpx.Response) -> dict:
    assert response.status_code < 300, response.text
    return response.json() if response.content else {}


@pytest.fixture(scope="session")
def browser() -> None:
    """Chromium and Node.js, or skip."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium")
    if shutil.which("node") is None:
        pytest.skip("Node.js is needed to drive Chromium")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def site(request, tmp_path_factory, browser: None) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp(f"portal-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'index.sqlite3'}"
    else:
        if not PG_URL:
            pytest.skip("TESSERA_TEST_PG_URL not set")
        url = create_pg_database()
    server = ServerProcess(
        data_dir=workdir / "data",
        database_url=url,
        # Private addresses allowed: the routing page adds a rule to a DIMSE peer on loopback.
        env_extra={
            "TESSERA_ANONYMOUS": "off",
            "TESSERA_WORKERS": "1",
            "TESSERA_OUTBOUND_ALLOW_PRIVATE": "true",
            # Studies complete only when an upload session is committed (no quiet timer), so
            # the "new study ready" notices appear only where a test causes them.
            "TESSERA_STUDY_COMPLETE_QUIET_SECONDS": "86400",
        },
    )
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    server.start(timeout=120)
    try:
        site = Site(server, boot["api_key"], {}, workdir)
        auth = site.auth()
        for source in ("ClinicA", "ClinicB"):
            _ok(HTTP.post(f"{site.api}/sources", json={"name": source}, headers=auth))
        users = {
            "tech": ("technologist", [], []),
            "ref_a": ("referring_physician", ["ClinicA"], []),
            "read_a": ("reading_physician", ["ClinicA"], []),
        }
        for username, (role, sources, upload_sources) in users.items():
            _ok(
                HTTP.post(
                    f"{site.api}/users",
                    json={
                        "username": username,
                        "role": role,
                        "password": PASSWORD,
                        "sources": sources,
                        "upload_sources": upload_sources,
                    },
                    headers=auth,
                )
            )
        for name, source, patient in (
            ("a_study", "ClinicA", "ALFA^ANNA"),
            ("b_study", "ClinicB", "BRAVO^BERT"),
        ):
            study = generate_uid()
            series = generate_uid()
            parts = [
                instance_bytes(study, series, generate_uid(), patient, n, {"PatientID": name})
                for n in (1, 2)
            ]
            response = stow(server.dicomweb, parts, auth, source=source)
            assert response.status_code == 200, response.text
            site.studies[name] = study
        yield site
    finally:
        server.stop()
        if request.param == "postgresql":
            drop_pg_database(url)


def drive(site: Site, journeys: list[dict]) -> dict[str, dict]:
    """Run the journeys in Chromium; their results by name."""
    artifacts = ARTIFACTS / Path(site.workdir).name
    spec = {
        "baseUrl": site.server.base_url,
        "artifacts": str(artifacts),
        "chromium": CHROMIUM,
        "journeys": journeys,
    }
    spec_path = site.workdir / "portal-spec.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        ["node", str(DRIVER), str(spec_path)],
        cwd=playwright_dir(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"driver failed:\n{done.stderr[-4000:]}"
    results = json.loads(done.stdout.strip().splitlines()[-1])
    (artifacts / "report.json").write_text(json.dumps(results, indent=2))
    return {result["name"]: result for result in results}


def labels(nav: list[str]) -> list[str]:
    """The navigation's page names, without the Worklist's "2 new" badge."""
    return [re.sub(r"\s*\d+ new$", "", text) for text in nav]


def sign_in(username: str, password: str = PASSWORD) -> list[dict]:
    return [
        {"goto": "/portal/"},
        {"wait": "#login"},
        {"fill": "#login input[name=username]", "value": username},
        {"fill": "#login input[name=password]", "value": password},
        {"click": "#login button[type=submit]"},
        {"wait": "#signout"},
    ]


def worklist_rows() -> list[dict]:
    return [
        {"wait": "#results[data-state=done] table"},
        {"texts": "#results tbody tr", "as": "rows"},
    ]


def test_sign_in_worklist_and_sign_out(site: Site) -> None:
    results = drive(
        site,
        [
            {
                "name": "admin",
                "steps": [
                    *sign_in("admin"),
                    *worklist_rows(),
                    {"texts": "#nav a", "as": "nav"},
                    {"storage": "tessera.portal", "as": "stored"},
                    {"screenshot": "worklist"},
                    # Sorted by patient (by the server), descending (a second click).
                    {"click": "#results th:first-child button"},
                    {"wait": "#results[data-state=done] th[aria-sort=ascending]"},
                    {"click": "#results th:first-child button"},
                    {"wait": "#results[data-state=done] th[aria-sort=descending]"},
                    {"texts": "#results tbody tr td:first-child", "as": "sorted"},
                    # A search by a word of the name (QIDO fuzzy matching), then by date.
                    {"fill": "form[role=search] input[name=name]", "value": "bravo"},
                    {"click": "form[role=search] button[type=submit]"},
                    {"wait": "#results[data-state=done]"},
                    {"texts": "#results tbody tr", "as": "by_name"},
                    {"fill": "form[role=search] input[name=name]", "value": ""},
                    {"fill": "form[role=search] input[name=from]", "value": "2031-01-01"},
                    {"click": "form[role=search] button[type=submit]"},
                    {"waitText": "main .status", "text": "No studies found"},
                    {"fill": "form[role=search] input[name=from]", "value": ""},
                    {"click": "form[role=search] button[type=submit]"},
                    {"wait": "#results tbody tr"},
                    {"click": "#signout"},
                    {"wait": "#login"},
                    {"storage": "tessera.portal", "as": "after"},
                ],
            },
            {
                "name": "wrong-password",
                "steps": [
                    *sign_in("admin", "not-the-password")[:-1],
                    {"waitText": "#login .status", "text": "Wrong"},
                    {"count": "#signout", "as": "signed_in"},
                    {"screenshot": "refused"},
                ],
            },
        ],
    )
    admin = results["admin"]
    assert admin["error"] is None, admin
    rows = admin["values"]["rows"]
    assert any("ALFA ANNA" in row for row in rows), rows
    assert any("BRAVO BERT" in row for row in rows), rows
    assert labels(admin["values"]["nav"]) == [
        "Worklist",
        "Upload",
        "Orders",
        "My Team",
        "DIMSE peers",
        "Routing",
        "Webhooks",
        "Report templates",
        "Audit log",
    ]
    assert admin["values"]["sorted"] == sorted(admin["values"]["sorted"], reverse=True)
    assert len(admin["values"]["by_name"]) == 1 and "BRAVO BERT" in admin["values"]["by_name"][0]
    token = json.loads(admin["values"]["stored"])["token"]
    assert token.startswith("tss_")
    assert admin["values"]["after"] is None
    # Signing out ended the token on the server, not only in the page.
    response = HTTP.get(f"{site.api}/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert admin["pageErrors"] == []
    refused = results["wrong-password"]
    assert refused["error"] is None, refused
    assert refused["values"]["signed_in"] == 0


def test_a_source_locked_user_sees_only_their_source(site: Site) -> None:
    results = drive(
        site,
        [
            {
                "name": "ref_a",
                "steps": [
                    *sign_in("ref_a"),
                    *worklist_rows(),
                    {"texts": "#nav a", "as": "nav"},
                    {"count": "a[data-page=upload]", "as": "upload_links"},
                    {"screenshot": "worklist"},
                    {"goto": f"/portal/#/study/{site.studies['b_study']}"},
                    {"waitText": "main", "text": "No such study"},
                    {"goto": f"/portal/#/study/{site.studies['a_study']}"},
                    {"wait": "#series figure"},
                    {"images": "#series img", "as": "thumbnails"},
                    {"screenshot": "study"},
                ],
            },
            {
                # A phone's width: the tables become one card per row.
                "name": "ref_a-phone",
                "viewport": {"width": 390, "height": 844},
                "steps": [
                    *sign_in("ref_a"),
                    *worklist_rows(),
                    {"screenshot": "worklist"},
                ],
            },
        ],
    )
    phone = results["ref_a-phone"]
    assert phone["error"] is None, phone
    assert [row.split() for row in phone["values"]["rows"]] == [
        row.split() for row in results["ref_a"]["values"]["rows"]
    ]
    ref = results["ref_a"]
    assert ref["error"] is None, ref
    rows = ref["values"]["rows"]
    assert len(rows) == 1 and "ALFA ANNA" in rows[0], rows
    assert labels(ref["values"]["nav"]) == ["Worklist", "Orders"]
    assert ref["values"]["upload_links"] == 0
    assert ref["values"]["thumbnails"] and all(w > 0 for w in ref["values"]["thumbnails"])


def _study_files(folder: Path, patient: str, count: int) -> tuple[str, list[str]]:
    """`count` CT files of one new study in `folder`; its Study Instance UID and the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for number in range(1, count + 1):
        path = folder / f"{number}.dcm"
        path.write_bytes(
            instance_bytes(study, series, generate_uid(), patient, number, {"PatientID": "UP"})
        )
        paths.append(str(path))
    return study, paths


def _study_found(site: Site, study: str) -> bool:
    response = HTTP.get(
        f"{site.server.dicomweb}/studies",
        params={"StudyInstanceUID": study},
        headers={**site.auth(), "Accept": "application/dicom+json"},
    )
    assert response.status_code == 200, response.text
    return len(response.json()) == 1


def test_upload_through_the_page_stores_the_files(site: Site) -> None:
    direct, direct_files = _study_files(site.workdir / "direct", "UPLOAD^NOW", 3)
    later, later_files = _study_files(site.workdir / "later", "UPLOAD^LATER", 2)
    not_dicom = site.workdir / "notes.txt"
    not_dicom.write_text("not a DICOM file")
    results = drive(
        site,
        [
            {
                "name": "tech-upload",
                "steps": [
                    *sign_in("tech"),
                    {"click": "a[data-page=upload]"},
                    {"wait": "#upload"},
                    {"files": "#files", "paths": [*direct_files, str(not_dicom)]},
                    {"fill": "#upload input[name=source]", "value": "ClinicB"},
                    {"click": "#upload button[type=submit]"},
                    {"waitText": "#upload .status.error, #upload .status.ok", "text": "Stored"},
                    {"texts": "#upload .status", "as": "direct"},
                    {"screenshot": "uploaded"},
                    {"files": "#files", "paths": later_files},
                    {"click": "#upload input[name=later]"},
                    {"fill": "#upload input[name=description]", "value": "for tomorrow"},
                    {"click": "#upload button[type=submit]"},
                    {"wait": "#sessions button.commit"},
                    {"texts": "#sessions tbody tr", "as": "sessions"},
                    {"screenshot": "session"},
                ],
            },
        ],
    )
    tech = results["tech-upload"]
    assert tech["error"] is None, tech
    messages = " ".join(tech["values"]["direct"])
    assert "Stored 3 instances, 1 refused" in messages, messages
    assert "3/4 files" in messages or "4/4 files" in messages, messages
    assert _study_found(site, direct)
    # Stored with the source the page named: a user locked to ClinicA does not see it.
    response = HTTP.get(
        f"{site.server.dicomweb}/studies",
        params={"StudyInstanceUID": direct},
        auth=("ref_a", PASSWORD),
        headers={"Accept": "application/dicom+json"},
    )
    assert response.status_code == 200 and response.json() == []
    # Uploaded later: in the session, not yet visible.
    assert any("for tomorrow" in row for row in tech["values"]["sessions"])
    assert not _study_found(site, later)

    committed = drive(
        site,
        [
            {
                "name": "tech-commit",
                "steps": [
                    *sign_in("tech"),
                    {"goto": "/portal/#/upload"},
                    {"wait": "#sessions button.commit"},
                    {"click": "#sessions button.commit"},
                    {"waitText": "#sessions", "text": "No open upload sessions"},
                ],
            }
        ],
    )["tech-commit"]
    assert committed["error"] is None, committed
    assert _study_found(site, later)


def test_a_user_without_upload_gets_no_upload_page(site: Site) -> None:
    results = drive(
        site,
        [
            {
                "name": "ref_a-upload",
                "steps": [
                    *sign_in("ref_a"),
                    {"goto": "/portal/#/upload"},
                    {"wait": "#results"},
                    {"count": "#upload, #files, a[data-page=upload]", "as": "controls"},
                ],
            }
        ],
    )
    ref = results["ref_a-upload"]
    assert ref["error"] is None, ref
    assert ref["values"]["controls"] == 0


def test_an_admin_adds_a_source_locked_user_who_sees_only_that_source(site: Site) -> None:
    results = drive(
        site,
        [
            {
                "name": "admin-team",
                "steps": [
                    *sign_in("admin"),
                    {"click": "a[data-page=team]"},
                    {"wait": "#users table"},
                    {"click": "#users > details > summary"},
                    {"fill": "#new-user input[name=username]", "value": "locked_b"},
                    {"fill": "#new-user input[name=password]", "value": PASSWORD},
                    {"select": "#new-user select[name=role]", "value": "referring_physician"},
                    {"click": "#new-user input[name=sources][value=ClinicB]"},
                    {"click": "#new-user button[type=submit]"},
                    {"waitText": "#users tbody", "text": "locked_b"},
                    {
                        "click": "#users tbody tr:has-text('locked_b') details:has(form.password) summary"
                    },
                    {
                        "fill": "#users tbody tr:has-text('locked_b') input[name=new_password]",
                        "value": NEW_PASSWORD,
                    },
                    {"click": "#users tbody tr:has-text('locked_b') form.password button"},
                    {"waitText": "#users .status", "text": "Password of locked_b changed"},
                    {"texts": "#users tbody tr", "as": "users"},
                    {"texts": "#roles tbody tr", "as": "roles"},
                    {"screenshot": "team"},
                    {"click": "#keys summary"},
                    {"fill": "#new-key input[name=user]", "value": "tech"},
                    {"fill": "#new-key input[name=name]", "value": "from the portal"},
                    {"click": "#new-key button[type=submit]"},
                    {"wait": "#new-key-value code"},
                    {"texts": "#new-key-value code", "as": "new_key"},
                    {"click": "a[data-page=audit]"},
                    {"wait": "#audit table"},
                    {"texts": "#audit tbody tr", "as": "audit"},
                    {"screenshot": "audit"},
                    {"click": "a[data-page=webhooks]"},
                    {"waitText": "main", "text": "No webhooks"},
                    {"screenshot": "webhooks"},
                ],
            },
            {
                "name": "locked_b",
                "steps": [
                    *sign_in("locked_b", NEW_PASSWORD),
                    *worklist_rows(),
                    {"goto": "/portal/#/team"},
                    {"wait": "#results"},
                    {
                        "count": "#users, a[data-page=team], a[data-page=audit]",
                        "as": "admin_controls",
                    },
                ],
            },
        ],
    )
    admin = results["admin-team"]
    assert admin["error"] is None, admin
    locked_row = next(row for row in admin["values"]["users"] if row.startswith("locked_b"))
    assert "referring_physician" in locked_row and "ClinicB" in locked_row, locked_row
    assert any(row.startswith("admin") for row in admin["values"]["roles"])
    assert any("admin.user.create" in row and "locked_b" in row for row in admin["values"]["audit"])
    # The key made in the page is tech's, and works.
    [key] = admin["values"]["new_key"]
    me = HTTP.get(f"{site.api}/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["username"] == "tech"
    locked = results["locked_b"]
    assert locked["error"] is None, locked
    rows = locked["values"]["rows"]
    assert any("BRAVO BERT" in row for row in rows), rows
    assert not any("ALFA ANNA" in row for row in rows), rows
    assert locked["values"]["admin_controls"] == 0
    # What the page shows is what the API answers that user.
    response = HTTP.get(f"{site.api}/users/locked_b", headers=site.auth())
    assert response.json()["sources"] == ["ClinicB"]


def test_a_user_changes_their_own_password(site: Site) -> None:
    """The Password page: the server's refusals shown as they come (wrong current password,
    the policy), then the change; the user's other session ends."""
    _ok(
        HTTP.post(
            f"{site.api}/users",
            json={"username": "pw_user", "role": "referring_physician", "password": PASSWORD},
            headers=site.auth(),
        )
    )
    elsewhere = _ok(
        HTTP.post(f"{site.api}/login", json={"username": "pw_user", "password": PASSWORD})
    )["access_token"]
    form = "#password"
    result = drive(
        site,
        [
            {
                "name": "pw_user",
                "steps": [
                    *sign_in("pw_user"),
                    {"click": "#change-password"},
                    {"wait": form},
                    {"fill": f"{form} input[name=current_password]", "value": "not-my-password"},
                    {"fill": f"{form} input[name=new_password]", "value": NEW_PASSWORD},
                    {"fill": f"{form} input[name=repeat_password]", "value": NEW_PASSWORD},
                    {"click": f"{form} button[type=submit]"},
                    {"waitText": f"{form} .status.error", "text": "wrong"},
                    {"texts": f"{form} .status", "as": "wrong"},
                    {"fill": f"{form} input[name=current_password]", "value": PASSWORD},
                    {"fill": f"{form} input[name=new_password]", "value": "short12"},
                    {"fill": f"{form} input[name=repeat_password]", "value": "short12"},
                    {"click": f"{form} button[type=submit]"},
                    {"waitText": f"{form} .status.error", "text": "8 characters"},
                    {"texts": f"{form} .status", "as": "weak"},
                    {"screenshot": "refused"},
                    {"fill": f"{form} input[name=new_password]", "value": NEW_PASSWORD},
                    {"fill": f"{form} input[name=repeat_password]", "value": NEW_PASSWORD},
                    {"click": f"{form} button[type=submit]"},
                    {"waitText": f"{form} .status.ok", "text": "Password changed"},
                    {"screenshot": "changed"},
                    # Still signed in here.
                    {"click": "a[data-page=worklist]"},
                    *worklist_rows(),
                ],
            },
            {
                "name": "pw_user-phone",
                "viewport": {"width": 390, "height": 844},
                "steps": [
                    *sign_in("pw_user", NEW_PASSWORD),
                    {"click": "#change-password"},
                    {"wait": form},
                    {"screenshot": "password"},
                ],
            },
        ],
    )
    user = result["pw_user"]
    assert user["error"] is None, user
    assert user["values"]["wrong"] == ["Not changed: the current password is wrong"]
    assert "at least 8 characters" in user["values"]["weak"][0]
    assert result["pw_user-phone"]["error"] is None, result["pw_user-phone"]
    me = HTTP.get(f"{site.api}/me", headers={"Authorization": f"Bearer {elsewhere}"})
    assert me.status_code == 401
    assert HTTP.get(f"{site.api}/me", auth=("pw_user", NEW_PASSWORD)).status_code == 200


def test_worklist_source_filter_and_priors(site: Site) -> None:
    """The worklist's source filter (QIDO-RS `source=`, the server's message for a malformed
    name) and a row's priors: the same patient's other studies, linked to their pages."""
    studies = {}
    for description, date in (("Old head", "20190304"), ("New head", "20240506")):
        study = generate_uid()
        part = instance_bytes(
            study,
            generate_uid(),
            generate_uid(),
            "PRIOR^PAUL",
            1,
            {"PatientID": "prior-1", "StudyDescription": description, "StudyDate": date},
        )
        assert stow(site.server.dicomweb, [part], site.auth(), source="ClinicB").status_code == 200
        studies[description] = study
    search = "form[role=search]"
    result = drive(
        site,
        [
            {
                "name": "admin-priors",
                "steps": [
                    *sign_in("admin"),
                    {"fill": f"{search} input[name=source]", "value": "ClinicA"},
                    {"click": f"{search} button[type=submit]"},
                    {"wait": "#results[data-state=done] tbody tr"},
                    {"texts": "#results tbody tr td:first-child", "as": "clinic_a"},
                    {"fill": f"{search} input[name=source]", "value": "Clinic A"},
                    {"click": f"{search} button[type=submit]"},
                    {"waitText": "main .status.error", "text": "source"},
                    {"texts": "main > .status", "as": "malformed"},
                    {"fill": f"{search} input[name=source]", "value": ""},
                    {"fill": f"{search} input[name=id]", "value": "prior-1"},
                    {"click": f"{search} button[type=submit]"},
                    {"wait": "#results[data-state=done] tbody tr"},
                    {"texts": "#results tbody tr td:first-child", "as": "paul"},
                    {"click": "#results tbody tr:has-text('New head') button.priors"},
                    {"wait": "#results div.priors li a"},
                    {"texts": "#results div.priors li", "as": "priors"},
                    {"attr": "#results div.priors li a", "name": "href", "as": "prior_links"},
                    {"screenshot": "priors"},
                    {"click": "#results div.priors li a"},
                    {"wait": "#series figure"},
                    {"texts": "main h1", "as": "opened"},
                ],
            }
        ],
    )["admin-priors"]
    assert result["error"] is None, result
    assert result["values"]["clinic_a"] and all(
        "ALFA ANNA" in name for name in result["values"]["clinic_a"]
    ), result["values"]["clinic_a"]
    assert "not a source name" in result["values"]["malformed"][0]
    assert result["values"]["paul"] == ["PRIOR PAUL", "PRIOR PAUL"]
    assert len(result["values"]["priors"]) == 1 and "Old head" in result["values"]["priors"][0]
    assert "2019-03-04" in result["values"]["priors"][0]
    assert result["values"]["prior_links"] == [f"#/study/{studies['Old head']}"]
    assert result["values"]["opened"] == ["Old head"]


SORT_NAMES = (
    "JULIET", "ALPHA", "KILO", "DELTA", "HOTEL", "BRAVO",
    "INDIA", "ECHO", "LIMA", "CHARLIE", "GOLF", "FOXTROT",
)  # fmt: skip


def test_worklist_sorts_across_pages(site: Site) -> None:
    """A sortable column sorts the whole search on the server (QIDO-RS `orderby=`), not the
    page shown: with 10 rows a page, page 2 continues page 1's order."""
    parts = [
        instance_bytes(
            generate_uid(), generate_uid(), generate_uid(), f"SORTED^{name}", 1,
            {"PatientID": f"SORT-{index:02}"},
        )
        for index, name in enumerate(SORT_NAMES)
    ]  # fmt: skip
    response = stow(site.server.dicomweb, parts, site.auth(), source="ClinicB")
    assert response.status_code == 200, response.text
    patient = "#results tbody tr td:first-child"
    done = "#results[data-state=done]"
    result = drive(
        site,
        [
            {
                "name": "admin-sorted",
                "steps": [
                    *sign_in("admin"),
                    {"wait": f"{done} table"},
                    {"fill": "form[role=search] input[name=name]", "value": "sorted"},
                    {"click": "form[role=search] button[type=submit]"},
                    {"waitText": ".pager span", "text": "1–12"},
                    {"select": ".pager select[name=size]", "value": "10"},
                    {"waitText": ".pager span", "text": "1–10"},
                    {"click": "#results th:first-child button"},
                    {"wait": f"{done} th[aria-sort=ascending]"},
                    {"texts": patient, "as": "page1"},
                    {"screenshot": "sorted"},
                    {"click": ".pager button:text('Next')"},
                    {"waitText": ".pager span", "text": "11–12"},
                    {"texts": patient, "as": "page2"},
                    # The other way: back to the first page, descending.
                    {"click": "#results th:first-child button"},
                    {"wait": f"{done} th[aria-sort=descending]"},
                    {"waitText": ".pager span", "text": "1–10"},
                    {"texts": patient, "as": "descending"},
                    # Columns the server cannot sort by offer no sort button.
                    {"count": "#results th button.sort", "as": "sort_buttons"},
                ],
            }
        ],
    )["admin-sorted"]
    assert result["error"] is None, result
    assert result["pageErrors"] == [], result["pageErrors"]
    expected = [f"SORTED {name}" for name in sorted(SORT_NAMES)]
    values = result["values"]
    assert values["page1"] + values["page2"] == expected
    assert values["descending"] == expected[::-1][:10]
    assert values["sort_buttons"] == 4  # Patient, Patient ID, Date, Accession


def test_worklist_order_status_filter(site: Site) -> None:
    """The worklist's order-status filter (QIDO-RS `orderstatus=`) and Order column: a study
    attached to an order shows its status and the order's values; others are filtered out."""
    body = {
        "accession_number": "ACC-WL-1",
        "patient_name": "ORDERED^OTTO",
        "patient_id": "MRN-WL-1",
        "source": "ClinicB",
    }
    created = HTTP.post(f"{site.api}/orders", json=body, headers=site.auth())
    assert created.status_code == 201, created.text
    order = created.json()
    part = instance_bytes(
        generate_uid(), generate_uid(), generate_uid(), "TYPED^BY^MODALITY", 1, {"PatientID": ""}
    )
    response = httpx.post(
        f"{site.server.dicomweb}/studies",
        params={"source": "ClinicB", "order": str(order["id"])},
        content=multipart_writer.body("b0undary", [part]),
        headers={
            **site.auth(),
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=b0undary',
            "Accept": "application/dicom+json",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    search = "form[role=search]"
    result = drive(
        site,
        [
            {
                "name": "admin-order-status",
                "steps": [
                    *sign_in("admin"),
                    {"select": f"{search} select[name=orderstatus]", "value": "IN_PROGRESS"},
                    {"click": f"{search} button[type=submit]"},
                    {"wait": "#results[data-state=done] tbody tr"},
                    {"texts": "#results tbody tr", "as": "in_progress"},
                    {"select": f"{search} select[name=orderstatus]", "value": "FINAL"},
                    {"click": f"{search} button[type=submit]"},
                    {"waitText": "main .status", "text": "No studies found"},
                ],
            }
        ],
    )["admin-order-status"]
    assert result["error"] is None, result
    rows = result["values"]["in_progress"]
    assert len(rows) == 1, rows
    assert "ORDERED OTTO" in rows[0] and "ACC-WL-1" in rows[0] and "IN_PROGRESS" in rows[0]


def test_peers_routing_templates_and_addenda_pages(site: Site) -> None:
    """The admin pages over {api}/peers, {api}/routes and {api}/report-templates, and an
    addendum to a signed report; the server's refusals shown as they come; a technologist
    sees the templates but no form, and none of the admin pages."""
    study = generate_uid()
    part = instance_bytes(study, generate_uid(), generate_uid(), "ADD^ENDUM", 1)
    assert stow(site.server.dicomweb, [part], site.auth(), source="ClinicB").status_code == 200
    report = _ok(
        HTTP.post(
            f"{site.api}/studies/{study}/reports",
            json={"sections": {"impression": "Normal."}},
            headers=site.auth(),
        )
    )
    _ok(
        HTTP.post(
            f"{site.api}/studies/{study}/reports/{report['id']}/sign",
            headers={**site.auth(), "If-Match": f'"{report["version"]}"'},
            timeout=60,
        )
    )
    template = json.dumps(
        {"title": "Thyroid US", "fields": [{"name": "impression", "type": "text"}]}
    )
    results = drive(
        site,
        [
            {
                "name": "admin-pages",
                "steps": [
                    *sign_in("admin"),
                    {"click": "a[data-page=peers]"},
                    {"waitText": "main", "text": "No DIMSE peers"},
                    {"click": "main details summary"},
                    {"fill": "#new-peer input[name=ae_title]", "value": "BAD\\AE"},
                    {"fill": "#new-peer input[name=host]", "value": "127.0.0.1"},
                    {"fill": "#new-peer input[name=port]", "value": "11112"},
                    {"click": "#new-peer button[type=submit]"},
                    {"wait": "#new-peer ~ .status.error"},
                    {"texts": "#new-peer ~ .status", "as": "bad_peer"},
                    {"fill": "#new-peer input[name=ae_title]", "value": "MODALITY1"},
                    {"select": "#new-peer select[name=upload_source]", "value": "ClinicB"},
                    {"click": "#new-peer button[type=submit]"},
                    {"waitText": "main tbody", "text": "MODALITY1"},
                    {"texts": "main tbody tr", "as": "peers"},
                    {"screenshot": "peers"},
                    {"click": "a[data-page=routing]"},
                    {"waitText": "main", "text": "No routing rules"},
                    {"click": "main details summary"},
                    {"fill": "#new-route input[name=name]", "value": "to-mammo"},
                    {"fill": "#new-route input[name=sources]", "value": "Nowhere"},
                    {"fill": "#new-route input[name=modalities]", "value": "MG"},
                    {"select": "#new-route select[name=kind]", "value": "dimse"},
                    {"fill": "#new-route input[name=ae_title]", "value": "MAMMO"},
                    {"fill": "#new-route input[name=host]", "value": "127.0.0.1"},
                    {"fill": "#new-route input[name=port]", "value": "1"},
                    {"click": "#new-route button[type=submit]"},
                    {"wait": "#new-route ~ .status.error"},
                    {"texts": "#new-route ~ .status", "as": "bad_route"},
                    {"fill": "#new-route input[name=sources]", "value": "ClinicB"},
                    {"click": "#new-route button[type=submit]"},
                    {"waitText": "main tbody", "text": "to-mammo"},
                    {"texts": "main tbody tr", "as": "routes"},
                    {"screenshot": "routing"},
                    {"click": "a[data-page=templates]"},
                    {"waitText": "main tbody", "text": "radiology"},
                    {"click": "main details summary"},
                    {"fill": "#new-template input[name=name]", "value": "thyroid-us"},
                    {
                        "fill": "#new-template textarea",
                        "value": '{"fields": [{"name": "x", "type": "weird"}]}',
                    },
                    {"click": "#new-template button[type=submit]"},
                    {"wait": "#new-template .status.error"},
                    {"texts": "#new-template .status", "as": "bad_template"},
                    {"fill": "#new-template textarea", "value": template},
                    {"click": "#new-template button[type=submit]"},
                    {"waitText": "main tbody", "text": "thyroid-us"},
                    {"texts": "main tbody tr", "as": "templates"},
                    {"screenshot": "templates"},
                    {"goto": f"/portal/#/study/{study}"},
                    {"wait": "#reports details summary"},
                    {"click": "#reports details summary"},
                    {"fill": "#reports form.addendum textarea", "value": "Compared with 2019."},
                    {"click": "#reports form.addendum button[type=submit]"},
                    {"waitText": "#reports", "text": "AMENDED"},
                    {"texts": "#reports tbody tr", "as": "reports"},
                    {"screenshot": "addendum"},
                ],
            },
            {
                "name": "tech-pages",
                "steps": [
                    *sign_in("tech"),
                    {"texts": "#nav a", "as": "nav"},
                    {"click": "a[data-page=templates]"},
                    {"waitText": "main tbody", "text": "radiology"},
                    {"count": "#new-template", "as": "template_forms"},
                    {"goto": "/portal/#/peers"},
                    {"wait": "#results"},
                    {"count": "#new-peer, #new-route", "as": "admin_forms"},
                ],
            },
        ],
    )
    admin = results["admin-pages"]
    assert admin["error"] is None, admin
    assert "AE title" in admin["values"]["bad_peer"][0], admin["values"]["bad_peer"]
    assert any("MODALITY1" in row and "ClinicB" in row for row in admin["values"]["peers"])
    assert "Nowhere" in admin["values"]["bad_route"][0], admin["values"]["bad_route"]
    [route] = admin["values"]["routes"]
    assert "MAMMO@127.0.0.1:1" in route and "ClinicB" in route and "MG" in route, route
    assert "fields.x.type" in admin["values"]["bad_template"][0], admin["values"]["bad_template"]
    assert any("thyroid-us" in row and "Thyroid US" in row for row in admin["values"]["templates"])
    assert any("AMENDED" in row for row in admin["values"]["reports"]), admin["values"]["reports"]
    # What the pages show is what the API holds.
    peer = _ok(HTTP.get(f"{site.api}/peers/MODALITY1", headers=site.auth()))
    assert peer["upload_source"] == "ClinicB" and peer["may_store"] and not peer["staged"]
    tech = results["tech-pages"]
    assert tech["error"] is None, tech
    assert labels(tech["values"]["nav"]) == ["Worklist", "Upload", "Orders", "Report templates"]
    assert tech["values"]["template_forms"] == 0 and tech["values"]["admin_forms"] == 0


def test_a_new_study_is_announced_on_the_worklist(site: Site) -> None:
    """{api}/changes/stream?after=latest in the page: a study completed while the user is
    signed in (an "upload later" session committed) is announced by a toast linking it and
    a badge on the Worklist link; nothing from before signing in is announced."""
    # Completed before signing in (an upload session committed over the API): not announced.
    before, before_files = _study_files(site.workdir / "before", "OLD^OSKAR", 1)
    opened = _ok(HTTP.post(f"{site.api}/upload-sessions", json={}, headers=site.auth()))
    parts = [Path(path).read_bytes() for path in before_files]
    root = f"{site.server.dicomweb}/upload-sessions/{opened['id']}"
    assert stow(root, parts, site.auth()).status_code == 200
    _ok(HTTP.post(f"{site.api}/upload-sessions/{opened['id']}/commit", headers=site.auth()))
    study, files = _study_files(site.workdir / "announced", "NEW^NORA", 2)
    result = drive(
        site,
        [
            {
                "name": "tech-notified",
                "steps": [
                    *sign_in("tech"),
                    *worklist_rows(),
                    {"click": "a[data-page=upload]"},
                    {"wait": "#upload"},
                    {"files": "#files", "paths": files},
                    {"click": "#upload input[name=later]"},
                    {"fill": "#upload input[name=description]", "value": "announce me"},
                    {"click": "#upload button[type=submit]"},
                    {"wait": "#sessions tr:has-text('announce me') button.commit"},
                    {"click": "#sessions tr:has-text('announce me') button.commit"},
                    {"wait": f".toast a[href='#/study/{study}']", "timeoutMs": 30000},
                    {"texts": ".toast", "as": "toasts"},
                    {"attr": ".toast a", "name": "href", "as": "toast_links"},
                    {"texts": "#new-studies", "as": "badge"},
                    {"screenshot": "announced"},
                    {"click": f".toast a[href='#/study/{study}']"},
                    {"wait": "#series figure"},
                    {"click": "a[data-page=worklist]"},
                    *worklist_rows(),
                    {"count": "#new-studies", "as": "badge_after"},
                ],
            }
        ],
    )["tech-notified"]
    assert result["error"] is None, result
    assert f"#/study/{before}" not in result["values"]["toast_links"]
    assert any("New study ready" in toast for toast in result["values"]["toasts"])
    assert result["values"]["badge"] and result["values"]["badge"][0].endswith("new")
    assert result["values"]["badge_after"] == 0  # seen on the worklist
    assert result["pageErrors"] == [], result["pageErrors"]


def test_orders_are_created_and_searched_in_the_page(site: Site) -> None:
    results = drive(
        site,
        [
            {
                "name": "tech-orders",
                "steps": [
                    *sign_in("tech"),
                    {"click": "a[data-page=orders]"},
                    {"wait": "#orders"},
                    {"click": "details summary"},
                    {"fill": "#new-order input[name=patient_name]", "value": "ORDERLY^OLGA"},
                    {"fill": "#new-order input[name=patient_id]", "value": "MRN-77"},
                    {"fill": "#new-order input[name=accession_number]", "value": "ACC-PORTAL-1"},
                    {"fill": "#new-order input[name=modality]", "value": "ct"},
                    {"fill": "#new-order input[name=start]", "value": "2026-12-02T09:30"},
                    {"click": "#new-order button[type=submit]"},
                    {"waitText": "#new-order .status", "text": "created"},
                    {"fill": "form[role=search] input[name=patient_name]", "value": "orderly"},
                    {"click": "form[role=search] button[type=submit]"},
                    # The filtered answer, not the list shown before it (other tests' orders).
                    {"wait": "#orders[data-state=done]"},
                    {"waitText": "#orders", "text": "ACC-PORTAL-1"},
                    {"texts": "#orders tbody tr", "as": "by_name"},
                    {"screenshot": "orders"},
                    {"click": "#orders button.cancel"},
                    {"waitText": "#orders tbody", "text": "CANCELLED"},
                    {"fill": "form[role=search] input[name=patient_name]", "value": ""},
                    {"fill": "form[role=search] input[name=patient_id]", "value": "NO-SUCH-MRN"},
                    {"click": "form[role=search] button[type=submit]"},
                    {"waitText": "main .status", "text": "No orders found"},
                ],
            },
            {
                "name": "ref_a-orders",
                "steps": [
                    *sign_in("ref_a"),
                    {"click": "a[data-page=orders]"},
                    {"wait": "#orders"},
                    {"count": "#new-order, #orders button.cancel", "as": "order_controls"},
                    {"texts": "#orders tbody tr", "as": "rows"},
                ],
            },
        ],
    )
    tech = results["tech-orders"]
    assert tech["error"] is None, tech
    assert len(tech["values"]["by_name"]) == 1
    assert "ORDERLY OLGA" in tech["values"]["by_name"][0]
    assert "SCHEDULED" in tech["values"]["by_name"][0]
    found = HTTP.get(
        f"{site.api}/orders", params={"accession_number": "ACC-PORTAL-1"}, headers=site.auth()
    ).json()
    assert found[0]["scheduled_procedure_steps"][0]["modality"] == "CT"
    assert found[0]["status"] == "CANCELLED"
    ref = results["ref_a-orders"]
    assert ref["error"] is None, ref
    assert ref["values"]["order_controls"] == 0
    # The order is of source `default`; ref_a is locked to ClinicA.
    assert not any("ACC-PORTAL-1" in row for row in ref["values"]["rows"])


def test_documents_and_reports_on_the_study_page(site: Site) -> None:
    note = site.workdir / "consent.txt"
    note.write_text("The patient consents.\n")
    study_page = f"/portal/#/study/{site.studies['a_study']}"
    results = drive(
        site,
        [
            {
                "name": "tech-study",
                "steps": [
                    *sign_in("tech"),
                    {"goto": study_page},
                    {"wait": "#series figure"},
                    {"count": "button.sign", "as": "sign_buttons"},
                    {"click": "#new-document >> xpath=.. >> summary"},
                    {"files": "#new-document input[name=file]", "paths": [str(note)]},
                    {"fill": "#new-document input[name=title]", "value": "Signed consent"},
                    {"fill": "#new-document input[name=source]", "value": "ClinicA"},
                    {"click": "#new-document button[type=submit]"},
                    {"waitText": "#documents", "text": "Signed consent"},
                    {"click": "#new-report >> xpath=.. >> summary"},
                    {"fill": "#new-report textarea[name=findings]", "value": "No nodule."},
                    {"fill": "#new-report textarea[name=impression]", "value": "Normal study."},
                    {"click": "#new-report button[type=submit]"},
                    {"waitText": "#reports", "text": "DRAFT"},
                    {"screenshot": "study"},
                ],
            },
            {
                "name": "read_a-sign",
                "steps": [
                    *sign_in("read_a"),
                    {"goto": study_page},
                    {"wait": "#reports button.sign"},
                    {"count": "#new-document", "as": "document_forms"},
                    {"click": "#reports button.sign"},
                    {"waitText": "#reports", "text": "FINAL"},
                ],
            },
            {
                "name": "ref_a-study",
                "steps": [
                    *sign_in("ref_a"),
                    {"goto": study_page},
                    {"waitText": "#reports", "text": "FINAL"},
                    {"waitText": "#documents", "text": "Signed consent"},
                    {"texts": "#documents tbody tr", "as": "documents"},
                    {"texts": "#reports tbody tr", "as": "reports"},
                    {"count": "#new-document, #new-report, button.sign", "as": "controls"},
                    {"screenshot": "study"},
                    # The PDF is fetched with the token and offered as a file.
                    {"click": "#documents tbody tr:first-child button"},
                    {"wait": "#documents a[download]"},
                ],
            },
        ],
    )
    tech = results["tech-study"]
    assert tech["error"] is None, tech
    assert tech["values"]["sign_buttons"] == 0  # a technologist drafts, never signs
    reader = results["read_a-sign"]
    assert reader["error"] is None, reader
    assert reader["values"]["document_forms"] == 0
    ref = results["ref_a-study"]
    assert ref["error"] is None, ref
    assert any("Signed consent" in row and "PDF" in row for row in ref["values"]["documents"])
    assert any("FINAL" in row and "read_a" in row for row in ref["values"]["reports"])
    assert ref["values"]["controls"] == 0
    assert ref["pageErrors"] == []


def test_a_report_written_from_a_template(site: Site) -> None:
    """A reading physician picks a template on the study page: its fields are laid out (a
    number with its unit, a choice), a value out of range gets the server's 400 naming the
    field, then the draft is saved with the template's values, edited, and signed."""
    study = generate_uid()
    part = instance_bytes(study, generate_uid(), generate_uid(), "ECHO^EMMA", 1)
    assert stow(site.server.dicomweb, [part], site.auth(), source="ClinicA").status_code == 200
    form = "#new-report"
    result = drive(
        site,
        [
            {
                "name": "read_a-template",
                "steps": [
                    *sign_in("read_a"),
                    {"goto": f"/portal/#/study/{study}"},
                    {"wait": "#series figure"},
                    {"click": f"{form} >> xpath=.. >> summary"},
                    {"select": f"{form} select[name=template]", "value": "pediatric-echo"},
                    {"wait": f"{form} input[name=lv_ejection_fraction]"},
                    {"texts": f"{form} label", "as": "labels"},
                    {"fill": f"{form} input[name=lv_ejection_fraction]", "value": "150"},
                    {"select": f"{form} select[name=cardiac_situs]", "value": "solitus"},
                    {"click": f"{form} button[type=submit]"},
                    {"waitText": f"{form} .status", "text": "lv_ejection_fraction"},
                    {"texts": f"{form} .status", "as": "refused"},
                    {"fill": f"{form} input[name=lv_ejection_fraction]", "value": "64"},
                    {"fill": f"{form} input[name=heart_rate]", "value": "110"},
                    {"fill": f"{form} textarea[name=impression]", "value": "Normal heart."},
                    {"click": f"{form} button[type=submit]"},
                    {"waitText": "#reports", "text": "DRAFT"},
                    {"screenshot": "template-report"},
                    # Edit the draft: the template's fields come filled with its values, so
                    # changing one keeps the others (the values asserted below).
                    {"click": "#reports details.edit summary"},
                    {"wait": "#reports form.edit-report input[name=heart_rate]"},
                    {"fill": "#reports form.edit-report input[name=heart_rate]", "value": "112"},
                    {"click": "#reports form.edit-report button[type=submit]"},
                    {"waitText": "#reports tbody", "text": "112"},
                    {"click": "#reports button.sign"},
                    {"waitText": "#reports", "text": "FINAL"},
                    {"texts": "#reports tbody tr", "as": "reports"},
                ],
            }
        ],
    )["read_a-template"]
    assert result["error"] is None, result
    # The one refused request (the browser logs it) is the out-of-range value.
    assert [e for e in result["pageErrors"] if "status of 400" not in e] == []
    assert [r["status"] for r in result["failedRequests"]] == [400]
    assert "LV ejection fraction (%) *" in result["values"]["labels"]
    assert "Cardiac situs *" in result["values"]["labels"]
    assert any("lv_ejection_fraction" in text for text in result["values"]["refused"])
    [report] = HTTP.get(f"{site.api}/studies/{study}/reports", headers=site.auth()).json()
    assert report["template"] == "pediatric-echo" and report["status"] == "FINAL"
    assert report["signed_by"] == "read_a"
    values = report["content"]["values"]
    assert values == {
        "lv_ejection_fraction": 64,
        "heart_rate": 112,
        "cardiac_situs": "solitus",
        "impression": "Normal heart.",
    }


def test_an_admin_changes_a_users_role_and_sources(site: Site) -> None:
    """My Team's Edit: role and source lists changed with PATCH {api}/users/{name}; the
    server still refuses the same change from a technologist."""
    body = {"username": "edit_me", "role": "technologist", "password": PASSWORD}
    _ok(HTTP.post(f"{site.api}/users", json=body, headers=site.auth()))
    row = "#users tbody tr:has(td:text-is('edit_me'))"
    result = drive(
        site,
        [
            {
                "name": "admin-team-edit",
                "steps": [
                    *sign_in("admin"),
                    {"click": "a[data-page=team]"},
                    {"wait": row},
                    {"click": f"{row} details.edit summary"},
                    {
                        "select": f"{row} form.edit-user select[name=role]",
                        "value": "reading_physician",
                    },
                    {"click": f"{row} form.edit-user input[name=sources][value=ClinicA]"},
                    {"click": f"{row} form.edit-user input[name=upload_sources][value=ClinicB]"},
                    {"screenshot": "team-edit"},
                    {"click": f"{row} form.edit-user button[type=submit]"},
                    {"waitText": "#users .status", "text": "edit_me changed"},
                    {"texts": row, "as": "row"},
                ],
            }
        ],
    )["admin-team-edit"]
    assert result["error"] is None, result
    assert result["pageErrors"] == [], result["pageErrors"]
    [shown] = result["values"]["row"]
    assert "reading_physician" in shown and "ClinicA" in shown and "ClinicB" in shown, shown
    user = HTTP.get(f"{site.api}/users/edit_me", headers=site.auth()).json()
    assert user["role"] == "reading_physician"
    assert user["sources"] == ["ClinicA"] and user["upload_sources"] == ["ClinicB"]
    # The server enforces it: a technologist's PATCH is refused and changes nothing.
    refused = HTTP.patch(
        f"{site.api}/users/edit_me",
        json={"role": "admin", "sources": []},
        auth=("tech", PASSWORD),
    )
    assert refused.status_code == 403, refused.text
    after = HTTP.get(f"{site.api}/users/edit_me", headers=site.auth()).json()
    assert after["role"] == "reading_physician" and after["sources"] == ["ClinicA"]


def test_a_tenant_signs_in_at_its_own_root(site: Site) -> None:
    _ok(
        HTTP.post(
            f"{site.api}/tenants",
            json={"name": "acme", "admin": {"username": "acme_admin", "password": PASSWORD}},
            headers=site.auth(),
        )
    )
    study, series = generate_uid(), generate_uid()
    part = instance_bytes(study, series, generate_uid(), "ACME^ONLY", 1, {"PatientID": "acme"})
    login = _ok(
        HTTP.post(
            f"{site.server.base_url}/t/acme/api/v1/login",
            json={"username": "acme_admin", "password": PASSWORD},
        )
    )
    response = stow(
        f"{site.server.base_url}/t/acme/dicomweb",
        [part],
        {"Authorization": f"Bearer {login['access_token']}"},
    )
    assert response.status_code == 200, response.text
    results = drive(
        site,
        [
            {
                "name": "acme",
                "steps": [
                    {"goto": "/portal/?tenant=acme"},
                    {"wait": "#login"},
                    {"storage": "tessera.portal", "as": "before"},
                    *sign_in("acme_admin")[2:],
                    *worklist_rows(),
                    {"texts": "#username", "as": "who"},
                ],
            },
            {
                # The default tenant's admin cannot sign in to acme.
                "name": "admin-at-acme",
                "steps": [
                    {"goto": "/portal/?tenant=acme"},
                    *sign_in("admin")[1:-1],
                    {"waitText": "#login .status", "text": "Wrong"},
                ],
            },
        ],
    )
    acme = results["acme"]
    assert acme["error"] is None, acme
    assert acme["values"]["rows"] == [next(r for r in acme["values"]["rows"] if "ACME ONLY" in r)]
    assert acme["values"]["who"] == ["acme_admin (acme)"]
    assert acme["values"]["before"] is None  # nothing kept before signing in
    assert results["admin-at-acme"]["error"] is None, results["admin-at-acme"]


def test_the_portal_files_are_public_and_hold_no_data(site: Site) -> None:
    base = site.server.base_url
    page = HTTP.get(f"{base}/portal/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = HTTP.get(f"{base}/portal/worklist.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    # No viewer configured: no viewer link.
    assert HTTP.get(f"{base}/portal/config.json").json() == {"viewer": None, "anonymous": False}
    redirect = HTTP.get(f"{base}/portal?tenant=acme")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/portal/?tenant=acme"
    assert HTTP.get(f"{base}/portal/no-such.js").status_code == 404
    for sneaky in ("/portal/%2E%2E/%2E%2E/__init__.py", "/portal/..%2F__init__.py"):
        response = HTTP.get(base + sneaky)
        assert "PORTAL_PATH" not in response.text
    # Only GET and HEAD: the portal itself takes no input.
    assert HTTP.post(f"{base}/portal/index.html").status_code in (401, 405)
    # The data behind the pages still needs credentials.
    assert HTTP.get(f"{site.server.dicomweb}/studies").status_code == 401


def test_the_loopback_quick_start_needs_no_sign_in(browser: None, tmp_path: Path) -> None:
    """Where the server serves anonymous requests (loopback, no TESSERA_ANONYMOUS=off) the
    portal opens on the worklist, as any anonymous script would see it."""
    # A stand-in for the prebuilt OHIF (the real one: conformance/test_ohif.py): the portal
    # links each study to it.
    dist = tmp_path / "ohif" / "dist"
    dist.mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>viewer</title>")
    (dist / "app-config.js").write_text("window.config = {};")
    server = ServerProcess(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        env_extra={"TESSERA_WORKERS": "1"},
        extra_args=["--viewer", str(dist)],
    )
    server.start(timeout=120)
    try:
        study, series = generate_uid(), generate_uid()
        part = instance_bytes(study, series, generate_uid(), "OPEN^OSCAR", 1)
        assert stow(server.dicomweb, [part], {}).status_code == 200
        quick = Site(server, "", {}, tmp_path)
        result = drive(
            quick,
            [
                {
                    "name": "anonymous",
                    "steps": [
                        {"goto": "/portal/"},
                        *worklist_rows(),
                        {"texts": "#who", "as": "who"},
                        {"count": "#signin", "as": "sign_in_links"},
                        {"texts": "#nav a", "as": "nav"},
                        {"attr": "#results a.viewer", "name": "href", "as": "viewer_links"},
                    ],
                }
            ],
        )["anonymous"]
    finally:
        server.stop()
    assert result["error"] is None, result
    assert len(result["values"]["rows"]) == 1 and "OPEN OSCAR" in result["values"]["rows"][0]
    assert result["values"]["sign_in_links"] == 1
    assert "Upload" in result["values"]["nav"] and "My Team" in result["values"]["nav"]
    # Anonymous: no token to hand over.
    assert result["values"]["viewer_links"] == [f"/viewer/viewer?StudyInstanceUIDs={study}"]


def test_a_webhooks_deliveries_turned_off_and_removed(site: Site) -> None:
    """The webhooks page lists a subscription's deliveries (here to a port nobody listens on:
    pending, with the error), sends one again, turns the subscription off, and removes it;
    each action is the API's."""
    auth = site.auth()
    url = f"http://127.0.0.1:{free_port()}/hook"
    hook = _ok(HTTP.post(f"{site.api}/webhooks", json={"url": url}, headers=auth))
    part = instance_bytes(generate_uid(), generate_uid(), generate_uid(), "HOOK^ED", 1)
    assert stow(site.server.dicomweb, [part], auth, source="ClinicA").status_code == 200
    listed = f"{site.api}/webhooks/{hook['id']}/deliveries"
    deadline = time.time() + 60
    while True:
        tried = [d for d in _ok(HTTP.get(listed, headers=auth)) if d["attempts"]]
        if tried:
            break
        assert time.time() < deadline, "no delivery was attempted"
        time.sleep(0.2)
    table = "#webhook-deliveries tbody tr"
    result = drive(
        site,
        [
            {
                "name": "hooks",
                "steps": [
                    *sign_in("admin"),
                    {"click": "a[data-page=webhooks]"},
                    {"click": f"button.deliveries[data-webhook='{hook['id']}']"},
                    {"wait": table},
                    {"texts": table, "as": "rows"},
                    {"screenshot": "webhook-deliveries"},
                    {"click": "#webhook-deliveries button.replay"},
                    {"wait": "#webhook-deliveries-message.ok"},
                    {"texts": "#webhook-deliveries-message", "as": "replayed"},
                    {"click": "button.toggle"},
                    {"waitText": "main table", "text": "disabled"},
                ],
            }
        ],
    )["hooks"]
    assert result["error"] is None, result
    # Each row shows the API's delivery: its event, status and error.
    shown = " ".join(result["values"]["rows"])
    assert tried[0]["type"] in shown and "pending" in shown and tried[0]["last_error"] in shown
    assert "queued to be sent again" in result["values"]["replayed"][0]
    assert _ok(HTTP.get(f"{site.api}/webhooks/{hook['id']}", headers=auth))["enabled"] is False
    removed = drive(
        site,
        [
            {
                "name": "remove",
                "steps": [
                    *sign_in("admin"),
                    {"click": "a[data-page=webhooks]"},
                    {"wait": "button.delete"},
                    {"click": "button.delete"},
                    {"waitText": "main", "text": "No webhooks"},
                ],
            }
        ],
    )["remove"]
    assert removed["error"] is None, removed
    assert HTTP.get(f"{site.api}/webhooks/{hook['id']}", headers=auth).status_code == 404


def _route_to_itself(site: Site, name: str, conditions: dict) -> None:
    """A routing rule whose destination is the archive itself (an identical instance stored
    again is an idempotent success)."""
    destination = {
        "kind": "dicomweb",
        "url": site.server.dicomweb,
        "authorization": site.auth()["Authorization"],
    }
    body = {"name": name, "conditions": conditions, "destination": destination}
    _ok(HTTP.post(f"{site.api}/routes", json=body, headers=site.auth()))


def test_a_rules_deliveries_are_paged(site: Site) -> None:
    """The deliveries page shows a page of rows, newest first; Older continues after the last
    row shown (the API's `before`), Newer goes back, and the two pages hold every delivery."""
    auth = site.auth()
    _ok(HTTP.post(f"{site.api}/sources", json={"name": "Paging"}, headers=auth))
    _route_to_itself(site, "paged", {"sources": ["Paging"]})
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(12)]
    parts = [instance_bytes(study, series, sop, "PAGED^ROWS", n) for n, sop in enumerate(sops)]
    assert stow(site.server.dicomweb, parts, auth, source="Paging").status_code == 200
    listed = f"{site.api}/routes/paged/deliveries"
    deadline = time.time() + 60
    while True:
        found = _ok(HTTP.get(listed, headers=auth))
        if len(found) == 12 and all(d["status"] == "delivered" for d in found):
            break
        assert time.time() < deadline, found
        time.sleep(0.2)
    rows = "#deliveries tbody tr"
    paged = drive(
        site,
        [
            {
                "name": "pages",
                "steps": [
                    *sign_in("admin"),
                    {"click": "a[data-page=routing]"},
                    {"click": "button.deliveries[data-rule=paged]"},
                    {"wait": rows},
                    {"select": "#deliveries select[name=size]", "value": "10"},
                    {"wait": "#deliveries button.older:not([disabled])"},
                    {"texts": rows, "as": "first"},
                    {"click": "#deliveries button.older"},
                    {"wait": "#deliveries button.newer:not([disabled])"},
                    {"texts": rows, "as": "second"},
                    {"count": "#deliveries button.older:not([disabled])", "as": "more"},
                    {"screenshot": "deliveries-paged"},
                    {"click": "#deliveries button.newer"},
                    {"wait": "#deliveries button.newer[disabled]"},
                    {"texts": rows, "as": "again"},
                ],
            }
        ],
    )["pages"]
    assert paged["error"] is None, paged
    first, second = paged["values"]["first"], paged["values"]["second"]
    assert len(first) == 10 and len(second) == 2 and paged["values"]["more"] == 0
    assert paged["values"]["again"] == first
    # The pages, one after the other, are the API's list (newest first), every delivery once.
    shown = [next(sop for sop in sops if sop in row) for row in first + second]
    assert shown == [d["sop_instance_uid"] for d in found], shown
    assert HTTP.delete(f"{site.api}/routes/paged", headers=auth).status_code == 204


def test_values_are_shown_as_text_never_as_markup(site: Site) -> None:
    """A patient name holding HTML is shown as those characters: no element is made of it
    (and the CSP would refuse an inline handler anyway)."""
    # ('=' would start another component group of the name.)
    evil = "ZZ<b>BOLD</b><img src onerror>"
    study, series = generate_uid(), generate_uid()
    part = instance_bytes(study, series, generate_uid(), f"{evil}^EVIL", 1, {"PatientID": "xss"})
    assert stow(site.server.dicomweb, [part], site.auth()).status_code == 200
    result = drive(
        site,
        [
            {
                "name": "markup",
                "steps": [
                    *sign_in("admin"),
                    {"fill": "form[role=search] input[name=id]", "value": "xss"},
                    {"click": "form[role=search] button[type=submit]"},
                    {"wait": "#results[data-state=done] tbody tr"},
                    {"texts": "#results tbody tr td:first-child", "as": "names"},
                    {"count": "#results b, #results img", "as": "images"},
                    {"goto": f"/portal/#/study/{study}"},
                    {"wait": "#series figure"},
                    {"texts": "dl.facts dd:first-of-type", "as": "patient"},
                    {"count": "dl.facts b, dl.facts img", "as": "study_images"},
                ],
            }
        ],
    )["markup"]
    assert result["error"] is None, result
    assert result["values"]["names"] == [f"{evil} EVIL"]
    assert result["values"]["patient"] == [f"{evil} EVIL"]
    assert result["values"]["images"] == 0 and result["values"]["study_images"] == 0
    assert not [e for e in result["pageErrors"] if "favicon" not in e], result["pageErrors"]


def test_the_viewer_opened_from_the_portal_reads_as_the_user(browser: None, tmp_path: Path) -> None:
    """The real OHIF (conformance/ohif/install.sh), credentials required: "Open in viewer"
    mints a read-only viewer token and hands it to OHIF (never the login token), every
    DICOMweb request of the viewer carries it, and the token leaves the address bar."""
    if shutil.which("npm") is None:
        pytest.skip("npm is needed to install OHIF (conformance/ohif/install.sh)")
    done = subprocess.run(
        ["bash", str(PLAYWRIGHT_DIR / "install.sh")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    dist = done.stdout.strip().splitlines()[-1]
    server = ServerProcess(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'index.sqlite3'}",
        env_extra={"TESSERA_ANONYMOUS": "off", "TESSERA_WORKERS": "1"},
        extra_args=["--viewer", dist],
    )
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    server.start(timeout=120)
    try:
        auth = {"Authorization": f"Bearer {boot['api_key']}"}
        study, series = generate_uid(), generate_uid()
        parts = [instance_bytes(study, series, generate_uid(), "VIEW^VERA", n) for n in (1, 2)]
        assert stow(server.dicomweb, parts, auth).status_code == 200
        result = drive(
            Site(server, boot["api_key"], {}, tmp_path),
            [
                {
                    "name": "viewer",
                    "steps": [
                        *sign_in("admin"),
                        *worklist_rows(),
                        {"click": "#results a.viewer"},
                        {"wait": "canvas.cornerstone-canvas", "timeoutMs": 90000},
                        {"url": True, "as": "address"},
                        {"screenshot": "ohif"},
                    ],
                }
            ],
        )["viewer"]
    finally:
        server.stop()
    assert result["error"] is None, result
    assert "StudyInstanceUIDs=" in result["values"]["address"]
    assert "token=" not in result["values"]["address"]
    refused = [r for r in result["failedRequests"] if "/dicomweb/" in r["url"]]
    assert refused == [], refused
    assert result["viewerTokens"] == ["tsv_"], result["viewerTokens"]


def test_source_descriptions_route_deliveries_and_editing_a_draft(site: Site) -> None:
    """A source's description on the study page and in the upload form's source choice; a
    routing rule's per-instance deliveries and "Send again" of a delivered one; a draft
    report edited in the page (a new version through PUT), and no Edit on a signed one."""
    auth = site.auth()
    description = "Alpha clinic, CT and MR"
    _ok(HTTP.patch(f"{site.api}/sources/ClinicA", json={"description": description}, headers=auth))
    # CT: not the SR and PDF that signing stores into the study.
    _route_to_itself(site, "loop", {"sources": ["ClinicA"], "modalities": ["CT"]})
    study, sop = generate_uid(), generate_uid()
    part = instance_bytes(study, generate_uid(), sop, "EDIT^DRAFT", 1)
    assert stow(site.server.dicomweb, [part], auth, source="ClinicA").status_code == 200

    def delivered(attempts: int) -> dict:
        deadline = time.time() + 60
        while True:
            found = _ok(HTTP.get(f"{site.api}/routes/loop/deliveries", headers=auth))
            if found and found[0]["status"] == "delivered" and found[0]["attempts"] == attempts:
                return found[0]
            assert time.time() < deadline, found
            time.sleep(0.2)

    first = delivered(1)
    assert first["sop_instance_uid"] == sop
    reports = f"{site.api}/studies/{study}/reports"
    draft = _ok(HTTP.post(reports, json={"sections": {"findings": "Pending."}}, headers=auth))
    signed = _ok(HTTP.post(reports, json={"sections": {"impression": "Normal."}}, headers=auth))
    signed = _ok(
        HTTP.post(
            f"{reports}/{signed['id']}/sign",
            headers={**auth, "If-Match": f'"{signed["version"]}"'},
        )
    )
    results = drive(
        site,
        [
            {
                "name": "read_a-edit",
                "steps": [
                    *sign_in("read_a"),
                    {"goto": f"/portal/#/study/{study}"},
                    {"waitText": "#study-sources", "text": description},
                    {"texts": "#study-sources", "as": "sources"},
                    {"wait": "#reports details.edit summary"},
                    {"count": "#reports details.edit", "as": "edit_forms"},
                    {"click": "#reports details.edit summary"},
                    {"fill": "#reports form.edit-report textarea[name=findings]", "value": ""},
                    {
                        "fill": "#reports form.edit-report textarea[name=impression]",
                        "value": "Stable.",
                    },
                    {"click": "#reports form.edit-report button[type=submit]"},
                    {"waitText": "#reports tbody", "text": "Stable."},
                    {"click": "#reports details.edit summary"},
                    {
                        "fill": "#reports form.edit-report textarea[name=findings]",
                        "value": "A 4 mm nodule.",
                    },
                    {"click": "#reports form.edit-report button[type=submit]"},
                    {"waitText": "#reports tbody", "text": "A 4 mm nodule."},
                    {"texts": "#reports tbody tr", "as": "reports"},
                    {"count": "#reports details.edit", "as": "edit_forms_after"},
                    {"screenshot": "report-edit"},
                ],
            },
            {
                "name": "admin-deliveries",
                "steps": [
                    *sign_in("admin"),
                    {"click": "a[data-page=team]"},
                    {"click": "form.describe-source[data-source=ClinicB] >> xpath=.. >> summary"},
                    {
                        "fill": "form.describe-source[data-source=ClinicB] input",
                        "value": "Bravo clinic, mammography",
                    },
                    {"click": "form.describe-source[data-source=ClinicB] button[type=submit]"},
                    {"waitText": "#sources tbody", "text": "Bravo clinic, mammography"},
                    {"click": "a[data-page=routing]"},
                    {"click": "button.deliveries[data-rule=loop]"},
                    {"wait": "#deliveries tbody tr"},
                    {"texts": "#deliveries tbody tr", "as": "before"},
                    {"click": "#deliveries button.resend"},
                    {"wait": "#deliveries-message.ok"},
                    {"texts": "#deliveries-message", "as": "message"},
                    {"texts": "#deliveries tbody tr", "as": "after"},
                    {"screenshot": "deliveries"},
                    {"click": "#deliveries button.resend-study"},
                    {"waitText": "#deliveries-message", "text": "of the study"},
                    {"texts": "#deliveries-message", "as": "study_message"},
                ],
            },
            {
                "name": "tech-upload-sources",
                "steps": [
                    *sign_in("tech"),
                    {"click": "a[data-page=upload]"},
                    {"wait": "#upload input[name=source]"},
                    {"attr": "#upload datalist option", "name": "label", "as": "labels"},
                ],
            },
        ],
    )
    reader = results["read_a-edit"]
    assert reader["error"] is None, reader
    assert reader["values"]["sources"] == [f"ClinicA: {description}"]
    assert reader["values"]["edit_forms"] == 1  # the draft only: the signed one is amended
    assert reader["values"]["edit_forms_after"] == 1
    assert any("A 4 mm nodule." in row and "DRAFT" in row for row in reader["values"]["reports"])
    # What the page did is what the API holds: two new versions of the draft, through PUT.
    stored = _ok(HTTP.get(f"{reports}/{draft['id']}", headers=auth))
    assert stored["version"] == draft["version"] + 2 and stored["status"] == "DRAFT"
    assert stored["content"]["sections"] == {"findings": "A 4 mm nodule.", "impression": "Stable."}
    assert _ok(HTTP.get(f"{reports}/{signed['id']}", headers=auth))["version"] == signed["version"]
    # The server refuses editing a signed report whatever the page shows.
    refused = HTTP.put(
        f"{reports}/{signed['id']}",
        json={"sections": {"impression": "Changed."}},
        headers={**auth, "If-Match": f'"{signed["version"]}"'},
    )
    assert refused.status_code == 409, refused.text

    admin = results["admin-deliveries"]
    assert admin["error"] is None, admin
    [before] = admin["values"]["before"]
    assert sop in before and "delivered" in before and site.server.dicomweb in before, before
    assert sop in admin["values"]["message"][0]
    assert admin["values"]["study_message"][0].startswith("1 instances"), admin["values"]
    described = {
        s["name"]: s["description"] for s in _ok(HTTP.get(f"{site.api}/sources", headers=auth))
    }
    assert described["ClinicB"] == "Bravo clinic, mammography"
    assert delivered(1)["delivered_at"] > first["delivered_at"]  # sent again, attempts anew

    tech = results["tech-upload-sources"]
    assert tech["error"] is None, tech
    assert f"ClinicA: {description}" in tech["values"]["labels"], tech["values"]
    assert HTTP.delete(f"{site.api}/routes/loop", headers=auth).status_code == 204
