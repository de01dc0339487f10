"""Results out: each signed (or amended) report is sent as HL7 v2 ORU^R01 over MLLP to the
configured endpoint (`hl7_results_endpoint`), retried with exponential backoff until the
receiver acknowledges it (MSA-1 AA/CA). The message is built and queued in the transaction
that records the signature, so a crash after signing still sends it; one sender thread per
server process claims due messages from the index (docs/reports.md)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import Connection

from tessera.archive import Archive
from tessera.hl7.message import parse_ack
from tessera.hl7.mllp import MllpError, send
from tessera.hl7.oru import ResultHeader, oru_r01
from tessera.index import report_results as outbox
from tessera.storage.report_sr import ContentItem

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"hl7_results_endpoint {endpoint!r} is not host:port")
    return host, int(port)


def queue_result(
    conn: Connection,
    archive: Archive,
    tenant_id: int,
    organization: str,
    report_id: int,
    version: int,
    status: str,
    signer: str,
    signed_at: datetime,
    document_code: dict,
    study: dict[str, str],
    items: list[ContentItem],
) -> bool:
    """Queue the ORU^R01 of a signed version (in the caller's transaction); False when
    results out is off."""
    settings = archive.settings
    if not settings.hl7_results_endpoint:
        return False
    control_id = f"T{tenant_id}R{report_id}V{version}"
    header = ResultHeader(
        sending_facility=organization,
        receiving_application=settings.hl7_results_receiving_application,
        receiving_facility=settings.hl7_results_receiving_facility,
        control_id=control_id,
        document_code=document_code,
        status=status,
        signer=signer,
        signed_at=signed_at,
    )
    message = oru_r01(header, study, items)
    outbox.enqueue(
        conn, tenant_id, report_id, version, settings.hl7_results_endpoint, control_id, message
    )
    return True


def _backoff(attempts: int, limit: int) -> timedelta:
    return timedelta(seconds=min(2 ** min(attempts, 20), max(1, limit)))


def send_due(archive: Archive) -> int:
    """One pass: send every due message once; returns how many were acknowledged."""
    settings = archive.settings
    with archive.database.read() as conn:
        pending = outbox.due(conn)
    sent = 0
    lease = timedelta(seconds=settings.hl7_results_timeout_seconds * 2 + 5)
    for message in pending:
        with archive.database.write() as conn:
            if not outbox.claim(conn, message, lease):
                continue
        try:
            host, port = parse_endpoint(message.endpoint)
            reply = send(host, port, message.message, settings.hl7_results_timeout_seconds)
            ack = parse_ack(reply)
            if not ack.accepted:
                raise MllpError(f"refused: {ack.code} {ack.text}".strip())
            if ack.control_id and ack.control_id != message.control_id:
                raise MllpError(f"acknowledges {ack.control_id}, not {message.control_id}")
        except (MllpError, ValueError) as exc:
            retry_in = _backoff(message.attempts, settings.hl7_results_retry_max_seconds)
            log.warning(
                "ORU^R01 not acknowledged; will retry",
                extra={
                    "control_id": message.control_id,
                    "attempt": message.attempts + 1,
                    "retry_in_seconds": retry_in.total_seconds(),
                    "reason": str(exc),
                },
            )
            with archive.database.write() as conn:
                outbox.failed(conn, message.id, str(exc), retry_in)
            continue
        with archive.database.write() as conn:
            outbox.acknowledged(conn, message.id)
        log.info("ORU^R01 acknowledged", extra={"control_id": message.control_id})
        sent += 1
    return sent


def start_sender(archive: Archive, stop: threading.Event | None = None) -> threading.Thread:
    """The sender thread of this process (tessera serve starts one when results out is on)."""
    stop = stop or threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                send_due(archive)
            except Exception:
                log.exception("results sender pass failed")
            stop.wait(POLL_SECONDS)

    thread = threading.Thread(target=run, name="hl7-results", daemon=True)
    thread.start()
    return thread


def delivery_states(archive: Archive, report_id: int, versions: list[int]) -> list[dict]:
    """Results-out state of each signed version of a report already found through a Scope."""
    states = []
    with archive.database.read() as conn:
        for version in versions:
            state = outbox.state_of(conn, report_id, version)
            if state is not None:
                states.append(
                    {
                        "version": version,
                        "state": state[0],
                        "attempts": state[1],
                        "last_error": state[2],
                    }
                )
    return states
