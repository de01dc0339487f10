"""`tessera upload --document FILE --study UID`: one document through the documents endpoint
(docs/documents.md), as a script without DICOM know-how would send it."""

from __future__ import annotations

import json
import mimetypes
import sys
from pathlib import Path

import httpx


def upload_document(
    path: Path,
    url: str,
    study: str,
    title: str | None = None,
    source: str | None = None,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> int:
    """Upload; prints the server's answer and returns the exit code (0 stored, 1 refused,
    2 unreadable file or unreachable server)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    fields = {"title": title or path.stem}
    if source:
        fields["source"] = source
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    auth = httpx.BasicAuth(username, password or "") if username else None
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/studies/{study}/documents",
            files={"file": (path.name, data, media_type)},
            data=fields,
            headers=headers,
            auth=auth,
            timeout=600,
        )
    except httpx.HTTPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        body = response.json()
    except ValueError:
        body = {"status": response.status_code, "detail": response.text[:500]}
    if response.status_code == 201:
        print(json.dumps(body, indent=2))
        return 0
    print(f"refused ({response.status_code}): {body.get('detail', body)}", file=sys.stderr)
    return 1
