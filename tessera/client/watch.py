"""The background uploader: `tessera upload --watch FOLDER`.

It keeps running and, every `poll` seconds, looks at the files under the folder (hidden
files skipped). A file is sent once it is complete: its size and modification time have not
changed for `settle` seconds. Files go over STOW-RS (tessera/client/stow.py), a batch per
request; each file's outcome is read from the Store Instances response by its SOP Instance
UID. While the server cannot be reached (or answers 5xx/429), the batch is retried with
exponential backoff, up to `max_backoff` seconds between tries.

What was stored is recorded in a small JSON state file (default `FOLDER/.tessera-upload.json`):
per file its path relative to the folder, size, mtime and SOP Instance UID, written
atomically after every batch. A restarted watcher reads it and does not send those files
again (unless they changed). Files the server refused, or that are not DICOM, are recorded
too (with the reason) and are not retried until they change. With `move_to`, stored files
are moved there (same relative path); otherwise they are left where they are.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pydicom

from tessera.client.stow import _failure_text, multipart_stream, request_content_type
from tessera.dicomweb import multipart_writer
from tessera.dicomweb.media_type import DICOM_JSON

STATE_NAME = ".tessera-upload.json"
STORED = "stored"
FAILED = "failed"
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass
class WatchConfig:
    folder: Path
    url: str  # DICOMweb root (or an upload session's root)
    state_path: Path | None = None
    settle: float = 5.0
    poll: float = 2.0
    max_backoff: float = 60.0
    batch_files: int = 32
    move_to: Path | None = None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None

    @property
    def state_file(self) -> Path:
        return self.state_path or self.folder / STATE_NAME


class ServerUnavailable(Exception):
    """The request did not reach a server that could answer it; retry later."""


class WatchState:
    """The state file: relative path -> {size, mtime_ns, outcome, sop_instance_uid, reason}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, dict] = {}
        if path.exists():
            # Only what was stored counts across a restart: failures are tried again.
            files = orjson.loads(path.read_bytes()).get("files", {})
            self.files = {k: v for k, v in files.items() if v.get("outcome") == STORED}

    def done(self, relative: str, size: int, mtime_ns: int) -> bool:
        entry = self.files.get(relative)
        return entry is not None and (entry["size"], entry["mtime_ns"]) == (size, mtime_ns)

    def record(self, relative: str, size: int, mtime_ns: int, outcome: str, **detail: str) -> None:
        self.files[relative] = {"size": size, "mtime_ns": mtime_ns, "outcome": outcome, **detail}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary(self.path)
        temporary.write_bytes(orjson.dumps({"files": self.files}, option=orjson.OPT_INDENT_2))
        os.replace(temporary, self.path)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # when (monotonic) this size and mtime were first seen


class Watcher:
    def __init__(self, config: WatchConfig, out: Callable[[str], None] = print) -> None:
        self.config = config
        self.state = WatchState(config.state_file)
        self.seen: dict[Path, _Seen] = {}
        self.out = out

    def ready_files(self, now: float) -> list[Path]:
        """Files not yet handled whose size and mtime stood still for `settle` seconds."""
        ready = []
        state_files = {self.config.state_file, _temporary(self.config.state_file)}
        current: set[Path] = set()
        for path in sorted(self.config.folder.rglob("*")):
            relative = path.relative_to(self.config.folder)
            if any(part.startswith(".") for part in relative.parts) or path in state_files:
                continue
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if not path.is_file() or self.state.done(str(relative), info.st_size, info.st_mtime_ns):
                continue
            current.add(path)
            seen = self.seen.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != (info.st_size, info.st_mtime_ns):
                self.seen[path] = _Seen(info.st_size, info.st_mtime_ns, now)
            elif now - seen.since >= self.config.settle:
                ready.append(path)
        self.seen = {p: s for p, s in self.seen.items() if p in current}
        return ready

    def send(self, client: httpx.Client, paths: list[Path]) -> None:
        """Send one batch and record each file's outcome; ServerUnavailable to retry."""
        uids: dict[str, Path] = {}
        for path in paths:
            try:
                uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            except Exception as exc:  # not DICOM, or no SOP Instance UID: not sent
                self._record(path, FAILED, reason=f"not a DICOM file: {exc}"[:300])
                continue
            uids.setdefault(uid, path)
        if uids:
            for uid, outcome, reason in self._post(client, uids):
                if uid in uids:
                    self._record(uids.pop(uid), outcome, sop_instance_uid=uid, reason=reason)
            for uid, path in uids.items():
                self._record(path, FAILED, sop_instance_uid=uid, reason="not in the response")
        self.state.save()

    def _post(self, client: httpx.Client, uids: dict[str, Path]) -> list[tuple[str, str, str]]:
        """(SOP Instance UID, outcome, reason) of each instance the server answered for."""
        boundary = multipart_writer.new_boundary()
        target = self.config.url.rstrip("/") + "/studies"
        try:
            response = client.post(
                target,
                content=multipart_stream(list(uids.values()), boundary),
                headers={"Content-Type": request_content_type(boundary), "Accept": DICOM_JSON},
            )
        except httpx.TransportError as exc:
            raise ServerUnavailable(str(exc) or type(exc).__name__) from exc
        if response.status_code in _RETRY_STATUS:
            raise ServerUnavailable(f"HTTP {response.status_code}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or ("00081199" not in body and "00081198" not in body):
            # Refused as a whole (e.g. 400 unknown source, 401): every file failed.
            reason = f"HTTP {response.status_code}: {response.text[:200]}"
            return [(uid, FAILED, reason) for uid in uids]
        found = []
        for item in body.get("00081199", {}).get("Value", []):
            found.append((_item_uid(item), STORED, ""))
        for item in body.get("00081198", {}).get("Value", []):
            found.append((_item_uid(item), FAILED, _failure_text(item)))
        return found

    def _record(self, path: Path, outcome: str, **detail: str) -> None:
        info = path.stat()
        relative = path.relative_to(self.config.folder)
        self.state.record(str(relative), info.st_size, info.st_mtime_ns, outcome, **detail)
        self.out(f"{outcome} {relative} {detail.get('reason') or detail.get('sop_instance_uid')}")
        if outcome == STORED and self.config.move_to is not None:
            target = self.config.move_to / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop` is set."""
        backoff = 0.0
        with httpx.Client(
            params=self.config.params,
            headers=self.config.headers,
            auth=self.config.auth,
            timeout=httpx.Timeout(600, connect=10),
        ) as client:
            while not stop.is_set():
                ready = self.ready_files(time.monotonic())
                try:
                    for start in range(0, len(ready), max(1, self.config.batch_files)):
                        self.send(client, ready[start : start + self.config.batch_files])
                    backoff = 0.0
                except ServerUnavailable as exc:
                    backoff = min(self.config.max_backoff, max(self.config.poll, backoff * 2))
                    self.out(f"server unavailable ({exc}); retrying in {backoff:.1f} s")
                    stop.wait(backoff)
                    continue
                stop.wait(self.config.poll)


def _temporary(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".tmp")


def _item_uid(item: dict) -> str:
    return str(item.get("00081155", {}).get("Value", [""])[0])


def watch(config: WatchConfig, stop: threading.Event | None = None) -> int:
    """Run the watcher (until `stop`, SIGTERM or Ctrl-C); the process exit code."""
    import signal

    if not config.folder.is_dir():
        print(f"error: no such folder: {config.folder}", flush=True)
        return 2
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"watching {config.folder} (state {config.state_file})", flush=True)
    try:
        Watcher(config, out=lambda line: print(line, flush=True)).run(stop)
    except KeyboardInterrupt:
        pass
    return 0
