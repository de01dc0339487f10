"""Streamed bodies whose first piece is made before the response starts."""

from __future__ import annotations

from collections.abc import AsyncIterator


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
