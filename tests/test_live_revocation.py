"""Long-lived connections end when their credentials are revoked elsewhere
(tessera/dicomweb/live_credentials.py): `{api}/changes/stream` read by a real HTTP client and
the UPS-RS notification WebSocket, over real HTTP, on SQLite and PostgreSQL. Each stream is
opened, the credential is revoked by another request (logout, API key revoked, user
disabled, password changed), and the stream must end within RECHECK_SECONDS plus slack; a
stream whose credentials stay good stays open."""

from __future__ import annotations

import base64
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


@pytest.fixture
def secured(server_factory) -> Secured:  # type: ignore[no-untyped-def]
    server = server_factory(env_extra={"TESSERA_ANONYMOUS": "off", "TESSERA_WORKERS": "1"})
    server.data_dir.mkdir(parents=True, exist_ok=True)
    boot = admin_cli(server, "bootstrap", "--system-admin", "--password", PASSWORD)
    server.start()
    world = Secured(server, _bearer(boot["api_key"]))
    viv = {"username": "viv", "role": "reading_physician", "password": PASSWORD}
    assert httpx.post(f"{world.api}/users", json=viv, headers=world.admin).status_code == 201
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

    def ends_within(self, seconds: float) -> float:
        revoked = time.monotonic()
        self.thread.join(seconds)
        assert self.error is None, repr(self.error)
        assert self.ended_at is not None, f"stream still open {seconds}s after revocation"
        return self.ended_at - revoked


def _stream(world: Secured, headers: dict[str, str]) -> OpenStream:
    return OpenStream(f"{world.api}/changes/stream?after=latest", headers)


def _logout(world: Secured, token: str) -> None:
    assert httpx.post(f"{world.api}/logout", headers=_bearer(token)).status_code == 204


def _revoke_key(world: Secured) -> tuple[dict[str, str], Callable[[], None]]:
    """A new API key of viv's (headers) and how to revoke it."""
    made = httpx.post(
        f"{world.api}/api-keys", json={"user": "viv", "name": "live"}, headers=world.admin
    ).json()

    def revoke() -> None:
        answer = httpx.delete(f"{world.api}/api-keys/{made['id']}", headers=world.admin)
        assert answer.status_code == 204

    return _bearer(made["key"]), revoke


def _disable(world: Secured) -> None:
    answer = httpx.patch(f"{world.api}/users/viv", json={"disabled": True}, headers=world.admin)
    assert answer.status_code == 200, answer.text


def test_stream_ends_when_its_session_is_logged_out(secured: Secured) -> None:
    token = secured.login()
    kept = _stream(secured, _bearer(secured.login()))  # another session of the same user
    stream = _stream(secured, _bearer(token))
    _logout(secured, token)
    assert stream.ends_within(BOUND) <= BOUND
    # The user's other session is untouched: its stream is still open.
    assert kept.ended_at is None and kept.error is None
    # And the revoked token opens no new stream.
    again = httpx.get(f"{secured.api}/changes/stream", headers=_bearer(token), timeout=30)
    assert again.status_code == 401


def test_stream_ends_when_its_api_key_is_revoked(secured: Secured) -> None:
    headers, revoke = _revoke_key(secured)
    stream = _stream(secured, headers)
    revoke()
    stream.ends_within(BOUND)


def test_stream_of_a_viewer_token_ends_at_its_sessions_logout(secured: Secured) -> None:
    session = secured.login()
    viewer = httpx.post(f"{secured.api}/viewer-token", headers=_bearer(session)).json()
    stream = _stream(secured, _bearer(viewer["access_token"]))
    _logout(secured, session)
    stream.ends_within(BOUND)


@pytest.mark.parametrize("credential", ["session", "basic", "api_key"])
def test_stream_ends_when_the_user_is_disabled(secured: Secured, credential: str) -> None:
    if credential == "session":
        headers = _bearer(secured.login())
    elif credential == "basic":
        headers = _basic("viv", PASSWORD)
    else:
        headers, _ = _revoke_key(secured)
    stream = _stream(secured, headers)
    _disable(secured)
    stream.ends_within(BOUND)


def test_password_change_ends_the_users_other_streams(secured: Secured) -> None:
    changer, other = secured.login(), secured.login()
    mine = _stream(secured, _bearer(changer))
    theirs = _stream(secured, _bearer(other))
    basic = _stream(secured, _basic("viv", PASSWORD))
    answer = httpx.post(
        f"{secured.api}/me/password",
        json={"current_password": PASSWORD, "new_password": "a-brand-new-secret"},
        headers=_bearer(changer),
    )
    assert answer.status_code == 204, answer.text
    theirs.ends_within(BOUND)
    basic.ends_within(BOUND)
    # The session that changed the password keeps its stream.
    assert mine.ended_at is None and mine.error is None


def test_ups_channel_closes_when_its_key_is_revoked(secured: Secured) -> None:
    headers, revoke = _revoke_key(secured)
    url = secured.server.dicomweb.replace("http://", "ws://") + "/subscribers/VIVSCU"
    with connect(url, additional_headers=headers, open_timeout=30) as ws:
        revoke()
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=BOUND)
        assert time.monotonic() - started <= BOUND
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
