"""The HL7 v2 MLLP listener (inbound): one TCP port per deployment, off by default
(`hl7_listen_port`), started by `tessera serve`.

Each connection is read frame by frame (tessera/hl7/mllp.py); every frame gets exactly one
answer, an original-mode acknowledgement: AA (applied), AE (an error in the message's
content: a missing or malformed field, an unknown order; nothing was written) or AR (refused
as a whole: not HL7, a wrong encoding, an unknown sender, a message type not handled here).
The reason is in MSA-3 and in ERR (ERR-3 the HL7 error code, ERR-8 the text). A frame that
cannot be read (the peer closes, times out, sends no start block) ends that connection only:
the listener keeps serving the others.

**Dispatch.** `HANDLERS` maps a message type (MSH-9 code^trigger, e.g. "ORM^O01") to a
handler; `register(message_type, handler)` adds one (orders register ORM^O01 and OMI^O23 in
tessera/hl7/orm.py; patient identity can register ADT^A01/A08/A40 the same way, from a module
named in `HANDLER_MODULES`, which the listener imports at start). A handler
gets the archive and an `Inbound` (the parsed message, its sender's tenant and source) and
returns the text of the AA, or raises `Hl7Reject` (AE/AR with an error code). The sender is
found from MSH-4 (and MSH-3) in the `hl7_facility` table (`tessera hl7 facilities ...`);
a handler never chooses a tenant itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import uuid4

import hl7

from tessera.archive import Archive
from tessera.hl7.message import Segment, component, encode, escape
from tessera.hl7.mllp import FrameReader, MllpError, frame
from tessera.index.hl7_facilities import Facility, resolve_facility

log = logging.getLogger(__name__)

# HL7 table 0357 (message error condition codes) used in ERR-3.
SEGMENT_SEQUENCE_ERROR = ("100", "Segment sequence error")
REQUIRED_FIELD_MISSING = ("101", "Required field missing")
DATA_TYPE_ERROR = ("102", "Data type error")
TABLE_VALUE_NOT_FOUND = ("103", "Table value not found")
UNSUPPORTED_MESSAGE_TYPE = ("200", "Unsupported message type")
UNSUPPORTED_EVENT_CODE = ("201", "Unsupported event code")
UNSUPPORTED_VERSION = ("203", "Unsupported version id")
UNKNOWN_KEY = ("204", "Unknown key identifier")
DUPLICATE_KEY = ("205", "Duplicate key identifier")
APPLICATION_RECORD_LOCKED = ("206", "Application record locked")
APPLICATION_ERROR = ("207", "Application internal error")

# A connection with no frame for this long is closed (the peer may reconnect).
IDLE_SECONDS = 300.0
# Connections served at once (each is a thread); more are closed on arrival.
MAX_CONNECTIONS = 32


class Hl7Reject(Exception):
    """The message is not applied: `code` AE (content error) or AR (refused), `error` an
    HL7 table 0357 code, `location` the field it is about (e.g. 'PID-3')."""

    def __init__(
        self,
        text: str,
        code: str = "AE",
        error: tuple[str, str] = APPLICATION_ERROR,
        location: str = "",
    ) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.error = error
        self.location = location


@dataclass(frozen=True)
class Inbound:
    """A decoded message and the tenant and source its sender maps to."""

    message: hl7.Message
    message_type: str  # "ORM^O01"
    control_id: str  # MSH-10
    facility: Facility

    def has(self, segment: str) -> bool:
        try:
            self.message.segment(segment)
        except KeyError:
            return False
        return True


Handler = Callable[[Archive, Inbound], str]
HANDLERS: dict[str, Handler] = {}


def register(message_type: str, handler: Handler) -> None:
    """Handle messages of this type ('ORM^O01'): the one registration point of the listener."""
    HANDLERS[message_type] = handler


# Modules that register handlers when imported (the listener imports those present):
# orders (ORM/OMI) and patient identity (ADT, docs/identity.md).
HANDLER_MODULES = ("tessera.hl7.orm", "tessera.services.adt_hl7")


def load_handlers() -> None:
    for module_name in HANDLER_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name)


def _charset(msh18: str) -> str:
    """MSH-18 (HL7 table 0211) to a Python codec; empty = UTF-8 (ASCII is a subset)."""
    name = msh18.strip().upper()
    if name in ("", "UNICODE UTF-8", "UTF-8", "ASCII"):
        return "utf-8" if name != "ASCII" else "ascii"
    if name.startswith("8859/"):
        return f"iso8859-{name.split('/', 1)[1]}"
    raise Hl7Reject(
        f"character set {msh18!r} (MSH-18) is not supported: use UNICODE UTF-8 or 8859/n",
        "AR",
        DATA_TYPE_ERROR,
        "MSH-18",
    )


@dataclass
class _Header:
    """MSH fields read leniently (for the ACK even when the message is refused)."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    trigger: str = ""
    control_id: str = ""
    version: str = "2.5.1"
    charset: str = ""


