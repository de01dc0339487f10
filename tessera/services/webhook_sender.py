"""Send one webhook delivery, signed by the Standard Webhooks scheme.

Headers: `webhook-id` (stable across retries: receivers deduplicate on it), `webhook-timestamp`
(this attempt, Unix seconds), `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`id.timestamp.body` with the subscription's secret), computed by the `standardwebhooks`
package. Only a 2xx answer counts as delivered; a redirect is not followed (it could lead to
an address the SSRF check would refuse) and counts as a failed attempt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from tessera.index.webhooks import Claimed
from tessera.services.outbound import TargetRefused, pinned_request


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str  # empty: delivered
    duration_ms: int


def signed_headers(delivery: Claimed, now: datetime) -> dict[str, str]:
    signature = Webhook(delivery.secret).sign(
        delivery.message_id, now, delivery.payload.decode("utf-8")
    )
    return {
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "Tessera-Webhooks/1",
    }


async def send(client: httpx.AsyncClient, delivery: Claimed, allow_private: bool) -> AttemptResult:
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = pinned_request(delivery.url, allow_private)
    except TargetRefused as exc:
        return AttemptResult(None, f"refused: {exc}", took())
    headers = signed_headers(delivery, datetime.now(UTC))
    headers["host"] = target.host_header
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    try:
        response = await client.post(
            target.url, content=delivery.payload, headers=headers, extensions=extensions
        )
    except httpx.TimeoutException:
        return AttemptResult(None, "timed out", took())
    except httpx.HTTPError as exc:
        return AttemptResult(None, f"{type(exc).__name__}: {exc}"[:300], took())
    if 200 <= response.status_code < 300:
        return AttemptResult(response.status_code, "", took())
    if response.is_redirect:
        where = response.headers.get("location", "")[:200]
        return AttemptResult(response.status_code, f"redirect to {where} not followed", took())
    return AttemptResult(response.status_code, f"answered {response.status_code}", took())
