"""Streamed bodies: the first piece is made before the response starts, and the database
reads after it ride out a database restart instead of cutting the body off."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
from sqlalchemy.exc import OperationalError

T = TypeVar("T")

# How long a response already under way waits for a database that went away. A restart takes
# a few seconds; a client would rather see a pause than a body cut off after its 200.
MID_STREAM_PATIENCE_SECONDS = 30.0
_RETRY_INTERVAL_SECONDS = 0.5


async def primed(body: AsyncIterator[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
    """Make the body's first piece now, so a storage failure (an unreachable object store)
    is still answered with a status (503) instead of a response cut off after its headers;
    returns an iterator that yields that piece and then the rest."""
    try:
        first = await anext(body)
    except StopAsyncIteration:
        first = None

    async def rest() -> AsyncIterator[bytes | memoryview]:
        if first is not None:
            yield first
        async for piece in body:
            yield piece

    return rest()


async def riding_out(
    read: Callable[[], Awaitable[T]], patience: float = MID_STREAM_PATIENCE_SECONDS
) -> T:
    """`read()` for a response whose status line is already sent: while the database cannot
    be reached, ask again every half second for up to `patience` seconds; then give up (the
    OperationalError propagates and the connection closes: the body cannot be finished)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await read()
        except OperationalError:
            if time.monotonic() >= deadline:
                raise
            await anyio.sleep(_RETRY_INTERVAL_SECONDS)
