"""What a Tessera server's JSON log says about requests it answered 500."""

from __future__ import annotations

import json


def unhandled_errors(log_text: str, tail: int = 800) -> list[str]:
    """The last `tail` characters of each traceback logged for a request answered 500
    (tessera.dicomweb.error_boundary's "unhandled error")."""
    return [
        json.loads(line).get("exception", "")[-tail:]
        for line in log_text.splitlines()
        if '"unhandled error"' in line
    ]
