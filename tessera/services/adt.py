"""HL7 v2 ADT for patient identity: what an A01/A04/A08, A40, A47, A24 or A37 does.

`apply_adt(archive, scope, segments, default_issuer)` applies one message (its segments as
`tessera.hl7.message.parse` gives them) through the identity services
(tessera.services.identity_changes), so an ADT change is the same change, with the same
history, audit event and change feed entries, as one made over `{api}/patients/...`:

| Event | Segments | Does |
| --- | --- | --- |
| A01, A04, A08 | PID | the identity PID-3 names gets PID-5 (name), PID-7 (birth date), PID-8 (sex) |
| A40 | PID, MRG | MRG-1's identity is merged into PID-3's |
| A47 | PID, MRG | MRG-1's identity gets the Patient ID (and issuer) of PID-3 |
| A24 | PID, PID | the two identities are linked |
| A37 | PID, PID | their link is undone |

An identity is PID-3's first repetition (CX): CX.1 the Patient ID, CX.4 (assigning
authority: namespace ID, else universal ID) the Issuer of Patient ID, else `default_issuer`
(the sending source's default issuer). Unknown identities are never created here: images
create them. Errors are `AdtError` (an InvalidValue naming the HL7 field; `unknown_key` for
an identity that does not exist) or the identity services' NotFound / Conflict; nothing is
applied then. An A08 that changes nothing is accepted as is.

Over MLLP: tessera/services/adt_hl7.py (the listener's handlers, with the sender's scope).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.archive import Archive
from tessera.hl7.message import COMPONENT, REPETITION, SUBCOMPONENT, unescape
from tessera.index.errors import InvalidValue
from tessera.index.identity_changes import NothingToChange
from tessera.scope import Scope
from tessera.services import identity_changes as ic

UPDATE_EVENTS = ("A01", "A04", "A08")
EVENTS = (*UPDATE_EVENTS, "A40", "A47", "A24", "A37")
# HL7 table 0001 -> DICOM Patient Sex (U, A, N: unknown -> no value).
SEX = {"M": "M", "F": "F", "O": "O"}


class AdtError(InvalidValue):
    """A message that cannot be applied: `location` names the field (e.g. 'MRG-1')."""

    def __init__(self, text: str, location: str = "", unknown_key: bool = False) -> None:
        super().__init__(text)
        self.location = location
        self.unknown_key = unknown_key


@dataclass(frozen=True)
class AdtResult:
    event: str
    text: str
    change_id: int | None = None


def event_of(segments: list[list[str]]) -> str:
    """The trigger event of MSH-9 (ADT^A40^ADT_A39 -> 'A40')."""
    msh = _segments(segments, "MSH")
    kind = _field(msh[0], 9).split(COMPONENT) if msh else []
    if len(kind) < 2 or kind[0] != "ADT":
        raise AdtError("not an ADT message (MSH-9)", "MSH-9")
    return kind[1]


def apply_adt(
    archive: Archive, scope: Scope, segments: list[list[str]], default_issuer: str = ""
) -> AdtResult:
    event = event_of(segments)
    if event not in EVENTS:
        raise AdtError(f"ADT^{event} is not handled (only {', '.join(EVENTS)})", "MSH-9")
    pids = _segments(segments, "PID")
    if not pids:
        raise AdtError("the message has no PID segment", "PID")
    key = _identity(pids[0], default_issuer, "PID-3")
    if event in UPDATE_EVENTS:
        pk = _known(archive, scope, key, "PID-3")
        values = _demographics(pids[0])
        if not values:
            return AdtResult(event, "no demographics to apply")
        try:
            result = ic.correct_patient(archive, scope, pk, values, f"HL7 ADT^{event}")
        except NothingToChange:
            return AdtResult(event, "the identity has these values already")
        return AdtResult(event, f"identity {pk} updated", result.change_id)
    if event in ("A40", "A47"):
        mrgs = _segments(segments, "MRG")
        if not mrgs:
            raise AdtError(f"ADT^{event} needs an MRG segment", "MRG")
        prior = _identity(mrgs[0], default_issuer, "MRG-1", field=1)
        prior_pk = _known(archive, scope, prior, "MRG-1")
        if event == "A40":
            survivor = _known(archive, scope, key, "PID-3")
            result = ic.merge_patients(archive, scope, survivor, prior_pk, "HL7 ADT^A40")
            return AdtResult(event, f"identity {prior_pk} merged into {survivor}", result.change_id)
        new = {"patient_id": key[0], "issuer_of_patient_id": key[1]}
        result = ic.correct_patient(archive, scope, prior_pk, new, "HL7 ADT^A47")
        return AdtResult(event, f"identity {prior_pk} is {key[0]} now", result.change_id)
    if len(pids) < 2:
        raise AdtError(f"ADT^{event} needs two PID segments", "PID")
    a = _known(archive, scope, key, "PID-3")
    b = _known(archive, scope, _identity(pids[1], default_issuer, "PID-3"), "PID-3")
    if event == "A24":
        ic.link_patients(archive, scope, a, b, "HL7 ADT^A24")
        return AdtResult(event, f"identities {a} and {b} linked")
    ic.unlink_patients(archive, scope, a, b, "HL7 ADT^A37")
    return AdtResult(event, f"identities {a} and {b} unlinked")


def _segments(segments: list[list[str]], name: str) -> list[list[str]]:
    return [s for s in segments if s and s[0] == name]


def _field(segment: list[str], index: int) -> str:
    return segment[index] if index < len(segment) else ""


def _identity(
    segment: list[str], default_issuer: str, location: str, field: int = 3
) -> tuple[str, str]:
    """(Patient ID, Issuer) of the field's first CX repetition."""
    first = _field(segment, field).split(REPETITION)[0]
    parts = first.split(COMPONENT)
    patient_id = unescape(parts[0]).strip()
    if not patient_id:
        raise AdtError(f"{location} names no Patient ID", location)
    authority = parts[3].split(SUBCOMPONENT) if len(parts) > 3 else []
    issuer = next((unescape(p).strip() for p in authority[:2] if p.strip()), "")
    return patient_id, issuer or default_issuer


