"""Corrections, moves and merges of patient identities, with history and undo (IHE IOCM-like).

- `correct_patient`: new demographics (name, birth date, sex) and/or a new key (Patient ID,
  Issuer: HL7 A47) for an identity; every study of it shows the corrected values.
- `move_study`: a study goes to another identity (it shows that identity's values).
- `merge_patients`: HL7 A40: every study of the merged-away identity goes to the survivor;
  the merged-away row stays (with `merged_into_pk`), so history still resolves it.
- `undo_change`: restores exactly the rows the change touched, when nothing touched them
  since (otherwise 409: undo the later change first).

A change rewrites the index rows clients query (patient, study and per-source study rows:
QIDO-RS and C-FIND answer the new values) and gives each touched study a `study_coercion`
row (tessera.index.coercion) that retrieval applies to what it sends; the stored files are
never changed. The touched rows are kept before and after (JSON) in `identity_change`.

Who may change what: the caller's Scope. A caller who sees every source may change any
identity of the tenant; a source-locked caller only identities (and studies) whose studies
all come from their sources; anything else is "not found", so nothing is revealed. Changes
of one tenant run one at a time (the tenant row is locked, as for links).

These functions run in the caller's write transaction and record nothing in the change feed
or the audit trail: `tessera.services.identity_changes` does both (the feed last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, delete, select, update

from tessera.index import attributes as a
from tessera.index.clock import iso
from tessera.index.coercion import (
    for_source,
    index_values,
    parse,
    patient_coercion,
    with_study_values,
)
from tessera.index.errors import Conflict, InvalidValue, NotFound
from tessera.index.identity_models import IdentityChange, StudyCoercion
from tessera.index.links import serialize
from tessera.index.models import Patient, Study, StudySource
from tessera.index.sources import check_issuer_of_patient_id
from tessera.scope import Scope

CORRECT, MOVE, MERGE = "correct", "move", "merge"
# The patient columns a study and its per-source rows carry (rewritten by a change).
PATIENT_COLUMNS = (
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_name_norm",
    "patient_birth_date",
    "patient_sex",
)
# What a correction may change (API field names = column names).
CORRECTABLE = (
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
)
SEXES = ("M", "F", "O")


class ChangeConflict(Conflict):
    """A change that cannot be applied or undone now (409)."""


class NothingToChange(ChangeConflict):
    """A correction to the values the identity has already."""


@dataclass(frozen=True)
class ChangeResult:
    change_id: int
    action: str
    patient_pk: int
    other_patient_pk: int | None
    # (study pk, Study Instance UID) of every study touched.
    studies: list[tuple[int, str]] = field(default_factory=list)
    undone: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.change_id,
            "action": self.action,
            "identity": self.patient_pk,
            "other_identity": self.other_patient_pk,
            "studies": [uid for _, uid in self.studies],
            "undone": self.undone,
        }


# -- the operations ------------------------------------------------------------------------


def correct_patient(
    conn: Connection, scope: Scope, patient_pk: int, values: dict[str, Any], reason: str = ""
) -> ChangeResult:
    """Set the identity's demographics and/or key; its studies show the new values."""
    changes = _checked_values(values)
    serialize(conn, scope.tenant_id)
    row = _live_patient(conn, scope, patient_pk)
    new_key = (
        changes.get("patient_id", row.patient_id),
        changes.get("issuer_of_patient_id", row.issuer_of_patient_id),
    )
    if new_key != (row.patient_id, row.issuer_of_patient_id):
        _key_free(conn, scope.tenant_id, *new_key)
    summary = {
        name: {"from": _plain(getattr(row, name)), "to": _plain(value)}
        for name, value in changes.items()
        if getattr(row, name) != value
    }
    if not summary:
        raise NothingToChange("nothing to change: the identity has these values already")
    studies = _studies_of(conn, [patient_pk])
    before = _snapshot(conn, [patient_pk], [pk for pk, _ in studies])
    if "patient_name" in changes:
        changes["patient_name_norm"] = a.normalize_person_name(changes["patient_name"])
    conn.execute(update(Patient).where(Patient.id == patient_pk).values(**changes))
    _retarget(conn, scope.tenant_id, [pk for pk, _ in studies], patient_pk)
    return _recorded(conn, scope, CORRECT, patient_pk, None, studies, before, summary, reason)


