"""The notification job of the delivery worker: e-mail people the changes they subscribed to
("a study is ready"), read through their own Scope, over SMTP.

The message names the change type, the Study Instance UID and the source, and no patient
data (e-mail is not a safe channel for it); the reader opens the study in the portal. A
failed send keeps the cursor at the last message sent and retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from datetime import timedelta
from email.message import EmailMessage

from tessera.archive import Archive
from tessera.config import Settings
from tessera.index import notifications
from tessera.index.changes import Change
from tessera.index.clock import utcnow
from tessera.services.backoff import retry_delay

log = logging.getLogger(__name__)

SUBJECTS = {
    "study.complete": "A study is ready",
    "study.first_instance": "A new study is arriving",
    "study.updated": "A study was updated",
    "report.signed": "A report was signed",
    "order.status_changed": "An order changed status",
}


def message_for(settings: Settings, to: str, change: Change) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = f"[Tessera] {SUBJECTS.get(change.kind, change.kind)}"
    message["X-Tessera-Event"] = change.kind
    message["X-Tessera-Seq"] = str(change.seq)
    message.set_content(
        f"{SUBJECTS.get(change.kind, change.kind)}.\n\n"
        f"Study Instance UID: {change.study_instance_uid}\n"
        f"Source: {change.source or '-'}\n"
        f"Event: {change.kind} (#{change.seq})\n\n"
        "Open it in the Tessera portal or your viewer.\n"
    )
    return message


def send_messages(settings: Settings, messages: list[EmailMessage]) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        for message in messages:
            smtp.send_message(message)


class NotificationJob:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.settings = archive.settings

    async def __call__(self) -> bool:
        if not self.settings.smtp_host:
            return False
        return await asyncio.to_thread(self._run)

    def _run(self) -> bool:
        database = self.archive.database
        with database.read() as conn:
            due = notifications.due(conn)
        for subscription_pk in due:
            with database.write() as conn:
                if not notifications.claim(conn, subscription_pk, 120):
                    continue
                batch = notifications.next_batch(conn, subscription_pk)
            if batch is None:
                continue
            self._send(batch)
        return False

    def _send(self, batch: notifications.Batch) -> None:
        database = self.archive.database
        messages = [message_for(self.settings, batch.email, c) for c in batch.changes]
        try:
            if messages:
                send_messages(self.settings, messages)
        except (OSError, smtplib.SMTPException) as exc:
            delay = retry_delay(batch.failures + 1, self.settings.delivery_retry_base_seconds)
            log.info(
                "notification e-mail failed", extra={"user": batch.username, "error": str(exc)}
            )
            with database.write() as conn:
                notifications.failed(
                    conn,
                    batch.subscription_pk,
                    batch.start_seq,
                    f"{type(exc).__name__}: {exc}",
                    utcnow() + timedelta(seconds=delay),
                )
            return
        with database.write() as conn:
            notifications.advance(conn, batch.subscription_pk, batch.last_read)