def _header(raw: bytes) -> _Header:
    text = raw.decode("latin-1")  # every byte decodes: only to answer
    first = text.replace("\n", "\r").split("\r", 1)[0]
    header = _Header()
    if not first.startswith("MSH") or len(first) < 8:
        return header
    separator = first[3]
    fields = first.split(separator)
    # fields[0] 'MSH', fields[1] = MSH-2; MSH-n is fields[n-1].
    component_separator = fields[1][:1] or "^"

    def get(n: int) -> str:
        return fields[n - 1] if len(fields) >= n else ""

    header.sending_application = get(3).split(component_separator)[0]
    header.sending_facility = get(4).split(component_separator)[0]
    header.receiving_application = get(5).split(component_separator)[0]
    header.receiving_facility = get(6).split(component_separator)[0]
    kind = get(9).split(component_separator)
    header.message_type = kind[0]
    header.trigger = kind[1] if len(kind) > 1 else ""
    header.control_id = get(10)
    header.version = get(12).split(component_separator)[0] or "2.5.1"
    header.charset = get(18).split(fields[1][1:2] or "~")[0]
    return header


def acknowledgement(
    header: _Header, code: str, text: str, error: tuple[str, str] | None = None, location: str = ""
) -> bytes:
    """An original-mode ACK answering `header`'s message: MSH, MSA (code, the message's
    control ID, the text) and, for AE/AR, ERR (location, code, severity E, text)."""
    now = datetime.now().astimezone().strftime("%Y%m%d%H%M%S%z")
    segments = [
        Segment(
            "MSH",
            (
                "|",
                "^~\\&",
                escape(header.receiving_application or "TESSERA"),
                escape(header.receiving_facility),
                escape(header.sending_application),
                escape(header.sending_facility),
                now,
                "",
                component("ACK", header.trigger, "ACK"),
                uuid4().hex[:20],
                "P",
                escape(header.version),
                "",
                "",
                "",
                "",
                "",
                "UNICODE UTF-8",
            ),
        ),
        Segment("MSA", (code, escape(header.control_id), escape(text[:80]))),
    ]
    if code != "AA" and error is not None:
        # ERR-2 (ERL): segment ID ^ segment sequence ^ field position.
        segment, _, field = location.partition("-")
        err_location = component(segment, "1", field) if location else ""
        segments.append(
            Segment(
                "ERR",
                (
                    "",
                    err_location,
                    component(error[0], error[1], "HL70357"),
                    "E",
                    "",
                    "",
                    "",
                    escape(text),
                ),
            )
        )
    return encode(segments)


def handle_message(archive: Archive, raw: bytes) -> bytes:
    """One inbound message to its acknowledgement; never raises for what the peer sent."""
    header = _header(raw)
    try:
        return acknowledgement(header, "AA", _apply(archive, raw, header))
    except Hl7Reject as reject:
        log.info(
            "hl7 message not applied",
            extra={
                "control_id": header.control_id,
                "message_type": f"{header.message_type}^{header.trigger}",
                "code": reject.code,
                "reason": reject.text,
            },
        )
        return acknowledgement(header, reject.code, reject.text, reject.error, reject.location)
    except Exception:
        log.exception("hl7 message failed", extra={"control_id": header.control_id})
        return acknowledgement(
            header,
            "AE",
            "the archive could not apply the message; send it again",
            APPLICATION_ERROR,
        )