def move_study(
    conn: Connection, scope: Scope, study_uid: str, target_pk: int, reason: str = ""
) -> ChangeResult:
    """Move a study to another identity of the tenant."""
    serialize(conn, scope.tenant_id)
    study = conn.execute(
        select(Study.id, Study.patient_pk).where(
            Study.tenant_id == scope.tenant_id, Study.study_instance_uid == study_uid
        )
    ).first()
    if study is None or not _studies_owned(conn, scope, [study.id]):
        raise NotFound(f"no study {study_uid}")
    _live_patient(conn, scope, target_pk)
    if study.patient_pk == target_pk:
        raise ChangeConflict(f"study {study_uid} belongs to identity {target_pk} already")
    studies = [(study.id, study_uid)]
    before = _snapshot(conn, [study.patient_pk, target_pk], [study.id])
    _retarget(conn, scope.tenant_id, [study.id], target_pk)
    summary = {"study": study_uid, "from": study.patient_pk, "to": target_pk}
    return _recorded(
        conn, scope, MOVE, study.patient_pk, target_pk, studies, before, summary, reason
    )


def merge_patients(
    conn: Connection, scope: Scope, survivor_pk: int, merged_pk: int, reason: str = ""
) -> ChangeResult:
    """HL7 A40: the studies of `merged_pk` go to `survivor_pk`; `merged_pk` is kept as a
    merged-away identity (resolvable in history, never a merge target again)."""
    if survivor_pk == merged_pk:
        raise InvalidValue("an identity cannot be merged into itself")
    serialize(conn, scope.tenant_id)
    _live_patient(conn, scope, survivor_pk)
    _live_patient(conn, scope, merged_pk)
    studies = _studies_of(conn, [merged_pk])
    before = _snapshot(conn, [merged_pk, survivor_pk], [pk for pk, _ in studies])
    _retarget(conn, scope.tenant_id, [pk for pk, _ in studies], survivor_pk)
    conn.execute(update(Patient).where(Patient.id == merged_pk).values(merged_into_pk=survivor_pk))
    summary = {"merged": merged_pk, "into": survivor_pk, "studies": len(studies)}
    return _recorded(conn, scope, MERGE, merged_pk, survivor_pk, studies, before, summary, reason)


