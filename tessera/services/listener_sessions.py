"""The reviewed DICOM listener: C-STOREs of a peer configured as `staged` go into upload
sessions instead of the archive, one session per (association, study), for a user of the
tenant to commit or discard (tessera/services/upload_sessions.py does the storing, commit
and discard; this module only chooses the session).

Until a user commits a session nothing of it is visible anywhere (QIDO-RS, WADO-RS,
C-FIND, C-MOVE, C-GET). A session a user commits or discards while the association is still
sending is not reopened: the study's next instances go into a new session.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from tessera.archive import Archive
from tessera.scope import Scope
from tessera.services import failure_reasons
from tessera.services import upload_sessions as sessions
from tessera.services.ingest import StoreOutcome

log = logging.getLogger(__name__)


class ListenerSessions:
    """The upload sessions one association of a staged peer fills, by Study Instance UID.

    pynetdicom handles an association's DIMSE messages one after another, so one object per
    association needs no lock.
    """

    def __init__(
        self, archive: Archive, scope: Scope, source_pk: int, calling_ae_title: str
    ) -> None:
        self.archive = archive
        self.scope = scope
        self.source_pk = source_pk
        self.calling_ae_title = calling_ae_title
        self.by_study: dict[str, str] = {}

    def store(
        self, path: Path, sha256: str, expected_sop: tuple[str, str] | None = None
    ) -> StoreOutcome:
        """Store the received file at `path` (consumed in every case) into its study's
        session. Never raises: each instance is its own failure boundary, as ingest."""
        try:
            return self._store(path, sha256, expected_sop)
        except Exception:
            log.exception("staging a received instance failed", extra={"spool_file": str(path)})
            return StoreOutcome.internal_error()
        finally:
            path.unlink(missing_ok=True)

    def _store(self, path: Path, sha256: str, expected_sop: tuple[str, str] | None) -> StoreOutcome:
        parsed, outcome = sessions.parse_received(path)
        if parsed is None:
            return outcome
        if expected_sop is not None and (parsed.sop_class_uid, parsed.sop_instance_uid) != (
            expected_sop
        ):
            outcome.failure_reason = failure_reasons.MISSING_OR_INVALID_UID
            outcome.message = (
                f"data set (SOP Class {parsed.sop_class_uid}, SOP Instance "
                f"{parsed.sop_instance_uid}) does not match the request ({expected_sop[0]}, "
                f"{expected_sop[1]})"
            )
            return outcome
        public_id = self._session_for(parsed.study_instance_uid)
        try:
            return sessions.add_parsed(
                self.archive, self.scope, public_id, parsed, outcome, path, sha256
            )
        except sessions.SessionProblem as exc:
            # Full, or closed in the instant since _session_for looked (the peer may resend).
            reason = (
                failure_reasons.OUT_OF_RESOURCES
                if exc.status == 413
                else failure_reasons.PROCESSING_FAILURE
            )
            outcome.failure_reason = reason
            outcome.message = exc.message
            return outcome

    def _session_for(self, study_uid: str) -> str:
        """The association's open session of the study; a new one when there is none yet,
        or a user committed or discarded it (or it expired) while the association sent."""
        public_id = self.by_study.get(study_uid)
        if public_id is not None:
            try:
                sessions.usable_session(self.archive, self.scope, public_id)
                return public_id
            except sessions.SessionProblem:
                del self.by_study[study_uid]
        return self._open(study_uid)

    def _open(self, study_uid: str) -> str:
        received = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        session = sessions.open_received_session(
            self.archive,
            self.scope,
            self.source_pk,
            self.calling_ae_title,
            f"received from {self.calling_ae_title} at {received}",
        )
        self.by_study[study_uid] = session.public_id
        log.info(
            "staged study session opened",
            extra={
                "calling_ae_title": self.calling_ae_title,
                "study_instance_uid": study_uid,
                "session": session.public_id,
            },
        )
        return session.public_id
