"""multipart/form-data (RFC 7578) read as a stream: file fields are spooled to disk as they
arrive (never held whole in memory), text fields are kept as short strings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request

from tessera.dicomweb.errors import ClientError
from tessera.dicomweb.media_type import parse_media_type
from tessera.dicomweb.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart
from tessera.storage.spool import SpoolFile

MAX_TEXT_FIELD = 64 * 1024
_PARAM = re.compile(r';\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class FormDataError(ClientError):
    """The body cannot be read as a form; `status` says why (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)


@dataclass
class UploadedFile:
    spool: SpoolFile
    filename: str | None
    content_type: str | None

    @property
    def path(self) -> Path:
        return self.spool.path

    @property
    def size(self) -> int:
        return self.spool.size


@dataclass
class FormData:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def discard(self) -> None:
        for uploaded in self.files.values():
            uploaded.spool.discard()


def content_disposition(value: str) -> dict[str, str]:
    """The parameters of a Content-Disposition header (filename* decoded)."""
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(value):
        text = raw.strip()
        if text.startswith('"') and text.endswith('"') and len(text) >= 2:
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        name = name.lower()
        if name.endswith("*"):
            charset, _, encoded = text.partition("''")
            params[name[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="replace")
        else:
            params.setdefault(name, text)
    return params


async def read_form(request: Request, spool_dir: Path, max_file_bytes: int) -> FormData:
    media_type, params = parse_media_type(request.headers.get("content-type", ""))
    if media_type != "multipart/form-data":
        raise FormDataError(
            415, f"Content-Type must be multipart/form-data (got {media_type or 'none'})"
        )
    boundary = params.get("boundary")
    if not boundary:
        raise FormDataError(400, "multipart/form-data Content-Type has no boundary parameter")
    try:
        parser = MultipartParser(boundary)
    except MultipartError as exc:
        raise FormDataError(400, str(exc)) from exc
    form = FormData()
    current_name: str | None = None
    current_file: UploadedFile | None = None
    text = bytearray()
    try:
        async for chunk in request.stream():
            for event in parser.feed(chunk):
                if isinstance(event, PartStart):
                    disposition = content_disposition(event.headers.get("content-disposition", ""))
                    current_name = disposition.get("name")
                    if not current_name:
                        raise FormDataError(400, "a form part has no Content-Disposition name")
                    if "filename" in disposition:
                        current_file = UploadedFile(
                            SpoolFile(spool_dir),
                            disposition["filename"] or None,
                            event.headers.get("content-type"),
                        )
                        if current_name in form.files:
                            form.files[current_name].spool.discard()
                        form.files[current_name] = current_file
                    else:
                        current_file = None
                        text.clear()
                elif isinstance(event, PartData):
                    if current_file is not None:
                        current_file.spool.write(event.data)
                        if current_file.size > max_file_bytes:
                            raise FormDataError(
                                413, f"the file exceeds the limit of {max_file_bytes} bytes"
                            )
                    else:
                        text += event.data
                        if len(text) > MAX_TEXT_FIELD:
                            raise FormDataError(
                                413, f"form field {current_name!r} is longer than 64 KiB"
                            )
                elif isinstance(event, PartEnd):
                    if current_file is not None:
                        current_file.spool.close()
                    elif current_name is not None:
                        form.fields[current_name] = text.decode("utf-8", errors="replace")
                    current_file = None
    except MultipartError as exc:
        form.discard()
        raise FormDataError(400, f"malformed multipart/form-data body: {exc}") from exc
    except ClientDisconnect as exc:
        form.discard()
        raise FormDataError(400, "client disconnected") from exc
    except FormDataError:
        form.discard()
        raise
    if not parser.finished:
        form.discard()
        raise FormDataError(400, "multipart/form-data body is truncated")
    return form
