"""A source's description where the portal shows sources: `GET {api}/me`
(`source_descriptions`: the sources the caller sees and uploads as) and `GET
{api}/studies/{uid}/sources` (the sources of a study's instances the caller sees). A
source-locked user learns nothing of another source (not even its name), another tenant
nothing of this one."""

from __future__ import annotations

from collections import defaultdict

import httpx
import pytest

from tests.security_world import World
from tests.world import DATABASES, served_world

DESCRIPTIONS = {"ClinicA": "Alpha clinic, CT and MR", "ClinicB": "Bravo clinic, mammography"}


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_world(request.param, tmp_path_factory, "source-descriptions") as built:
        for name, text in DESCRIPTIONS.items():
            changed = httpx.patch(
                f"{built.api()}/sources/{name}",
                json={"description": text},
                headers=built.auth("admin"),
                timeout=30,
            )
            assert changed.status_code == 200, changed.text
        yield built


def _get(world: World, user: str, path: str, tenant: str = "default") -> httpx.Response:
    return httpx.get(f"{world.api(tenant)}{path}", headers=world.auth(user), timeout=30)


def _studies(world: World) -> dict[str, set[str]]:
    """Study Instance UID -> the sources of its instances."""
    found: dict[str, set[str]] = defaultdict(set)
    for obj in world.objects:
        found[obj.study].add(obj.source)
    return found


def test_me_describes_only_the_callers_sources(world: World) -> None:
    def described(user: str) -> dict[str, str]:
        answer = _get(world, user, "/me")
        assert answer.status_code == 200, answer.text
        return answer.json()["source_descriptions"]

    assert {k: v for k, v in described("admin").items() if k in DESCRIPTIONS} == DESCRIPTIONS
    assert described("ref_a") == {"ClinicA": DESCRIPTIONS["ClinicA"]}
    assert described("read_b") == {"ClinicB": DESCRIPTIONS["ClinicB"]}
    assert described("tech") == {"ClinicA": DESCRIPTIONS["ClinicA"]}
    acme = _get(world, "acme_admin", "/me", "acme").json()
    assert not set(acme["source_descriptions"].values()) & set(DESCRIPTIONS.values())


def test_a_studys_sources_as_the_caller_sees_them(world: World) -> None:
    studies = _studies(world)
    mixed = next(uid for uid, sources in studies.items() if sources == {"ClinicA", "ClinicB"})
    only_b = next(uid for uid, sources in studies.items() if sources == {"ClinicB"})
    path = f"/studies/{mixed}/sources"
    answer = _get(world, "admin", path)
    assert answer.status_code == 200, answer.text
    assert answer.json() == [{"name": n, "description": d} for n, d in DESCRIPTIONS.items()]
    # A locked user sees only its own source of a mixed study, and a study of hidden
    # sources only is "no such study", as one that does not exist.
    assert _get(world, "ref_a", path).json() == [
        {"name": "ClinicA", "description": DESCRIPTIONS["ClinicA"]}
    ]
    assert _get(world, "read_b", path).json() == [
        {"name": "ClinicB", "description": DESCRIPTIONS["ClinicB"]}
    ]
    hidden = _get(world, "ref_a", f"/studies/{only_b}/sources")
    missing = _get(world, "ref_a", "/studies/1.2.3.4.5.404/sources")
    assert hidden.status_code == missing.status_code == 404
    assert only_b not in hidden.text.replace(f"no study {only_b}", "")
    # The other tenant holds the same UIDs with its own content: never this tenant's sources.
    other = _get(world, "acme_admin", path, "acme")
    assert other.status_code in (200, 404), other.text
    assert "Clinic" not in other.text
    assert _get(world, "acme_admin", path).status_code == 401
    assert _get(world, "nobody", path).status_code == 403
