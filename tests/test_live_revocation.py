"""Long-lived connections end when their credentials are revoked elsewhere
(tessera/dicomweb/live_credentials.py): `{api}/changes/stream` read by a real HTTP client and
the UPS-RS notification WebSocket, over real HTTP, on SQLite and PostgreSQL. Each stream is
opened, the credential is revoked by another request (logout, API key revoked, user
disabled, password changed), and the stream must end within RECHECK_SECONDS plus slack; a
stream whose credentials stay good stays open."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tessera.dicomweb.live_credentials import RECHECK_SECONDS
from tests.conftest import ServerProcess
from tests.security_world import PASSWORD, admin_cli

# The stream checks at most every RECHECK_SECONDS and wakes at least that often.
BOUND = 2 * RECHECK_SECONDS + 3


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Secured:
    server: ServerProcess
    admin: dict[str, str]

    @property
    def api(self) -> str:
        return f"{self.server.base_url}/api/v1"

    def login(self, username: str = "viv", password: str = PASSWORD) -> str:
        answer = httpx.post(f"{self.api}/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]


USERS = ("viv", "val", "vic", "vera", "vince")


@pytest.fixture
def secured(server_factory) -> Secured:  # type: ignore[no-untyped-def]
    """Credentials required; reading physicians USERS, each revoked a different way."""
    server = server_factory(env_extra={"TESSERA_ANONYMOUS": "off", "TESSERA_WORKERS": "1"})
    server.data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    server.start()
    world = Secured(server, _bearer(boot["api_key"]))
    for username in USERS:
        user = {"username": username, "role": "reading_physician", "password": PASSWORD}
        assert httpx.post(f"{world.api}/users", json=user, headers=world.admin).status_code == 201
    return world


@dataclass
class OpenStream:
    """`{api}/changes/stream` read in a thread; `ended_at` is when the server ended it."""

    url: str
    headers: dict[str, str]
    started: threading.Event = field(default_factory=threading.Event)
    ended_at: float | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.started.wait(30), f"stream did not open: {self.error!r}"

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=60) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("retry:"):
                        self.started.set()
            self.ended_at = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.started.set()

    def ends_within(self, seconds: float, revoked: float) -> float:
        self.thread.join(max(0.0, revoked + seconds - time.monotonic()))
        assert self.error is None, repr(self.error)
        assert self.ended_at is not None, f"stream still open {seconds}s after revocation"
        return self.ended_at - revoked

    def still_open(self) -> bool:
        return self.ended_at is None and self.error is None


def _stream(world: Secured, headers: dict[str, str]) -> OpenStream:
    return OpenStream(f"{world.api}/changes/stream?after=latest", headers)


def _logout(world: Secured, token: str) -> None:
    assert httpx.post(f"{world.api}/logout", headers=_bearer(token)).status_code == 204


def _new_key(world: Secured, username: str) -> tuple[dict[str, str], Callable[[], None]]:
    """A new API key of the user's (headers) and how to revoke it."""
    made = httpx.post(
        f"{world.api}/api-keys", json={"user": username, "name": "live"}, headers=world.admin
    ).json()

    def revoke() -> None:
        answer = httpx.delete(f"{world.api}/api-keys/{made['id']}", headers=world.admin)
        assert answer.status_code == 204

    return _bearer(made["key"]), revoke


def test_streams_end_when_their_credentials_are_revoked(secured: Secured) -> None:
    """All at once on one server: each revocation ends exactly the streams it should."""
    w = secured
    viv_session, viv_other = w.login("viv"), w.login("viv")
    viewer = httpx.post(f"{w.api}/viewer-token", headers=_bearer(viv_session)).json()
    val_key, revoke_val_key = _new_key(w, "val")
    vic_key, _ = _new_key(w, "vic")
    vera_changer, vera_other = w.login("vera"), w.login("vera")
    streams = {
        # viv: one session logged out (and the viewer token minted from it); the other kept.
        "logged out": _stream(w, _bearer(viv_session)),
        "viewer of logged out": _stream(w, _bearer(viewer["access_token"])),
        # val: the API key revoked.
        "key revoked": _stream(w, val_key),
        # vic: disabled, whatever the credential.
        "disabled session": _stream(w, _bearer(w.login("vic"))),
        "disabled basic": _stream(w, _basic("vic", PASSWORD)),
        "disabled key": _stream(w, vic_key),
        # vera: changes her password; her other sessions and Basic end, hers stays.
        "other session": _stream(w, _bearer(vera_other)),
        "old password": _stream(w, _basic("vera", PASSWORD)),
    }
    kept = {
        "viv other session": _stream(w, _bearer(viv_other)),
        "password changer": _stream(w, _bearer(vera_changer)),
        "vince": _stream(w, _basic("vince", PASSWORD)),
    }
    revoked = time.monotonic()
    _logout(w, viv_session)
    revoke_val_key()
    disabled = httpx.patch(f"{w.api}/users/vic", json={"disabled": True}, headers=w.admin)
    assert disabled.status_code == 200, disabled.text
    changed = httpx.post(
        f"{w.api}/me/password",
        json={"current_password": PASSWORD, "new_password": "a-brand-new-secret"},
        headers=_bearer(vera_changer),
    )
    assert changed.status_code == 204, changed.text

    for name, stream in streams.items():
        assert stream.ends_within(BOUND, revoked) <= BOUND, name
    assert all(stream.still_open() for stream in kept.values()), kept
    # A revoked token opens no new stream.
    again = httpx.get(f"{w.api}/changes/stream", headers=_bearer(viv_session), timeout=30)
    assert again.status_code == 401


def test_ups_channel_closes_when_its_key_is_revoked(secured: Secured) -> None:
    headers, revoke = _new_key(secured, "viv")
    url = secured.server.dicomweb.replace("http://", "ws://") + "/subscribers/VIVSCU"
    with connect(url, additional_headers=headers, open_timeout=30) as ws:
        revoke()
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # nothing but the SCP Status Change (RESTARTED) of an AE's first channel
                report = json.loads(ws.recv(timeout=BOUND))
                assert report["00001002"]["Value"] == [4], report
        assert time.monotonic() - started <= BOUND
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
