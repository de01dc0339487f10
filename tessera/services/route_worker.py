"""The routing job of the delivery worker: dispatch rules from the change feed, claim due
instance deliveries (grouped per rule), send each group in a thread, record per-instance
results with retries (exponential backoff with jitter) and a dead letter."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from tessera.archive import Archive
from tessera.index import routes
from tessera.index.clock import as_utc, utcnow
from tessera.index.outbox_common import dispatch_behind
from tessera.services.backoff import retry_delay
from tessera.services.route_sender import send_batch

log = logging.getLogger(__name__)

BATCH_SIZE = 50


class RouteJob:
    def __init__(self, archive: Archive, concurrency: int = 4) -> None:
        self.archive = archive
        self.settings = archive.settings
        self.concurrency = concurrency
        self.in_flight: set[asyncio.Task] = set()

    async def __call__(self) -> bool:
        await asyncio.to_thread(self._dispatch_all)
        free = self.concurrency - len(self.in_flight)
        if free <= 0:
            return False
        batches = await asyncio.to_thread(self._claim)
        for batch in batches:
            task = asyncio.create_task(asyncio.to_thread(self._send, batch))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return bool(batches)

    def _dispatch_all(self) -> None:
        dispatch_behind(
            self.archive.database, routes.rules_behind, routes.dispatch, routes.DISPATCH_BATCH
        )

    def _claim(self) -> list[routes.Batch]:
        with self.archive.database.write() as conn:
            return routes.claim(conn, BATCH_SIZE, self.settings.delivery_lease_seconds)

    def _send(self, batch: routes.Batch) -> None:
        try:
            outcome = send_batch(self.archive, batch.rule, sorted(batch.deliveries))
        except Exception as exc:
            log.exception("route send failed", extra={"route": batch.rule.name})
            outcome = dict.fromkeys(batch.deliveries, f"send failed: {type(exc).__name__}")
        max_age = timedelta(seconds=self.settings.delivery_max_age_seconds)
        failed = 0
        with self.archive.database.write() as conn:
            for uid, (delivery_pk, attempts, created_at) in batch.deliveries.items():
                error = outcome.get(uid, "not sent")
                next_attempt_at = None
                if error:
                    failed += 1
                    if utcnow() - as_utc(created_at) <= max_age:
                        delay = retry_delay(attempts + 1, self.settings.delivery_retry_base_seconds)
                        next_attempt_at = utcnow() + timedelta(seconds=delay)
                routes.record_result(conn, delivery_pk, error, next_attempt_at)
        if failed:
            log.info(
                "route deliveries failed",
                extra={"route": batch.rule.name, "failed": failed, "sent": len(outcome) - failed},
            )