def undo_change(conn: Connection, scope: Scope, change_id: int, reason: str = "") -> ChangeResult:
    """Restore the rows a change touched to their state before it (409 when undone already
    or when a later change or upload touched them since)."""
    serialize(conn, scope.tenant_id)
    row = conn.execute(
        select(IdentityChange).where(
            IdentityChange.tenant_id == scope.tenant_id, IdentityChange.id == change_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no identity change {change_id}")
    before = orjson.loads(row.before)
    patient_pks = [int(pk) for pk in before["patients"]]
    study_pks = [int(pk) for pk in before["studies"]]
    if not _studies_owned(conn, scope, study_pks) or not _patients_owned(conn, scope, patient_pks):
        raise NotFound(f"no identity change {change_id}")
    if row.undone_at is not None:
        raise ChangeConflict(f"identity change {change_id} was undone already")
    if _dump(_snapshot(conn, patient_pks, study_pks)) != bytes(row.after):
        raise ChangeConflict(
            f"the identities or studies of change {change_id} changed since; "
            "undo the later changes first"
        )
    _restore(conn, scope.tenant_id, before)
    conn.execute(
        update(IdentityChange)
        .where(IdentityChange.id == change_id)
        .values(undone_by=scope.principal[:128], undone_at=datetime.now().astimezone())
    )
    studies = _study_uids(conn, study_pks)
    return ChangeResult(
        change_id, row.action, row.patient_pk, row.other_patient_pk, studies, undone=True
    )


def change_history(conn: Connection, scope: Scope, patient_pks: list[int]) -> list[dict]:
    """Corrections, moves and merges naming any of the identities (or identities merged
    into them), newest first. A source-locked caller sees a change only when every study it
    touched is entirely of their sources, and never the former values."""
    pks = set(patient_pks)
    frontier = list(pks)
    while frontier:  # identities merged into these, transitively
        merged = conn.execute(
            select(Patient.id).where(
                Patient.tenant_id == scope.tenant_id, Patient.merged_into_pk.in_(frontier)
            )
        ).scalars()
        frontier = [pk for pk in merged if pk not in pks]
        pks.update(frontier)
    rows = conn.execute(
        select(IdentityChange)
        .where(
            IdentityChange.tenant_id == scope.tenant_id,
            (IdentityChange.patient_pk.in_(sorted(pks)))
            | (IdentityChange.other_patient_pk.in_(sorted(pks))),
        )
        .order_by(IdentityChange.id.desc())
        .limit(1000)
    ).all()
    out = []
    for row in rows:
        study_pks = [int(pk) for pk in orjson.loads(row.before)["studies"]]
        if scope.source_pks is not None and not _studies_owned(conn, scope, study_pks):
            continue
        summary = orjson.loads(row.summary)
        if scope.source_pks is not None and row.action == CORRECT:
            summary = {name: {"to": values["to"]} for name, values in summary.items()}
        out.append(
            {
                "id": row.id,
                "action": row.action,
                "identity": row.patient_pk,
                "other_identity": row.other_patient_pk,
                "studies": [uid for _, uid in _study_uids(conn, study_pks)],
                "changes": summary,
                "principal": row.principal,
                "reason": row.reason,
                "at": iso(row.created_at),
                "undone": (
                    None
                    if row.undone_at is None
                    else {"principal": row.undone_by, "at": iso(row.undone_at)}
                ),
            }
        )
    return out


# -- checks --------------------------------------------------------------------------------


def _checked_values(values: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(CORRECTABLE))
    if unknown:
        raise InvalidValue(f"cannot correct {', '.join(unknown)} (only {', '.join(CORRECTABLE)})")
    if not values:
        raise InvalidValue(f"give at least one of {', '.join(CORRECTABLE)}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InvalidValue(f"'{name}' must be a string or null")
        text = (value or "").strip()
        if name in ("patient_id", "issuer_of_patient_id"):
            _check_lo(name, value or "")
            if name == "patient_id" and not text:
                raise InvalidValue("a Patient ID cannot be empty")
            if name == "issuer_of_patient_id":
                check_issuer_of_patient_id(value or "")
            out[name] = value or ""
        elif name == "patient_name":
            if len(text) > 324 or any(ord(c) < 32 or c == "\\" for c in text):
                raise InvalidValue(
                    "a Patient Name has at most 324 characters, no backslash, no control characters"
                )
            out[name] = text or None
        elif name == "patient_birth_date":
            out[name] = _birth_date(text)
        else:
            if text and text not in SEXES:
                raise InvalidValue("a Patient Sex is M, F, O or empty")
            out[name] = text or None
    return out


def _check_lo(name: str, value: str) -> None:
    if len(value) > 64 or "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidValue(f"'{name}' is a DICOM LO value: at most 64 characters, no backslash")
    if value != value.strip():
        raise InvalidValue(f"'{name}' has no leading or trailing spaces")


def _birth_date(text: str) -> date | None:
    if not text:
        return None
    digits = text.replace("-", "")
    try:
        if len(digits) != 8 or not digits.isdigit():
            raise ValueError(text)
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as exc:
        raise InvalidValue(f"a Patient Birth Date is YYYYMMDD or YYYY-MM-DD, not {text!r}") from exc


def _key_free(conn: Connection, tenant_id: int, patient_id: str, issuer: str) -> None:
    taken = conn.execute(
        select(Patient.id).where(
            Patient.tenant_id == tenant_id,
            Patient.patient_id == patient_id,
            Patient.issuer_of_patient_id == issuer,
        )
    ).first()
    if taken is not None:
        raise ChangeConflict(
            f"an identity ({patient_id!r}, issuer {issuer!r}) exists already: merge the two "
            "identities instead"
        )


def _live_patient(conn: Connection, scope: Scope, pk: int) -> Any:
    """The identity's row, when the caller may change it; 409 when it was merged away."""
    row = conn.execute(
        select(Patient).where(Patient.tenant_id == scope.tenant_id, Patient.id == pk)
    ).first()
    if row is None or not _patients_owned(conn, scope, [pk], must_have_studies=True):
        raise NotFound(f"no identity {pk}")
    if row.merged_into_pk is not None:
        raise ChangeConflict(f"identity {pk} was merged into identity {row.merged_into_pk}")
    return row


def _foreign_source(scope: Scope) -> Any:
    assert scope.source_pks is not None
    return StudySource.source_pk.not_in(sorted(scope.source_pks))


def _patients_owned(
    conn: Connection, scope: Scope, pks: list[int], must_have_studies: bool = False
) -> bool:
    """Every study of these identities is entirely of the caller's sources (always true for
    a caller who sees every source); with `must_have_studies`, each has one of them."""
    if scope.source_pks is None:
        return True
    foreign = conn.execute(
        select(StudySource.id)
        .join(Study, Study.id == StudySource.study_pk)
        .where(Study.patient_pk.in_(pks), _foreign_source(scope))
        .limit(1)
    ).first()
    if foreign is not None:
        return False
    if not must_have_studies:
        return True
    having = conn.execute(
        select(Study.patient_pk)
        .join(StudySource, StudySource.study_pk == Study.id)
        .where(Study.patient_pk.in_(pks))
        .distinct()
    ).scalars()
    return set(having) >= set(pks)


def _studies_owned(conn: Connection, scope: Scope, study_pks: list[int]) -> bool:
    """Each study has rows of the caller's sources only (true for every-source callers)."""
    if scope.source_pks is None or not study_pks:
        return True
    foreign = conn.execute(
        select(StudySource.id)
        .where(StudySource.study_pk.in_(study_pks), _foreign_source(scope))
        .limit(1)
    ).first()
    if foreign is not None:
        return False
    owned = conn.execute(
        select(StudySource.study_pk).where(StudySource.study_pk.in_(study_pks)).distinct()
    ).scalars()
    return set(owned) >= set(study_pks)


# -- rows ----------------------------------------------------------------------------------


def _studies_of(conn: Connection, patient_pks: list[int]) -> list[tuple[int, str]]:
    return [
        (pk, uid)
        for pk, uid in conn.execute(
            select(Study.id, Study.study_instance_uid)
            .where(Study.patient_pk.in_(patient_pks))
            .order_by(Study.id)
        )
    ]


def _study_uids(conn: Connection, study_pks: list[int]) -> list[tuple[int, str]]:
    if not study_pks:
        return []
    return [
        (pk, uid)
        for pk, uid in conn.execute(
            select(Study.id, Study.study_instance_uid)
            .where(Study.id.in_(study_pks))
            .order_by(Study.id)
        )
    ]


def _retarget(conn: Connection, tenant_id: int, study_pks: list[int], patient_pk: int) -> None:
    """The studies belong to the identity and show its values (index rows and coercion)."""
    if not study_pks:
        return
    patient_row = conn.execute(select(Patient).where(Patient.id == patient_pk)).one()
    values = {name: getattr(patient_row, name) for name in PATIENT_COLUMNS}
    conn.execute(
        update(Study).where(Study.id.in_(study_pks)).values(patient_pk=patient_pk, **values)
    )
    conn.execute(update(StudySource).where(StudySource.study_pk.in_(study_pks)).values(**values))
    patient = patient_coercion(
        patient_row.patient_id,
        patient_row.issuer_of_patient_id,
        patient_row.patient_name,
        patient_row.patient_birth_date,
        patient_row.patient_sex,
    )
    # Merged per keyword into what an order attach wrote (its accession number stays).
    earlier = {
        pk: parse(raw)
        for pk, raw in conn.execute(
            select(StudyCoercion.study_pk, StudyCoercion.attributes).where(
                StudyCoercion.study_pk.in_(study_pks)
            )
        )
    }
    conn.execute(delete(StudyCoercion).where(StudyCoercion.study_pk.in_(study_pks)))
    conn.execute(
        StudyCoercion.__table__.insert(),
        [
            {
                "study_pk": pk,
                "tenant_id": tenant_id,
                "attributes": orjson.dumps(with_study_values(earlier.get(pk), patient)),
            }
            for pk in study_pks
        ],
    )


def keep_corrected(conn: Connection, study_pk: int, source_pk: int) -> None:
    """Ingest: a source's first instance in a study a change or an order attach touched
    gets the study's coerced values (patient, accession number) on its per-source row too
    (its instances are coerced like the others), so source-locked queries agree with
    retrieval."""
    coerced = conn.execute(
        select(StudyCoercion.attributes).where(StudyCoercion.study_pk == study_pk)
    ).scalar_one_or_none()
    values = index_values(for_source(parse(coerced), source_pk) or {})
    if not values:
        return
    conn.execute(
        update(StudySource)
        .where(StudySource.study_pk == study_pk, StudySource.source_pk == source_pk)
        .values(**values)
    )


def _snapshot(conn: Connection, patient_pks: list[int], study_pks: list[int]) -> dict:
    """The rows a change touches, as JSON-able values (compared and restored by undo)."""
    patient_columns = [*PATIENT_COLUMNS, "merged_into_pk"]
    patients = {
        str(row.id): {name: _plain(getattr(row, name)) for name in patient_columns}
        for row in conn.execute(
            select(Patient).where(Patient.id.in_(sorted(set(patient_pks)))).order_by(Patient.id)
        )
    }
    studies: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    coercions: dict[str, Any] = {str(pk): None for pk in study_pks}
    if study_pks:
        for row in conn.execute(select(Study).where(Study.id.in_(study_pks))):
            studies[str(row.id)] = {
                "patient_pk": row.patient_pk,
                **{name: _plain(getattr(row, name)) for name in PATIENT_COLUMNS},
            }
        for source in conn.execute(select(StudySource).where(StudySource.study_pk.in_(study_pks))):
            sources[str(source.id)] = {
                name: _plain(getattr(source, name)) for name in PATIENT_COLUMNS
            }
        for coerced in conn.execute(
            select(StudyCoercion).where(StudyCoercion.study_pk.in_(study_pks))
        ):
            coercions[str(coerced.study_pk)] = orjson.loads(coerced.attributes)
    return {
        "patients": patients,
        "studies": studies,
        "study_sources": sources,
        "coercions": coercions,
    }


def _restore(conn: Connection, tenant_id: int, before: dict) -> None:
    patients = before["patients"]
    for pk, values in patients.items():  # a key restored must be free (or this row's)
        taken = conn.execute(
            select(Patient.id).where(
                Patient.tenant_id == tenant_id,
                Patient.patient_id == values["patient_id"],
                Patient.issuer_of_patient_id == values["issuer_of_patient_id"],
                Patient.id != int(pk),
            )
        ).first()
        if taken is not None:
            raise ChangeConflict(
                f"identity {taken.id} holds ({values['patient_id']!r}, issuer "
                f"{values['issuer_of_patient_id']!r}) now: merge or correct it first"
            )
    for pk, values in patients.items():
        conn.execute(update(Patient).where(Patient.id == int(pk)).values(**_typed(values)))
    for pk, values in before["studies"].items():
        conn.execute(update(Study).where(Study.id == int(pk)).values(**_typed(values)))
    for pk, values in before["study_sources"].items():
        conn.execute(update(StudySource).where(StudySource.id == int(pk)).values(**_typed(values)))
    study_pks = [int(pk) for pk in before["coercions"]]
    if study_pks:
        conn.execute(delete(StudyCoercion).where(StudyCoercion.study_pk.in_(study_pks)))
    kept = [
        {"study_pk": int(pk), "tenant_id": tenant_id, "attributes": orjson.dumps(attributes)}
        for pk, attributes in before["coercions"].items()
        if attributes is not None
    ]
    if kept:
        conn.execute(StudyCoercion.__table__.insert(), kept)


def _recorded(
    conn: Connection,
    scope: Scope,
    action: str,
    patient_pk: int,
    other_pk: int | None,
    studies: list[tuple[int, str]],
    before: dict,
    summary: dict,
    reason: str,
) -> ChangeResult:
    patient_pks = [int(pk) for pk in before["patients"]]
    after = _snapshot(conn, patient_pks, [pk for pk, _ in studies])
    change_id = conn.execute(
        IdentityChange.__table__.insert()
        .values(
            tenant_id=scope.tenant_id,
            action=action,
            patient_pk=patient_pk,
            other_patient_pk=other_pk,
            principal=scope.principal[:128],
            reason=reason[:256],
            summary=orjson.dumps(summary),
            before=_dump(before),
            after=_dump(after),
        )
        .returning(IdentityChange.id)
    ).scalar_one()
    return ChangeResult(change_id, action, patient_pk, other_pk, studies)


def _dump(snapshot: dict) -> bytes:
    return orjson.dumps(snapshot, option=orjson.OPT_SORT_KEYS)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if out.get("patient_birth_date"):
        out["patient_birth_date"] = date.fromisoformat(out["patient_birth_date"])
    return out


def resolved_identity(conn: Connection, tenant_id: int, patient_pk: int) -> int:
    """The live identity a (possibly merged-away) identity resolves to."""
    seen = {patient_pk}
    current = patient_pk
    while True:
        into = conn.execute(
            select(Patient.merged_into_pk).where(
                Patient.tenant_id == tenant_id, Patient.id == current
            )
        ).scalar_one_or_none()
        if into is None or into in seen:
            return current
        seen.add(into)
        current = into
