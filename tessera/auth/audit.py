"""The audit trail: who did what, stored in the index, never with passwords or tokens.

Admin changes are written in the same transaction as the change (`record_now`). Request
events (logins, uploads, queries, retrievals, denials) go through `AuditLog`, which batches
them on a background thread so the request path only appends to a queue; retrievals are
recorded once per study, caller and `retrieve_window` seconds, not once per frame.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from sqlalchemy import Connection, select

from tessera.index.database import Database
from tessera.index.models import AuditEvent

log = logging.getLogger(__name__)

# Detail keys that could carry a secret are dropped whatever the caller passes.
_SECRET_WORDS = ("password", "token", "secret", "authorization", "api_key", "key_value")


@dataclass
class Event:
    tenant_id: int | None
    principal: str
    action: str
    outcome: str = "ok"
    target: str = ""
    detail: dict = field(default_factory=dict)
    remote_addr: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict:
        detail = {
            k: v for k, v in self.detail.items() if not any(w in k.lower() for w in _SECRET_WORDS)
        }
        return {
            "tenant_id": self.tenant_id,
            "at": self.at,
            "principal": self.principal[:160],
            "action": self.action[:64],
            "outcome": self.outcome[:16],
            "target": self.target[:512],
            "detail": orjson.dumps(detail, default=str).decode(),
            "remote_addr": self.remote_addr[:64],
        }


def record_now(conn: Connection, events: Iterable[Event]) -> None:
    rows = [e.row() for e in events]
    if rows:
        conn.execute(AuditEvent.__table__.insert(), rows)


class AuditLog:
    """Batches request events and writes them from one background thread."""

    def __init__(
        self, database: Database, flush_seconds: float = 0.5, retrieve_window: float = 300.0
    ) -> None:
        self.database = database
        self.flush_seconds = flush_seconds
        self.retrieve_window = retrieve_window
        self.queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._recent_retrievals: dict[tuple, float] = {}
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def add(self, event: Event) -> None:
        self.queue.put(event)

    def add_retrieval(self, event: Event) -> None:
        """A study-level retrieval, at most once per (tenant, caller, study, outcome) and
        window: a viewer fetching 500 frames of a study makes one entry."""
        key = (event.tenant_id, event.principal, event.action, event.target, event.outcome)
        moment = time.monotonic()
        last = self._recent_retrievals.get(key)
        if last is not None and moment - last < self.retrieve_window:
            return
        if len(self._recent_retrievals) > 10_000:
            self._recent_retrievals.clear()
        self._recent_retrievals[key] = moment
        self.queue.put(event)

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[Event] = []
            try:
                first = self.queue.get()
            except Exception:  # interpreter shutdown
                return
            if first is None:
                stopping = True
            else:
                batch.append(first)
            deadline = time.monotonic() + self.flush_seconds
            while not stopping and len(batch) < 500:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                try:
                    with self.database.write() as conn:
                        record_now(conn, batch)
                except Exception:
                    log.exception("audit events could not be written", extra={"count": len(batch)})


def query_events(
    conn: Connection,
    tenant_id: int,
    since: datetime | None = None,
    action: str | None = None,
    principal: str | None = None,
    limit: int = 100,
) -> list[dict]:
    stmt = select(AuditEvent).where(AuditEvent.tenant_id == tenant_id)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if action:
        stmt = (
            stmt.where(AuditEvent.action.like(action[:-1] + "%"))
            if action.endswith("*")
            else stmt.where(AuditEvent.action == action)
        )
    if principal:
        stmt = stmt.where(AuditEvent.principal == principal)
    stmt = stmt.order_by(AuditEvent.id.desc()).limit(limit)
    from tessera.index.clock import as_utc

    return [
        {
            "id": r.id,
            "at": as_utc(r.at).isoformat(),
            "principal": r.principal,
            "action": r.action,
            "outcome": r.outcome,
            "target": r.target,
            "detail": orjson.loads(r.detail),
            "remote_addr": r.remote_addr,
        }
        for r in conn.execute(stmt)
    ]
