"""The delivery worker: turns the change feed into webhook deliveries (and routing sends) and
works them off, with retries, backoff and a dead letter.

Every server process runs one (in its lifespan). All state is in the index: deliveries are
claimed under a lease (`outbox_common.claim_due`; FOR UPDATE SKIP LOCKED on PostgreSQL), so
several processes share the work, and a process killed mid-delivery loses nothing (the lease
runs out and another worker sends it again: at-least-once). Sends run concurrently, each with
a timeout, so a slow or dead target never blocks other deliveries, and never ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlsplit

import httpx

from tessera.archive import Archive
from tessera.index import webhooks
from tessera.index.clock import utcnow
from tessera.index.outbox_common import dispatch_behind
from tessera.services.backoff import retry_delay
from tessera.services.webhook_sender import send

log = logging.getLogger(__name__)

LEASE_MARGIN_SECONDS = 30.0


class DeliveryWorker:
    def __init__(self, archive: Archive, interval: float = 0.2, concurrency: int = 16) -> None:
        self.archive = archive
        self.settings = archive.settings
        self.interval = interval
        self.concurrency = concurrency
        self.in_flight: set[asyncio.Task] = set()
        # Extra jobs run each tick (routing adds its own); each returns True when busy.
        self.jobs: list[Callable[[], Awaitable[bool]]] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        # httpx logs every request's URL at INFO; a webhook URL may carry a token in its
        # query string, and secrets are never logged.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self.in_flight):
            task.cancel()

    async def run(self) -> None:
        timeout = httpx.Timeout(self.settings.webhook_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            while True:
                busy = False
                try:
                    busy = await self.tick(client)
                    for job in self.jobs:
                        busy = await job() or busy
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("delivery worker tick failed")
                if not busy:
                    await asyncio.sleep(self.interval)

    async def tick(self, client: httpx.AsyncClient) -> bool:
        await asyncio.to_thread(self._dispatch_all)
        free = self.concurrency - len(self.in_flight)
        if free <= 0:
            return False
        claimed = await asyncio.to_thread(self._claim, free)
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(client, delivery))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return len(claimed) == free

    def _dispatch_all(self) -> None:
        dispatch_behind(
            self.archive.database,
            webhooks.subscriptions_behind,
            webhooks.dispatch,
            webhooks.DISPATCH_BATCH,
        )

    def _claim(self, limit: int) -> list[webhooks.Claimed]:
        lease = max(
            self.settings.delivery_lease_seconds,
            self.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS,
        )
        with self.archive.database.write() as conn:
            return webhooks.claim(conn, limit, lease)

    async def _deliver(self, client: httpx.AsyncClient, delivery: webhooks.Claimed) -> None:
        result = await send(client, delivery, self.settings.outbound_allow_private)
        next_attempt_at = None
        if result.error:
            if not webhooks.expired(delivery.created_at, self.settings.delivery_max_age_seconds):
                delay = retry_delay(
                    delivery.attempts + 1, self.settings.delivery_retry_base_seconds
                )
                next_attempt_at = utcnow() + timedelta(seconds=delay)
            log.info(
                "webhook delivery failed",
                extra={
                    "delivery": delivery.id,
                    "host": urlsplit(delivery.url).hostname,
                    "error": result.error,
                    "dead_lettered": next_attempt_at is None,
                },
            )

        def record() -> None:
            with self.archive.database.write() as conn:
                webhooks.record_attempt(
                    conn,
                    delivery.id,
                    result.status_code,
                    result.error,
                    result.duration_ms,
                    next_attempt_at,
                )

        await asyncio.to_thread(record)