def _apply(archive: Archive, raw: bytes, header: _Header) -> str:
    if not raw.startswith(b"MSH") or len(raw) < 8:
        raise Hl7Reject("not an HL7 v2 message (no MSH segment)", "AR", SEGMENT_SEQUENCE_ERROR)
    if not header.control_id:
        raise Hl7Reject(
            "MSH-10 (message control ID) is required", "AR", REQUIRED_FIELD_MISSING, "MSH-10"
        )
    try:
        text = raw.decode(_charset(header.charset))
    except UnicodeDecodeError as exc:
        raise Hl7Reject(
            f"the message is not valid {header.charset or 'UTF-8'} (byte {exc.start})",
            "AR",
            DATA_TYPE_ERROR,
            "MSH-18",
        ) from None
    if "\x00" in text:
        raise Hl7Reject("the message contains NUL characters", "AR", DATA_TYPE_ERROR)
    message_type = f"{header.message_type}^{header.trigger}"
    if not header.message_type:
        raise Hl7Reject("MSH-9 (message type) is required", "AR", REQUIRED_FIELD_MISSING, "MSH-9")
    handler = HANDLERS.get(message_type)
    if handler is None:
        known = {kind.split("^")[0] for kind in HANDLERS}
        error = UNSUPPORTED_EVENT_CODE if header.message_type in known else UNSUPPORTED_MESSAGE_TYPE
        raise Hl7Reject(f"message type {message_type} is not accepted here", "AR", error, "MSH-9")
    if not header.sending_facility:
        raise Hl7Reject(
            "MSH-4 (sending facility) is required", "AR", REQUIRED_FIELD_MISSING, "MSH-4"
        )
    with archive.database.read() as conn:
        facility = resolve_facility(conn, header.sending_facility, header.sending_application)
    if facility is None:
        raise Hl7Reject(
            f"unknown sending facility {header.sending_facility!r}", "AR", UNKNOWN_KEY, "MSH-4"
        )
    try:
        message = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r"))
    except Exception as exc:  # the library's own parse errors
        raise Hl7Reject(
            f"the message cannot be parsed: {exc}", "AR", SEGMENT_SEQUENCE_ERROR
        ) from None
    return handler(archive, Inbound(message, message_type, header.control_id, facility))


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(IDLE_SECONDS)
        reader = FrameReader(sock)
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        while True:
            try:
                raw = reader.read()
            except MllpError as exc:
                log.debug("hl7 connection ended", extra={"peer": peer, "reason": str(exc)})
                return
            reply = handle_message(self.server.archive, raw)
            try:
                sock.sendall(frame(reply))
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], archive: Archive) -> None:
        self.archive = archive
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Connection)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """More than MAX_CONNECTIONS at once: the new one is closed at once."""
        if self.slots.acquire(blocking=False):
            return True
        log.warning("hl7 connection refused: too many", extra={"peer": client_address[0]})
        return False

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class Hl7Listener:
    """The running listener (threads); `shutdown()` stops it."""

    def __init__(self, archive: Archive, host: str, port: int) -> None:
        load_handlers()
        self.server = _Server((host, port), archive)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="hl7-listener", daemon=True
        )

    def start(self) -> Hl7Listener:
        self.thread.start()
        log.info("hl7 listener started", extra={"port": self.port})
        return self

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_listener(archive: Archive) -> Hl7Listener | None:
    """The listener of `tessera serve` (None when `hl7_listen_port` is 0)."""
    settings = archive.settings
    if settings.hl7_listen_port <= 0:
        return None
    host = settings.hl7_listen_host or settings.host
    return Hl7Listener(archive, host, settings.hl7_listen_port).start()