def _known(archive: Archive, scope: Scope, key: tuple[str, str], location: str) -> int:
    pk = ic.find_identity(archive, scope, *key)
    if pk is None:
        raise AdtError(
            f"no identity {key[0]!r} (issuer {key[1]!r}) ({location})", location, unknown_key=True
        )
    return pk


def _demographics(pid: list[str]) -> dict[str, Any]:
    """PID-5/7/8 as correction values: only the fields present; '""' clears a value."""
    values: dict[str, Any] = {}
    name = _field(pid, 5).split(REPETITION)[0]
    if name:
        values["patient_name"] = None if name == '""' else _person_name(name)
    birth = _field(pid, 7)
    if birth:
        digits = birth.split(COMPONENT)[0][:8]
        if birth != '""' and (len(digits) != 8 or not digits.isdigit()):
            raise AdtError(f"PID-7 is not a date: {birth[:20]!r}", "PID-7")
        values["patient_birth_date"] = None if birth == '""' else digits
    sex = _field(pid, 8)
    if sex:
        values["patient_sex"] = None if sex == '""' else SEX.get(sex.strip().upper())
    return values


def _person_name(xpn: str) -> str:
    """HL7 XPN (family^given^middle^suffix^prefix) as a DICOM PN (family^given^middle^prefix^
    suffix), trailing empty components dropped."""
    raw = xpn.split(COMPONENT) + [""] * 5
    family = unescape(raw[0].split(SUBCOMPONENT)[0]).strip()
    given, middle, suffix, prefix = (unescape(p).strip() for p in raw[1:5])
    components = [family, given, middle, prefix, suffix]
    while components and not components[-1]:
        components.pop()
    return "^".join(components)
