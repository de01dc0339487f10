"""When to try a failed delivery again: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random


def retry_delay(attempts: int, base_seconds: float, cap_seconds: float = 3600.0) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1, 2, ...): a random time in
    [d/2, d] with d = base * 2^(attempts-1), at most `cap_seconds`. Jitter spreads the retries
    of many deliveries that failed together (a destination that was down)."""
    delay = min(cap_seconds, base_seconds * (2 ** max(0, min(attempts - 1, 30))))
    return random.uniform(delay / 2, delay)
