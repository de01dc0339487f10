"""Links between identities over real HTTP: candidates from demographics, link / unlink with
history and audit (unlink restores exactly the previous state), permissions, source lock and
tenants (docs/identity.md)."""

from __future__ import annotations

import pytest

from tests.conftest import index_rows
from tests.identity_world import IdentityWorld, build_identity_world


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.conftest import PG_URL, create_pg_database, drop_pg_database

    data_dir = tmp_path_factory.mktemp("identity") / "data"
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


def _groups(world: IdentityWorld) -> list[tuple]:
    rows = index_rows(world.server.database_url, "SELECT id, person_pk FROM patient ORDER BY id")
    return [tuple(r) for r in rows]


def _linked(body: dict) -> list[int]:
    return sorted(item["id"] for item in body["linked"])


def test_candidates_from_demographics(world: IdentityWorld) -> None:
    ed, center, twin, hidden = (world.ids[k] for k in ("ed", "center", "twin", "hidden"))
    answer = world.get("registrar", f"/patients/{ed}/candidates")
    assert answer.status_code == 200, answer.text
    proposals = {p["identity"]["id"]: p for p in answer.json()}
    # Same normalized name, birth date and sex: proposed with the full demographic score.
    assert proposals[center]["score"] == 0.8 and proposals[center]["conflicts"] == []
    assert proposals[center]["reasons"] == ["patient_name", "patient_birth_date", "patient_sex"]
    assert proposals[center]["identity"]["issuer_of_patient_id"] == "SPECIALTY-CTR"
    assert hidden in proposals
    # The twin's birth date disagrees: never proposed from demographics.
    assert twin not in proposals
    # Nothing was linked by proposing.
    assert all(person is None for _, person in _groups(world))


def test_link_and_unlink_restore_the_previous_state(world: IdentityWorld) -> None:
    ed, center, twin = world.ids["ed"], world.ids["center"], world.ids["twin"]
    before = _groups(world)
    linked = world.post(
        "registrar", f"/patients/{ed}/links", {"identity": center, "reason": "ED transfer"}
    )
    assert linked.status_code == 201, linked.text
    assert _linked(linked.json()) == [center] and linked.json()["person"] == min(ed, center)
    chained = world.post("admin", f"/patients/{center}/links", {"identity": twin})
    assert chained.status_code == 201 and _linked(chained.json()) == sorted([ed, twin])
    groups = dict(_groups(world))
    assert groups[ed] == groups[center] == groups[twin] == min(ed, center, twin)

    # Repeats, self links, unknown and malformed ids: clear errors, nothing changed.
    during = _groups(world)
    for body, status in (
        ({"identity": center}, 409),
        ({"identity": ed}, 400),
        ({"identity": 999999}, 404),
        ({"identity": "x"}, 400),
        ({}, 400),
    ):
        answer = world.post("registrar", f"/patients/{ed}/links", body)
        assert answer.status_code == status, (body, answer.text)
    assert world.post("registrar", "/patients/abc/links", {"identity": ed}).status_code == 400
    assert world.delete("registrar", f"/patients/{ed}/links/{twin}").status_code == 404
    assert _groups(world) == during

    # Unlinking the middle link splits the person; unlinking the rest restores the start.
    split = world.delete("registrar", f"/patients/{center}/links/{ed}?reason=wrong+child")
    assert split.status_code == 200 and _linked(split.json()) == [twin]
    assert dict(_groups(world))[ed] is None
    assert world.delete("registrar", f"/patients/{twin}/links/{center}").status_code == 200
    assert _groups(world) == before

    history = world.get("registrar", f"/patients/{center}/history").json()
    assert [(e["action"], e["principal"].split(" ")[0]) for e in history] == [
        ("unlink", "registrar"),
        ("unlink", "registrar"),
        ("link", "admin"),
        ("link", "registrar"),
    ]
    assert history[1]["reason"] == "wrong child" and history[3]["reason"] == "ED transfer"
    audit = world.get("admin", "/audit?action=identity.*").json()
    assert sorted(e["action"] for e in audit) == ["identity.link"] * 2 + ["identity.unlink"] * 2


def test_permissions_and_tenants(world: IdentityWorld) -> None:
    ed, center = world.ids["ed"], world.ids["center"]
    # Without the identity permission: 403, and nothing linked.
    assert world.get("reader", f"/patients/{ed}").status_code == 403
    assert world.post("reader", f"/patients/{ed}/links", {"identity": center}).status_code == 403
    # Another tenant's identity cannot be named, from either side.
    acme = world.ids["acme"]
    assert world.post("admin", f"/patients/{ed}/links", {"identity": acme}).status_code == 404
    assert world.get("admin", f"/patients/{acme}").status_code == 404
    answer = world.post("acme_admin", f"/patients/{acme}/links", {"identity": ed}, tenant="acme")
    assert answer.status_code == 404
    # This tenant's credentials are refused on the other tenant's root.
    assert world.get("admin", f"/patients/{acme}", tenant="acme").status_code == 401
    assert index_rows(world.server.database_url, "SELECT count(*) FROM patient_link")[0][0] == 0


def test_locked_caller_never_learns_hidden_identities(world: IdentityWorld) -> None:
    ed, center, hidden = world.ids["ed"], world.ids["center"], world.ids["hidden"]
    assert world.post("admin", f"/patients/{ed}/links", {"identity": hidden}).status_code == 201
    assert world.post("admin", f"/patients/{ed}/links", {"identity": center}).status_code == 201
    try:
        mine = world.get("ed_registrar", f"/patients/{ed}")
        assert mine.status_code == 200
        body = mine.json()
        assert body["linked"] == [] and "person" not in body
        assert (
            body["patient_name"] == "MILLER^NOAH" and body["issuer_of_patient_id"] == "COMMUNITY-ED"
        )
        for other in (center, hidden):
            assert world.get("ed_registrar", f"/patients/{other}").status_code == 404
            assert (
                world.post("ed_registrar", f"/patients/{ed}/links", {"identity": other}).status_code
                == 404
            )
            assert world.delete("ed_registrar", f"/patients/{ed}/links/{other}").status_code == 404
        assert world.get("ed_registrar", f"/patients/{ed}/history").json() == []
        assert world.get("ed_registrar", f"/patients/{ed}/candidates").json() == []
        assert world.get("ed_registrar", "/patients?patient_id=HS-1").json() == []
        text = mine.text + world.get("ed_registrar", f"/patients/{ed}/candidates").text
        for word in ("HS-1", "HIDDEN-SITE", "SC-0093", f'"id":{hidden}', f'"id":{center}'):
            assert word not in text
    finally:
        for other in (hidden, center):
            world.delete("admin", f"/patients/{ed}/links/{other}")
