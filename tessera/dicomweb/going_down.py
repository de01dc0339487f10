"""Let the open UPS notification channels say goodbye before a graceful shutdown closes them.

On SIGTERM or Ctrl-C uvicorn calls `shutdown()` on every open connection, and its WebSocket
protocol closes a connection at once (1012), so an application cannot send a last message.
A notification channel puts an `asyncio.Event` under `GOING_DOWN_KEY` in its connection's
state (`scope["state"]`, one dict per connection that every copy of the ASGI scope shares);
this protocol sets that event instead and gives the channel `GRACE_SECONDS` to send its
SCP Status Change (GOING DOWN) and close itself (1001). Any other WebSocket, and a channel
still open after the grace, is shut down as uvicorn does. `tessera serve` runs uvicorn with
it (`ws=`).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

GOING_DOWN_KEY = "tessera.going_down"
GRACE_SECONDS = 5.0


def going_down_event(state: dict) -> asyncio.Event:
    """The event a graceful shutdown sets for the connection whose ASGI state is `state`."""
    event = asyncio.Event()
    state[GOING_DOWN_KEY] = event
    return event


class GoingDownProtocol(WebSocketsSansIOProtocol):
    def shutdown(self) -> None:
        state = getattr(self, "scope", {}).get("state") or {}
        event = state.get(GOING_DOWN_KEY)
        if (
            not isinstance(event, asyncio.Event)
            or not self.handshake_complete
            or self.close_sent
            or self.disconnected
        ):
            super().shutdown()
            return
        event.set()
        self.loop.call_later(GRACE_SECONDS, self._shutdown_unless_closed)

    def _shutdown_unless_closed(self) -> None:
        if not self.disconnected:
            super().shutdown()
