"""The values of a worklist item, by DICOM keyword, from an order/step row: one mapping that
the Modality Worklist SCP (scp/mwl.py) and UPS-RS (dicomweb/workitem_dataset.py) both answer
with, so they never disagree."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, time

from pydicom.dataset import Dataset
from sqlalchemy import RowMapping

from tessera.index.worklist import STEP_STATUS


def _da(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _tm(value: time | None) -> str:
    return value.strftime("%H%M%S") if value else ""


def _code_item(row: RowMapping) -> list[Dataset]:
    if not row["requested_procedure_code_value"]:
        return []
    item = Dataset()
    item.CodeValue = row["requested_procedure_code_value"]
    item.CodingSchemeDesignator = row["requested_procedure_coding_scheme"]
    item.CodeMeaning = row["requested_procedure_code_meaning"]
    return [item]


def _issuer_item(row: RowMapping) -> list[Dataset]:
    if not row["issuer_of_accession_number"]:
        return []
    item = Dataset()
    item.LocalNamespaceEntityID = row["issuer_of_accession_number"]
    return [item]


ORDER_VALUES: dict[str, Callable[[RowMapping], object]] = {
    "PatientName": lambda r: r["patient_name"],
    "PatientID": lambda r: r["patient_id"],
    "IssuerOfPatientID": lambda r: r["issuer_of_patient_id"],
    "PatientBirthDate": lambda r: _da(r["patient_birth_date"]),
    "PatientSex": lambda r: r["patient_sex"],
    "AccessionNumber": lambda r: r["accession_number"],
    "IssuerOfAccessionNumberSequence": _issuer_item,
    "ReferringPhysicianName": lambda r: r["referring_physician_name"],
    "RequestedProcedureID": lambda r: r["requested_procedure_id"],
    "RequestedProcedureDescription": lambda r: r["requested_procedure_description"],
    "RequestedProcedureCodeSequence": _code_item,
    "RequestedProcedurePriority": lambda r: r["priority"],
    "ReasonForTheRequestedProcedure": lambda r: r["reason_for_requested_procedure"],
    "StudyInstanceUID": lambda r: r["study_instance_uid"],
}
STEP_VALUES: dict[str, Callable[[RowMapping], object]] = {
    "ScheduledStationAETitle": lambda r: r["sps_scheduled_station_ae_title"],
    "ScheduledProcedureStepStartDate": lambda r: _da(r["sps_start_date"]),
    "ScheduledProcedureStepStartTime": lambda r: _tm(r["sps_start_time"]),
    "Modality": lambda r: r["sps_modality"],
    "ScheduledPerformingPhysicianName": lambda r: r["sps_scheduled_performing_physician_name"],
    "ScheduledProcedureStepDescription": lambda r: r["sps_description"],
    "ScheduledStationName": lambda r: r["sps_scheduled_station_name"],
    "ScheduledProcedureStepID": lambda r: r["sps_scheduled_procedure_step_id"],
    "ScheduledProcedureStepStatus": lambda r: STEP_STATUS.get(r["status"], ""),
}
