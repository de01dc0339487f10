"""A signed report into its study: the SR and the PDF built, written as Part 10 files and
stored through the same ingest service as STOW-RS and C-STORE (so QIDO lists them, WADO
serves them, and they are counted, indexed and swept like every other instance).

The instances are labelled with the study's source (`index.reports.visible_study`): the
source of the study's first instance the signer sees, so whoever reads the study through
that source reads its report too.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from tessera.archive import Archive
from tessera.auth import permissions
from tessera.index.reports import VersionRow
from tessera.scope import Scope
from tessera.scp.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tessera.services.ingest import ingest_file
from tessera.services.report_templates import (
    FREE_TEXT_DOCUMENT_CODE,
    SECTION_TITLES,
    SECTIONS,
    Template,
)
from tessera.storage.report_pdf import encapsulated_pdf, render_pdf
from tessera.storage.report_sr import (
    ContentItem,
    Predecessor,
    person_name,
    sr_sop_class_for,
    structured_report,
)

LOCAL_SCHEME = "99TESSERA"
ADDENDUM = {"value": "121078", "scheme": "DCM", "meaning": "Addendum"}


class NotStored(RuntimeError):
    pass


def content_items(template: Template | None, content: dict) -> list[ContentItem]:
    """The report's values as SR content items, in the template's (or sections') order."""
    items: list[ContentItem] = []
    if template is None:
        for name, concept in SECTIONS.items():
            text = content.get("sections", {}).get(name)
            if text:
                items.append(ContentItem("TEXT", concept, SECTION_TITLES[name], text=text))
    else:
        values = content.get("values", {})
        for field in template.fields:
            value = values.get(field.name)
            if value in (None, ""):
                continue
            local = {
                "value": field.name[:16].upper(),
                "scheme": LOCAL_SCHEME,
                "meaning": field.label,
            }
            if field.code is None:
                # No code given: the value as text under a local concept name.
                shown = f"{value} {field.unit['value']}" if field.unit else str(value)
                if field.type == "choice":
                    shown = field.choice(str(value))["label"]
                items.append(ContentItem("TEXT", local, field.label, text=shown))
            elif field.type == "number":
                items.append(
                    ContentItem("NUM", field.code, field.label, number=value, unit=field.unit)
                )
            elif field.type == "choice" and "code" in field.choice(str(value)):
                chosen = field.choice(str(value))
                items.append(ContentItem("CODE", field.code, field.label, code=chosen["code"]))
            elif field.type == "choice":
                label = field.choice(str(value))["label"]
                items.append(ContentItem("TEXT", field.code, field.label, text=label))
            else:
                items.append(ContentItem("TEXT", field.code, field.label, text=str(value)))
    for addendum in content.get("addenda", []):
        heading = f"Addendum ({addendum.get('author', '')}, {addendum.get('signed_at', '')})"
        items.append(ContentItem("TEXT", ADDENDUM, heading, text=addendum["text"]))
    return items


@dataclass(frozen=True)
class ReportObjects:
    """The two instances a signed version becomes (UIDs fixed before anything is written)."""

    title: str
    document_code: dict
    items: list[ContentItem]
    addenda: list[dict]
    status: str
    signer: str
    organization: str
    signed_at: datetime
    instance_number: int
    series_instance_uid: str
    pdf_series_instance_uid: str
    sr_sop_class_uid: str
    sr_sop_instance_uid: str
    pdf_sop_instance_uid: str
    predecessor: VersionRow | None

    @classmethod
    def new(
        cls,
        template: Template | None,
        content: dict,
        status: str,
        signer: str,
        organization: str,
        signed_at: datetime,
        predecessor: VersionRow | None,
        instance_number: int,
    ) -> ReportObjects:
        items = content_items(template, content)
        return cls(
            title=template.title if template else "Report",
            document_code=template.document_code if template else FREE_TEXT_DOCUMENT_CODE,
            items=items,
            addenda=list(content.get("addenda", [])),
            status=status,
            signer=signer,
            organization=organization,
            signed_at=signed_at,
            instance_number=instance_number,
            # Amended versions stay in the series of the SR they amend.
            series_instance_uid=(
                predecessor.series_instance_uid
                if predecessor and predecessor.series_instance_uid
                else generate_uid()
            ),
            pdf_series_instance_uid=generate_uid(),
            sr_sop_class_uid=sr_sop_class_for(items),
            sr_sop_instance_uid=generate_uid(),
            pdf_sop_instance_uid=generate_uid(),
            predecessor=predecessor,
        )

    def datasets(self, study: dict[str, str]) -> list[Dataset]:
        predecessor = None
        if self.predecessor is not None:
            predecessor = Predecessor(
                study["StudyInstanceUID"],
                self.predecessor.series_instance_uid or "",
                self.predecessor.sr_sop_class_uid or "",
                self.predecessor.sr_sop_instance_uid or "",
            )
        sr = structured_report(
            study,
            self.sr_sop_instance_uid,
            self.series_instance_uid,
            self.instance_number,
            self.document_code,
            self.items,
            self.signer,
            self.organization,
            self.signed_at,
            predecessor,
        )
        body_items = [item for item in self.items if item.concept is not ADDENDUM]
        pdf = render_pdf(
            self.title,
            study,
            body_items,
            self.addenda,
            self.status,
            person_name(self.signer),
            self.signed_at,
        )
        document = encapsulated_pdf(
            study,
            pdf,
            self.pdf_sop_instance_uid,
            self.pdf_series_instance_uid,
            self.instance_number,
            self.title,
            self.document_code,
            self.signed_at,
        )
        return [sr, document]


def write_part10(ds: Dataset, path: Path) -> str:
    """Write `ds` as an Explicit VR Little Endian Part 10 file; returns its SHA-256."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_report_objects(
    archive: Archive,
    tenant_id: int,
    source_pk: int,
    study: dict[str, str],
    objects: ReportObjects,
) -> None:
    """Store the SR and the PDF into the study; raises NotStored when either is refused."""
    # The report service already checked the signer's rights and the study's visibility;
    # storing is the archive's own act, under the study's source.
    scope = Scope(
        tenant_id=tenant_id,
        permissions=frozenset({permissions.UPLOAD}),
        principal=f"report:{objects.signer}",
    )
    archive.spool_dir.mkdir(parents=True, exist_ok=True)
    for ds in objects.datasets(study):
        with tempfile.NamedTemporaryFile(
            dir=archive.spool_dir, prefix="report-", suffix=".dcm", delete=False
        ) as handle:
            path = Path(handle.name)
        sha256 = write_part10(ds, path)
        outcome = ingest_file(
            archive,
            scope,
            path,
            sha256,
            source_pk,
            expected_study_uid=study["StudyInstanceUID"],
        )
        if not outcome.stored:
            raise NotStored(f"{ds.SOPInstanceUID}: {outcome.message}")
